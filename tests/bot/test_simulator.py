"""`python -m bot chat`: typed lines become signed deliveries; replies and pushes are shown."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

import handlers
from bot.dispatcher import Context, Reply, Router
from bot.platform_sim import Platform
from bot.protocol import parse_xml
from bot.redis_conn import connect_redis
from bot.simulator import (
    ERROR_PREFIX,
    PUSH_PREFIX,
    REPLY_PREFIX,
    Simulator,
    StandInPushes,
    block,
    chat_session,
    display_width,
    find_menu_item,
    serve_in_process,
)
from bot.standin import StandIn
from config.menu import entries
from config.settings import CONFIG_DIR, Settings
from tests.conftest import CASES_DIR, OLD_AES_KEY

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 0.5
LONG_VALUE = "松山湖市民服务中心一楼综合窗口第十二号窗口请您前往办理"


def helper_router() -> Router:
    """Answers that no service gives yet: a hand-over, a late reply and a template push."""
    router = Router("sim_test")

    @router.text("找人工")
    async def ask_for_agent(ctx: Context) -> Reply:
        return Reply(is_transfer=True)

    @router.text("慢慢来")
    async def answer_late(ctx: Context) -> Reply:
        await asyncio.sleep(BUDGET_S + 0.3)
        return Reply("久等了")

    @router.text("回声")
    async def echo(ctx: Context) -> Reply:
        return Reply(ctx.incoming.text)

    @router.text("发通知")
    async def push_template(ctx: Context) -> Reply:
        data = {"first": {"value": "不显示"}, "place": {"value": LONG_VALUE}}
        body = {"touser": ctx.openid, "template_id": "TPL_CALLED", "data": data}
        await ctx.services.api.call("/cgi-bin/message/template/send", body)
        return Reply("已通知")

    return router


@pytest.fixture
async def quick(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with a short reply budget, for an app that includes the helper router."""
    if settings.redis_url:  # a token left by another test's stand-in would be refused once
        redis = connect_redis(settings.redis_url)
        await redis.flushdb()
        await redis.aclose()
    services = handlers.all_routers
    monkeypatch.setattr(handlers, "all_routers", lambda: [helper_router(), *services()])
    return replace(settings, reply_budget_s=BUDGET_S)


@pytest.fixture
async def sim(quick: Settings) -> AsyncIterator[Simulator]:
    """A chat with a webhook and a stand-in started in this process, as `python -m bot chat`."""
    async with chat_session(quick, settle_s=0.1) as simulator:
        yield simulator


async def pushed_later(sim: Simulator, within_s: float = 3.0) -> list[str]:
    """Press Enter until something was pushed, as one waiting for a late answer does."""
    deadline = time.monotonic() + within_s
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        lines = await sim.send_line("")
        await asyncio.sleep(0.05)
    return lines


def standin_of(sim: Simulator) -> StandIn:
    assert isinstance(sim.pushes, StandInPushes)
    return sim.pushes.standin


async def test_typed_text_shows_the_reply_aligned(sim: Simulator) -> None:
    lines = await sim.send_line("帮助")

    assert lines[0].startswith(REPLY_PREFIX)
    assert any("中心概况" in line for line in lines)
    indent = " " * display_width(REPLY_PREFIX)
    assert all(line.startswith(indent) or not line for line in lines[1:])


def test_blank_reply_lines_carry_no_trailing_spaces() -> None:
    assert block(REPLY_PREFIX, "上\n\n下") == [REPLY_PREFIX + "上", "", " " * 8 + "下"]


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_every_mode_is_sealed_and_opened(sim: Simulator, mode: str) -> None:
    assert await sim.send_line(f"/mode {mode}") == [f"-- deliveries are now sealed in {mode} mode"]

    lines = await sim.send_line("帮助")

    assert lines[0].startswith(REPLY_PREFIX), lines
    assert sim.failures == 0


async def test_delivery_sealed_with_another_key_is_shown_refused(sim: Simulator) -> None:
    ours = sim.platform
    stranger = Platform(ours.token, ours.app_id, OLD_AES_KEY, mode="safe")
    other = Simulator(stranger, sim.url, sim.session, openid=sim.openid)

    lines = await other.send_line("帮助")

    assert lines == [
        f"{ERROR_PREFIX}HTTP 400: ciphertext does not open with any key for this appid"
    ]
    assert other.failures == 1


async def test_transfer_and_no_reply_are_named(sim: Simulator) -> None:
    assert await sim.send_line("找人工") == [REPLY_PREFIX + "[转人工客服]"]
    assert await sim.send_line("/unfollow") == [REPLY_PREFIX + "[success: 无被动回复]"]


async def test_late_reply_is_shown_as_a_customer_service_push(sim: Simulator) -> None:
    assert await sim.send_line("慢慢来") == [REPLY_PREFIX + "[success: 无被动回复]"]

    lines = await pushed_later(sim)

    assert lines == [PUSH_PREFIX + "[客服消息]", " " * display_width(PUSH_PREFIX) + "久等了"]
    assert await sim.send_line("") == []


async def test_template_push_shows_what_the_citizen_sees(sim: Simulator) -> None:
    lines = await sim.send_line("发通知")

    indent = " " * display_width(PUSH_PREFIX)
    assert lines == [
        REPLY_PREFIX + "已通知",
        PUSH_PREFIX + "[模板消息 TPL_CALLED]",
        indent + "place: " + LONG_VALUE[:20] + "…",
    ]


async def test_push_refused_by_the_platform_is_marked(sim: Simulator) -> None:
    standin_of(sim).unfollowed.add(sim.openid)

    lines = await sim.send_line("发通知")

    assert lines[0].startswith(REPLY_PREFIX)
    pushed = [line for line in lines if line.startswith(PUSH_PREFIX)]
    assert pushed == [
        PUSH_PREFIX + "[模板消息 TPL_CALLED 未送达: errcode=43004 require subscribe]"
    ]


async def test_push_to_another_citizen_names_them(sim: Simulator) -> None:
    other = Simulator(sim.platform, sim.url, sim.session, openid="oOTHER")
    await other.send_line("发通知")

    lines = await sim.send_line("")

    assert lines[0] == PUSH_PREFIX + "[模板消息 TPL_CALLED → oOTHER]"


def test_menu_entry_is_found_by_number_key_and_name() -> None:
    by_number = find_menu_item("5")

    assert by_number is not None
    assert by_number.key == "CHECKIN"
    assert find_menu_item("checkin") == find_menu_item("到厅签到") == by_number
    assert find_menu_item("16") is None
    assert find_menu_item("NOPE") is None


async def test_menu_lists_fifteen_numbered_entries(sim: Simulator) -> None:
    lines = await sim.send_line("/menu")

    numbered = [line.split() for line in lines if re.match(r"\s+\d+\s", line)]
    assert [int(parts[0]) for parts in numbered] == list(range(1, 16))
    assert [parts[1] for parts in numbered] == list(entries())
    assert [parts[2] for parts in numbered] == [e.name for e in entries().values()]


async def test_tap_sends_the_event_of_the_entry_type(sim: Simulator) -> None:
    click = parse_xml(sim._tap_xml(find_menu_item("HALL_INFO"), ""))  # type: ignore[arg-type]
    scan = parse_xml(sim._tap_xml(find_menu_item("5"), "checkin:south"))  # type: ignore[arg-type]

    assert (click["Event"], click["EventKey"]) == ("CLICK", "HALL_INFO")
    assert (scan["Event"], scan["EventKey"]) == ("scancode_waitmsg", "CHECKIN")
    assert scan["ScanCodeInfo"] == {"ScanType": "qrcode", "ScanResult": "checkin:south"}


async def test_taps_within_one_second_are_two_deliveries(sim: Simulator) -> None:
    item = find_menu_item("HALL_INFO")
    assert item is not None

    times = [int(parse_xml(sim._tap_xml(item, ""))["CreateTime"]) for _ in range(3)]

    assert times[0] < times[1] < times[2]


async def test_unknown_command_and_bad_arguments_show_usage(sim: Simulator) -> None:
    unknown = await sim.send_line("/dance")
    bad_location = await sim.send_line("/loc north")
    missing = await sim.send_line("/tap NOPE")

    assert unknown[0] == "-- unknown command /dance"
    assert any(line.lstrip().startswith("/tap") for line in unknown)
    assert bad_location[0].startswith("-- usage: /loc LAT LON")
    assert missing == ["-- no menu entry 'NOPE'; /menu lists them"]
    assert sim.failures == 0


async def test_double_slash_sends_a_text_beginning_with_slash(sim: Simulator) -> None:
    assert await sim.send_line("//回声 //") == [REPLY_PREFIX + "/回声 //"]


async def test_raw_case_file_is_posted_as_it_is(sim: Simulator) -> None:
    for case in sorted(CASES_DIR.glob("*.xml")):
        lines = await sim.send_line(f"/raw {case}")
        assert lines and lines[0].startswith(REPLY_PREFIX), (case.name, lines)

    assert (await sim.send_line("/raw /nonexistent.xml"))[0].startswith("-- cannot read")


async def test_quit_ends_the_chat(sim: Simulator) -> None:
    assert await sim.send_line("/quit") == []
    assert sim.is_finished


async def test_running_webhook_and_standin_are_reached_by_url(quick: Settings) -> None:
    async with (
        serve_in_process(quick) as (url, standin),
        chat_session(quick, url=url, standin_url=standin.url, settle_s=0.1) as sim,
    ):
        lines = await sim.send_line("发通知")

    assert lines[0] == REPLY_PREFIX + "已通知"
    assert lines[1] == PUSH_PREFIX + "[模板消息 TPL_CALLED]"


async def test_remote_records_are_never_asked_of_the_real_platform(settings: Settings) -> None:
    real = replace(settings, api_base_url="https://api.weixin.qq.com")

    async with chat_session(real, url="http://127.0.0.1:9/wechat") as sim:
        assert sim.pushes is None


async def test_unreachable_webhook_is_reported(settings: Settings) -> None:
    nowhere = "http://127.0.0.1:9"
    async with chat_session(settings, url=nowhere + "/wechat", standin_url=nowhere) as sim:
        lines = await sim.send_line("帮助")

    assert lines[0].startswith(ERROR_PREFIX + "cannot reach http://127.0.0.1:9/wechat")
    assert sim.failures == 1


def chat_config(tmp_path: Path) -> Path:
    """Write config/dev.toml with a database of the test's own."""
    config = tmp_path / "chat.toml"
    dev = (CONFIG_DIR / "dev.toml").read_text(encoding="utf-8")
    database = f'database_url = "sqlite://{tmp_path / "chat.sqlite3"}"'
    config.write_text(re.sub(r"(?m)^database_url = .*$", database, dev), encoding="utf-8")
    return config


def run_chat(config: Path, *args: str, typed: str = "") -> tuple[int, str, str]:
    """Run `python -m bot chat` as a new user would; return its exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "BOT_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env["PYTHONIOENCODING"] = "ascii"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "-c", str(config), "chat", *args],
        input=typed.encode("utf-8"),
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=30,
    )
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8", "replace")


def test_chat_command_reads_stdin_and_survives_a_non_utf8_locale(tmp_path: Path) -> None:
    typed = "帮助\n/menu\n/tap 10\n/quit\n不会发出\n"

    code, out, err = run_chat(chat_config(tmp_path), typed=typed)

    assert code == 0, err
    assert "你> 帮助\n公众号> " in out
    assert re.search(r"^\s+15\s+REMINDERS\s+提醒设置$", out, re.MULTILINE)
    assert "你> /tap 10\n公众号> " in out
    assert "不会发出" not in out
    assert " INFO " not in err  # log lines would break into the chat


def test_chat_steps_exit_non_zero_when_a_delivery_is_refused(tmp_path: Path) -> None:
    code, out, err = run_chat(
        chat_config(tmp_path), "--say", "帮助", "--mode", "plain", "--say", "帮助"
    )

    assert code == 1, err
    assert out.splitlines()[1].startswith(REPLY_PREFIX)
    assert "你> 帮助\n错误> HTTP 400: safe mode accepts encrypted messages only" in out


async def test_every_kind_of_delivery_is_accepted(sim: Simulator) -> None:
    lines = [
        "/voice 帮助",
        "/loc 22.93 113.90 松山湖",
        "/scan checkin:main",
        "/follow checkin:main",
        "/follow",
        "/tap 5",
        "/unfollow",
    ]
    for line in lines:
        shown = await sim.send_line(line)
        assert shown[0].startswith(REPLY_PREFIX), (line, shown)

    assert sim.failures == 0


def test_step_options_become_lines_in_their_order() -> None:
    from bot.cli import _parser

    argv = ["chat", "--say", "取号", "--tap", "HALL_INFO", "--say", "/x", "--unfollow"]
    argv += ["--follow", "--follow", "checkin:main", "--loc", "22.9 113.9 松山湖"]

    steps = _parser().parse_args(argv).steps

    assert steps == [
        "取号",
        "/tap HALL_INFO",
        "//x",
        "/unfollow",
        "/follow",
        "/follow checkin:main",
        "/loc 22.9 113.9 松山湖",
    ]


async def test_body_arriving_in_pieces_is_read_whole(settings: Settings) -> None:
    platform = Platform(settings.token, settings.app_id, settings.aes_key, mode="safe")
    delivery = platform.deliver(Platform.text("oPIECES", "帮助"))

    async def in_pieces() -> AsyncIterator[bytes]:
        yield delivery.body[:40]
        await asyncio.sleep(0.05)  # the rest arrives later, as over a real network
        yield delivery.body[40:]

    async with serve_in_process(settings) as (url, _), aiohttp.ClientSession() as session:
        response = await session.post(url, params=delivery.query, data=in_pieces())
        body = await response.text()

    assert response.status == 200, body
    reply = platform.open_reply(body)
    assert reply is not None
    assert "中心概况" in reply["Content"]
