"""A handler slower than the reply budget: `success` at once, its reply by customer service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient

from bot.app import DISPATCHER, SERVICES, create_app
from bot.dispatcher import Context, Dispatcher, Reply, Router
from bot.platform_sim import Platform
from bot.standin import Record, StandIn
from tests.conftest import OPENID, WeChat, make_settings, start_client

BUDGET_S = 0.5
SLOW_S = 0.8


@dataclass
class Calls:
    """What the slow router's handlers were asked, in order."""

    words: list[str] = field(default_factory=list)


def slow_router(calls: Calls) -> Router:
    router = Router("slow")

    @router.text("慢")
    async def answer_slowly(ctx: Context) -> Reply:
        calls.words.append(ctx.words)
        await asyncio.sleep(SLOW_S)
        return Reply(f"久等了：{ctx.words}")

    @router.text("静")
    async def work_silently(ctx: Context) -> Reply:
        calls.words.append(ctx.words)
        await asyncio.sleep(SLOW_S)
        return Reply()

    @router.text("快")
    async def answer_quickly(ctx: Context) -> Reply:
        calls.words.append(ctx.words)
        return Reply("马上")

    return router


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def client(standin: StandIn, calls: Calls) -> AsyncIterator[TestClient]:
    settings = make_settings(api_base_url=standin.url, reply_budget_s=BUDGET_S)
    app = create_app(settings, with_database=False)
    app[DISPATCHER] = Dispatcher([slow_router(calls)])
    client = await start_client(app)
    await client.app[SERVICES].redis.flushdb()
    yield client
    await client.close()


@pytest.fixture
def wechat(client: TestClient) -> WeChat:
    settings = client.app[SERVICES].settings
    return WeChat(client, Platform(settings.token, settings.app_id, settings.aes_key))


async def customer_service_texts(standin: StandIn, count: int, wait_s: float = 3.0) -> list[str]:
    """Wait until `count` customer-service messages reached the stand-in; return their texts."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if len(standin.sent("custom")) >= count:
            break
        await asyncio.sleep(0.02)
    return [_text(record) for record in standin.sent("custom")]


def _text(record: Record) -> str:
    assert record.body["touser"] == OPENID
    assert record.body["msgtype"] == "text"
    return str(record.body["text"]["content"])


async def test_slow_handler_is_answered_success_then_by_customer_service(
    wechat: WeChat, standin: StandIn
) -> None:
    started = time.monotonic()
    status, body = await wechat.post(Platform.text(OPENID, "慢一点"))
    answered_s = time.monotonic() - started

    assert (status, body) == (200, "success")
    assert BUDGET_S <= answered_s < SLOW_S
    assert standin.sent("custom") == []
    assert await customer_service_texts(standin, 1) == ["久等了：慢一点"]


async def test_fast_handler_replies_passively(wechat: WeChat, standin: StandIn) -> None:
    assert await wechat.say("快") == "马上"

    await asyncio.sleep(0.1)
    assert standin.records == []


async def test_retry_during_overrun_runs_handler_once_and_sends_one_late_reply(
    wechat: WeChat, standin: StandIn, calls: Calls
) -> None:
    xml = Platform.text(OPENID, "慢")

    first, retry = await asyncio.gather(wechat.post(xml), wechat.post(xml))
    again = await wechat.post(xml)

    assert first == retry == again == (200, "success")
    assert await customer_service_texts(standin, 1) == ["久等了：慢"]
    await asyncio.sleep(0.2)
    assert len(standin.sent("custom")) == 1
    assert calls.words == ["慢"]


async def test_slow_handler_with_nothing_to_say_sends_nothing(
    wechat: WeChat, standin: StandIn, calls: Calls
) -> None:
    assert await wechat.post(Platform.text(OPENID, "静")) == (200, "success")

    await asyncio.sleep(SLOW_S + 0.2)
    assert calls.words == ["静"]
    assert standin.records == []


async def test_late_reply_refused_by_the_platform_is_logged(
    wechat: WeChat, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.fail_next("custom", 45015)

    with caplog.at_level(logging.ERROR, logger="bot.app"):
        assert await wechat.post(Platform.text(OPENID, "慢")) == (200, "success")
        await asyncio.sleep(SLOW_S + 0.3)

    assert [r.errcode for r in standin.records if r.kind == "custom"] == [45015]
    assert "late reply failed service=slow" in caplog.text


async def test_shutdown_waits_for_a_late_reply(
    standin: StandIn, calls: Calls, client: TestClient, wechat: WeChat
) -> None:
    assert await wechat.post(Platform.text(OPENID, "慢")) == (200, "success")

    await client.close()

    assert [_text(r) for r in standin.sent("custom")] == ["久等了：慢"]
