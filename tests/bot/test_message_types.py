"""Every message type and event of the platform is accepted, and the logs keep no secrets."""

from __future__ import annotations

import logging

import pytest

from bot.cli import OUR_LOGGERS
from bot.platform_sim import Platform, build_xml
from tests.conftest import CASES_DIR, OPENID, WeChat

NOW = 1764900000
MESSAGES = {
    "text": ("text", {"Content": "你好", "MsgId": 1}),
    "image": ("image", {"PicUrl": "http://x/y", "MediaId": "m1", "MsgId": 2}),
    "voice-unrecognised": ("voice", {"MediaId": "m2", "Format": "amr", "MsgId": 3}),
    "voice-recognised": (
        "voice",
        {"MediaId": "m2", "Format": "amr", "Recognition": "几点开门", "MsgId": 4},
    ),
    "video": ("video", {"MediaId": "m3", "ThumbMediaId": "t3", "MsgId": 5}),
    "shortvideo": ("shortvideo", {"MediaId": "m4", "ThumbMediaId": "t4", "MsgId": 6}),
    "location": (
        "location",
        {"Location_X": 22.9, "Location_Y": 113.9, "Scale": 15, "Label": "松山湖", "MsgId": 7},
    ),
    "link": ("link", {"Title": "t", "Description": "d", "Url": "https://x", "MsgId": 8}),
    "unknown-type": ("hologram", {"MsgId": 9}),
}
EVENTS = {
    "subscribe": {},
    "subscribe-scene": {"EventKey": "qrscene_checkin:main", "Ticket": "gQ1"},
    "unsubscribe": {},
    "SCAN": {"EventKey": "checkin:main", "Ticket": "gQ1"},
    "LOCATION": {"Latitude": 22.9, "Longitude": 113.9, "Precision": 65},
    "CLICK": {"EventKey": "HALL_INFO"},
    "CLICK-unknown-key": {"EventKey": "NO_SUCH_KEY"},
    "VIEW": {"EventKey": "https://example.org", "MenuId": 1},
    "scancode_push": {
        "EventKey": "CHECKIN",
        "ScanCodeInfo": {"ScanType": "qrcode", "ScanResult": "https://x"},
    },
    "scancode_waitmsg": {
        "EventKey": "CHECKIN",
        "ScanCodeInfo": {"ScanType": "qrcode", "ScanResult": "checkin:main"},
    },
    "pic_sysphoto": {
        "EventKey": "PIC",
        "SendPicsInfo": {"Count": 1, "PicList": {"item": {"PicMd5Sum": "abc"}}},
    },
    "pic_photo_or_album": {"EventKey": "PIC", "SendPicsInfo": {"Count": 0}},
    "pic_weixin": {"EventKey": "PIC", "SendPicsInfo": {"Count": 0}},
    "location_select": {
        "EventKey": "BRANCH_NEAREST",
        "SendLocationInfo": {
            "Location_X": 22.93,
            "Location_Y": 113.90,
            "Scale": 15,
            "Label": "x",
            "Poiname": "",
        },
    },
    "TEMPLATESENDJOBFINISH": {"MsgID": 123, "Status": "failed: system failed"},
    "subscribe_msg_popup_event": {
        "SubscribeMsgPopupEvent": {
            "List": {"TemplateId": "t1", "SubscribeStatusString": "reject", "PopupScene": 2}
        }
    },
    "subscribe_msg_change_event": {
        "SubscribeMsgChangeEvent": {
            "List": {"TemplateId": "t1", "SubscribeStatusString": "reject"}
        }
    },
    "subscribe_msg_sent_event": {
        "SubscribeMsgSentEvent": {
            "List": {"TemplateId": "t1", "MsgID": "1", "ErrorCode": 0, "ErrorStatus": "success"}
        }
    },
    "future_event": {},
}


@pytest.mark.parametrize("name", list(MESSAGES))
async def test_every_message_type_gets_an_answer(wechat: WeChat, name: str) -> None:
    msg_type, fields = MESSAGES[name]
    status, body = await wechat.post(build_xml(OPENID, msg_type, fields, NOW))
    assert status == 200, body
    reply = wechat.platform.open_reply(body)
    assert reply is None or reply["MsgType"] in ("text", "transfer_customer_service")


async def test_text_and_recognised_voice_reach_the_same_service(wechat: WeChat) -> None:
    typed = await wechat.say("帮助")
    spoken = await wechat.send(Platform.voice(OPENID, "帮助。"))
    assert spoken is not None and spoken["Content"] == typed


@pytest.mark.parametrize("name", list(EVENTS))
async def test_every_event_gets_an_answer(wechat: WeChat, name: str) -> None:
    event = name.split("-")[0]
    status, body = await wechat.post(
        build_xml(OPENID, "event", {"Event": event, **EVENTS[name]}, NOW)
    )
    assert status == 200, body
    reply = wechat.platform.open_reply(body)
    assert reply is None or reply["MsgType"] in ("text", "transfer_customer_service")


async def test_location_reports_get_no_reply(wechat: WeChat) -> None:
    xml = build_xml(OPENID, "event", {"Event": "LOCATION", **EVENTS["LOCATION"]}, NOW)
    assert await wechat.send(xml) is None


async def test_logs_keep_no_openid_token_or_key(
    wechat: WeChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name in OUR_LOGGERS:  # as `python -m bot -v` logs
        caplog.set_level(logging.DEBUG, logger=name)
    for case in sorted(CASES_DIR.glob("*.xml")):
        xml = case.read_text(encoding="utf-8").replace("oCITIZEN000000000000000001", OPENID)
        await wechat.post(xml)
    await wechat.say("我的电话是13800138000")
    text = caplog.text
    platform = wechat.platform
    for secret in (OPENID, platform.token, platform.aes_key, "13800138000", "test-secret"):
        assert secret not in text
    assert text.count("message handled") >= 19


async def test_asking_for_help_is_not_called_not_understood(wechat: WeChat) -> None:
    """The help words once got "没能理解“帮助”" in front of the list."""
    assert "没能理解" not in await wechat.say("帮助")
    assert "没能理解“火星签证”" in await wechat.say("火星签证")


async def test_help_list_numbers_can_be_replied(wechat: WeChat) -> None:
    """The help list was numbered, but replying "10" got "not understood"."""
    await wechat.say("帮助")
    assert await wechat.say("10") == await wechat.tap("HALL_INFO")


async def test_other_words_after_help_are_routed_afresh(wechat: WeChat) -> None:
    await wechat.say("帮助")
    assert await wechat.say("中心概况") == await wechat.tap("HALL_INFO")
    assert "没能理解“99”" in await wechat.say("99")
