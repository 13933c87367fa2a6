"""What the platform reports about notices: delivery receipts and subscription consent."""

from __future__ import annotations

import logging

from bot import push
from bot.dispatcher import Context, Reply, Router

log = logging.getLogger(__name__)
router = Router("receipts")

# The containers of the subscription events, and the source each answer is recorded under.
POPUP = "SubscribeMsgPopupEvent"
CHANGE = "SubscribeMsgChangeEvent"
SENT = "SubscribeMsgSentEvent"


@router.event("TEMPLATESENDJOBFINISH")
async def template_delivered(ctx: Context) -> Reply:
    """The platform tells how a template notice ended: delivered, refused or failed."""
    raw = ctx.incoming.raw
    msgid = str(raw.get("MsgID") or raw.get("MsgId") or "").strip()
    status = str(raw.get("Status") or "").strip()
    if msgid and status:
        await push.record_receipt(ctx.services, ctx.openid, msgid, status)
    else:
        log.warning("template receipt without MsgID or Status")
    return Reply()


@router.event("subscribe_msg_popup_event")
async def consent_answered(ctx: Context) -> Reply:
    """The citizen answered a subscription popup: keep the answer per template."""
    await _record_consent(ctx, POPUP, "popup")
    return Reply()


@router.event("subscribe_msg_change_event")
async def consent_changed(ctx: Context) -> Reply:
    """The citizen turned a subscription off in their notice settings."""
    await _record_consent(ctx, CHANGE, "change")
    return Reply()


@router.event("subscribe_msg_sent_event")
async def subscription_delivered(ctx: Context) -> Reply:
    """The platform tells how subscription notices ended."""
    items = push.event_items(ctx.incoming.raw, SENT)
    await push.record_subscription_receipt(ctx.services, ctx.openid, items)
    return Reply()


async def _record_consent(ctx: Context, container: str, source: str) -> None:
    answers = [
        (str(item.get("TemplateId", "")).strip(), item.get("SubscribeStatusString") == "accept")
        for item in push.event_items(ctx.incoming.raw, container)
    ]
    count = await push.record_consent(ctx.openid, answers, source=source)
    log.info("subscription consent recorded source=%s templates=%d", source, count)
