"""预约办事 and 我的预约 in chat: four replies to a booking, cancel, move, notices, reminders."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from bot import keys
from bot.cli import OUR_LOGGERS
from bot.platform_sim import Platform
from bot.services import Services
from models import booking as bookings
from models import booking_flow
from models.booking import Booking, BookingProfile, BookingSlot, Person
from models.booking_rules import booking_rules
from models.citizen import Citizen
from models.hall import Category, Hall
from models.notice import Notice
from tests.conftest import OPENID, WeChat
from tests.models.test_booking import BEIJING, frozen_at, local
from tests.models.test_booking_rules import VALID_ID

# Monday 2 March 2026, 10:00 in the hall.
MONDAY_10 = local(2026, 3, 2, 10)
MAIN = "松山湖市民服务中心"


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with frozen_at(MONDAY_10) as traveller:
        yield traveller


def index_of(listing: str, text: str, *, after: str = "") -> str:
    """Return the number a list gives the first line containing `text` (below `after`)."""
    section = listing.split(after, 1)[1] if after else listing
    line = next(line for line in section.splitlines() if text in line and ". " in line)
    return line.split(".", 1)[0].strip()


async def remember(openid: str = OPENID) -> None:
    await bookings.remember(openid, Person("张三", "13800138000"))


async def walk_to_confirm(wechat: WeChat, category: str = "民生服务", day: str = "明天") -> str:
    """Tap 预约办事 and pick the main hall's category, a day and its first slot."""
    places = await wechat.tap("BOOKING")
    days = await wechat.say(index_of(places, category, after=f"【{MAIN}】"))
    slots = await wechat.say(index_of(days, day))
    return await wechat.say("1") if "请回复序号" in slots else slots


async def test_returning_citizen_books_in_four_replies(
    wechat: WeChat, services: Services, clock: time_machine.Traveller
) -> None:
    await remember()
    places = await wechat.tap("BOOKING")

    days = await wechat.say(index_of(places, "民生服务", after=f"【{MAIN}】"))  # reply 1
    slots = await wechat.say(index_of(days, "明天"))  # reply 2
    confirm = await wechat.say("1")  # reply 3
    booked = await wechat.say("1")  # reply 4

    assert "3月3日（周二）" in slots and "1. 09:00-09:30（余6）" in slots
    assert "张* 138****8000" in confirm and "13800138000" not in confirm
    assert "预约成功" in booked and "09:00-09:15" in booked
    booking = await Booking.get(openid=OPENID)
    assert re.search(rf"预约码：{booking.code}", booked)
    assert (booking.status, booking.start_min) == ("booked", 9 * 60)
    assert booking.starts_at == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)
    assert await Notice.filter(kind="booking_booked", ref=f"booking:{booking.id}").exists()


async def test_reminders_are_queued_for_the_evening_before_and_an_hour_before(
    wechat: WeChat, services: Services, clock: time_machine.Traveller
) -> None:
    await remember()
    assert "预约成功" in await walk_and_book(wechat)

    booking = await Booking.get(openid=OPENID)
    assert services.jobs is not None
    jobs = {
        j.job_id: j
        for j in await services.jobs.queued_jobs()
        if j.function == booking_flow.REMIND_JOB
    }
    due = {
        key.rsplit(":", 1)[1]: datetime.fromtimestamp(j.score / 1000, UTC).astimezone(BEIJING)
        for key, j in jobs.items()
        if key and j.score
    }
    assert due == {"evening": local(2026, 3, 2, 20), "hour": local(2026, 3, 3, 8)}
    assert all(j.args[:2] == (booking.id, 0) for j in jobs.values())


async def walk_and_book(wechat: WeChat, category: str = "民生服务", day: str = "明天") -> str:
    return (
        await wechat.say("1") if "请确认" in (await walk_to_confirm(wechat, category, day)) else ""
    )


async def test_a_reminder_checks_at_run_time_that_the_booking_is_still_there(
    services: Services, db: str, clock: time_machine.Traveller
) -> None:
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    tuesday = MONDAY_10.date() + timedelta(days=1)
    person = Person("张三", "13800138000")
    booking = await booking_flow.book(services, "o1", hall, category, tuesday, 9 * 60, person)
    ctx = {"services": services}

    clock.move_to(local(2026, 3, 2, 20).astimezone(UTC))
    assert await booking_flow.remind(ctx, booking.id, 0, "evening") == "sent"
    assert await booking_flow.remind(ctx, booking.id, 0, "evening") == "claimed"

    clock.move_to(local(2026, 3, 2, 21).astimezone(UTC))
    moved = await booking_flow.move(services, booking, tuesday, 10 * 60)
    assert await booking_flow.remind(ctx, booking.id, 0, "hour") == "stale"
    assert await booking_flow.remind(ctx, booking.id, moved.moves, "hour") == "sent"

    other = await booking_flow.book(services, "o2", hall, category, tuesday, 11 * 60, person)
    await booking_flow.cancel(services, other)
    assert await booking_flow.remind(ctx, other.id, 0, "hour") == "stale"

    sent = await Notice.filter(kind="booking_reminder").values_list("ref", flat=True)
    assert sorted(sent) == [f"booking:{booking.id}:evening", f"booking:{booking.id}:m1:hour"]


async def test_a_reminder_whose_job_was_lost_is_sent_by_the_sweep(
    services: Services, db: str, clock: time_machine.Traveller
) -> None:
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    tuesday = MONDAY_10.date() + timedelta(days=1)
    await bookings.book(
        "o1", hall, category, tuesday, 9 * 60, Person("张三", "13800138000"),
        MONDAY_10, booking_rules(),
    )  # fmt: skip
    ctx = {"services": services}

    clock.move_to(local(2026, 3, 2, 19, 59).astimezone(UTC))
    assert await booking_flow.remind_overdue(ctx) == 0
    clock.move_to(local(2026, 3, 2, 20, 5).astimezone(UTC))
    assert await booking_flow.remind_overdue(ctx) == 1
    assert await booking_flow.remind_overdue(ctx) == 0


async def test_the_sweep_sends_no_reminder_whose_moment_came_before_the_booking(
    services: Services, db: str, clock: time_machine.Traveller
) -> None:
    """Booked at 20:30 for the next morning: the 20:00 reminder was never due."""
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    tuesday = MONDAY_10.date() + timedelta(days=1)
    person = Person("张三", "13800138000")
    clock.move_to(local(2026, 3, 2, 20, 30).astimezone(UTC))
    made = await booking_flow.book(services, "o1", hall, category, tuesday, 9 * 60, person)
    moved = await booking_flow.book(services, "o2", hall, category, tuesday, 10 * 60, person)
    clock.move_to(local(2026, 3, 2, 20, 40).astimezone(UTC))
    await booking_flow.move(services, moved, tuesday, 11 * 60)

    clock.move_to(local(2026, 3, 2, 20, 45).astimezone(UTC))
    assert await booking_flow.remind_overdue({"services": services}) == 0

    assert not await Notice.filter(kind="booking_reminder").exists()
    assert made.status == "booked"


async def test_new_citizen_gives_name_and_mobile_once(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    asked = await walk_to_confirm(wechat)
    assert "姓名和手机号" in asked

    confirm = await wechat.say("李四 139-1234-5678")
    booked = await wechat.say("1")

    assert "李* 139****5678" in confirm and "预约成功" in booked
    profile = await BookingProfile.get(openid=OPENID)
    assert (profile.name, profile.mobile) == ("李四", "13912345678")
    second = await walk_to_confirm(wechat, "便民服务")
    assert "请确认预约信息" in second and "李* 139****5678" in second


async def test_a_wrong_mobile_is_asked_again_and_nothing_is_kept(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await walk_to_confirm(wechat)

    again = await wechat.say("李四 1391234567")

    assert "手机号不正确" in again
    assert not await BookingProfile.exists(openid=OPENID)
    assert "请确认预约信息" in await wechat.say("李四 13912345678")


async def test_a_name_of_emoji_is_told_what_a_name_may_hold_not_how_long(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """😀😀 is two characters: 至少2个字 told the citizen the wrong thing to mend."""
    await walk_to_confirm(wechat)

    again = await wechat.say("😀😀 13912345678")

    assert "汉字或字母" in again and "至少2个字" not in again
    assert not await BookingProfile.exists(openid=OPENID)


async def test_id_number_is_asked_where_the_category_needs_it_and_kept_as_last_4_only(
    wechat: WeChat, clock: time_machine.Traveller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await remember()
    asked = await walk_to_confirm(wechat, "企业开办")
    assert "身份证号" in asked

    refused = await wechat.say("110105194912310021")
    confirm = await wechat.say(VALID_ID)
    booked = await wechat.say("1")

    assert "校验不通过" in refused
    assert "尾号002X" in confirm and "预约成功" in booked
    booking = await Booking.get(openid=OPENID)
    assert booking.id_last4 == "002X" and len(booking.id_hash) == 64
    stored = [str(v) for v in (await Booking.filter(openid=OPENID).values())[0].values()]
    stored += [str(v) for v in (await BookingProfile.filter(openid=OPENID).values())[0].values()]
    assert not any(VALID_ID.lower() in v.lower() for v in stored)
    ours = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in OUR_LOGGERS]
    assert ours and not any(VALID_ID in m or "13800138000" in m for m in ours)


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_cancel_word_leaves_at_any_step_and_keeps_nothing(
    wechat: WeChat, services: Services, clock: time_machine.Traveller, steps: int
) -> None:
    listing = await wechat.tap("BOOKING")
    for answer in [index_of(listing, "民生服务", after=f"【{MAIN}】"), "1", "1"][:steps]:
        await wechat.say(answer)

    left = await wechat.say("取消")

    assert "已取消当前操作" in left
    assert await services.redis.get(keys.dialog_key(OPENID)) is None
    assert not await Booking.exists(openid=OPENID)
    assert not await BookingProfile.exists(openid=OPENID)
    assert "预约成功" not in await wechat.say("1")  # "1" is read afresh, confirms nothing


async def test_a_bad_choice_asks_again_and_keeps_the_list(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await wechat.tap("BOOKING")

    again = await wechat.say("99")

    assert "请回复 1 到" in again
    assert "请回复序号选择日期" in await wechat.say("1")


async def test_the_slot_taken_meanwhile_offers_the_other_slots(
    wechat: WeChat, services: Services, clock: time_machine.Traveller
) -> None:
    await remember()
    await walk_to_confirm(wechat)
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    tuesday = MONDAY_10.date() + timedelta(days=1)
    for i in range(booking_rules().capacity_of("main", "livelihood")):
        await bookings.book(
            f"o{i}", hall, category, tuesday, 9 * 60, Person("王五", "13700000000"),
            MONDAY_10, booking_rules(),
        )  # fmt: skip

    offered = await wechat.say("1")

    assert "09:00-09:30 刚刚约满" in offered
    assert "1. 09:30-10:00" in offered
    assert "请确认" in await wechat.say("1")
    assert "预约成功" in await wechat.say("1")
    assert (await Booking.get(openid=OPENID)).start_min == 9 * 60 + 30


async def test_words_with_a_category_skip_to_the_halls_that_serve_it(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """工程建设 is served by the main hall only: "预约 工程建设" goes straight to the dates."""
    reply = await wechat.say("预约 工程建设")

    assert "请回复序号选择日期（松山湖市民服务中心 · 工程建设）" in reply


async def test_voice_starts_a_booking_like_typing(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    reply = await wechat.send(Platform.voice(OPENID, "我要预约。"))

    assert reply is not None and "请回复序号选择办事大厅" in reply["Content"]


async def test_a_day_already_booked_in_the_category_is_refused_in_the_dialog(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await remember()
    await walk_and_book(wechat)
    places = await wechat.tap("BOOKING")
    days = await wechat.say(index_of(places, "民生服务", after=f"【{MAIN}】"))

    refused = await wechat.say(index_of(days, "明天"))

    assert "同一业务每天只能预约一次" in refused
    assert "请回复序号" in await wechat.say(index_of(days, "今天"))


async def test_my_bookings_lists_and_cancels_by_number(
    wechat: WeChat, services: Services, clock: time_machine.Traveller
) -> None:
    await remember()
    await walk_and_book(wechat)
    booking = await Booking.get(openid=OPENID)

    listing = await wechat.tap("BOOKING_MINE")
    cancelled = await wechat.say("取消1")
    again = await wechat.say("取消1")

    assert f"1. 民生服务 · {MAIN}" in listing and booking.code in listing
    assert "已取消预约" in cancelled
    assert "没有找到这个预约" in again
    slot = await BookingSlot.get(local_day=booking.local_day, start_min=booking.start_min)
    assert slot.booked == 0
    notice = await Notice.get(kind="booking_cancelled", ref=f"booking:{booking.id}")
    assert notice.openid == OPENID
    assert "您目前没有预约" in await wechat.tap("BOOKING_MINE")


async def test_cancel_by_booking_code(wechat: WeChat, clock: time_machine.Traveller) -> None:
    await remember()
    await walk_and_book(wechat)
    booking = await Booking.get(openid=OPENID)

    assert "已取消预约" in await wechat.say(f"取消预约{booking.code}")


async def test_move_keeps_the_code_and_sends_a_new_booked_notice(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await remember()
    await walk_and_book(wechat)
    before = await Booking.get(openid=OPENID)

    days = await wechat.say("改约1")
    slots = await wechat.say(index_of(days, "3月4日"))
    moved = await wechat.say(index_of(slots, "10:00-10:30"))

    assert "改约：民生服务" in days
    assert "改约成功" in moved and before.code in moved and "3月4日（周三） 10:00-10:30" in moved
    after = await Booking.get(id=before.id)
    assert (after.local_day.day, after.start_min, after.moves) == (4, 10 * 60, 1)
    assert await Notice.filter(kind="booking_booked", ref=f"booking:{before.id}:m1").exists()
    old = await BookingSlot.get(local_day=before.local_day, start_min=before.start_min)
    assert old.booked == 0


async def test_cancel_after_the_deadline_is_refused_with_the_reason(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await remember()
    await walk_and_book(wechat)
    clock.move_to(local(2026, 3, 3, 7, 30).astimezone(UTC))

    refused = await wechat.say("取消1")

    assert "开始前2小时内不能再取消或改约" in refused
    assert (await Booking.get(openid=OPENID)).status == "booked"


async def test_suspended_citizen_is_told_until_when(
    wechat: WeChat, services: Services, clock: time_machine.Traveller
) -> None:
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    rules = booking_rules()
    for day in (2, 10, 26):
        at = local(2026, 2, day, 8) - timedelta(days=1)
        made = await bookings.book(
            OPENID, hall, category, at.date() + timedelta(days=1), 9 * 60,
            Person("张三", "13800138000"), at, rules,
        )  # fmt: skip
        await bookings.mark_missed(made, local(2026, 2, day, 12), rules)

    refused = await wechat.tap("BOOKING")

    assert "3月28日起才能再次预约" in refused


async def test_unfollow_deletes_the_citizens_personal_fields(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await wechat.send(Platform.event(OPENID, "subscribe", int(time.time()) - 60))
    await remember()
    await walk_and_book(wechat)

    await wechat.send(Platform.event(OPENID, "unsubscribe"))

    booking = await Booking.get(openid=OPENID)
    assert (booking.name, booking.mobile, booking.status) == ("", "", "cancelled")
    assert not await BookingProfile.exists(openid=OPENID)
    assert not (await Citizen.get(openid=OPENID)).is_following


async def test_a_booking_made_inside_the_change_deadline_promises_no_change_or_past_reminder(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """Booked at 10:00 for 11:00 the same day, the reply said a reminder would come the evening
    before and to reply 我的预约 to cancel up to 2 hours before: both already impossible."""
    await remember()

    booked = await walk_and_book(wechat, day="今天")

    hall = await Hall.get(code="main")
    assert "预约成功" in booked and "11:00" in booked
    assert "前一天晚上" not in booked and "如需取消或改约" not in booked
    assert "不能再取消或改约" in booked and hall.phone and hall.phone in booked
    refused = await wechat.say("取消1")
    assert "不能再取消或改约" in refused and hall.phone in refused


async def test_my_bookings_offers_no_cancel_or_move_past_the_deadline(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """我的预约 offered 取消1 / 改约1 for a booking already past its change deadline; the
    refusal came only on the reply."""
    await remember()
    assert "预约成功" in await walk_and_book(wechat, day="今天")

    mine = await wechat.tap("BOOKING_MINE")

    assert "已过取消和改约的截止时间" in mine
    assert "回复“取消1”" not in mine and "回复“预约”" in mine


async def test_my_bookings_gives_as_its_example_a_booking_that_can_be_changed(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """With booking 1 past its deadline and booking 2 open, the footer said 回复“取消1”,
    which was then refused."""
    await remember()
    assert "预约成功" in await walk_and_book(wechat, day="今天")
    assert "预约成功" in await walk_and_book(wechat, category="税务", day="明天")

    mine = await wechat.tap("BOOKING_MINE")

    assert "回复“取消2”取消第2个预约" in mine and "回复“取消1”" not in mine


async def test_the_confirmation_warns_before_a_booking_that_cannot_be_changed(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """The slot an hour away was confirmed with no word that it could not be cancelled; the
    booked reply said so only afterwards."""
    await remember()

    today = await walk_to_confirm(wechat, day="今天")
    assert "请确认预约信息" in today and "预约后不能再取消或改约" in today
    await wechat.say("取消")
    tomorrow = await walk_to_confirm(wechat)
    assert "请确认预约信息" in tomorrow and "不能再取消" not in tomorrow
