"""证照邮寄: ask for a ready certificate to be posted home; the tracking number is pushed later."""

from __future__ import annotations

import logging
import re

from bot.dispatcher import Context, Reply, Router, is_number
from config.menu import words_of
from handlers.guide import hand_on, onward_route
from handlers.progress import LOOKUP, typed_number
from models import application as applications
from models.application import Application, MailRequest

log = logging.getLogger(__name__)
router = Router("postal")

CHOOSE_STATE = "postal.choose"
ADDRESS_STATE = "postal.address"
PHONE_STATE = "postal.phone"
CONFIRM_STATE = "postal.confirm"
YES_WORDS = frozenset({"确认", "确定", "提交", "是", "是的", "好", "好的", "对", "1", "ok", "yes"})
CHANGE_WORDS = frozenset({"修改", "改", "重填", "重新填写", "2", "change"})


@router.menu("CERT_MAIL")
@router.text(*words_of("CERT_MAIL"))
async def start_mail(ctx: Context) -> Reply:
    """Offer the citizen's ready certificates; with none, ask for an application to look up."""
    found = LOOKUP.search(ctx.words)
    if found:
        application = await applications.find_for_citizen(
            ctx.services, found.group(1), found.group(2), ctx.openid
        )
        return await offer(ctx, application)
    named = typed_number(ctx.words)
    followed = await applications.followed_by(ctx.openid)
    chosen = [a for a in followed if a.application_no == named]
    if chosen:
        return await offer(ctx, chosen[0])
    ready = [a for a in followed if a.can_be_mailed and not await _has_request(a)]
    if len(ready) == 1:
        return await offer(ctx, ready[0])
    requests = await MailRequest.filter(openid=ctx.openid).exclude(status="withdrawn")
    by_id = {a.id: a for a in followed}
    sent = [
        {"item": by_id[r.application_id].item_name, "status": r.status, "request": r}
        for r in requests
        if r.application_id in by_id
    ]
    await ctx.dialog.start(CHOOSE_STATE, ids=[a.id for a in ready])
    return ctx.reply("postal/choose.j2", ready=ready, sent=sent)


async def _has_request(application: Application) -> bool:
    return await applications.mail_request_of(application) is not None


@router.dialog(CHOOSE_STATE)
async def choose_application(ctx: Context) -> Reply:
    """A number from the list of ready certificates, or an application number and phone digits."""
    words = ctx.words
    ids: list[int] = list(ctx.dialog.data.get("ids") or [])
    if is_number(words) and len(words) <= 2:
        if not 1 <= int(words) <= len(ids):
            return ctx.reply("postal/choose_again.j2", count=len(ids))
        application = await Application.get(id=ids[int(words) - 1])
        return await offer(ctx, application)
    found = LOOKUP.search(words)
    if found:
        application = await applications.find_for_citizen(
            ctx.services, found.group(1), found.group(2), ctx.openid
        )
        return await offer(ctx, application)
    onward = onward_route(words)
    if onward is not None:
        return await hand_on(ctx, onward, words)
    return ctx.reply("postal/choose_again.j2", count=len(ids))


async def offer(ctx: Context, application: Application) -> Reply:
    """Ask for the address, when the application's certificate may be posted now."""
    request = await applications.mail_request_of(application)
    if request is not None:
        await ctx.dialog.finish()
        address = mask_address(request.address)
        return ctx.reply(
            "postal/already.j2", application=application, request=request, address=address
        )
    if not application.can_be_mailed:
        await ctx.dialog.finish()
        return ctx.reply(
            "postal/not_ready.j2", item=application.item_name, status=application.status
        )
    await ctx.dialog.start(ADDRESS_STATE, application_id=application.id)
    return ctx.reply("postal/ask_address.j2", application=application)


@router.dialog(ADDRESS_STATE)
async def take_address(ctx: Context) -> Reply:
    """The address the certificate goes to, as the citizen typed it (not folded)."""
    address = applications.clean_address(ctx.incoming.text)
    if address is None:
        return ctx.reply("postal/address_again.j2")
    await ctx.dialog.go(PHONE_STATE, address=address)
    return ctx.reply("postal/ask_phone.j2")


@router.dialog(PHONE_STATE)
async def take_phone(ctx: Context) -> Reply:
    """The mobile number the courier calls."""
    phone = applications.normalize_mobile(ctx.words)
    if phone is None:
        return ctx.reply("postal/phone_again.j2")
    await ctx.dialog.go(CONFIRM_STATE, phone=phone)
    application = await Application.get(id=ctx.dialog.data["application_id"])
    return ctx.reply(
        "postal/confirm.j2",
        application=application,
        address=ctx.dialog.data["address"],
        phone=phone,
    )


@router.dialog(CONFIRM_STATE)
async def confirm_mail(ctx: Context) -> Reply:
    """确认 submits the request; 修改 asks for the address again."""
    data = ctx.dialog.data
    application = await Application.get(id=data["application_id"])
    if ctx.words in CHANGE_WORDS:
        await ctx.dialog.go(ADDRESS_STATE)
        return ctx.reply("postal/ask_address.j2", application=application)
    if ctx.words not in YES_WORDS:
        return ctx.reply(
            "postal/confirm.j2",
            application=application,
            address=data["address"],
            phone=data["phone"],
        )
    await ctx.dialog.finish()
    request = await applications.request_mail(
        application, ctx.openid, data["address"], data["phone"], ctx.now()
    )
    log.info("mail requested request=%d application=%d", request.id, application.id)
    return ctx.reply("postal/requested.j2", application=application, phone=data["phone"])


def mask_address(address: str) -> str:
    """Show the start of an address, enough to recognise it, and hide the house number."""
    kept = re.split(r"\d", address, maxsplit=1)[0]
    return (kept[:12] or address[:6]) + "****"
