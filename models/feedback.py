"""Evaluations of services (好差评), the follow-up cases of bad ones, and complaints."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import chinese_calendar
from arq import cron
from arq.cron import CronJob
from redis.exceptions import RedisError
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bot import push
from bot.errors import CitizenError
from config.settings import CONFIG_DIR
from models.hall import Category, Hall
from models.notice import Notice
from models.queue import Ticket, TicketEvent, Window, ticket_ref

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

FEEDBACK_FILE = CONFIG_DIR / "feedback.toml"
# The five levels of the national scheme, 5 (非常满意) to 1 (非常不满意).
LEVELS = (5, 4, 3, 2, 1)
# What a citizen may type for a level (read as the start of the words: 不满意 is not 满意).
LEVEL_WORDS = {
    "非常不满意": 1,
    "非常满意": 5,
    "基本满意": 3,
    "比较满意": 4,
    "不满意": 2,
    "一般": 3,
    "满意": 4,
    "very dissatisfied": 1,
    "very satisfied": 5,
    "dissatisfied": 2,
    "satisfied": 4,
    "ok": 3,
}
SUBJECTS = ("ticket", "hall")
SOURCES = ("citizen", "default")
FOLLOW_UP_STATES = ("open", "visited", "answered", "reviewed")
COMPLAINT_KINDS = ("complaint", "suggestion", "")
COMPLAINT_STATES = ("open", "answered")
CASE_PATTERN = re.compile(r"(?<![A-Z0-9])(TS|HC)\s*0*(\d{1,9})(?!\d)", re.IGNORECASE)
# A ticket finished this long ago and never invited (a lost hook) is still invited by the sweep.
INVITE_SWEEP_S = 6 * 3600


@dataclass(frozen=True, slots=True)
class FeedbackRules:
    """The hall's evaluation and complaint settings from config/feedback.toml."""

    rate_within_days: int = 7
    default_after_days: int = 7
    default_level: int = 3
    bad_at_most: int = 2
    comment_max_chars: int = 300
    reply_within_h: int = 24
    return_visit_days: int = 1
    fix_working_days: int = 5
    review_within_days: int = 15
    answer_working_days: int = 5
    text_max_chars: int = 500
    max_images: int = 9
    attach_window_s: int = 600

    def is_bad(self, level: int) -> bool:
        return level <= self.bad_at_most


def load_feedback_rules(path: Path = FEEDBACK_FILE) -> FeedbackRules:
    """Read and check a feedback file; raise ValueError naming the wrong setting."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    evaluation, follow_up = data.get("evaluation", {}), data.get("follow_up", {})
    complaint = data.get("complaint", {})
    values = {**evaluation, **follow_up, **complaint}
    known = {name for name in FeedbackRules.__dataclass_fields__}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path.name}: unknown settings {', '.join(unknown)}")
    rules = FeedbackRules(**{name: int(value) for name, value in values.items()})
    if rules.default_level not in LEVELS or rules.bad_at_most not in LEVELS:
        raise ValueError(f"{path.name}: default_level and bad_at_most are levels 1 to 5")
    if not 1 <= rules.fix_working_days <= 30 or rules.return_visit_days < 1:
        raise ValueError(f"{path.name}: fix_working_days is 1-30, return_visit_days at least 1")
    if min(rules.rate_within_days, rules.default_after_days, rules.max_images) < 1:
        raise ValueError(f"{path.name}: days and max_images must be at least 1")
    return rules


@cache
def feedback_rules() -> FeedbackRules:
    """Return the settings of config/feedback.toml, read once per process."""
    return load_feedback_rules()


# Refusals: each renders for the citizen and carries an HTTP status and a code for the admin API.


class FeedbackError(CitizenError):
    status = 409
    code = "conflict"


class AlreadyRated(FeedbackError):
    template = "evaluation/already_rated.j2"
    code = "already_rated"


class ReviewNotOpen(FeedbackError):
    template = "evaluation/review_not_open.j2"
    code = "review_not_open"


class CaseNotFound(FeedbackError):
    template = "complaint/not_found.j2"
    status = 404
    code = "case_not_found"


class CaseAnswered(FeedbackError):
    template = "complaint/already_answered.j2"
    code = "already_answered"


# The tables.


class Evaluation(Model):
    """One evaluation of a ticket's service, or of the hall as a whole.

    A ticket's row is made when the ticket is finished (level NULL: invited, not yet rated),
    so the UNIQUE ticket makes one rating per ticket, and the row keeps the window, category
    and staff member as they were when the service was given.
    """

    id = fields.IntField(primary_key=True)
    subject = fields.CharField(max_length=8, default="ticket")
    ticket: fields.OneToOneNullableRelation[Ticket] = fields.OneToOneField(
        "models.Ticket", related_name="evaluation", null=True, on_delete=fields.SET_NULL
    )
    openid = fields.CharField(max_length=64, db_index=True)
    hall: fields.ForeignKeyNullableRelation[Hall] = fields.ForeignKeyField(
        "models.Hall", related_name="evaluations", null=True, on_delete=fields.SET_NULL
    )
    category: fields.ForeignKeyNullableRelation[Category] = fields.ForeignKeyField(
        "models.Category", related_name="evaluations", null=True, on_delete=fields.SET_NULL
    )
    window_code = fields.CharField(max_length=16, default="")
    staff = fields.CharField(max_length=64, default="")
    finished_at = fields.DatetimeField(null=True)
    level = fields.SmallIntField(null=True)
    comment = fields.TextField(default="")
    # citizen: rated in chat, default: not rated in time and counted as the default level
    source = fields.CharField(max_length=8, default="")
    rated_at = fields.DatetimeField(null=True, db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    ticket_id: int | None
    hall_id: int | None
    category_id: int | None

    class Meta:
        table = "evaluation"
        indexes = (("openid", "level"),)


class FollowUp(Model):
    """The work order a bad review opens: return visit, fix and answer, the citizen's review."""

    id = fields.IntField(primary_key=True)
    evaluation: fields.OneToOneRelation[Evaluation] = fields.OneToOneField(
        "models.Evaluation", related_name="follow_up", on_delete=fields.CASCADE
    )
    openid = fields.CharField(max_length=64, db_index=True)
    status = fields.CharField(max_length=16, default="open")
    opened_at = fields.DatetimeField()
    visit_due_at = fields.DatetimeField()
    fix_due_at = fields.DatetimeField()
    visited_at = fields.DatetimeField(null=True)
    visit_note = fields.TextField(default="")
    answer = fields.TextField(default="")
    answered_by = fields.CharField(max_length=64, default="")
    answered_at = fields.DatetimeField(null=True)
    review_level = fields.SmallIntField(null=True)
    review_comment = fields.TextField(default="")
    reviewed_at = fields.DatetimeField(null=True)

    evaluation_id: int

    class Meta:
        table = "evaluation_follow_up"

    @property
    def case_no(self) -> str:
        return f"HC{self.id:06d}"


class Complaint(Model):
    """A complaint or suggestion: the citizen's words and pictures, and the hall's answer."""

    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, db_index=True)
    kind = fields.CharField(max_length=16, default="")
    text = fields.TextField()
    # [{"media_id": ..., "pic_url": ...}]: what WeChat gave for each picture
    images: Any = fields.JSONField(default=list)
    status = fields.CharField(max_length=16, default="open")
    due_at = fields.DatetimeField()
    answer = fields.TextField(default="")
    answered_by = fields.CharField(max_length=64, default="")
    answered_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "complaint"

    @property
    def case_no(self) -> str:
        return f"TS{self.id:06d}"


def parse_case_no(text: str) -> tuple[str, int] | None:
    """Return ("TS" or "HC", id) for a case number found in `text`."""
    match = CASE_PATTERN.search(text.upper())
    return (match.group(1), int(match.group(2))) if match else None


# Deadlines.


def is_working_day(day: date) -> bool:
    """Tell a working day by the State Council's calendar (make-up days count); else Mon-Fri."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.isoweekday() <= 5


def add_working_days(day: date, count: int) -> date:
    """Return the `count`-th working day after `day`."""
    found = 0
    while found < count:
        day += timedelta(days=1)
        found += is_working_day(day)
    return day


def end_of_working_days(at: datetime, count: int, tz: ZoneInfo) -> datetime:
    """Return the end of the `count`-th working day after `at`, in the hall's zone."""
    last = add_working_days(at.astimezone(tz).date(), count)
    return datetime.combine(last, time(23, 59, 59), tz)


# Evaluating a ticket.


def clip(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


async def served_by(ticket: Ticket) -> tuple[str, str]:
    """Return the window code and staff member of a ticket's finish, as the events tell them."""
    event = await TicketEvent.filter(ticket_id=ticket.id, action="finish").order_by("-id").first()
    window_code = event.window_code if event else ""
    actor = event.actor if event else ""
    staff = actor.removeprefix("staff:") if actor.startswith("staff:") else ""
    if not staff and window_code:
        window = await Window.get_or_none(code=window_code)
        staff = (window.staff or "") if window else ""
    return window_code, staff


async def invite(services: Services, ticket: Ticket) -> Evaluation | None:
    """Open the evaluation of a finished ticket and invite its holder; None if already done.

    Called right after staff finish a ticket: a failure here must not fail their action, and
    the sweep (`invite_missed`) invites the ticket later.
    """
    try:
        return await _invite(services, ticket)
    except Exception:
        log.exception("rating invitation failed ticket=%d", ticket.id)
        return None


async def _invite(services: Services, ticket: Ticket) -> Evaluation | None:
    if ticket.status != "done" or not ticket.openid:
        return None
    window_code, staff = await served_by(ticket)
    try:
        evaluation = await Evaluation.create(
            subject="ticket",
            ticket_id=ticket.id,
            openid=ticket.openid,
            hall_id=ticket.hall_id,
            category_id=ticket.category_id,
            window_code=window_code,
            staff=staff,
            finished_at=ticket.finished_at or services.now(),
        )
    except IntegrityError:
        return None
    category = await Category.get(id=ticket.category_id)
    window = await Window.get_or_none(code=window_code) if window_code else None
    finished = evaluation.finished_at or services.now()
    values = {
        "category": category.name,
        "window": window.name if window else "-",
        "finished_at": finished.astimezone(services.settings.tz).strftime("%Y-%m-%d %H:%M"),
        "number": ticket.number,
    }
    try:
        await push.notify(
            services,
            kind="service_rate_invite",
            openid=ticket.openid,
            ref=ticket.ref,
            values=values,
        )
    except RedisError:
        log.warning("rating invitation not queued ticket=%d", ticket.id)
    log.info("rating invited ticket=%d evaluation=%d", ticket.id, evaluation.id)
    return evaluation


async def invitation_made_at(evaluation: Evaluation) -> datetime | None:
    """Return when the invitation to rate this service went out (or, on its way, was made);
    None if it never will: muted, the citizen gone, the platform refusing it."""
    if evaluation.ticket_id is None:
        return None
    notice = await Notice.filter(
        kind="service_rate_invite", ref=ticket_ref(evaluation.ticket_id)
    ).first()
    if notice is None or notice.status in ("skipped", "failed"):
        return None
    made_at: datetime = notice.sent_at or notice.created_at
    return made_at


async def invite_finished(services: Services, within_s: float = INVITE_SWEEP_S) -> int:
    """Invite the holders of finished tickets that no invitation reached yet; return how many."""
    since = services.now() - timedelta(seconds=within_s)
    tickets = await Ticket.filter(
        status="done", openid__not_isnull=True, finished_at__gte=since
    ).order_by("id")
    ids = [ticket.id for ticket in tickets]
    seen = set(await Evaluation.filter(ticket_id__in=ids).values_list("ticket_id", flat=True))
    count = 0
    for ticket in tickets:
        if ticket.id not in seen and await invite(services, ticket) is not None:
            count += 1
    return count


async def rateable(openid: str, now: datetime, rules: FeedbackRules | None = None) -> list[Any]:
    """Return the citizen's services still to rate, newest first, with their window and number."""
    rules = rules or feedback_rules()
    since = now - _days(rules.rate_within_days)
    return list(
        await Evaluation.filter(
            openid=openid, subject="ticket", level__isnull=True, finished_at__gte=since
        )
        .order_by("-finished_at", "-id")
        .prefetch_related("ticket", "category")
    )


async def rate(
    services: Services,
    openid: str,
    evaluation_id: int,
    level: int,
    comment: str = "",
    rules: FeedbackRules | None = None,
) -> Evaluation:
    """Rate an invited service once; a bad rating opens a follow-up case."""
    rules = rules or feedback_rules()
    if level not in LEVELS:
        raise ValueError(f"level must be 1-5, got {level}")
    now = services.now()
    since = now - _days(rules.rate_within_days)
    changes = {"level": level, "source": "citizen", "rated_at": now}
    changes["comment"] = clip(comment, rules.comment_max_chars)
    async with in_transaction() as conn:
        rated = (
            await Evaluation.filter(
                id=evaluation_id, openid=openid, level__isnull=True, finished_at__gte=since
            )
            .using_db(conn)
            .update(**changes)
        )
        if not rated:
            raise AlreadyRated()
        evaluation = await Evaluation.get(id=evaluation_id, using_db=conn)
        if rules.is_bad(level):
            await _open_follow_up(evaluation, services, rules, conn)
    log.info("service rated evaluation=%d level=%d", evaluation.id, level)
    return evaluation


async def rate_hall(
    services: Services,
    openid: str,
    level: int | None,
    comment: str = "",
    hall: Hall | None = None,
    rules: FeedbackRules | None = None,
) -> Evaluation:
    """Keep a citizen's word on the hall as a whole: a level, a comment, or both.

    A bad level opens a follow-up case, as for a service.
    """
    rules = rules or feedback_rules()
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be 1-5, got {level}")
    if level is None and not clip(comment, rules.comment_max_chars):
        raise ValueError("a comment on the hall needs a level or some text")
    now = services.now()
    async with in_transaction() as conn:
        evaluation = await Evaluation.create(
            using_db=conn,
            subject="hall",
            openid=openid,
            hall_id=hall.id if hall else None,
            level=level,
            comment=clip(comment, rules.comment_max_chars),
            source="citizen",
            rated_at=now,
        )
        if level is not None and rules.is_bad(level):
            await _open_follow_up(evaluation, services, rules, conn)
    log.info("hall rated evaluation=%d level=%s", evaluation.id, level)
    return evaluation


async def add_comment(
    openid: str, evaluation_id: int, comment: str, rules: FeedbackRules | None = None
) -> bool:
    """Add the comment to a rating that has none; False when it has one already."""
    rules = rules or feedback_rules()
    text = clip(comment, rules.comment_max_chars)
    if not text:
        return False
    updated = await Evaluation.filter(
        id=evaluation_id, openid=openid, level__isnull=False, comment=""
    ).update(comment=text)
    return bool(updated)


async def _open_follow_up(
    evaluation: Evaluation, services: Services, rules: FeedbackRules, conn: Any
) -> FollowUp:
    now = services.now()
    follow_up = await FollowUp.create(
        using_db=conn,
        evaluation_id=evaluation.id,
        openid=evaluation.openid,
        opened_at=now,
        visit_due_at=now + _days(rules.return_visit_days),
        fix_due_at=end_of_working_days(now, rules.fix_working_days, services.settings.tz),
    )
    log.info("follow-up opened case=%s evaluation=%d", follow_up.case_no, evaluation.id)
    return follow_up


async def apply_defaults(now: datetime, rules: FeedbackRules | None = None) -> int:
    """Count services not rated in time as the default level (Guangdong: 基本满意); how many."""
    rules = rules or feedback_rules()
    cutoff = now - _days(rules.default_after_days)
    count = await Evaluation.filter(
        subject="ticket", level__isnull=True, finished_at__lt=cutoff
    ).update(level=rules.default_level, source="default", rated_at=now)
    if count:
        log.info("evaluations defaulted count=%d level=%d", count, rules.default_level)
    return int(count)


# Follow-up cases.


async def follow_ups_of(openid: str) -> list[FollowUp]:
    return list(
        await FollowUp.filter(openid=openid).order_by("-opened_at").prefetch_related("evaluation")
    )


async def record_visit(follow_up_id: int, note: str, now: datetime) -> FollowUp:
    """Record the return visit to the citizen."""
    updated = await FollowUp.filter(id=follow_up_id, status="open").update(
        status="visited", visited_at=now, visit_note=clip(note, 1000)
    )
    follow_up = await FollowUp.get_or_none(id=follow_up_id)
    if follow_up is None:
        raise CaseNotFound()
    if not updated:
        raise CaseAnswered(case_no=follow_up.case_no, status=follow_up.status)
    return follow_up


async def answer_follow_up(
    services: Services, follow_up_id: int, answer: str, by: str
) -> FollowUp:
    """Record how a bad review was fixed and push the answer to the citizen."""
    text = clip(answer, 2000)
    if not text:
        raise ValueError("an answer needs text")
    now = services.now()
    updated = await FollowUp.filter(id=follow_up_id, status__in=("open", "visited")).update(
        status="answered", answer=text, answered_by=by, answered_at=now
    )
    follow_up = await FollowUp.get_or_none(id=follow_up_id)
    if follow_up is None:
        raise CaseNotFound()
    if not updated:
        raise CaseAnswered(case_no=follow_up.case_no, status=follow_up.status)
    ref = f"followup:{follow_up.id}"
    await _push_answer(services, follow_up.openid, follow_up.case_no, ref, text)
    log.info("follow-up answered case=%s", follow_up.case_no)
    return follow_up


async def review(
    services: Services,
    openid: str,
    follow_up_id: int,
    level: int,
    comment: str = "",
    rules: FeedbackRules | None = None,
) -> FollowUp:
    """Keep the citizen's one follow-up review of an answered case."""
    rules = rules or feedback_rules()
    if level not in LEVELS:
        raise ValueError(f"level must be 1-5, got {level}")
    now = services.now()
    updated = await FollowUp.filter(
        id=follow_up_id,
        openid=openid,
        status="answered",
        review_level__isnull=True,
        answered_at__gte=now - _days(rules.review_within_days),
    ).update(
        status="reviewed",
        review_level=level,
        review_comment=clip(comment, rules.comment_max_chars),
        reviewed_at=now,
    )
    if not updated:
        raise ReviewNotOpen(days=rules.review_within_days)
    log.info("follow-up reviewed follow_up=%d level=%d", follow_up_id, level)
    return await FollowUp.get(id=follow_up_id)


async def reviewable(openid: str, now: datetime, rules: FeedbackRules | None = None) -> list[Any]:
    """Return the answered cases the citizen may still review."""
    rules = rules or feedback_rules()
    return list(
        await FollowUp.filter(
            openid=openid,
            status="answered",
            review_level__isnull=True,
            answered_at__gte=now - _days(rules.review_within_days),
        ).order_by("-answered_at")
    )


# Statistics.


@dataclass(frozen=True, slots=True)
class Tally:
    """Evaluations counted: all, bad ones, and the bad-review rate."""

    total: int = 0
    bad: int = 0

    @property
    def bad_rate(self) -> float:
        return round(self.bad / self.total, 4) if self.total else 0.0


@dataclass(frozen=True, slots=True)
class MonthStats:
    month: str
    overall: Tally
    by_level: dict[int, int]
    defaulted: int
    by_window: dict[str, Tally]


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the start and end (exclusive) of "YYYY-MM" in the hall's zone."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError("month must be YYYY-MM")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=tz)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    return start, end


async def month_stats(month: str, tz: ZoneInfo, rules: FeedbackRules | None = None) -> MonthStats:
    """Return the month's evaluations of services: per level, per window, the bad-review rate.

    A month holds the evaluations rated in it, defaults included (they count as given).
    """
    rules = rules or feedback_rules()
    start, end = month_bounds(month, tz)
    rows = await Evaluation.filter(
        subject="ticket", level__isnull=False, rated_at__gte=start, rated_at__lt=end
    ).values_list("level", "source", "window_code")
    by_level = {level: 0 for level in LEVELS}
    windows: dict[str, list[int]] = {}
    for level, _, window_code in rows:
        by_level[int(level)] += 1
        counts = windows.setdefault(str(window_code or "-"), [0, 0])
        counts[0] += 1
        counts[1] += rules.is_bad(int(level))
    bad = sum(count for level, count in by_level.items() if rules.is_bad(level))
    defaulted = sum(1 for _, source, _ in rows if source == "default")
    by_window = {code: Tally(total, bad) for code, (total, bad) in sorted(windows.items())}
    return MonthStats(month, Tally(len(rows), bad), by_level, defaulted, by_window)


# Complaints and suggestions.


async def file_complaint(
    openid: str,
    kind: str,
    text: str,
    images: Sequence[dict[str, str]],
    now: datetime,
    tz: ZoneInfo,
    rules: FeedbackRules | None = None,
) -> Complaint:
    """Open a complaint or suggestion case."""
    rules = rules or feedback_rules()
    if kind not in COMPLAINT_KINDS:
        raise ValueError(f"unknown complaint kind {kind!r}")
    complaint = await Complaint.create(
        openid=openid,
        kind=kind,
        text=clip(text, rules.text_max_chars),
        images=list(images)[: rules.max_images],
        due_at=end_of_working_days(now, rules.answer_working_days, tz),
        created_at=now,
    )
    log.info("complaint filed case=%s kind=%s images=%d", complaint.case_no, kind, len(images))
    return complaint


async def attach_image(
    openid: str, complaint_id: int, image: dict[str, str], rules: FeedbackRules | None = None
) -> int | None:
    """Attach a picture to an open case; return how many it has, or None when it is full."""
    rules = rules or feedback_rules()
    async with in_transaction() as conn:
        query = Complaint.filter(id=complaint_id, openid=openid, status="open").using_db(conn)
        if conn.capabilities.support_for_update:
            query = query.select_for_update()
        complaint = await query.first()
        if complaint is None:
            raise CaseNotFound()
        images = list(complaint.images or [])
        if len(images) >= rules.max_images:
            return None
        images.append(image)
        await Complaint.filter(id=complaint_id).using_db(conn).update(images=images)
    return len(images)


async def complaints_of(openid: str, limit: int = 5) -> list[Complaint]:
    return list(await Complaint.filter(openid=openid).order_by("-id").limit(limit))


async def answer_complaint(
    services: Services, complaint_id: int, answer: str, by: str
) -> Complaint:
    """Record the hall's answer to a complaint and push it to the citizen."""
    text = clip(answer, 2000)
    if not text:
        raise ValueError("an answer needs text")
    updated = await Complaint.filter(id=complaint_id, status="open").update(
        status="answered", answer=text, answered_by=by, answered_at=services.now()
    )
    complaint = await Complaint.get_or_none(id=complaint_id)
    if complaint is None:
        raise CaseNotFound()
    if not updated:
        raise CaseAnswered(case_no=complaint.case_no, status=complaint.status)
    ref = f"complaint:{complaint.id}"
    await _push_answer(services, complaint.openid, complaint.case_no, ref, text)
    log.info("complaint answered case=%s", complaint.case_no)
    return complaint


async def _push_answer(
    services: Services, openid: str, case_no: str, ref: str, answer: str
) -> None:
    """Push "complaint answered": the field shows the answer's start, the chat has it whole."""
    values = {
        "case_no": case_no,
        "summary": answer,
        "answered_at": services.local_now().strftime("%Y-%m-%d %H:%M"),
    }
    try:
        await push.notify(
            services, kind="complaint_answered", openid=openid, ref=ref, values=values
        )
    except RedisError:
        log.warning("answer notice not queued case=%s", case_no)


def _days(days: float) -> timedelta:
    return timedelta(days=days)


def overdue(due_at: datetime | None, done_at: datetime | None, now: datetime) -> bool:
    """Tell whether a deadline passed with nothing done."""
    return due_at is not None and done_at is None and now > due_at


# Jobs, registered by bot/worker.py.


async def default_unrated(ctx: dict[str, Any]) -> int:
    """Count services not rated in time as the default level (arq cron job)."""
    services: Services = ctx["services"]
    return await apply_defaults(services.now())


async def invite_missed(ctx: dict[str, Any]) -> int:
    """Invite finished tickets whose invitation was lost (arq cron job)."""
    services: Services = ctx["services"]
    count = await invite_finished(services)
    if count:
        log.warning("rating invitations swept count=%d", count)
    return count


CRON_JOBS: list[CronJob] = [
    cron(default_unrated, name="evaluation_defaults", minute={10}, second={0}, timeout=300),
    cron(invite_missed, name="evaluation_invite_sweep", minute=set(range(2, 60, 5)), timeout=120),
]
