"""The catalogue in config/: complete, across the hall's units and categories, and searchable."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import pytest

from models import catalogue
from models.catalogue import CatalogueItem, Entry, check_items, load_items, rank, seed_catalogue

ITEMS = load_items()
HALLS = tomllib.loads(catalogue.HALLS_FILE.read_text(encoding="utf-8"))
ENTRIES = [Entry.of(i, it["name"], it["aliases"], 0, it["topic"]) for i, it in enumerate(ITEMS)]


def names(words: str) -> list[str]:
    return [hit.entry.name for hit in rank(ENTRIES, words).hits]


def test_catalogue_covers_sixty_items_in_every_category() -> None:
    per_category = Counter(item["category"] for item in ITEMS)

    assert len(ITEMS) >= 60
    assert set(per_category) == {c["code"] for c in HALLS["categories"]}
    assert min(per_category.values()) >= 5


def test_catalogue_spans_the_stationed_units_and_the_livelihood_topics() -> None:
    units = {item["unit"] for item in ITEMS}
    topics = {item["topic"] for item in ITEMS if item["category"] == "livelihood"}

    assert len(units) >= 20
    assert {"社保", "医保", "公积金", "户籍", "出入境", "婚姻", "残疾人"} <= topics
    utilities = {item["topic"] for item in ITEMS if item["category"] == "public_utilities"}
    assert {"供水", "供电", "燃气", "广电", "签证", "不动产", "证券"} <= utilities


def test_some_items_are_online_or_at_the_24_hour_area_and_some_are_not() -> None:
    online = Counter(bool(item["online_via"]) for item in ITEMS)
    self_service = Counter(item["is_self_service"] for item in ITEMS)

    assert online[True] and online[False]
    assert self_service[True] and self_service[False]


def test_broken_items_are_named_one_line_each() -> None:
    good = dict(ITEMS[0])
    problems = check_items(
        [
            good,
            {**good, "materials": []},
            {**good, "code": "x1", "category": "nowhere"},
            {**good, "code": "x2", "unit": "不存在的局"},
            {**good, "code": "x3", "is_self_service": "yes"},
        ],
        {"livelihood"},
        {good["unit"]},
    )

    assert problems == [
        f"item 2 {good['code']}: materials missing or empty",
        f"item 2 {good['code']}: code is used twice",
        "item 3 x1: category 'nowhere' is not in halls.toml",
        "item 4 x2: unit '不存在的局' is not stationed in a hall",
        "item 5 x3: is_self_service must be true or false",
    ]


def test_a_broken_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_text('[[items]]\ncode = "a"\nname = "事项"\n', encoding="utf-8")

    with pytest.raises(ValueError, match="item 1 a: unit, category"):
        load_items(path)


async def test_seed_loads_every_item_once_and_follows_the_file(db: str, tmp_path: Path) -> None:
    assert await CatalogueItem.all().count() == len(ITEMS)
    kept, changed = dict(ITEMS[0]), {**ITEMS[1], "fee": "工本费99元"}
    path = tmp_path / "catalogue.toml"
    path.write_text(_toml([kept, changed]), encoding="utf-8")

    count = await seed_catalogue(path)
    again = await seed_catalogue(path)

    assert count == again == 2
    assert await CatalogueItem.all().count() == 2
    assert (await CatalogueItem.get(code=changed["code"])).fee == "工本费99元"
    found = await catalogue.search(ITEMS[2]["aliases"][0])
    assert ITEMS[2]["name"] not in [hit.entry.name for hit in found.hits]


def _toml(items: list[dict[str, object]]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace('"', '\\"') + '"'

    return "".join(
        "[[items]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in item.items()) for item in items
    )


@pytest.mark.parametrize(
    ("words", "first"),
    [
        ("营业执照", "企业设立登记（有限责任公司）"),
        ("执照", "企业设立登记（有限责任公司）"),
        ("开公司", "企业设立登记（有限责任公司）"),
        ("办执照要什么材料", "企业设立登记（有限责任公司）"),
        ("营业职照", "企业设立登记（有限责任公司）"),
        ("我的身份证丢了怎么补办", "居民身份证补领"),
        ("公积金怎么取", "住房公积金提取（租房）"),
        ("宝宝上户口", "出生登记（新生儿入户）"),
        ("二手房过户", "不动产转移登记（二手房买卖）"),
        ("社保 卡！", "社会保障卡申领"),
        ("ＰＯＳ 发票", "发票领用（数电发票开票额度确定）"),
    ],
)
def test_search_ranks_alias_hits_then_shared_characters(words: str, first: str) -> None:
    assert names(words)[0] == first


def test_alias_hit_comes_before_a_look_alike() -> None:
    found = names("施工许可证")

    assert found[0] == "建筑工程施工许可证核发"
    assert "食品经营许可证核发" not in found


def test_plain_name_is_clear_and_a_general_word_is_not() -> None:
    assert rank(ENTRIES, "开公司").clear is not None
    assert rank(ENTRIES, "营业执照").clear is not None
    assert rank(ENTRIES, "执照").clear is None
    assert rank(ENTRIES, "公积金").clear is None


def test_words_naming_nothing_find_nothing() -> None:
    assert names("我想吃火锅") == []
    assert names("证") == []
    assert names("  ，。") == []
