"""Faults an adversarial pass found in the webhook, each pinned by the test named after it."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestClient

from bot.app import WEBHOOK_PATH
from bot.dispatcher import is_number
from bot.platform_sim import Platform, build_xml
from bot.protocol import Envelope, parse_xml, read_incoming, sign
from config.settings import Settings
from tests.conftest import OPENID, WeChat


async def test_citizen_typing_doctype_is_answered_not_refused(wechat: WeChat) -> None:
    for typed in ("<!DOCTYPE html>", "<!ENTITY x>", "<! doctype"):
        status, body = await wechat.post(Platform.text(OPENID, typed))
        assert status == 200, typed
        assert wechat.platform.open_reply(body) is not None


async def test_compatible_body_with_encrypt_is_not_answered_from_its_plain_fields(
    app_client: TestClient, settings: Settings
) -> None:
    platform = Platform(settings.token, settings.app_id, settings.aes_key, mode="compatible")
    delivery = platform.deliver(Platform.text(OPENID, "帮助"))
    forged = delivery.body.replace(OPENID.encode(), b"oATTACKER000000000000000001")
    query = {k: v for k, v in delivery.query.items() if k not in ("encrypt_type", "msg_signature")}
    response = await app_client.post(WEBHOOK_PATH, params=query, data=forged)
    assert response.status in (400, 403)


async def test_delivery_older_than_the_dedup_window_is_refused(
    app_client: TestClient, platform: Platform
) -> None:
    old = str(int(time.time()) - 3600)
    delivery = platform.deliver(Platform.text(OPENID, "帮助"), timestamp=old)
    response = await app_client.post(WEBHOOK_PATH, params=delivery.query, data=delivery.body)
    assert response.status == 403


async def test_signed_odd_timestamp_or_nonce_never_yields_malformed_reply(
    app_client: TestClient, platform: Platform
) -> None:
    for timestamp, nonce in ((str(int(time.time())), "a]]>b"), ("12<3", "n1")):
        query = {
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": sign(platform.token, timestamp, nonce),
        }
        response = await app_client.post(WEBHOOK_PATH, params=query, data=b"<xml><A>1</A></xml>")
        assert response.status == 400


async def test_long_question_in_consult_does_not_stall_other_citizens(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    started = time.perf_counter()
    await wechat.say("停车" + "怎么办理营业执照" * 2000)
    assert time.perf_counter() - started < 2.0


def test_numeric_choice_with_odd_digits_gets_a_polite_answer() -> None:
    assert [is_number(t) for t in ("2", "15", "⓵", "፩", "9" * 5000, "", "1.5")] == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
    ]


async def test_odd_digits_in_a_number_dialog_get_no_error(wechat: WeChat) -> None:
    await wechat.tap("QUEUE_TAKE")
    for typed in ("⓵", "፩", "9" * 5000):
        assert "开了个小差" not in await wechat.say(typed)


def test_two_subscription_receipts_in_the_same_second_are_both_recorded() -> None:
    def receipt(msg_id: str) -> str:
        info = {
            "SubscribeMsgSentEvent": {
                "List": {
                    "TemplateId": "t",
                    "MsgID": msg_id,
                    "ErrorCode": 0,
                    "ErrorStatus": "success",
                }
            }
        }
        return build_xml(OPENID, "event", {"Event": "subscribe_msg_sent_event", **info}, 1)

    ids = {
        read_incoming(Envelope(x, parse_xml(x))).delivery_id for x in (receipt("1"), receipt("2"))
    }
    assert len(ids) == 2


async def test_partial_body_is_not_held_open(app_client: TestClient, platform: Platform) -> None:
    delivery = platform.deliver(Platform.text(OPENID, "帮助"))
    reader, writer = await asyncio.open_connection(app_client.host, app_client.port)
    query = "&".join(f"{k}={v}" for k, v in delivery.query.items())
    writer.write(
        f"POST {WEBHOOK_PATH}?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode()
        + delivery.body[:20]
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    assert b"408" in status_line
    writer.close()
