"""The staff API for appointments: the day's bookings per category, no-shows, closures."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from aiohttp import web

from bot import staff_input
from bot.staff_api import _body, _category, _fail, _hall, _principal, _services
from bot.texts import mask_name, mask_phone
from models import booking as bookings
from models import booking_flow
from models.booking import Booking
from models.booking_rules import BookingError, booking_rules
from models.calendar import EVERY_HALL, Closure
from models.hall import Category, Hall
from models.queue import Ticket

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Bookings one no-show call may name: a day's list at one hall is far shorter.
MAX_IDS = 500
_HALL_CHARS = staff_input.column_chars(Hall, "code")
_REASON_CHARS = staff_input.column_chars(Closure, "reason")


def setup(staff: web.Application) -> None:
    """Add the booking routes to the staff API (its authentication applies to them)."""
    staff.router.add_get("/halls/{hall}/bookings", _refusals(list_bookings))
    staff.router.add_post("/halls/{hall}/bookings/no-shows", _refusals(mark_no_shows))
    staff.router.add_get("/closures", _refusals(list_closures))
    staff.router.add_post("/closures", _refusals(add_closure))
    staff.router.add_delete("/closures/{closure_id}", _refusals(remove_closure))


def _refusals(handler: Handler) -> Handler:
    """Answer a booking rule's refusal as JSON: {"error": code, ...}."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BookingError as exc:
            log.warning("staff booking action refused path=%s reason=%s", request.path, exc.code)
            return web.json_response({"error": exc.code, **_plain(exc.context)}, status=exc.status)

    return guarded


def _plain(context: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key, value in context.items():
        if isinstance(value, date):
            plain[key] = value.isoformat()
        elif isinstance(value, str | int | float | bool | None):
            plain[key] = value
    return plain


async def list_bookings(request: web.Request) -> web.Response:
    """List a hall's bookings of a day (?day=YYYY-MM-DD, default today), per category."""
    hall = await _hall(request)
    day = staff_input.day(request.query.get("day"), "day", _services(request).today())
    category = await _category(request.query) if request.query.get("category") else None
    found = await bookings.day_bookings(hall.id, day, category.id if category else None)
    groups: dict[int, dict[str, Any]] = {}
    categories = {c.id: c for c in await Category.all()}
    for booking in found:
        owner = categories[booking.category_id]
        group = groups.setdefault(
            owner.id, {"category": owner.code, "name": owner.name, "bookings": []}
        )
        group["bookings"].append(await booking_json(booking))
    body = {"hall": hall.code, "day": day.isoformat(), "categories": list(groups.values())}
    return web.json_response(body)


async def mark_no_shows(request: web.Request) -> web.Response:
    """Mark bookings as no-shows: those in "ids", or all the day's whose check-in has closed.

    Body: {"ids": [..]} or {"day": "YYYY-MM-DD", "category": code}; both optional.
    """
    hall = await _hall(request)
    body = await _body(request)
    services = _services(request)
    actor = _principal(request).actor
    if body.get("ids") is not None:
        ids = staff_input.id_list(body["ids"], "ids", max_items=MAX_IDS)
        chosen = await Booking.filter(id__in=ids, hall_id=hall.id)
        if len(chosen) != len(set(ids)):
            raise _fail(404, "booking_not_found")
    else:
        day = staff_input.day(body.get("day"), "day", services.today())
        category = await _category(body) if body.get("category") not in (None, "") else None
        chosen = await bookings.day_bookings(hall.id, day, category.id if category else None)
        chosen = [b for b in chosen if b.status == "booked" and _is_over(b, services)]
    marked, skipped = [], []
    for booking in chosen:
        try:
            await booking_flow.mark_missed(services, booking, actor)
        except BookingError as exc:
            skipped.append({"id": booking.id, "error": exc.code, **_plain(exc.context)})
            continue
        marked.append(booking.id)
    log.info("staff no-shows marked hall=%s count=%d", hall.code, len(marked))
    return web.json_response({"marked": marked, "skipped": skipped})


def _is_over(booking: Booking, services: Any) -> bool:
    _, closes = booking_flow.window_of(booking, booking_rules())
    return bool(services.now() >= closes)


async def list_closures(request: web.Request) -> web.Response:
    """List the closures added through the API from a day on (?from=, default today)."""
    first = staff_input.day(request.query.get("from"), "from", _services(request).today())
    rows = await Closure.filter(day__gte=first).order_by("day", "hall_code")
    return web.json_response({"closures": [closure_json(c) for c in rows]})


def _admin_only(request: web.Request) -> str:
    principal = _principal(request)
    if principal.window_code is not None:
        raise _fail(403, "staff_only")
    return principal.actor


async def add_closure(request: web.Request) -> web.Response:
    """Shut a hall (or "*": every hall) for a day; its bookings are cancelled and told why.

    Body: {"hall": code or "*", "day": "YYYY-MM-DD", "reason": "..."}.
    """
    actor = _admin_only(request)
    body = await _body(request)
    hall_code = staff_input.text(body, "hall", max_chars=_HALL_CHARS) or EVERY_HALL
    if hall_code != EVERY_HALL and not await Hall.exists(code=hall_code):
        raise _fail(404, "hall_not_found", hall=hall_code)
    services = _services(request)
    day = staff_input.day(body.get("day"), "day", date.min)
    if day < services.today():
        raise _fail(400, "day_invalid", day=day.isoformat())
    reason = staff_input.text(body, "reason", max_chars=_REASON_CHARS)
    closure, ended = await booking_flow.add_closure(services, hall_code, day, reason, actor)
    body_out = {"closure": closure_json(closure), "cancelled": [b.id for b in ended]}
    return web.json_response(body_out, status=201)


async def remove_closure(request: web.Request) -> web.Response:
    """Reopen a day; bookings cancelled for it stay cancelled."""
    _admin_only(request)
    closure_id = staff_input.path_id(request, "closure_id", "closure")
    if not await booking_flow.remove_closure(closure_id):
        raise _fail(404, "closure_not_found")
    return web.json_response({"deleted": True})


def closure_json(closure: Closure) -> dict[str, Any]:
    return {
        "id": closure.id,
        "hall": closure.hall_code,
        "day": closure.day.isoformat(),
        "reason": closure.reason,
        "created_by": closure.created_by,
    }


async def booking_json(booking: Booking) -> dict[str, Any]:
    """Describe a booking for the console: masked name and mobile, no openid."""
    ticket = await Ticket.get_or_none(id=booking.ticket_id) if booking.ticket_id else None
    end_min = booking.start_min + booking_rules().slot_min
    return {
        "id": booking.id,
        "code": booking.code,
        "day": booking.local_day.isoformat(),
        "slot": f"{bookings.clock(booking.start_min)}-{bookings.clock(end_min)}",
        "starts_at": booking.starts_at.isoformat(),
        "status": booking.status,
        "name": mask_name(booking.name),
        "mobile": mask_phone(booking.mobile),
        "id_last4": booking.id_last4,
        "ticket": ticket.number if ticket else None,
        "checked_in_at": booking.checked_in_at.isoformat() if booking.checked_in_at else None,
        "end_reason": booking.end_reason or None,
    }
