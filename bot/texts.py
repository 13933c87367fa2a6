"""Render citizen-facing text from the jinja2 templates, in the citizen's language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"


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
        """Render `name` for the citizen's language, falling back to Chinese."""
        return self.template(name, language).render(**context).strip()


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
