"""The notices the account sends (config/notices.toml): templates, fields, and value cutting."""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from config.settings import CONFIG_DIR

BOOK_FILE = CONFIG_DIR / "notices.toml"
CHANNELS = ("template", "subscribe")
ELLIPSIS = "…"

# Template fields are one line; the platform shows emoji as boxes.
_SPACES = re.compile(r"\s+")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f\u200d\U000e0000-\U000e007f]")
# A cut may fall before these (a new part starts there) or after the closing ones.
_BREAK_BEFORE = frozenset(" ，,、；;：:/|·-—(（[【《“\"'")
_BREAK_AFTER = frozenset(")）]】》”。！？!?")
_TRIM = " ，,、；;：:/|·-—"


class NoticeBookError(ValueError):
    """config/notices.toml is wrong; the message names the kind and the field."""


DEFAULT_BACKOFF_S = (5.0, 20.0, 60.0, 180.0)


@dataclass(frozen=True, slots=True)
class Delivery:
    """How hard the worker tries: attempts, waits between them, and when to give up."""

    max_attempts: int = 5
    backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S
    max_age_s: float = 3600.0
    max_chars: int = 20

    def backoff_after(self, attempt: int) -> float:
        """Return the wait after the `attempt`-th failed attempt (1-based)."""
        return self.backoff_s[min(attempt, len(self.backoff_s)) - 1]


@dataclass(frozen=True, slots=True)
class NoticeKind:
    """One kind of notice: its template, its fields filled from our values, and its link."""

    name: str
    template_id: str
    fields: Mapping[str, str]
    url: str = ""
    channel: str = "template"
    max_age_s: float = 3600.0
    max_chars: int = 20
    needs: frozenset[str] = field(default_factory=frozenset)

    def check_values(self, values: Mapping[str, str]) -> None:
        """Raise ValueError naming the values this kind needs that `values` lacks."""
        missing = sorted(self.needs - set(values))
        if missing:
            raise ValueError(f"notice {self.name} needs values {', '.join(missing)}")

    def render(
        self, values: Mapping[str, str], texts: Any = None, language: str = "zh"
    ) -> dict[str, Any]:
        """Fill the fields and the link from `values`; raise ValueError naming what is missing."""
        self.check_values(values)
        shown = {str(k): str(v) for k, v in values.items()}
        filled = {}
        for name, source in self.fields.items():
            if source.endswith(".j2"):
                if texts is None:
                    raise ValueError(f"notice {self.name}.{name} needs texts to render {source}")
                text = texts.render(source, language, **shown)
            else:
                text = source.format_map(shown)
            filled[name] = fit(text, self.max_chars)
        link = self.url.format_map(shown) if self.url else ""
        return {"channel": self.channel, "fields": filled, "link": link}


@dataclass(frozen=True, slots=True)
class NoticeBook:
    """Every kind of notice the account sends, and how the worker delivers them."""

    kinds: Mapping[str, NoticeKind]
    delivery: Delivery = Delivery()

    def kind(self, name: str) -> NoticeKind:
        try:
            return self.kinds[name]
        except KeyError:
            raise ValueError(f"unknown notice kind {name!r}; see {BOOK_FILE.name}") from None


def load_notice_book(path: Path = BOOK_FILE) -> NoticeBook:
    """Read and check a notices file."""
    return parse_notice_book(tomllib.loads(path.read_text(encoding="utf-8")))


def parse_notice_book(data: Mapping[str, Any]) -> NoticeBook:
    """Build a NoticeBook from parsed TOML, raising NoticeBookError for the first problem."""
    raw = dict(data.get("delivery", {}))
    try:
        delivery = Delivery(
            max_attempts=int(raw.get("max_attempts", 5)),
            backoff_s=tuple(float(s) for s in raw.get("backoff_s", DEFAULT_BACKOFF_S)),
            max_age_s=float(raw.get("max_age_s", 3600)),
            max_chars=int(raw.get("max_chars", 20)),
        )
    except (TypeError, ValueError) as exc:
        raise NoticeBookError(f"[delivery]: {exc}") from None
    if delivery.max_attempts < 1 or not delivery.backoff_s or delivery.max_chars < 2:
        raise NoticeBookError("[delivery]: max_attempts >= 1, backoff_s not empty, max_chars >= 2")
    kinds = {name: _parse_kind(name, item, delivery) for name, item in data["kinds"].items()}
    return NoticeBook(kinds=kinds, delivery=delivery)


def _parse_kind(name: str, item: Mapping[str, Any], delivery: Delivery) -> NoticeKind:
    where = f"[kinds.{name}]"
    template_id = item.get("template_id")
    fields_ = item.get("fields")
    if not isinstance(template_id, str) or not template_id:
        raise NoticeBookError(f"{where}: template_id is missing")
    if not isinstance(fields_, dict) or not fields_:
        raise NoticeBookError(f"{where}: fields are missing")
    channel = item.get("channel", "template")
    if channel not in CHANNELS:
        raise NoticeBookError(f"{where}: channel must be one of {', '.join(CHANNELS)}")
    url = str(item.get("url", ""))
    needs: set[str] = set()
    for key, source in [*fields_.items(), ("url", url)]:
        if not isinstance(source, str):
            raise NoticeBookError(f"{where}: {key} must be a string")
        try:
            needs.update(n for _, n, _, _ in string.Formatter().parse(source) if n)
        except ValueError as exc:
            raise NoticeBookError(f"{where}: {key}: {exc}") from None
    if any(not n.isidentifier() for n in needs):
        raise NoticeBookError(f"{where}: placeholders must be plain names, got {sorted(needs)}")
    return NoticeKind(
        name=name,
        template_id=template_id,
        fields=dict(fields_),
        url=url,
        channel=channel,
        max_age_s=float(item.get("max_age_s", delivery.max_age_s)),
        max_chars=int(item.get("max_chars", delivery.max_chars)),
        needs=frozenset(needs),
    )


@cache
def notice_book() -> NoticeBook:
    """Return the notices of config/notices.toml, read once per process."""
    return load_notice_book()


def fit(value: str, limit: int = 20) -> str:
    """Make a value one clean line of at most `limit` characters, cut at a break with "…".

    The cut falls at the last break (before a space or separator, after a closing bracket)
    that keeps at least half the room; text with none, such as Chinese, is cut at the limit.
    """
    value = _SPACES.sub(" ", _EMOJI.sub("", value)).strip()
    if len(value) <= limit:
        return value
    head = value[: limit - 1]
    for i in range(len(head), limit // 2 - 1, -1):
        if value[i] in _BREAK_BEFORE or head[i - 1] in _BREAK_AFTER:
            kept = head[:i].rstrip(_TRIM)
            if len(kept) >= limit // 2:
                return kept + ELLIPSIS
    return (head.rstrip(_TRIM) or head) + ELLIPSIS
