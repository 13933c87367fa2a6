"""Menu entries whose service is not open yet say so, politely, with what works now."""

from __future__ import annotations

from bot.dispatcher import Context, Reply, Router
from config.menu import entries, words_of

router = Router("coming_soon")

# Entries that answer "coming soon" until their handlers module exists.
PENDING_KEYS: tuple[str, ...] = ()


@router.menu(*PENDING_KEYS)
@router.text(*words_of(*PENDING_KEYS))
async def announce_coming(ctx: Context) -> Reply:
    """Name the service the citizen asked for and say it is on its way."""
    key = ctx.incoming.event_key if ctx.incoming.event_key in PENDING_KEYS else ""
    if not key:
        key = next(k for k in PENDING_KEYS if any(w in ctx.words for w in entries()[k].words))
    return ctx.reply("coming_soon.j2", name=entries()[key].name)
