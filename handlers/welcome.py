"""Follow and unfollow, help, and answers for what no other service claims."""

from __future__ import annotations

import asyncio
import difflib
import logging
from datetime import datetime

from redis.exceptions import RedisError

from bot import keys
from bot.dispatcher import Context, Reply, Router, TapInstead
from config.menu import entries
from handlers.complaint import service_words
from models import application, preferences
from models.booking import forget_citizen
from models.citizen import Citizen

log = logging.getLogger(__name__)
router = Router("welcome")

# A message this long (in characters) may be a menu word mistyped; longer ones are sentences.
MIN_GUESSED, MAX_GUESSED = 2, 8
# How alike (difflib's ratio) the message and a menu word must be: 取好 and 取号 are 0.5.
GUESS_CUTOFF = 0.5


def _menu_names() -> tuple[str, ...]:
    return tuple(e.name for e in entries().values())


async def _list_services(ctx: Context, template: str, **values: object) -> Reply:
    """Reply with the numbered list of services, noting when it went out (list_shown_after)."""
    command = ("SET", keys.list_shown_key(ctx.openid), str(ctx.now().timestamp()), "EX",
               keys.LIST_SHOWN_TTL_S)  # fmt: skip
    if ctx.services.batch is not None:
        # Not awaited: it rides in the reply's round trip, and the reply need not wait for it.
        ctx.services.batch.execute(command).add_done_callback(_log_unnoted)
    else:
        try:
            await ctx.services.redis.execute_command(*command)
        except (RedisError, OSError) as exc:  # the list matters more than the note of it
            log.warning("list shown not noted error=%s", type(exc).__name__)
    return ctx.reply(template, services=_menu_names(), **values)


def _log_unnoted(noted: asyncio.Future[list[object]]) -> None:
    error = None if noted.cancelled() else noted.exception()
    if error is not None:
        log.warning("list shown not noted error=%s", type(error).__name__)


async def list_shown_after(ctx: Context, moment: datetime) -> bool:
    """Tell whether the citizen was shown the numbered list of services after `moment`."""
    try:
        shown = await ctx.services.redis.get(keys.list_shown_key(ctx.openid))
    except (RedisError, OSError) as exc:
        log.warning("list shown not read error=%s", type(exc).__name__)
        return False
    return shown is not None and float(shown) > moment.timestamp()


@router.event("subscribe", "subscribe_scan")
async def welcome_follower(ctx: Context) -> Reply:
    """A new follower sees what the account can do and how to start."""
    await Citizen.follow(ctx.openid, ctx.now())
    await ctx.services.redis.hset(keys.citizen_key(ctx.openid), "following", "1")  # type: ignore[misc]
    # Its list is not numbered: a number after it is no pick from it (see list_shown_after).
    return ctx.reply("welcome/subscribe.j2", services=_menu_names())


@router.event("unsubscribe")
async def forget_follower(ctx: Context) -> Reply:
    """The citizen left: mark them so that no notice is sent again."""
    await Citizen.unfollow(ctx.openid, ctx.now())
    await forget_citizen(ctx.openid, ctx.services.local_now())
    await preferences.forget(ctx.services, ctx.openid)
    await application.forget_citizen(ctx.openid, ctx.now())
    # The hash keeps the default language preferences.forget wrote (see keep_languages).
    await ctx.services.redis.hdel(keys.citizen_key(ctx.openid), "following")  # type: ignore[misc]
    await ctx.services.redis.delete(keys.dialog_key(ctx.openid), keys.list_shown_key(ctx.openid))
    log.info("citizen unfollowed")
    return Reply()


@router.event("dialog_cancelled")
async def leave_dialog(ctx: Context) -> Reply:
    """The citizen typed 取消 in the middle of a dialog: it is left, nothing is kept.

    Leaving 在线咨询 cancels nothing: it is said as leaving.
    """
    asking = (ctx.dialog.state or "").startswith("consult:")
    await ctx.dialog.finish()
    return ctx.reply("welcome/cancelled.j2", asking=asking)


@router.event("dialog_expired")
async def dialog_timed_out(ctx: Context) -> Reply:
    """An answer came after the dialog timed out: say so and show how to start again."""
    await ctx.dialog.finish()
    return ctx.reply("welcome/expired.j2")


@router.text("帮助", "菜单", "help", "你好", "您好", "hi", "hello")
async def show_help(ctx: Context) -> Reply:
    """The citizen asked what the account does: the numbered list of services."""
    return await _list_services(ctx, "welcome/help.j2", words="", suggestion="")


@router.text("谢谢", "谢谢你", "谢谢您", "多谢", "感谢", "thanks", "thank you")
async def answer_thanks(ctx: Context) -> Reply:
    """A thank-you is answered in kind, with how to go on, not as words nobody understood."""
    return ctx.reply("welcome/thanks.j2")


@router.text("取消")
async def show_what_can_be_cancelled(ctx: Context) -> Reply:
    """A bare 取消 outside any dialog: the words that cancel a number, a booking, a sign-up."""
    return ctx.reply("welcome/cancel_what.j2")


@router.default
async def answer_unknown(ctx: Context) -> Reply:
    """Words nothing claimed: say so, briefly, the service they look like, then the list."""
    suggestion = closest_menu_word(ctx.words)
    return await _list_services(ctx, "welcome/help.j2", words=ctx.words, suggestion=suggestion)


def closest_menu_word(words: str) -> str:
    """Return the menu word a short mistyped message looks like (取好: 取号), or ""."""
    if not MIN_GUESSED <= len(words) <= MAX_GUESSED:
        return ""
    known = sorted(service_words())
    found = difflib.get_close_matches(words.lower(), known, n=1, cutoff=GUESS_CUTOFF)
    return found[0] if found else ""


@router.text(pattern=r"^(1[0-5]|[1-9])$")
async def pick_from_help(ctx: Context) -> Reply:
    """A bare number outside any dialog picks that entry of the (numbered) help list."""
    if ctx.dialog.is_expired:  # the number answered a dialog that timed out meanwhile
        await ctx.dialog.finish()
        return ctx.reply("welcome/expired.j2")
    raise TapInstead(list(entries())[int(ctx.words) - 1])


@router.message("image", "voice", "video", "shortvideo", "link", "file", "*")
async def explain_media(ctx: Context) -> Reply:
    """A picture, video or link on its own: say what the account understands."""
    return ctx.reply("welcome/media.j2", msg_type=ctx.incoming.msg_type)


@router.event("*")
async def ignore_event(ctx: Context) -> Reply:
    """Events with no service (a VIEW tap, a receipt nobody awaits) get `success`."""
    return Reply()
