"""First end-to-end checks of the webhook."""

from tests.conftest import WeChat


async def test_typed_help_word_gets_a_reply(wechat: WeChat) -> None:
    text = await wechat.say("帮助")
    assert "中心概况" in text
