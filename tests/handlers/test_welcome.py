"""Words the welcome router answers when no other service claims them."""

from __future__ import annotations

import time_machine

from bot.platform_sim import Platform
from tests.conftest import WeChat
from tests.models.test_queue import MONDAY_10


async def test_bare_cancel_outside_a_dialog_says_what_can_be_cancelled(wechat: WeChat) -> None:
    reply = await wechat.say("取消")

    assert "没能理解" not in reply
    for words in ("取消排队", "取消预约", "取消报名"):
        assert f"“{words}”" in reply


@time_machine.travel(MONDAY_10, tick=False)
async def test_bare_cancel_inside_a_dialog_still_leaves_it(wechat: WeChat) -> None:
    assert "请回复序号" in await wechat.say("取号")

    assert "已取消当前操作" in await wechat.say("取消")
    assert "取消排队" in await wechat.say("取消")


async def test_a_message_of_invisible_characters_gets_the_help_not_empty_quotes(
    wechat: WeChat,
) -> None:
    """A zero-width space and a full-width space were echoed: 没能理解“​”。"""
    reply = await wechat.say("\u200b\u3000\ufeff")

    assert "没能理解" not in reply and "回复序号或服务名称" in reply
    assert "选择办事大厅" in await wechat.say("取\u200b号")  # and they hide no keyword


async def test_an_unfollow_by_a_citizen_never_seen_following_stops_their_notices(
    wechat: WeChat,
) -> None:
    """A citizen who followed before the backend ran has no citizen row: the unfollow updated
    no row, and notices (called, rate invite) were still sent to them."""
    from models.citizen import Citizen

    await wechat.say("你好")  # chats, no follow event ever recorded
    assert await Citizen.get_or_none(openid=wechat.openid) is None

    await wechat.send(Platform.event(wechat.openid, "unsubscribe"))

    citizen = await Citizen.get(openid=wechat.openid)
    assert (citizen.is_following, citizen.unfollowed_at is not None) == (False, True)


async def test_a_mistyped_menu_word_is_offered_the_service_it_looks_like(wechat: WeChat) -> None:
    """取好 and 排对进度 got 没能理解 and the whole list, nothing closer."""
    assert "您是不是要“取号”" in await wechat.say("取好")
    assert "您是不是要“排队进度”" in await wechat.say("排对进度")

    unrelated = await wechat.say("今天天气怎么样呀朋友们")
    assert "您是不是要" not in unrelated and "回复序号" in unrelated


async def test_a_thank_you_is_answered_in_kind_not_as_words_not_understood(
    wechat: WeChat,
) -> None:
    """谢谢 got 没能理解“谢谢” and the whole list of services."""
    reply = await wechat.say("谢谢！")

    assert "不客气" in reply and "没能理解" not in reply and "回复“帮助”" in reply
