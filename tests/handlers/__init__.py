"""Tests of the citizen services, through the webhook as a citizen uses them."""

from bot.protocol import ELLIPSIS, MAX_REPLY_TEXT_BYTES

# How a closing line tells the citizen what to do next.
NEXT_STEP_MARKERS = ("回复", "点击", "发送", "输入", "拨打")


def assert_whole_reply(text: str) -> None:
    """Check a reply fits WeChat's limit uncut and ends with what the citizen can do next."""
    assert len(text.encode("utf-8")) <= MAX_REPLY_TEXT_BYTES, len(text.encode("utf-8"))
    assert not text.endswith(ELLIPSIS), text[-60:]
    last_line = text.strip().splitlines()[-1]
    assert any(marker in last_line for marker in NEXT_STEP_MARKERS), last_line
