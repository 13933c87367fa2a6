"""The main hall, its branches and the 24-hour area, and the six window categories."""

from __future__ import annotations

import asyncio
import math
import time as clock
from datetime import datetime, time
from typing import Any

from tortoise import fields
from tortoise.models import Model
from tortoise.signals import post_delete, post_save

HALL_KINDS = ("main", "branch", "self_service")
# Halls are configuration: they change when `db seed` runs. Each process keeps them this long
# instead of reading them on every tap, so a seed shows in every process within this time.
HALLS_TTL_S = 10.0


class Category(Model):
    """A comprehensive window category, whose prefix starts every queue number (A001)."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=32)
    prefix = fields.CharField(max_length=2)
    description = fields.TextField(default="")
    sort = fields.IntField(default=0)

    class Meta:
        table = "category"
        ordering = ("sort", "id")


class Hall(Model):
    """A place citizens go: the main hall, a branch hall, or the 24-hour self-service area."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=16, default="branch")
    address = fields.CharField(max_length=200, default="")
    phone = fields.CharField(max_length=32, default="")
    latitude = fields.FloatField(null=True)
    longitude = fields.FloatField(null=True)
    # [{"days": [1, 2, 3, 4, 5], "open": "09:00", "close": "18:00"}, ...]; ISO weekdays
    hours: Any = fields.JSONField(default=list)
    hours_text = fields.CharField(max_length=200, default="")
    summary = fields.TextField(default="")
    # Free-form facts for the hall page: zones, units, transport, conveniences, ...
    details: Any = fields.JSONField(default=dict)
    sort = fields.IntField(default=0)
    categories: fields.ManyToManyRelation[Category] = fields.ManyToManyField(
        "models.Category", related_name="halls", through="hall_category"
    )

    class Meta:
        table = "hall"
        ordering = ("sort", "id")

    def opening_of(self, local: datetime) -> tuple[time, time] | None:
        """Return today's opening and closing time at `local` (hall's zone), or None if shut."""
        weekday = local.isoweekday()
        for span in self.hours or []:
            if weekday in span.get("days", []):
                return _clock(span["open"]), _clock(span["close"])
        return None

    def is_open_at(self, local: datetime) -> bool:
        span = self.opening_of(local)
        return span is not None and span[0] <= local.time() < span[1]

    def distance_km(self, latitude: float, longitude: float) -> float | None:
        """Return the great-circle distance to a point, or None if the hall has no position."""
        if self.latitude is None or self.longitude is None:
            return None
        return haversine_km(self.latitude, self.longitude, latitude, longitude)


class _HallCache:
    """The halls as last read, shared read-only by the handlers of one process."""

    def __init__(self) -> None:
        self.halls: list[Hall] | None = None
        # Those of them that have windows: the halls that call numbers.
        self.calling: list[Hall] = []
        self.read_at = 0.0
        self.reads = 0
        self.forgotten = 0
        # The read in flight, with the count of forgets when it began.
        self._reading: tuple[int, asyncio.Future[tuple[list[Hall], list[Hall]]]] | None = None

    async def all(self) -> list[Hall]:
        return (await self._kept())[0]

    async def calling_halls(self) -> list[Hall]:
        return (await self._kept())[1]

    async def _kept(self) -> tuple[list[Hall], list[Hall]]:
        if self.halls is not None and clock.monotonic() - self.read_at <= HALLS_TTL_S:
            return self.halls, self.calling
        # One read at a time: the requests that find the copy stale together (a rush after
        # it expired) wait for the same read instead of each sending their own.
        reading = self._reading
        if (
            reading is None
            or reading[0] != self.forgotten  # a save since it began: it may bring older rows
            or reading[1].done()
            or reading[1].get_loop() is not asyncio.get_running_loop()
        ):
            reading = (self.forgotten, asyncio.ensure_future(self._read()))
            self._reading = reading
        return await asyncio.shield(reading[1])

    async def _read(self) -> tuple[list[Hall], list[Hall]]:
        forgotten = self.forgotten
        halls = await Hall.all()
        await Hall.fetch_for_list(halls, "categories")
        with_windows = set(
            await Hall.filter(windows__id__isnull=False).values_list("id", flat=True)
        )
        self.reads += 1
        for hall in halls:
            # Texts remembers renderings by it: the same copy shows the same.
            hall.memo_key = (hall.id, self.reads)
        calling = [hall for hall in halls if hall.id in with_windows]
        # A hall saved while this read was on its way: what it brought may be older.
        if forgotten == self.forgotten:
            self.halls, self.calling, self.read_at = halls, calling, clock.monotonic()
        return halls, calling

    def forget(self) -> None:
        self.halls = None
        self.forgotten += 1


_cache = _HallCache()


async def cached_halls() -> list[Hall]:
    """Return every hall in display order, categories loaded, from this process's copy when
    it is fresh. The rows are shared: read them, never change and save them.
    """
    return await _cache.all()


async def cached_calling_halls() -> list[Hall]:
    """Return the halls that have windows (they call numbers), categories loaded; shared."""
    return await _cache.calling_halls()


async def cached_main_hall() -> Hall | None:
    return next((hall for hall in await _cache.all() if hall.kind == "main"), None)


def forget_halls() -> None:
    """Drop this process's copy: the next read goes to the database."""
    _cache.forget()


@post_save(Hall)
async def _hall_saved(*_: Any) -> None:
    forget_halls()


@post_delete(Hall)
async def _hall_deleted(*_: Any) -> None:
    forget_halls()


def _clock(text: str) -> time:
    if text == "24:00":
        return time.max
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    radius_km = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius_km * math.asin(math.sqrt(a))
