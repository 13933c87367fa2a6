"""What follows a queue change: the holders' notices, and the jobs that work them out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from arq import cron
from arq.cron import CronJob
from arq.worker import Function, func
from redis.exceptions import RedisError

from bot import push
from models import queue
from models.calendar import opening_on
from models.citizen import Citizen
from models.hall import Category, Hall
from models.queue import Ticket, Window
from models.queue_rules import QueueRules, WrongState, queue_rules
from models.queue_wait import Estimate, estimate, waiting_tickets

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

# The arq job that looks for holders whose turn is now near, after a queue moved.
QUEUE_CHANGED_JOB = "queue_changed"
# No citizen is told earlier than this many people ahead, whatever they chose.
NEAR_AHEAD_MAX = 20


@dataclass(slots=True)
class Taken:
    """A ticket just given, with where it stands."""

    ticket: Ticket
    hall: Hall
    category: Category
    estimate: Estimate
    # People ahead at which this citizen is told their turn is near.
    near_ahead: int


def _clock(services: Services, at: datetime) -> str:
    return at.astimezone(services.settings.tz).strftime("%Y-%m-%d %H:%M")


async def take(services: Services, openid: str, hall: Hall, category: Category) -> Taken:
    """Take a remote number for a citizen and queue the "ticket taken" notice."""
    rules = queue_rules()
    at = services.local_now()
    await queue.check_open_for_remote(hall, at, rules)
    ticket, readings = await queue.issue_and_read_wait(
        hall, category, at, openid=openid, rules=rules
    )
    waits = await estimate(ticket, category.code, rules, holder=openid, readings=readings)
    threshold = _threshold(waits.holder_near_ahead, rules)
    if waits.ahead <= threshold:
        # The "taken" notice already says how few are ahead; a "near" one would repeat it.
        await Ticket.filter(id=ticket.id).update(is_near_told=True)
    values = {"number": ticket.number, "category": category.name, "hall": hall.name}
    values.update(ahead=str(waits.ahead), taken_at=_clock(services, services.now()))
    await _notify(services, "ticket_taken", ticket, values)
    return Taken(ticket, hall, category, waits, threshold)


async def issue_onsite(services: Services, hall: Hall, category: Category, actor: str) -> Ticket:
    """Print an on-site number (the hall's ticket machine), within opening hours, no quota."""
    at = services.local_now()
    await queue.check_open(hall, at)
    return await queue.issue(hall, category, at, source="onsite", actor=actor)


async def cancel(services: Services, ticket: Ticket) -> Ticket:
    """Give up a ticket as its holder; those behind move up."""
    was_waiting = ticket.status == "waiting"
    ticket = await queue.cancel(ticket, services.local_now())
    if was_waiting:
        await queue_changed_soon(services, ticket.hall_id, ticket.category_id)
    return ticket


async def requeue(services: Services, ticket: Ticket) -> Ticket:
    """Put a missed ticket back at the end of its queue, once."""
    hall = await Hall.get(id=ticket.hall_id)
    ticket = await queue.requeue(ticket, hall, services.local_now(), queue_rules())
    await queue_changed_soon(services, ticket.hall_id, ticket.category_id)
    return ticket


async def call_next(services: Services, window: Window, actor: str) -> Ticket | None:
    """Call the next ticket to a window, tell its holder, and let those behind know."""
    ticket = await queue.call_next(window, services.local_now(), actor)
    if ticket is None:
        return None
    await tell_called(services, ticket, window)
    await queue_changed_soon(services, ticket.hall_id, ticket.category_id)
    return ticket


async def tell_called(services: Services, ticket: Ticket, window: Window) -> None:
    hall = await Hall.get(id=ticket.hall_id)
    values = {"number": ticket.number, "window": window.name, "hall": hall.name}
    values["called_at"] = _clock(services, services.now())
    await _notify(services, "ticket_called", ticket, values)


async def mark_missed(services: Services, window: Window, ticket_id: int, actor: str) -> Ticket:
    """Record that the holder did not come, and tell them how to re-queue."""
    ticket = await queue.mark_missed(window, ticket_id, services.local_now(), actor, queue_rules())
    called_at = ticket.called_at or services.now()
    values = {"number": ticket.number, "window": window.name}
    values["called_at"] = _clock(services, called_at)
    await _notify(services, "ticket_missed", ticket, values)
    return ticket


async def transfer(
    services: Services, window: Window, ticket_id: int, category: Category, actor: str
) -> Ticket:
    """Send a ticket to another category's queue."""
    ticket = await queue.transfer(window, ticket_id, category, services.local_now(), actor)
    await queue_changed_soon(services, ticket.hall_id, ticket.category_id)
    return ticket


async def _notify(services: Services, kind: str, ticket: Ticket, values: dict[str, str]) -> None:
    """Hand a notice about a ticket to the push worker; on-site tickets have nobody to tell."""
    if ticket.openid:
        await push.notify_soon(
            services, kind=kind, openid=ticket.openid, ref=ticket.ref, values=values
        )


async def near_ahead(openid: str, rules: QueueRules) -> int:
    """Return the people ahead at which a citizen wants "almost your turn"."""
    chosen = await Citizen.filter(openid=openid).values_list("near_ahead", flat=True)
    return _threshold(chosen[0] if chosen else None, rules)


def _threshold(chosen: Any, rules: QueueRules) -> int:
    if chosen is None:
        return rules.near_ahead_default
    return max(0, min(int(chosen), NEAR_AHEAD_MAX))


# Jobs.


async def queue_changed_soon(services: Services, hall_id: int, category_id: int) -> None:
    """Queue the job that tells the holders whose turn became near; never work it out here."""
    if services.jobs is None:
        log.warning("no job queue: near notices not worked out hall=%d", hall_id)
        return
    try:
        await services.jobs.enqueue_job(QUEUE_CHANGED_JOB, hall_id, category_id)
    except (RedisError, OSError) as exc:
        log.warning("queue change not queued hall=%d error=%s", hall_id, type(exc).__name__)


async def queue_changed(ctx: dict[str, Any], hall_id: int, category_id: int) -> int:
    """Tell each holder whose people ahead fell to their threshold (arq job); return how many.

    Skips and cancellations can jump a ticket past its threshold: any ticket at or under it that
    was not told yet is told, however it got there.
    """
    services: Services = ctx["services"]
    rules = queue_rules()
    day = services.today()
    waiting = await waiting_tickets(hall_id, category_id, day, limit=NEAR_AHEAD_MAX + 1)
    untold = [(ahead, t) for ahead, t in enumerate(waiting) if t.openid and not t.is_near_told]
    if not untold:
        return 0
    openids = [t.openid for _, t in untold]
    chosen = dict(await Citizen.filter(openid__in=openids).values_list("openid", "near_ahead"))
    hall = await Hall.get(id=hall_id)
    told = 0
    for ahead, ticket in untold:
        if ahead > _threshold(chosen.get(ticket.openid), rules):
            continue
        # The flag is the claim: of two jobs racing on the same change, one tells.
        if not await Ticket.filter(id=ticket.id, is_near_told=False).update(is_near_told=True):
            continue
        values = {"number": ticket.number, "ahead": str(ahead), "hall": hall.name}
        # Already in a worker: claim and send here, not through one more job.
        notice = await push.claim(
            services, kind="queue_near", openid=str(ticket.openid), ref=ticket.ref,
            values=values, to_send=True,
        )  # fmt: skip
        if notice is not None:
            await push.send_claimed(ctx, notice)
        told += 1
    log.info("queue change worked out hall=%d category=%d told=%d", hall_id, category_id, told)
    return told


async def expire_at_closing(ctx: dict[str, Any]) -> int:
    """Expire what still waits in halls that have closed, and tell the holders (arq cron job)."""
    services: Services = ctx["services"]
    at = services.local_now()
    expired = 0
    for hall in await Hall.all():
        for ticket in await _left_at_closing(hall, at):
            # One missed with no re-queue left was told so already; its end needs no notice.
            has_news = ticket.status != "missed" or ticket.active_key is not None
            try:
                ticket = await queue.change(
                    ticket.id, "expire", to="expired", allowed=queue.HOLDING_STATES, at=at,
                    actor="system", note="closing",
                )  # fmt: skip
            except WrongState:
                continue
            expired += 1
            if not has_news:
                continue
            category = await Category.get(id=ticket.category_id)
            values = {"number": ticket.number, "category": category.name, "hall": hall.name}
            await _notify(services, "ticket_expired", ticket, values)
    if expired:
        log.info("tickets expired at closing count=%d", expired)
    return expired


async def _left_at_closing(hall: Hall, at: datetime) -> list[Ticket]:
    """Return the hall's tickets that closing ends: today's once it closed, earlier days' all."""
    span = (await opening_on(hall, queue.local_day(at))).span
    has_closed = span is None or (span[1] != time.max and at.time() >= span[1])
    today = queue.local_day(at)
    earlier = Ticket.filter(hall_id=hall.id, status__in=queue.HOLDING_STATES, local_day__lt=today)
    found = list(await earlier)
    if has_closed:
        found += await Ticket.filter(
            hall_id=hall.id, status__in=("waiting", "missed"), local_day=today
        )
    return found


# Registered by bot/worker.py.
FUNCTIONS: list[Function] = [
    func(queue_changed, name=QUEUE_CHANGED_JOB, timeout=30, max_tries=3, keep_result=0),
]
# Every minute, so that a hall's waiting tickets end within a minute of its closing.
CRON_JOBS: list[CronJob] = [
    cron(expire_at_closing, name="expire_at_closing", second={30}, timeout=120),
]
