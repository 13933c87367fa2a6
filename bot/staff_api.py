"""The staff HTTP JSON API under /api/staff/: windows call, recall, skip, serve and transfer."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot import staff_input
from bot.app import SERVICES, SETTINGS
from bot.errors import BadInput
from bot.services import Services
from models import feedback, queue, queue_flow
from models.hall import Category, Hall
from models.queue import Ticket, TicketEvent, Window
from models.queue_rules import QueueError
from models.queue_wait import people_ahead, waiting_tickets

log = logging.getLogger(__name__)

PREFIX = "/api/staff"
TOKENS = web.AppKey("staff_tokens", list)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CODE_CHARS = staff_input.column_chars(Window, "code")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: a window (its token names its code) or a staff member."""

    name: str
    window_code: str | None

    @property
    def actor(self) -> str:
        return f"window:{self.window_code}" if self.window_code else f"staff:{self.name}"


PRINCIPAL = web.RequestKey("staff_principal", Principal)


def parse_tokens(setting: str) -> list[tuple[bytes, str]]:
    """Read "secret:W01,secret2:zhang" into (secret, name) pairs; blanks are ignored."""
    pairs = []
    for item in setting.split(","):
        secret, _, name = item.strip().partition(":")
        if secret and name:
            pairs.append((secret.encode(), name.strip()))
    return pairs


def identify(header: str, tokens: list[tuple[bytes, str]]) -> str | None:
    """Return the name a bearer token stands for, comparing every secret in constant time."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    offered = given.strip().encode()
    found = None
    for secret, name in tokens:
        # No early exit: the time taken does not tell which secret came close.
        if hmac.compare_digest(offered, secret):
            found = name
    return found


def setup(app: web.Application) -> None:
    """Mount the staff API on the webhook's application."""
    staff = web.Application(middlewares=[_authenticate, _errors])
    staff[TOKENS] = parse_tokens(app[SETTINGS].staff_tokens)
    staff.router.add_get("/me", who_am_i)
    staff.router.add_post("/windows/{code}/open", open_window)
    staff.router.add_post("/windows/{code}/close", close_window)
    staff.router.add_post("/windows/{code}/call-next", call_next)
    for action in ("recall", "missed", "start", "finish", "transfer"):
        staff.router.add_post(f"/windows/{{code}}/tickets/{{ticket_id}}/{action}", act)
    staff.router.add_post("/halls/{hall}/tickets", issue_onsite)
    staff.router.add_get("/halls/{hall}/queues/{category}", list_queue)
    staff.router.add_get("/tickets/{ticket_id}", show_ticket)
    from bot import staff_bookings  # imports this module: not at the top

    staff_bookings.setup(staff)
    from bot import admin_feedback  # imports this module too

    admin_feedback.setup(staff)
    from bot import admin_applications  # imports this module too

    admin_applications.setup(staff)
    app.add_subapp(PREFIX, staff)


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    tokens = request.app[TOKENS]
    name = identify(request.headers.get("Authorization", ""), tokens)
    if name is None:
        log.warning("staff call refused reason=token path=%s", request.path)
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "unauthorized"}),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="staff"'},
        )
    # A staff member's name may be longer than a window code, and so is no window.
    is_window = len(name) <= _CODE_CHARS and await Window.filter(code=name).exists()
    request[PRINCIPAL] = Principal(name, name if is_window else None)
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadInput as exc:
        log.warning("staff input refused path=%.80s reason=%s", request.path, exc.error)
        return staff_input.refusal(exc)
    except QueueError as exc:
        log.warning("staff action refused path=%s reason=%s", request.path, exc.code)
        body = {"error": exc.code, **_plain(exc.context)}
        return web.json_response(body, status=exc.status)
    except web.HTTPClientError as exc:
        if exc.content_type == "application/json":
            raise
        # The router's 404 and 405 and the body-size 413 speak plain text: answer in JSON too.
        return staff_input.plain_refusal(exc)


def _plain(context: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if isinstance(v, str | int | float | bool | None)}


_HTTP: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
}


def _fail(status: int, error: str, **details: Any) -> web.HTTPException:
    """Build the JSON refusal to raise: {"error": code, ...details}."""
    body = json.dumps({"error": error, **details}, ensure_ascii=False)
    return _HTTP[status](text=body, content_type="application/json")


def _services(request: web.Request) -> Services:
    return request.config_dict[SERVICES]


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise _fail(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise _fail(400, "body must be a JSON object")
    return body


async def _window(request: web.Request, *, opening: bool = False) -> Window:
    """Return the window in the path, if the caller may act there."""
    code = staff_input.path_code(request, "code", "window", max_chars=_CODE_CHARS)
    window = await Window.get_or_none(code=code)
    if window is None:
        raise _fail(404, "window_not_found")
    principal = _principal(request)
    if principal.window_code is not None:
        if principal.window_code != window.code:
            raise _fail(403, "other_window", window=window.code)
    elif window.staff != principal.name and not (opening and window.staff is None):
        raise _fail(403, "window_not_yours", window=window.code)
    return window


async def _category(source: Mapping[str, Any]) -> Category:
    """Return the category whose code `source` (a body, the query or the path) has."""
    max_chars = staff_input.column_chars(Category, "code")
    code = staff_input.text(source, "category", max_chars=max_chars, required=True)
    category = await Category.get_or_none(code=code)
    if category is None:
        raise _fail(400, "category_not_found", category=code)
    return category


async def _hall(request: web.Request) -> Hall:
    max_chars = staff_input.column_chars(Hall, "code")
    code = staff_input.path_code(request, "hall", "hall", max_chars=max_chars)
    hall = await Hall.get_or_none(code=code)
    if hall is None:
        raise _fail(404, "hall_not_found")
    principal = _principal(request)
    if principal.window_code is not None:
        window = await Window.get(code=principal.window_code)
        if window.hall_id != hall.id:
            raise _fail(403, "other_hall", hall=hall.code)
    return hall


async def who_am_i(request: web.Request) -> web.Response:
    principal = _principal(request)
    staffed = await Window.filter(staff=principal.name).values_list("code", flat=True)
    body = {"name": principal.name, "window": principal.window_code, "staffing": staffed}
    return web.json_response(body)


async def open_window(request: web.Request) -> web.Response:
    """Open the window for calling; a staff member opening it signs in there."""
    window = await _window(request, opening=True)
    principal = _principal(request)
    staff = None if principal.window_code else principal.name
    await queue.open_window(window, _services(request).local_now(), staff)
    return web.json_response(await window_json(window))


async def close_window(request: web.Request) -> web.Response:
    window = await queue.close_window(await _window(request))
    return web.json_response(await window_json(window))


async def call_next(request: web.Request) -> web.Response:
    """Call the next ticket to this window; {"ticket": null} when nobody waits."""
    window = await _window(request)
    principal = _principal(request)
    ticket = await queue_flow.call_next(_services(request), window, principal.actor)
    log.info("staff call next window=%s found=%s", window.code, ticket is not None)
    return web.json_response({"ticket": await ticket_json(ticket) if ticket else None})


async def act(request: web.Request) -> web.Response:
    """Recall, mark missed, start, finish or transfer a ticket held by this window."""
    window = await _window(request)
    actor = _principal(request).actor
    ticket_id = staff_input.path_id(request, "ticket_id", "ticket")
    action = request.path.rsplit("/", 1)[-1]
    services = _services(request)
    at = services.local_now()
    ticket: Ticket
    if action == "recall":
        ticket = await queue.recall(window, ticket_id, at, actor)
    elif action == "missed":
        ticket = await queue_flow.mark_missed(services, window, ticket_id, actor)
    elif action == "start":
        ticket = await queue.start(window, ticket_id, at, actor)
    elif action == "finish":
        ticket = await queue.finish(window, ticket_id, at, actor)
        await feedback.invite(services, ticket)
    else:
        category = await _category(await _body(request))
        ticket = await queue_flow.transfer(services, window, ticket_id, category, actor)
    log.info("staff action action=%s window=%s ticket=%d", action, window.code, ticket.id)
    return web.json_response(await ticket_json(ticket))


async def issue_onsite(request: web.Request) -> web.Response:
    """Issue an on-site ticket (the hall's ticket machine), outside the remote quota."""
    hall = await _hall(request)
    category = await _category(await _body(request))
    actor = _principal(request).actor
    ticket = await queue_flow.issue_onsite(_services(request), hall, category, actor)
    ahead = await people_ahead(ticket)
    return web.json_response({**await ticket_json(ticket), "ahead": ahead}, status=201)


async def list_queue(request: web.Request) -> web.Response:
    """List a category's queue at a hall: who is at a window, then who waits, in call order."""
    hall = await _hall(request)
    category = await _category(request.match_info)
    day = _services(request).today()
    at_windows = await Ticket.filter(
        hall_id=hall.id, category_id=category.id, status__in=("called", "serving"), local_day=day
    ).order_by("called_at")
    waiting = await waiting_tickets(hall.id, category.id, day)
    return web.json_response(
        {
            "hall": hall.code,
            "category": category.code,
            "at_windows": [await ticket_json(t) for t in at_windows],
            "waiting": [await ticket_json(t) for t in waiting],
        }
    )


async def show_ticket(request: web.Request) -> web.Response:
    """Show a ticket and every change it went through."""
    ticket = await Ticket.get_or_none(id=staff_input.path_id(request, "ticket_id", "ticket"))
    if ticket is None:
        raise _fail(404, "ticket_not_found")
    await _hall_of(request, ticket)
    events = await TicketEvent.filter(ticket_id=ticket.id)
    body = await ticket_json(ticket)
    body["events"] = [
        {
            "action": e.action,
            "from": e.from_status,
            "to": e.to_status,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "window": e.window_code or None,
            "note": e.note,
        }
        for e in events
    ]
    return web.json_response(body)


async def _hall_of(request: web.Request, ticket: Ticket) -> None:
    principal = _principal(request)
    if principal.window_code is not None:
        window = await Window.get(code=principal.window_code)
        if window.hall_id != ticket.hall_id:
            raise _fail(403, "other_hall")


async def window_json(window: Window) -> dict[str, Any]:
    current = await Ticket.get_or_none(window_slot=window.id)
    return {
        "code": window.code,
        "name": window.name,
        "categories": list(window.categories or []),
        "is_open": window.is_open,
        "staff": window.staff,
        "ticket": await ticket_json(current) if current else None,
    }


async def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """Describe a ticket for the console: no openid, only whether a citizen follows it."""
    codes = dict(await Category.all().values_list("id", "code"))
    window = await Window.get_or_none(id=ticket.window_id) if ticket.window_id else None
    return {
        "id": ticket.id,
        "number": ticket.number,
        "category": codes.get(ticket.category_id),
        "issued_category": codes.get(ticket.issued_category_id),
        "source": ticket.source,
        "priority": ticket.priority,
        "status": ticket.status,
        "window": window.code if window else None,
        "is_remote": ticket.openid is not None,
        "requeues": ticket.requeues,
        "recalls": ticket.recalls,
        "local_day": ticket.local_day.isoformat(),
        "queued_at": _iso(ticket.queued_at),
        "called_at": _iso(ticket.called_at),
        "started_at": _iso(ticket.started_at),
        "finished_at": _iso(ticket.finished_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
