"""Notices to citizens: claimed once per subject and kind, sent by the arq worker, receipted."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from arq.worker import Retry
from redis.exceptions import RedisError
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q

from bot import job_queue, keys, notices
from bot.errors import WeChatAPIError, WeChatTransportError
from bot.notices import Delivery
from models.citizen import Citizen
from models.notice import Notice, NoticeConsent

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

# The arq job that sends one notice; its id makes a second enqueue of the same notice a no-op.
SEND_JOB = "send_notice"
CLAIM_JOB = "claim_and_send_notice"
# A claim job that fails before the row exists tries again after this long, times its tries.
CLAIM_RETRY_S = 2.0
CLAIM_RETRY_MAX_S = 60.0
CLAIM_MAX_TRIES = 20
# One API call may take this long before it counts as a transport failure and is retried.
SEND_TIMEOUT_S = 10.0
# arq cancels a job running longer than this, so no live worker holds a claim much older.
JOB_TIMEOUT_S = 30.0
# A claim this old belongs to a worker that died mid-send; another job may take the notice.
# Sending again is safe for templates: the platform drops a repeated client_msg_id (10 min).
STALE_CLAIM_S = JOB_TIMEOUT_S + 5
# A pending notice this old has lost its job (Redis was down at enqueue): the sweep requeues it.
REQUEUE_AFTER_S = 30.0
SWEEP_BATCH = 500
# A job may run before the row it sends is committed (a caller's open transaction): it looks
# again this often, this many times, before leaving the notice to the sweep.
UNSEEN_WAIT_S = 0.5
UNSEEN_TRIES = 4
CLIENT_MSG_ID_MAX_CHARS = 64
LAST_ERROR_MAX_CHARS = 200
# Errcodes that mean the account's own set-up is wrong: retrying cannot help.
CONFIG_ERRCODES = frozenset({40037, 47003, 47001})
CONSENT_USED_UP = 43101


def client_msg_id(kind: str, ref: str) -> str:
    """Return the API's idempotency key for a notice, kept within the column's size."""
    key = f"{kind}:{ref}"
    if len(key) <= CLIENT_MSG_ID_MAX_CHARS:
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:24]
    return f"{kind}:{digest}"[:CLIENT_MSG_ID_MAX_CHARS]


@dataclass(frozen=True, slots=True)
class NoticeRequest:
    """One notice to send, as `notify` takes it."""

    kind: str
    openid: str
    ref: str
    values: Mapping[str, str]


async def notify(
    services: Services, *, kind: str, openid: str, ref: str, values: Mapping[str, str]
) -> bool:
    """Claim the notice `kind` about `ref` for a citizen and queue it; False if already claimed.

    A citizen who does not follow (or, for a subscription notice, has not consented) gets a
    "skipped" row and nothing is sent. Raises ValueError for an unknown kind or missing values.
    """
    notice = await claim(services, kind=kind, openid=openid, ref=ref, values=values)
    if notice is None:
        return False
    await enqueue(services, notice.id)
    return True


async def notify_soon(
    services: Services, *, kind: str, openid: str, ref: str, values: Mapping[str, str]
) -> bool:
    """Queue one job that claims the notice and sends it: no database work on the request path.

    A rush of takes then costs each request one enqueue, and the notice one job instead of two.
    Without Redis it is claimed here instead, and the sweep queues it once Redis is back.
    """
    spec = notices.notice_book().kind(kind)
    spec.check_values(values)  # a wrong call fails where it is made, not later in a worker
    if services.jobs is not None:
        try:
            # The notice's age counts from now, however long the job waits for a worker.
            await job_queue.enqueue(
                services, CLAIM_JOB, kind, openid, ref, dict(values), services.now().isoformat(),
                job_id=keys.claim_job_id(kind, ref),
            )  # fmt: skip
            return True
        except (RedisError, OSError) as exc:
            log.warning("notice not queued kind=%s ref=%s error=%s", kind, ref, type(exc).__name__)
    return await notify(services, kind=kind, openid=openid, ref=ref, values=values)


async def claim_and_send(
    ctx: dict[str, Any],
    kind: str,
    openid: str,
    ref: str,
    values: dict[str, str],
    queued_at: str | None = None,
) -> str:
    """Claim a notice and send it at once (arq job); "" when it was claimed before.

    Until the row exists the job is all there is of the notice: a failed claim (the database
    restarting, say) is retried by arq after a back-off, not dropped.
    """
    services: Services = ctx["services"]
    since = datetime.fromisoformat(queued_at) if queued_at else None
    try:
        notice = await claim(
            services, kind=kind, openid=openid, ref=ref, values=values, since=since, to_send=True
        )
    except ValueError:
        raise  # an unknown kind or missing values: no retry mends that
    except Exception as exc:
        tries = int(ctx.get("job_try") or 1)
        log.warning("notice claim failed kind=%s ref=%s try=%d error=%s", kind, ref, tries, exc)
        raise Retry(defer=min(CLAIM_RETRY_S * tries, CLAIM_RETRY_MAX_S)) from exc
    if notice is None:
        if int(ctx.get("job_try") or 1) > 1:
            # A rerun: the first run may have claimed it and handed it back when its worker
            # stopped mid-send. The send job takes it from there (at most once, by job id).
            await _send_handed_back(services, kind, ref)
        return ""
    return await send_claimed(ctx, notice)


async def _send_handed_back(services: Services, kind: str, ref: str) -> None:
    pending = await Notice.filter(kind=kind, ref=ref, status="pending").values_list(
        "id", flat=True
    )
    for notice_id in pending:
        await enqueue(services, int(notice_id))  # type: ignore[call-overload]


async def send_claimed(ctx: dict[str, Any], notice: Notice) -> str:
    """Send a notice this job has just claimed with `claim(..., to_send=True)`.

    A failed attempt goes to a send job, which counts the attempts from there after the push
    worker's back-off.
    """
    try:
        return await _deliver(ctx["services"], notice)
    except Retry as retry:
        await enqueue(ctx["services"], notice.id, defer_s=(retry.defer_score or 0) / 1000)
        return "retrying"


def _created_at(since: datetime | None) -> dict[str, Any]:
    return {} if since is None else {"created_at": since}  # none given: now


async def claim(
    services: Services,
    *,
    kind: str,
    openid: str,
    ref: str,
    values: Mapping[str, str],
    since: datetime | None = None,
    to_send: bool = False,
) -> Notice | None:
    """Insert the notice's row, the claim: the row when it is to be sent, else None.

    None when it was claimed before, or when it is skipped (recorded with the reason). With
    `to_send` this worker sends it at once (`send_claimed`): the row goes in as being sent,
    attempt 1, which saves claiming it again.
    """
    return await _insert_claim(services, kind, openid, ref, values, since, sending=to_send)


async def _insert_claim(
    services: Services,
    kind: str,
    openid: str,
    ref: str,
    values: Mapping[str, str],
    since: datetime | None,
    *,
    sending: bool,
) -> Notice | None:
    spec = notices.notice_book().kind(kind)
    citizen = await Citizen.get_or_none(openid=openid)
    data = spec.render(values, services.texts, citizen.language if citizen else "zh")
    # A citizen with no row followed before the account kept them: the platform decides.
    reason = "" if citizen is None or citizen.is_following else "not following"
    if not reason and citizen is not None and kind in (citizen.muted_notices or ()):
        reason = "turned off"  # by the citizen, in 提醒设置
    if not reason and spec.channel == "subscribe":
        consent = await NoticeConsent.get_or_none(openid=openid, template_id=spec.template_id)
        reason = "" if consent is not None and consent.is_accepted else "no consent"
    status = "skipped" if reason else "sending" if sending else "pending"
    taken: dict[str, Any] = {"attempts": 1, "claimed_at": services.now()} if sending else {}
    try:
        notice = await Notice.create(
            kind=kind,
            ref=ref,
            openid=openid,
            status=status,
            template_id=spec.template_id,
            client_msg_id=client_msg_id(kind, ref),
            data={} if reason else data,
            last_error=reason,
            **_created_at(since),
            **({} if reason else taken),
        )
    except IntegrityError:
        log.debug("notice already claimed kind=%s ref=%s", kind, ref)
        return None
    if reason:
        log.info("notice skipped kind=%s ref=%s reason=%s", kind, ref, reason)
        return None
    return notice


async def notify_many(services: Services, items: Iterable[NoticeRequest]) -> int:
    """Claim and queue several notices, each on its own; return how many were newly queued."""
    queued = 0
    for item in items:
        is_queued = await notify(
            services, kind=item.kind, openid=item.openid, ref=item.ref, values=item.values
        )
        queued += is_queued
    return queued


async def enqueue(services: Services, notice_id: int, *, defer_s: float | None = None) -> bool:
    """Queue the job that sends a notice; a notice whose job is queued already keeps that one."""
    if services.jobs is None:
        log.warning("no job queue: notice waits for the sweep notice_id=%d", notice_id)
        return False
    try:
        job = await services.jobs.enqueue_job(
            SEND_JOB, notice_id, _job_id=keys.notice_job_id(notice_id), _defer_by=defer_s
        )
    except (RedisError, OSError) as exc:
        # The row is claimed and pending: the sweep queues it once Redis answers again.
        log.warning("notice not queued notice_id=%d error=%s", notice_id, type(exc).__name__)
        return False
    return job is not None


async def send_notice(ctx: dict[str, Any], notice_id: int) -> str:
    """Send one notice (arq job); return the status it ends in, or "" when it was not ours."""
    services: Services = ctx["services"]
    now = services.now()
    claimed = await Notice.filter(
        Q(id=notice_id)
        & (Q(status="pending") | Q(status="sending", claimed_at__lt=now - _s(STALE_CLAIM_S)))
    ).update(status="sending", attempts=F("attempts") + 1, claimed_at=now)
    if not claimed:
        if ctx.get("job_try", 1) < UNSEEN_TRIES and not await Notice.exists(id=notice_id):
            # Queued inside a transaction that has not committed yet: look again shortly.
            raise Retry(defer=UNSEEN_WAIT_S)
        log.debug("notice not pending notice_id=%d", notice_id)
        return ""
    return await _deliver(services, await Notice.get(id=notice_id))


async def _deliver(services: Services, notice: Notice) -> str:
    """Send a notice claimed by this job; return the status it ends in."""
    book = notices.notice_book()
    spec = book.kinds.get(notice.kind)
    max_age_s = spec.max_age_s if spec else book.delivery.max_age_s
    if services.now() - notice.created_at > _s(max_age_s):
        return await _finish(services, notice, "failed", error="too old to send")
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            msgid = await _send(services, notice)
    except asyncio.CancelledError:
        # The worker is stopping: hand the notice back so that its rerun sends it at once.
        await asyncio.shield(_release(notice, "cancelled"))
        raise
    except (WeChatAPIError, WeChatTransportError, TimeoutError) as exc:
        return await _failed_send(services, notice, exc, book.delivery)
    except Exception as exc:
        log.exception("notice send crashed notice_id=%d kind=%s", notice.id, notice.kind)
        return await _finish(services, notice, "failed", error=f"crash {type(exc).__name__}")
    await _finish(services, notice, "sent", msgid=msgid)
    log.info(
        "notice sent kind=%s notice_id=%d attempt=%d", notice.kind, notice.id, notice.attempts
    )
    await _apply_early_receipt(services, notice, msgid)
    return "sent"


async def _send(services: Services, notice: Notice) -> str:
    data = notice.data or {}
    fields_ = {str(k): str(v) for k, v in dict(data.get("fields", {})).items()}
    link = str(data.get("link", "")) or None
    if data.get("channel", "template") == "subscribe":
        return await services.api.send_subscription(
            notice.openid, notice.template_id, fields_, page=link
        )
    return await services.api.send_template(
        notice.openid, notice.template_id, fields_, client_msg_id=notice.client_msg_id, url=link
    )


async def _failed_send(
    services: Services, notice: Notice, exc: Exception, delivery: Delivery
) -> str:
    """Decide what a failed send means: blocked, a set-up error, or worth another attempt."""
    errcode = exc.errcode if isinstance(exc, WeChatAPIError) else None
    error = f"errcode={errcode}" if errcode is not None else _transport_error(exc)
    if isinstance(exc, WeChatAPIError) and exc.is_not_follower:
        await mark_not_following(services, notice.openid)
        log.info("notice blocked kind=%s notice_id=%d %s", notice.kind, notice.id, error)
        return await _finish(services, notice, "blocked", error=error)
    if errcode == CONSENT_USED_UP:
        await record_consent(notice.openid, [(notice.template_id, False)], source="sent")
        return await _finish(services, notice, "blocked", error=error)
    if errcode in CONFIG_ERRCODES:
        log.error(
            "notice refused: check config/notices.toml kind=%s template_id=%s errcode=%d",
            notice.kind,
            notice.template_id,
            errcode,
        )
        return await _finish(services, notice, "failed", error=error)
    is_retryable = isinstance(exc, TimeoutError) or (
        isinstance(exc, WeChatAPIError | WeChatTransportError) and exc.is_retryable
    )
    if isinstance(exc, WeChatAPIError) and exc.is_token_error:
        is_retryable = True  # the client refreshed once already; another process may fix it
    if not is_retryable or notice.attempts >= delivery.max_attempts:
        log.warning(
            "notice failed kind=%s notice_id=%d attempts=%d %s",
            notice.kind,
            notice.id,
            notice.attempts,
            error,
        )
        return await _finish(services, notice, "failed", error=error)
    wait_s = delivery.backoff_after(notice.attempts)
    await _release(notice, error)
    log.info(
        "notice retry kind=%s notice_id=%d attempt=%d wait_s=%.1f %s",
        notice.kind,
        notice.id,
        notice.attempts,
        wait_s,
        error,
    )
    raise Retry(defer=wait_s)


def _transport_error(exc: Exception) -> str:
    if isinstance(exc, WeChatTransportError):
        return f"transport {exc.reason} status={exc.status}"
    return "timeout"


async def _release(notice: Notice, error: str) -> None:
    """Hand a claimed notice back as pending, for the next attempt."""
    await Notice.filter(id=notice.id, status="sending").update(
        status="pending", claimed_at=None, last_error=error[:LAST_ERROR_MAX_CHARS]
    )


async def _finish(
    services: Services, notice: Notice, status: str, *, error: str = "", msgid: str = ""
) -> str:
    """Put a claimed notice in a final state; its values are dropped, they are not needed."""
    changes: dict[str, Any] = {
        "status": status,
        "data": {},
        "last_error": error[:LAST_ERROR_MAX_CHARS],
    }
    if msgid:
        changes.update(msgid=msgid, sent_at=services.now())
    await Notice.filter(id=notice.id, status="sending").update(**changes)
    return status


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


async def mark_not_following(services: Services, openid: str) -> None:
    """Record that a citizen cannot be reached, so that no further notice is tried."""
    await Citizen.unfollow(openid, None)
    try:
        # The language stays: a citizen who blocked notices still chats, in the language chosen.
        await services.redis.hdel(keys.citizen_key(openid), "following")  # type: ignore[misc]
    except RedisError:
        log.warning("citizen cache not cleared after a block")


async def requeue_stalled(ctx: dict[str, Any]) -> int:
    """Queue again the notices whose job was lost (arq cron job); return how many."""
    services: Services = ctx["services"]
    now = services.now()
    stalled = (
        await Notice.filter(
            Q(status="pending", created_at__lt=now - _s(REQUEUE_AFTER_S))
            | Q(status="sending", claimed_at__lt=now - _s(STALE_CLAIM_S))
        )
        .order_by("id")
        .limit(SWEEP_BATCH)
        .values_list("id", flat=True)
    )
    queued = 0
    for notice_id in stalled:
        queued += await enqueue(services, int(notice_id))  # type: ignore[call-overload]
    if queued:
        log.warning("stalled notices queued again count=%d", queued)
    return queued


# Receipts: what the platform says later about a notice it accepted.

RECEIPT_STATES = {
    "success": "delivered",
    "failed:user block": "blocked",
    "failed: system failed": "failed",
}


async def record_receipt(services: Services, openid: str, msgid: str, status: str) -> str:
    """Apply a TEMPLATESENDJOBFINISH to its notice; return the notice's new status or ""."""
    state = RECEIPT_STATES.get(status.strip().lower(), "failed")
    changes: dict[str, Any] = {"status": state}
    if state == "delivered":
        changes["delivered_at"] = services.now()
    else:
        changes["last_error"] = status[:LAST_ERROR_MAX_CHARS]
    # A notice is found by msgid once "sent"; receipts may come again: the first one counts.
    updated = await Notice.filter(msgid=msgid, openid=openid, status="sent").update(**changes)
    if not updated:
        if not await Notice.filter(msgid=msgid, openid=openid).exists():
            await _keep_early_receipt(services, msgid, status)
        return ""
    if state == "blocked":
        # The citizen refused the account's messages: no notice is tried again.
        await mark_not_following(services, openid)
    log.info("notice receipt status=%s", state)
    return state


async def _keep_early_receipt(services: Services, msgid: str, status: str) -> None:
    """Keep a receipt that came before its msgid was stored; the sender applies it."""
    try:
        await services.redis.set(
            keys.early_receipt_key(msgid), status, ex=keys.EARLY_RECEIPT_TTL_S
        )
    except RedisError:
        log.warning("early receipt lost msgid=%s", msgid)


async def _apply_early_receipt(services: Services, notice: Notice, msgid: str) -> None:
    if not msgid:
        return
    try:
        status = await services.redis.getdel(keys.early_receipt_key(msgid))
    except RedisError:
        return
    if status:
        await record_receipt(services, notice.openid, msgid, str(status))


async def record_subscription_receipt(
    services: Services, openid: str, items: Iterable[Mapping[str, Any]]
) -> None:
    """Apply a subscribe_msg_sent_event: each item names a msgid and its error code."""
    for item in items:
        msgid = str(item.get("MsgID") or item.get("MsgId") or "")
        errcode = str(item.get("ErrorCode", "")).strip()
        if not msgid:
            continue
        if errcode == "0":
            await record_receipt(services, openid, msgid, "success")
            continue
        if errcode == str(CONSENT_USED_UP):
            template_id = str(item.get("TemplateId", ""))
            await record_consent(openid, [(template_id, False)], source="sent")
        await Notice.filter(msgid=msgid, openid=openid, status="sent").update(
            status="blocked" if errcode == str(CONSENT_USED_UP) else "failed",
            last_error=f"errcode={errcode} {item.get('ErrorStatus', '')}"[:LAST_ERROR_MAX_CHARS],
        )


async def record_consent(
    openid: str, answers: Iterable[tuple[str, bool]], *, source: str = "popup"
) -> int:
    """Keep a citizen's latest answer per template id; return how many were recorded."""
    count = 0
    for template_id, is_accepted in answers:
        if not template_id:
            continue
        values: dict[str, Any] = {"is_accepted": is_accepted, "source": source}
        updated = await NoticeConsent.filter(openid=openid, template_id=template_id).update(
            **values
        )
        if not updated:
            try:
                await NoticeConsent.create(openid=openid, template_id=template_id, **values)
            except IntegrityError:  # the same popup answer delivered twice at once
                await NoticeConsent.filter(openid=openid, template_id=template_id).update(**values)
        count += 1
    return count


def event_items(raw: Mapping[str, Any], container: str) -> list[dict[str, Any]]:
    """Return the items of a subscription event: one arrives as an object, several as a list."""
    box = raw.get(container)
    items = box.get("List") if isinstance(box, dict) else None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]
