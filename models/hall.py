"""The main hall, its branches and the 24-hour area, and the six window categories."""

from __future__ import annotations

import math
from datetime import datetime, time
from typing import Any

from tortoise import fields
from tortoise.models import Model

HALL_KINDS = ("main", "branch", "self_service")


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
