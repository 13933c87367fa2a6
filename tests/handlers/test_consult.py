"""在线咨询 through the webhook: FAQ answers anywhere, the consult dialog, and the hand-over."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from bot.dispatcher import normalize
from bot.platform_sim import Platform
from bot.standin import StandIn
from config.menu import entries
from handlers.consult import (
    FAQ,
    Faq,
    FaqEntry,
    check_faq,
    reserved_words,
)
from handlers.hall_info import claim_pattern
from tests.conftest import OPENID, WeChat
from tests.handlers import assert_whole_reply

HALL_TZ = ZoneInfo("Asia/Shanghai")
FRIDAY_10 = datetime(2025, 12, 5, 10, 0, tzinfo=HALL_TZ).astimezone(UTC)
FRIDAY_1830 = datetime(2025, 12, 5, 18, 30, tzinfo=HALL_TZ).astimezone(UTC)
SUNDAY_1830 = datetime(2025, 12, 7, 18, 30, tzinfo=HALL_TZ).astimezone(UTC)


def header(entry_id: str) -> str:
    return f"【{FAQ.by_id[entry_id].question}】"


def services_seen(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the service the webhook logged for each message it handled, in order."""
    handled = [r for r in caplog.records if r.getMessage().startswith("message handled")]
    return [r.getMessage().split("service=")[1].split()[0] for r in handled]


async def reply_type(wechat: WeChat, words: str) -> tuple[str, str]:
    reply = await wechat.send(Platform.text(OPENID, words))
    assert reply is not None
    return reply["MsgType"], str(reply.get("Content", ""))


async def test_tap_opens_consult_with_numbered_popular_questions(wechat: WeChat) -> None:
    text = await wechat.tap("CONSULT")

    assert_whole_reply(text)
    assert text.startswith("【在线咨询】")
    for number, entry in enumerate(FAQ.popular, 1):
        assert f"{number}. {entry.question}" in text.splitlines()
    assert "“人工”" in text


async def test_number_picks_a_popular_question(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")

    text = await wechat.say("２")  # a full-width digit, as some keyboards send

    assert text.startswith(f"【{FAQ.popular[1].question}】")
    assert_whole_reply(text)


async def test_number_of_a_related_question_opens_it(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    first = await wechat.say("社保卡丢了")
    related = [line for line in first.splitlines() if line.startswith("1. ")]

    second = await wechat.say("1")

    assert related, first
    assert second.startswith(f"【{related[0][3:]}】")


async def test_number_outside_the_choices_says_which_are_valid(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")

    text = await wechat.say("9")

    assert f"请回复 1 到 {len(FAQ.popular)} 之间的序号" in text
    assert_whole_reply(text)


async def test_question_in_consult_is_answered_even_with_another_services_word(
    wechat: WeChat,
) -> None:
    """Inside 在线咨询, "怎么办" (事项查询's word) does not take the question away."""
    await wechat.tap("CONSULT")

    text = await wechat.say("身份证丢了怎么办？")

    assert text.startswith(header("id_card_lost"))
    assert_whole_reply(text)


@pytest.mark.parametrize(
    ("words", "entry_id"),
    [
        ("社宝卡丢了", "social_card_lost"),  # one character misheard
        ("营业执造怎么申请", "business_licence"),  # one character mistyped
        ("别人替我", "proxy"),  # part of the question
        ("想去香港玩", "exit_entry"),  # an alias inside a longer sentence
        ("停车要钱吗", "parking"),  # an alias, with the menu word 停车 in it
        ("怎么取号", "how_to_queue"),  # only an alias: a menu word outside consult
    ],
)
async def test_near_misses_are_answered_in_consult(
    wechat: WeChat, words: str, entry_id: str
) -> None:
    await wechat.tap("CONSULT")

    text = await wechat.say(words)

    assert text.startswith(header(entry_id))


async def test_vague_question_offers_close_questions_by_number(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    offered = await wechat.say("社保")
    choices = [line[3:] for line in offered.splitlines() if line[:1].isdigit()]

    picked = await wechat.say("2")

    assert offered.startswith("没有找到与“社保”完全对应的答案")
    assert len(choices) >= 2
    assert picked.startswith(f"【{choices[1]}】")
    assert_whole_reply(offered)


async def test_no_match_offers_an_agent_and_shows_the_words_harmlessly(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    typed = "火星签证<a href='http://x.example'>点我</a>]]><xml>" + "啊" * 300

    text = await wechat.say(typed)

    assert "暂时没有关于“" in text
    assert "“人工”" in text
    assert "<a" not in text and "]]>" not in text
    echoed = text.split("“", 1)[1].split("”", 1)[0]
    assert len(echoed) <= 21
    assert_whole_reply(text)


async def test_agent_is_handed_over_within_hours(wechat: WeChat) -> None:
    with time_machine.travel(FRIDAY_10, tick=False):
        await wechat.tap("CONSULT")
        msg_type, _ = await reply_type(wechat, "人工")
        after = await wechat.say("1")

    assert msg_type == "transfer_customer_service"
    assert not after.startswith("【"), "the consult dialog ends with the hand-over"


@pytest.mark.parametrize("words", ["转人工", "人工客服", "我要人工服务", "客服"])
async def test_agent_words_hand_over_outside_consult_too(wechat: WeChat, words: str) -> None:
    with time_machine.travel(FRIDAY_10, tick=False):
        msg_type, _ = await reply_type(wechat, words)

    assert msg_type == "transfer_customer_service"


async def test_after_hours_says_when_agents_return_and_leaving_a_message_still_hands_over(
    wechat: WeChat,
) -> None:
    with time_machine.travel(FRIDAY_1830, tick=False):
        msg_type, text = await reply_type(wechat, "人工")
        left_type, _ = await reply_type(wechat, "留言")

    assert msg_type == "text"
    assert "现在已下班，明天（周六）9:00上线" in text
    assert "“留言”" in text
    assert_whole_reply(text)
    assert left_type == "transfer_customer_service"


async def test_before_opening_the_agents_are_not_yet_on_not_gone_home(
    wechat: WeChat,
) -> None:
    """At 8:20 it said 人工客服现在已下班, as if the day were over."""
    with time_machine.travel(datetime(2025, 12, 5, 8, 20, tzinfo=HALL_TZ), tick=False):
        _, text = await reply_type(wechat, "人工")

    assert "现在尚未上线，今天9:00上线" in text and "已下班" not in text


async def test_after_hours_questions_are_still_answered(wechat: WeChat) -> None:
    with time_machine.travel(SUNDAY_1830, tick=False):
        _, text = await reply_type(wechat, "人工")
        answer = await wechat.say("公积金怎么取")

    assert "明天（周一）9:00上线" in text
    assert answer.startswith(header("housing_fund"))


@pytest.mark.parametrize(
    ("words", "entry_id"),
    [
        ("身份证丢了", "id_card_lost"),
        ("营业执照怎么申请", "business_licence"),
        ("请问 周六 开门吗？", "weekend"),
        ("客服电话多少", "phone"),
        ("咨询一下公积金提取", "housing_fund"),
        ("身份 证 补办", "id_card_lost"),
    ],
)
async def test_faq_keyword_is_answered_outside_consult(
    wechat: WeChat, words: str, entry_id: str
) -> None:
    text = await wechat.say(words)

    assert text.startswith(header(entry_id))
    assert "回复“咨询”" in text.splitlines()[-1]
    assert_whole_reply(text)


async def test_spoken_question_is_answered(wechat: WeChat) -> None:
    reply = await wechat.send(Platform.voice(OPENID, "社保卡丢了。"))

    assert reply is not None
    assert reply["Content"].startswith(header("social_card_lost"))


async def test_every_faq_keyword_alone_reaches_its_own_answer(wechat: WeChat) -> None:
    """No other service's keyword shadows an FAQ keyword, and no entry takes another's."""
    wrong = []
    for entry in FAQ.entries:
        for keyword in entry.keywords:
            text = await wechat.say(keyword)
            if not text.startswith(f"【{entry.question}】"):
                wrong.append((keyword, text.splitlines()[0]))
    assert wrong == []


@pytest.mark.parametrize("template", ["{word}", "{word}身份证", "营业执照{word}"])
async def test_menu_words_of_other_services_are_not_taken(
    wechat: WeChat, caplog: pytest.LogCaptureFixture, template: str
) -> None:
    """A menu word alone or beside an FAQ keyword stays with its own service."""
    caplog.set_level(logging.INFO, logger="bot.app")
    words = [
        template.format(word=w)
        for key, e in entries().items()
        if key != "CONSULT"
        for w in e.words
    ]

    for word in words:
        await wechat.send(Platform.text(OPENID, word))

    assert len(services_seen(caplog)) == len(words)
    taken = [w for w, s in zip(words, services_seen(caplog), strict=True) if s == "consult"]
    assert taken == []


@pytest.mark.parametrize(
    "words", ["我想预约办营业执照。", "预约身份证补办", "社保卡补办需要什么材料", "营业执照邮寄"]
)
async def test_sentence_with_a_menu_word_goes_to_that_service(
    wechat: WeChat, caplog: pytest.LogCaptureFixture, words: str
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")

    await wechat.send(Platform.voice(OPENID, words))

    assert services_seen(caplog) != ["consult"]


async def test_every_answer_fits_one_reply(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    for entry in FAQ.entries:
        text = await wechat.say(entry.question)
        assert text.startswith(f"【{entry.question}】"), entry.id
        assert_whole_reply(text)


@pytest.mark.parametrize(("words", "service"), [("进驻部门", "中心概况"), ("签到", "到厅签到")])
async def test_another_services_word_in_consult_points_there_and_leaves(
    wechat: WeChat, words: str, service: str
) -> None:
    await wechat.tap("CONSULT")

    pointed = await wechat.say(words)
    again = await wechat.say("火星签证")

    assert pointed.startswith(f"“{words}”由“{service}”服务办理，已为您退出在线咨询。")
    assert_whole_reply(pointed)
    assert "暂时没有关于" not in again


async def test_cancel_leaves_consult(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    await wechat.say("退出")

    text = await wechat.say("火星签证")

    assert "暂时没有关于" not in text


async def test_menu_tap_inside_consult_leaves_it(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    await wechat.tap("HALL_INFO")

    text = await wechat.say("火星签证")

    assert "暂时没有关于" not in text


def test_shipped_faq_is_large_enough_and_clean() -> None:
    assert len(FAQ.entries) >= 25
    assert all(entry.keywords or entry.aliases for entry in FAQ.entries)
    assert check_faq(FAQ, reserved_words()) == []


def test_faq_keyword_holding_a_menu_word_is_refused() -> None:
    faq = Faq(
        [
            FaqEntry.of("a", "停车收费吗？", "免费。", keywords=["停车场"]),
            FaqEntry.of("b", "车位多吗？", "较多。", keywords=["车位", "人工"]),
            FaqEntry.of("c", "有车位吗？", "有。", keywords=["车位"]),
        ],
        popular=["a", "z"],
    )

    problems = check_faq(faq, reserved_words())

    assert any("'停车场' holds menu word '停车'" in p for p in problems)
    assert any("'人工' holds menu word '人工'" in p for p in problems)
    assert any("'车位' belongs to b" in p for p in problems)
    assert any("popular 'z'" in p for p in problems)


def test_long_answer_is_refused() -> None:
    faq = Faq([FaqEntry.of("a", "问题？", "很长" * 200, keywords=["问题"])])

    assert any("longer than" in p for p in check_faq(faq, set()))


def test_claim_pattern_skips_words_with_a_reserved_word() -> None:
    import re

    pattern = re.compile(claim_pattern(["营业执照"], {"预约", "怎么办"}))

    assert pattern.search(normalize("营业执照在哪办"))
    assert pattern.search(normalize("营业 执照"))
    assert not pattern.search(normalize("预约营业执照"))
    assert not pattern.search(normalize("营业执照怎么办"))


async def test_leaving_consult_is_not_called_cancelling(wechat: WeChat) -> None:
    """退出 from 在线咨询 said 已取消当前操作，没有保存任何内容: there was nothing to cancel."""
    await wechat.tap("CONSULT")

    reply = await wechat.say("退出")

    assert reply.startswith("已退出在线咨询。") and "没有保存" not in reply
    assert "没有保存任何内容" in await _cancel_a_booking_dialog(wechat)


async def _cancel_a_booking_dialog(wechat: WeChat) -> str:
    await wechat.tap("BOOKING")
    return await wechat.say("取消")


async def test_a_hand_over_tells_the_citizen_by_a_text_after_it(db: str, standin: StandIn) -> None:
    """转人工 answered with the hand-over alone: the citizen saw nothing happen."""
    from bot.app import create_app
    from tests.bot.test_late_reply import customer_service_texts
    from tests.conftest import make_settings, start_client

    settings = make_settings(database_url=db, api_base_url=standin.url)
    client = await start_client(create_app(settings, with_database=False))
    try:
        wechat = WeChat(client, Platform(settings.token, settings.app_id, settings.aes_key))
        with time_machine.travel(FRIDAY_10, tick=False):
            msg_type, _ = await reply_type(wechat, "转人工")
        told = await customer_service_texts(standin, 1)
    finally:
        await client.close()

    assert msg_type == "transfer_customer_service"
    assert len(told) == 1 and "已为您转接人工客服" in told[0] and "“帮助”" in told[0]
