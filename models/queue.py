"""Queue numbers: windows, tickets and their events, the daily counters, and every change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time as time_module
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tortoise import Tortoise, fields
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.signals import post_save
from tortoise.transactions import in_transaction

from models import queue_takes
from models.calendar import Opening, openings
from models.hall import Category, Hall, cached_calling_halls, forget_halls
from models.queue_rules import (
    AlreadyHolding,
    CategoryNotServed,
    HallClosed,
    HallClosing,
    NotAtThisWindow,
    QueueRules,
    QuotaUsedUp,
    RequeueUsed,
    TicketNotFound,
    WindowBusy,
    WindowClosed,
    WrongState,
    queue_rules,
)

log = logging.getLogger(__name__)

SOURCES = ("remote", "onsite", "booking")
STATES = ("waiting", "called", "serving", "done", "missed", "cancelled", "expired")
# A ticket in these states holds the citizen's one place in its category.
HOLDING_STATES = ("waiting", "called", "serving", "missed")
# Checked-in bookings are served before walk-ins of the same category.
BOOKING_PRIORITY = 10
# A ticket sent on to another category has waited once: it comes before that queue's walk-ins.
TRANSFER_PRIORITY = 5
# The order tickets are called in, within one category's queue.
QUEUE_ORDER = ("-priority", "place", "id")
# Two windows that lose the same claim try the next ticket; this bounds the retries.
CLAIM_ATTEMPTS = 8


# The tables.


class Window(Model):
    """A service window of a hall, serving some categories, open or closed, staffed or not."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="windows", on_delete=fields.CASCADE
    )
    code = fields.CharField(max_length=16, unique=True)
    name = fields.CharField(max_length=32)
    # Codes of the categories this window calls, e.g. ["livelihood", "public_utilities"]
    categories: Any = fields.JSONField(default=list)
    is_open = fields.BooleanField(default=False)
    # The staff member signed in at the window, when a person (not the window) opened it.
    staff = fields.CharField(max_length=64, null=True)
    opened_at = fields.DatetimeField(null=True)
    sort = fields.IntField(default=0)

    hall_id: int

    class Meta:
        table = "queue_window"
        ordering = ("sort", "id")

    def serves(self, category_code: str) -> bool:
        return category_code in (self.categories or [])


class Ticket(Model):
    """A queue number: who holds it, where it stands and the window that called it."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="tickets", on_delete=fields.CASCADE
    )
    # The queue the ticket waits in now. A transfer changes it, not the number.
    category: fields.ForeignKeyRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="tickets", on_delete=fields.CASCADE
    )
    # The category whose prefix and counter gave the number.
    issued_category: fields.ForeignKeyRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="issued_tickets", on_delete=fields.CASCADE
    )
    local_day = fields.DateField()
    seq = fields.IntField()
    number = fields.CharField(max_length=8)
    source = fields.CharField(max_length=16, default="remote")
    priority = fields.SmallIntField(default=0)
    openid = fields.CharField(max_length=64, null=True, db_index=True)
    status = fields.CharField(max_length=16, default="waiting")
    # "openid:category id" while the citizen holds the ticket, else NULL: one per category.
    active_key = fields.CharField(max_length=100, null=True, unique=True)
    window: fields.ForeignKeyNullableRelation[Window] = fields.ForeignKeyField(
        "models.Window", related_name="tickets", null=True, on_delete=fields.SET_NULL
    )
    # The window's id while it has called or serves the ticket, else NULL: one at a time.
    window_slot = fields.IntField(null=True, unique=True)
    requeues = fields.SmallIntField(default=0)
    recalls = fields.SmallIntField(default=0)
    # Set once the citizen has been told their turn is near, or needed no telling.
    is_near_told = fields.BooleanField(default=False)
    # The order within the category's queue, after priority: from the counter row, so it
    # follows the numbers however many processes take them. A re-queue gets a new, last one.
    place = fields.IntField()
    # When the ticket joined the queue it waits in (taken, re-queued or transferred).
    queued_at = fields.DatetimeField()
    called_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    hall_id: int
    category_id: int
    issued_category_id: int
    window_id: int | None

    class Meta:
        table = "ticket"
        unique_together = (("hall", "issued_category", "local_day", "seq"),)
        indexes = (("hall_id", "category_id", "status"),)

    @property
    def ref(self) -> str:
        """Name the ticket for notices."""
        return ticket_ref(self.id)


class TicketEvent(Model):
    """One change of a ticket: what was done, from which state to which, when and by whom."""

    id = fields.IntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="events", on_delete=fields.CASCADE
    )
    action = fields.CharField(max_length=16)
    from_status = fields.CharField(max_length=16, default="")
    to_status = fields.CharField(max_length=16)
    at = fields.DatetimeField()
    # "citizen", "system", a window code (W01) or "staff:<id>"
    actor = fields.CharField(max_length=80)
    window_code = fields.CharField(max_length=16, default="")
    note = fields.CharField(max_length=200, default="")

    ticket_id: int

    class Meta:
        table = "ticket_event"
        ordering = ("at", "id")


class NumberCounter(Model):
    """The last number given per hall, category and local day, and the remote takes so far."""

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="counters", on_delete=fields.CASCADE
    )
    category: fields.ForeignKeyRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="counters", on_delete=fields.CASCADE
    )
    local_day = fields.DateField()
    seq = fields.IntField(default=0)
    remote_taken = fields.IntField(default=0)
    # The last place handed out in this category's queue: new numbers, re-queues, transfers.
    last_place = fields.IntField(default=0)

    class Meta:
        table = "number_counter"
        unique_together = (("hall", "category", "local_day"),)


def ticket_ref(ticket_id: int) -> str:
    """Name a ticket for notices: "ticket:42"."""
    return f"ticket:{ticket_id}"


# Numbering.

# One statement takes the next number, its place in the queue and, for a remote take, a unit of
# the day's quota. On a conflict the row stays locked until the transaction ends, so no two
# takes read the same seq.
_NEXT_SEQ_SQL = """
INSERT INTO number_counter (hall_id, category_id, local_day, seq, remote_taken, last_place)
VALUES (?, ?, ?, 1, ?, 1)
ON CONFLICT (hall_id, category_id, local_day) DO UPDATE
SET seq = number_counter.seq + 1,
    remote_taken = number_counter.remote_taken + excluded.remote_taken,
    last_place = number_counter.last_place + 1
WHERE number_counter.remote_taken + excluded.remote_taken <= ?
RETURNING seq, last_place
"""

_NEXT_PLACE_SQL = """
INSERT INTO number_counter (hall_id, category_id, local_day, seq, remote_taken, last_place)
VALUES (?, ?, ?, 0, 0, 1)
ON CONFLICT (hall_id, category_id, local_day) DO UPDATE
SET last_place = number_counter.last_place + 1
RETURNING last_place
"""


def _placeholders(conn: BaseDBAsyncClient, sql: str) -> str:
    """Write `?` parameters as the connection's driver wants them."""
    if conn.capabilities.dialect != "postgres":
        return sql
    parts = sql.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, 1))


async def next_seq(
    conn: BaseDBAsyncClient, hall_id: int, category_id: int, day: date, *, quota: int | None
) -> tuple[int, int] | None:
    """Return the next number of the day and its place, or None when the quota is used up.

    `quota` None takes a number outside the remote quota (on site, bookings).
    """
    remote = 0 if quota is None else 1
    limit = 2**31 - 1 if quota is None else quota
    if remote > limit:
        return None
    sql = _placeholders(conn, _NEXT_SEQ_SQL)
    # execute_query_dict fetches on every driver; execute_query drops an INSERT's RETURNING rows.
    rows = await conn.execute_query_dict(sql, [hall_id, category_id, day, remote, limit])
    return (int(rows[0]["seq"]), int(rows[0]["last_place"])) if rows else None


async def next_place(hall_id: int, category_id: int, day: date) -> int:
    """Return a place behind every ticket of a category's queue (a re-queue, a transfer)."""
    conn = Tortoise.get_connection("default")
    sql = _placeholders(conn, _NEXT_PLACE_SQL)
    rows = await conn.execute_query_dict(sql, [hall_id, category_id, day])
    return int(rows[0]["last_place"])


def display_number(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:03d}"


def local_day(at: datetime) -> date:
    """Return the day a local (hall zone) time falls on: the counter's day, not the server's."""
    return at.date()


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _active_key(openid: str | None, category_id: int) -> str | None:
    return f"{openid}:{category_id}" if openid else None


# The halls' openings: read on every take, changed by a seed or a closure (which calls
# forget_calling_halls in this process). The halls themselves are models/hall.py's copy.

OPENINGS_TTL_S = 30.0
_openings: dict[tuple[int, date], tuple[float, Opening]] = {}
# Reads in flight, and how many times the openings were forgotten (a read that began before
# the last forget keeps nothing).
_reading_openings: dict[
    tuple[int, tuple[date, ...], int], asyncio.Future[dict[date, Opening]]
] = {}
_forgotten = [0]


async def calling_halls() -> list[Hall]:
    """Return the halls that have windows, categories loaded (shared rows: read only)."""
    return await cached_calling_halls()


def forget_calling_halls() -> None:
    """Drop the kept halls and openings, so that the next take reads the database again."""
    forget_halls()
    _forget_openings()


def _forget_openings() -> None:
    _openings.clear()
    _forgotten[0] += 1  # a read in flight keeps its waiters; a new count, a new read


@post_save(Hall)
async def _hall_saved(*_: Any) -> None:
    _forget_openings()  # its hours may have changed


# Issuing.


async def check_open(hall: Hall, at: datetime) -> tuple[time, time]:
    """Return today's hours, or refuse: closed now, a holiday, a closure (models/calendar)."""
    opening = await _opening(hall, local_day(at))
    span = opening.span
    if span is None or not span[0] <= at.time() < span[1]:
        holiday = opening.kind.holiday if opening.kind.kind == "holiday" else ""
        raise HallClosed(
            hall=hall.name,
            hours=hall.hours_text,
            opens=await _next_opening(hall, at),
            why=opening.closure or holiday,
        )
    return span


async def _opening(hall: Hall, day: date) -> Opening:
    """Return a hall's opening on a day, kept a short while: every take in a rush asks."""
    return (await kept_openings(hall, [day]))[day]


async def kept_openings(hall: Hall, days: list[date]) -> dict[date, Opening]:
    """Return a hall's openings on these days, from what is kept when all of it is fresh.

    Concurrent takes that find them stale wait for one read (keyed by hall and days).
    """
    now = time_module.monotonic()
    found = {}
    for day in days:
        kept = _openings.get((hall.id, day))
        if kept is None or now - kept[0] >= OPENINGS_TTL_S:
            break
        found[day] = kept[1]
    else:
        return found
    key = (hall.id, tuple(days), _forgotten[0])
    reading = _reading_openings.get(key)
    if reading is None or reading.get_loop() is not asyncio.get_running_loop():
        reading = asyncio.ensure_future(_read_openings(hall, days, key))
        _reading_openings[key] = reading
    return await asyncio.shield(reading)


async def _read_openings(
    hall: Hall, days: list[date], key: tuple[int, tuple[date, ...], int]
) -> dict[date, Opening]:
    try:
        found = await openings(hall, days)
    finally:
        _reading_openings.pop(key, None)
    if key[2] == _forgotten[0]:  # nothing forgot them while they were read
        now = time_module.monotonic()
        for day, opening in found.items():
            _openings[(hall.id, day)] = (now, opening)
    return found


async def check_open_for_remote(hall: Hall, at: datetime, rules: QueueRules) -> None:
    """Refuse a remote take when the hall is closed or closes too soon to serve anyone."""
    span = await check_open(hall, at)
    closes = datetime.combine(at.date(), span[1], at.tzinfo)
    if span[1] != time.max and at >= closes - timedelta(minutes=rules.about_to_close_min):
        raise HallClosing(hall=hall.name, closes=span[1].strftime("%H:%M"), hours=hall.hours_text)


async def _next_opening(hall: Hall, at: datetime) -> str:
    """Return when the hall next opens, as a citizen reads it ("今天 09:00", "周一 09:00")."""
    today = local_day(at)
    days = [today + timedelta(days=n) for n in range(15)]
    # Asked by every take refused while the hall is shut: kept like the day's own opening.
    for day, opening in sorted((await kept_openings(hall, days)).items()):
        span = opening.span
        if span is None or (day == today and at.time() >= span[0]):
            continue
        ahead = (day - today).days
        label = "今天" if ahead == 0 else "明天" if ahead == 1 else _weekday(day, ahead)
        return f"{label} {span[0].strftime('%H:%M')}"
    return ""


def _weekday(day: date, days_ahead: int) -> str:
    name = "周" + "一二三四五六日"[day.weekday()]
    return name if days_ahead < 7 else f"{day.month}月{day.day}日"


async def serves_category(hall: Hall, category: Category) -> bool:
    # Halls listed for a citizen come with their categories; no need to ask the database.
    if getattr(hall.categories, "_fetched", False):
        return any(c.id == category.id for c in hall.categories)
    return await hall.categories.filter(id=category.id).exists()


async def active_ticket(openid: str, category_id: int) -> Ticket | None:
    return await Ticket.get_or_none(active_key=_active_key(openid, category_id))


async def issue(
    hall: Hall,
    category: Category,
    at: datetime,
    *,
    source: str,
    actor: str,
    openid: str | None = None,
    rules: QueueRules | None = None,
    priority: int = 0,
) -> Ticket:
    """Give the next number of the day in a category at a hall; remote takes use the quota.

    The counter row, the unique (hall, category, day, seq) and the unique active key are the
    guards, so concurrent takes in any number of processes never share a number or a place.
    """
    new = _NewTicket(hall, category, at, source, actor, openid, priority)
    ticket, _ = await _issue(new, rules or queue_rules(), read_wait=False)
    return ticket


async def issue_and_read_wait(
    hall: Hall, category: Category, at: datetime, *, openid: str, rules: QueueRules
) -> tuple[Ticket, WaitReadings | None]:
    """Issue a remote ticket; on PostgreSQL, read what its wait estimate needs on the way.

    One round trip instead of two in the morning rush. None: read them afterwards
    (models/queue_wait.py does, on SQLite).
    """
    new = _NewTicket(hall, category, at, "remote", "citizen", openid, 0)
    return await _issue(new, rules, read_wait=True)


@dataclass(frozen=True, slots=True)
class WaitReadings:
    """What a wait estimate reads: people ahead, the recent handling time, the windows."""

    ahead: int
    handling_min: float | None
    # (name, is open) of every window of the hall calling the category, in their order.
    windows: list[tuple[str, bool]]
    # The holder's "almost your turn" setting (None: the hall's default, or no holder).
    holder_near_ahead: int | None


async def _issue(
    new: _NewTicket, rules: QueueRules, *, read_wait: bool
) -> tuple[Ticket, WaitReadings | None]:
    hall, category = new.hall, new.category
    if new.source not in SOURCES:
        raise ValueError(f"unknown ticket source {new.source!r}")
    if not await serves_category(hall, category):
        raise CategoryNotServed(hall=hall.name, category=category.name)
    quota = rules.remote_quota(hall.code, category.code) if new.source == "remote" else None
    sample = rules.handling_sample if read_wait else None
    for attempt in range(2):
        try:
            issued = await _insert(new, quota, sample)
            break
        except IntegrityError:
            held = await _holding(new)
            if held is None:
                raise
            if attempt or held.local_day >= new.day:
                raise _already_holding(held, category) from None
        # A ticket left from an earlier day (closing passed unseen) never blocks today's. The
        # closing job may be expiring it at this very moment: either way it is gone.
        with contextlib.suppress(WrongState):
            await change(
                held.id, "expire", to="expired", allowed=HOLDING_STATES, at=new.at, actor="system"
            )
    if issued is None:
        # A holder asking again is told of their number, whether or not numbers are left.
        held = await _holding(new)
        if held is not None and held.local_day >= new.day:
            raise _already_holding(held, category)
        raise QuotaUsedUp(category=category.name, hall=hall.name, quota=quota)
    ticket, readings = issued
    log.debug("ticket issued ticket=%d number=%s source=%s", ticket.id, ticket.number, new.source)
    return ticket, readings


async def _holding(new: _NewTicket) -> Ticket | None:
    return await Ticket.get_or_none(active_key=new.key) if new.key else None


def _already_holding(held: Ticket, category: Category) -> AlreadyHolding:
    return AlreadyHolding(number=held.number, category=category.name, status=held.status)


@dataclass(slots=True)
class _NewTicket:
    hall: Hall
    category: Category
    at: datetime
    source: str
    actor: str
    openid: str | None
    priority: int

    @property
    def key(self) -> str | None:
        return _active_key(self.openid, self.category.id)

    @property
    def day(self) -> date:
        return local_day(self.at)


async def _insert(
    new: _NewTicket, quota: int | None, sample: int | None
) -> tuple[Ticket, WaitReadings | None] | None:
    """Take the number and insert the ticket and its first event at once; None: no quota.

    With `sample` (the handling times to take the median of), PostgreSQL also reads the wait.
    """
    conn = Tortoise.get_connection("default")
    if conn.capabilities.dialect == "postgres":
        return await _insert_in_one_round_trip(conn, new, quota, sample)
    async with in_transaction() as tx:
        taken = await next_seq(tx, new.hall.id, new.category.id, new.day, quota=quota)
        if taken is None:
            return None
        seq, place = taken
        ticket = await Ticket.create(using_db=tx, **_ticket_values(new, seq, place))
        await _record(tx, ticket, "take", "", "waiting", _utc(new.at), new.actor, note=new.source)
    return ticket, None


def _ticket_values(new: _NewTicket, seq: int, place: int) -> dict[str, Any]:
    return {
        "hall_id": new.hall.id,
        "category_id": new.category.id,
        "issued_category_id": new.category.id,
        "local_day": new.day,
        "seq": seq,
        "number": display_number(new.category.prefix, seq),
        "source": new.source,
        "priority": new.priority,
        "openid": new.openid,
        "status": "waiting",
        "active_key": new.key,
        "place": place,
        "queued_at": _utc(new.at),
    }


# On PostgreSQL the counter, the ticket and its event are one call of issue_ticket
# (models/migrations/0008_issue_ticket_function.py), the counter row locked only while the
# ticket goes in. A remote take outside a transaction goes with the takes of its category
# that meet it in flight (models/queue_takes.py): one call of take_tickets, which commits and
# then reads each take's wait.
_ISSUE_SQL = f"SELECT * FROM issue_ticket({', '.join(f'${i}' for i in range(1, 13))})"


async def _insert_in_one_round_trip(
    conn: BaseDBAsyncClient, new: _NewTicket, quota: int | None, sample: int | None
) -> tuple[Ticket, WaitReadings | None] | None:
    remote = 0 if quota is None else 1
    limit = 2**31 - 1 if quota is None else quota
    if remote > limit:
        return None
    now = _utc(new.at)
    # A call that commits cannot run inside a caller's transaction.
    if (
        sample is not None
        and new.source == "remote"
        and new.key
        and not isinstance(conn, TransactionalDBClient)
    ):
        return await _take_remote(conn, new, now, remote, limit, sample)
    values = [new.hall.id, new.category.id, new.day, remote, limit, new.category.prefix]
    values += [new.source, new.priority, new.openid, new.key, now, new.actor]
    rows = await conn.execute_query_dict(_ISSUE_SQL, values)
    if not rows or rows[0]["id"] is None:
        return None
    return _taken_ticket(new, now, rows[0]), None


async def _take_remote(
    conn: BaseDBAsyncClient, new: _NewTicket, now: datetime, remote: int, limit: int, sample: int
) -> tuple[Ticket, WaitReadings | None] | None:
    hall, category = new.hall, new.category
    batch = queue_takes.Batch(
        hall.id, category.id, new.day, bool(remote), limit, category.prefix, category.code, sample
    )
    request = queue_takes.Request(str(new.openid), str(new.key), now)
    for attempt in range(2):
        try:
            row = await queue_takes.remote_takes.take(conn, batch, request)
            break
        except IntegrityError:
            raise
        except Exception:
            # The readings come after the tickets' commit: when they fail, the ticket may be
            # taken all the same, and the citizen is to be told its number, not an error.
            kept = await _committed_take(new, now)
            if kept is not None:
                log.warning("take readings failed after the commit ticket=%d", kept.id)
                return kept, None
            # Not taken: the call failed before its commit, or the quota ran out before this
            # take. Once more, alone or with others, gives the answer a fresh take gets.
            if attempt:
                raise
    if row is None:
        return None
    windows = [(str(name), bool(is_open)) for name, is_open in json.loads(row["windows"])]
    minutes = row["handling_min"]
    readings = WaitReadings(
        int(row["ahead"]), float(minutes) if minutes else None, windows, row["near_ahead"]
    )
    return _taken_ticket(new, now, row), readings


def _taken_ticket(new: _NewTicket, now: datetime, row: dict[str, Any]) -> Ticket:
    ticket = Ticket(id=row["id"], created_at=now, **_ticket_values(new, row["seq"], row["place"]))
    ticket._saved_in_db = True
    return ticket


async def _committed_take(new: _NewTicket, at: datetime) -> Ticket | None:
    """Return the ticket a take committed before failing, if it did (its key and moment)."""
    if new.key is None:
        return None
    return await Ticket.get_or_none(active_key=new.key, local_day=new.day, queued_at=at)


# Changing a ticket.


async def _record(
    conn: BaseDBAsyncClient,
    ticket: Ticket,
    action: str,
    from_status: str,
    to_status: str,
    at: datetime,
    actor: str,
    *,
    window: Window | None = None,
    note: str = "",
) -> None:
    await TicketEvent.create(
        using_db=conn,
        ticket_id=ticket.id,
        action=action,
        from_status=from_status,
        to_status=to_status,
        at=at,
        actor=actor,
        window_code=window.code if window else "",
        note=note[:200],
    )


async def change(
    ticket_id: int,
    action: str,
    *,
    to: str,
    allowed: tuple[str, ...],
    at: datetime,
    actor: str,
    window: Window | None = None,
    note: str = "",
    **values: Any,
) -> Ticket:
    """Move a ticket from one of `allowed` to `to`, only if no one moved it first.

    The UPDATE is conditional on the state just read, so of two clerks or a clerk and a
    citizen acting at once one wins and the other is told the ticket has moved on.
    """
    now = _utc(at)
    async with in_transaction() as conn:
        ticket = await Ticket.filter(id=ticket_id).using_db(conn).first()
        if ticket is None:
            raise TicketNotFound(ticket_id=ticket_id)
        if ticket.status not in allowed:
            raise WrongState(number=ticket.number, status=ticket.status, action=action)
        if to not in ("called", "serving"):
            values.setdefault("window_slot", None)
        if to in ("done", "cancelled", "expired"):
            values.setdefault("active_key", None)
        values["status"] = to
        changed = await (
            Ticket.filter(id=ticket_id, status=ticket.status).using_db(conn).update(**values)
        )
        if changed != 1:
            raise WrongState(number=ticket.number, status="changed", action=action)
        await _record(
            conn, ticket, action, ticket.status, to, now, actor, window=window, note=note
        )
    for name, value in values.items():
        setattr(ticket, name, value)
    log.info("ticket changed ticket=%d action=%s status=%s actor=%s", ticket.id, action, to, actor)
    return ticket


async def cancel(ticket: Ticket, at: datetime, actor: str = "citizen") -> Ticket:
    """Give up a ticket: waiting, called or missed."""
    return await change(
        ticket.id, "cancel", to="cancelled", allowed=("waiting", "called", "missed"), at=at,
        actor=actor,
    )  # fmt: skip


async def requeue(ticket: Ticket, hall: Hall, at: datetime, rules: QueueRules) -> Ticket:
    """Put a missed ticket back at the end of its queue, once."""
    await ticket.refresh_from_db()
    if ticket.status != "missed":
        raise WrongState(number=ticket.number, status=ticket.status, action="requeue")
    if ticket.requeues >= rules.max_requeues or ticket.local_day != local_day(at):
        raise RequeueUsed(number=ticket.number)
    await check_open_for_remote(hall, at, rules)
    return await change(
        ticket.id,
        "requeue",
        to="waiting",
        allowed=("missed",),
        at=at,
        actor="citizen",
        requeues=ticket.requeues + 1,
        place=await next_place(ticket.hall_id, ticket.category_id, ticket.local_day),
        queued_at=_utc(at),
        window_id=None,
        is_near_told=False,
    )


# Windows and calling.


async def call_next(window: Window, at: datetime, actor: str) -> Ticket | None:
    """Claim the next waiting ticket for the window: bookings first, then the earliest.

    Two windows pressing at once never get the same ticket: the claim is an UPDATE on
    status='waiting' (plus FOR UPDATE SKIP LOCKED on PostgreSQL, so they do not queue up).
    """
    if not window.is_open:
        raise WindowClosed(window=window.name)
    await _check_window_free(window)
    codes = list(window.categories or [])
    category_ids = [c.id for c in await Category.filter(code__in=codes).only("id")]
    now = _utc(at)
    for _ in range(CLAIM_ATTEMPTS):
        try:
            return await _claim(window, category_ids, local_day(at), now, actor)
        except _ClaimLost:
            continue
        except IntegrityError:
            raise WindowBusy(window=window.name) from None
    log.warning("call next gave up window=%s attempts=%d", window.code, CLAIM_ATTEMPTS)
    return None


class _ClaimLost(Exception):
    """Another window claimed the ticket between our read and our update."""


async def _claim(
    window: Window, category_ids: list[int], day: date, now: datetime, actor: str
) -> Ticket | None:
    """Claim one ticket, or return None when none waits."""
    async with in_transaction() as conn:
        heads = []
        for category_id in category_ids:
            query = Ticket.filter(
                hall_id=window.hall_id, category_id=category_id, status="waiting", local_day=day
            ).order_by(*QUEUE_ORDER)
            if conn.capabilities.support_for_update:
                query = query.select_for_update(skip_locked=True)
            head = await query.using_db(conn).first()
            if head is not None:
                heads.append(head)
        if not heads:
            return None
        # Between the heads of several queues, the one that has waited longest goes first.
        candidate = min(heads, key=lambda t: (-t.priority, t.queued_at, t.id))
        values = {"status": "called", "window_id": window.id, "window_slot": window.id}
        values["called_at"] = now
        changed = await (
            Ticket.filter(id=candidate.id, status="waiting").using_db(conn).update(**values)
        )
        if changed != 1:
            raise _ClaimLost
        await _record(conn, candidate, "call", "waiting", "called", now, actor, window=window)
    for name, value in values.items():
        setattr(candidate, name, value)
    log.info("ticket called ticket=%d window=%s", candidate.id, window.code)
    return candidate


async def _check_window_free(window: Window) -> None:
    current = await Ticket.get_or_none(window_slot=window.id)
    if current is not None:
        raise WindowBusy(window=window.name, number=current.number, ticket_id=current.id)


async def at_window(window: Window, ticket_id: int) -> Ticket:
    """Return a ticket the window holds (called or serving), else refuse."""
    ticket = await Ticket.get_or_none(id=ticket_id)
    if ticket is None:
        raise TicketNotFound(ticket_id=ticket_id)
    if ticket.window_id != window.id or ticket.window_slot != window.id:
        raise NotAtThisWindow(number=ticket.number, window=window.name)
    return ticket


async def recall(window: Window, ticket_id: int, at: datetime, actor: str) -> Ticket:
    ticket = await at_window(window, ticket_id)
    return await change(
        ticket.id, "recall", to="called", allowed=("called",), at=at, actor=actor, window=window,
        recalls=ticket.recalls + 1, called_at=_utc(at),
    )  # fmt: skip


async def mark_missed(
    window: Window, ticket_id: int, at: datetime, actor: str, rules: QueueRules
) -> Ticket:
    """The citizen did not come: free the window; the place is kept while a re-queue is left."""
    ticket = await at_window(window, ticket_id)
    values: dict[str, Any] = {}
    if ticket.requeues >= rules.max_requeues:
        values["active_key"] = None
    return await change(
        ticket.id, "miss", to="missed", allowed=("called",), at=at, actor=actor, window=window,
        **values,
    )  # fmt: skip


async def start(window: Window, ticket_id: int, at: datetime, actor: str) -> Ticket:
    await at_window(window, ticket_id)
    return await change(
        ticket_id, "start", to="serving", allowed=("called",), at=at, actor=actor, window=window,
        started_at=_utc(at),
    )  # fmt: skip


async def finish(window: Window, ticket_id: int, at: datetime, actor: str) -> Ticket:
    """Close a served ticket; one finished straight from 'called' counts from its call."""
    ticket = await at_window(window, ticket_id)
    now = _utc(at)
    return await change(
        ticket.id, "finish", to="done", allowed=("called", "serving"), at=at, actor=actor,
        window=window, finished_at=now, started_at=ticket.started_at or ticket.called_at or now,
    )  # fmt: skip


async def transfer(
    window: Window, ticket_id: int, category: Category, at: datetime, actor: str
) -> Ticket:
    """Send a ticket to another category's queue, keeping its number, ahead of its walk-ins."""
    ticket = await at_window(window, ticket_id)
    hall = await Hall.get(id=ticket.hall_id)
    if not await serves_category(hall, category):
        raise CategoryNotServed(hall=hall.name, category=category.name)
    if category.id == ticket.category_id:
        raise WrongState(number=ticket.number, status=ticket.status, action="transfer")
    values: dict[str, Any] = {"category_id": category.id, "window_id": None, "called_at": None}
    values.update(started_at=None, is_near_told=False, queued_at=_utc(at))
    values["priority"] = max(ticket.priority, TRANSFER_PRIORITY)
    values["place"] = await next_place(ticket.hall_id, category.id, ticket.local_day)
    if ticket.active_key is not None:
        values["active_key"] = _active_key(ticket.openid, category.id)
    try:
        return await change(
            ticket.id, "transfer", to="waiting", allowed=("called", "serving"), at=at,
            actor=actor, window=window, note=f"to {category.code}", **values,
        )  # fmt: skip
    except IntegrityError:
        raise AlreadyHolding(number=ticket.number, category=category.name) from None


async def open_window(window: Window, at: datetime, staff: str | None) -> Window:
    window.is_open, window.staff, window.opened_at = True, staff, _utc(at)
    await window.save(update_fields=["is_open", "staff", "opened_at"])
    log.info("window opened window=%s staffed=%s", window.code, staff is not None)
    return window


async def close_window(window: Window) -> Window:
    """Close a window; one still holding a ticket must first finish or release it."""
    await _check_window_free(window)
    window.is_open, window.staff = False, None
    await window.save(update_fields=["is_open", "staff"])
    log.info("window closed window=%s", window.code)
    return window


# Seeding the windows from config/queue.toml.


async def seed_windows(rules: QueueRules | None = None) -> int:
    """Create or update the windows listed in config/queue.toml; return how many."""
    forget_calling_halls()
    rules = rules or queue_rules()
    halls = {hall.code: hall for hall in await Hall.all()}
    for sort, item in enumerate(rules.windows):
        hall = halls.get(item["hall"])
        if hall is None:
            raise ValueError(f"window {item['code']}: no hall {item['hall']!r}")
        defaults = {"hall": hall, "name": item["name"], "categories": list(item["categories"])}
        await Window.update_or_create(dict(defaults, sort=sort), code=item["code"])
    return len(rules.windows)
