"""到厅签到: the hall's code, by SCAN, by a follow with scene and by the menu's scanner."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path

import aiohttp
import pytest
import time_machine

from bot.platform_sim import Platform
from bot.services import Services
from bot.standin import StandIn
from bot.wechat_api import WeChatAPI
from handlers.checkin import create_codes
from models import booking as bookings
from models import booking_flow, queue
from models.booking import Booking, CheckinCode, Person
from models.booking_rules import booking_rules
from models.citizen import Citizen
from models.hall import Category, Hall
from models.queue import Ticket, TicketEvent
from tests.conftest import CASES_DIR, OPENID, WeChat, make_settings
from tests.models.test_booking import frozen_at, local

TUESDAY = date(2026, 3, 3)
# A mid-morning slot: its check-in window, from 30 minutes before, is inside opening hours.
TEN = 10 * 60
CASE_OPENID = "oCITIZEN000000000000000001"
ROOT = Path(__file__).resolve().parents[2]
_times = itertools.count(1)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """Tuesday 09:45 in the hall: inside the check-in window of a 10:00 booking."""
    with frozen_at(local(2026, 3, 3, 9, 45)) as traveller:
        yield traveller


async def booked(
    openid: str = OPENID, *, hall: str = "main", category: str = "livelihood", start: int = TEN
) -> Booking:
    """Book a slot on Tuesday, made on Monday."""
    place = await Hall.get(code=hall), await Category.get(code=category)
    return await bookings.book(
        openid, *place, TUESDAY, start, Person("张三", "13800138000"), local(2026, 3, 2, 10),
        booking_rules(),
    )  # fmt: skip


async def scan(
    wechat: WeChat, scene: str = "checkin:main", *, as_new_follower: bool = False
) -> str:
    """Scan a code as the platform reports it; each scan its own CreateTime, the clock frozen."""
    create_time = int(time.time()) + next(_times)
    if as_new_follower:
        fields = {"EventKey": f"qrscene_{scene}", "Ticket": "gQsim"}
        xml = Platform.event(wechat.openid, "subscribe", create_time, **fields)
    else:
        xml = Platform.event(wechat.openid, "SCAN", create_time, EventKey=scene, Ticket="gQsim")
    reply = await wechat.send(xml)
    assert reply is not None
    return str(reply["Content"])


async def test_scan_in_the_window_turns_the_booking_into_a_priority_ticket(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    walk_in = await queue.issue(
        await Hall.get(code="main"), await Category.get(code="livelihood"),
        local(2026, 3, 3, 9, 40), source="onsite", actor="window:W01",
    )  # fmt: skip
    made = await booked()

    reply = await scan(wechat)

    booking = await Booking.get(id=made.id)
    ticket = await Ticket.get(id=booking.ticket_id)
    assert (booking.status, ticket.source, ticket.priority) == ("checked_in", "booking", 10)
    assert ticket.number == "A002" and walk_in.number == "A001"
    assert "签到成功" in reply and "A002" in reply and "前面没有人在等" in reply


async def test_checked_in_booking_is_called_before_an_earlier_walk_in(
    wechat: WeChat, services: Services, clock: time_machine.Traveller
) -> None:
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    await queue.issue(hall, category, local(2026, 3, 3, 9, 40), source="onsite", actor="W01")
    await booked()
    await scan(wechat)
    window = await queue.open_window(
        await queue.Window.get(code="W01"), local(2026, 3, 3, 9, 46), None
    )

    called = await queue.call_next(window, local(2026, 3, 3, 9, 46), "W01")

    assert called is not None and called.source == "booking"


async def test_a_second_scan_gives_the_same_number(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await booked()

    first = await scan(wechat)
    second = await scan(wechat)

    assert await Ticket.filter(openid=OPENID).count() == 1
    number = (await Ticket.get(openid=OPENID)).number
    assert number in first and number in second


async def test_two_scans_at_once_issue_one_ticket(
    services: Services, db: str, clock: time_machine.Traveller
) -> None:
    await booked()
    hall = await Hall.get(code="main")

    await asyncio.gather(*(booking_flow.arrive(services, OPENID, hall) for _ in range(5)))

    assert await Ticket.filter(openid=OPENID).count() == 1
    booking = await Booking.get(openid=OPENID)
    assert booking.ticket_id == (await Ticket.get(openid=OPENID)).id


async def test_too_early_says_when_the_window_opens(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await booked()
    clock.move_to(local(2026, 3, 3, 9, 29).astimezone(UTC))

    reply = await scan(wechat)

    assert "签到时间为 09:30-10:15" in reply and "09:30 以后再扫码" in reply
    assert not await Ticket.exists(openid=OPENID)
    assert (await Booking.get(openid=OPENID)).status == "booked"


async def test_too_late_says_the_window_closed_and_offers_a_number(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await booked()
    clock.move_to(local(2026, 3, 3, 10, 16).astimezone(UTC))

    reply = await scan(wechat)

    assert "签到已于 10:15 截止" in reply and "取号" in reply
    assert not await Ticket.exists(openid=OPENID)


@pytest.mark.parametrize(("hour", "minute"), [(9, 30), (10, 15)])
async def test_both_edges_of_the_window_are_inside(
    wechat: WeChat, clock: time_machine.Traveller, hour: int, minute: int
) -> None:
    await booked()
    clock.move_to(local(2026, 3, 3, hour, minute).astimezone(UTC))

    reply = await scan(wechat)

    assert "签到成功" in reply
    assert (await Booking.get(openid=OPENID)).status == "checked_in"


async def test_a_booking_at_another_hall_is_pointed_there(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await booked(hall="community")

    reply = await scan(wechat)

    assert "预约在社区服务中心分厅" in reply
    assert not await Ticket.exists(openid=OPENID)


async def test_the_first_slots_check_in_opens_with_the_doors_not_before(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """A 9:00 booking was told to check in from 8:30, in front of a hall that opens at 9:00."""
    await booked(start=9 * 60)
    clock.move_to(local(2026, 3, 3, 8, 45).astimezone(UTC))

    early = await scan(wechat)
    clock.move_to(local(2026, 3, 3, 9, 0).astimezone(UTC))
    on_time = await scan(wechat)

    assert "签到时间为 09:00-09:15" in early and "09:00 以后再扫码" in early
    assert "签到成功" in on_time


async def test_nothing_today_lists_the_coming_bookings(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    place = await Hall.get(code="main"), await Category.get(code="tax")
    await bookings.book(
        OPENID, *place, date(2026, 3, 5), TEN, Person("张三", "13800138000"),
        local(2026, 3, 2, 10), booking_rules(),
    )  # fmt: skip

    reply = await scan(wechat)

    assert "没有预约，也没有排队号码" in reply and "3月5日 10:00 · 税务" in reply


async def test_the_scan_confirms_a_remote_ticket_holder_as_present(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    hall, category = await Hall.get(code="main"), await Category.get(code="tax")
    ticket = await queue.issue(
        hall, category, local(2026, 3, 3, 9, 40), source="remote", actor="citizen", openid=OPENID
    )

    reply = await scan(wechat)
    await scan(wechat)

    assert f"已确认您到厅：{ticket.number}" in reply
    events = await TicketEvent.filter(ticket_id=ticket.id, action="present")
    assert len(events) == 1 and events[0].note == "checkin:main"


async def test_a_waiting_remote_ticket_of_the_category_gives_way_to_the_booking(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    remote = await queue.issue(
        hall, category, local(2026, 3, 3, 9, 40), source="remote", actor="citizen", openid=OPENID
    )
    await booked()

    reply = await scan(wechat)

    assert (await Ticket.get(id=remote.id)).status == "cancelled"
    ticket = await Ticket.get(openid=OPENID, status="waiting")
    assert ticket.source == "booking" and ticket.number in reply


@pytest.mark.parametrize(
    "case", ["event_scan.xml", "event_subscribe_qrscene.xml", "event_scancode_waitmsg.xml"]
)
async def test_the_shared_cases_check_in_by_all_three_ways(
    wechat: WeChat, clock: time_machine.Traveller, case: str
) -> None:
    await booked(CASE_OPENID)
    xml = (CASES_DIR / case).read_text(encoding="utf-8")

    status, body = await wechat.post(xml)

    reply = wechat.platform.open_reply(body)
    assert status == 200 and reply is not None
    assert "签到成功" in reply["Content"]
    assert (await Booking.get(openid=CASE_OPENID)).status == "checked_in"


async def test_a_new_follower_by_the_code_is_recorded_as_following(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    reply = await scan(wechat, as_new_follower=True)

    assert "没有预约" in reply
    assert (await Citizen.get(openid=OPENID)).is_following


async def test_the_menu_scanner_reading_our_codes_link_checks_in(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    """A real code encodes the platform's link; the scanner reports that, not the scene."""
    hall = await Hall.get(code="main")
    url = "http://weixin.qq.com/q/02abcdefghijklmnopqrst"
    await CheckinCode.create(hall=hall, scene="checkin:main", ticket="gQticket", url=url)
    await booked()

    reply = await menu_scan(wechat, url)

    assert "签到成功" in reply


async def menu_scan(wechat: WeChat, result: str) -> str:
    xml = Platform.event(
        OPENID, "scancode_waitmsg", int(time.time()) + next(_times), EventKey="CHECKIN",
        ScanCodeInfo={"ScanType": "qrcode", "ScanResult": result},
    )  # fmt: skip
    reply = await wechat.send(xml)
    assert reply is not None
    return str(reply["Content"])


@pytest.mark.parametrize(
    "result", ["http://weixin.qq.com/q/unknown", "https://example.com/", "checkin:nowhere"]
)
async def test_any_other_code_is_not_taken_for_a_check_in(
    wechat: WeChat, clock: time_machine.Traveller, result: str
) -> None:
    await booked()

    reply = await menu_scan(wechat, result)

    assert "这不是大厅的签到二维码" in reply
    assert (await Booking.get(openid=OPENID)).status == "booked"


async def test_typed_words_explain_how_to_check_in(
    wechat: WeChat, clock: time_machine.Traveller
) -> None:
    await booked()

    reply = await wechat.say("我到了")

    assert "扫描大厅入口处" in reply and "签到时间 09:30-10:15" in reply
    assert (await Booking.get(openid=OPENID)).status == "booked"


# The `qr` command: permanent codes for each hall, made through the API.


async def test_codes_are_made_for_each_hall_that_takes_numbers(db: str, standin: StandIn) -> None:
    settings = make_settings(database_url=db, api_base_url=standin.url, redis_url="")
    from bot.redis_conn import connect_redis

    redis = connect_redis(settings.redis_url)
    async with aiohttp.ClientSession() as session:
        made = await create_codes(WeChatAPI(settings, redis, session))
        again = await create_codes(WeChatAPI(settings, redis, session))
    await redis.aclose()

    assert sorted(m["hall"] for m in made) == ["community", "main", "party_masses", "south"]
    assert made == again  # a permanent code is the same code when asked again
    stored = {c.scene: c.url for c in await CheckinCode.all()}
    assert stored == {m["scene"]: m["url"] for m in made}
    bodies = [r.body for r in standin.records if r.kind == "qrcode"]
    assert {b["action_name"] for b in bodies} == {"QR_LIMIT_STR_SCENE"}


async def test_the_qr_command_prints_ticket_and_link(
    db: str, standin: StandIn, tmp_path: Path
) -> None:
    settings = make_settings(database_url=db, api_base_url=standin.url)
    config = tmp_path / "settings.toml"
    config.write_text(
        "\n".join(
            f'{name} = "{getattr(settings, name)}"'
            for name in ("token", "app_id", "app_secret", "aes_key", "api_base_url")
        )
        + f'\ndatabase_url = "{db}"\nmessage_mode = "safe"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_CONFIG", "REDIS_URL")}

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "-c", str(config), "qr",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert any(line.startswith("main\tcheckin:main\tticket=gQ") for line in lines)
    assert any("url=http://weixin.qq.com/q/" in line for line in lines)
    assert await CheckinCode.filter(scene="checkin:main").exists()
