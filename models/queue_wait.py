"""How long a ticket waits: people ahead, recent handling times, open windows, the estimate."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import date

from tortoise import Tortoise
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q

from models.citizen import Citizen
from models.queue import HOLDING_STATES, QUEUE_ORDER, Ticket, WaitReadings, Window
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


async def waiting_tickets(
    hall_id: int, category_id: int, day: date, *, limit: int | None = None
) -> list[Ticket]:
    """Return a category's waiting tickets in the order they will be called (the first few)."""
    query = Ticket.filter(
        hall_id=hall_id, category_id=category_id, status="waiting", local_day=day
    ).order_by(*QUEUE_ORDER)
    return await (query.limit(limit) if limit is not None else query)


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
    # The holder's own "almost your turn" setting when asked for (None: the hall's default).
    holder_near_ahead: int | None = None


async def estimate(
    ticket: Ticket,
    category_code: str,
    rules: QueueRules,
    *,
    holder: str | None = None,
    readings: WaitReadings | None = None,
) -> Estimate:
    """Estimate a ticket's wait: people ahead x recent handling time / open windows.

    With `holder`, also read that citizen's "almost your turn" setting, in the same round trip.
    `readings` taken already (with the issue, models/queue.py) save the round trip.
    """
    if readings is None:
        readings = await read_wait(ticket, category_code, rules, holder)
    ahead = readings.ahead if ticket.status == "waiting" else 0
    minutes = readings.handling_min or rules.default_handling_min
    open_windows = [name for name, is_open in readings.windows if is_open]
    # Before the clerks sign in, assume every window of the category will open.
    count = len(open_windows) or len(readings.windows)
    wait_min = math.ceil(ahead * minutes / max(count, 1))
    chosen = readings.holder_near_ahead if holder is not None else None
    return Estimate(ahead, wait_min, open_windows, chosen)


async def read_wait(
    ticket: Ticket, category_code: str, rules: QueueRules, holder: str | None
) -> WaitReadings:
    conn = Tortoise.get_connection("default")
    if conn.capabilities.dialect == "postgres":
        return await _readings_in_one_statement(conn, ticket, category_code, rules, holder)
    ahead = await people_ahead(ticket)
    windows = await windows_serving(ticket.hall_id, category_code, only_open=False)
    minutes = await handling_min(ticket.hall_id, ticket.category_id, rules)
    chosen: int | None = None
    if holder is not None:
        citizen = await Citizen.get_or_none(openid=holder).only("id", "near_ahead")
        chosen = citizen.near_ahead if citizen else None
    return WaitReadings(ahead, minutes, [(w.name, w.is_open) for w in windows], chosen)


# The same four readings in one round trip, for the morning rush on PostgreSQL.
_READINGS_SQL = """
SELECT
    (SELECT count(*) FROM ticket t
     WHERE t.hall_id = $1 AND t.category_id = $2 AND t.status = 'waiting' AND t.local_day = $3
       AND (t.priority > $4
            OR (t.priority = $4 AND (t.place < $5 OR (t.place = $5 AND t.id < $6))))
    ) AS ahead,
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recent.span_min)
     FROM (SELECT extract(epoch FROM t.finished_at - t.called_at) / 60 AS span_min
           FROM ticket t
           WHERE t.hall_id = $1 AND t.category_id = $2 AND t.status = 'done'
             AND t.finished_at IS NOT NULL AND t.called_at IS NOT NULL
           ORDER BY t.finished_at DESC LIMIT $7) recent
     WHERE recent.span_min > 0
    ) AS handling_min,
    (SELECT coalesce(json_agg(json_build_array(w.name, w.is_open) ORDER BY w.sort, w.id), '[]')
     FROM queue_window w WHERE w.hall_id = $1 AND w.categories ? $8
    )::text AS windows,
    (SELECT c.near_ahead FROM citizen c WHERE c.openid = $9) AS near_ahead
"""


async def _readings_in_one_statement(
    conn: BaseDBAsyncClient,
    ticket: Ticket,
    category_code: str,
    rules: QueueRules,
    holder: str | None,
) -> WaitReadings:
    values = [ticket.hall_id, ticket.category_id, ticket.local_day, ticket.priority]
    values += [ticket.place, ticket.id, rules.handling_sample, category_code, holder or ""]
    [row] = await conn.execute_query_dict(_READINGS_SQL, values)
    minutes = row["handling_min"]
    windows = [(str(name), bool(is_open)) for name, is_open in json.loads(row["windows"])]
    return WaitReadings(
        int(row["ahead"]), float(minutes) if minutes else None, windows, row["near_ahead"]
    )


async def tickets_of(openid: str, day: date) -> list[Ticket]:
    """Return a citizen's tickets of the day that are still in play, newest first."""
    query = Ticket.filter(openid=openid, local_day=day, status__in=HOLDING_STATES)
    return await query.order_by("-id")
