"""Every citizen-facing text in English too: one en template per zh one, the same values."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
from jinja2 import meta

from bot import notices
from bot.texts import TEMPLATES_DIR, Texts

ZH = TEMPLATES_DIR / "zh"
EN = TEMPLATES_DIR / "en"
_CJK = re.compile(r"[\u3400-\u9fff\uff01-\uff5e\u3000-\u303f]")
# What an English text may still show in Chinese: the words a citizen types or taps (quoted),
# and the language's own name in the language switch.
_QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”')
_TAGS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_CHINESE_ON_PURPOSE = ("中文", "语言", "张三")
# English-only parts: the menu's Chinese names with their English meaning.
ENGLISH_ONLY = {"_menu.j2"}


def names(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.j2")}


def test_every_chinese_template_has_an_english_one() -> None:
    missing = sorted(names(ZH) - names(EN))
    extra = sorted(names(EN) - names(ZH) - ENGLISH_ONLY)

    assert (missing, extra) == ([], [])


def _needs(env: jinja2.Environment, path: Path) -> set[str]:
    return set(meta.find_undeclared_variables(env.parse(path.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("name", sorted(names(ZH) & names(EN)))
def test_english_template_takes_the_same_values(name: str) -> None:
    env = Texts().env
    known = set(env.globals)

    assert _needs(env, EN / name) - known == _needs(env, ZH / name) - known


@pytest.mark.parametrize("name", sorted(names(EN)))
def test_english_template_includes_english_parts_only(name: str) -> None:
    source = (EN / name).read_text(encoding="utf-8")

    assert '"zh/' not in source
    assert re.findall(r'"(?:en|zh)/[^"]+"', source) == [
        f'"en/{part}"' for part in re.findall(r'"en/([^"]+)"', source)
    ]
    for part in re.findall(r'"en/([^"]+)"', source):
        assert (EN / part).is_file(), part


@pytest.mark.parametrize("name", sorted(names(EN)))
def test_english_text_has_no_chinese_but_what_is_typed(name: str) -> None:
    source = (EN / name).read_text(encoding="utf-8")
    if name in ENGLISH_ONLY:
        return
    text = _QUOTED.sub("", _TAGS.sub("", source))
    for word in _CHINESE_ON_PURPOSE:
        text = text.replace(word, "")

    assert not _CJK.findall(text), text


def test_english_notice_fields_fit_the_platform() -> None:
    book = notices.notice_book()
    texts = Texts()
    for kind in book.kinds.values():
        values = dict.fromkeys(kind.needs, "TS000012")
        for language in ("zh", "en"):
            for name, source in kind.fields.items():
                if not source.endswith(".j2"):
                    continue
                text = texts.render(source, language, **values)
                assert len(text) <= kind.max_chars, (kind.name, name, language, text)
                assert notices.fit(text, kind.max_chars) == text


def test_one_minute_of_wait_is_singular_in_every_english_reply() -> None:
    """The take said "about 1 minutes' wait" where 排队进度 said "1 minute's"."""
    from bot.texts import Texts

    texts = Texts()
    taken = texts.render(
        "queue/taken.j2", "en", number="A001", hall="Main", category="Tax", ahead=1,
        wait_min=1, windows=["W1"], near_ahead=3,
    )  # fmt: skip
    requeued = texts.render(
        "queue/requeued.j2", "en", number="A001", hall="Main", category="Tax", ahead=1,
        wait_min=1, windows=["W1"], near_ahead=3,
    )  # fmt: skip

    for reply in (taken, requeued):
        assert "about 1 minute's wait" in reply and "minutes'" not in reply
