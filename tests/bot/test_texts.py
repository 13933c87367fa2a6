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


@pytest.fixture
def shown(tmp_path: Path) -> Texts:
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "show.j2").write_text("{{ value }}", encoding="utf-8")
    return Texts(tmp_path)


def test_plain_context_is_rendered_once_and_remembered(shown: Texts) -> None:
    first = shown.render("show.j2", "zh", value="帮助")
    (Path(shown.env.loader.searchpath[0]) / "zh" / "show.j2").write_text("changed")  # type: ignore[union-attr]
    shown._cache.clear()
    shown.env.cache.clear()  # type: ignore[union-attr]  # a new render reads the changed file

    assert shown.render("show.j2", "zh", value="帮助") == first == "帮助"
    assert shown.render("show.j2", "zh", value="其他") == "changed"


def test_values_equal_in_python_but_shown_apart_are_not_confused(shown: Texts) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    assert [shown.render("show.j2", "zh", value=v) for v in (1, True, 1.0)] == ["1", "True", "1.0"]
    instant = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    beijing = instant.astimezone(ZoneInfo("Asia/Shanghai"))
    assert instant == beijing
    assert shown.render("show.j2", "zh", value=instant) != shown.render(
        "show.j2", "zh", value=beijing
    )


def test_mutable_values_are_rendered_every_time(shown: Texts) -> None:
    items = ["一"]
    assert shown.render("show.j2", "zh", value=items) == "['一']"
    items.append("二")
    assert shown.render("show.j2", "zh", value=items) == "['一', '二']"


def test_the_memo_stays_bounded(shown: Texts) -> None:
    from bot.texts import MEMO_SIZE

    for i in range(MEMO_SIZE * 2 + 5):
        assert shown.render("show.j2", "zh", value=f"词{i}") == f"词{i}"
    assert len(shown._memo) <= MEMO_SIZE


def test_frozen_dataclasses_are_remembered_by_value_and_others_never(shown: Texts) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Frozen:
        text: str

    @dataclass
    class Loose:
        text: str

    assert shown.render("show.j2", "zh", value=Frozen("甲")).endswith("Frozen(text='甲')")
    assert shown.render("show.j2", "zh", value=Frozen("乙")).endswith("Frozen(text='乙')")
    assert len(shown._memo) == 2
    loose = Loose("甲")
    assert shown.render("show.j2", "zh", value=loose).endswith("Loose(text='甲')")
    loose.text = "乙"
    assert shown.render("show.j2", "zh", value=loose).endswith("Loose(text='乙')")
    assert len(shown._memo) == 2


def test_a_row_with_a_memo_key_is_remembered_by_that_key(shown: Texts) -> None:
    class Row:
        def __init__(self, name: str, memo_key: tuple[int, int]) -> None:
            self.name, self.memo_key = name, memo_key

        def __str__(self) -> str:
            return self.name

    assert shown.render("show.j2", "zh", value=Row("本厅", (1, 1))) == "本厅"
    assert shown.render("show.j2", "zh", value=Row("改名", (1, 1))) == "本厅"  # the same copy
    assert shown.render("show.j2", "zh", value=Row("改名", (1, 2))) == "改名"  # read anew


def test_values_equal_but_shown_apart_have_their_own_rendering(shown: Texts) -> None:
    """-0.0 after 0.0 showed "0.0"; a zone named otherwise at one offset showed the first."""
    from datetime import UTC, datetime, timedelta, timezone

    assert shown.render("show.j2", "zh", value=0.0) == "0.0"
    assert shown.render("show.j2", "zh", value=-0.0) == "-0.0"
    at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    plain = at.astimezone(timezone(timedelta(hours=8)))
    named = at.astimezone(timezone(timedelta(hours=8), "CST"))
    root = Path(shown.env.loader.searchpath[0])  # type: ignore[union-attr]
    (root / "zh" / "zone.j2").write_text("{{ value.tzname() }}", encoding="utf-8")
    assert shown.render("zone.j2", "zh", value=plain) == "UTC+08:00"
    assert shown.render("zone.j2", "zh", value=named) == "CST"
