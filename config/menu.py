"""The 3 x 5 menu from menu.toml: its entries, the platform's limits, and the payload to post."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from config.settings import CONFIG_DIR

MENU_FILE = CONFIG_DIR / "menu.toml"

# The platform's limits (menu/create): counts, and names and keys measured in UTF-8 bytes.
MAX_BUTTONS = 3
MAX_SUB_BUTTONS = 5
MAX_BUTTON_NAME_BYTES = 16
MAX_SUB_BUTTON_NAME_BYTES = 60
MAX_KEY_BYTES = 128
KEYED_TYPES = {
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
}
ALL_TYPES = KEYED_TYPES | {"view", "miniprogram", "media_id", "article_id", "article_view_limited"}
# Our own fields, never posted to the platform.
LOCAL_FIELDS = ("service", "words")


@dataclass(frozen=True, slots=True)
class MenuEntry:
    key: str
    name: str
    type: str
    service: str
    words: tuple[str, ...]


def load_menu(path: Path = MENU_FILE) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


@cache
def entries() -> dict[str, MenuEntry]:
    """Return the menu's keyed entries by key."""
    found = {}
    for button in load_menu().get("button", []):
        for sub in button.get("sub_button", []):
            if "key" in sub:
                found[sub["key"]] = MenuEntry(
                    sub["key"],
                    sub["name"],
                    sub["type"],
                    sub.get("service", ""),
                    tuple(sub.get("words", [])),
                )
    return found


def entry(key: str) -> MenuEntry:
    return entries()[key]


def words_of(*keys: str) -> tuple[str, ...]:
    """Return the typed words that stand for these menu entries."""
    return tuple(word for key in keys for word in entry(key).words)


def check_menu(menu: dict[str, Any]) -> list[str]:
    """Return one readable line per breach of the platform's limits or of our own rules."""
    problems: list[str] = []
    buttons = menu.get("button", [])
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        problems.append(f"the menu needs 1-{MAX_BUTTONS} buttons, has {len(buttons)}")
    seen: set[str] = set()
    for i, button in enumerate(buttons, 1):
        name = button.get("name", "")
        subs = button.get("sub_button", [])
        where = f"button {i} {name!r}"
        # A top-level name is shown in a third of the bar: 16 bytes whether it opens a list or not.
        problems.extend(_check_name(where, name, MAX_BUTTON_NAME_BYTES))
        if len(subs) > MAX_SUB_BUTTONS:
            problems.append(f"{where} has {len(subs)} entries; at most {MAX_SUB_BUTTONS}")
        leaves = subs or ([button] if "type" in button else [])
        if not leaves:
            problems.append(f"{where} needs a type or entries")
        for j, sub in enumerate(leaves, 1):
            sub_where = f"{where} entry {j} {sub.get('name', '')!r}"
            if sub is not button:
                limit = MAX_SUB_BUTTON_NAME_BYTES
                problems.extend(_check_name(sub_where, sub.get("name", ""), limit))
            problems.extend(_check_entry(sub_where, sub, seen))
    return problems


def _check_name(where: str, name: str, limit: int) -> list[str]:
    size = len(name.encode("utf-8"))
    if not name:
        return [f"{where}: name is empty"]
    if size > limit:
        return [f"{where}: name is {size} bytes; at most {limit}"]
    return []


def _check_entry(where: str, sub: dict[str, Any], seen: set[str]) -> list[str]:
    kind = sub.get("type", "")
    if kind not in ALL_TYPES:
        return [f"{where}: type {kind!r} is not a menu type"]
    problems = []
    if kind in KEYED_TYPES:
        key = sub.get("key", "")
        if not key:
            problems.append(f"{where}: type {kind} needs a key")
        elif len(key.encode("utf-8")) > MAX_KEY_BYTES:
            problems.append(f"{where}: key is longer than {MAX_KEY_BYTES} bytes")
        elif key in seen:
            problems.append(f"{where}: key {key} is used twice")
        seen.add(key)
        if not sub.get("service"):
            problems.append(f"{where}: no service answers key {key}")
    if kind == "view" and not str(sub.get("url", "")).startswith(("http://", "https://")):
        problems.append(f"{where}: a view entry needs an http(s) url")
    return problems


def platform_payload(menu: dict[str, Any]) -> dict[str, Any]:
    """Return the body of menu/create: the menu without our local fields."""

    def strip(item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if k not in LOCAL_FIELDS and k != "sub_button"}
        if "sub_button" in item:
            out["sub_button"] = [strip(s) for s in item["sub_button"]]
        return out

    return {"button": [strip(b) for b in menu.get("button", [])]}
