"""Multi-step dialogs: numbered choices, leaving with 取消 or a menu tap, and timeouts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import time_machine
from aiohttp.test_utils import TestClient

from bot.app import DISPATCHER, create_app
from bot.dispatcher import Context, Dispatcher, Reply, Router
from bot.platform_sim import Platform
from config.settings import Settings
from handlers import welcome
from tests.conftest import OPENID, WeChat, start_client

router = Router("pick")
COLOURS = ["红", "绿", "蓝"]


@router.text("选颜色")
async def ask_colour(ctx: Context) -> Reply:
    await ctx.dialog.start("pick:colour", asked_at=1)
    return Reply("请选择：" + " ".join(f"{i}.{c}" for i, c in enumerate(COLOURS, 1)))


@router.dialog("pick:colour")
async def take_colour(ctx: Context) -> Reply:
    if not ctx.words.isdigit() or not 1 <= int(ctx.words) <= len(COLOURS):
        return Reply("请回复1-3的数字，或回复“取消”退出")
    await ctx.dialog.go("pick:confirm", colour=COLOURS[int(ctx.words) - 1])
    return Reply(f"确认选择{ctx.dialog.data['colour']}吗？回复“是”确认")


@router.dialog("pick:confirm")
async def confirm_colour(ctx: Context) -> Reply:
    colour = ctx.dialog.data["colour"]
    await ctx.dialog.finish()
    return Reply(f"已选择{colour}" if ctx.words == "是" else "未确认，已退出")


@router.menu("OTHER")
async def other_service(ctx: Context) -> Reply:
    return Reply("其他服务")


@pytest.fixture
async def client(db: str, settings: Settings) -> AsyncIterator[TestClient]:
    app = create_app(settings, with_database=False)
    app[DISPATCHER] = Dispatcher([router, welcome.router])
    client = await start_client(app)
    yield client
    await client.close()


@pytest.fixture
def chat(client: TestClient, platform: Platform) -> WeChat:
    return WeChat(client, platform)


async def test_numbered_choice_then_confirm(chat: WeChat) -> None:
    assert "1.红" in await chat.say("选颜色")
    assert await chat.say(" ２ ") == "确认选择绿吗？回复“是”确认"
    assert await chat.say("是") == "已选择绿"
    assert "中心概况" in await chat.say("是")  # the dialog is over: back to normal routing


async def test_bad_choice_is_asked_again_and_loses_nothing(chat: WeChat) -> None:
    await chat.say("选颜色")
    assert "1-3" in await chat.say("9")
    assert "1-3" in await chat.say("绿色吧")
    assert "确认选择红" in await chat.say("1")


@pytest.mark.parametrize("word", ["取消", "取消。", "CANCEL", " 退出 "])
async def test_cancel_word_leaves_the_dialog(chat: WeChat, word: str) -> None:
    await chat.say("选颜色")
    assert "已取消" in await chat.say(word)
    assert "中心概况" in await chat.say("随便说说")


async def test_menu_tap_leaves_the_dialog(chat: WeChat) -> None:
    await chat.say("选颜色")
    assert await chat.tap("OTHER") == "其他服务"
    assert "中心概况" in await chat.say("随便说说")


async def test_stale_dialog_times_out_politely(chat: WeChat, settings: Settings) -> None:
    await chat.say("选颜色")
    with time_machine.travel(time.time() + settings.dialog_ttl_s + 5):
        assert "超时" in await chat.say("2")
        assert "中心概况" in await chat.say("随便说说")


async def test_dialogs_of_two_citizens_do_not_mix(client: TestClient, platform: Platform) -> None:
    first, second = WeChat(client, platform), WeChat(client, platform, openid=OPENID + "2")
    await first.say("选颜色")
    assert "中心概况" in await second.say("随便说说")
    assert "确认选择红" in await first.say("1")
