"""The staff API for bookings: the day's list per category, no-shows and closures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient

from models import booking as bookings
from models.booking import Booking, BookingSlot, Person
from models.booking_rules import booking_rules
from models.calendar import Closure
from models.hall import Category, Hall
from models.notice import Notice
from tests.bot.test_staff_api import ADMIN, W01, get, post
from tests.models.test_booking import frozen_at, local

TUESDAY = date(2026, 3, 3)
NINE = 9 * 60


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with frozen_at(local(2026, 3, 2, 10)) as traveller:
        yield traveller


async def booked(openid: str, *, category: str = "livelihood", start: int = NINE) -> Booking:
    place = await Hall.get(code="main"), await Category.get(code=category)
    return await bookings.book(
        openid, *place, TUESDAY, start, Person("张三丰", "13800138000"), local(2026, 3, 2, 10),
        booking_rules(),
    )  # fmt: skip


async def test_the_days_bookings_are_listed_per_category_with_masked_contacts(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    first = await booked("o1")
    await booked("o2", category="tax", start=NINE + 30)

    status, body = await get(app_client, "/halls/main/bookings?day=2026-03-03", ADMIN)

    assert status == 200
    assert [g["category"] for g in body["categories"]] == ["livelihood", "tax"]
    shown = body["categories"][0]["bookings"][0]
    assert shown["code"] == first.code and shown["slot"] == "09:00-09:30"
    assert (shown["name"], shown["mobile"]) == ("张**", "138****8000")
    assert "openid" not in shown and "13800138000" not in str(body)


async def test_the_list_can_be_narrowed_to_one_category(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    await booked("o1")
    await booked("o2", category="tax")

    _, body = await get(app_client, "/halls/main/bookings?day=2026-03-03&category=tax", W01)

    assert [g["category"] for g in body["categories"]] == ["tax"]


async def test_a_window_of_another_hall_sees_nothing_and_a_bad_day_is_refused(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    status, _ = await get(app_client, "/halls/community/bookings", W01)
    bad, body = await get(app_client, "/halls/main/bookings?day=tuesday", W01)
    anonymous = await app_client.get("/api/staff/halls/main/bookings")

    assert status == 403
    assert (bad, body["error"]) == (400, "day_invalid")
    assert anonymous.status == 401


async def test_no_shows_are_marked_once_the_check_in_window_closed(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    early = await booked("o1")
    later = await booked("o2", start=11 * 60)
    clock.move_to(local(2026, 3, 3, 9, 16).astimezone(UTC))

    status, body = await post(app_client, "/halls/main/bookings/no-shows", W01, {})

    assert status == 200 and body["marked"] == [early.id] and body["skipped"] == []
    assert (await Booking.get(id=early.id)).status == "missed"
    assert (await Booking.get(id=later.id)).status == "booked"
    notice = await Notice.get(kind="booking_cancelled", ref=f"booking:{early.id}")
    assert notice.openid == "o1"
    again = await post(app_client, "/halls/main/bookings/no-shows", W01, {})
    assert again[1]["marked"] == []


async def test_no_shows_by_id_refuse_an_upcoming_booking(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    early = await booked("o1")
    later = await booked("o2", start=11 * 60)
    clock.move_to(local(2026, 3, 3, 9, 30).astimezone(UTC))

    _, body = await post(
        app_client, "/halls/main/bookings/no-shows", W01, {"ids": [early.id, later.id]}
    )
    missing, _ = await post(app_client, "/halls/main/bookings/no-shows", W01, {"ids": [999]})

    assert body["marked"] == [early.id]
    assert body["skipped"] == [
        {"id": later.id, "error": "wrong_state", "code": later.code, "status": "upcoming"}
    ]
    assert missing == 404


async def test_a_closure_cancels_that_days_bookings_and_tells_each(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    made = await booked("o1")
    body_in: dict[str, Any] = {"hall": "main", "day": "2026-03-03", "reason": "设备检修"}

    status, body = await post(app_client, "/closures", ADMIN, body_in)

    assert status == 201 and body["cancelled"] == [made.id]
    assert (await Booking.get(id=made.id)).end_reason == "closure"
    slot = await BookingSlot.get(local_day=TUESDAY, start_min=NINE)
    assert slot.booked == 0
    assert await Notice.filter(kind="booking_cancelled", ref=f"booking:{made.id}").exists()
    with pytest.raises(bookings.DayNotOpen):
        await booked("o2")
    _, listed = await get(app_client, "/closures?from=2026-03-01", ADMIN)
    assert [c["day"] for c in listed["closures"]] == ["2026-03-03"]


async def test_closures_are_for_staff_not_windows_and_can_be_removed(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    refused, body = await post(app_client, "/closures", W01, {"hall": "*", "day": "2026-03-04"})
    past, _ = await post(app_client, "/closures", ADMIN, {"hall": "*", "day": "2026-03-01"})
    _, made = await post(app_client, "/closures", ADMIN, {"hall": "*", "day": "2026-03-04"})

    removed = await app_client.delete(
        f"/api/staff/closures/{made['closure']['id']}", headers=ADMIN
    )

    assert (refused, body["error"]) == (403, "staff_only")
    assert past == 400
    assert removed.status == 200
    assert not await Closure.exists()


async def test_a_closure_for_today_refuses_takes_at_once_and_its_removal_reopens(
    app_client: TestClient, clock: time_machine.Traveller
) -> None:
    """The openings kept for takes (30 s) outlived a closure added or removed in this process."""
    from models import queue
    from models.queue_rules import HallClosed, queue_rules

    hall, at = await Hall.get(code="main"), local(2026, 3, 2, 10)
    await queue.check_open_for_remote(hall, at, queue_rules())  # open: today's opening is kept
    _, made = await post(
        app_client, "/closures", ADMIN, {"hall": "*", "day": "2026-03-02", "reason": "紧急停电"}
    )

    with pytest.raises(HallClosed):
        await queue.check_open_for_remote(hall, at, queue_rules())
    await app_client.delete(f"/api/staff/closures/{made['closure']['id']}", headers=ADMIN)
    await queue.check_open_for_remote(hall, at, queue_rules())
