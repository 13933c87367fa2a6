"""Applications from the approval system, their status history, and certificates by post."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from arq import cron
from arq.cron import CronJob
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bot import keys, staff_input
from bot.errors import BadInput, CitizenError

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

# The states the approval system reports, in the order an application usually goes through.
STATES = (
    "received",
    "reviewing",
    "supplement",
    "approved",
    "ready",
    "mailed",
    "collected",
    "rejected",
    "withdrawn",
)
# A certificate in this state waits at the hall, to be collected or posted.
MAILABLE_STATES = ("ready",)
MAIL_STATES = ("requested", "mailed", "withdrawn")
# An application number as the approval system gives it: a few letters, then digits.
APPLICATION_NO = re.compile(r"^[A-Z]{0,4}\d{8,24}$")
# Mainland mobile numbers: 11 digits starting 13-19, optionally after +86.
_MOBILE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
_PHONE_MARKS = re.compile(r"[\s\-()（）]")
ADDRESS_MIN_CHARS = 8
ADDRESS_MAX_CHARS = 120
# Words any postal address in the mainland has at least one of.
_ADDRESS_WORDS = re.compile("[省市区县镇乡村路街道巷号栋楼室园苑座幢弄组]")
# Two updates of one application at once: the loser reloads and tries again this often.
RECORD_ATTEMPTS = 5
# Once a certificate is out, the address and phone are kept this long for the courier's
# questions, then erased.
MAIL_DATA_KEEP_DAYS = 30
NOTE_MAX_CHARS = 200
# A phone as the approval system writes it: +86, spaces and dashes around 11 digits.
PHONE_MAX_CHARS = 32


class ApplicationError(CitizenError):
    """An application rule the citizen ran into."""


class ApplicationNotFound(ApplicationError):
    """No application has this number and phone; which one is wrong is not told."""

    template = "progress/not_found.j2"


class TooManyLookups(ApplicationError):
    """Too many wrong numbers or phones in a short time."""

    template = "progress/too_many.j2"


class NotMailable(ApplicationError):
    """The application's certificate is not waiting at the hall, or may not be posted."""

    template = "postal/not_ready.j2"


class MailAlreadyAsked(ApplicationError):
    """A delivery was already asked for this application."""

    template = "postal/already_asked.j2"


class Application(Model):
    """An application handled by the approval system, as far as the citizen needs to follow it."""

    id = fields.IntField(primary_key=True)
    application_no = fields.CharField(max_length=32, unique=True)
    item_name = fields.CharField(max_length=100)
    # The catalogue item's code, when the approval system names one.
    item_code = fields.CharField(max_length=64, default="")
    unit = fields.CharField(max_length=64, default="")
    # The last four digits of the applicant's phone: all a look-up needs, all that is kept.
    phone_tail = fields.CharField(max_length=4)
    status = fields.CharField(max_length=16, default="received")
    # How many status changes were recorded; the latest event has this number.
    seq = fields.IntField(default=0)
    # Whether the certificate may be posted (some are handed over in person only).
    is_mailable = fields.BooleanField(default=True)
    # The citizen who looked the application up; told of every change. NULL: nobody yet.
    openid = fields.CharField(max_length=64, null=True, db_index=True)
    changed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "application"

    @property
    def can_be_mailed(self) -> bool:
        return self.is_mailable and self.status in MAILABLE_STATES


class ApplicationEvent(Model):
    """One status of an application, when it was reached, and a note from the approval system."""

    id = fields.IntField(primary_key=True)
    application: fields.ForeignKeyRelation[Application] = fields.ForeignKeyField(
        "models.Application", related_name="events", on_delete=fields.CASCADE
    )
    seq = fields.IntField()
    status = fields.CharField(max_length=16)
    note = fields.CharField(max_length=200, default="")
    at = fields.DatetimeField()
    # import, api:<caller> or mail
    source = fields.CharField(max_length=80, default="")

    application_id: int

    class Meta:
        table = "application_event"
        unique_together = (("application", "seq"),)
        ordering = ("at", "seq")


class MailRequest(Model):
    """A citizen's request to post a certificate: address and phone, then the tracking number."""

    id = fields.IntField(primary_key=True)
    application: fields.ForeignKeyRelation[Application] = fields.ForeignKeyField(
        "models.Application", related_name="mail_requests", on_delete=fields.CASCADE
    )
    openid = fields.CharField(max_length=64, db_index=True)
    status = fields.CharField(max_length=16, default="requested")
    # The application's id while the request stands (requested or mailed), else NULL.
    active_key = fields.IntField(null=True, unique=True)
    address = fields.CharField(max_length=200, default="")
    phone = fields.CharField(max_length=16, default="")
    carrier = fields.CharField(max_length=32, default="")
    tracking_no = fields.CharField(max_length=40, default="")
    requested_at = fields.DatetimeField()
    mailed_at = fields.DatetimeField(null=True)
    # When the address and phone were emptied (sent long ago, withdrawn or unfollowed).
    erased_at = fields.DatetimeField(null=True)

    application_id: int

    class Meta:
        table = "mail_request"


# What citizens type.


def normalize_no(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def normalize_mobile(text: str) -> str | None:
    """Return an 11-digit mainland mobile number from what a citizen typed, or None."""
    found = _MOBILE.match(_PHONE_MARKS.sub("", text or ""))
    return found.group(1) if found else None


def clean_address(text: str) -> str | None:
    """Return a postal address fit to print on a parcel, or None when it cannot be one."""
    address = re.sub(r"\s+", " ", text or "").strip()
    if not ADDRESS_MIN_CHARS <= len(address) <= ADDRESS_MAX_CHARS:
        return None
    if not _ADDRESS_WORDS.search(address) or re.search(r"[<>{}]|https?:", address):
        return None
    return address


def tail_of(phone: str) -> str:
    """Return the last four digits of a phone number as the approval system gave it."""
    digits = re.sub(r"\D", "", phone or "")
    if len(digits) < 4:
        raise ValueError("phone needs at least four digits")
    return digits[-4:]


# Looking up and following an application.


async def find_for_citizen(
    services: Services, application_no: str, phone_tail: str, openid: str
) -> Application:
    """Return the application with this number and phone tail, and follow it for the citizen.

    A few wrong tries close the look-up for the citizen for a while, whichever part was wrong.
    """
    fails_key = keys.lookup_fails_key(openid)
    fails = int(await services.redis.get(fails_key) or 0)
    if fails >= keys.LOOKUP_FAILS_MAX:
        raise TooManyLookups(minutes=keys.LOOKUP_FAILS_TTL_S // 60)
    application = await Application.get_or_none(application_no=normalize_no(application_no))
    if application is None or application.phone_tail != phone_tail:
        pipe = services.redis.pipeline(transaction=False)
        pipe.incr(fails_key)
        pipe.expire(fails_key, keys.LOOKUP_FAILS_TTL_S)
        await pipe.execute()
        log.warning("application look-up failed fails=%d", fails + 1)
        raise ApplicationNotFound(left=keys.LOOKUP_FAILS_MAX - fails - 1)
    if application.openid != openid:
        application.openid = openid
        await application.save(update_fields=["openid"])
    return application


async def followed_by(openid: str) -> list[Application]:
    """Return the applications a citizen follows, the latest change first."""
    return await Application.filter(openid=openid).order_by("-changed_at", "-id")


async def history(application: Application) -> list[ApplicationEvent]:
    return await ApplicationEvent.filter(application_id=application.id).order_by("at", "seq")


async def mail_request_of(application: Application) -> MailRequest | None:
    """Return the standing request to post the application's certificate, if there is one."""
    return await MailRequest.get_or_none(active_key=application.id)


# Status changes from the approval system.


@dataclass(slots=True)
class Update:
    """One row of an import or one status update through the API."""

    application_no: str
    status: str
    at: datetime
    item_name: str = ""
    item_code: str = ""
    unit: str = ""
    phone_tail: str = ""
    note: str = ""
    is_mailable: bool | None = None


@dataclass(slots=True)
class ImportResult:
    created: int = 0
    changed: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "errors": self.errors,
        }


def parse_update(row: dict[str, Any], tz: tzinfo, now: datetime | None) -> Update:
    """Read one row (an import line or an API body); raise ValueError saying what is wrong.

    A row without a time happened `now`; with `now` None (an import of history) it needs one.
    """
    no = normalize_no(staff_input.text(row, "application_no", max_chars=64))
    if not APPLICATION_NO.match(no):
        raise ValueError("application_no must be up to 4 letters and 8-24 digits")
    status = staff_input.text(row, "status", max_chars=16).lower()
    if status not in STATES:
        raise ValueError(f"status must be one of {', '.join(STATES)}")
    phone = _phone_of(row)
    mailable = row.get("is_mailable")
    if not isinstance(mailable, bool | str | None):
        raise BadInput("is_mailable_invalid", "is_mailable must be true or false")
    at = parse_time(row.get("at"), tz) or now
    if at is None:
        raise ValueError("at is missing (when the status was reached)")
    return Update(
        application_no=no,
        status=status,
        at=at,
        item_name=_column_text(row, "item_name") or _column_text(row, "item", "item_name"),
        item_code=_column_text(row, "item_code"),
        unit=_column_text(row, "unit"),
        phone_tail=tail_of(phone) if phone else "",
        note=staff_input.text(row, "note", max_chars=NOTE_MAX_CHARS),
        is_mailable=None if mailable in (None, "") else _truthy(mailable),
    )


def _column_text(row: dict[str, Any], key: str, column: str = "") -> str:
    """Return the text of `key`, refused when longer than the Application column it fills."""
    max_chars = staff_input.column_chars(Application, column or key)
    return staff_input.text(row, key, max_chars=max_chars)


def _phone_of(row: dict[str, Any]) -> str:
    # The approval system may send the phone as a JSON number.
    for key in ("phone_tail", "phone"):
        value = row.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if text := staff_input.text(row, key, max_chars=PHONE_MAX_CHARS):
            return text
    return ""


def parse_time(value: Any, tz: tzinfo) -> datetime | None:
    """Read an ISO 8601 time; one without an offset is the hall's local time."""
    if value in (None, ""):
        return None
    return staff_input.moment(value, "at", tz).astimezone(UTC)


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "y", "是")


async def apply_updates(
    services: Services, rows: list[dict[str, Any]], source: str, *, is_history: bool = False
) -> ImportResult:
    """Create or update applications from rows, in order; each row stands or fails alone.

    Rows of a history (an import file) must say when each status was reached, so that the same
    file imported twice changes nothing; live updates without a time happen now.
    """
    result = ImportResult()
    now = None if is_history else services.now()
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            result.errors.append(f"row {number}: not an object")
            continue
        try:
            update = parse_update(row, services.settings.tz, now)
            outcome = await apply_update(services, update, source)
        except ValueError as exc:
            result.errors.append(f"row {number}: {exc}")
            continue
        if outcome == "created":
            result.created += 1
        elif outcome == "changed":
            result.changed += 1
        else:
            result.unchanged += 1
    log.info(
        "applications updated source=%s created=%d changed=%d unchanged=%d errors=%d",
        source.split(":", 1)[0],
        result.created,
        result.changed,
        result.unchanged,
        len(result.errors),
    )
    return result


async def apply_update(services: Services, update: Update, source: str) -> str:
    """Apply one update; return "created", "changed" or "unchanged"."""
    application = await Application.get_or_none(application_no=update.application_no)
    if application is None:
        if not (update.item_name and update.phone_tail):
            raise ValueError("a new application needs item_name and phone")
        try:
            application = await Application.create(
                application_no=update.application_no,
                item_name=update.item_name,
                item_code=update.item_code,
                unit=update.unit,
                phone_tail=update.phone_tail,
                status=update.status,
                is_mailable=True if update.is_mailable is None else update.is_mailable,
            )
        except IntegrityError:
            # Created by another update at the same moment: this one is a change to it.
            application = await Application.get(application_no=update.application_no)
        else:
            await record_status(
                services, application, update.status, update.at, update.note, source
            )
            return "created"
    await _refresh_details(application, update)
    event = await record_status(
        services, application, update.status, update.at, update.note, source
    )
    return "changed" if event is not None else "unchanged"


async def _refresh_details(application: Application, update: Update) -> None:
    changes: dict[str, Any] = {}
    for name in ("item_name", "item_code", "unit", "phone_tail"):
        value = getattr(update, name)
        if value and value != getattr(application, name):
            changes[name] = value
    if update.is_mailable is not None and update.is_mailable != application.is_mailable:
        changes["is_mailable"] = update.is_mailable
    if changes:
        await Application.filter(id=application.id).update(**changes)
        for name, value in changes.items():
            setattr(application, name, value)


async def record_status(
    services: Services,
    application: Application,
    status: str,
    at: datetime,
    note: str = "",
    source: str = "",
    *,
    is_announced: bool = True,
) -> ApplicationEvent | None:
    """Record a status the application reached; None when it is no change at all.

    A status equal to the current one, or one already in the history at the same time, is no
    change. One older than the current status joins the history without replacing it. A new
    current status is announced to the citizen following it, once (ref application:id:seq).
    """
    for _ in range(RECORD_ATTEMPTS):
        await application.refresh_from_db()
        seen = ApplicationEvent.filter(application_id=application.id, status=status, at=at)
        if await seen.exists():
            return None
        is_current = application.changed_at is None or at >= application.changed_at
        if is_current and status == application.status and application.seq > 0:
            return None
        seq = application.seq + 1
        changes: dict[str, Any] = {"seq": seq}
        if is_current:
            changes.update(status=status, changed_at=at)
        async with in_transaction():
            # The seq condition makes two updates at once take turns instead of sharing a seq.
            claimed = await Application.filter(id=application.id, seq=application.seq).update(
                **changes
            )
            if not claimed:
                continue
            event = await ApplicationEvent.create(
                application_id=application.id,
                seq=seq,
                status=status,
                note=note[:NOTE_MAX_CHARS],
                at=at,
                source=source[:80],
            )
        log.info("application status id=%d seq=%d status=%s", application.id, seq, status)
        application.seq = seq
        if is_current:
            application.status, application.changed_at = status, at
            if is_announced:
                await announce(services, application, event)
        return event
    raise RuntimeError(f"application {application.id} changed {RECORD_ATTEMPTS} times at once")


async def announce(services: Services, application: Application, event: ApplicationEvent) -> bool:
    """Push the status change to the citizen following the application, once per change."""
    from bot import push

    if application.openid is None:
        return False
    # The notice's phrase field takes at most 5 Chinese characters, whatever the language.
    status = services.texts.render("progress/status_name.j2", "zh", status=event.status)
    return await push.notify(
        services,
        kind="application_progress",
        openid=application.openid,
        ref=f"application:{application.id}:{event.seq}",
        values={
            "application_no": application.application_no,
            "item": application.item_name,
            "status": status,
            "updated_at": local_clock(services, event.at),
        },
    )


def local_clock(services: Services, at: datetime) -> str:
    return at.astimezone(services.settings.tz).strftime("%Y-%m-%d %H:%M")


# Certificates by post.


async def request_mail(
    application: Application, openid: str, address: str, phone: str, now: datetime
) -> MailRequest:
    """Ask for the application's certificate to be posted to an address."""
    await application.refresh_from_db()
    if application.openid != openid or not application.can_be_mailed:
        raise NotMailable(item=application.item_name, status=application.status)
    try:
        return await MailRequest.create(
            application_id=application.id,
            openid=openid,
            active_key=application.id,
            address=address,
            phone=phone,
            requested_at=now,
        )
    except IntegrityError:
        raise MailAlreadyAsked(application_no=application.application_no) from None


async def enter_tracking(
    services: Services, request: MailRequest, carrier: str, tracking_no: str, source: str
) -> bool:
    """Record that the certificate was posted and push the tracking number; False if known."""
    if request.status == "withdrawn":
        raise ValueError("the request was withdrawn")
    if request.status == "mailed" and request.tracking_no == tracking_no:
        return False
    now = services.now()
    await MailRequest.filter(id=request.id).update(
        status="mailed", carrier=carrier, tracking_no=tracking_no, mailed_at=now
    )
    application = await Application.get(id=request.application_id)
    if request.status != "mailed":
        # The notice below says it; a progress notice for the same news would be a second one.
        await record_status(
            services, application, "mailed", now, tracking_no, source, is_announced=False
        )
    request.status, request.carrier, request.tracking_no = "mailed", carrier, tracking_no
    request.mailed_at = now
    await _announce_mailed(services, application, request)
    return True


async def _announce_mailed(
    services: Services, application: Application, request: MailRequest
) -> bool:
    from bot import push

    assert request.mailed_at is not None
    return await push.notify(
        services,
        kind="certificate_mailed",
        openid=request.openid,
        # A corrected tracking number is news again; the same one twice is not.
        ref=f"mail:{request.id}:{request.tracking_no}",
        values={
            "item": application.item_name,
            "carrier": request.carrier,
            "tracking_no": request.tracking_no,
            "mailed_at": local_clock(services, request.mailed_at),
        },
    )


async def forget_citizen(openid: str, now: datetime) -> int:
    """Erase a citizen's addresses and phones and stop following their applications.

    Called when the citizen unfollows: a request not yet posted is withdrawn, since nobody could
    be told of it. Returns how many requests were erased.
    """
    await MailRequest.filter(openid=openid, status="requested").update(
        status="withdrawn", active_key=None
    )
    erased = await MailRequest.filter(openid=openid, erased_at__isnull=True).update(
        address="", phone="", erased_at=now
    )
    await Application.filter(openid=openid).update(openid=None)
    if erased:
        log.info("mail data erased requests=%d reason=unfollow", erased)
    return erased


async def erase_old_mail_data(now: datetime, keep_days: int = MAIL_DATA_KEEP_DAYS) -> int:
    """Erase the address and phone of requests posted or withdrawn more than `keep_days` ago."""
    before = now - timedelta(days=keep_days)
    erased = await MailRequest.filter(
        Q(status="mailed", mailed_at__lt=before) | Q(status="withdrawn", requested_at__lt=before),
        erased_at__isnull=True,
    ).update(address="", phone="", erased_at=now)
    if erased:
        log.info("mail data erased requests=%d reason=age", erased)
    return erased


async def purge_mail_data(ctx: dict[str, Any]) -> int:
    """Erase the mail data past its keeping time (arq cron job, once a night)."""
    services: Services = ctx["services"]
    return await erase_old_mail_data(services.now())


# Nightly, when nobody posts certificates.
CRON_JOBS: list[CronJob] = [
    cron(purge_mail_data, name="purge_mail_data", hour={3}, minute={20}, second={0}, timeout=120),
]


async def pending_mail() -> list[MailRequest]:
    """Return the requests waiting to be posted, the oldest first."""
    return await MailRequest.filter(status="requested").order_by("requested_at", "id")
