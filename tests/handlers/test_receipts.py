"""Receipts from the platform: template delivery results and subscription consent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.platform_sim import build_xml
from models.citizen import Citizen
from models.notice import Notice, NoticeConsent
from tests.conftest import CASES_DIR, WeChat

CASE_OPENID = "oCITIZEN000000000000000001"


def case(name: str) -> str:
    return (CASES_DIR / name).read_text(encoding="utf-8")


async def sent_notice(msgid: str, openid: str = CASE_OPENID, ref: str = "ticket:1") -> Notice:
    return await Notice.create(
        kind="ticket_called",
        ref=ref,
        openid=openid,
        status="sent",
        template_id="tmpl_ticket_called_0001",
        client_msg_id=f"ticket_called:{ref}",
        msgid=msgid,
        attempts=1,
        sent_at=datetime.now(UTC),
    )


def subscription_event(event: str, container: str, items: list[dict[str, str]]) -> str:
    """A subscription event with its items, each as a <List> element, as the platform posts."""
    lists = "".join(
        "<List>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in item.items()) + "</List>"
        for item in items
    )
    xml = build_xml(CASE_OPENID, "event", {"Event": event}, 1764900200)
    return xml.replace("</xml>", f"<{container}>{lists}</{container}></xml>")


async def test_success_receipt_marks_notice_delivered(wechat: WeChat) -> None:
    notice = await sent_notice("2800000000000000001")

    assert await wechat.send(case("event_templatesendjobfinish_ok.xml")) is None

    notice = await Notice.get(id=notice.id)
    assert notice.status == "delivered"
    assert notice.delivered_at is not None


async def test_user_block_receipt_blocks_notice_and_unfollows_citizen(wechat: WeChat) -> None:
    await Citizen.follow(CASE_OPENID, datetime.now(UTC))
    notice = await sent_notice("2800000000000000002")

    assert await wechat.send(case("event_templatesendjobfinish_blocked.xml")) is None

    notice = await Notice.get(id=notice.id)
    assert (notice.status, notice.last_error) == ("blocked", "failed:user block")
    assert not (await Citizen.get(openid=CASE_OPENID)).is_following


async def test_system_failed_receipt_fails_notice(wechat: WeChat) -> None:
    notice = await sent_notice("2800000000000000003")
    xml = build_xml(
        CASE_OPENID,
        "event",
        {"Event": "TEMPLATESENDJOBFINISH", "MsgID": 2800000000000000003},
        1764900180,
    ).replace("</xml>", "<Status><![CDATA[failed: system failed]]></Status></xml>")

    assert await wechat.send(xml) is None

    assert (await Notice.get(id=notice.id)).status == "failed"


async def test_receipt_of_another_citizen_changes_nothing(wechat: WeChat) -> None:
    notice = await sent_notice("2800000000000000001", openid="oSOMEONE_ELSE00000000000001")

    assert await wechat.send(case("event_templatesendjobfinish_ok.xml")) is None

    assert (await Notice.get(id=notice.id)).status == "sent"


async def test_receipt_for_unknown_msgid_is_answered_success(wechat: WeChat) -> None:
    assert await wechat.send(case("event_templatesendjobfinish_ok.xml")) is None
    assert await Notice.all().count() == 0


async def test_popup_with_one_template_records_consent(wechat: WeChat) -> None:
    assert await wechat.send(case("event_subscribe_msg_popup.xml")) is None

    consent = await NoticeConsent.get(openid=CASE_OPENID, template_id="tmpl_queue_near_0001")
    assert (consent.is_accepted, consent.source) == (True, "popup")


async def test_popup_with_several_templates_records_each(wechat: WeChat) -> None:
    xml = subscription_event(
        "subscribe_msg_popup_event",
        "SubscribeMsgPopupEvent",
        [
            {"TemplateId": "tmpl_a", "SubscribeStatusString": "accept", "PopupScene": "2"},
            {"TemplateId": "tmpl_b", "SubscribeStatusString": "reject", "PopupScene": "2"},
        ],
    )

    assert await wechat.send(xml) is None

    answers = await NoticeConsent.filter(openid=CASE_OPENID).order_by("template_id")
    assert [(a.template_id, a.is_accepted) for a in answers] == [
        ("tmpl_a", True),
        ("tmpl_b", False),
    ]


async def test_change_event_turns_consent_off(wechat: WeChat) -> None:
    await wechat.send(case("event_subscribe_msg_popup.xml"))
    xml = subscription_event(
        "subscribe_msg_change_event",
        "SubscribeMsgChangeEvent",
        [{"TemplateId": "tmpl_queue_near_0001", "SubscribeStatusString": "reject"}],
    )

    assert await wechat.send(xml) is None

    consent = await NoticeConsent.get(openid=CASE_OPENID, template_id="tmpl_queue_near_0001")
    assert (consent.is_accepted, consent.source) == (False, "change")
    assert await NoticeConsent.all().count() == 1


@pytest.mark.parametrize(
    ("errcode", "status", "is_accepted"),
    [("0", "delivered", None), ("43101", "blocked", False), ("10005", "failed", None)],
)
async def test_subscription_sent_event_updates_its_notice(
    wechat: WeChat, errcode: str, status: str, is_accepted: bool | None
) -> None:
    notice = await sent_notice("1700827132819554304")
    xml = subscription_event(
        "subscribe_msg_sent_event",
        "SubscribeMsgSentEvent",
        [
            {
                "TemplateId": "tmpl_ticket_called_0001",
                "MsgID": "1700827132819554304",
                "ErrorCode": errcode,
                "ErrorStatus": "success" if errcode == "0" else "failed",
            }
        ],
    )

    assert await wechat.send(xml) is None

    assert (await Notice.get(id=notice.id)).status == status
    consent = await NoticeConsent.get_or_none(
        openid=CASE_OPENID, template_id="tmpl_ticket_called_0001"
    )
    assert (consent.is_accepted if consent else None) == is_accepted


async def test_popup_without_items_is_answered_success(wechat: WeChat) -> None:
    xml = build_xml(CASE_OPENID, "event", {"Event": "subscribe_msg_popup_event"}, 1764900300)

    assert await wechat.send(xml) is None
    assert await NoticeConsent.all().count() == 0
