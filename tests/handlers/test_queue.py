"""提前取号 and 排队进度 in chat: two taps to a number, its progress, cancel and re-queue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from bot.app import SERVICES
from bot.platform_sim import Platform
from bot.services import Services
from handlers.queue import Place, _chosen
from models import queue, queue_flow, queue_rules
from models.hall import Category, Hall
from models.queue import Ticket
from tests.conftest import OPENID, WeChat, claimed_notice
from tests.models.test_queue import MONDAY_10, local, opened, take

UTC_HOST = ZoneInfo("UTC")


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """Monday 10:00 in the hall, on a host whose own zone is UTC."""
    with time_machine.travel(MONDAY_10.astimezone(UTC_HOST), tick=False) as traveller:
        yield traveller


def index_of(listing: str, hall: str, category: str, brackets: str = "【】") -> str:
    """Return the number the list gives a category under a hall's heading."""
    opening, closing = brackets
    section = listing.split(f"{opening}{hall}{closing}", 1)[1].split(opening, 1)[0]
    line = next(line for line in section.splitlines() if line.endswith(f". {category}"))
    return line.split(".", 1)[0]


async def take_by_chat(wechat: WeChat, category: str = "民生服务") -> str:
    listing = await wechat.tap("QUEUE_TAKE")
    return await wechat.say(index_of(listing, "松山湖市民服务中心", category))


async def test_part_of_a_category_name_in_the_list_takes_it(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """The list asks for a name (如“民生服务”); 民生 was no answer and left it."""
    await wechat.tap("QUEUE_TAKE")

    reply = await wechat.say("民生")

    assert "取号成功" in reply and "民生服务" in reply and "松山湖市民服务中心" in reply


async def test_part_of_a_hall_name_in_the_list_narrows_to_its_categories(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("QUEUE_TAKE")

    narrowed = await wechat.say("社区")

    assert "【社区服务中心分厅】" in narrowed and "【松山湖市民服务中心】" not in narrowed


async def test_two_taps_give_a_number_with_the_wait(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take("o-before")
    listing = await wechat.tap("QUEUE_TAKE")
    assert "【松山湖市民服务中心】" in listing and "【社区服务中心分厅】" in listing

    reply = await wechat.say(index_of(listing, "松山湖市民服务中心", "民生服务"))

    assert "A002" in reply
    assert "前面还有 1 人" in reply
    assert "排队进度" in reply
    ticket = await Ticket.get(openid=OPENID)
    assert (ticket.number, ticket.source, ticket.status) == ("A002", "remote", "waiting")


async def test_taken_number_queues_the_taken_notice(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take_by_chat(wechat)

    ticket = await Ticket.get(openid=OPENID)
    notice = await claimed_notice(
        wechat.client.app[SERVICES], f"ticket:{ticket.id}", "ticket_taken"
    )
    assert notice.openid == OPENID


async def test_typed_words_with_a_category_take_it_at_once(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """工程建设 is served at one hall only: "取号 工程建设" needs no list."""
    reply = await wechat.say("取号 工程建设")

    assert "C001" in reply


async def test_voice_works_like_typing(wechat: WeChat, clock: time_machine.Coordinates) -> None:
    reply = await wechat.send(Platform.voice(OPENID, "我要取号。"))

    assert reply is not None and "请回复序号" in reply["Content"]


async def test_unknown_choice_asks_again_and_keeps_the_list(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("QUEUE_TAKE")

    again = await wechat.say("99")

    assert "请回复 1 到" in again
    assert "A001" in await wechat.say("1")


async def test_choice_by_category_name_in_the_dialog(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("QUEUE_TAKE")

    assert "C001" in await wechat.say("工程建设")


async def test_closed_hall_refuses_with_its_hours(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    clock.move_to(local(2, 20).astimezone(UTC_HOST))

    reply = await wechat.tap("QUEUE_TAKE")

    assert "不在取号时间" in reply and "明天 09:00" in reply
    assert not await Ticket.exists()


async def test_hall_about_to_close_refuses(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    clock.move_to(local(2, 17, 45).astimezone(UTC_HOST))

    reply = await wechat.tap("QUEUE_TAKE")

    assert "18:00 下班" in reply
    assert not await Ticket.exists()


async def test_quota_used_up_refuses(
    wechat: WeChat, clock: time_machine.Coordinates, monkeypatch: pytest.MonkeyPatch
) -> None:
    tight = replace(queue_rules.load_rules(), quotas={"main": {"livelihood": 1}})
    monkeypatch.setattr(queue_rules, "queue_rules", lambda: tight)
    monkeypatch.setattr(queue, "queue_rules", lambda: tight)
    monkeypatch.setattr(queue_flow, "queue_rules", lambda: tight)
    await take("o-first", rules=tight)

    reply = await take_by_chat(wechat)

    assert "名额已经取完" in reply
    assert not await Ticket.filter(openid=OPENID).exists()


async def test_second_ticket_in_a_category_is_refused(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take_by_chat(wechat)

    reply = await take_by_chat(wechat)

    assert "A001" in reply and "只能持有一个号码" in reply
    assert await Ticket.filter(openid=OPENID).count() == 1


async def test_status_shows_people_ahead_wait_and_windows(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    for i in range(3):
        await take(f"o{i}")
    await take_by_chat(wechat)
    await opened("W01")

    reply = await wechat.tap("QUEUE_STATUS")

    assert "A004" in reply
    assert "前面还有 3 人" in reply
    assert "正在办理窗口：1号窗口" in reply
    assert "预计等候约 45 分钟" in reply  # 3 ahead x 15 min (no history) / 1 open window


async def test_status_without_tickets_says_how_to_take_one(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    reply = await wechat.say("排队进度")

    assert "没有在排队的号码" in reply and "取号" in reply


async def test_status_of_a_called_ticket_names_the_window(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take_by_chat(wechat)
    window = await opened("W02")
    await queue.call_next(window, MONDAY_10, "W02")

    reply = await wechat.tap("QUEUE_STATUS")

    assert "请立即到2号窗口办理" in reply


async def test_cancel_by_number_frees_the_category(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take_by_chat(wechat)

    reply = await wechat.say("取消 a001")

    assert "已取消 A001" in reply
    assert (await Ticket.get(openid=OPENID)).status == "cancelled"
    assert "A002" in await take_by_chat(wechat)


async def test_cancel_without_number_takes_the_only_ticket(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take_by_chat(wechat)

    assert "已取消 A001" in await wechat.say("取消排队")


async def test_cancel_with_two_tickets_asks_which(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take_by_chat(wechat)
    await take_by_chat(wechat, "税务")

    reply = await wechat.say("取消排队")

    assert "E001" in reply and "A001" in reply and "取消+号码" in reply
    assert await Ticket.filter(status="cancelled").count() == 0


async def test_cancelling_a_number_cancelled_already_says_so_not_that_it_is_unknown(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """A second 取消A001 answered 没有找到您今天的号码 A001: it had only been cancelled."""
    await take_by_chat(wechat)
    assert "已取消 A001" in await wechat.say("取消A001")

    again = await wechat.say("取消A001")

    assert "A001" in again and "已取消" in again and "没有找到" not in again
    assert "排队进度" in again


async def test_cancel_of_someone_elses_number_is_not_found(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    other = await take("o-other")

    reply = await wechat.say(f"取消{other.number}")

    assert "没有找到您今天的号码 A001" in reply
    assert (await Ticket.get(id=other.id)).status == "waiting"


async def test_missed_ticket_requeues_once_by_chat(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await take_by_chat(wechat)
    await take("o-behind")
    window = await opened("W01")
    ticket = await queue.call_next(window, MONDAY_10, "W01")
    assert ticket is not None
    await queue.mark_missed(window, ticket.id, MONDAY_10, "W01", queue_rules.queue_rules())
    assert "重排A001" in await wechat.tap("QUEUE_STATUS")

    reply = await wechat.say("重排A001")

    assert "已为您重新排队" in reply and "前面还有 1 人" in reply
    again = await wechat.say("重新排队")
    assert "没有可以重新排队的号码" in again


async def test_taking_at_23_59_59_and_00_00_01_beijing_on_a_utc_host(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """Numbers restart at the hall's midnight, 16:00 UTC; the day's ticket does not block."""
    await Hall.filter(code="main").update(
        hours=[{"days": [1, 2, 3, 4, 5, 6, 7], "open": "00:00", "close": "24:00"}]
    )
    clock.move_to(datetime(2026, 3, 2, 15, 59, 59, tzinfo=UTC_HOST))
    assert datetime.now().hour == 15  # the host's own zone is UTC
    first = await take_by_chat(wechat)
    await take("o-late", local(2, 23, 59, 59))

    clock.move_to(datetime(2026, 3, 2, 16, 0, 1, tzinfo=UTC_HOST))
    after_midnight = await take_by_chat(wechat)

    assert "A001" in first and "A001" in after_midnight
    days = await Ticket.filter(openid=OPENID).order_by("id").values_list("local_day", "status")
    assert days == [(date(2026, 3, 2), "expired"), (date(2026, 3, 3), "waiting")]


async def test_taking_at_07_30_beijing_counts_for_the_beijing_day(
    wechat: WeChat, clock: time_machine.Coordinates, services: Services
) -> None:
    await Hall.filter(code="main").update(
        hours=[{"days": [1, 2, 3, 4, 5, 6, 7], "open": "07:00", "close": "18:00"}]
    )
    clock.move_to(datetime(2026, 3, 2, 23, 30, tzinfo=UTC))  # Tuesday 07:30 in Beijing

    reply = await take_by_chat(wechat)

    assert "A001" in reply
    assert services.today() == date(2026, 3, 3)
    assert (await Ticket.get(openid=OPENID)).local_day == date(2026, 3, 3)
    assert "A001" in await wechat.tap("QUEUE_STATUS")


async def test_holiday_refusal_names_the_holiday_and_the_next_opening(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    clock.move_to(datetime(2026, 5, 1, 2, tzinfo=UTC))  # 10:00 in Beijing, 劳动节

    reply = await wechat.tap("QUEUE_TAKE")

    assert "今天不开放（劳动节）" in reply
    assert "下次开放：周三 09:00" in reply  # 劳动节 lasts to Tuesday 5 May
    assert not await Ticket.exists()


async def test_category_name_with_several_halls_is_accepted(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """民生服务 is served at several halls: the name typed in the list takes the main hall's."""
    await wechat.tap("QUEUE_TAKE")

    reply = await wechat.say("民生服务")

    assert "A001" in reply and "松山湖市民服务中心" in reply
    ticket = await Ticket.get(openid=OPENID)
    assert (await ticket.hall).kind == "main"


def test_category_name_with_several_branch_halls_asks_which_hall() -> None:
    """Without the main hall among them, every hall serving the category is offered again."""
    livelihood, tax = Category(id=1, name="民生服务"), Category(id=2, name="税务")
    halls = [Hall(id=n, name=f"分厅{n}", kind="branch") for n in (1, 2)]
    options = [Place(hall, category) for hall in halls for category in (livelihood, tax)]

    assert _chosen("民生服务", options) == [options[0], options[2]]
    assert _chosen("分厅2 民生服务", options) == [options[2]]
    assert _chosen("2", options) == [options[1]]


async def test_other_question_mid_dialog_routes_afresh(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """Words that are no option leave the list and are answered as if it were not open."""
    await wechat.tap("QUEUE_TAKE")

    hours = await wechat.say("几点开门")

    assert "开放时间】" in hours and "没有找到这个选项" not in hours
    await wechat.tap("QUEUE_TAKE")
    relisted = await wechat.send(Platform.voice(OPENID, "我想取号。"))
    assert relisted is not None and "请回复序号" in relisted["Content"]
    assert "没有找到这个选项" in await wechat.say("99")


async def test_outside_remote_hours_the_list_is_not_shown(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """With no hall taking numbers, say so at once, with when and what to do, not a list."""
    clock.move_to(local(2, 20).astimezone(UTC_HOST))

    reply = await wechat.tap("QUEUE_TAKE")

    assert "暂时不能取号" in reply and "下次开放：明天 09:00" in reply and "预约" in reply
    assert "请回复序号" not in reply and "1." not in reply
    assert "没有找到这个选项" not in await wechat.say("1")


async def test_taken_with_few_ahead_says_come_now_not_a_reminder_to_come(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """With 3 or fewer ahead the "3 left" reminder cannot come: say the turn is near."""
    await opened("W01")
    await take("o-before")
    near = await take_by_chat(wechat)
    assert "前面还有 1 人" in near
    assert "前面剩" not in near and "请现在到厅" in near

    for n in range(4):
        await take(f"o-more-{n}", category="business_setup")
    far = await take_by_chat(wechat, "企业开办")
    assert "前面剩 3 人时会提醒您" in far and "请现在到厅" not in far


def test_one_option_asks_for_1_not_a_range_from_1_to_1(services: Services) -> None:
    for language, asked in (("zh", "请回复“1”"), ("en", 'reply with "1"')):
        one = services.texts.render("queue/choose_again.j2", language, count=1)
        assert asked in one and "1 到 1" not in one and "1 to 1" not in one
    assert "1 到 4" in services.texts.render("queue/choose_again.j2", "zh", count=4)


async def test_few_ahead_while_no_window_calls_is_not_told_to_come_now(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """The take said 该业务窗口暂未开始叫号 and, two lines on, 就快轮到您了，请现在到厅."""
    await take("o-before")

    taken = await take_by_chat(wechat)

    assert "暂未开始叫号" in taken and "请现在到厅" not in taken
    assert "窗口开始叫号后很快就轮到您" in taken


async def test_wait_minutes_not_shown_while_no_window_calls_the_category(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """ "约 5 分钟" next to "该业务窗口暂未开始叫号" promised a wait nobody is serving."""
    await take("o-before")
    taken = await take_by_chat(wechat)
    status = await wechat.tap("QUEUE_STATUS")

    for reply in (taken, status):
        assert "前面还有 1 人" in reply and "暂未开始叫号" in reply
        assert "分钟" not in reply and "估算等候时间" in reply
    await opened("W01")
    assert "预计等候约 15 分钟" in await wechat.tap("QUEUE_STATUS")


async def test_status_with_nobody_ahead_says_so_not_zero_people(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """Taking said 前面没有人在等; 排队进度 then said 前面还有 0 人."""
    await take_by_chat(wechat)

    status = await wechat.tap("QUEUE_STATUS")

    assert "前面没有人在等" in status and "前面还有 0 人" not in status


async def test_english_words_take_follow_and_cancel_a_number(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """In English, "take a number", "queue status" and "cancel A001" were not understood."""
    await wechat.say("English")

    listing = await wechat.say("take a number")
    taken = await wechat.say(index_of(listing, "松山湖市民服务中心", "民生服务", brackets="[]"))
    status = await wechat.say("queue status")
    cancelled = await wechat.say("cancel A001")

    assert listing.startswith("Reply with a number to choose the hall")
    assert "Your number: A001" in taken and "A001" in status
    assert cancelled.startswith("Number A001 is cancelled.")
    assert (await Ticket.get(number="A001")).status == "cancelled"
