"""市民课堂: see the activities to come, sign up within capacity, cancel a sign-up."""

from __future__ import annotations

import logging
from typing import Any

from bot.dispatcher import Context, PassOn, Reply, Router, is_number
from config.menu import words_of
from handlers.complaint import answers_elsewhere
from models import classroom
from models.classroom import Activity

log = logging.getLogger(__name__)
router = Router("classroom")

CHOOSE_STATE = "classroom.choose"
CONFIRM_STATE = "classroom.confirm"
YES_WORDS = frozenset({"报名", "确认", "确认报名", "是", "好", "好的", "yes", "ok", "sign up"})
CANCEL_SIGN_UP_WORDS = ("取消报名", "退出报名", "cancel sign-up")
MINE_WORDS = ("我的报名", "我的课堂", "my sign-ups")


def _describe(ctx: Context, activity: Activity, mine: set[int]) -> dict[str, Any]:
    tz = ctx.services.settings.tz
    starts = activity.starts_at.astimezone(tz)
    ends = activity.ends_at.astimezone(tz) if activity.ends_at else None
    return {
        "title": activity.title,
        "description": activity.description,
        "place": activity.place,
        "day": starts.strftime("%Y-%m-%d"),
        "weekday": starts.isoweekday(),
        "starts": starts.strftime("%H:%M"),
        "ends": ends.strftime("%H:%M") if ends else "",
        "capacity": activity.capacity,
        "seats_left": activity.seats_left,
        "is_mine": activity.id in mine,
        "is_open": ctx.now() < classroom.closes_at(activity),
    }


async def _mine(ctx: Context) -> list[Activity]:
    return await classroom.signed_activities(ctx.openid, ctx.now())


@router.menu("CLASSROOM")
@router.text(*words_of("CLASSROOM"), "报名", "classroom")
async def list_activities(ctx: Context) -> Reply:
    """List the activities to come with their seats; a number opens one."""
    activities = await classroom.upcoming(ctx.now())
    mine = {a.id for a in await _mine(ctx)}
    if activities:
        await ctx.dialog.start(CHOOSE_STATE, options=[a.id for a in activities])
    shown = [_describe(ctx, a, mine) for a in activities]
    return ctx.reply("classroom/list.j2", activities=shown, signed=len(mine))


@router.dialog(CHOOSE_STATE)
async def open_activity(ctx: Context) -> Reply:
    """The citizen picked an activity: its details, and how to sign up or cancel."""
    if not is_number(ctx.words):
        raise PassOn
    options = list(ctx.dialog.data.get("options", []))
    index = int(ctx.words)
    if not 1 <= index <= len(options):
        return ctx.reply("classroom/choose_again.j2", count=len(options))
    activity = await Activity.get_or_none(id=options[index - 1])
    if activity is None or activity.status != "open":
        await ctx.dialog.finish()
        raise classroom.ActivityNotFound()
    mine = {a.id for a in await _mine(ctx)}
    shown = _describe(ctx, activity, mine)
    if shown["is_open"] and not shown["is_mine"] and activity.seats_left:
        await ctx.dialog.start(CONFIRM_STATE, activity=activity.id)
    else:
        await ctx.dialog.finish()
    return ctx.reply("classroom/detail.j2", activity=shown)


@router.dialog(CONFIRM_STATE)
async def confirm_sign_up(ctx: Context) -> Reply:
    """报名 takes the seat; anything else asks again."""
    if ctx.words not in YES_WORDS:
        if ctx.words in (*MINE_WORDS, *CANCEL_SIGN_UP_WORDS) or answers_elsewhere(ctx):
            raise PassOn
        return ctx.reply("classroom/confirm_again.j2")
    activity_id = int(ctx.dialog.data.get("activity", 0))
    await ctx.dialog.finish()
    activity = await classroom.sign_up(ctx.services, activity_id, ctx.openid)
    shown = _describe(ctx, activity, {activity.id})
    due = classroom.reminder_due(activity, ctx.services.settings.tz)
    return ctx.reply("classroom/signed_up.j2", activity=shown, is_reminded=due > ctx.now())


@router.text(*MINE_WORDS)
async def show_sign_ups(ctx: Context) -> Reply:
    """List the activities the citizen signed up for."""
    shown = [_describe(ctx, a, {a.id}) for a in await _mine(ctx)]
    return ctx.reply("classroom/mine.j2", activities=shown)


@router.text(*CANCEL_SIGN_UP_WORDS, pattern=r"^取消报名\s*(\d{1,2})$", is_command=True)
async def cancel_sign_up(ctx: Context) -> Reply:
    """Cancel the sign-up named by its number in 我的报名, or the only one."""
    mine = await _mine(ctx)
    index = int(ctx.match.group(1)) if ctx.match else 0
    if index and not 1 <= index <= len(mine):
        return ctx.reply("classroom/which.j2", activities=[_describe(ctx, a, set()) for a in mine])
    if not index and len(mine) != 1:
        return ctx.reply("classroom/which.j2", activities=[_describe(ctx, a, set()) for a in mine])
    chosen = mine[index - 1] if index else mine[0]
    activity = await classroom.cancel_sign_up(ctx.services, chosen.id, ctx.openid)
    return ctx.reply("classroom/cancelled.j2", activity=_describe(ctx, activity, set()))
