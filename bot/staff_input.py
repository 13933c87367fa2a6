"""Checks of what staff send (path, query, JSON body, import row) before it reaches a table."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, tzinfo
from typing import Any, TypeVar

from aiohttp import web
from tortoise import fields
from tortoise.models import Model

from bot.errors import BadInput

# Ids are INTEGER columns: PostgreSQL refuses a larger number outright (SQLite would not).
DB_ID_MAX = 2**31 - 1
_ID_DIGITS = re.compile(r"[0-9]{1,10}")
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,10}")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
# Days and times are kept to these years: beyond them a value is a typing mistake, and years
# near 1 or 9999 overflow when moved between time zones.
YEAR_MIN, YEAR_MAX = 2000, 2099
# The longest ISO 8601 time worth reading: 2026-03-07T15:00:00.000000+08:00 and a margin.
_TIME_MAX_CHARS = 40
_Parsed = TypeVar("_Parsed", date, datetime)


def column_chars(model: type[Model], field: str) -> int:
    """Return how many characters a column holds: a longer value cannot match or be stored."""
    column = model._meta.fields_map[field]
    if not isinstance(column, fields.CharField):
        raise TypeError(f"{model.__name__}.{field} is no CharField")
    return column.max_length


def as_id(value: Any) -> int | None:
    """Return `value` as a row id, from a JSON number or ASCII digits; None if none can be one."""
    if isinstance(value, str):
        if not _ID_DIGITS.fullmatch(value):
            return None
        value = int(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if 1 <= value <= DB_ID_MAX else None


def path_id(request: web.Request, name: str, thing: str) -> int:
    """Return the id in the path; one no row can have is answered as one no row has: 404."""
    found = as_id(request.match_info[name])
    if found is None:
        raise BadInput(f"{thing}_not_found", status=404)
    return found


def path_code(
    request: web.Request,
    name: str,
    thing: str,
    *,
    max_chars: int,
    clean: Callable[[str], str] = str.strip,
) -> str:
    """Return the code in the path, cleaned; one longer than its column is not found: 404."""
    code = clean(request.match_info[name])
    if not code or len(code) > max_chars:
        raise BadInput(f"{thing}_not_found", status=404)
    return code


def id_list(value: Any, field: str, *, max_items: int) -> list[int]:
    """Return a JSON list of row ids (numbers, not strings), at most `max_items` of them."""
    if not isinstance(value, list) or not 1 <= len(value) <= max_items:
        raise BadInput(f"{field}_invalid", f"{field} must be a list of 1 to {max_items} ids")
    ids = [None if isinstance(item, str) else as_id(item) for item in value]
    if None in ids:
        raise BadInput(f"{field}_invalid", f"{field} must be whole numbers from 1 to {DB_ID_MAX}")
    return [i for i in ids if i is not None]


def text(data: Mapping[str, Any], field: str, *, max_chars: int, required: bool = False) -> str:
    """Return the text of `field`, stripped: a string of at most `max_chars`; absent is ""."""
    value = data.get(field)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadInput(f"{field}_invalid", f"{field} must be a string")
    value = value.strip()
    if required and not value:
        raise BadInput(f"{field}_invalid", f"{field} is required")
    if len(value) > max_chars:
        raise BadInput(f"{field}_invalid", f"{field} must be at most {max_chars} characters")
    return value


def whole_number(value: Any, field: str, *, low: int, high: int) -> int:
    """Return a JSON whole number from `low` to `high` (true and false are no numbers)."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadInput(f"{field}_invalid", f"{field} must be a whole number from {low} to {high}")
    return value


def query_number(
    request: web.Request, field: str, default: int, *, low: int = 1, high: int = DB_ID_MAX
) -> int:
    """Return the whole number `?field=` gives, `default` without one."""
    raw = request.query.get(field)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw.strip()):
        raise BadInput(f"{field}_invalid", f"{field} must be a whole number from {low} to {high}")
    return whole_number(int(raw), field, low=low, high=high)


def day(value: Any, field: str, default: date) -> date:
    """Return the day YYYY-MM-DD of a query or body value, `default` when absent or empty."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and len(value.strip()) != len("2026-03-07"):
        value = None  # another ISO form (20260307, 2026-W10-6): not what the API takes
    return _iso(value, field, date.fromisoformat, "must be a date YYYY-MM-DD")


def month(value: Any, field: str) -> str:
    """Return a month YYYY-MM as given."""
    found = _MONTH.fullmatch(value) if isinstance(value, str) else None
    if not found or not 1 <= int(found.group(2)) <= 12:
        raise BadInput(f"{field}_invalid", f"{field} must be YYYY-MM")
    _check_year(int(found.group(1)), field)
    return str(value)


def moment(value: Any, field: str, tz: tzinfo) -> datetime:
    """Return an ISO 8601 time as an aware datetime; one without an offset is in `tz`."""
    at = _iso(value, field, datetime.fromisoformat, "is not an ISO 8601 time")
    return at if at.tzinfo is not None else at.replace(tzinfo=tz)


def _iso(value: Any, field: str, parse: Callable[[str], _Parsed], what: str) -> _Parsed:
    """Parse an ISO 8601 string of bounded length, in the API's years, or refuse it."""
    refusal = BadInput(f"{field}_invalid", f"{field} {what}")
    if not isinstance(value, str) or len(value.strip()) > _TIME_MAX_CHARS:
        raise refusal
    try:
        parsed = parse(value.strip())
    except ValueError:
        raise refusal from None
    _check_year(parsed.year, field)
    return parsed


def _check_year(year: int, field: str) -> None:
    # Far years overflow the database's timestamps and mean a typing slip anyway.
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise BadInput(f"{field}_invalid", f"{field} must be in the years {YEAR_MIN}-{YEAR_MAX}")


def refusal(exc: BadInput) -> web.Response:
    """Answer a refused input as JSON: {"error": code, "detail": why}."""
    body = {"error": exc.error, "detail": exc.detail} if exc.detail else {"error": exc.error}
    return web.json_response(body, status=exc.status)


def plain_refusal(exc: web.HTTPClientError) -> web.Response:
    """Answer an aiohttp refusal as JSON: {"error": "not_found"}, its Allow header kept."""
    error = exc.reason.lower().replace(" ", "_")
    allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return web.json_response({"error": error}, status=exc.status, headers=allow)
