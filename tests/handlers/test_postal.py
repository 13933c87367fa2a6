"""证照邮寄 through the webhook: address and phone for a ready certificate, then the tracking."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient

from bot.platform_sim import Platform
from bot.services import Services
from models import application as applications
from models.application import Application, MailRequest
from models.notice import Notice
from tests.conftest import OPENID, WeChat
from tests.handlers import assert_whole_reply
from tests.models.test_application import NUMBER, imported, row

ADDRESS = "广东省东莞市松山湖园区新城路1号2栋301室"
ADMIN = {"Authorization": "Bearer tok-admin"}


async def ready(services: Services, *, is_followed: bool = True) -> Application:
    application = await imported(services, row("received", 9), row("ready", 15))
    if is_followed:
        await applications.find_for_citizen(services, NUMBER, "8000", OPENID)
    return application


async def ask_for_post(wechat: WeChat) -> str:
    await wechat.tap("CERT_MAIL")
    await wechat.say(ADDRESS)
    await wechat.say("138 0013 8000")
    return await wechat.say("确认")


async def test_ready_certificate_is_posted_in_four_replies(
    wechat: WeChat, services: Services
) -> None:
    application = await ready(services)

    asked = await wechat.tap("CERT_MAIL")
    phone = await wechat.say(ADDRESS)
    confirm = await wechat.say("138 0013 8000")
    done = await wechat.say("确认")

    assert asked.startswith("【食品经营许可证核发】证照邮寄")
    assert "收件地址" in asked and "手机号码" in phone
    assert f"地址：{ADDRESS}" in confirm
    assert "手机：138****8000" in confirm
    assert "13800138000" not in confirm + done
    assert "已提交邮寄申请" in done
    for text in (asked, phone, confirm, done):
        assert_whole_reply(text)
    request = await MailRequest.get(application_id=application.id)
    assert (request.address, request.phone, request.status) == (
        ADDRESS,
        "13800138000",
        "requested",
    )


@pytest.mark.parametrize("address", ["我家", "12345678901", "东莞 <a>点我</a>"])
async def test_an_address_that_cannot_be_posted_to_is_asked_again(
    wechat: WeChat, services: Services, address: str
) -> None:
    await ready(services)
    await wechat.tap("CERT_MAIL")

    text = await wechat.say(address)

    assert "地址好像不完整" in text
    assert_whole_reply(text)
    assert "手机号码" in await wechat.say(ADDRESS)


@pytest.mark.parametrize("phone", ["123", "0769-22000000", "12800138000", "138001380001"])
async def test_a_phone_that_is_no_mainland_mobile_is_asked_again(
    wechat: WeChat, services: Services, phone: str
) -> None:
    await ready(services)
    await wechat.tap("CERT_MAIL")
    await wechat.say(ADDRESS)

    text = await wechat.say(phone)

    assert "不是有效的手机号码" in text
    assert_whole_reply(text)


async def test_change_at_the_confirmation_asks_for_the_address_again(
    wechat: WeChat, services: Services
) -> None:
    await ready(services)
    await wechat.tap("CERT_MAIL")
    await wechat.say(ADDRESS)
    await wechat.say("13800138000")

    again = await wechat.say("修改")
    await wechat.say("广东省东莞市松山湖园区科技路8号")
    await wechat.say("13900139000")
    await wechat.say("确认")

    assert "收件地址" in again
    request = await MailRequest.get()
    assert (request.address, request.phone) == ("广东省东莞市松山湖园区科技路8号", "13900139000")


async def test_cancel_keeps_nothing(wechat: WeChat, services: Services) -> None:
    await ready(services)
    await wechat.tap("CERT_MAIL")
    await wechat.say(ADDRESS)

    text = await wechat.say("取消")

    assert "已取消" in text
    assert await MailRequest.all().count() == 0


async def test_without_a_followed_application_the_number_and_phone_find_it(
    wechat: WeChat, services: Services
) -> None:
    await ready(services, is_followed=False)

    first = await wechat.tap("CERT_MAIL")
    asked = await wechat.say(f"{NUMBER} 8000")

    assert "暂时没有可以申请邮寄的证照" in first
    assert_whole_reply(first)
    assert asked.startswith("【食品经营许可证核发】证照邮寄")


async def test_a_certificate_not_ready_cannot_be_posted(
    wechat: WeChat, services: Services
) -> None:
    await imported(services, row("received", 9))
    await wechat.tap("CERT_MAIL")

    text = await wechat.say(f"{NUMBER} 8000")

    assert "现在不能申请邮寄：办件状态为“已受理”" in text
    assert_whole_reply(text)


async def test_a_certificate_handed_over_in_person_only_cannot_be_posted(
    wechat: WeChat, services: Services
) -> None:
    await imported(services, row("received", 9), row("ready", 15, is_mailable="false"))
    await wechat.tap("CERT_MAIL")

    text = await wechat.say(f"{NUMBER} 8000")

    assert "现在不能申请邮寄" in text


async def test_asking_twice_shows_the_first_request(wechat: WeChat, services: Services) -> None:
    await ready(services)
    await ask_for_post(wechat)

    text = await wechat.say(f"邮寄 {NUMBER}")

    assert "已经申请过邮寄" in text
    assert "138****8000" in text
    assert "1号" not in text
    assert await MailRequest.all().count() == 1


async def test_several_ready_certificates_are_offered_by_number(
    wechat: WeChat, services: Services
) -> None:
    await ready(services)
    other = {**row("ready", 16), "application_no": "SL2026030200099", "item_name": "护照"}
    await imported(services, other)
    await applications.find_for_citizen(services, "SL2026030200099", "8000", OPENID)

    listing = await wechat.tap("CERT_MAIL")
    asked = await wechat.say("2")

    assert "1. 护照（SL2026030200099）" in listing
    assert f"2. 食品经营许可证核发（{NUMBER}）" in listing
    assert_whole_reply(listing)
    assert asked.startswith("【食品经营许可证核发】证照邮寄")


async def test_tracking_number_entered_by_staff_is_pushed_and_shown(
    wechat: WeChat, services: Services, app_client: TestClient
) -> None:
    await ready(services)
    await ask_for_post(wechat)
    request = await MailRequest.get()

    response = await app_client.post(
        f"/api/staff/mail-requests/{request.id}/tracking",
        headers=ADMIN,
        json={"carrier": "EMS", "tracking_no": "1100000000001"},
    )
    text = await wechat.tap("CERT_MAIL")

    assert response.status == 200
    notice = await Notice.get(kind="certificate_mailed")
    assert notice.openid == OPENID
    assert notice.data["fields"]["thing2"] == "EMS"
    assert "食品经营许可证核发：已寄出，EMS 1100000000001" in text


async def test_unfollowing_erases_the_address_and_phone(
    wechat: WeChat, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await ready(services)
    await ask_for_post(wechat)

    await wechat.send(Platform.event(OPENID, "unsubscribe"))

    request = await MailRequest.get()
    assert (request.address, request.phone, request.status) == ("", "", "withdrawn")
    assert "13800138000" not in caplog.text and ADDRESS not in caplog.text
