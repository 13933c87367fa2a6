"""A dialog may decline words (PassOn) and may take a picture as its answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from bot.app import DISPATCHER, create_app
from bot.dispatcher import Context, Dispatcher, PassOn, Reply, Router
from bot.platform_sim import Platform, build_xml
from config.settings import Settings
from handlers import welcome
from tests.conftest import OPENID, WeChat, start_client

router = Router("ask")


@router.text("问年龄")
async def ask_age(ctx: Context) -> Reply:
    await ctx.dialog.start("ask:age")
    return Reply("几岁？")


@router.dialog("ask:age")
async def take_age(ctx: Context) -> Reply:
    if not ctx.words.isdigit():
        raise PassOn
    await ctx.dialog.finish()
    return Reply(f"{ctx.words}岁")


@router.dialog("ask:age/image")
async def take_photo(ctx: Context) -> Reply:
    return Reply(f"照片{ctx.incoming.raw.get('MediaId')}")


@router.text("天气")
async def weather(ctx: Context) -> Reply:
    return Reply("晴")


@router.text("坏")
async def passes_on_without_a_dialog(ctx: Context) -> Reply:
    raise PassOn


@pytest.fixture
async def chat(db: str, settings: Settings, platform: Platform) -> AsyncIterator[WeChat]:
    app = create_app(settings, with_database=False)
    app[DISPATCHER] = Dispatcher([router, welcome.router])
    client: TestClient = await start_client(app)
    yield WeChat(client, platform)
    await client.close()


def picture(media_id: str) -> str:
    fields = {"PicUrl": "http://mmbiz.example/p", "MediaId": media_id, "MsgId": 77}
    return build_xml(OPENID, "image", fields, int(time.time()))


async def test_declined_words_go_to_their_own_service(chat: WeChat) -> None:
    await chat.say("问年龄")

    assert await chat.say("天气") == "晴"
    # The dialog was left: a number is no answer to it now (16 is past the help list).
    assert "没能理解" in await chat.say("16")


async def test_words_the_dialog_takes_stay_in_it(chat: WeChat) -> None:
    await chat.say("问年龄")

    assert await chat.say("12") == "12岁"


async def test_picture_goes_to_the_dialog_that_takes_it(chat: WeChat) -> None:
    await chat.say("问年龄")

    reply = await chat.send(picture("m1"))

    assert reply is not None and reply["Content"] == "照片m1"


async def test_picture_without_a_dialog_is_explained(chat: WeChat) -> None:
    reply = await chat.send(picture("m2"))

    assert reply is not None and "图片" in reply["Content"]


async def test_pass_on_outside_a_dialog_is_a_fault_not_a_loop(chat: WeChat) -> None:
    reply = await chat.say("坏")

    assert "系统开了个小差" in reply
