"""市民课堂: activities, sign-ups within capacity, and the reminder the day before."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from arq import cron
from arq.cron import CronJob
from arq.worker import Function, func
from redis.exceptions import RedisError
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bot import push
from bot.errors import CitizenError
from config.settings import CONFIG_DIR

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

CLASSROOM_FILE = CONFIG_DIR / "classroom.toml"
ACTIVITY_STATES = ("open", "cancelled")
REMIND_JOB = "classroom_remind"
REMIND_JOB_PREFIX = "classroom_remind:"
# The sweep sends reminders whose moment passed this recently and were lost (Redis was down).
SWEEP_LOOKBACK = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class ClassroomRules:
    """How sign-ups work, from config/classroom.toml."""

    remind_at: time = time(18, 0)
    list_size: int = 8
    closes_before_min: int = 30
    activities: tuple[dict[str, Any], ...] = ()


def load_classroom_rules(path: Path = CLASSROOM_FILE) -> ClassroomRules:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rules = data.get("rules", {})
    hour, minute = str(rules.get("remind_at", "18:00")).split(":")
    return ClassroomRules(
        remind_at=time(int(hour), int(minute)),
        list_size=int(rules.get("list_size", 8)),
        closes_before_min=int(rules.get("closes_before_min", 30)),
        activities=tuple(data.get("activities", [])),
    )


@cache
def classroom_rules() -> ClassroomRules:
    """Return the rules of config/classroom.toml, read once per process."""
    return load_classroom_rules()


# Refusals: each renders for the citizen and carries an HTTP status and a code for the admin API.


class ClassroomError(CitizenError):
    status = 409
    code = "conflict"


class ActivityNotFound(ClassroomError):
    template = "classroom/not_found.j2"
    status = 404
    code = "activity_not_found"


class ActivityFull(ClassroomError):
    template = "classroom/full.j2"
    code = "activity_full"


class SignUpClosed(ClassroomError):
    template = "classroom/closed.j2"
    code = "sign_up_closed"


class AlreadySignedUp(ClassroomError):
    template = "classroom/already.j2"
    code = "already_signed_up"


class NotSignedUp(ClassroomError):
    template = "classroom/not_signed_up.j2"
    status = 404
    code = "not_signed_up"


class CapacityBelowSignUps(ClassroomError):
    code = "capacity_below_sign_ups"


# The tables.


class Activity(Model):
    """A public activity of the Citizens Classroom, with its seats and how many are taken."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=64, unique=True)
    title = fields.CharField(max_length=100)
    description = fields.TextField(default="")
    place = fields.CharField(max_length=100)
    starts_at = fields.DatetimeField(db_index=True)
    ends_at = fields.DatetimeField(null=True)
    capacity = fields.IntField()
    # Kept with the sign-ups in one transaction: the conditional UPDATE on it is the guard.
    signed_up = fields.IntField(default=0)
    status = fields.CharField(max_length=16, default="open")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "classroom_activity"
        ordering = ("starts_at", "id")

    @property
    def seats_left(self) -> int:
        return max(0, self.capacity - self.signed_up)


class SignUp(Model):
    """A citizen's seat at an activity. A cancelled seat is deleted, not kept."""

    id = fields.IntField(primary_key=True)
    activity: fields.ForeignKeyRelation[Activity] = fields.ForeignKeyField(
        "models.Activity", related_name="sign_ups", on_delete=fields.CASCADE
    )
    openid = fields.CharField(max_length=64, db_index=True)
    created_at = fields.DatetimeField()

    activity_id: int

    class Meta:
        table = "classroom_sign_up"
        unique_together = (("activity", "openid"),)


# Reading.


def closes_at(activity: Activity, rules: ClassroomRules | None = None) -> datetime:
    rules = rules or classroom_rules()
    return activity.starts_at - timedelta(minutes=rules.closes_before_min)


async def upcoming(now: datetime, rules: ClassroomRules | None = None) -> list[Activity]:
    """Return the activities still to come, soonest first (cancelled ones are not listed)."""
    rules = rules or classroom_rules()
    return list(
        await Activity.filter(status="open", starts_at__gt=now)
        .order_by("starts_at", "id")
        .limit(rules.list_size)
    )


async def signed_activities(openid: str, now: datetime) -> list[Activity]:
    """Return the activities still to come the citizen holds a seat at."""
    ids = await SignUp.filter(openid=openid).values_list("activity_id", flat=True)
    return list(
        await Activity.filter(id__in=list(ids), starts_at__gt=now).order_by("starts_at", "id")
    )


# Signing up and cancelling.


async def sign_up(services: Services, activity_id: int, openid: str) -> Activity:
    """Take a seat, never past capacity however many processes sign up at once.

    The seat counter moves only by a conditional UPDATE (signed_up < capacity), and the
    sign-up row's UNIQUE (activity, openid) undoes a second seat of the same citizen.
    """
    now = services.now()
    rules = classroom_rules()
    if await SignUp.filter(activity_id=activity_id, openid=openid).exists():
        raise AlreadySignedUp(**await _about(activity_id))
    try:
        async with in_transaction() as conn:
            taken = (
                await Activity.filter(
                    id=activity_id,
                    status="open",
                    starts_at__gt=now + timedelta(minutes=rules.closes_before_min),
                    signed_up__lt=F("capacity"),
                )
                .using_db(conn)
                .update(signed_up=F("signed_up") + 1)
            )
            seat = None
            if taken:
                seat = await SignUp.create(
                    using_db=conn, activity_id=activity_id, openid=openid, created_at=now
                )
    except IntegrityError:
        raise AlreadySignedUp(**await _about(activity_id)) from None
    activity = await Activity.get_or_none(id=activity_id)
    if activity is None:
        raise ActivityNotFound()
    if seat is None:
        if activity.status != "open" or now >= closes_at(activity, rules):
            raise SignUpClosed(title=activity.title)
        raise ActivityFull(title=activity.title)
    log.info("classroom sign-up activity=%d seats_left=%d", activity.id, activity.seats_left)
    await schedule_reminder(services, activity, seat)
    return activity


async def cancel_sign_up(services: Services, activity_id: int, openid: str) -> Activity:
    """Give a seat back before the activity starts."""
    activity = await Activity.get_or_none(id=activity_id)
    if activity is None:
        raise ActivityNotFound()
    if activity.starts_at <= services.now():
        raise SignUpClosed(title=activity.title)
    await _release(activity_id, openid)
    await activity.refresh_from_db()
    log.info("classroom cancel activity=%d seats_left=%d", activity.id, activity.seats_left)
    return activity


async def _release(activity_id: int, openid: str) -> None:
    async with in_transaction() as conn:
        # The activity's row first, as a sign-up takes it: the other order deadlocks with a
        # sign-up of the same citizen waiting on the sign-up row this deletes.
        locked = Activity.filter(id=activity_id).using_db(conn)
        if conn.capabilities.support_for_update:
            locked = locked.select_for_update()
        await locked.first()  # (values_list would drop the FOR UPDATE)
        deleted = (
            await SignUp.filter(activity_id=activity_id, openid=openid).using_db(conn).delete()
        )
        if not deleted:
            raise NotSignedUp(**await _about(activity_id))
        await (
            Activity.filter(id=activity_id, signed_up__gt=0)
            .using_db(conn)
            .update(signed_up=F("signed_up") - 1)
        )


async def release_all(services: Services, openid: str) -> int:
    """Give back every seat the citizen holds at activities to come (they unfollowed)."""
    released = 0
    for activity in await signed_activities(openid, services.now()):
        try:
            await _release(activity.id, openid)
        except NotSignedUp:
            continue
        released += 1
    # Past activities' rows say who attended what: not needed once the citizen has gone.
    await SignUp.filter(openid=openid).delete()
    return released


async def _about(activity_id: int) -> dict[str, str]:
    activity = await Activity.get_or_none(id=activity_id)
    return {"title": activity.title if activity else ""}


# The reminder the day before.


def reminder_due(
    activity: Activity, tz: ZoneInfo, rules: ClassroomRules | None = None
) -> datetime:
    """Return when an activity's reminder goes out: the day before, at `remind_at` local time."""
    rules = rules or classroom_rules()
    day_before = activity.starts_at.astimezone(tz).date() - timedelta(days=1)
    return datetime.combine(day_before, rules.remind_at, tz)


# Job ids and notice refs name the seat, not the citizen: both reach the logs.
def _job_id(activity: Activity, seat: SignUp) -> str:
    return f"{REMIND_JOB_PREFIX}{activity.id}:{seat.id}:{int(activity.starts_at.timestamp())}"


async def schedule_reminder(services: Services, activity: Activity, seat: SignUp) -> bool:
    """Queue the reminder job for the day before; False when its moment has passed already."""
    due = reminder_due(activity, services.settings.tz)
    if due <= services.now() or services.jobs is None:
        return False
    try:
        job = await services.jobs.enqueue_job(
            REMIND_JOB,
            activity.id,
            seat.id,
            int(activity.starts_at.timestamp()),
            _job_id=_job_id(activity, seat),
            _defer_until=due,
        )
    except (RedisError, OSError) as exc:
        # The sweep sends it when its moment comes.
        log.warning("classroom reminder not queued activity=%d error=%s", activity.id, exc)
        return False
    return job is not None


async def remind(ctx: dict[str, Any], activity_id: int, seat_id: int, starts_ts: int) -> bool:
    """Remind one citizen (arq job), if they still hold the seat and the time still stands."""
    services: Services = ctx["services"]
    activity = await Activity.get_or_none(id=activity_id)
    if activity is None or activity.status != "open":
        return False
    if int(activity.starts_at.timestamp()) != starts_ts or activity.starts_at <= services.now():
        return False  # moved: the reschedule queued a job for the new time
    seat = await SignUp.get_or_none(id=seat_id, activity_id=activity_id)
    if seat is None:
        return False  # given back
    return await _notify(services, activity, seat)


async def _notify(services: Services, activity: Activity, seat: SignUp) -> bool:
    starts = activity.starts_at.astimezone(services.settings.tz)
    values = {
        "activity": activity.title,
        "place": activity.place,
        "starts_at": starts.strftime("%Y-%m-%d %H:%M"),
    }
    ref = f"classroom:{activity.id}:{seat.id}:{starts:%m%d%H%M}"
    try:
        return await push.notify(
            services, kind="classroom_reminder", openid=seat.openid, ref=ref, values=values
        )
    except RedisError:
        log.warning("classroom reminder not queued activity=%d", activity.id)
        return False


async def remind_due(ctx: dict[str, Any]) -> int:
    """Send the reminders whose moment has come and that no job sent (arq cron job)."""
    services: Services = ctx["services"]
    now = services.now()
    tz = services.settings.tz
    sent = 0
    soon = await Activity.filter(
        status="open", starts_at__gt=now, starts_at__lte=now + timedelta(days=2)
    )
    for activity in soon:
        due = reminder_due(activity, tz)
        if not due <= now < due + SWEEP_LOOKBACK:
            continue
        for seat in await SignUp.filter(activity_id=activity.id):
            sent += await _notify(services, activity, seat)
    if sent:
        log.info("classroom reminders swept count=%d", sent)
    return sent


# Administrators.


ADMIN_FIELDS = ("title", "description", "place", "starts_at", "ends_at", "capacity")


async def create_activity(values: dict[str, Any]) -> Activity:
    """Add an activity; `values` are checked by the caller."""
    return await Activity.create(**values)


async def update_activity(
    services: Services, activity: Activity, values: dict[str, Any]
) -> Activity:
    """Change an activity; a smaller capacity must still hold its sign-ups."""
    moved = "starts_at" in values and values["starts_at"] != activity.starts_at
    if "capacity" in values:
        updated = await Activity.filter(id=activity.id, signed_up__lte=values["capacity"]).update(
            **values
        )
        if not updated:
            await activity.refresh_from_db()
            raise CapacityBelowSignUps(signed_up=activity.signed_up)
    elif values:
        await Activity.filter(id=activity.id).update(**values)
    await activity.refresh_from_db()
    if moved:
        for seat in await SignUp.filter(activity_id=activity.id):
            await schedule_reminder(services, activity, seat)
    return activity


async def cancel_activity(activity: Activity) -> Activity:
    """Call an activity off: it leaves the list, and no reminder goes out for it."""
    await Activity.filter(id=activity.id).update(status="cancelled")
    await activity.refresh_from_db()
    return activity


async def seed_activities(rules: ClassroomRules | None = None) -> int:
    """Create or update the activities listed in config/classroom.toml; return how many."""
    rules = rules or classroom_rules()
    for item in rules.activities:
        values = {k: item[k] for k in ADMIN_FIELDS if k in item}
        held = await Activity.get_or_none(code=item["code"])
        if held is not None:
            # A seed never takes seats away from citizens who hold them.
            values["capacity"] = max(int(values.get("capacity", held.capacity)), held.signed_up)
        await Activity.update_or_create(values, code=item["code"])
    return len(rules.activities)


# Registered by bot/worker.py.
FUNCTIONS: list[Function] = [
    func(remind, name=REMIND_JOB, timeout=30, max_tries=3, keep_result=0),
]
CRON_JOBS: list[CronJob] = [
    cron(remind_due, name="classroom_remind_due", minute={5, 35}, second={0}, timeout=120),
]
