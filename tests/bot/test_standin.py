"""The WeChat API stand-in answers as the platform does and tells what it received."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.standin import STANDIN, Record, StandIn, read_records, run_beside, template_view
from config.menu import load_menu, platform_payload
from tests.conftest import OPENID, make_settings

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = make_settings()


class Clock:
    """A clock the test moves on by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def clock(standin: StandIn) -> Clock:
    clock = Clock()
    standin.clock = clock
    return clock


class Caller:
    """Calls the stand-in as raw HTTP, the way any client would."""

    def __init__(self, standin: StandIn, http: aiohttp.ClientSession) -> None:
        self.standin = standin
        self.http = http

    async def post(
        self, path: str, body: Any, *, token: str | None = None, raw: bytes | None = None
    ) -> dict[str, Any]:
        params = {"access_token": token} if token is not None else {}
        url = self.standin.url + path
        data = raw if raw is not None else None
        async with self.http.post(url, params=params, json=None if raw else body, data=data) as r:
            result: dict[str, Any] = await r.json()
            return result

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        async with self.http.get(self.standin.url + path, params=params) as response:
            result: dict[str, Any] = await response.json()
            return result

    async def stable_token(self, *, force: bool = False, **overrides: Any) -> dict[str, Any]:
        body = {
            "grant_type": "client_credential",
            "appid": ACCOUNT.app_id,
            "secret": ACCOUNT.app_secret,
            "force_refresh": force,
        }
        return await self.post("/cgi-bin/stable_token", body | overrides)

    async def token(self) -> str:
        return str((await self.stable_token())["access_token"])

    async def send(self, kind: str, body: dict[str, Any], token: str | None = None) -> int:
        path = {
            "custom": "/cgi-bin/message/custom/send",
            "template": "/cgi-bin/message/template/send",
            "subscribe": "/cgi-bin/message/subscribe/bizsend",
            "menu": "/cgi-bin/menu/create",
            "qrcode": "/cgi-bin/qrcode/create",
        }[kind]
        answer = await self.post(path, body, token=token or await self.token())
        return int(answer.get("errcode", 0))


@pytest.fixture
def caller(standin: StandIn, http: aiohttp.ClientSession) -> Caller:
    return Caller(standin, http)


def text_body(content: str = "您好", openid: str = OPENID) -> dict[str, Any]:
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


def template_body(client_msg_id: str = "", openid: str = OPENID) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": openid,
        "template_id": "tpl",
        "data": {"thing1": {"value": "A001"}},
    }
    if client_msg_id:
        body["client_msg_id"] = client_msg_id
    return body


def menu_of(*buttons: dict[str, Any]) -> dict[str, Any]:
    return {"button": list(buttons)}


def click(name: str = "取号", key: str = "K") -> dict[str, Any]:
    return {"type": "click", "name": name, "key": key}


# Tokens


async def test_stable_token_is_the_same_while_valid(caller: Caller, standin: StandIn) -> None:
    first = await caller.stable_token()
    second = await caller.stable_token()

    assert first["access_token"] == second["access_token"]
    assert 7190 <= second["expires_in"] <= 7200
    assert [r.kind for r in standin.sent("token")] == ["token", "token"]


async def test_forced_stable_token_is_new_and_ends_the_old(caller: Caller) -> None:
    old = await caller.token()

    new = (await caller.stable_token(force=True))["access_token"]

    assert new != old
    assert await caller.send("custom", text_body(), token=old) == 40001
    assert await caller.send("custom", text_body(), token=new) == 0


async def test_forced_refresh_over_the_daily_limit_is_45009(caller: Caller) -> None:
    answers = [await caller.stable_token(force=True) for _ in range(21)]

    assert all("access_token" in a for a in answers[:20])
    assert answers[20]["errcode"] == 45009


async def test_expired_stable_token_is_replaced(caller: Caller, clock: Clock) -> None:
    old = await caller.token()
    clock.now += 7201

    assert await caller.send("custom", text_body(), token=old) == 42001
    assert await caller.token() != old


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [({"appid": "wxother"}, 40013), ({"secret": "nope"}, 40125), ({"grant_type": "x"}, 40002)],
)
async def test_token_calls_check_the_account(
    caller: Caller, overrides: dict[str, Any], errcode: int
) -> None:
    answer = await caller.stable_token(**overrides)

    assert answer["errcode"] == errcode
    assert "access_token" not in answer


async def test_plain_token_call_checks_the_account(caller: Caller) -> None:
    good = {"grant_type": "client_credential", "appid": ACCOUNT.app_id}
    wrong = await caller.get("/cgi-bin/token", **good, secret="nope")
    right = await caller.get("/cgi-bin/token", **good, secret=ACCOUNT.app_secret)

    assert wrong["errcode"] == 40125
    assert right["expires_in"] == 7200


async def test_plain_token_call_keeps_the_old_token_five_minutes(
    caller: Caller, clock: Clock
) -> None:
    query = {"grant_type": "client_credential", "appid": ACCOUNT.app_id}
    query["secret"] = ACCOUNT.app_secret
    old = (await caller.get("/cgi-bin/token", **query))["access_token"]
    new = (await caller.get("/cgi-bin/token", **query))["access_token"]
    assert new != old

    clock.now += 299
    assert await caller.send("custom", text_body(), token=old) == 0
    clock.now += 2
    assert await caller.send("custom", text_body(), token=old) == 42001
    assert await caller.send("custom", text_body(), token=new) == 0


async def test_an_empty_account_accepts_any_appid(http: aiohttp.ClientSession) -> None:
    stand_in = StandIn()
    await stand_in.start()
    try:
        answer = await Caller(stand_in, http).stable_token(appid="wxany", secret="any")
    finally:
        await stand_in.stop()

    assert "access_token" in answer


@pytest.mark.parametrize(
    ("token", "errcode"), [("", 41001), ("made-up", 40001)], ids=["missing", "unknown"]
)
async def test_every_call_checks_the_token(caller: Caller, token: str, errcode: int) -> None:
    for kind, body in [("custom", text_body()), ("template", template_body())]:
        answer = await caller.post(
            f"/cgi-bin/message/{kind}/send", body, token=token if token else None
        )
        assert answer["errcode"] == errcode


async def test_no_access_token_at_all_is_41001(caller: Caller) -> None:
    answer = await caller.get("/cgi-bin/menu/get")

    assert answer["errcode"] == 41001


# Sends


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (text_body(openid=""), 40003),
        ({"touser": OPENID, "msgtype": "fax"}, 40008),
        (text_body(content=""), 44004),
        (text_body(), 0),
    ],
    ids=["no-openid", "bad-type", "empty", "ok"],
)
async def test_custom_send_checks_the_message(
    caller: Caller, standin: StandIn, body: dict[str, Any], errcode: int
) -> None:
    assert await caller.send("custom", body) == errcode
    assert len(standin.sent("custom")) == (1 if errcode == 0 else 0)


async def test_custom_send_to_an_unfollowed_citizen_is_45015(
    caller: Caller, standin: StandIn
) -> None:
    standin.unfollowed.add(OPENID)

    assert await caller.send("custom", text_body()) == 45015
    assert await caller.send("template", template_body()) == 43004
    assert await caller.send("subscribe", template_body()) == 43004


@pytest.mark.parametrize(
    ("change", "errcode"),
    [
        ({"template_id": ""}, 40037),
        ({"data": "A001"}, 47001),
        ({"data": {"thing1": "A001"}}, 47003),
        ({"data": {"thing1": {"value": 1}}}, 47003),
    ],
)
async def test_notices_check_template_and_data(
    caller: Caller, standin: StandIn, change: dict[str, Any], errcode: int
) -> None:
    assert await caller.send("template", template_body() | change) == errcode
    assert await caller.send("subscribe", template_body() | change) == errcode
    assert standin.sent("template") == standin.sent("subscribe") == []


async def test_same_client_msg_id_within_ten_minutes_is_sent_once(
    caller: Caller, standin: StandIn, clock: Clock
) -> None:
    token = await caller.token()
    path = "/cgi-bin/message/template/send"
    first = await caller.post(path, template_body("called:1"), token=token)
    clock.now += 599
    again = await caller.post(path, template_body("called:1"), token=token)
    other = await caller.post(path, template_body("called:1", openid="oOther"), token=token)
    clock.now += 2
    later = await caller.post(path, template_body("called:1"), token=token)

    assert again == first
    assert other["msgid"] != first["msgid"]
    assert later["msgid"] != first["msgid"]
    assert len(standin.sent("template")) == 3
    assert [r.duplicate for r in standin.records if r.kind == "template"] == [
        False,
        True,
        False,
        False,
    ]


async def test_template_without_client_msg_id_is_sent_each_time(
    caller: Caller, standin: StandIn
) -> None:
    await caller.send("template", template_body())
    await caller.send("template", template_body())

    assert len(standin.sent("template")) == 2


def test_template_view_shows_what_the_citizen_sees() -> None:
    body = {
        "data": {
            "first": {"value": "您好"},
            "thing1": {"value": "松山湖市民服务中心一楼综合受理窗口三号办理"},
            "time2": {"value": "09:30"},
            "remark": {"value": "请准时"},
        }
    }

    shown = template_view(Record("/cgi-bin/message/template/send", {}, body, 0.0))

    assert shown == {"thing1": "松山湖市民服务中心一楼综合受理窗口三号办…", "time2": "09:30"}


# Menu


async def test_menu_from_config_is_accepted_and_returned(caller: Caller, standin: StandIn) -> None:
    payload = platform_payload(load_menu())
    token = await caller.token()

    assert (await caller.get("/cgi-bin/menu/get", access_token=token))["errcode"] == 46003
    assert await caller.send("menu", payload, token) == 0
    assert (await caller.get("/cgi-bin/menu/get", access_token=token))["menu"] == payload
    assert standin.menu == payload


@pytest.mark.parametrize(
    ("menu", "errcode"),
    [
        (menu_of(), 40016),
        (menu_of(*[click(key=f"K{i}") for i in range(4)]), 40016),
        (menu_of(click(name="市民服务中心概况")), 40018),
        (menu_of(click(name="")), 40018),
        (menu_of({"type": "fax", "name": "x"}), 40017),
        (menu_of(click(key="")), 40019),
        (menu_of({"type": "view", "name": "x", "url": "ftp://x"}), 40020),
        (menu_of({"name": "办事", "sub_button": [click(key=f"K{i}") for i in range(6)]}), 40023),
        (menu_of({"name": "办事", "sub_button": [{"type": "fax", "name": "x"}]}), 40024),
        (menu_of({"name": "办事", "sub_button": [click(name="办" * 21)]}), 40025),
        (menu_of({"name": "办事", "sub_button": [click(key="k" * 129)]}), 40026),
        (menu_of({"name": "办事", "sub_button": [{"type": "view", "name": "x"}]}), 40027),
        (menu_of({"name": "办事", "sub_button": [click(name="办" * 20, key="k" * 128)]}), 0),
    ],
)
async def test_menu_create_checks_the_limits(
    caller: Caller, standin: StandIn, menu: dict[str, Any], errcode: int
) -> None:
    assert await caller.send("menu", menu) == errcode
    assert (standin.menu is not None) == (errcode == 0)


# QR codes


async def test_permanent_qrcode_is_the_same_for_a_scene(caller: Caller) -> None:
    token = await caller.token()
    body = {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "w:1"}}}
    other = {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 7}}}

    first = await caller.post("/cgi-bin/qrcode/create", body, token=token)
    again = await caller.post("/cgi-bin/qrcode/create", body, token=token)
    by_id = await caller.post("/cgi-bin/qrcode/create", other, token=token)

    assert first == again
    assert "expire_seconds" not in first
    assert first["url"].startswith("http://weixin.qq.com/q/")
    assert by_id["ticket"] != first["ticket"]


async def test_temporary_qrcode_expires(caller: Caller) -> None:
    token = await caller.token()
    body = {"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "hall"}}}

    default = await caller.post("/cgi-bin/qrcode/create", body, token=token)
    month = await caller.post(
        "/cgi-bin/qrcode/create", body | {"expire_seconds": 2592000}, token=token
    )

    assert default["expire_seconds"] == 60
    assert month["expire_seconds"] == 2592000
    assert default["ticket"] != month["ticket"]


@pytest.mark.parametrize(
    "body",
    [
        {"action_name": "QR_ANY", "action_info": {"scene": {"scene_str": "x"}}},
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "x" * 65}}},
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {}},
        {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100_001}}},
    ],
)
async def test_qrcode_create_checks_its_arguments(caller: Caller, body: dict[str, Any]) -> None:
    assert await caller.send("qrcode", body) == 40097


# Faults on demand


async def test_fail_next_by_kind_or_path_for_some_calls(caller: Caller, standin: StandIn) -> None:
    token = await caller.token()
    standin.fail_next("custom", -1, times=2)
    standin.fail_next("cgi-bin/message/template/send", 45009, errmsg="quota")

    customs = [await caller.send("custom", text_body(), token) for _ in range(3)]
    answer = await caller.post("/cgi-bin/message/template/send", template_body(), token=token)

    assert customs == [-1, -1, 0]
    assert answer == {"errcode": 45009, "errmsg": "quota"}
    assert len(standin.sent("custom")) == 1
    assert [r.errcode for r in standin.records if r.kind == "custom"] == [-1, -1, 0]


async def test_fail_next_on_token_fails_both_token_paths(caller: Caller) -> None:
    caller.standin.fail_next("token", -1)

    assert (await caller.stable_token())["errcode"] == -1
    assert "access_token" in await caller.stable_token()


async def test_delay_next_holds_the_answer(caller: Caller) -> None:
    token = await caller.token()
    caller.standin.delay_next("/cgi-bin/message/custom/send", 0.3)

    started = time.monotonic()
    await caller.send("custom", text_body(), token)
    held_s = time.monotonic() - started
    await caller.send("custom", text_body(), token)

    assert held_s >= 0.3
    assert time.monotonic() - started - held_s < 0.25


async def test_break_next_answers_an_error_page(
    caller: Caller, http: aiohttp.ClientSession
) -> None:
    caller.standin.break_next("custom", status=503, body="busy")
    url = caller.standin.url + "/cgi-bin/message/custom/send"

    async with http.post(url, json=text_body()) as response:
        assert (response.status, await response.text()) == (503, "busy")
    [record] = caller.standin.records
    assert record.status == 503
    assert caller.standin.sent("custom") == []


async def test_a_body_that_is_not_json_is_47001(caller: Caller) -> None:
    token = await caller.token()

    answer = await caller.post("/cgi-bin/message/custom/send", None, token=token, raw=b"{oops")

    assert answer["errcode"] == 47001


def test_sent_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        StandIn().sent("sms")


async def test_clear_forgets_records_and_faults_but_keeps_tokens(
    caller: Caller, standin: StandIn
) -> None:
    token = await caller.token()
    await caller.send("template", template_body("n1"), token)
    standin.fail_next("custom", -1)

    standin.clear()

    assert standin.records == []
    assert await caller.send("custom", text_body(), token) == 0
    assert await caller.send("template", template_body("n1"), token) == 0
    assert len(standin.sent("template")) == 1


# Control endpoints, for other processes


async def test_control_endpoints_read_fail_and_clear(
    caller: Caller, http: aiohttp.ClientSession
) -> None:
    base = caller.standin.url + "/_standin"
    token = await caller.token()
    async with http.post(base + "/fail_next", json={"path": "custom", "errcode": 45015}) as r:
        assert r.status == 200
    assert await caller.send("custom", text_body(), token) == 45015
    assert await caller.send("custom", text_body("第二条"), token) == 0

    everything = await caller.get("/_standin/records")
    sent = await read_records(caller.standin.url, "custom", session=http)

    assert [r["kind"] for r in everything["records"]] == ["token", "custom", "custom"]
    assert [r.body["text"]["content"] for r in sent] == ["第二条"]
    async with http.post(base + "/clear") as r:
        assert r.status == 200
    assert await read_records(caller.standin.url) == []


async def test_control_delay_next_and_bad_requests(
    caller: Caller, http: aiohttp.ClientSession
) -> None:
    base = caller.standin.url + "/_standin"
    async with http.post(base + "/delay_next", json={"path": "token", "seconds": 0.2}) as r:
        assert r.status == 200
    started = time.monotonic()
    await caller.token()
    assert time.monotonic() - started >= 0.2

    async with http.post(base + "/fail_next", data=b"nope") as r:
        assert r.status == 400
    async with http.get(base + "/records", params={"kind": "sms"}) as r:
        assert r.status == 400


async def test_records_round_trip_through_json(
    caller: Caller, http: aiohttp.ClientSession
) -> None:
    await caller.send("template", template_body("n1"))
    await caller.send("template", template_body("n1"))

    remote = await read_records(caller.standin.url, session=http)

    assert [(r.path, r.query, r.body, r.duplicate, r.errcode) for r in remote] == [
        (r.path, r.query, r.body, r.duplicate, r.errcode) for r in caller.standin.records
    ]
    assert [r.at for r in remote] == pytest.approx([r.at for r in caller.standin.records])


async def test_stand_in_never_logs_tokens(
    caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="bot.standin"):
        token = await caller.token()
        await caller.send("custom", text_body(), token)

    assert "answered" in caplog.text
    assert token not in caplog.text
    assert ACCOUNT.app_secret not in caplog.text


# Running beside the webhook, and alone


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_beside_lives_as_long_as_the_app(http: aiohttp.ClientSession) -> None:
    port = free_port()
    settings = make_settings(api_base_url=f"http://127.0.0.1:{port}")
    app = web.Application()
    run_beside(app, settings)
    runner = web.AppRunner(app)
    await runner.setup()

    stand_in = app[STANDIN]
    answer = await Caller(stand_in, http).stable_token()
    await runner.cleanup()

    assert stand_in.url == f"http://127.0.0.1:{port}"
    assert "access_token" in answer
    with pytest.raises(aiohttp.ClientConnectionError):
        await Caller(stand_in, http).stable_token()


def test_run_beside_leaves_a_remote_api_alone(caplog: pytest.LogCaptureFixture) -> None:
    app = web.Application()

    run_beside(app, make_settings(api_base_url="https://api.weixin.qq.com"))

    assert STANDIN not in app
    assert len(app.cleanup_ctx) == 0
    assert "not started" in caplog.text


async def test_cli_runs_the_stand_in_until_terminated(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    config = tmp_path / "standin.toml"
    config.write_text(
        f'token = "t0ken"\napp_id = "wxcli"\napp_secret = "cli-secret"\nmessage_mode = "plain"\n'
        f'api_base_url = "http://127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "-c", str(config), "standin", cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stand_in = StandIn(port=port)
        stand_in.url = f"http://127.0.0.1:{port}"
        answer = await _when_up(Caller(stand_in, http), appid="wxcli", secret="cli-secret")
        wrong = await Caller(stand_in, http).stable_token()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)

    assert "access_token" in answer
    assert wrong["errcode"] == 40013
    assert process.returncode == 0
    assert b"api stand-in listening" in stderr
    assert b"cli-secret" not in stderr


async def _when_up(caller: Caller, **overrides: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        try:
            return await caller.stable_token(**overrides)
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
