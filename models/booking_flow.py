"""What follows a booking change: its notices, the reminder jobs, and check-in into the queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from arq import cron
from arq.cron import CronJob
from arq.worker import Function, func
from redis.exceptions import RedisError

from bot import push
from models import booking as bookings
from models import queue, queue_flow
from models.booking import Booking, Person
from models.booking_rules import BookingRules, booking_rules
from models.calendar import Closure
from models.citizen import Citizen
from models.hall import Category, Hall
from models.queue import Ticket, TicketEvent
from models.queue_rules import AlreadyHolding, WrongState, queue_rules
from models.queue_wait import estimate, tickets_of

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

# The arq job that sends one reminder, if the booking is still where it was when queued.
REMIND_JOB = "booking_remind"
REMINDERS = ("evening", "hour")
# A reminder whose job was lost (Redis down when it was queued) is still sent by the sweep
# if its moment passed less than this long ago.
REMINDER_CATCH_UP_S = 3600


def slot_text(booking: Booking, services: Services) -> str:
    """Show a booking's start for a notice field: 2025-10-09 09:30."""
    return booking.starts_at.astimezone(services.settings.tz).strftime("%Y-%m-%d %H:%M")


async def _names(booking: Booking) -> tuple[Hall, Category]:
    return await Hall.get(id=booking.hall_id), await Category.get(id=booking.category_id)


async def _notify(
    services: Services, kind: str, booking: Booking, ref: str, values: dict[str, str]
) -> bool:
    try:
        return await push.notify(
            services, kind=kind, openid=booking.openid, ref=ref, values=values
        )
    except RedisError:
        # The notice row is claimed; the push sweep queues it again once Redis answers.
        log.warning("notice not queued kind=%s booking=%d", kind, booking.id)
        return False


async def _language(openid: str) -> str:
    found = await Citizen.filter(openid=openid).values_list("language", flat=True)
    return str(found[0]) if found else "zh"


# Booking, moving, cancelling.


async def book(
    services: Services,
    openid: str,
    hall: Hall,
    category: Category,
    day: date,
    start_min: int,
    person: Person,
) -> Booking:
    """Book a slot, remember the contact, send "booked" and queue the reminders."""
    rules = booking_rules()
    booking = await bookings.book(
        openid, hall, category, day, start_min, person, services.local_now(), rules
    )
    await bookings.remember(openid, person)
    await tell_booked(services, booking)
    await schedule_reminders(services, booking, rules)
    return booking


async def move(services: Services, booking: Booking, day: date, start_min: int) -> Booking:
    """Move a booking; the earlier slot's reminders find it moved and send nothing."""
    rules = booking_rules()
    booking = await bookings.move(booking, day, start_min, services.local_now(), rules)
    await tell_booked(services, booking)
    await schedule_reminders(services, booking, rules)
    return booking


async def tell_booked(services: Services, booking: Booking) -> None:
    hall, category = await _names(booking)
    values = {"category": category.name, "hall": hall.name, "slot": slot_text(booking, services)}
    values["code"] = booking.code
    await _notify(services, "booking_booked", booking, booking.ref, values)


async def cancel(services: Services, booking: Booking, *, reason: str = "citizen") -> Booking:
    """Cancel a booking for the citizen (within the deadline) or for the hall, and say so."""
    rules = booking_rules()
    now = services.local_now()
    is_citizen = reason == "citizen"
    await bookings.cancel(booking, now, rules, reason=reason, enforce_deadline=is_citizen)
    await tell_ended(services, booking, reason)
    return booking


async def mark_missed(services: Services, booking: Booking, actor: str) -> Booking:
    """Record a no-show and tell the citizen what it means for their next booking."""
    await bookings.mark_missed(booking, services.local_now(), booking_rules(), actor=actor)
    await tell_ended(services, booking, "no_show")
    return booking


async def tell_ended(services: Services, booking: Booking, reason: str) -> None:
    if reason == "unfollow":
        return
    _, category = await _names(booking)
    language = await _language(booking.openid)
    text = services.texts.render(f"booking/reason_{reason}.j2", language)
    values = {"category": category.name, "slot": slot_text(booking, services), "reason": text}
    await _notify(services, "booking_cancelled", booking, booking.ref, values)


async def remove_closure(closure_id: int) -> bool:
    """Reopen a day; bookings cancelled for it stay cancelled. False: no such closure."""
    deleted = await Closure.filter(id=closure_id).delete()
    queue.forget_calling_halls()
    return bool(deleted)


async def add_closure(
    services: Services, hall_code: str, day: date, reason: str, actor: str
) -> tuple[Closure, list[Booking]]:
    """Shut a hall (or every hall, "*") for a day and cancel that day's bookings, telling each."""
    closure, _ = await Closure.get_or_create(
        hall_code=hall_code, day=day, defaults={"reason": reason, "created_by": actor}
    )
    queue.forget_calling_halls()  # the openings this process keeps for takes
    rules = booking_rules()
    ended = await bookings.cancel_for_closure(hall_code, day, services.local_now(), rules)
    for booking in ended:
        await tell_ended(services, booking, "closure")
    log.info("closure added hall=%s day=%s cancelled=%d", hall_code, day, len(ended))
    return closure, ended


# Reminders.


def reminder_times(booking: Booking, rules: BookingRules, tz: Any) -> dict[str, datetime]:
    """Return when each reminder of a booking is due, in UTC."""
    evening = datetime.combine(booking.local_day - timedelta(days=1), rules.evening_at, tz)
    hour = booking.starts_at - timedelta(minutes=rules.reminder_before_min)
    return {"evening": evening.astimezone(UTC), "hour": hour.astimezone(UTC)}


def reminder_job_id(booking: Booking, which: str) -> str:
    return f"{REMIND_JOB}:{booking.id}:{booking.moves}:{which}"


async def schedule_reminders(services: Services, booking: Booking, rules: BookingRules) -> int:
    """Queue the reminders still ahead, each to run at its moment; return how many."""
    if services.jobs is None:
        log.warning("no job queue: reminders left to the sweep booking=%d", booking.id)
        return 0
    now = services.now()
    queued = 0
    for which, at in reminder_times(booking, rules, services.settings.tz).items():
        if at <= now or at >= booking.starts_at:
            continue
        try:
            await services.jobs.enqueue_job(
                REMIND_JOB,
                booking.id,
                booking.moves,
                which,
                _job_id=reminder_job_id(booking, which),
                _defer_until=at,
            )
        except (RedisError, OSError) as exc:
            log.warning("reminder not queued booking=%d error=%s", booking.id, type(exc).__name__)
            continue
        queued += 1
    return queued


async def remind(ctx: dict[str, Any], booking_id: int, moves: int, which: str) -> str:
    """Send one reminder (arq job) if the booking is still booked at the same slot.

    A booking cancelled or moved since the job was queued gets nothing from it: the move
    queued the reminders of the new slot under another count.
    """
    services: Services = ctx["services"]
    booking = await Booking.get_or_none(id=booking_id)
    if booking is None or booking.status != "booked" or booking.moves != moves:
        log.debug("reminder dropped booking=%d which=%s", booking_id, which)
        return "stale"
    if services.now() >= booking.starts_at:
        return "late"
    hall, category = await _names(booking)
    values = {"category": category.name, "hall": hall.name, "slot": slot_text(booking, services)}
    is_new = await _notify(services, "booking_reminder", booking, f"{booking.ref}:{which}", values)
    return "sent" if is_new else "claimed"


async def remind_overdue(ctx: dict[str, Any]) -> int:
    """Send the reminders whose jobs were lost (arq cron job); return how many were new."""
    services: Services = ctx["services"]
    rules = booking_rules()
    now = services.now()
    horizon = now + timedelta(days=1, minutes=rules.reminder_before_min)
    sent = 0
    for booking in await Booking.filter(status="booked", starts_at__gt=now, starts_at__lt=horizon):
        for which, at in reminder_times(booking, rules, services.settings.tz).items():
            # A reminder whose moment came before the slot was booked was never due.
            if booking.updated_at < at <= now < at + timedelta(seconds=REMINDER_CATCH_UP_S):
                ctx_one = {"services": services}
                sent += await remind(ctx_one, booking.id, booking.moves, which) == "sent"
    if sent:
        log.warning("reminders sent by the sweep count=%d", sent)
    return sent


async def blank_personal(ctx: dict[str, Any]) -> int:
    """Blank the personal fields of long-ended bookings (arq cron job)."""
    services: Services = ctx["services"]
    blanked = await bookings.blank_ended(services.today(), booking_rules())
    if blanked:
        log.info("booking personal fields blanked count=%d", blanked)
    return blanked


# Check-in at the hall.


@dataclass(slots=True)
class CheckedIn:
    booking: Booking
    ticket: Ticket
    category: Category
    ahead: int
    wait_min: int


@dataclass(slots=True)
class Arrival:
    """What a scan of a hall's check-in code found and did for one citizen."""

    hall: Hall
    checked_in: list[CheckedIn] = field(default_factory=list)
    early: list[Booking] = field(default_factory=list)
    late: list[Booking] = field(default_factory=list)
    elsewhere: list[Booking] = field(default_factory=list)
    coming: list[Booking] = field(default_factory=list)
    present: list[Ticket] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.checked_in or self.early or self.late or self.elsewhere or self.present)


def window_of(
    booking: Booking, rules: BookingRules, hall: Hall | None = None, tz: tzinfo | None = None
) -> tuple[datetime, datetime]:
    """Return when a booking's check-in opens and closes, in UTC.

    Given the hall and its zone, check-in opens no earlier than the doors do: a 9:00 slot in a
    hall opening at 9:00 is not to be checked in at 8:30, in front of a closed door.
    """
    opens = booking.starts_at - timedelta(minutes=rules.checkin_early_min)
    if hall is not None and tz is not None:
        local = booking.starts_at.astimezone(tz)
        span = hall.opening_of(local)
        if span is not None:
            doors = datetime.combine(local.date(), span[0], tz).astimezone(UTC)
            opens = min(max(opens, doors), booking.starts_at)
    return opens, booking.starts_at + timedelta(minutes=rules.checkin_late_min)


async def arrive(services: Services, openid: str, hall: Hall) -> Arrival:
    """Check in the citizen's bookings at this hall, and confirm their remote tickets here."""
    rules = booking_rules()
    now = services.local_now()
    arrival = Arrival(hall)
    upcoming = await bookings.upcoming_of(openid, now.date())
    for booking in upcoming:
        if booking.local_day != now.date():
            arrival.coming.append(booking)
        elif booking.hall_id != hall.id:
            arrival.elsewhere.append(booking)
        else:
            await _arrive_for(services, booking, hall, now, rules, arrival)
    for ticket in await tickets_of(openid, now.date()):
        if ticket.hall_id == hall.id and ticket.source == "remote":
            await confirm_present(ticket, now, hall)
            arrival.present.append(ticket)
    return arrival


async def _arrive_for(
    services: Services,
    booking: Booking,
    hall: Hall,
    now: datetime,
    rules: BookingRules,
    arrival: Arrival,
) -> None:
    opens, closes = window_of(booking, rules, hall, services.settings.tz)
    if booking.status == "booked" and now < opens:
        arrival.early.append(booking)
        return
    if booking.status == "booked" and now > closes:
        arrival.late.append(booking)
        return
    ticket = await check_in(services, booking, hall, now, rules)
    if ticket is None:
        return
    category = await Category.get(id=booking.category_id)
    waits = await estimate(ticket, category.code, queue_rules())
    arrival.checked_in.append(CheckedIn(booking, ticket, category, waits.ahead, waits.wait_min))


async def check_in(
    services: Services, booking: Booking, hall: Hall, now: datetime, rules: BookingRules
) -> Ticket | None:
    """Turn a booking into a priority ticket, once; a second scan gets the same ticket."""
    if not await bookings.claim_check_in(booking, now):
        await booking.refresh_from_db()
        if booking.ticket_id is None:
            return None  # another scan is issuing it this moment
        return await Ticket.get_or_none(id=booking.ticket_id)
    category = await Category.get(id=booking.category_id)
    try:
        ticket = await _booking_ticket(services, booking, hall, category, now)
    except BaseException:
        await bookings.undo_check_in(booking)
        raise
    await bookings.attach_ticket(booking, ticket.id, now, rules)
    log.info("booking checked in booking=%d ticket=%d", booking.id, ticket.id)
    return ticket


async def _booking_ticket(
    services: Services, booking: Booking, hall: Hall, category: Category, now: datetime
) -> Ticket:
    """Issue the booking's priority ticket; a waiting remote ticket of the category gives way."""
    options: dict[str, Any] = {"source": "booking", "actor": "citizen", "openid": booking.openid}
    options["priority"] = queue.BOOKING_PRIORITY
    try:
        return await queue.issue(hall, category, now, **options)
    except AlreadyHolding:
        held = await queue.active_ticket(booking.openid, category.id)
        if held is None or held.hall_id != hall.id:
            raise
        if held.status != "waiting" or held.source == "booking":
            return held  # already at a window: keep what the citizen has
    try:
        await queue_flow.cancel(services, held)
    except WrongState:
        return held
    return await queue.issue(hall, category, now, **options)


PRESENT_ACTION = "present"


async def confirm_present(ticket: Ticket, now: datetime, hall: Hall) -> bool:
    """Record that a remote ticket's holder is in the hall; False if it was recorded before.

    The queue keeps no flag for it: the ticket's history gets a "present" event.
    """
    if await TicketEvent.filter(ticket_id=ticket.id, action=PRESENT_ACTION).exists():
        return False
    await TicketEvent.create(
        ticket_id=ticket.id,
        action=PRESENT_ACTION,
        from_status=ticket.status,
        to_status=ticket.status,
        at=now.astimezone(UTC),
        actor="citizen",
        note=f"checkin:{hall.code}",
    )
    log.info("ticket holder present ticket=%d", ticket.id)
    return True


# Registered by bot/worker.py.
FUNCTIONS: list[Function] = [
    func(remind, name=REMIND_JOB, timeout=30, max_tries=3, keep_result=0),
]
CRON_JOBS: list[CronJob] = [
    cron(remind_overdue, name="booking_reminders_overdue", minute={5, 25, 45}, second={40}),
    cron(blank_personal, name="booking_blank_personal", hour={3}, minute={20}, second={0}),
]
