"""事项查询: find an item by keywords, read its materials and steps, go on to book or queue."""

from __future__ import annotations

import logging
import re
from collections import Counter
from functools import cache
from typing import Any

from bot.dispatcher import Context, Dispatcher, Reply, Route, Router, is_number, normalize
from bot.protocol import MAX_REPLY_TEXT_BYTES
from bot.texts import echo
from config.menu import entries, words_of
from models import catalogue
from models.catalogue import CatalogueItem
from models.hall import Category

log = logging.getLogger(__name__)
router = Router("guide")

STATE = "guide.browse"
PAGE_SIZE = 5
NEXT_WORDS = frozenset({"下一页", "下页", "更多", "继续", "next", "more"})
PREVIOUS_WORDS = frozenset({"上一页", "上页", "back", "previous"})
LIST_WORDS = frozenset({"列表", "相关事项", "查看列表", "结果", "list"})
# The services an item leads straight to: the category of the item shown is added to the words.
ONWARD_KEYS = ("BOOKING", "QUEUE_TAKE")
# Questions about an item's guide, typed anywhere: "办执照要什么材料", "护照多少钱".
_GUIDE_MARKS = (
    "材料|资料|流程|步骤|条件|时限|多久|几天|多长时间|收费|费用|多少钱|要带|带什么|所需"
    "|怎么办理|如何办理|怎样办理|办理指南|在哪办|哪里办|去哪办"
)


def other_words() -> set[str]:
    """Return the menu words of every service but this one, as the dispatcher compares them."""
    return {
        normalize(w) for e in entries().values() if e.service != router.service for w in e.words
    }


def question_pattern() -> str:
    """Return a regex for a guide question that names an item and no other service's word."""
    avoid = "|".join(re.escape(w) for w in sorted(other_words(), key=len, reverse=True))
    names = catalogue.alias_words(catalogue.load_items())
    # Typed words may have spaces or marks inside a word ("营业 执照").
    spread = "|".join(r"[\W_]*".join(map(re.escape, name)) for name in names)
    return rf"^(?!.*(?:{avoid}))(?=.*(?:{_GUIDE_MARKS})).*(?:{spread})"


def query_of(words: str) -> str:
    """Return what is left of typed words once the guide's own menu words are taken out."""
    for word in sorted(words_of("GUIDE_SEARCH"), key=len, reverse=True):
        words = words.replace(normalize(word), " ")
    return normalize(words)


# Entry points.


@router.menu("GUIDE_SEARCH")
async def open_guide(ctx: Context) -> Reply:
    """Ask for keywords, with the six categories to browse by number."""
    return await intro(ctx)


async def intro(ctx: Context) -> Reply:
    categories = await Category.all()
    counts: Counter[int] = Counter()
    for category_id in await CatalogueItem.all().values_list("category_id", flat=True):
        counts[int(category_id)] += 1  # type: ignore[call-overload]
    shown = [c for c in categories if counts.get(c.id)]
    await ctx.dialog.start(STATE, categories=[c.id for c in shown])
    listing = [{"name": c.name, "count": counts[c.id]} for c in shown]
    return ctx.reply("guide/intro.j2", categories=listing)


@router.text(*words_of("GUIDE_SEARCH"))
async def search_named(ctx: Context) -> Reply:
    """Search what comes with the guide's word (营业执照怎么办); the word alone opens the guide."""
    return await search_with_guide_word(ctx)


async def search_with_guide_word(ctx: Context) -> Reply:
    query = query_of(ctx.words)
    if not catalogue.squash(query):
        return await intro(ctx)
    onward = onward_route(query)
    if onward is not None:
        return await hand_on(ctx, onward, query)
    return await search(ctx, query)


@router.text(pattern=question_pattern())
async def answer_question(ctx: Context) -> Reply:
    """A question about an item's materials, steps, time or fee, typed anywhere."""
    return await search(ctx, ctx.words)


@router.dialog(STATE)
async def browse(ctx: Context) -> Reply:
    """In the guide: a number picks, 下一页 pages, 预约 / 取号 go on, anything else searches."""
    words = ctx.words
    number = words.removeprefix("第").removesuffix("个").removesuffix("项")
    if is_number(number):
        return await pick(ctx, int(number))
    if words in NEXT_WORDS or words in PREVIOUS_WORDS or words in LIST_WORDS:
        return await turn_page(ctx, words)
    if any(normalize(w) in words for w in words_of("GUIDE_SEARCH")):
        return await search_with_guide_word(ctx)
    onward = onward_route(words)
    if onward is not None:
        return await hand_on(ctx, onward, words)
    return await search(ctx, words)


async def turn_page(ctx: Context, words: str) -> Reply:
    """下一页 / 上一页 move through the list; 列表 goes back to its first page."""
    data = ctx.dialog.data
    if not data.get("ids"):
        return ctx.reply("guide/no_list.j2")
    if words in LIST_WORDS:
        return await show_page(ctx, 0)
    step = 1 if words in NEXT_WORDS else -1
    return await show_page(ctx, int(data.get("page", 0)) + step)


# Searching and listing.


async def search(ctx: Context, words: str) -> Reply:
    """Show the item the words plainly name, or a page of the items they may mean."""
    found = await catalogue.search(words)
    log.debug("guide searched hits=%d clear=%s", len(found.hits), found.clear is not None)
    # Shown back in replies: shortened and defused here, so that every language's text is safe.
    asked = echo(words)
    if not found.hits:
        await ctx.dialog.start(STATE, ids=[], query=asked)
        return ctx.reply("guide/no_match.j2", asked=asked)
    await ctx.dialog.start(STATE, ids=found.ids, page=0, query=asked)
    if found.clear is not None:
        return await show_item(ctx, found.clear.id)
    return await show_page(ctx, 0)


async def show_page(ctx: Context, page: int) -> Reply:
    """Show one page of the current list, numbered across pages."""
    ids: list[int] = list(ctx.dialog.data.get("ids") or [])
    pages = max(1, -(-len(ids) // PAGE_SIZE))
    if page >= pages or page < 0:
        return ctx.reply("guide/no_more.j2", pages=pages, is_first=page < 0)
    start = page * PAGE_SIZE
    items = await _items(ids[start : start + PAGE_SIZE])
    await ctx.dialog.go(STATE, page=page, item=None, category=None)
    rows = [{"index": start + i, "item": item} for i, item in enumerate(items, 1)]
    heading = ctx.dialog.data.get("heading") or ""
    return ctx.reply(
        "guide/results.j2",
        rows=rows,
        total=len(ids),
        page=page + 1,
        pages=pages,
        asked=ctx.dialog.data.get("query", ""),
        heading=heading,
    )


async def _items(ids: list[int]) -> list[CatalogueItem]:
    found = {item.id: item for item in await CatalogueItem.filter(id__in=ids)}
    return [found[i] for i in ids if i in found]


async def pick(ctx: Context, number: int) -> Reply:
    """Open the item with this number in the list, or the category with it on the first screen."""
    data = ctx.dialog.data
    ids: list[int] = list(data.get("ids") or [])
    if not ids and data.get("categories"):
        categories: list[int] = list(data["categories"])
        if not 1 <= number <= len(categories):
            return ctx.reply("guide/bad_choice.j2", count=len(categories), is_category=True)
        return await browse_category(ctx, categories[number - 1])
    if not 1 <= number <= len(ids):
        return ctx.reply("guide/bad_choice.j2", count=len(ids), is_category=False)
    return await show_item(ctx, ids[number - 1])


async def browse_category(ctx: Context, category_id: int) -> Reply:
    """List a category's items, a page at a time."""
    category = await Category.get_or_none(id=category_id)
    ids = await catalogue.in_category(category_id)
    if category is None or not ids:
        return await intro(ctx)
    await ctx.dialog.start(STATE, ids=ids, page=0, query="", heading=category.name)
    return await show_page(ctx, 0)


async def show_item(ctx: Context, item_id: int) -> Reply:
    """Show an item: window, conditions, materials, steps, time limits, fee, online and 24h."""
    item = await CatalogueItem.get_or_none(id=item_id)
    if item is None:
        # The catalogue was reloaded since the list was shown.
        await ctx.dialog.start(STATE, ids=[])
        return ctx.reply("guide/gone.j2")
    category = await Category.get(id=item.category_id)
    ids: list[int] = list(ctx.dialog.data.get("ids") or [])
    others = len([i for i in ids if i != item.id])
    await ctx.dialog.go(STATE, item=item.id, category=category.name)
    values: dict[str, Any] = {"item": item, "category": category.name, "others": others}
    log.debug("guide item shown code=%s", item.code)
    return Reply(_detail_within(ctx, values, list(item.materials or [])))


def _detail_within(ctx: Context, values: dict[str, Any], materials: list[str]) -> str:
    """Render an item whole if it fits one reply; else steps on one line, then fewer materials.

    The catalogue's own items all fit whole (a test holds them to it); this keeps an
    administrator's long entry from being cut off mid-line by the reply limit.
    """
    text = ""
    for is_short, shown in [(False, len(materials))] + [
        (True, n) for n in range(len(materials), 0, -1)
    ]:
        text = ctx.render(
            "guide/detail.j2",
            **values,
            materials=materials[:shown],
            hidden=len(materials) - shown,
            is_short=is_short,
        )
        if len(text.encode("utf-8")) <= MAX_REPLY_TEXT_BYTES:
            break
    return text


# Going on to another service: 预约 / 取号 for the item shown, or any other menu word.


@cache
def _dispatcher() -> Dispatcher:
    """Return the routes of every service, to find whose words a citizen typed in the guide."""
    from handlers import all_routers

    return Dispatcher(all_routers())


def onward_route(words: str) -> Route | None:
    """Return another service's route when the words are its menu word, or start with 预约 / 取号.

    Only whole menu words leave the guide: a search like "公司地址变更" holds 中心概况's
    "地址" and is still a search.
    """
    words = normalize(words)
    dispatcher = _dispatcher()
    if words in other_words():
        route = dispatcher.exact.get(words)
    elif is_onward(words):
        route = next((r for w, r in dispatcher.contains if w in words), None)
    else:
        return None
    return route if route is not None and route.service != router.service else None


def is_onward(words: str) -> bool:
    """Tell whether typed words ask to book or take a number (预约..., 取号...)."""
    return any(words.startswith(normalize(w)) for w in words_of(*ONWARD_KEYS))


async def hand_on(ctx: Context, route: Route, words: str) -> Reply:
    """Leave the guide and answer as the other service would; 预约 / 取号 keep the category."""
    category = ctx.dialog.data.get("category") if ctx.dialog.state == STATE else None
    await ctx.dialog.finish()
    words = normalize(words)
    if category and is_onward(words) and category not in words:
        # Booking and queue narrow their lists to a category named in the words.
        words = f"{words} {category}"
    ctx.words, ctx.service = words, route.service
    log.debug("guide hands on service=%s", route.service)
    reply = await route.handler(ctx)
    return reply if reply is not None else Reply()
