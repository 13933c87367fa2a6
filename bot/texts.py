"""Render citizen-facing text from the jinja2 templates, in the citizen's language."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
# Values a rendering can be remembered by: immutable, equal exactly when they show the same.
_PLAIN = (str, int, float, bool, type(None), date, datetime, time)
# Remembered renderings (help texts, prompts): dropped all at once past this many.
MEMO_SIZE = 1024


class Texts:
    """A jinja2 environment for chat text: no HTML escaping, undefined names are errors."""

    def __init__(self, root: Path = TEMPLATES_DIR) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(root)),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.filters["mask_name"] = mask_name
        self.env.filters["mask_phone"] = mask_phone
        self.env.filters["echo"] = echo
        self._cache: dict[tuple[str, str], jinja2.Template] = {}
        self._memo: dict[tuple[Any, ...], str] = {}

    def template(self, name: str, language: str = DEFAULT_LANGUAGE) -> jinja2.Template:
        key = (name, language)
        found = self._cache.get(key)
        if found is None:
            try:
                found = self.env.get_template(f"{language}/{name}")
            except jinja2.TemplateNotFound:
                found = self.env.get_template(f"{DEFAULT_LANGUAGE}/{name}")
            self._cache[key] = found
        return found

    def render(self, name: str, language: str = DEFAULT_LANGUAGE, /, **context: Any) -> str:
        """Render `name` for the citizen's language, falling back to Chinese.

        A template is a function of its context alone: when every value is plain (strings,
        numbers, dates, tuples and frozen dataclasses of them, and rows that carry a
        `memo_key`) the text is remembered, so the help text most messages get is rendered
        once, not per message.
        """
        key = _memo_key(name, language, context)
        if key is not None:
            found = self._memo.get(key)
            if found is not None:
                return found
        text = self.template(name, language).render(**context).strip()
        if key is not None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = text
        return text


def _memo_key(name: str, language: str, context: dict[str, Any]) -> tuple[Any, ...] | None:
    try:
        return (name, language, *sorted((k, _typed(v)) for k, v in context.items()))
    except _NotPlain:
        return None


class _NotPlain(Exception):
    pass


def _typed(value: Any) -> Any:
    # Equal keys must mean equal text: 1, 1.0 and True are equal in Python but show apart, and
    # so are equal instants in two time zones.
    if isinstance(value, tuple):
        return (tuple, tuple(_typed(item) for item in value))
    if isinstance(value, float | date | time):
        # repr tells apart -0.0 and 0.0, a fold, and zones of one offset but other names.
        return (type(value), repr(value))
    if isinstance(value, _PLAIN):
        return (type(value), value)
    # A row read-only for a while (models/hall.py) names the copy it is.
    memo_key = getattr(value, "memo_key", None)
    if memo_key is not None:
        return (type(value), memo_key)
    params = getattr(value, "__dataclass_params__", None)
    if params is not None and params.frozen:
        return (type(value), tuple(_typed(getattr(value, f.name)) for f in fields(value)))
    raise _NotPlain


ECHO_CHARS = 20


def echo(text: str, limit: int = ECHO_CHARS) -> str:
    """Shorten typed words for showing back, so that they cannot pass for a link or markup.

    WeChat renders <a href> in a text reply as a link: a citizen's typed one would look as if
    the account had sent it.
    """
    text = (text or "").replace("<", "＜").replace(">", "＞").replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def mask_name(name: str) -> str:
    """Show a name as the hall's screens do: the first character, then stars (张*)."""
    name = (name or "").strip()
    if len(name) <= 1:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_phone(phone: str) -> str:
    """Show a mobile number as 138****1234."""
    phone = (phone or "").strip()
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
