"""提醒设置: when "almost your turn" comes, which notices come at all, and the language."""

from __future__ import annotations

import logging
import re

from bot.dispatcher import Context, PassOn, Reply, Router, is_number
from config.menu import words_of
from handlers.complaint import answers_elsewhere
from models import preferences
from models.preferences import OPTIONAL_NOTICES, Preferences

log = logging.getLogger(__name__)
router = Router("reminders")

MENU_STATE = "reminders.menu"
THRESHOLD_STATE = "reminders.threshold"
NOTICES_STATE = "reminders.notices"
ENGLISH_WORDS = frozenset({"english", "英文", "英语", "switch to english"})
CHINESE_WORDS = ("中文", "切换中文", "chinese", "汉语")
DONE_WORDS = frozenset({"完成", "好", "好的", "好了", "done", "ok"})
THRESHOLD_TYPED = r"^提醒\s*(\d{1,3})\s*人?$"


def _settings(prefs: Preferences) -> dict[str, object]:
    return {
        "near_ahead": prefs.near_ahead,
        "is_default_near": prefs.is_default_near,
        "notices": [{"kind": k, "is_on": prefs.wants(k)} for k in OPTIONAL_NOTICES],
        "language": prefs.language,
        "low": preferences.NEAR_AHEAD_MIN,
        "high": preferences.NEAR_AHEAD_MAX,
    }


async def _show(ctx: Context, template: str = "reminders/settings.j2", **extra: object) -> Reply:
    prefs = await preferences.preferences_of(ctx.openid)
    if prefs.language != ctx.language:
        # The webhook's cache lost the choice (an expired or flushed key): put it back.
        await preferences.cache_language(ctx.services, ctx.openid, prefs.language)
        ctx.language = prefs.language
    await ctx.dialog.start(MENU_STATE)
    return ctx.reply(template, settings=_settings(prefs), **extra)


@router.menu("REMINDERS")
@router.text(*words_of("REMINDERS"), "英文", "英语", "language", "settings")
async def show_settings(ctx: Context) -> Reply:
    """Show the three settings and the number that changes each; "english" switches at once."""
    if ctx.words in ENGLISH_WORDS:
        return await _switch_alone(ctx, "en")
    return await _show(ctx)


@router.text(*CHINESE_WORDS)
async def switch_to_chinese(ctx: Context) -> Reply:
    """中文 typed anywhere switches replies and notices to Chinese."""
    return await _switch_alone(ctx, "zh")


async def _switch_alone(ctx: Context, language: str) -> Reply:
    """Switch outside the settings: say so, and open no settings whose numbers a menu number
    typed next would change."""
    await preferences.set_language(ctx.services, ctx.openid, language)
    ctx.language = language
    return ctx.reply("reminders/language_switched.j2")


async def _switch(ctx: Context, language: str) -> Reply:
    await preferences.set_language(ctx.services, ctx.openid, language)
    ctx.language = language
    return await _show(ctx, "reminders/language_set.j2")


@router.dialog(MENU_STATE)
async def choose_setting(ctx: Context) -> Reply:
    """1 asks for the threshold, 2 lists the notices, 3 switches the language."""
    words = ctx.words
    if words in ENGLISH_WORDS or words in CHINESE_WORDS:
        return await _switch(ctx, "en" if words in ENGLISH_WORDS else "zh")
    typed = re.match(THRESHOLD_TYPED, words)
    if typed:
        return await _set_threshold(ctx, typed.group(1))
    if words == "1":
        await ctx.dialog.go(THRESHOLD_STATE)
        return ctx.reply(
            "reminders/ask_threshold.j2",
            low=preferences.NEAR_AHEAD_MIN,
            high=preferences.NEAR_AHEAD_MAX,
        )
    if words == "2":
        return await _notices(ctx)
    if words == "3":
        return await _switch(ctx, "zh" if ctx.language == "en" else "en")
    if words in DONE_WORDS:
        await ctx.dialog.finish()
        return ctx.reply("reminders/done.j2")
    if not is_number(words):
        raise PassOn
    return ctx.reply("reminders/choose_again.j2")


@router.dialog(THRESHOLD_STATE)
async def set_threshold(ctx: Context) -> Reply:
    """A number from 1 to 10: "almost your turn" comes when that many are ahead."""
    if answers_elsewhere(ctx):
        raise PassOn
    return await _set_threshold(ctx, ctx.words)


@router.text(pattern=THRESHOLD_TYPED)
async def set_threshold_directly(ctx: Context) -> Reply:
    """ "提醒5" sets the threshold without the menu."""
    assert ctx.match is not None
    return await _set_threshold(ctx, ctx.match.group(1))


async def _set_threshold(ctx: Context, typed: str) -> Reply:
    if not is_number(typed):
        raise preferences.ThresholdOutOfRange(
            low=preferences.NEAR_AHEAD_MIN, high=preferences.NEAR_AHEAD_MAX
        )
    await preferences.set_near_ahead(ctx.openid, int(typed))
    return await _show(ctx, "reminders/threshold_set.j2")


async def _notices(ctx: Context) -> Reply:
    prefs = await preferences.preferences_of(ctx.openid)
    await ctx.dialog.go(NOTICES_STATE)
    return ctx.reply("reminders/notices.j2", settings=_settings(prefs))


@router.dialog(NOTICES_STATE)
async def toggle_notice(ctx: Context) -> Reply:
    """A number turns that notice on or off; 完成 goes back to the settings."""
    words = ctx.words
    if words in DONE_WORDS:
        return await _show(ctx)
    if not is_number(words):
        raise PassOn
    index = int(words)
    if not 1 <= index <= len(OPTIONAL_NOTICES):
        return ctx.reply("reminders/notices_again.j2", count=len(OPTIONAL_NOTICES))
    kind = OPTIONAL_NOTICES[index - 1]
    is_on = await preferences.toggle_notice(ctx.openid, kind)
    prefs = await preferences.preferences_of(ctx.openid)
    return ctx.reply(
        "reminders/notices.j2", settings=_settings(prefs), changed={"kind": kind, "is_on": is_on}
    )
