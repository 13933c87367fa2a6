"""The webhook end to end: verification, modes, refusals, retries and the shared cases."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import SERVICES, WEBHOOK_PATH, create_app
from bot.dispatcher import Context, Dispatcher, Reply, Router
from bot.platform_sim import Platform
from bot.protocol import parse_xml, sign
from config.settings import Settings
from tests.conftest import CASES_DIR, OLD_AES_KEY, OPENID, WeChat, start_client

CASES = sorted(CASES_DIR.glob("*.xml"))
CASE_XML = {case.name: case.read_text(encoding="utf-8") for case in CASES}


def test_cases_folder_is_found() -> None:
    assert len(CASES) >= 18, CASES_DIR


async def test_get_verification_echoes_echostr_byte_for_byte(app_client: TestClient) -> None:
    echostr = "7138921874562291234"
    query = {"timestamp": "1764900000", "nonce": "n0nce", "echostr": echostr}
    query["signature"] = sign("testtoken", query["timestamp"], query["nonce"])
    response = await app_client.get(WEBHOOK_PATH, params=query)
    assert (response.status, await response.read()) == (200, echostr.encode())


@pytest.mark.parametrize("signature", ["", "0" * 40, None])
async def test_get_verification_with_bad_signature_is_refused(
    app_client: TestClient, signature: str | None
) -> None:
    query = {"timestamp": "1764900000", "nonce": "n0nce", "echostr": "abc"}
    if signature is not None:
        query["signature"] = signature
    response = await app_client.get(WEBHOOK_PATH, params=query)
    assert response.status == 403
    assert "abc" not in await response.text()


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_every_case_gets_a_well_formed_answer(
    app_client: TestClient, settings: Settings, mode: str, case: Path
) -> None:
    platform = Platform(settings.token, settings.app_id, settings.aes_key, mode=mode)
    delivery = platform.deliver(CASE_XML[case.name])
    response = await app_client.post(WEBHOOK_PATH, params=delivery.query, data=delivery.body)
    body = await response.text()
    assert response.status == 200, body
    reply = platform.open_reply(body)
    if reply is not None:
        assert reply["ToUserName"] == "oCITIZEN000000000000000001"
        assert reply["FromUserName"] == "gh_0a1b2c3d4e5f"
        assert reply["MsgType"] in ("text", "transfer_customer_service")
        assert int(reply["CreateTime"]) > 0
        if mode != "plain":
            assert "<Encrypt>" in body


async def test_reply_is_encrypted_with_the_key_that_opened_the_message(
    db: str, settings: Settings
) -> None:
    """During a key rotation the previous key still opens, and the reply uses it too."""
    rotated = replace(settings, aes_key=settings.aes_key, aes_key_previous=OLD_AES_KEY)
    client = await start_client(create_app(rotated, with_database=False))
    try:
        old_platform = Platform(settings.token, settings.app_id, OLD_AES_KEY, mode="safe")
        reply = await WeChat(client, old_platform).say("帮助")
        assert "中心概况" in reply
        new_platform = Platform(settings.token, settings.app_id, settings.aes_key, mode="safe")
        assert "中心概况" in await WeChat(client, new_platform).say("你好")
    finally:
        await client.close()


async def test_message_sealed_with_an_unknown_key_is_refused(
    app_client: TestClient, settings: Settings
) -> None:
    stranger = Platform(settings.token, settings.app_id, OLD_AES_KEY, mode="safe")
    status, _ = await WeChat(app_client, stranger).post(Platform.text(OPENID, "帮助"))
    assert status == 400


async def test_wrong_appid_inside_the_ciphertext_is_refused(
    app_client: TestClient, settings: Settings
) -> None:
    other_account = Platform(settings.token, "wxsomeoneelse0001", settings.aes_key, mode="safe")
    status, _ = await WeChat(app_client, other_account).post(Platform.text(OPENID, "帮助"))
    assert status == 400


async def test_safe_mode_refuses_plain_messages(db: str, settings: Settings) -> None:
    client = await start_client(
        create_app(replace(settings, message_mode="safe"), with_database=False)
    )
    try:
        plain = Platform(settings.token, settings.app_id, settings.aes_key, mode="plain")
        status, _ = await WeChat(client, plain).post(Platform.text(OPENID, "帮助"))
        assert status == 400
        safe = Platform(settings.token, settings.app_id, settings.aes_key, mode="safe")
        assert "中心概况" in await WeChat(client, safe).say("帮助")
    finally:
        await client.close()


async def _dedup_keys(client: TestClient) -> list[str]:
    redis = client.app[SERVICES].redis
    return [k async for k in redis.scan_iter(match=keys.DEDUP_PREFIX + "*")]


@pytest.mark.parametrize(
    "tamper",
    ["signature", "msg_signature", "timestamp", "nonce_missing"],
)
async def test_refused_signatures_leave_no_state(
    app_client: TestClient, platform: Platform, tamper: str
) -> None:
    delivery = platform.deliver(Platform.text(OPENID, "帮助"))
    query = dict(delivery.query)
    if tamper == "nonce_missing":
        del query["nonce"]
    elif tamper == "timestamp":
        query["timestamp"] = str(int(query["timestamp"]) + 1)
    else:
        query[tamper] = "f" * 40
    response = await app_client.post(WEBHOOK_PATH, params=query, data=delivery.body)
    assert response.status in (400, 403)
    assert await _dedup_keys(app_client) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b"<xml><ToUserName>a</ToUserName>",
        b"<root><a>1</a></root>",
        b"<xml></xml>",
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "boom">]><xml><A>&x;</A></xml>',
        b"<!doctype xml><xml/>",
        "<xml><Content>\udcff</Content></xml>".encode("utf-8", "surrogatepass"),
        b"<xml>" + b"<a>" * 5000 + b"x" + b"</a>" * 5000 + b"</xml>",
        b'<?xml version="1.0" encoding="gbk"?><xml><A>1</A></xml>',
    ],
    ids=[
        "text",
        "unclosed",
        "wrong-root",
        "empty",
        "entity",
        "doctype",
        "not-utf8",
        "deep",
        "gbk",
    ],
)
async def test_refused_bodies_get_a_4xx_and_leave_no_state(
    app_client: TestClient, settings: Settings, body: bytes
) -> None:
    plain = Platform(settings.token, settings.app_id, settings.aes_key, mode="plain")
    delivery = plain.deliver("<xml/>")
    response = await app_client.post(WEBHOOK_PATH, params=delivery.query, data=body)
    assert 400 <= response.status < 500
    assert await _dedup_keys(app_client) == []


async def test_body_over_the_cap_is_refused(app_client: TestClient, platform: Platform) -> None:
    huge = Platform.text(OPENID, "取" * 40_000)
    status, _ = await WeChat(app_client, platform).post(huge)
    assert status == 413
    assert await _dedup_keys(app_client) == []


@pytest.mark.parametrize(
    "typed",
    [
        "]]></Content></xml>",
        "<xml><MsgType>text</MsgType></xml>",
        "\x00\x01\x02\x1f\ufffe",
        "😀" * 3000,
        "帮" * 5000,
        "' OR 1=1; DROP TABLE citizen; --",
        "{{ 7 * 7 }} {% raw %}",
        "\u202e\u200b\ufeff",
        "   ",
        "？？？",
    ],
    ids=["cdata-end", "xml", "control", "emoji", "long", "sql", "jinja", "bidi", "blank", "marks"],
)
async def test_anything_a_citizen_types_gets_well_formed_short_xml(
    wechat: WeChat, typed: str
) -> None:
    status, body = await wechat.post(Platform.text(OPENID, typed))
    assert status == 200
    reply = wechat.platform.open_reply(body)
    assert reply is not None and reply["MsgType"] == "text"
    content = reply["Content"]
    assert 0 < len(content.encode("utf-8")) <= 2048
    assert "49" not in content


async def test_three_concurrent_deliveries_run_the_handler_once(
    db: str, settings: Settings, platform: Platform
) -> None:
    runs = []
    router = Router("slow")

    @router.text("慢")
    async def slow(ctx: Context) -> Reply:
        runs.append(ctx.openid)
        await asyncio.sleep(0.3)
        return Reply(f"第{len(runs)}次")

    app = create_app(settings, with_database=False)
    from bot.app import DISPATCHER

    app[DISPATCHER] = Dispatcher([router])
    client = await start_client(app)
    try:
        wechat = WeChat(client, platform)
        xml = Platform.text(OPENID, "慢")
        answers = await asyncio.gather(*(wechat.send(xml) for _ in range(3)))
        assert runs == [OPENID]
        assert [a["Content"] for a in answers if a] == ["第1次"] * 3
        later = await wechat.send(xml)
        assert later is not None and later["Content"] == "第1次"
        assert runs == [OPENID]
    finally:
        await client.close()


async def test_retry_of_an_event_runs_its_handler_once(wechat: WeChat, services) -> None:
    from models.citizen import Citizen

    xml = Platform.event(OPENID, "subscribe", create_time=1764900060)
    first = await wechat.send(xml)
    await Citizen.filter(openid=OPENID).delete()
    again = await wechat.send(xml)
    assert first == again
    assert await Citizen.filter(openid=OPENID).count() == 0


async def test_unsubscribe_marks_the_citizen_gone(wechat: WeChat) -> None:
    from models.citizen import Citizen

    await wechat.send(Platform.event(OPENID, "subscribe"))
    assert (await Citizen.get(openid=OPENID)).is_following
    assert await wechat.send(Platform.event(OPENID, "unsubscribe", create_time=1)) is None
    citizen = await Citizen.get(openid=OPENID)
    assert (citizen.is_following, citizen.unfollowed_at is not None) == (False, True)


async def test_subscribe_welcome_lists_the_services(wechat: WeChat) -> None:
    reply = await wechat.send(Platform.event(OPENID, "subscribe"))
    assert reply is not None
    for name in ("预约办事", "提前取号", "中心概况", "提醒设置"):
        assert name in reply["Content"]


async def test_unknown_event_gets_success(wechat: WeChat) -> None:
    assert await wechat.send(Platform.event(OPENID, "some_future_event")) is None


def test_platform_reply_xml_parses() -> None:
    assert parse_xml("<xml><A>1</A></xml>") == {"A": "1"}
