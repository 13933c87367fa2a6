"""Appointment settings from config/booking.toml, the contact checks, and the refusals."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from datetime import time
from functools import cache
from pathlib import Path
from typing import Any

from bot.errors import CitizenError
from config.settings import CONFIG_DIR

BOOKING_FILE = CONFIG_DIR / "booking.toml"
POLICIES = ("count", "points")
# The salt of ID-number digests; without it the app secret is used.
ID_SALT_ENV = "BOOKING_ID_SALT"


@dataclass(frozen=True, slots=True)
class NoShowPolicy:
    """What a no-show costs: a count that suspends, or Dongguan's points."""

    policy: str = "count"
    count_limit: int = 3
    window_days: int = 30
    suspend_days: int = 30
    points_start: int = 10
    points_max: int = 10
    points_hold: int = 1
    points_cancel: int = 2
    points_no_show: int = 5
    points_daily: int = 1

    @property
    def uses_points(self) -> bool:
        return self.policy == "points"


@dataclass(frozen=True, slots=True)
class BookingRules:
    """The hall's appointment settings from config/booking.toml."""

    slot_min: int = 30
    days_ahead: int = 7
    release_at: time | None = time(9, 0)
    cutoff_min: int = 60
    cancel_deadline_min: int = 120
    default_capacity: int = 4
    capacity: dict[str, dict[str, int]] = field(default_factory=dict)
    checkin_early_min: int = 30
    checkin_late_min: int = 15
    evening_at: time = time(20, 0)
    reminder_before_min: int = 60
    id_number_categories: tuple[str, ...] = ()
    keep_days: int = 30
    no_show: NoShowPolicy = NoShowPolicy()

    def capacity_of(self, hall_code: str, category_code: str) -> int:
        return self.capacity.get(hall_code, {}).get(category_code, self.default_capacity)

    def asks_id_number(self, category_code: str) -> bool:
        return category_code in self.id_number_categories


def _clock(text: str) -> time:
    hour, minute = str(text).split(":")
    return time(int(hour), int(minute))


def load_rules(path: Path = BOOKING_FILE) -> BookingRules:
    """Read and check a booking settings file."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    slots = data.get("slots", {})
    checkin = data.get("checkin", {})
    reminders = data.get("reminders", {})
    personal = data.get("personal", {})
    raw_policy: dict[str, Any] = dict(data.get("no_show", {}))
    numbers = {k: int(v) for k, v in raw_policy.items() if k != "policy"}
    policy = NoShowPolicy(str(raw_policy.get("policy", "count")), **numbers)
    if policy.policy not in POLICIES:
        raise ValueError(f"{path.name}: no_show.policy must be one of {', '.join(POLICIES)}")
    release = str(slots.get("release_at", "09:00"))
    rules = BookingRules(
        slot_min=int(slots.get("length_min", 30)),
        days_ahead=int(slots.get("days_ahead", 7)),
        release_at=_clock(release) if release else None,
        cutoff_min=int(slots.get("cutoff_min", 60)),
        cancel_deadline_min=int(slots.get("cancel_deadline_min", 120)),
        default_capacity=int(slots.get("default_capacity", 4)),
        capacity={
            hall: {code: int(n) for code, n in places.items()}
            for hall, places in data.get("capacity", {}).items()
        },
        checkin_early_min=int(checkin.get("early_min", 30)),
        checkin_late_min=int(checkin.get("late_min", 15)),
        evening_at=_clock(reminders.get("evening_at", "20:00")),
        reminder_before_min=int(reminders.get("before_min", 60)),
        id_number_categories=tuple(personal.get("id_number_categories", ())),
        keep_days=int(personal.get("keep_days", 30)),
        no_show=policy,
    )
    if not 5 <= rules.slot_min <= 240 or rules.days_ahead < 0:
        raise ValueError(f"{path.name}: length_min must be 5-240 and days_ahead at least 0")
    return rules


@cache
def booking_rules() -> BookingRules:
    """Return the rules from config/booking.toml, read once per process."""
    return load_rules()


# The citizen's contact: name, mobile number and, where a category asks, an ID number.

_NUMBER_RUN = re.compile(r"\+?\d[\dxX]*")
_LABELS = re.compile(r"姓名|名字|手机号码|手机号|手机|电话|身份证号码|身份证号|身份证|我叫|我是")
_NAME = re.compile(r"^[\u3400-\u9fffA-Za-z·•. ]{2,30}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10x98765432"


@dataclass(frozen=True, slots=True)
class Contact:
    """What a message gave of the contact; any part may be missing or wrong."""

    name: str = ""
    mobile: str = ""
    id_number: str = ""
    has_bad_mobile: bool = False
    has_bad_id: bool = False


def parse_contact(text: str) -> Contact:
    """Read "张三 13800138000 [ID number]" in any order, with spaces or dashes in the numbers."""
    folded = re.sub(r"(?<=\d)-(?=[\dxX])", "", unicodedata.normalize("NFKC", text))
    mobile = id_number = ""
    has_bad_mobile = has_bad_id = False
    for digits in _numbers([run.lower() for run in _NUMBER_RUN.findall(folded)]):
        if len(digits) == 13 and digits.startswith("86"):
            digits = digits[2:]
        if len(digits) == 18:
            id_number, has_bad_id = (digits, False) if is_valid_id_number(digits) else ("", True)
        elif is_valid_mobile(digits):
            mobile, has_bad_mobile = digits, False
        elif len(digits) >= 15:
            has_bad_id = not id_number
        elif len(digits) >= 5:
            has_bad_mobile = not mobile
    words = _LABELS.sub(" ", _NUMBER_RUN.sub(" ", folded))
    name = re.sub(r"\s+", " ", re.sub(r"[,，;；:：、/|_()（）]+", " ", words)).strip()
    return Contact(
        name=name if _NAME.match(name) else "",
        mobile=mobile,
        id_number=id_number,
        has_bad_mobile=has_bad_mobile,
        has_bad_id=has_bad_id,
    )


_WHOLE = (11, 13, 18)  # a mobile, a mobile after 86, an ID number


def _numbers(runs: list[str]) -> list[str]:
    """Join runs typed in groups ("138 0013 8000") into the whole numbers they make."""
    found, i = [], 0
    while i < len(runs):
        combined, j = runs[i].lstrip("+"), i
        while len(combined) not in _WHOLE and j + 1 < len(runs):
            if len(combined) + len(runs[j + 1]) > max(_WHOLE):
                break
            j += 1
            combined += runs[j]
        if len(combined) not in _WHOLE:
            combined, j = runs[i].lstrip("+"), i
        found.append(combined)
        i = j + 1
    return found


def is_valid_mobile(mobile: str) -> bool:
    """Check a mainland mobile number: 11 digits starting 13-19."""
    return bool(re.fullmatch(r"1[3-9]\d{9}", mobile))


def is_valid_id_number(id_number: str) -> bool:
    """Check an 18-character resident ID number: birth date and the GB 11643 check character."""
    value = id_number.strip().lower()
    if not re.fullmatch(r"\d{17}[\dx]", value):
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    if not (1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def id_digest(id_number: str, salt: str) -> str:
    """Return the salted digest kept in place of an ID number."""
    key = (os.environ.get(ID_SALT_ENV) or salt or "civic").encode()
    return hmac.new(key, id_number.strip().lower().encode(), hashlib.sha256).hexdigest()


# Refusals: each renders for the citizen and carries an HTTP status and a code for the staff API.


class BookingError(CitizenError):
    status = 409
    code = "conflict"


class NotBookable(BookingError):
    template = "booking/refused_place.j2"
    status = 400
    code = "not_bookable"


class DayNotOpen(BookingError):
    template = "booking/refused_day.j2"
    code = "day_not_open"


class SlotNotOffered(BookingError):
    """The slot is past the cut-off, outside the horizon, or not a slot of that day."""

    template = "booking/refused_slot.j2"
    code = "slot_not_offered"


class SlotFull(BookingError):
    template = "booking/slot_full.j2"
    code = "slot_full"


class AlreadyBooked(BookingError):
    template = "booking/refused_holding.j2"
    code = "already_booked"


class Suspended(BookingError):
    template = "booking/refused_suspended.j2"
    status = 403
    code = "suspended"


class NotEnoughPoints(BookingError):
    template = "booking/refused_points.j2"
    status = 403
    code = "not_enough_points"


class TooLateToChange(BookingError):
    template = "booking/refused_deadline.j2"
    code = "too_late_to_change"


class BookingNotFound(BookingError):
    template = "booking/not_found.j2"
    status = 404
    code = "booking_not_found"


class WrongBookingState(BookingError):
    template = "booking/wrong_state.j2"
    code = "wrong_state"
