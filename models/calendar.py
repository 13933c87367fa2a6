"""Opening days: statutory holidays and make-up working days, each hall's hours, closures."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from pathlib import Path

import chinese_calendar
from tortoise import fields
from tortoise.expressions import Q
from tortoise.models import Model

from config.settings import CONFIG_DIR
from models.hall import Hall

CLOSURES_FILE = CONFIG_DIR / "closures.toml"
EVERY_HALL = "*"
# A make-up working day keeps the hours of the first weekday the hall opens on.
WORKING_WEEKDAYS = (1, 2, 3, 4, 5)
DAY_KINDS = ("workday", "weekend", "holiday", "makeup", "unknown")


class Closure(Model):
    """A day a hall (or every hall, "*") is shut, added by an administrator."""

    id = fields.IntField(primary_key=True)
    hall_code = fields.CharField(max_length=32, default=EVERY_HALL)
    day = fields.DateField(db_index=True)
    reason = fields.CharField(max_length=100, default="")
    created_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hall_closure"
        unique_together = (("hall_code", "day"),)


@dataclass(frozen=True, slots=True)
class DayKind:
    """What the national calendar says of a day; `holiday` names the festival, in Chinese."""

    kind: str
    holiday: str = ""


@lru_cache(maxsize=4096)  # the calendar is fixed: chinese_calendar is slow to ask
def day_kind(day: date) -> DayKind:
    """Classify a day by the State Council's calendar; "unknown" beyond the years it covers."""
    try:
        is_off, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return DayKind("unknown")
    if name is None:
        return DayKind("weekend" if is_off else "workday")
    return DayKind("holiday" if is_off else "makeup", _chinese(name))


def _chinese(name: str) -> str:
    for holiday in chinese_calendar.Holiday:
        if holiday.value == name:
            return str(holiday.chinese)
    return name


@dataclass(frozen=True, slots=True)
class Opening:
    """A hall on one local day: its hours, or why it is shut (`closure` None: no closure)."""

    day: date
    kind: DayKind
    span: tuple[time, time] | None
    closure: str | None = None

    @property
    def is_open(self) -> bool:
        return self.span is not None


def hours_on(hall: Hall, day: date, kind: DayKind) -> tuple[time, time] | None:
    """Return the hall's hours on a day of this kind, before any closure."""
    if kind.kind == "holiday":
        return None
    if kind.kind != "makeup":
        return hall.opening_of(datetime.combine(day, time()))
    for weekday in WORKING_WEEKDAYS:
        stand_in = day + timedelta(days=weekday - day.isoweekday())
        span = hall.opening_of(datetime.combine(stand_in, time()))
        if span is not None:
            return span
    return None


@dataclass(frozen=True, slots=True)
class ConfiguredClosure:
    hall_code: str
    first: date
    last: date
    reason: str


def load_closures(path: Path = CLOSURES_FILE) -> tuple[ConfiguredClosure, ...]:
    """Read config/closures.toml: each entry has a hall (or "*"), a day or from/to, a reason."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    found = []
    for item in data.get("closures", []):
        first = item.get("day", item.get("from"))
        last = item.get("day", item.get("to", first))
        if not isinstance(first, date) or not isinstance(last, date) or last < first:
            raise ValueError(f"{path.name}: each closure needs a day, or from and to dates")
        hall = str(item.get("hall", EVERY_HALL))
        found.append(ConfiguredClosure(hall, first, last, str(item.get("reason", ""))))
    return tuple(found)


@cache
def configured_closures() -> tuple[ConfiguredClosure, ...]:
    """Return the closures of config/closures.toml, read once per process."""
    return load_closures()


async def closures_between(hall_code: str, first: date, last: date) -> dict[date, str]:
    """Return the days from `first` to `last` on which the hall is shut, with the reason."""
    shut: dict[date, str] = {}
    for item in configured_closures():
        if item.hall_code not in (EVERY_HALL, hall_code):
            continue
        day = max(item.first, first)
        while day <= min(item.last, last):
            shut.setdefault(day, item.reason)
            day += timedelta(days=1)
    rows = await Closure.filter(
        Q(hall_code=hall_code) | Q(hall_code=EVERY_HALL), day__gte=first, day__lte=last
    ).values_list("day", "reason")
    for day, reason in rows:
        shut.setdefault(day, reason)
    return shut


async def openings(hall: Hall, days: Iterable[date]) -> dict[date, Opening]:
    """Return the hall's opening on each day: holidays, make-up days and closures applied."""
    wanted = sorted(set(days))
    if not wanted:
        return {}
    shut = await closures_between(hall.code, wanted[0], wanted[-1])
    found = {}
    for day in wanted:
        kind = day_kind(day)
        if day in shut:
            found[day] = Opening(day, kind, None, closure=shut[day])
        else:
            found[day] = Opening(day, kind, hours_on(hall, day, kind))
    return found


async def opening_on(hall: Hall, day: date) -> Opening:
    """Return the hall's opening on one local day."""
    return (await openings(hall, [day]))[day]
