"""办件进度: look an application up by number and phone, read its history, hear of changes."""

from __future__ import annotations

import logging
import re
from typing import Any

from bot.dispatcher import Context, Reply, Router, is_number, normalize
from config.menu import words_of
from handlers.guide import hand_on, onward_route
from models import application as applications
from models.application import Application

log = logging.getLogger(__name__)
router = Router("progress")

ASK_STATE = "progress.ask"
# "SL2024060100012 1234": the application number, a space or mark, the phone's last four digits.
LOOKUP = re.compile(r"([a-z]{0,4}\d{8,24})\s*[\s,，、/+＋]\s*(\d{4})$")
# How many followed applications the menu lists.
MAX_LISTED = 8


@router.menu("APPLICATION_PROGRESS")
@router.text(*words_of("APPLICATION_PROGRESS"))
async def open_progress(ctx: Context) -> Reply:
    """List the applications the citizen follows and ask for a number and phone for another."""
    found = LOOKUP.search(ctx.words)
    if found:
        return await look_up(ctx, found)
    followed = (await applications.followed_by(ctx.openid))[:MAX_LISTED]
    await ctx.dialog.start(ASK_STATE, ids=[a.id for a in followed])
    rows = [_row(ctx, a) for a in followed]
    return ctx.reply("progress/ask.j2", rows=rows)


@router.text(pattern=rf"^(?:办件|进度|查询|查)?\s*{LOOKUP.pattern}", is_command=True)
async def look_up_typed(ctx: Context) -> Reply:
    """An application number and the phone's last four digits, typed anywhere."""
    assert ctx.match is not None
    return await look_up(ctx, ctx.match)


@router.dialog(ASK_STATE)
async def answer_progress(ctx: Context) -> Reply:
    """In 办件进度: a number from the list, or an application number and phone digits."""
    words = ctx.words
    ids: list[int] = list(ctx.dialog.data.get("ids") or [])
    if is_number(words) and len(words) <= 2:
        if not 1 <= int(words) <= len(ids):
            return ctx.reply("progress/ask_again.j2", count=len(ids))
        application = await Application.get_or_none(id=ids[int(words) - 1], openid=ctx.openid)
        if application is None:
            return ctx.reply("progress/ask_again.j2", count=0)
        return await show_history(ctx, application)
    found = LOOKUP.search(words)
    if found:
        return await look_up(ctx, found)
    onward = onward_route(words)
    if onward is not None:
        number = ctx.dialog.data.get("application_no")
        # 证照邮寄 goes on with the application just shown.
        named = f"{words} {number}" if number and onward.service == "postal" else words
        return await hand_on(ctx, onward, named)
    return ctx.reply("progress/ask_again.j2", count=len(ids))


async def look_up(ctx: Context, found: re.Match[str]) -> Reply:
    application = await applications.find_for_citizen(
        ctx.services, found.group(1), found.group(2), ctx.openid
    )
    log.info("application looked up id=%d", application.id)
    return await show_history(ctx, application)


async def show_history(ctx: Context, application: Application) -> Reply:
    """Show every status the application reached, on the hall's clock, and what can follow."""
    events = await applications.history(application)
    request = await applications.mail_request_of(application)
    await ctx.dialog.go(ASK_STATE, application_no=application.application_no)
    return ctx.reply(
        "progress/history.j2",
        application=application,
        status=status_name(ctx, application.status),
        events=[
            {
                "at": applications.local_clock(ctx.services, e.at),
                "status": status_name(ctx, e.status),
                "note": e.note,
            }
            for e in events
        ],
        request=request,
        can_mail=application.can_be_mailed and request is None,
    )


def status_name(ctx: Context, status: str) -> str:
    """Return a status as the citizen reads it (已受理, 可领取, ...)."""
    return ctx.render("progress/status_name.j2", status=status)


def _row(ctx: Context, application: Application) -> dict[str, Any]:
    changed = application.changed_at
    return {
        "no": application.application_no,
        "item": application.item_name,
        "status": status_name(ctx, application.status),
        "at": applications.local_clock(ctx.services, changed) if changed else "",
    }


def typed_number(words: str) -> str:
    """Return an application number inside typed words ("邮寄 SL2024060100012"), or ""."""
    found = re.search(r"(?<![a-z0-9])([a-z]{0,4}\d{8,24})(?![0-9])", normalize(words))
    return applications.normalize_no(found.group(1)) if found else ""
