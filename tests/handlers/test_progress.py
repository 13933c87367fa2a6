"""办件进度 through the webhook: look-up by number and phone, the history, and its notices."""

from __future__ import annotations

import logging

import pytest

from bot.platform_sim import Platform
from bot.services import Services
from models import application as applications
from models.application import Application
from models.notice import Notice
from tests.conftest import OPENID, WeChat
from tests.handlers import assert_whole_reply
from tests.models.test_application import NUMBER, imported, row


def services_seen(caplog: pytest.LogCaptureFixture) -> list[str]:
    handled = [r for r in caplog.records if r.getMessage().startswith("message handled")]
    return [r.getMessage().split("service=")[1].split()[0] for r in handled]


async def test_tap_asks_for_the_number_and_the_phones_last_digits(wechat: WeChat) -> None:
    text = await wechat.tap("APPLICATION_PROGRESS")

    assert_whole_reply(text)
    assert "办件编号 + 空格 + 申请时登记手机号的后四位" in text


async def test_number_and_phone_show_the_history_on_the_halls_clock(
    wechat: WeChat, services: Services
) -> None:
    await imported(
        services,
        row("received", 9, note="材料齐全，予以受理"),
        row("reviewing", 10),
        row("ready", 15),
    )
    await wechat.tap("APPLICATION_PROGRESS")

    text = await wechat.say(f"{NUMBER} 8000")

    assert_whole_reply(text)
    assert text.startswith("【食品经营许可证核发】")
    assert f"办件编号：{NUMBER}" in text
    assert "当前状态：可领取" in text
    lines = text.splitlines()
    start = lines.index("办理记录：")
    assert lines[start + 1 : start + 4] == [
        "2026-03-02 09:00 已受理，材料齐全，予以受理",
        "2026-03-02 10:00 审查中",
        "2026-03-02 15:00 可领取",
    ]
    assert "回复“邮寄”" in text
    assert "8000" not in text


@pytest.mark.parametrize(
    "words",
    [f"{NUMBER} 8000", f"{NUMBER.lower()}，8000", f"办件进度 {NUMBER} 8000", f"查 {NUMBER}/8000"],
)
async def test_number_and_phone_typed_anywhere_are_looked_up(
    wechat: WeChat, services: Services, caplog: pytest.LogCaptureFixture, words: str
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await imported(services, row("received", 9))

    text = await wechat.say(words)

    assert services_seen(caplog) == ["progress"]
    assert "当前状态：已受理" in text


async def test_wrong_phone_tells_nothing_about_the_application(
    wechat: WeChat, services: Services
) -> None:
    await imported(services, row("received", 9))
    await wechat.tap("APPLICATION_PROGRESS")

    wrong_phone = await wechat.say(f"{NUMBER} 1234")
    wrong_number = await wechat.say("SL2026030299999 8000")

    assert_whole_reply(wrong_phone)
    assert "没有找到这个办件" in wrong_phone
    assert "食品" not in wrong_phone
    assert wrong_number.splitlines()[0] == wrong_phone.splitlines()[0]
    assert (await Application.get(application_no=NUMBER)).openid is None


async def test_guessing_is_stopped_after_a_few_tries(wechat: WeChat, services: Services) -> None:
    await imported(services, row("received", 9))
    await wechat.tap("APPLICATION_PROGRESS")
    for tail in ("1111", "2222", "3333", "4444", "5555"):
        await wechat.say(f"{NUMBER} {tail}")

    text = await wechat.say(f"{NUMBER} 8000")

    assert_whole_reply(text)
    assert "请 60 分钟后再试" in text


async def test_followed_applications_are_listed_and_picked_by_number(
    wechat: WeChat, services: Services
) -> None:
    await imported(services, row("received", 9), row("approved", 14))
    await wechat.say(f"{NUMBER} 8000")

    listing = await wechat.tap("APPLICATION_PROGRESS")
    picked = await wechat.say("1")

    assert "1. 食品经营许可证核发：审批通过（2026-03-02 14:00）" in listing
    assert_whole_reply(listing)
    assert picked.startswith("【食品经营许可证核发】")


async def test_a_change_after_the_look_up_is_pushed_once(
    wechat: WeChat, services: Services
) -> None:
    application = await imported(services, row("received", 9))
    await wechat.say(f"{NUMBER} 8000")

    await imported(services, row("ready", 15))
    await imported(services, row("ready", 15))

    notices = await Notice.filter(kind="application_progress")
    assert [(n.openid, n.ref) for n in notices] == [(OPENID, f"application:{application.id}:2")]


async def test_something_else_in_progress_asks_again(wechat: WeChat) -> None:
    await wechat.tap("APPLICATION_PROGRESS")

    text = await wechat.say("我的那个证")

    assert_whole_reply(text)
    assert "请回复办件编号 + 空格 + 手机号后四位" in text


async def test_mail_word_after_a_ready_application_goes_on_to_post_it(
    wechat: WeChat, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.app")
    await imported(services, row("received", 9), row("ready", 15))
    await imported(services, {**row("ready", 15), "application_no": "SL2026030200099"})
    await applications.find_for_citizen(services, "SL2026030200099", "8000", OPENID)
    await wechat.tap("APPLICATION_PROGRESS")
    await wechat.say(f"{NUMBER} 8000")

    text = await wechat.say("邮寄")

    assert services_seen(caplog)[-1] == "postal"
    assert text.startswith("【食品经营许可证核发】证照邮寄")
    assert "收件地址" in text


async def test_spoken_look_up_works(wechat: WeChat, services: Services) -> None:
    await imported(services, row("received", 9))

    reply = await wechat.send(Platform.voice(OPENID, f"{NUMBER}，8000。"))

    assert reply is not None
    assert "当前状态：已受理" in reply["Content"]
