"""事项查询 through the webhook: keywords, near-misses, pages, an item's guide, on to book."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
import time_machine

from bot.dispatcher import normalize
from bot.platform_sim import Platform
from bot.protocol import MAX_REPLY_TEXT_BYTES
from bot.services import Services
from config.menu import entries
from config.settings import Settings
from handlers import guide
from handlers.consult import FAQ
from models.catalogue import CatalogueItem
from models.hall import Category
from tests.conftest import OPENID, WeChat
from tests.handlers import assert_whole_reply
from tests.models.test_queue import MONDAY_10


@pytest.fixture
def monday_10() -> Iterator[time_machine.Coordinates]:
    """Monday 10:00 in the hall: numbers can be taken and slots booked."""
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


def services_seen(caplog: pytest.LogCaptureFixture) -> list[str]:
    handled = [r for r in caplog.records if r.getMessage().startswith("message handled")]
    return [r.getMessage().split("service=")[1].split()[0] for r in handled]


def listed(text: str) -> list[str]:
    """Return the item names of a numbered list "1. name（unit）", in order."""
    lines = re.findall(r"^\d+\. (.+)（[^（]+）$", text, re.MULTILINE)
    return list(lines)


def numbers(text: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^(\d+)\. ", text, re.MULTILINE)]


def title(text: str) -> str:
    return text.splitlines()[0]


async def test_tap_asks_for_keywords_and_offers_the_six_categories(wechat: WeChat) -> None:
    text = await wechat.tap("GUIDE_SEARCH")

    assert_whole_reply(text)
    assert "营业执照" in text
    names = [c.name for c in await Category.all()]
    for number, name in enumerate(names, 1):
        count = await CatalogueItem.filter(category__name=name).count()
        assert f"{number}. {name}（{count}项）" in text


@pytest.mark.parametrize(
    ("words", "item"),
    [
        ("开公司", "企业设立登记（有限责任公司）"),
        ("营业执照", "企业设立登记（有限责任公司）"),
        ("办执照要什么材料", "企业设立登记（有限责任公司）"),
        ("身份证丢了", "居民身份证补领"),
        ("房产证丢了", "不动产权证书补发、换发"),
        ("开奶茶店", "食品经营许可证核发"),
        ("港澳通行证续签", "往来港澳通行证及签注"),
    ],
)
async def test_words_that_name_an_item_show_its_guide(
    wechat: WeChat, words: str, item: str
) -> None:
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say(words)

    assert_whole_reply(text)
    assert title(text) == f"【{item}】"
    for part in (
        "办理部门：",
        "申请条件：",
        "申请材料：",
        "办理流程：",
        "法定时限：",
        "承诺时限：",
    ):
        assert part in text
    assert "收费标准：" in text and "网上办理：" in text and "24小时自助区：" in text
    assert "回复“预约”" in text.splitlines()[-1] and "回复“取号”" in text.splitlines()[-1]


async def test_detail_shows_the_items_own_facts(wechat: WeChat) -> None:
    item = await CatalogueItem.get(code="sj-qysl")

    await wechat.tap("GUIDE_SEARCH")
    text = await wechat.say("开公司")

    assert f"办理部门：{item.unit}" in text
    assert "办理窗口：企业开办综合窗口" in text
    assert f"1. {item.materials[0]}" in text
    assert f"法定时限：{item.legal_limit}" in text
    assert f"承诺时限：{item.promised_limit}" in text
    assert f"收费标准：{item.fee}" in text
    assert f"网上办理：可以，{item.online_via}" in text
    assert "24小时自助区：可以办理" in text


async def test_item_only_at_a_window_says_so(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say("身份证丢了")

    assert "网上办理：不可以，请到窗口办理" in text
    assert "24小时自助区：不可办理" in text


async def test_a_general_word_lists_the_items_it_may_mean(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say("执照")

    assert_whole_reply(text)
    assert "与“执照”相关的事项共 5 项" in text
    assert listed(text)[0] == "企业设立登记（有限责任公司）"
    assert numbers(text) == [1, 2, 3, 4, 5]
    assert "营业执照遗失补领、换发" in text


async def test_number_from_the_list_opens_that_item(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")
    text = await wechat.say("公积金")
    names = listed(text)

    picked = await wechat.say("2")

    assert len(names) == 3
    assert title(picked) == f"【{names[1]}】"


async def test_typo_still_finds_the_item(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say("营业职照")

    assert "企业设立登记（有限责任公司）" in text


async def test_a_category_is_browsed_a_page_at_a_time(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")
    total = await CatalogueItem.filter(category__code="livelihood").count()
    pages = -(-total // guide.PAGE_SIZE)

    first = await wechat.say("1")
    second = await wechat.say("下一页")

    assert first.startswith(f"【民生服务】共 {total} 项（第 1/{pages} 页）")
    assert numbers(first) == [1, 2, 3, 4, 5]
    assert "回复“下一页”查看更多" in first
    assert numbers(second) == [6, 7, 8, 9, 10]
    assert_whole_reply(second)
    picked = await wechat.say("7")
    assert title(picked) == f"【{listed(second)[1]}】"


async def test_paging_past_the_end_says_so_and_keeps_the_list(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")
    await wechat.say("执照")

    text = await wechat.say("下一页")
    again = await wechat.say("1")

    assert "已经是最后一页了" in text
    assert_whole_reply(text)
    assert title(again) == "【企业设立登记（有限责任公司）】"


async def test_list_word_returns_from_an_item_to_its_results(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")
    text = await wechat.say("营业执照")
    assert "还有 4 项相关事项，回复“列表”查看。" in text

    back = await wechat.say("列表")

    assert "与“营业执照”相关的事项共 5 项" in back
    assert "营业执照遗失补领、换发" in back


async def test_unknown_words_get_examples_and_the_way_to_a_person(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say("我想吃火锅")

    assert_whole_reply(text)
    assert "没有找到与“我想吃火锅”相关的事项" in text
    assert "“咨询”" in text
    found = await wechat.say("护照")
    assert title(found) == "【普通护照签发】"


async def test_wrong_number_asks_again(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")
    await wechat.say("执照")

    text = await wechat.say("9")

    assert "请回复 1 到 5 之间的序号查看事项" in text
    assert_whole_reply(text)


async def test_cancel_leaves_the_guide(wechat: WeChat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await wechat.tap("GUIDE_SEARCH")

    cancelled = await wechat.say("取消")
    await wechat.say("2")

    assert "已取消" in cancelled
    assert services_seen(caplog)[-1] != "guide"


async def test_menu_tap_leaves_the_guide(wechat: WeChat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await wechat.tap("GUIDE_SEARCH")
    await wechat.say("执照")

    await wechat.tap("HALL_INFO")
    await wechat.say("1")

    seen = services_seen(caplog)
    assert seen[-2] == "hall_info" and seen[-1] != "guide"


@pytest.mark.parametrize(
    ("words", "item"),
    [
        ("营业执照要带什么材料", None),
        ("办执照要什么材料？", "企业设立登记（有限责任公司）"),
        ("护照多少钱", "普通护照签发"),
        ("公积金提取需要什么材料", "住房公积金提取（租房）"),
        ("营业执照怎么办", "企业设立登记（有限责任公司）"),
        ("身份证丢了怎么办", "居民身份证补领"),
    ],
)
async def test_question_on_an_item_is_answered_from_anywhere(
    wechat: WeChat, caplog: pytest.LogCaptureFixture, words: str, item: str | None
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")

    text = await wechat.say(words)

    assert services_seen(caplog) == ["guide"]
    assert_whole_reply(text)
    if item is not None:
        assert title(text) == f"【{item}】"


async def test_spoken_question_is_answered(wechat: WeChat) -> None:
    reply = await wechat.send(Platform.voice(OPENID, "开公司需要什么材料。"))

    assert reply is not None
    assert title(reply["Content"]) == "【企业设立登记（有限责任公司）】"


async def test_guide_word_alone_opens_the_guide(wechat: WeChat) -> None:
    text = await wechat.say("指南")

    assert "1. 民生服务" in text
    assert_whole_reply(text)


def test_faq_keywords_alone_are_not_taken_by_the_guide_question() -> None:
    """在线咨询 answers its keywords; the guide takes a question only with a guide word."""
    pattern = re.compile(guide.question_pattern())

    taken = [k for entry in FAQ.entries for k in entry.keywords if pattern.search(normalize(k))]

    assert taken == []


@pytest.mark.parametrize("template", ["{word}营业执照要什么材料", "营业执照材料{word}"])
def test_other_services_words_are_not_taken_by_the_guide_question(template: str) -> None:
    pattern = re.compile(guide.question_pattern())
    words = [
        normalize(template.format(word=w))
        for e in entries().values()
        if e.service != "guide"
        for w in e.words
    ]

    taken = [w for w in words if pattern.search(w)]

    assert taken == []
    assert pattern.search(normalize(template.format(word="")))


async def test_every_item_fits_one_reply_with_its_steps_listed(services: Services) -> None:
    too_long = []
    for item in await CatalogueItem.all():
        category = await Category.get(id=item.category_id)
        text = services.texts.render(
            "guide/detail.j2",
            item=item,
            category=category.name,
            others=9,
            materials=item.materials,
            hidden=0,
            is_short=False,
        )
        if len(text.encode("utf-8")) > MAX_REPLY_TEXT_BYTES:
            too_long.append((item.code, len(text.encode("utf-8"))))
    assert too_long == []


async def test_long_entry_still_fits_with_its_steps_on_one_line(
    wechat: WeChat, services: Services
) -> None:
    item = await CatalogueItem.get(code="sj-qysl")
    item.materials = [f"{m}（原件及复印件各一份，复印件须加盖公章）" for m in item.materials * 3]
    await item.save()

    await wechat.tap("GUIDE_SEARCH")
    text = await wechat.say("开公司")

    assert_whole_reply(text)
    assert "办理流程：" + "→".join(item.steps) in text
    assert re.search(r"另有 \d+ 项材料", text)
    assert f"1. {item.materials[0]}" in text


async def test_item_gone_since_the_list_was_shown_says_so(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")
    text = await wechat.say("执照")
    await CatalogueItem.filter(name=listed(text)[0]).delete()

    reply = await wechat.say("1")

    assert "事项目录刚刚更新" in reply
    assert_whole_reply(reply)


# Straight on to a booking or a number for the item's category.


async def test_book_from_an_item_goes_to_its_category(
    wechat: WeChat, caplog: pytest.LogCaptureFixture, monday_10: time_machine.Coordinates
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await wechat.tap("GUIDE_SEARCH")
    await wechat.say("开公司")

    text = await wechat.say("预约")

    assert services_seen(caplog)[-1] == "booking"
    assert "企业开办" in text
    assert "民生服务" not in text


async def test_queue_from_an_item_goes_to_its_category(
    wechat: WeChat, caplog: pytest.LogCaptureFixture, monday_10: time_machine.Coordinates
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await wechat.tap("GUIDE_SEARCH")
    await wechat.say("开公司")

    text = await wechat.say("取号")

    assert services_seen(caplog)[-1] == "queue"
    assert "企业开办" in text
    assert "民生服务" not in text


async def test_another_services_word_inside_the_guide_goes_to_it(
    wechat: WeChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await wechat.tap("GUIDE_SEARCH")

    await wechat.say("排队进度")
    await wechat.say("1")

    seen = services_seen(caplog)
    assert seen[-2] == "queue" and seen[-1] != "guide"


async def test_search_holding_a_hall_word_stays_a_search(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say("公司地址变更")

    assert title(text) == "【企业变更登记（备案）】"


async def test_a_number_after_the_guide_timed_out_is_told_so(
    wechat: WeChat, settings: Settings
) -> None:
    with time_machine.travel(MONDAY_10, tick=False) as clock:
        await wechat.tap("GUIDE_SEARCH")
        await wechat.say("执照")
        clock.shift(settings.dialog_ttl_s + 1)

        text = await wechat.say("1")

    assert "超时" in text
    assert_whole_reply(text)


async def test_markup_typed_in_a_search_is_shown_harmless(wechat: WeChat) -> None:
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say('<a href="http://x.example">点我领补贴</a>')

    assert "<a" not in text and "＜a" in text
    assert_whole_reply(text)


async def test_markup_is_defused_in_english_replies_too(wechat: WeChat) -> None:
    await wechat.tap("REMINDERS")
    await wechat.say("English")
    await wechat.tap("GUIDE_SEARCH")

    text = await wechat.say('<a href="http://x.example">click</a>')

    assert text.startswith("Nothing was found")
    assert "<a" not in text
