"""The staff API: who may call, and what each window action does to the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient

from bot.app import SERVICES
from bot.staff_api import identify, parse_tokens
from models.queue import Ticket, TicketEvent, Window
from tests.conftest import claimed_notice
from tests.models.test_queue import MONDAY_10, local, take

W01 = {"Authorization": "Bearer tok-w1"}
W02 = {"Authorization": "Bearer tok-w2"}
ADMIN = {"Authorization": "Bearer tok-admin"}


@pytest.fixture(autouse=True)
def monday_morning() -> Iterator[time_machine.Coordinates]:
    """Monday 10:00 in the hall: open, far from closing."""
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


async def post(
    client: TestClient, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    response = await client.post(f"/api/staff{path}", headers=headers, json=body)
    return response.status, await response.json()


async def get(client: TestClient, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    response = await client.get(f"/api/staff{path}", headers=headers)
    return response.status, await response.json()


async def test_tokens_are_read_as_secret_and_name() -> None:
    pairs = parse_tokens(" a:W01 , b:zhang,,broken, :x")

    assert pairs == [(b"a", "W01"), (b"b", "zhang")]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer tok-w1", "W01"),
        ("bearer tok-w1", "W01"),
        ("Bearer tok-w", None),
        ("Bearer tok-w1x", None),
        ("Basic tok-w1", None),
        ("Bearer ", None),
        ("", None),
        ("tok-w1", None),
    ],
)
def test_bearer_token_identifies_exactly(header: str, expected: str | None) -> None:
    tokens = parse_tokens("tok-w1:W01,tok-w2:W02")

    assert identify(header, tokens) == expected


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
async def test_anonymous_or_unknown_caller_is_refused(
    app_client: TestClient, headers: dict[str, str]
) -> None:
    for path in ("/me", "/halls/main/queues/livelihood"):
        response = await app_client.get(f"/api/staff{path}", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    status, _ = await post(app_client, "/windows/W01/open", headers)
    assert status == 401
    assert not await Window.filter(is_open=True).exists()


async def test_a_window_token_acts_only_at_its_window(app_client: TestClient) -> None:
    status, body = await post(app_client, "/windows/W02/open", W01)

    assert (status, body["error"]) == (403, "other_window")
    assert not (await Window.get(code="W02")).is_open


async def test_window_opens_calls_serves_and_finishes(app_client: TestClient) -> None:
    first = await take("o1")
    await take("o2")

    status, window = await post(app_client, "/windows/W01/open", W01)
    assert (status, window["is_open"]) == (200, True)
    status, called = await post(app_client, "/windows/W01/call-next", W01)
    assert status == 200
    ticket = called["ticket"]
    assert (ticket["id"], ticket["number"], ticket["status"]) == (first.id, "A001", "called")
    assert ticket["window"] == "W01"

    for action, expected in (("start", "serving"), ("finish", "done")):
        status, body = await post(app_client, f"/windows/W01/tickets/{first.id}/{action}", W01)
        assert (status, body["status"]) == (200, expected)

    status, called = await post(app_client, "/windows/W01/call-next", W01)
    assert called["ticket"]["number"] == "A002"


async def test_call_next_with_nobody_waiting_says_so(app_client: TestClient) -> None:
    await post(app_client, "/windows/W01/open", W01)

    status, body = await post(app_client, "/windows/W01/call-next", W01)

    assert (status, body) == (200, {"ticket": None})


async def test_closed_window_cannot_call(app_client: TestClient) -> None:
    await take("o1")

    status, body = await post(app_client, "/windows/W01/call-next", W01)

    assert (status, body["error"]) == (409, "window_closed")


async def test_call_next_while_holding_a_ticket_is_refused(app_client: TestClient) -> None:
    await take("o1")
    await take("o2")
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W01/call-next", W01)

    status, body = await post(app_client, "/windows/W01/call-next", W01)

    assert (status, body["error"], body["number"]) == (409, "window_busy", "A001")


async def test_two_windows_pressing_at_once_get_different_tickets(app_client: TestClient) -> None:
    for i in range(4):
        await take(f"o{i}")
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W02/open", W02)

    results = await asyncio.gather(
        *(post(app_client, f"/windows/{w}/call-next", h) for w, h in (("W01", W01), ("W02", W02)))
    )

    numbers = {body["ticket"]["number"] for _, body in results}
    assert numbers == {"A001", "A002"}


async def test_actions_address_tickets_by_id_at_their_window(app_client: TestClient) -> None:
    ticket = await take("o1")
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W02/open", W02)
    await post(app_client, "/windows/W01/call-next", W01)

    status, body = await post(app_client, f"/windows/W02/tickets/{ticket.id}/finish", W02)
    assert (status, body["error"]) == (403, "not_at_this_window")
    status, body = await post(app_client, "/windows/W01/tickets/999999/finish", W01)
    assert (status, body["error"]) == (404, "ticket_not_found")


async def test_missed_ticket_is_told_and_can_requeue(app_client: TestClient) -> None:
    ticket = await take("o1")
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W01/call-next", W01)

    status, body = await post(app_client, f"/windows/W01/tickets/{ticket.id}/missed", W01)

    assert (status, body["status"]) == (200, "missed")
    assert await claimed_notice(app_client.app[SERVICES], ticket.ref, "ticket_missed")
    window = await Window.get(code="W01")
    assert await Ticket.get_or_none(window_slot=window.id) is None


async def test_recall_keeps_the_ticket_called(app_client: TestClient) -> None:
    ticket = await take("o1")
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W01/call-next", W01)

    status, body = await post(app_client, f"/windows/W01/tickets/{ticket.id}/recall", W01)

    assert (status, body["status"], body["recalls"]) == (200, "called", 1)


async def test_transfer_moves_the_ticket_to_another_queue(app_client: TestClient) -> None:
    ticket = await take("o1")
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W01/call-next", W01)

    status, body = await post(
        app_client, f"/windows/W01/tickets/{ticket.id}/transfer", W01, {"category": "tax"}
    )

    assert (status, body["status"], body["category"], body["number"]) == (
        200,
        "waiting",
        "tax",
        "A001",
    )
    status, body = await post(
        app_client, f"/windows/W01/tickets/{ticket.id}/transfer", W01, {"category": "nope"}
    )
    assert status in (400, 403)


async def test_onsite_ticket_is_issued_outside_the_quota(app_client: TestClient) -> None:
    await take("o1")

    status, body = await post(app_client, "/halls/main/tickets", W01, {"category": "livelihood"})

    assert (status, body["number"], body["source"], body["ahead"]) == (201, "A002", "onsite", 1)
    assert body["is_remote"] is False


async def test_window_cannot_issue_for_another_hall(app_client: TestClient) -> None:
    status, body = await post(
        app_client, "/halls/community/tickets", W01, {"category": "livelihood"}
    )

    assert (status, body["error"]) == (403, "other_hall")


async def test_onsite_ticket_outside_hours_is_refused(
    app_client: TestClient, monday_morning: time_machine.Coordinates
) -> None:
    monday_morning.move_to(local(2, 19))

    status, body = await post(app_client, "/halls/main/tickets", W01, {"category": "livelihood"})

    assert (status, body["error"]) == (409, "hall_closed")


async def test_queue_lists_windows_then_waiting_in_call_order(app_client: TestClient) -> None:
    await take("o1", local(2, 9, 30))
    await take("o2", local(2, 9, 40))
    booking = await take("o3", local(2, 9, 50), source="booking", priority=10)
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W01/call-next", W01)

    status, body = await get(app_client, "/halls/main/queues/livelihood", W01)

    assert status == 200
    assert [t["number"] for t in body["at_windows"]] == [booking.number]
    assert [t["number"] for t in body["waiting"]] == ["A001", "A002"]
    assert "openid" not in body["waiting"][0]


async def test_staff_member_signs_in_at_a_window_and_is_recorded(app_client: TestClient) -> None:
    ticket = await take("o1")

    status, window = await post(app_client, "/windows/W03/open", ADMIN)
    assert (status, window["staff"]) == (200, "admin")
    await post(app_client, "/windows/W03/call-next", ADMIN)
    status, shown = await get(app_client, f"/tickets/{ticket.id}", ADMIN)

    assert status == 200
    assert [(e["action"], e["actor"], e["window"]) for e in shown["events"]] == [
        ("take", "citizen", None),
        ("call", "staff:admin", "W03"),
    ]
    assert await TicketEvent.filter(ticket_id=ticket.id, actor="staff:admin").count() == 1


async def test_staff_member_acts_only_at_the_window_they_opened(app_client: TestClient) -> None:
    await post(app_client, "/windows/W01/open", W01)

    status, body = await post(app_client, "/windows/W01/call-next", ADMIN)

    assert (status, body["error"]) == (403, "window_not_yours")


async def test_closing_a_window_holding_a_ticket_is_refused(app_client: TestClient) -> None:
    await take("o1")
    await post(app_client, "/windows/W01/open", W01)
    await post(app_client, "/windows/W01/call-next", W01)

    status, body = await post(app_client, "/windows/W01/close", W01)

    assert (status, body["error"]) == (409, "window_busy")


async def test_bad_json_body_is_a_400(app_client: TestClient) -> None:
    response = await app_client.post(
        "/api/staff/halls/main/tickets", headers=W01, data=b"{not json"
    )

    assert response.status == 400
