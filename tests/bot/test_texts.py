"""Templates: rendering, language fallback and masking."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from bot.texts import TEMPLATES_DIR, Texts, mask_name, mask_phone


def test_template_value_named_like_a_parameter() -> None:
    """A value called `name` or `language` once collided with render's own parameters."""
    texts = Texts()
    text = texts.render("coming_soon.j2", "zh", name="证照邮寄", language="x")
    assert "证照邮寄" in text


def test_missing_language_falls_back_to_chinese() -> None:
    assert Texts().render("welcome/cancelled.j2", "fr") == Texts().render(
        "welcome/cancelled.j2", "zh"
    )


def test_undefined_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(jinja2.UndefinedError):
        Texts().render("coming_soon.j2", "zh")


@pytest.mark.parametrize(
    ("name", "masked"), [("张三", "张*"), ("欧阳娜娜", "欧***"), ("李", "李"), ("", "")]
)
def test_names_are_masked(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_phones_are_masked() -> None:
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("123") == "***"


def test_every_template_compiles() -> None:
    texts = Texts()
    names = [p.relative_to(TEMPLATES_DIR).as_posix() for p in Path(TEMPLATES_DIR).rglob("*.j2")]
    assert names
    for name in names:
        texts.env.get_template(name)


def test_typed_link_shown_back_cannot_pass_for_the_account_s_own() -> None:
    """help.j2 once echoed typed words raw: WeChat renders <a href> in a reply as a link."""
    text = Texts().render(
        "welcome/help.j2", "zh", services=["中心概况"], words='<a href="x">点我</a>'
    )
    assert "<a" not in text and "＜a" in text
