"""中心概况: the main hall's hours, whether it is open now, transport, zones, units, services."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from bot.dispatcher import Context, Reply, Router, normalize
from bot.errors import CitizenError
from bot.protocol import MAX_REPLY_TEXT_BYTES
from config.menu import entries, words_of
from models.hall import Hall, cached_main_hall
from models.queue import kept_openings

router = Router("hall_info")

# Typed words that open one part of the hall's page; the menu's words pick a part too.
SECTION_WORDS: dict[str, tuple[str, ...]] = {
    "hours": ("开放时间", "办公时间", "几点开门", "上班时间", "几点下班", "营业时间"),
    "transport": ("地址", "怎么去", "停车", "交通", "交通路线", "公交", "怎么走"),
    "zones": ("功能分区", "功能区", "楼层分布"),
    "units": ("进驻部门", "进驻单位", "有哪些部门"),
    "conveniences": ("便民服务", "便民设施"),
}
_EXTRA_WORDS = tuple(
    word for words in SECTION_WORDS.values() for word in words if word not in words_of("HALL_INFO")
)


def menu_words_except(key: str) -> set[str]:
    """Return the menu words of every entry but `key`, as the dispatcher compares them."""
    return {normalize(w) for k, e in entries().items() if k != key for w in e.words}


def claim_pattern(words: Iterable[str], reserved: Iterable[str]) -> str:
    """Return a regex for text that holds one of `words` and none of the `reserved` words.

    A word of ours inside a sentence that also names another service's menu word ("取号
    便民服务") is that service's request: the dispatcher's longest-keyword rule would give it
    to us, this pattern does not.
    """
    avoid = "|".join(re.escape(w) for w in sorted(reserved, key=len, reverse=True))
    # Typed words may have spaces or marks inside a word ("身份 证").
    spread = (r"[\W_]*".join(map(re.escape, w)) for w in sorted(words, key=len, reverse=True))
    return rf"^(?!.*(?:{avoid})).*(?:{'|'.join(spread)})"


class HallUnavailable(CitizenError):
    """No hall of the asked kind is in the database (the seed was not loaded)."""

    template = "hall_info/unavailable.j2"


@dataclass(frozen=True, slots=True)
class OpenStatus:
    """Whether a hall is open at a local moment, and when it next opens if not."""

    is_open: bool
    is_all_day: bool
    is_shut_today: bool = False
    closes: str = ""
    next_open: str = ""
    # 0 today, 1 tomorrow, ...; None when no opening is known in the coming week
    days_ahead: int | None = None
    next_weekday: int = 0
    next_date: date | None = None


def clock(value: time) -> str:
    """Show a time as the hall's signs do: 9:00, 17:30, 24:00."""
    if value == time.max:
        return "24:00"
    return f"{value.hour}:{value.minute:02d}"


# How far ahead the next opening is looked for: past the longest holiday (National Day, 8 days).
LOOK_AHEAD_DAYS = 15


async def hall_status(hall: Hall, local: datetime) -> OpenStatus:
    """Return whether `hall` is open at `local` and when it opens next, by its calendar.

    Holidays, make-up days and closures count, as they do for 取号 (the openings are kept a
    short while, models/queue.py).
    """
    days = [local.date() + timedelta(days=n) for n in range(LOOK_AHEAD_DAYS)]
    openings = await kept_openings(hall, days)
    return opening_status(hall, local, {day: o.span for day, o in openings.items()})


def opening_status(
    hall: Hall, local: datetime, spans: Mapping[date, tuple[time, time] | None] | None = None
) -> OpenStatus:
    """Return whether `hall` is open at `local` (hall's zone) and, if not, when it opens next.

    `spans` gives the day's hours by date (holidays and closures applied); without it the
    weekly hours are read.
    """

    def span_on(at: datetime) -> tuple[time, time] | None:
        if spans is not None and at.date() in spans:
            return spans[at.date()]
        return hall.opening_of(at)

    span = span_on(local)
    if span is not None and span == (time(0, 0), time.max):
        return OpenStatus(is_open=True, is_all_day=True, closes=clock(span[1]))
    if span is not None and span[0] <= local.time() < span[1]:
        return OpenStatus(is_open=True, is_all_day=False, closes=clock(span[1]))
    is_shut_today = span is None
    for days_ahead in range(LOOK_AHEAD_DAYS):
        day = local + timedelta(days=days_ahead)
        span = span_on(day)
        if span is None or (days_ahead == 0 and local.time() >= span[0]):
            continue
        return OpenStatus(
            is_open=False,
            is_all_day=False,
            is_shut_today=is_shut_today,
            next_open=clock(span[0]),
            days_ahead=days_ahead,
            next_weekday=day.isoweekday(),
            next_date=day.date(),
        )
    return OpenStatus(is_open=False, is_all_day=False, is_shut_today=is_shut_today)


async def main_hall() -> Hall:
    """Return the main hall, or refuse politely when none is configured."""
    hall = await cached_main_hall()
    if hall is None:
        raise HallUnavailable("no main hall in the database")
    return hall


def reply_within(
    ctx: Context, template: str, name: str, items: Sequence[Any], **values: Any
) -> Reply:
    """Render with as many of `items` as fit in one reply; `hidden` counts those left out."""
    text = ""
    for shown in range(len(items), -1, -1):
        text = ctx.render(template, **{name: items[:shown]}, hidden=len(items) - shown, **values)
        if len(text.encode("utf-8")) <= MAX_REPLY_TEXT_BYTES:
            break
    return Reply(text)


def section_of(words: str) -> str:
    """Return the part of the hall's page that typed words ask for; the overview by default."""
    found = [(len(w), section) for section, ws in SECTION_WORDS.items() for w in ws if w in words]
    return max(found)[1] if found else "overview"


@router.menu("HALL_INFO")
@router.text(
    *words_of("HALL_INFO"), pattern=claim_pattern(_EXTRA_WORDS, menu_words_except("HALL_INFO"))
)
async def show_hall(ctx: Context) -> Reply:
    """Show the overview, or the part the citizen asked for; each names the other parts."""
    hall = await main_hall()
    section = section_of(ctx.words) if ctx.words else "overview"
    status = await hall_status(hall, ctx.services.local_now())
    details: dict[str, Any] = hall.details or {}
    if section in ("zones", "units", "conveniences"):
        items = [str(item) for item in details.get(section, [])]
        return reply_within(ctx, f"hall_info/{section}.j2", "items", items, hall=hall)
    return ctx.reply(f"hall_info/{section}.j2", hall=hall, status=status)
