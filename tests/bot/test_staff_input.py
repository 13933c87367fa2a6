"""What the staff API refuses: ids no row can have, over-long codes and texts, wrong JSON types."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from tortoise import Tortoise

from bot.services import Services
from bot.staff_input import DB_ID_MAX, as_id
from models import application as applications
from models import classroom
from models.calendar import Closure
from models.feedback import Complaint, Evaluation, FollowUp
from tests.bot.test_staff_api import ADMIN, W01, post
from tests.conftest import make_settings, start_client
from tests.models.test_application import NUMBER, OPENID, imported, row
from tests.models.test_queue import MONDAY_10, local, take

LONG = "x" * 5000  # in a path or a query too: within the 8 KiB request line
# Out of the INTEGER range (PostgreSQL: "value out of int32 range"), or no id at all.
BAD_IDS = ["99999999999999999999", str(DB_ID_MAX + 1), "0", "abc"]


@pytest.fixture(autouse=True)
def monday_morning() -> Iterator[time_machine.Coordinates]:
    """Monday 10:00 in the hall: open, far from closing."""
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


@pytest.fixture
async def ids(app_client: TestClient, services: Services) -> dict[str, int]:
    """A hall in use: a ticket called at W01, a closure, an activity, a posted certificate
    waiting for its tracking number, a complaint and a follow-up case, all open."""
    ticket = await take(None)  # nobody to tell: no notice is written while a test runs
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W01/call-next", W01)
    closure = await Closure.create(hall_code="main", day=date(2026, 3, 20), created_by="t")
    activity = await classroom.create_activity(
        {"code": "t-1", "title": "讲座", "place": "二楼", "starts_at": local(5, 14), "capacity": 3}
    )
    application = await imported(services, row("received", 9), row("ready", 15))
    await applications.find_for_citizen(services, NUMBER, "8000", OPENID)
    mail = await applications.request_mail(
        application, OPENID, "东莞市松山湖园区新城路1号", "13800138000", services.now()
    )
    now = services.now()
    complaint = await Complaint.create(
        openid="o-c", text="窗口排队时有人插队", due_at=now + timedelta(days=5), created_at=now
    )
    evaluation = await Evaluation.create(openid="o-e", level=1, rated_at=now, source="citizen")
    follow_up = await FollowUp.create(
        evaluation=evaluation,
        openid="o-e",
        opened_at=now,
        visit_due_at=now + timedelta(days=1),
        fix_due_at=now + timedelta(days=5),
    )
    return {
        "ticket": ticket.id,
        "closure": closure.id,
        "activity": activity.id,
        "mail": mail.id,
        "complaint": complaint.id,
        "follow_up": follow_up.id,
    }


async def rows() -> dict[str, list[dict[str, Any]]]:
    """Return every row of every table, to show that a refused call changed nothing."""
    models = [model for app in Tortoise.apps.values() for model in app.values()]
    return {m.__name__: list(await m.all().order_by("id").values()) for m in models}


async def refused(
    client: TestClient, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, dict[str, Any]]:
    """Call the API and return the refusal, checking it is JSON and changed nothing."""
    before = await rows()
    response = await client.request(method, f"/api/staff{path}", headers=headers, json=body)
    answer = await response.json()
    assert response.content_type == "application/json"
    assert await rows() == before
    return response.status, answer


ID_ROUTES = [
    *[("POST", f"/windows/W01/tickets/{{}}/{action}", W01) for action in ("recall", "missed")],
    *[("POST", f"/windows/W01/tickets/{{}}/{action}", W01) for action in ("start", "finish")],
    ("POST", "/windows/W01/tickets/{}/transfer", W01),
    ("GET", "/tickets/{}", W01),
    ("DELETE", "/closures/{}", ADMIN),
    ("POST", "/mail-requests/{}/tracking", ADMIN),
    ("POST", "/admin/follow-ups/{}/visit", ADMIN),
    ("POST", "/admin/follow-ups/{}/answer", ADMIN),
    ("POST", "/admin/complaints/{}/answer", ADMIN),
    ("PATCH", "/admin/activities/{}", ADMIN),
    ("POST", "/admin/activities/{}/cancel", ADMIN),
]
# A body each route would take: the refusal comes from the id alone.
GOOD_BODIES = {
    "transfer": {"category": "tax"},
    "tracking": {"carrier": "EMS", "tracking_no": "1100000000001"},
    "visit": {"note": "电话回访"},
    "answer": {"answer": "已整改"},
}


def test_ids_are_ascii_digits_or_numbers_within_the_integer_column() -> None:
    assert [as_id(v) for v in ("1", "2147483647", 7, "007")] == [1, DB_ID_MAX, 7, 7]
    bad = ["0", "2147483648", 2**31, -1, "-1", "1.0", 1.0, True, None, [1], "١٢", "１２"]
    bad += ["9" * 5000, "", " 1"]
    assert [as_id(v) for v in bad] == [None] * len(bad)


async def test_out_of_range_ticket_id_is_a_404_not_a_500(
    app_client: TestClient, ids: dict[str, int]
) -> None:
    path = "/windows/W01/tickets/99999999999999999999/finish"

    status, body = await refused(app_client, "POST", path, W01)

    assert (status, body) == (404, {"error": "ticket_not_found"})


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=lambda v: v[:24])
@pytest.mark.parametrize(
    ("method", "route", "headers"), ID_ROUTES, ids=[f"{m} {r}" for m, r, _ in ID_ROUTES]
)
async def test_an_id_no_row_can_have_is_a_404_not_a_500(
    app_client: TestClient,
    ids: dict[str, int],
    method: str,
    route: str,
    headers: dict[str, str],
    bad_id: str,
) -> None:
    body = GOOD_BODIES.get(route.rsplit("/", 1)[-1], {"title": "新标题"})
    if method in ("GET", "DELETE"):
        body = None

    status, answer = await refused(app_client, method, route.format(bad_id), headers, body)

    assert status == 404 and answer["error"].endswith("_not_found"), answer


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("POST", f"/windows/{LONG}/open", ADMIN, None),
        ("POST", f"/windows/{LONG}/call-next", W01, None),
        ("POST", f"/windows/{LONG}/tickets/1/finish", W01, None),
        ("POST", f"/halls/{LONG}/tickets", W01, {"category": "tax"}),
        ("GET", f"/halls/{LONG}/queues/tax", W01, None),
        ("GET", f"/halls/{LONG}/bookings", ADMIN, None),
        ("POST", f"/halls/{LONG}/bookings/no-shows", ADMIN, {}),
        ("POST", f"/admin/applications/{LONG}/status", ADMIN, {"status": "mailed"}),
        ("GET", f"/applications/{LONG}", ADMIN, None),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
async def test_an_over_long_code_in_the_path_is_a_404_not_a_500(
    app_client: TestClient,
    ids: dict[str, int],
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
) -> None:
    status, answer = await refused(app_client, method, path, headers, body)

    assert status == 404 and answer["error"].endswith("_not_found"), answer


TICKET = "/windows/W01/tickets/{ticket}"
STATUS = f"/admin/applications/{NUMBER}/status"
TRACKING = "/mail-requests/{mail}/tracking"
CLOSURE = {"hall": "main", "day": "2026-03-21"}
UPDATE = row("mailed", 16)
# Times that overflow when moved to UTC.
FAR, NEAR_YEAR_1 = "9999-12-31T23:59-10:00", "0001-01-01T00:00+14:00"
ACTIVITY = {"title": "讲座", "place": "二楼", "starts_at": "2026-03-09T10:00", "capacity": 5}
BAD_INPUT = [
    ("POST", TICKET + "/transfer", W01, {"category": LONG}, "category_invalid"),
    ("POST", TICKET + "/transfer", W01, {"category": ["tax"]}, "category_invalid"),
    ("POST", TICKET + "/transfer", W01, {"category": 7}, "category_invalid"),
    ("POST", TICKET + "/transfer", W01, {}, "category_invalid"),
    ("POST", "/halls/main/tickets", W01, {"category": LONG}, "category_invalid"),
    ("POST", "/halls/main/tickets", W01, {"category": {"code": "tax"}}, "category_invalid"),
    ("GET", f"/halls/main/queues/{LONG}", W01, None, "category_invalid"),
    ("GET", f"/halls/main/bookings?category={LONG}", ADMIN, None, "category_invalid"),
    ("GET", f"/halls/main/bookings?day={LONG}", ADMIN, None, "day_invalid"),
    ("GET", "/halls/main/bookings?day=9999-12-31", ADMIN, None, "day_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"ids": [2**31]}, "ids_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"ids": [10**20]}, "ids_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"ids": [True]}, "ids_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"ids": ["1"]}, "ids_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"ids": list(range(1, 502))}, "ids_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"ids": 5}, "ids_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"category": LONG}, "category_invalid"),
    ("POST", "/halls/main/bookings/no-shows", ADMIN, {"day": 20260303}, "day_invalid"),
    ("POST", "/closures", ADMIN, {**CLOSURE, "hall": LONG}, "hall_invalid"),
    ("POST", "/closures", ADMIN, {**CLOSURE, "hall": ["main"]}, "hall_invalid"),
    ("POST", "/closures", ADMIN, {**CLOSURE, "reason": LONG}, "reason_invalid"),
    ("POST", "/closures", ADMIN, {**CLOSURE, "reason": "长" * 101}, "reason_invalid"),
    ("POST", "/closures", ADMIN, {**CLOSURE, "reason": 1}, "reason_invalid"),
    ("POST", "/closures", ADMIN, {**CLOSURE, "day": ["2026-03-21"]}, "day_invalid"),
    ("GET", f"/closures?from={LONG}", ADMIN, None, "from_invalid"),
    ("POST", "/admin/applications", ADMIN, {**UPDATE, "note": LONG}, ""),
    ("POST", "/admin/applications", ADMIN, {**UPDATE, "item_name": LONG}, ""),
    ("POST", "/admin/applications", ADMIN, {**UPDATE, "unit": ["x"]}, ""),
    ("POST", "/admin/applications", ADMIN, {**UPDATE, "application_no": 1}, ""),
    ("POST", "/admin/applications", ADMIN, {**UPDATE, "is_mailable": {"x": 1}}, ""),
    ("POST", "/admin/applications", ADMIN, {**UPDATE, "at": FAR}, ""),
    ("POST", STATUS, ADMIN, {"status": "x" * 5000}, "status_invalid"),
    ("POST", STATUS, ADMIN, {"status": "mailed", "note": LONG}, "note_invalid"),
    ("POST", STATUS, ADMIN, {"status": "mailed", "at": 1}, "at_invalid"),
    ("POST", TRACKING, ADMIN, {"carrier": LONG, "tracking_no": "1"}, "carrier_invalid"),
    ("POST", TRACKING, ADMIN, {"carrier": "EMS", "tracking_no": LONG}, "tracking_no_invalid"),
    ("POST", TRACKING, ADMIN, {"carrier": ["EMS"], "tracking_no": "1"}, "carrier_invalid"),
    ("POST", TRACKING, ADMIN, {"carrier": "EMS", "tracking_no": 11}, "tracking_no_invalid"),
    ("GET", f"/mail-requests?status={LONG}", ADMIN, None, "bad_request"),
    ("GET", f"/admin/follow-ups?limit={'9' * 5000}", ADMIN, None, "limit_invalid"),
    ("GET", f"/admin/complaints?limit={10**20}", ADMIN, None, "limit_invalid"),
    ("POST", "/admin/follow-ups/{follow_up}/visit", ADMIN, {"note": LONG}, "note_invalid"),
    ("POST", "/admin/follow-ups/{follow_up}/visit", ADMIN, {"note": {"x": 1}}, "note_invalid"),
    ("POST", "/admin/follow-ups/{follow_up}/answer", ADMIN, {"answer": LONG}, "answer_invalid"),
    ("POST", "/admin/follow-ups/{follow_up}/answer", ADMIN, {"answer": 5}, "answer_invalid"),
    ("POST", "/admin/complaints/{complaint}/answer", ADMIN, {"answer": LONG}, "answer_invalid"),
    ("POST", "/admin/complaints/{complaint}/answer", ADMIN, {"answer": ["x"]}, "answer_invalid"),
    ("GET", f"/admin/evaluations?level={10**20}", ADMIN, None, "level_invalid"),
    ("GET", "/admin/evaluations?level=40000", ADMIN, None, "level_invalid"),
    ("GET", "/admin/evaluations?month=9999-12", ADMIN, None, "month_invalid"),
    ("GET", f"/admin/evaluations/stats?month={LONG}", ADMIN, None, "month_invalid"),
    ("GET", f"/admin/evaluations?limit={LONG}", ADMIN, None, "limit_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "code": LONG}, "code_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "code": ["a"]}, "code_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "title": LONG}, "title_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "title": ["t"]}, "title_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "place": 5}, "place_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "description": LONG}, "description_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "capacity": 10**20}, "capacity_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "capacity": "5"}, "capacity_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "starts_at": 2026}, "starts_at_invalid"),
    ("POST", "/admin/activities", ADMIN, {**ACTIVITY, "starts_at": FAR}, "starts_at_invalid"),
    ("PATCH", "/admin/activities/{activity}", ADMIN, {"title": LONG}, "title_invalid"),
    ("PATCH", "/admin/activities/{activity}", ADMIN, {"ends_at": NEAR_YEAR_1}, "ends_at_invalid"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "error"),
    BAD_INPUT,
    ids=[f"{m} {p[:40]} {str(b)[:40]}" for m, p, _, b, _ in BAD_INPUT],
)
async def test_over_long_or_wrongly_typed_input_is_a_400_not_a_500(
    app_client: TestClient,
    ids: dict[str, int],
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    error: str,
) -> None:
    status, answer = await refused(app_client, method, path.format(**ids), headers, body)

    assert status == 400, answer
    if "errors" in answer:  # an application row: each row is refused with its reason
        assert answer["created"] + answer["changed"] + answer["unchanged"] == 0
        assert len(answer["errors"]) == 1
    else:
        assert answer["error"] == error and answer.get("detail"), answer


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("PUT", "/tickets/1", 405), ("GET", "/windows/W01/open", 405)],
)
async def test_unknown_route_or_method_is_answered_in_json_too(
    app_client: TestClient, method: str, path: str, status: int
) -> None:
    response = await app_client.request(method, f"/api/staff{path}", headers=ADMIN)

    assert (response.status, response.content_type) == (status, "application/json")
    assert (await response.json())["error"] in ("not_found", "method_not_allowed")


async def test_staff_name_longer_than_a_window_code_is_not_a_500(
    database_url: str, db: str
) -> None:
    from bot.app import create_app

    settings = make_settings(database_url=database_url, staff_tokens=f"tok-long:{'z' * 40}")
    client = await start_client(create_app(settings, with_database=False))
    try:
        response = await client.get("/api/staff/me", headers={"Authorization": "Bearer tok-long"})
        body = await response.json()
    finally:
        await client.close()

    assert (response.status, body["name"], body["window"]) == (200, "z" * 40, None)
