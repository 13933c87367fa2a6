"""投诉建议 in chat: write, attach pictures, submit for a case number, see the answer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient

from bot.platform_sim import Platform, build_xml
from models.feedback import Complaint, parse_case_no
from models.notice import Notice
from tests.bot.test_staff_api import ADMIN, W01, post
from tests.conftest import OPENID, WeChat
from tests.models.test_queue import MONDAY_10, local

_pictures = iter(range(10**6))


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


def picture(openid: str = OPENID) -> str:
    n = next(_pictures)
    fields = {"PicUrl": f"http://mmbiz.example/pic{n}", "MediaId": f"media{n}", "MsgId": 900 + n}
    return build_xml(openid, "image", fields, int(time.time()))


async def send_picture(wechat: WeChat) -> str:
    reply = await wechat.send(picture())
    assert reply is not None
    return str(reply["Content"])


def case_no_in(text: str) -> str:
    found = re.search(r"TS\d{6}", text)
    assert found, text
    return found.group(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("TS000012", ("TS", 12)), ("查询ts12", ("TS", 12)), ("hc000003", ("HC", 3)), ("TS", None)],
)
def test_case_numbers_are_read_however_typed(text: str, expected: Any) -> None:
    assert parse_case_no(text) == expected


async def test_write_attach_and_submit_gives_a_case_number(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    intro = await wechat.tap("COMPLAINT")
    assert "提交" in intro

    draft = await wechat.say("周一上午2号窗口工作人员离岗半小时")
    added = await send_picture(wechat)
    second = await send_picture(wechat)
    filed = await wechat.say("提交")

    assert "提交" in draft and "共 1 张" in added and "共 2 张" in second
    case_no = case_no_in(filed)
    complaint = await Complaint.get()
    assert complaint.case_no == case_no
    assert complaint.text == "周一上午2号窗口工作人员离岗半小时"
    assert len(complaint.images) == 2
    assert all(i["pic_url"].startswith("http://mmbiz.example/pic") for i in complaint.images)
    assert all(i["media_id"].startswith("media") for i in complaint.images)
    # Five working days after Monday 2 March 2026.
    assert complaint.due_at == local(9, 23, 59, 59)
    assert "2026-03-09" in filed


async def test_picture_outside_the_dialog_is_not_attached(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    reply = await send_picture(wechat)

    assert "图片" in reply and "文字" in reply
    assert not await Complaint.exists()


async def test_words_after_the_keyword_start_the_draft(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    draft = await wechat.say("建议：自助区增加一台打印机")

    assert "自助区增加一台打印机" in draft
    await wechat.say("提交")
    complaint = await Complaint.get()
    assert (complaint.kind, complaint.text) == ("suggestion", "自助区增加一台打印机")


async def test_too_short_text_is_not_submitted(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("COMPLAINT")

    assert "至少" in await wechat.say("太慢")
    assert "至少" in await wechat.say("提交")
    assert not await Complaint.exists()


async def test_cancel_leaves_nothing(wechat: WeChat, clock: time_machine.Coordinates) -> None:
    await wechat.tap("COMPLAINT")
    await wechat.say("等候区空调太冷了")
    await send_picture(wechat)

    reply = await wechat.say("取消")

    assert "已取消" in reply
    assert not await Complaint.exists()
    assert "案件编号" not in await wechat.say("提交")
    assert not await Complaint.exists()


async def test_service_word_while_writing_is_not_added(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("COMPLAINT")
    await wechat.say("等候区空调太冷了")

    reply = await wechat.say("取号")
    await wechat.say("提交")

    assert "取消" in reply
    assert (await Complaint.get()).text == "等候区空调太冷了"


async def test_tenth_picture_is_refused(wechat: WeChat, clock: time_machine.Coordinates) -> None:
    await wechat.tap("COMPLAINT")
    for _ in range(9):
        await send_picture(wechat)

    refused = await send_picture(wechat)
    await wechat.say("共九张照片请查看")
    await wechat.say("提交")

    assert "最多" in refused
    assert len((await Complaint.get()).images) == 9


async def test_look_up_shows_state_then_the_pushed_answer(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("COMPLAINT")
    await wechat.say("停车场指示牌看不清楚")
    case_no = case_no_in(await wechat.say("提交"))
    complaint = await Complaint.get()

    before = await wechat.say(case_no)
    listed = await wechat.say("我的投诉")
    status, body = await post(
        app_client, f"/admin/complaints/{complaint.id}/answer", ADMIN, {"answer": "已更换指示牌"}
    )
    after = await wechat.say(case_no.lower())

    assert "办理中" in before and "2026-03-09" in before
    assert case_no in listed
    assert (status, body["status"], body["case_no"]) == (200, "answered", case_no)
    notice = await Notice.get(ref=f"complaint:{complaint.id}", kind="complaint_answered")
    assert notice.openid == OPENID
    assert notice.data["fields"]["thing4"] == f"回复“{case_no}”查看答复详情"
    assert "已答复" in after and "已更换指示牌" in after


async def test_answer_twice_is_refused(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.say("投诉 窗口排队时有人插队没人管")
    await wechat.say("提交")
    complaint = await Complaint.get()
    path = f"/admin/complaints/{complaint.id}/answer"

    first, _ = await post(app_client, path, ADMIN, {"answer": "已加强巡查"})
    second, body = await post(app_client, path, ADMIN, {"answer": "再答一次"})
    empty, _ = await post(app_client, "/admin/complaints/999/answer", ADMIN, {"answer": "x"})
    blank, _ = await post(app_client, path, ADMIN, {"answer": " "})
    window, _ = await post(app_client, path, W01, {"answer": "x"})

    assert (first, second, body["error"]) == (200, 409, "already_answered")
    assert (empty, blank, window) == (404, 400, 403)
    assert (await Complaint.get()).answer == "已加强巡查"
    assert await Notice.filter(kind="complaint_answered").count() == 1


async def test_citizen_sees_only_their_own_cases(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    other = WeChat(wechat.client, wechat.platform, "oOTHER00000000000000000001")
    await other.say("投诉 大厅里太吵了希望安静")
    case_no = case_no_in(await other.say("提交"))

    reply = await wechat.say(case_no)

    assert "没有找到" in reply
    assert "大厅里太吵" not in reply


async def test_admin_lists_open_cases_with_pictures(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("COMPLAINT")
    await send_picture(wechat)
    await wechat.say("饮水机没有热水")
    await wechat.say("提交")

    response = await app_client.get("/api/staff/admin/complaints", headers=ADMIN)
    body = await response.json()

    (case,) = body["cases"]
    assert case["text"] == "饮水机没有热水" and case["status"] == "open"
    assert case["images"][0]["pic_url"].startswith("http://mmbiz.example/")
    assert case["is_overdue"] is False
    assert OPENID not in str(body)


async def test_voice_message_writes_the_draft(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("COMPLAINT")

    reply = await wechat.send(Platform.voice(OPENID, "希望周末多开几个窗口。"))

    assert reply is not None and "希望周末多开几个窗口" in reply["Content"]


async def test_stale_draft_times_out_politely(
    wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.tap("COMPLAINT")
    await wechat.say("自助打印机卡纸了")
    clock.shift(11 * 60)

    reply = await wechat.say("提交")

    assert "超时" in reply
    assert not await Complaint.exists()


async def test_long_answer_still_ends_with_what_to_do_next(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.say("投诉 " + "窗口办理太慢" * 80)
    case_no = case_no_in(await wechat.say("提交"))
    complaint = await Complaint.get()
    await post(
        app_client, f"/admin/complaints/{complaint.id}/answer", ADMIN, {"answer": "已整改" * 600}
    )

    reply = await wechat.say(case_no)

    assert len(reply.encode()) < 2000
    assert reply.endswith("回复“帮助”查看全部服务，或点击下方菜单。")
