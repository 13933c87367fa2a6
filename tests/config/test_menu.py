"""The menu: 15 entries within the platform's limits, each answered by a service."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config.menu import check_menu, entries, load_menu, platform_payload


def test_shipped_menu_is_within_the_limits() -> None:
    assert check_menu(load_menu()) == []


def test_shipped_menu_has_fifteen_keyed_entries() -> None:
    menu = load_menu()
    assert [len(b["sub_button"]) for b in menu["button"]] == [5, 5, 5]
    assert len(entries()) == 15


def _broken(change: Any) -> list[str]:
    menu = copy.deepcopy(load_menu())
    change(menu)
    return check_menu(menu)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda m: m["button"].append(
                {"name": "多余", "type": "click", "key": "X", "service": "x"}
            ),
            "1-3 buttons",
        ),
        (
            lambda m: m["button"][0]["sub_button"].append(dict(m["button"][0]["sub_button"][0])),
            "at most 5",
        ),
        (lambda m: m["button"][0].update(name="预约取号预约取号"), "24 bytes; at most 16"),
        (lambda m: m["button"][1]["sub_button"][0].update(name="办" * 21), "63 bytes"),
        (lambda m: m["button"][1]["sub_button"][0].update(key="K" * 129), "128 bytes"),
        (lambda m: m["button"][1]["sub_button"][1].update(key="GUIDE_SEARCH"), "used twice"),
        (lambda m: m["button"][1]["sub_button"][1].update(type="tap"), "not a menu type"),
        (lambda m: m["button"][1]["sub_button"][1].pop("service"), "no service"),
        (
            lambda m: m["button"][2]["sub_button"][0].update(type="view", url="ftp://x"),
            "http(s) url",
        ),
    ],
    ids=[
        "4-buttons",
        "6-entries",
        "long-button",
        "long-entry",
        "long-key",
        "same-key",
        "bad-type",
        "no-service",
        "bad-url",
    ],
)
def test_each_breach_is_named(change: Any, expected: str) -> None:
    problems = _broken(change)
    assert any(expected in p for p in problems), problems


def test_top_level_entry_without_list_has_the_short_name_limit() -> None:
    """A top-level button that is itself an entry was once allowed 60 bytes, not 16."""
    menu = {"button": [{"name": "办事大厅地址查询", "type": "click", "key": "K", "service": "x"}]}
    assert any("at most 16" in p for p in check_menu(menu))


def test_payload_carries_no_local_fields() -> None:
    payload = platform_payload(load_menu())
    for button in payload["button"]:
        for sub in button["sub_button"]:
            assert "service" not in sub and "words" not in sub
            assert {"type", "name"} <= set(sub)
