"""Appointments: slot counters, bookings and the rules that guard them, contacts and points."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models.booking_rules import (
    AlreadyBooked,
    BookingNotFound,
    BookingRules,
    DayNotOpen,
    NotBookable,
    NotEnoughPoints,
    SlotFull,
    SlotNotOffered,
    Suspended,
    TooLateToChange,
    WrongBookingState,
    booking_rules,
)
from models.calendar import Opening, opening_on, openings
from models.hall import Category, Hall, cached_halls

log = logging.getLogger(__name__)

STATES = ("booked", "checked_in", "cancelled", "missed")
# A booking in these states is the citizen's one booking of its category and day.
ACTIVE_STATES = ("booked", "checked_in")
# Why a booking ended, besides a check-in.
END_REASONS = ("citizen", "closure", "unfollow", "staff", "no_show")
CODE_DIGITS = 6
# Two bookings drawing the same code: the second draws again, this many times at most.
CODE_ATTEMPTS = 5
PERSONAL_FIELDS = {"name": "", "mobile": "", "id_last4": "", "id_hash": ""}


# The tables.


class BookingSlot(Model):
    """The places of one slot: how many there are and how many are taken.

    A row is made on the slot's first booking. Its conditional UPDATE is the only way a place
    is taken, so no slot is ever booked past capacity, whatever the number of processes.
    """

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="booking_slots", on_delete=fields.CASCADE
    )
    category: fields.ForeignKeyRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="booking_slots", on_delete=fields.CASCADE
    )
    local_day = fields.DateField()
    # Minutes after local midnight: 570 is 09:30.
    start_min = fields.SmallIntField()
    capacity = fields.SmallIntField()
    booked = fields.SmallIntField(default=0)

    hall_id: int
    category_id: int

    class Meta:
        table = "booking_slot"
        unique_together = (("hall", "category", "local_day", "start_min"),)


class Booking(Model):
    """A citizen's appointment: the slot, its state, and the contact it was made with."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=8, unique=True)
    openid = fields.CharField(max_length=64, db_index=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="bookings", on_delete=fields.CASCADE
    )
    category: fields.ForeignKeyRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="bookings", on_delete=fields.CASCADE
    )
    local_day = fields.DateField()
    start_min = fields.SmallIntField()
    starts_at = fields.DatetimeField()
    status = fields.CharField(max_length=16, default="booked")
    # "openid:category id:day" while the booking is active, else NULL: one per category a day.
    active_key = fields.CharField(max_length=120, null=True, unique=True)
    # How often it was moved; notices and reminders of an earlier slot name an earlier count.
    moves = fields.SmallIntField(default=0)
    # Personal data, blanked when the citizen unfollows or some time after the booking ended.
    name = fields.CharField(max_length=40, default="")
    mobile = fields.CharField(max_length=16, default="")
    id_last4 = fields.CharField(max_length=4, default="")
    id_hash = fields.CharField(max_length=64, default="")
    # Points held under the "points" policy, given back at check-in.
    held_points = fields.SmallIntField(default=0)
    ticket_id = fields.IntField(null=True)
    checked_in_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    end_reason = fields.CharField(max_length=16, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    hall_id: int
    category_id: int

    class Meta:
        table = "booking"
        indexes = (("hall_id", "local_day", "category_id"),)

    @property
    def ref(self) -> str:
        """Name the booking at its current slot, for notices: a moved one is news again."""
        return f"booking:{self.id}" + (f":m{self.moves}" if self.moves else "")


class BookingProfile(Model):
    """The contact a citizen booked with last, offered again next time."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=40)
    mobile = fields.CharField(max_length=16)
    id_last4 = fields.CharField(max_length=4, default="")
    id_hash = fields.CharField(max_length=64, default="")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "booking_profile"


class BookingPoints(Model):
    """A citizen's points under the "points" policy, and the day they last grew back."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    points = fields.SmallIntField()
    grown_on = fields.DateField()

    class Meta:
        table = "booking_points"


class CheckinCode(Model):
    """A hall's permanent check-in QR code: the scene it carries and the link it encodes.

    The menu's scanner reports the link, not the scene, so a scan is matched to its hall here.
    """

    id = fields.IntField(primary_key=True)
    hall: fields.ForeignKeyRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="checkin_codes", on_delete=fields.CASCADE
    )
    scene = fields.CharField(max_length=64, unique=True)
    ticket = fields.CharField(max_length=200)
    url = fields.CharField(max_length=200, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    hall_id: int

    class Meta:
        table = "checkin_code"


# Slots and days.


@dataclass(frozen=True, slots=True)
class Person:
    """The contact a booking is made with: name, mobile, and an ID number's last 4 and digest."""

    name: str
    mobile: str
    id_last4: str = ""
    id_hash: str = ""


@dataclass(frozen=True, slots=True)
class Slot:
    start_min: int
    end_min: int
    capacity: int
    booked: int

    @property
    def left(self) -> int:
        return max(0, self.capacity - self.booked)

    @property
    def label(self) -> str:
        return f"{clock(self.start_min)}-{clock(self.end_min)}"


@dataclass(frozen=True, slots=True)
class OfferedDay:
    """A date with the slots still offered on it."""

    opening: Opening
    slots: list[Slot]

    @property
    def day(self) -> date:
        return self.opening.day

    @property
    def left(self) -> int:
        return sum(slot.left for slot in self.slots)


def minutes(at: time) -> int:
    return 24 * 60 if at == time.max else at.hour * 60 + at.minute


def clock(start_min: int) -> str:
    return f"{start_min // 60:02d}:{start_min % 60:02d}"


def slot_starts(span: tuple[time, time] | None, slot_min: int) -> list[int]:
    """Return the starts of the slots that fit between opening and closing."""
    if span is None:
        return []
    first, end = minutes(span[0]), minutes(span[1])
    return list(range(first, end - slot_min + 1, slot_min))


def local_start(day: date, start_min: int, tz: Any) -> datetime:
    """Return a slot's start as an aware time in the hall's zone."""
    return datetime.combine(day, time(start_min // 60, start_min % 60), tz)


def active_key(openid: str, category_id: int, day: date) -> str:
    return f"{openid}:{category_id}:{day.isoformat()}"


def last_day(now: datetime, rules: BookingRules) -> date:
    """Return the farthest bookable date: today + days_ahead, once that day's release time came."""
    farthest = now.date() + timedelta(days=rules.days_ahead)
    if rules.release_at is not None and now.time() < rules.release_at:
        return farthest - timedelta(days=1)
    return farthest


def is_offered(day: date, start_min: int, now: datetime, rules: BookingRules) -> bool:
    """Tell whether a start is still bookable now: not past the cut-off, within the horizon."""
    if not now.date() <= day <= last_day(now, rules):
        return False
    starts = local_start(day, start_min, now.tzinfo)
    return starts - timedelta(minutes=rules.cutoff_min) > now


async def bookable(hall: Hall, category: Category) -> bool:
    return hall.kind != "self_service" and await hall.categories.filter(id=category.id).exists()


async def _slot_rows(hall_id: int, category_id: int, first: date, last: date) -> dict[Any, Any]:
    rows = await BookingSlot.filter(
        hall_id=hall_id, category_id=category_id, local_day__gte=first, local_day__lte=last
    ).values_list("local_day", "start_min", "capacity", "booked")
    return {(day, start): (capacity, booked) for day, start, capacity, booked in rows}


async def offered_days(
    hall: Hall, category: Category, now: datetime, rules: BookingRules, *, with_full: bool = False
) -> list[OfferedDay]:
    """Return the open days from today to the horizon with the slots still bookable now."""
    first, last = now.date(), last_day(now, rules)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    found = await openings(hall, days)
    taken = await _slot_rows(hall.id, category.id, first, last)
    capacity = rules.capacity_of(hall.code, category.code)
    offered = []
    for day in days:
        opening = found[day]
        slots = []
        for start in slot_starts(opening.span, rules.slot_min):
            if not is_offered(day, start, now, rules):
                continue
            cap, booked = taken.get((day, start), (capacity, 0))
            slots.append(Slot(start, start + rules.slot_min, cap, booked))
        open_slots = slots if with_full else [s for s in slots if s.left]
        if open_slots:
            offered.append(OfferedDay(opening, open_slots))
    return offered


async def offered_slots(
    hall: Hall, category: Category, day: date, now: datetime, rules: BookingRules
) -> list[Slot]:
    """Return the slots of one day that can still be booked and have a place left."""
    for offered in await offered_days(hall, category, now, rules):
        if offered.day == day:
            return offered.slots
    return []


async def _check_offered(
    hall: Hall, category: Category, day: date, start_min: int, now: datetime, rules: BookingRules
) -> None:
    if not await bookable(hall, category):
        raise NotBookable(hall=hall.name, category=category.name)
    opening = await opening_on(hall, day)
    if not opening.is_open:
        raise DayNotOpen(
            day=day,
            holiday=opening.kind.holiday if opening.kind.kind == "holiday" else "",
            is_closure=opening.closure is not None,
            closure=opening.closure or "",
        )
    if start_min not in slot_starts(opening.span, rules.slot_min):
        raise SlotNotOffered(day=day, start=clock(start_min))
    if not is_offered(day, start_min, now, rules):
        raise SlotNotOffered(day=day, start=clock(start_min), cutoff_min=rules.cutoff_min)


# Places: taken and given back only by conditional UPDATEs.


async def _take_place(
    conn: BaseDBAsyncClient, hall_id: int, category_id: int, day: date, start: int, capacity: int
) -> bool:
    """Take one place of a slot, if one is left; the row is made first if it is missing."""
    row = BookingSlot(
        hall_id=hall_id, category_id=category_id, local_day=day, start_min=start, capacity=capacity
    )
    await BookingSlot.bulk_create([row], ignore_conflicts=True, using_db=conn)
    taken = await (
        BookingSlot.filter(
            hall_id=hall_id, category_id=category_id, local_day=day, start_min=start,
            booked__lt=F("capacity"),
        )
        .using_db(conn)
        .update(booked=F("booked") + 1)
    )  # fmt: skip
    return taken == 1


async def _give_back_place(conn: BaseDBAsyncClient, booking: Booking) -> None:
    await (
        BookingSlot.filter(
            hall_id=booking.hall_id, category_id=booking.category_id, local_day=booking.local_day,
            start_min=booking.start_min, booked__gt=0,
        )
        .using_db(conn)
        .update(booked=F("booked") - 1)
    )  # fmt: skip


# Booking, cancelling, moving.


async def book(
    openid: str,
    hall: Hall,
    category: Category,
    day: date,
    start_min: int,
    person: Person,
    now: datetime,
    rules: BookingRules,
) -> Booking:
    """Book a place for a citizen; refuse with the reason, SlotFull when no place is left.

    The slot counter's conditional UPDATE and the unique active key are the guards: neither a
    full slot nor a second booking of the day in the category gets through, however many
    processes try at once. Everything is one transaction, so a refusal leaves nothing behind.
    """
    await _check_offered(hall, category, day, start_min, now, rules)
    await check_may_book(openid, now.date(), rules)
    key = active_key(openid, category.id, day)
    await _refuse_second(key, category)
    capacity = rules.capacity_of(hall.code, category.code)
    hold = rules.no_show.points_hold if rules.no_show.uses_points else 0
    starts = local_start(day, start_min, now.tzinfo).astimezone(UTC)
    for _ in range(CODE_ATTEMPTS):
        try:
            async with in_transaction() as conn:
                if not await _take_place(conn, hall.id, category.id, day, start_min, capacity):
                    raise SlotFull(day=day, start=clock(start_min))
                if hold:
                    await _hold_points(conn, openid, now.date(), rules)
                booking = await Booking.create(
                    using_db=conn,
                    code=_new_code(),
                    openid=openid,
                    hall_id=hall.id,
                    category_id=category.id,
                    local_day=day,
                    start_min=start_min,
                    starts_at=starts,
                    active_key=key,
                    name=person.name,
                    mobile=person.mobile,
                    id_last4=person.id_last4,
                    id_hash=person.id_hash,
                    held_points=hold,
                )
        except IntegrityError:
            await _refuse_second(key, category)
            continue  # the code was drawn twice: draw again
        log.info("booking made booking=%d hall=%s day=%s", booking.id, hall.code, day)
        return booking
    raise RuntimeError("no free booking code after several draws")


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


async def _refuse_second(key: str, category: Category) -> None:
    held = await Booking.get_or_none(active_key=key)
    if held is not None:
        raise AlreadyBooked(
            category=category.name, day=held.local_day, start=clock(held.start_min), code=held.code
        )


async def booking_of(openid: str, booking_id: int) -> Booking:
    """Return one of the citizen's bookings, else refuse."""
    booking = await Booking.get_or_none(id=booking_id, openid=openid)
    if booking is None:
        raise BookingNotFound(booking_id=booking_id)
    return booking


def is_changeable_at(starts_at: datetime, now: datetime, rules: BookingRules) -> bool:
    """Tell whether a booking starting at `starts_at` can still be cancelled or moved."""
    return now < starts_at - timedelta(minutes=rules.cancel_deadline_min)


async def check_changeable(booking: Booking, now: datetime, rules: BookingRules) -> None:
    if booking.status != "booked":
        raise WrongBookingState(code=booking.code, status=booking.status)
    if not is_changeable_at(booking.starts_at, now, rules):
        # Past the deadline a call to the hall is the way left: its number, not a search.
        hall = next((h for h in await cached_halls() if h.id == booking.hall_id), None)
        raise TooLateToChange(
            code=booking.code,
            deadline_min=rules.cancel_deadline_min,
            phone=hall.phone if hall else "",
        )


async def cancel(
    booking: Booking,
    now: datetime,
    rules: BookingRules,
    *,
    reason: str = "citizen",
    enforce_deadline: bool = True,
) -> Booking:
    """End a booking before it starts and give its place back; a second cancel changes nothing.

    Only the citizen's own cancellation costs points; the hall's (a closure) does not.
    """
    if enforce_deadline:
        await check_changeable(booking, now, rules)
    elif booking.status != "booked":
        raise WrongBookingState(code=booking.code, status=booking.status)
    cost = rules.no_show.points_cancel if reason == "citizen" else 0
    await _end(booking, "cancelled", reason, now, rules, cost)
    log.info("booking cancelled booking=%d reason=%s", booking.id, reason)
    return booking


async def _end(
    booking: Booking, status: str, reason: str, now: datetime, rules: BookingRules, cost: int
) -> None:
    """Move a booked booking to `status`, give its place back, and settle its points."""
    values: dict[str, Any] = {"status": status, "active_key": None, "end_reason": reason}
    values.update(ended_at=now.astimezone(UTC), held_points=0)
    async with in_transaction() as conn:
        changed = (
            await Booking.filter(id=booking.id, status="booked", moves=booking.moves)
            .using_db(conn)
            .update(**values)
        )
        if changed != 1:
            raise WrongBookingState(code=booking.code, status="changed")
        if status == "cancelled":
            await _give_back_place(conn, booking)
        if rules.no_show.uses_points:
            delta = booking.held_points - cost
            await _add_points(conn, booking.openid, delta, now.date(), rules)
    for name, value in values.items():
        setattr(booking, name, value)


async def move(
    booking: Booking, day: date, start_min: int, now: datetime, rules: BookingRules
) -> Booking:
    """Move a booking to another slot: the new place is taken first, then the old one freed.

    It is one transaction: a full slot or a second booking on the new day leaves the booking
    where it was.
    """
    await check_changeable(booking, now, rules)
    if (day, start_min) == (booking.local_day, booking.start_min):
        raise SlotNotOffered(day=day, start=clock(start_min), is_same=True)
    hall = await Hall.get(id=booking.hall_id)
    category = await Category.get(id=booking.category_id)
    await _check_offered(hall, category, day, start_min, now, rules)
    key = active_key(booking.openid, category.id, day)
    if key != booking.active_key:
        await _refuse_second(key, category)
    capacity = rules.capacity_of(hall.code, category.code)
    values: dict[str, Any] = {"local_day": day, "start_min": start_min, "active_key": key}
    values["starts_at"] = local_start(day, start_min, now.tzinfo).astimezone(UTC)
    values["moves"] = booking.moves + 1
    # A queryset update leaves auto_now alone; the reminder sweep reads when the slot was set.
    values["updated_at"] = now.astimezone(UTC)
    try:
        async with in_transaction() as conn:
            if not await _take_place(conn, hall.id, category.id, day, start_min, capacity):
                raise SlotFull(day=day, start=clock(start_min))
            changed = (
                await Booking.filter(id=booking.id, status="booked", moves=booking.moves)
                .using_db(conn)
                .update(**values)
            )
            if changed != 1:
                raise WrongBookingState(code=booking.code, status="changed")
            await _give_back_place(conn, booking)
    except IntegrityError:
        await _refuse_second(key, category)
        raise
    for name, value in values.items():
        setattr(booking, name, value)
    log.info("booking moved booking=%d day=%s moves=%d", booking.id, day, booking.moves)
    return booking


async def mark_missed(
    booking: Booking, now: datetime, rules: BookingRules, *, actor: str = "staff"
) -> Booking:
    """Record a no-show, once the check-in window has closed; it counts against the citizen."""
    if booking.status != "booked":
        raise WrongBookingState(code=booking.code, status=booking.status)
    closes = booking.starts_at + timedelta(minutes=rules.checkin_late_min)
    if now < closes:
        raise WrongBookingState(code=booking.code, status="upcoming")
    await _end(booking, "missed", "no_show", now, rules, rules.no_show.points_no_show)
    log.info("booking missed booking=%d actor=%s", booking.id, actor)
    return booking


# Check-in: claimed on the booking first, so that two scans at once issue one ticket.


async def claim_check_in(booking: Booking, now: datetime) -> bool:
    """Mark a booked booking as checked in; False if another scan did it first."""
    at = now.astimezone(UTC)
    claimed = await Booking.filter(id=booking.id, status="booked").update(
        status="checked_in", checked_in_at=at
    )
    if claimed:
        booking.status, booking.checked_in_at = "checked_in", at
    return claimed == 1


async def attach_ticket(
    booking: Booking, ticket_id: int, now: datetime, rules: BookingRules
) -> None:
    """Tie the queue ticket to a checked-in booking and give back the points it held."""
    async with in_transaction() as conn:
        await (
            Booking.filter(id=booking.id).using_db(conn).update(ticket_id=ticket_id, held_points=0)
        )
        if rules.no_show.uses_points and booking.held_points:
            await _add_points(conn, booking.openid, booking.held_points, now.date(), rules)
    booking.ticket_id, booking.held_points = ticket_id, 0


async def undo_check_in(booking: Booking) -> None:
    """Put a claimed check-in back, when no ticket could be issued for it."""
    await Booking.filter(id=booking.id, status="checked_in", ticket_id=None).update(
        status="booked", checked_in_at=None
    )
    booking.status, booking.checked_in_at = "booked", None


# No-shows: a count that suspends, or points.


async def check_may_book(openid: str, today: date, rules: BookingRules) -> None:
    """Refuse a citizen whose no-shows suspend booking, saying until when."""
    policy = rules.no_show
    if policy.uses_points:
        points = await points_of(openid, today, rules)
        if points < policy.points_hold:
            days = -(-(policy.points_hold - points) // max(policy.points_daily, 1))
            raise NotEnoughPoints(points=points, back_on=today + timedelta(days=days))
        return
    until = await suspended_until(openid, today, rules)
    if until is not None:
        raise Suspended(until=until, limit=policy.count_limit, window_days=policy.window_days)


async def suspended_until(openid: str, today: date, rules: BookingRules) -> date | None:
    """Return the first day a suspended citizen may book again, or None if not suspended.

    A no-show that makes `count_limit` within `window_days` suspends booking for
    `suspend_days` from its day.
    """
    policy = rules.no_show
    since = today - timedelta(days=policy.window_days + policy.suspend_days)
    days: list[date] = await (
        Booking.filter(openid=openid, status="missed", local_day__gt=since)
        .order_by("-local_day")
        .values_list("local_day", flat=True)
    )  # type: ignore[assignment]
    for latest in days:
        until = latest + timedelta(days=policy.suspend_days)
        if until <= today:
            break
        start = latest - timedelta(days=policy.window_days)
        if sum(1 for d in days if start < d <= latest) >= policy.count_limit:
            return until
    return None


async def points_of(openid: str, today: date, rules: BookingRules) -> int:
    """Return a citizen's points today, after what grew back since they last changed."""
    async with in_transaction() as conn:
        return await _grown_points(conn, openid, today, rules)


async def _grown_points(
    conn: BaseDBAsyncClient, openid: str, today: date, rules: BookingRules
) -> int:
    policy = rules.no_show
    row = await BookingPoints.filter(openid=openid).using_db(conn).first()
    if row is None:
        return policy.points_start
    days = (today - row.grown_on).days
    if days <= 0:
        return row.points
    holding: list[int] = await (
        Booking.filter(openid=openid, status="booked")
        .using_db(conn)
        .values_list("held_points", flat=True)
    )  # type: ignore[assignment]
    held = sum(holding)
    grown = max(row.points, min(policy.points_max - held, row.points + days * policy.points_daily))
    # Of two requests growing the same points, one does: the other finds the day changed.
    await (
        BookingPoints.filter(id=row.id, grown_on=row.grown_on)
        .using_db(conn)
        .update(points=grown, grown_on=today)
    )
    return grown


async def _points_row(
    conn: BaseDBAsyncClient, openid: str, today: date, rules: BookingRules
) -> None:
    row = BookingPoints(openid=openid, points=rules.no_show.points_start, grown_on=today)
    await BookingPoints.bulk_create([row], ignore_conflicts=True, using_db=conn)


async def _hold_points(
    conn: BaseDBAsyncClient, openid: str, today: date, rules: BookingRules
) -> None:
    policy = rules.no_show
    await _points_row(conn, openid, today, rules)
    points = await _grown_points(conn, openid, today, rules)
    held = (
        await BookingPoints.filter(openid=openid, points__gte=policy.points_hold)
        .using_db(conn)
        .update(points=F("points") - policy.points_hold)
    )
    if held != 1:
        back = -(-(policy.points_hold - points) // max(policy.points_daily, 1))
        raise NotEnoughPoints(points=points, back_on=today + timedelta(days=back))


async def _add_points(
    conn: BaseDBAsyncClient, openid: str, delta: int, today: date, rules: BookingRules
) -> None:
    """Add (or take) points, kept between 0 and the maximum."""
    if not delta:
        return
    await _points_row(conn, openid, today, rules)
    # What grew back until today counts first: a penalty today is not softened by it.
    await _grown_points(conn, openid, today, rules)
    query = BookingPoints.filter(openid=openid).using_db(conn)
    await query.update(points=F("points") + delta)
    await BookingPoints.filter(openid=openid, points__lt=0).using_db(conn).update(points=0)
    ceiling = rules.no_show.points_max
    await (
        BookingPoints.filter(openid=openid, points__gt=ceiling)
        .using_db(conn)
        .update(points=ceiling)
    )


# What a citizen holds, and what the hall sees.


async def upcoming_of(openid: str, today: date) -> list[Booking]:
    """Return the citizen's active bookings from today on, soonest first."""
    return await Booking.filter(
        openid=openid, status__in=ACTIVE_STATES, local_day__gte=today
    ).order_by("starts_at", "id")


async def day_bookings(hall_id: int, day: date, category_id: int | None = None) -> list[Booking]:
    query = Booking.filter(hall_id=hall_id, local_day=day)
    if category_id is not None:
        query = query.filter(category_id=category_id)
    return await query.order_by("category_id", "start_min", "id")


async def profile_of(openid: str) -> BookingProfile | None:
    return await BookingProfile.get_or_none(openid=openid)


async def remember(openid: str, person: Person) -> None:
    """Keep the contact for the citizen's next booking."""
    values: dict[str, Any] = {"name": person.name, "mobile": person.mobile}
    if person.id_hash:
        values.update(id_last4=person.id_last4, id_hash=person.id_hash)
    updated = await BookingProfile.filter(openid=openid).update(**values)
    if not updated:
        try:
            await BookingProfile.create(openid=openid, **values)
        except IntegrityError:
            await BookingProfile.filter(openid=openid).update(**values)


# Personal data.


async def forget_citizen(openid: str, now: datetime, rules: BookingRules | None = None) -> int:
    """A citizen unfollowed: free their coming places and delete every personal field kept.

    Returns how many bookings were cancelled. Past bookings stay, without name or numbers,
    for the hall's counts and the no-show rule.
    """
    rules = rules or booking_rules()
    cancelled = 0
    for booking in await Booking.filter(openid=openid, status="booked"):
        try:
            await cancel(booking, now, rules, reason="unfollow", enforce_deadline=False)
        except WrongBookingState:
            continue
        cancelled += 1
    await Booking.filter(openid=openid).update(**PERSONAL_FIELDS)
    await BookingProfile.filter(openid=openid).delete()
    log.info("booking personal data deleted cancelled=%d", cancelled)
    return cancelled


async def blank_ended(today: date, rules: BookingRules) -> int:
    """Blank the personal fields of bookings whose day is `keep_days` past; return how many."""
    before = today - timedelta(days=rules.keep_days)
    return (
        await Booking.filter(local_day__lt=before)
        .exclude(name="", mobile="")
        .update(**PERSONAL_FIELDS)
    )


async def cancel_for_closure(
    hall_code: str, day: date, now: datetime, rules: BookingRules
) -> list[Booking]:
    """Cancel the booked bookings of a day a hall (or every hall, "*") closes."""
    query = Booking.filter(local_day=day, status="booked")
    if hall_code != "*":
        query = query.filter(hall__code=hall_code)
    ended = []
    for booking in await query:
        try:
            ended.append(
                await cancel(booking, now, rules, reason="closure", enforce_deadline=False)
            )
        except WrongBookingState:
            continue
    return ended
