"""中心概况 through the webhook: the overview, its parts, and "open now" on the hall's clock."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from bot.platform_sim import Platform
from config.menu import words_of
from models.hall import Hall, forget_halls
from tests.conftest import OPENID, WeChat
from tests.handlers import assert_whole_reply

HALL_TZ = ZoneInfo("Asia/Shanghai")


def on_utc_host(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """Return the instant of a hall-local wall time, as a UTC server's clock shows it."""
    return datetime(year, month, day, hour, minute, tzinfo=HALL_TZ).astimezone(UTC)


async def test_tap_shows_hours_status_address_and_what_to_ask_next(wechat: WeChat) -> None:
    main = await Hall.get(kind="main")

    text = await wechat.tap("HALL_INFO")

    assert_whole_reply(text)
    for fact in (main.name, main.hours_text, main.address, main.phone, main.summary):
        assert fact in text
    assert "当前：" in text
    for follow_up in ("交通", "功能分区", "进驻部门", "便民服务", "网点"):
        assert f"“{follow_up}”" in text


# 2025-12-05 is a Friday: open 9:00-18:00. Saturday and Sunday: 9:00-17:00.
@pytest.mark.parametrize(
    ("local", "status"),
    [
        ((2025, 12, 5, 8, 59), "当前：尚未开门，今天9:00开始办理"),
        ((2025, 12, 5, 9, 0), "当前：正在开放，今天18:00结束"),
        ((2025, 12, 5, 17, 59), "当前：正在开放，今天18:00结束"),
        ((2025, 12, 5, 18, 0), "当前：已结束办理，下次开放：明天（周六）9:00"),
        ((2025, 12, 6, 16, 59), "当前：正在开放，今天17:00结束"),
        ((2025, 12, 6, 17, 0), "当前：已结束办理，下次开放：明天（周日）9:00"),
        ((2025, 12, 7, 17, 0), "当前：已结束办理，下次开放：明天（周一）9:00"),
    ],
)
async def test_open_now_follows_the_hall_clock_on_a_utc_host(
    wechat: WeChat, local: tuple[int, int, int, int, int], status: str
) -> None:
    with time_machine.travel(on_utc_host(*local), tick=False):
        assert time.localtime().tm_gmtoff == 0, "the server's own zone must be UTC here"
        text = await wechat.tap("HALL_INFO")

    assert status in text.splitlines()
    assert_whole_reply(text)


async def test_the_hall_page_on_a_statutory_holiday_does_not_say_open(wechat: WeChat) -> None:
    """On 国庆节 10:00 it said 正在开放 while 取号 said the hall was shut for the holiday."""
    with time_machine.travel(on_utc_host(2025, 10, 1, 10, 0), tick=False):
        page = await wechat.tap("HALL_INFO")
        hours = await wechat.say("几点开门")

    for text in (page, hours):
        assert "当前：今天休息，下次开放：周四（10月9日）9:00" in text.splitlines(), text
        assert "正在开放" not in text


async def test_early_morning_utc_date_is_not_the_hall_date(wechat: WeChat) -> None:
    """At 07:30 Friday in the hall it is still Thursday in UTC: Friday's hours apply."""
    with time_machine.travel(on_utc_host(2025, 12, 5, 7, 30), tick=False):
        assert datetime.now().date().day == 4
        text = await wechat.say("几点开门")

    assert "当前：尚未开门，今天9:00开始办理" in text.splitlines()


async def test_closed_week_says_so_instead_of_a_next_opening(wechat: WeChat) -> None:
    await Hall.filter(kind="main").update(hours=[])
    forget_halls()  # a query-set update sends no signal

    text = await wechat.tap("HALL_INFO")

    assert "当前：暂停开放，请留意中心通知" in text.splitlines()
    assert_whole_reply(text)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("进驻部门", "人力资源和社会保障局"),
        ("有哪些部门", "税务局"),
        ("便民服务", "免费打印"),
        ("功能分区", "24小时自助服务区"),
        ("停车", "停车："),
        ("怎么去", "公交："),
        ("交通", "自驾："),
        ("几点开门", "开放时间】"),
        ("地址", "地址："),
    ],
)
async def test_typed_words_open_the_part_asked_for(
    wechat: WeChat, words: str, expected: str
) -> None:
    text = await wechat.say(words)

    assert expected in text
    assert_whole_reply(text)


async def test_every_menu_word_of_hall_info_is_answered_here(wechat: WeChat) -> None:
    name = (await Hall.get(kind="main")).name
    for words in words_of("HALL_INFO"):
        text = await wechat.say(words)
        assert text.startswith(f"【{name}"), words
        assert_whole_reply(text)


async def test_spoken_question_is_answered_like_a_typed_one(wechat: WeChat) -> None:
    reply = await wechat.send(Platform.voice(OPENID, "几点开门？"))

    assert reply is not None
    assert "开放时间】" in reply["Content"]
    assert_whole_reply(reply["Content"])


async def test_long_unit_list_is_shortened_never_cut(wechat: WeChat) -> None:
    main = await Hall.get(kind="main")
    units = [f"第{n}个很长很长名字的进驻政府工作部门" for n in range(1, 121)]
    main.details = {**main.details, "units": units}
    await main.save()

    text = await wechat.say("进驻部门")

    assert_whole_reply(text)
    assert units[0] in text
    assert units[-1] not in text
    assert "等120个部门" in text


async def test_hall_without_details_still_answers(wechat: WeChat) -> None:
    await Hall.filter(kind="main").update(details={})
    forget_halls()  # a query-set update sends no signal

    for words in ("中心概况", "进驻部门", "便民服务", "功能分区", "交通"):
        text = await wechat.say(words)
        assert "系统开了个小差" not in text, words
        assert_whole_reply(text)


async def test_old_transport_text_is_shown_whole(wechat: WeChat) -> None:
    """`transport` was once a single string; it must not be spelled out character by character."""
    await Hall.filter(kind="main").update(details={"transport": "公交：中心站下车"})
    forget_halls()  # a query-set update sends no signal

    text = await wechat.say("交通")

    assert "公交：中心站下车" in text.splitlines()


async def test_missing_main_hall_is_a_polite_refusal(wechat: WeChat) -> None:
    await Hall.filter(kind="main").delete()
    forget_halls()  # a query-set update sends no signal

    text = await wechat.tap("HALL_INFO")

    assert "中心信息暂时无法查看" in text
    assert_whole_reply(text)


OURS = ("hall_info", "branches", "consult")


@pytest.mark.parametrize(
    ("words", "service"),
    [
        ("便民服务有哪些", "hall_info"),
        ("进驻部门 有哪些", "hall_info"),
        ("交通违章", "consult"),
        ("取号便民服务", None),
        ("预约便民服务", None),
        ("有哪些部门可以预约", None),
        ("我最近的预约", None),
    ],
)
async def test_hall_words_beside_another_services_word_are_left_to_it(
    wechat: WeChat, caplog: pytest.LogCaptureFixture, words: str, service: str | None
) -> None:
    """Our follow-up words once took "取号便民服务" away from the queue by being longer."""
    caplog.set_level(logging.INFO, logger="bot.app")

    await wechat.say(words)

    handled = [r.getMessage() for r in caplog.records if "message handled" in r.getMessage()]
    seen = handled[-1].split("service=")[1].split()[0]
    if service is None:
        assert seen not in OURS, words
    else:
        assert seen == service
