"""The WeChat API client against the stand-in: the shared token, the sends, the errors."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
import time
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import pytest
import redis.asyncio as aioredis

from bot import keys, wechat_api
from bot.errors import WeChatAPIError, WeChatTransportError
from bot.standin import StandIn
from bot.wechat_api import WeChatAPI
from tests.conftest import OPENID, TEST_REDIS_URL, make_settings

ROOT = Path(__file__).resolve().parents[2]
TOKEN_PATH = "/cgi-bin/stable_token"

Connect = Callable[[], aioredis.Redis]
MakeAPI = Callable[..., WeChatAPI]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Open clients of one Redis, flushed: each client stands for one process."""
    server = fakeredis.FakeServer()
    clients: list[aioredis.Redis] = []

    def open_client() -> aioredis.Redis:
        if TEST_REDIS_URL:
            client = aioredis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        else:
            client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
        clients.append(client)
        return client

    await open_client().flushdb()
    yield open_client
    for client in clients:
        await client.aclose()


@pytest.fixture
async def make_api(standin: StandIn, connect: Connect) -> AsyncIterator[MakeAPI]:
    """Build clients pointed at the stand-in, each with its own HTTP session."""
    sessions: list[aiohttp.ClientSession] = []
    shared = connect()

    def build(
        redis: aioredis.Redis | None = None, timeout_s: float = 5.0, **overrides: Any
    ) -> WeChatAPI:
        settings = make_settings(**{"api_base_url": standin.url, **overrides})
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
        sessions.append(session)
        return WeChatAPI(settings, redis or shared, session)

    yield build
    for session in sessions:
        await session.close()


@pytest.fixture
async def api(make_api: MakeAPI) -> WeChatAPI:
    return make_api()


async def test_token_is_fetched_once_and_kept_in_redis(api: WeChatAPI, standin: StandIn) -> None:
    first = await api.access_token()
    second = await api.access_token()

    assert first == second
    [call] = standin.sent("token")
    assert call.path == TOKEN_PATH
    assert call.body["appid"] == api.settings.app_id
    assert call.body["force_refresh"] is False
    assert await api.redis.get(keys.TOKEN_KEY) == first
    ttl_s = await api.redis.ttl(keys.TOKEN_KEY)
    assert 7200 - keys.TOKEN_EARLY_S - 5 <= ttl_s <= 7200 - keys.TOKEN_EARLY_S


async def test_fifty_concurrent_callers_make_one_token_call(
    api: WeChatAPI, standin: StandIn
) -> None:
    standin.delay_next("token", 0.2)

    tokens = await asyncio.gather(*(api.access_token() for _ in range(50)))

    assert len(set(tokens)) == 1
    assert len(standin.sent("token")) == 1


async def test_two_processes_sharing_redis_make_one_token_call(
    make_api: MakeAPI, connect: Connect, standin: StandIn
) -> None:
    one, two = make_api(redis=connect()), make_api(redis=connect())
    standin.delay_next("token", 0.2)

    tokens = await asyncio.gather(*(api.access_token() for _ in range(25) for api in (one, two)))

    assert len(set(tokens)) == 1
    assert len(standin.sent("token")) == 1
    assert await one.redis.get(keys.TOKEN_LOCK_KEY) is None


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs a Redis that two processes can share")
async def test_two_os_processes_make_one_token_call(standin: StandIn, connect: Connect) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, aiohttp, redis.asyncio as aioredis
        from bot.wechat_api import WeChatAPI
        from tests.conftest import make_settings

        async def main():
            redis = aioredis.Redis.from_url({TEST_REDIS_URL!r}, decode_responses=True)
            async with aiohttp.ClientSession() as session:
                api = WeChatAPI(make_settings(api_base_url={standin.url!r}), redis, session)
                tokens = await asyncio.gather(*(api.access_token() for _ in range(20)))
            await redis.aclose()
            print(len(set(tokens)), tokens[0])

        asyncio.run(main())
        """
    )
    standin.delay_next("token", 0.5)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [(await p.communicate())[0].decode().split() for p in processes]

    assert [p.returncode for p in processes] == [0, 0]
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == "1"
    assert len(standin.sent("token")) == 1


async def test_token_error_refreshes_with_force_and_retries_once(
    api: WeChatAPI, standin: StandIn
) -> None:
    old = await api.access_token()
    standin.fail_next("custom", 40001)

    await api.send_text(OPENID, "您好")

    refresh = standin.sent("token")[-1]
    assert refresh.body["force_refresh"] is True
    assert await api.redis.get(keys.TOKEN_KEY) != old
    [sent] = standin.sent("custom")
    assert sent.query["access_token"] == await api.redis.get(keys.TOKEN_KEY)


async def test_expired_token_is_replaced_without_force(api: WeChatAPI, standin: StandIn) -> None:
    old = await api.access_token()
    standin.expire_tokens()  # Redis still holds it: the platform's clock ran ahead of ours

    await api.send_text(OPENID, "您好")

    assert [r.errcode for r in standin.records if r.kind == "custom"] == [42001, 0]
    refresh = standin.sent("token")[-1]
    assert refresh.body["force_refresh"] is False
    assert await api.redis.get(keys.TOKEN_KEY) not in (None, old)


async def test_token_rejected_for_many_sends_forces_one_refresh(
    make_api: MakeAPI, connect: Connect, standin: StandIn
) -> None:
    one, two = make_api(redis=connect()), make_api(redis=connect())
    await one.access_token()
    await _force_refresh_elsewhere(standin)  # our cached token is now dead
    before = len(standin.sent("token"))

    await asyncio.gather(*(api.send_text(OPENID, "您好") for _ in range(5) for api in (one, two)))

    assert [r.body["force_refresh"] for r in standin.sent("token")[before:]] == [True]
    assert len(standin.sent("custom")) == 10


async def _force_refresh_elsewhere(standin: StandIn) -> None:
    """Force a new token as another holder of the account's secret would."""
    account = make_settings()
    body = {
        "grant_type": "client_credential",
        "appid": account.app_id,
        "secret": account.app_secret,
        "force_refresh": True,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(standin.url + TOKEN_PATH, json=body) as response,
    ):
        assert "access_token" in await response.json()


async def test_token_rejected_twice_raises(api: WeChatAPI, standin: StandIn) -> None:
    standin.fail_next("custom", 40001, times=2)

    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text(OPENID, "您好")

    assert caught.value.errcode == 40001
    assert caught.value.is_token_error
    assert standin.sent("custom") == []
    assert len(standin.sent("token")) == 2


async def test_other_errors_are_not_retried(api: WeChatAPI, standin: StandIn) -> None:
    standin.fail_next("custom", -1)

    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text(OPENID, "您好")

    assert caught.value.is_retryable
    assert not caught.value.is_token_error
    assert len([r for r in standin.records if r.kind == "custom"]) == 1


@pytest.mark.parametrize("errcode", [43004, 40003])
async def test_not_follower_errors_say_so(api: WeChatAPI, standin: StandIn, errcode: int) -> None:
    standin.fail_next("template", errcode)

    with pytest.raises(WeChatAPIError) as caught:
        await api.send_template(OPENID, "tpl", {"thing1": "x"}, client_msg_id="m1")

    assert caught.value.is_not_follower
    assert not caught.value.is_retryable
    assert caught.value.path == "/cgi-bin/message/template/send"


async def test_unfollowed_citizen_gets_43004(api: WeChatAPI, standin: StandIn) -> None:
    standin.unfollowed.add(OPENID)

    with pytest.raises(WeChatAPIError) as caught:
        await api.send_subscription(OPENID, "tpl", {"thing1": "x"})

    assert caught.value.errcode == 43004
    assert caught.value.is_not_follower


async def test_send_text_posts_a_customer_service_text(api: WeChatAPI, standin: StandIn) -> None:
    await api.send_text(OPENID, "您的号码 A001 已叫到")

    [sent] = standin.sent("custom")
    assert sent.body == {
        "touser": OPENID,
        "msgtype": "text",
        "text": {"content": "您的号码 A001 已叫到"},
    }


async def test_send_template_shapes_data_and_returns_msgid(
    api: WeChatAPI, standin: StandIn
) -> None:
    msgid = await api.send_template(
        OPENID,
        "tpl-called",
        {"character_string1": "A001", "thing2": "3号窗口"},
        client_msg_id="called:42",
        url="https://example.org/t/42",
    )

    [sent] = standin.sent("template")
    assert sent.body == {
        "touser": OPENID,
        "template_id": "tpl-called",
        "data": {"character_string1": {"value": "A001"}, "thing2": {"value": "3号窗口"}},
        "client_msg_id": "called:42",
        "url": "https://example.org/t/42",
    }
    assert msgid == str(sent.answer["msgid"])


async def test_template_resend_with_same_client_msg_id_reaches_citizen_once(
    api: WeChatAPI, standin: StandIn
) -> None:
    first = await api.send_template(OPENID, "tpl", {"thing1": "x"}, client_msg_id="n1")
    again = await api.send_template(OPENID, "tpl", {"thing1": "x"}, client_msg_id="n1")

    assert first == again
    assert len(standin.sent("template")) == 1
    assert [r.duplicate for r in standin.records if r.kind == "template"] == [False, True]


async def test_template_field_too_long_warns_without_its_value(
    api: WeChatAPI, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    long_value = "松山湖市民服务中心一楼综合窗口请携带身份证原件办理"
    with caplog.at_level(logging.WARNING, logger="bot.wechat_api"):
        await api.send_template(OPENID, "tpl", {"thing3": long_value}, client_msg_id="m")

    assert "key=thing3" in caplog.text
    assert f"chars={len(long_value)}" in caplog.text
    assert long_value not in caplog.text


async def test_send_subscription_posts_bizsend(api: WeChatAPI, standin: StandIn) -> None:
    msgid = await api.send_subscription(
        OPENID, "sub-remind", {"thing1": "明早 9:30 预约"}, page="pages/booking"
    )

    [sent] = standin.sent("subscribe")
    assert sent.body == {
        "touser": OPENID,
        "template_id": "sub-remind",
        "data": {"thing1": {"value": "明早 9:30 预约"}},
        "page": "pages/booking",
    }
    assert msgid == str(sent.answer["msgid"])


async def test_send_notice_picks_the_channel(api: WeChatAPI, standin: StandIn) -> None:
    data = {"thing1": "x"}
    await api.send_notice("template", OPENID, "t", data, client_msg_id="k", link="https://a.b")
    await api.send_notice("subscribe", OPENID, "s", data, client_msg_id="k", link="pages/x")

    [template] = standin.sent("template")
    [subscribe] = standin.sent("subscribe")
    assert (template.body["url"], template.body["client_msg_id"]) == ("https://a.b", "k")
    assert subscribe.body["page"] == "pages/x"
    with pytest.raises(ValueError, match="channel"):
        await api.send_notice("sms", OPENID, "t", data, client_msg_id="k")  # type: ignore[arg-type]


async def test_create_menu_then_get_it(api: WeChatAPI, standin: StandIn) -> None:
    from config.menu import load_menu, platform_payload

    payload = platform_payload(load_menu())
    await api.create_menu(payload)

    assert standin.sent("menu")[0].body == payload
    assert (await api.get_menu())["menu"] == payload


async def test_menu_name_over_16_bytes_raises_40018(api: WeChatAPI) -> None:
    payload = {"button": [{"type": "click", "name": "市民服务中心概况", "key": "K"}]}

    with pytest.raises(WeChatAPIError) as caught:
        await api.create_menu(payload)

    assert caught.value.errcode == 40018


async def test_create_qrcode_permanent_and_temporary(api: WeChatAPI, standin: StandIn) -> None:
    permanent = await api.create_qrcode("window:W01")
    again = await api.create_qrcode("window:W01")
    temporary = await api.create_qrcode("hall:main", permanent=False, expire_s=3600)

    assert permanent == again
    assert set(permanent) == {"ticket", "url"}
    assert temporary["expire_seconds"] == 3600
    assert temporary["ticket"] != permanent["ticket"]
    bodies = [r.body for r in standin.sent("qrcode")]
    assert bodies[0] == {
        "action_name": "QR_LIMIT_STR_SCENE",
        "action_info": {"scene": {"scene_str": "window:W01"}},
    }
    assert bodies[2]["action_name"] == "QR_STR_SCENE"


@pytest.mark.parametrize(
    ("scene", "options"),
    [("", {}), ("x" * 65, {}), ("ok", {"permanent": False, "expire_s": 31 * 24 * 3600})],
)
async def test_create_qrcode_refuses_bad_arguments_before_calling(
    api: WeChatAPI, standin: StandIn, scene: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        await api.create_qrcode(scene, **options)

    assert standin.records == []


async def test_http_error_page_raises_transport_error(api: WeChatAPI, standin: StandIn) -> None:
    await api.access_token()
    standin.break_next("custom", status=502)

    with pytest.raises(WeChatTransportError) as caught:
        await api.send_text(OPENID, "您好")

    assert caught.value.status == 502
    assert caught.value.is_retryable


async def test_non_json_answer_raises_transport_error(api: WeChatAPI, standin: StandIn) -> None:
    standin.break_next("template", status=200, body="<html>维护中</html>")

    with pytest.raises(WeChatTransportError) as caught:
        await api.send_template(OPENID, "tpl", {"thing1": "x"}, client_msg_id="m")

    assert caught.value.reason == "answer is not JSON"
    assert caught.value.path == "/cgi-bin/message/template/send"


async def test_slow_answer_raises_transport_error(make_api: MakeAPI, standin: StandIn) -> None:
    api = make_api(timeout_s=0.2)
    await api.access_token()
    standin.delay_next("custom", 1.0)

    with pytest.raises(WeChatTransportError) as caught:
        await api.send_text(OPENID, "您好")

    assert caught.value.reason == "timeout"
    assert caught.value.is_retryable


async def test_unreachable_api_raises_transport_error(make_api: MakeAPI) -> None:
    api = make_api(api_base_url="http://127.0.0.1:9")

    with pytest.raises(WeChatTransportError) as caught:
        await api.access_token()

    assert caught.value.path == TOKEN_PATH
    assert caught.value.status is None


async def test_transport_error_hides_the_token(api: WeChatAPI, standin: StandIn) -> None:
    token = await api.access_token()
    standin.break_next("custom", status=500)

    with pytest.raises(WeChatTransportError) as caught:
        await api.send_text(OPENID, "您好")

    shown = "".join(traceback.format_exception(caught.value))
    assert token not in shown
    assert "access_token" not in shown


async def test_wrong_secret_raises_40125_without_the_secret(
    make_api: MakeAPI, standin: StandIn
) -> None:
    api = make_api(app_secret="wrong-secret-value")

    with pytest.raises(WeChatAPIError) as caught:
        await api.access_token()

    assert caught.value.errcode == 40125
    assert "wrong-secret-value" not in str(caught.value)
    assert await api.redis.get(keys.TOKEN_KEY) is None


async def test_token_and_secret_are_never_logged(
    api: WeChatAPI, standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await api.send_text(OPENID, "您好")
        standin.fail_next("custom", 40001)
        await api.send_text(OPENID, "您好")
        standin.expire_tokens()
        await api.send_text(OPENID, "您好")

    issued = [r.answer["access_token"] for r in standin.sent("token")]
    assert len(issued) == 3
    assert "refreshed" in caplog.text
    for secret in [*issued, api.settings.app_secret]:
        assert secret not in caplog.text


async def test_lock_left_by_a_dead_process_expires(api: WeChatAPI, standin: StandIn) -> None:
    await api.redis.set(keys.TOKEN_LOCK_KEY, "dead-process", px=300)
    started = time.monotonic()

    token = await api.access_token()

    assert time.monotonic() - started >= 0.25
    assert token == standin.sent("token")[0].answer["access_token"]


async def test_refresh_keeps_a_lock_it_no_longer_holds(
    api: WeChatAPI, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "TOKEN_LOCK_TTL_S", 1)
    standin.delay_next("token", 1.3)

    async def take_over() -> None:
        await asyncio.sleep(1.1)
        assert await api.redis.set(keys.TOKEN_LOCK_KEY, "next-process", nx=True, ex=5)

    await asyncio.gather(api.access_token(), take_over())

    assert await api.redis.get(keys.TOKEN_LOCK_KEY) == "next-process"


async def test_waiting_for_the_lock_times_out(
    api: WeChatAPI, standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wechat_api, "TOKEN_WAIT_S", 0.2)
    await api.redis.set(keys.TOKEN_LOCK_KEY, "stuck-process", ex=30)

    with pytest.raises(WeChatAPIError) as caught:
        await api.access_token()

    assert caught.value.is_retryable
    assert standin.records == []


async def test_a_cancelled_caller_does_not_cancel_the_shared_refresh(
    api: WeChatAPI, standin: StandIn
) -> None:
    standin.delay_next("token", 0.2)
    first = asyncio.ensure_future(api.access_token())
    second = asyncio.ensure_future(api.access_token())
    await asyncio.sleep(0.05)
    first.cancel()

    token = await second

    assert token == standin.sent("token")[0].answer["access_token"]
    assert first.cancelled()
