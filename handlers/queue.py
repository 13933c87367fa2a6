"""提前取号 and 排队进度: take a number remotely, follow it, cancel it, re-queue once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.dispatcher import Context, PassOn, Reply, Router, is_number
from config.menu import words_of
from models import queue_flow
from models.hall import Category, Hall
from models.queue import Ticket, Window, calling_halls, check_open_for_remote
from models.queue_rules import (
    HallClosed,
    HallClosing,
    QueueError,
    TicketNotFound,
    WrongState,
    queue_rules,
)
from models.queue_wait import estimate, tickets_of

log = logging.getLogger(__name__)
router = Router("queue")

CHOOSE_STATE = "queue.choose"
_NUMBER = r"([a-z]{1,2}\d{3,4})"


@dataclass(frozen=True, slots=True)
class Place:
    """A hall and a category a citizen can take a number for."""

    hall: Hall
    category: Category


async def places() -> list[Place]:
    """Return every hall and category that calls numbers, in the order the menu lists them."""
    found = []
    for hall in await calling_halls():
        for category in sorted(hall.categories, key=lambda c: (c.sort, c.id)):
            found.append(Place(hall, category))
    return found


@router.menu("QUEUE_TAKE")
@router.text(*words_of("QUEUE_TAKE"))
async def choose_place(ctx: Context) -> Reply:
    """List the halls and categories as numbers; a category named in the words narrows it."""
    options = await places()
    named = [p for p in options if p.category.name in ctx.words]
    if len(named) == 1:
        return await _take(ctx, named[0])
    return await _list(ctx, named or options)


async def _list(ctx: Context, options: list[Place]) -> Reply:
    """Open (or narrow) the dialog on `options` and show them numbered under their halls."""
    await _refuse_when_none_takes(ctx, options)
    await ctx.dialog.start(CHOOSE_STATE, options=[[p.hall.id, p.category.id] for p in options])
    at = ctx.services.local_now()
    groups: dict[int, dict[str, Any]] = {}
    for index, place in enumerate(options, 1):
        group = groups.setdefault(
            place.hall.id,
            {"hall": place.hall.name, "is_open": place.hall.is_open_at(at), "items": []},
        )
        group["items"].append({"index": index, "name": place.category.name})
    return ctx.reply("queue/choose.j2", groups=list(groups.values()))


async def _refuse_when_none_takes(ctx: Context, options: list[Place]) -> None:
    """Refuse at once, saying when numbers can be taken, if no hall listed takes one now."""
    at = ctx.services.local_now()
    rules = queue_rules()
    halls = {p.hall.id: p.hall for p in options}
    # The main hall's hours are the ones to tell, when it is among them.
    ordered = sorted(halls.values(), key=lambda h: h.kind != "main")
    refusals: list[QueueError] = []
    for hall in ordered:
        try:
            await check_open_for_remote(hall, at, rules)
        except (HallClosed, HallClosing) as refusal:
            refusals.append(refusal)
        else:
            return
    if refusals:
        raise refusals[0]


@router.dialog(CHOOSE_STATE)
async def take_chosen(ctx: Context) -> Reply:
    """The citizen replied with a number, a category's name or a hall's name from the list."""
    options = await _options(ctx)
    chosen = _chosen(ctx.words, options)
    if len(chosen) == 1:
        await ctx.dialog.finish()
        return await _take(ctx, chosen[0])
    if len(chosen) > 1:
        return await _list(ctx, chosen)
    return ctx.reply("queue/choose_again.j2", count=len(options))


async def _options(ctx: Context) -> list[Place]:
    """Return the places the open list offers, in its order."""
    pairs = [tuple(pair) for pair in ctx.dialog.data.get("options", [])]
    halls = {h.id: h for h in await Hall.filter(id__in={h for h, _ in pairs})}
    categories = {c.id: c for c in await Category.filter(id__in={c for _, c in pairs})}
    return [Place(halls[h], categories[c]) for h, c in pairs if h in halls and c in categories]


def _chosen(words: str, options: list[Place]) -> list[Place]:
    """Return the places the words pick: one when they settle it, several to ask among.

    A category several halls serve picks the main hall's; a hall's name narrows to its
    categories. Words that are none of these are no answer: they leave the dialog (PassOn).
    """
    if is_number(words):
        index = int(words)
        return [options[index - 1]] if 1 <= index <= len(options) else []
    named = [p for p in options if p.category.name in words]
    if not named and len(words) >= 2:  # a part of the name: 民生 for 民生服务
        named = [p for p in options if words in p.category.name]
    halls = [p for p in options if p.hall.name in words]
    if not halls and len(words) >= 2:  # 社区 for 社区服务中心分厅
        halls = [p for p in options if words in p.hall.name]
    if named and halls:
        named = [p for p in named if p in halls] or named
    if len(named) > 1:
        main = [p for p in named if p.hall.kind == "main"]
        return main if len(main) == 1 else named
    if named or halls:
        return named or halls
    raise PassOn


async def _take(ctx: Context, place: Place) -> Reply:
    taken = await queue_flow.take(ctx.services, ctx.openid, place.hall, place.category)
    log.debug("number taken ticket=%d ahead=%d", taken.ticket.id, taken.estimate.ahead)
    return ctx.reply(
        "queue/taken.j2",
        number=taken.ticket.number,
        hall=place.hall.name,
        category=place.category.name,
        ahead=taken.estimate.ahead,
        wait_min=taken.estimate.wait_min,
        windows=taken.estimate.windows,
        near_ahead=taken.near_ahead,
    )


@router.menu("QUEUE_STATUS")
@router.text(*words_of("QUEUE_STATUS"))
async def show_my_tickets(ctx: Context) -> Reply:
    """Show each ticket of today: people ahead, the wait, and the windows calling it."""
    tickets = await tickets_of(ctx.openid, ctx.services.today())
    rules = queue_rules()
    shown = [await _describe(ticket, rules.max_requeues) for ticket in tickets]
    return ctx.reply("queue/status.j2", tickets=shown)


async def _describe(ticket: Ticket, max_requeues: int) -> dict[str, Any]:
    hall = await Hall.get(id=ticket.hall_id)
    category = await Category.get(id=ticket.category_id)
    waits = await estimate(ticket, category.code, queue_rules())
    window = await Window.get_or_none(id=ticket.window_id) if ticket.window_id else None
    return {
        "number": ticket.number,
        "status": ticket.status,
        "hall": hall.name,
        "category": category.name,
        "ahead": waits.ahead,
        "wait_min": waits.wait_min,
        "windows": waits.windows,
        "window": window.name if window else "",
        "can_requeue": ticket.active_key is not None and ticket.requeues < max_requeues,
    }


@router.text(
    "取消排队", "取消取号", "取消排号", pattern=rf"^(?:取消|cancel)\s*{_NUMBER}$", is_command=True
)
async def cancel_ticket(ctx: Context) -> Reply:
    """Cancel the ticket named (or the only one held); those behind move up."""
    held = await _held(ctx, ("waiting", "called", "missed"))
    if len(held) != 1:
        return ctx.reply("queue/which.j2", action="取消", numbers=[t.number for t in held])
    ticket = await queue_flow.cancel(ctx.services, held[0])
    return ctx.reply("queue/cancelled.j2", number=ticket.number)


@router.text(
    "重新排队", "重排", "再排一次", pattern=rf"^(?:重新排队|重排)\s*{_NUMBER}$", is_command=True
)
async def requeue_ticket(ctx: Context) -> Reply:
    """Put a missed ticket back at the end of its queue, once."""
    held = await _held(ctx, ("missed",))
    if len(held) != 1:
        return ctx.reply("queue/which.j2", action="重新排队", numbers=[t.number for t in held])
    ticket = await queue_flow.requeue(ctx.services, held[0])
    category = await Category.get(id=ticket.category_id)
    waits = await estimate(ticket, category.code, queue_rules())
    return ctx.reply(
        "queue/requeued.j2", number=ticket.number, ahead=waits.ahead, wait_min=waits.wait_min
    )


async def _held(ctx: Context, states: tuple[str, ...]) -> list[Ticket]:
    """Return the citizen's tickets in `states`: the one whose number was typed, if any."""
    today = await tickets_of(ctx.openid, ctx.services.today())
    held = [t for t in today if t.status in states]
    number = ctx.match.group(1).upper() if ctx.match else ""
    if not number:
        return held
    named = [t for t in today if t.number == number]
    if not named:
        # Cancelled or done already: say so, not that there is no such number.
        ended = (
            await Ticket.filter(openid=ctx.openid, local_day=ctx.services.today(), number=number)
            .order_by("-id")
            .first()
        )
        if ended is None:
            raise TicketNotFound(number=number)
        raise WrongState(number=number, status=ended.status, action="")
    return [t for t in named if t.status in states] or named
