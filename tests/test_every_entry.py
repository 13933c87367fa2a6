"""All 15 menu entries and every word of config/menu.toml get a real answer from their service."""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator

import pytest
import time_machine

from bot.platform_sim import Platform
from config.menu import MenuEntry, entries
from handlers import coming_soon
from tests.conftest import WeChat
from tests.models.test_queue import MONDAY_10

_times = itertools.count(1)
_openids = itertools.count(1)
_HANDLED = re.compile(r"message handled type=\S+ event=\S+ service=(\S+)")
# What the "coming soon" and "not understood" answers say: neither is a service's answer.
NOT_AN_ANSWER = ("即将上线", "没能理解")
# Entries still answered "coming soon" (handlers/coming_soon.py): none, now every service is in.
STILL_PENDING: tuple[str, ...] = ()


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    """Monday 10:00 in the hall: every hall open, every service at work."""
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


def fresh(wechat: WeChat) -> WeChat:
    """A citizen of their own for each message: no dialog left over from the one before."""
    return WeChat(wechat.client, wechat.platform, f"oWALK{next(_openids):023d}")


def tap_xml(citizen: WeChat, entry: MenuEntry) -> str:
    create_time = int(time.time()) + next(_times)
    if entry.type.startswith("scancode"):
        scan = {"ScanType": "qrcode", "ScanResult": "https://example.com/"}
        return Platform.event(
            citizen.openid, entry.type, create_time, EventKey=entry.key, ScanCodeInfo=scan
        )
    return Platform.event(citizen.openid, "CLICK", create_time, EventKey=entry.key)


def answered_by(caplog: pytest.LogCaptureFixture) -> str:
    found = [_HANDLED.search(r.getMessage()) for r in caplog.records if r.name == "bot.app"]
    services = [m.group(1) for m in found if m]
    assert len(services) == 1, services
    return services[0]


def test_no_entry_is_pending() -> None:
    assert coming_soon.PENDING_KEYS == STILL_PENDING


def test_the_menu_has_fifteen_entries() -> None:
    assert len(entries()) == 15


@pytest.mark.parametrize("key", sorted(entries()))
async def test_menu_entry_gets_its_service_s_answer(
    key: str,
    wechat: WeChat,
    clock: time_machine.Coordinates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = entries()[key]
    citizen = fresh(wechat)
    caplog.set_level(logging.INFO, logger="bot.app")

    reply = await citizen.send(tap_xml(citizen, entry))

    assert reply is not None and reply["MsgType"] == "text", reply
    text = str(reply["Content"])
    assert text.strip()
    if key not in STILL_PENDING:
        assert not any(mark in text for mark in NOT_AN_ANSWER), text
        assert answered_by(caplog) == entry.service


@pytest.mark.parametrize(
    ("key", "word"), sorted((e.key, w) for e in entries().values() for w in e.words)
)
async def test_menu_word_gets_its_service_s_answer(
    key: str,
    word: str,
    wechat: WeChat,
    clock: time_machine.Coordinates,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = entries()[key]
    citizen = fresh(wechat)
    caplog.set_level(logging.INFO, logger="bot.app")

    reply = await citizen.send(Platform.text(citizen.openid, word))

    assert reply is not None
    if reply["MsgType"] == "transfer_customer_service":
        # "人工": the chat goes to a human agent, the real answer to that word.
        assert answered_by(caplog) == entry.service == "consult"
        return
    assert reply["MsgType"] == "text", reply
    text = str(reply["Content"])
    assert text.strip()
    if key not in STILL_PENDING:
        assert not any(mark in text for mark in NOT_AN_ANSWER), text
        assert answered_by(caplog) == entry.service
