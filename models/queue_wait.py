"""How long a ticket waits: people ahead, recent handling times, open windows, the estimate."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import date

from tortoise.expressions import Q

from models.queue import HOLDING_STATES, QUEUE_ORDER, Ticket, Window
from models.queue_rules import QueueRules


def _before(ticket: Ticket) -> Q:
    """Select the tickets served before `ticket` in its queue."""
    same_priority = Q(priority=ticket.priority) & (
        Q(place__lt=ticket.place) | Q(place=ticket.place, id__lt=ticket.id)
    )
    return Q(priority__gt=ticket.priority) | same_priority


async def people_ahead(ticket: Ticket) -> int:
    """Count the tickets a waiting ticket still waits for; 0 once called."""
    if ticket.status != "waiting":
        return 0
    query = Ticket.filter(
        hall_id=ticket.hall_id,
        category_id=ticket.category_id,
        status="waiting",
        local_day=ticket.local_day,
    )
    return await query.filter(_before(ticket)).count()


async def waiting_tickets(hall_id: int, category_id: int, day: date) -> list[Ticket]:
    """Return a category's waiting tickets in the order they will be called."""
    return await Ticket.filter(
        hall_id=hall_id, category_id=category_id, status="waiting", local_day=day
    ).order_by(*QUEUE_ORDER)


async def windows_serving(
    hall_id: int, category_code: str, *, only_open: bool = True
) -> list[Window]:
    """Return the hall's windows that call a category: the open ones, or all of them."""
    query = Window.filter(hall_id=hall_id)
    if only_open:
        query = query.filter(is_open=True)
    return [window for window in await query if window.serves(category_code)]


async def handling_min(hall_id: int, category_id: int, rules: QueueRules) -> float:
    """Return the median minutes a window spent on recently finished tickets of a category."""
    rows = (
        await Ticket.filter(
            hall_id=hall_id, category_id=category_id, status="done", finished_at__isnull=False
        )
        .order_by("-finished_at")
        .limit(rules.handling_sample)
        .values_list("called_at", "finished_at")
    )
    spans = [(done - called).total_seconds() / 60 for called, done in rows if called and done]
    spans = [span for span in spans if span > 0]
    return statistics.median(spans) if spans else rules.default_handling_min


@dataclass(slots=True)
class Estimate:
    ahead: int
    wait_min: int
    windows: list[str]


async def estimate(
    ticket: Ticket, category_code: str, rules: QueueRules, *, ahead: int | None = None
) -> Estimate:
    """Estimate a ticket's wait: people ahead x recent handling time / open windows."""
    if ahead is None:
        ahead = await people_ahead(ticket)
    every = await windows_serving(ticket.hall_id, category_code, only_open=False)
    open_windows = [window for window in every if window.is_open]
    # Before the clerks sign in, assume every window of the category will open.
    count = len(open_windows) or len(every)
    minutes = await handling_min(ticket.hall_id, ticket.category_id, rules)
    wait_min = math.ceil(ahead * minutes / max(count, 1))
    return Estimate(ahead, wait_min, [w.name for w in open_windows])


async def tickets_of(openid: str, day: date) -> list[Ticket]:
    """Return a citizen's tickets of the day that are still in play, newest first."""
    query = Ticket.filter(openid=openid, local_day=day, status__in=HOLDING_STATES)
    return await query.order_by("-id")
