"""Facts seeded from config/*.toml that citizens read word for word."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_parking_is_not_called_free_and_charged_at_once() -> None:
    """halls.toml said "免费停放（收费标准以现场公示为准）": one sentence, both free and fee."""
    contradicting = []
    for name in ("halls.toml", "faq.toml"):
        seeded = tomllib.loads((CONFIG_DIR / name).read_text(encoding="utf-8"))
        for text in _strings(seeded):
            for sentence in re.split(r"[。\n]", text):
                if "免费" in sentence and "收费" in sentence:
                    contradicting.append(f"{name}: {sentence}")
    assert contradicting == []
