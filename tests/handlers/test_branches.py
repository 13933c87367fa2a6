"""网点导航 through the webhook: the list, the nearest halls to a position, and LOCATION events."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from redis.exceptions import ConnectionError as RedisConnectionError

from bot import keys
from bot.platform_sim import Platform
from bot.services import Services
from models.hall import Hall, forget_halls
from tests.conftest import CASES_DIR, OPENID, WeChat
from tests.handlers import assert_whole_reply

HALL_TZ = ZoneInfo("Asia/Shanghai")
# Beside the community service center, in Songshan Lake.
NEAR_COMMUNITY = (22.9345, 113.9001)
KM = re.compile(r"^\d+\. (.+?)（约(\d+\.\d)公里）$")


def listed(text: str) -> list[tuple[str, float]]:
    """Return the halls of a nearest-list reply with their distances, in the order shown."""
    found = (KM.match(line) for line in text.splitlines())
    return [(m.group(1), float(m.group(2))) for m in found if m]


def location_event(latitude: float, longitude: float, create_time: int | None = None) -> str:
    return Platform.event(
        OPENID,
        "LOCATION",
        create_time,
        Latitude=latitude,
        Longitude=longitude,
        Precision=65.0,
    )


def location_select(latitude: float, longitude: float) -> str:
    info = {"Location_X": latitude, "Location_Y": longitude, "Scale": 15, "Label": "松山湖"}
    return Platform.event(
        OPENID, "location_select", EventKey="BRANCH_NEAREST", SendLocationInfo=info
    )


async def test_tap_lists_every_branch_and_the_self_service_area(wechat: WeChat) -> None:
    others = await Hall.exclude(kind="main")

    text = await wechat.tap("BRANCHES")

    assert_whole_reply(text)
    assert len(others) == 4
    for hall in others:
        assert hall.name in text
        assert hall.address in text
        assert hall.summary in text
    assert "全天开放" in text
    assert "发送位置" in text


async def test_sent_location_lists_the_nearest_halls_with_distance(wechat: WeChat) -> None:
    halls = await Hall.all()
    expected = sorted((h.distance_km(*NEAR_COMMUNITY) or 0.0, h.name) for h in halls)[:3]

    reply = await wechat.send(Platform.location(OPENID, *NEAR_COMMUNITY, label="松山湖"))

    assert reply is not None
    text = reply["Content"]
    assert_whole_reply(text)
    shown = listed(text)
    assert [name for name, _ in shown] == [name for _, name in expected]
    assert [km for _, km in shown] == [round(km, 1) for km, _ in expected]
    assert shown[0][0] == "社区服务中心分厅"
    assert text.count("https://uri.amap.com/marker?position=") == 3


async def test_location_select_case_gets_the_nearest_halls(wechat: WeChat) -> None:
    xml = (CASES_DIR / "event_location_select.xml").read_text(encoding="utf-8")

    reply = await wechat.send(xml)

    assert reply is not None
    assert reply["ToUserName"] == "oCITIZEN000000000000000001"
    shown = listed(reply["Content"])
    assert len(shown) == 3
    assert shown[0][0] == "社区服务中心分厅"
    assert_whole_reply(reply["Content"])


async def test_location_select_without_a_position_asks_for_one(wechat: WeChat) -> None:
    reply = await wechat.send(Platform.event(OPENID, "location_select", EventKey="BRANCH_NEAREST"))

    assert reply is not None
    assert "请先发送您的位置" in reply["Content"]
    assert_whole_reply(reply["Content"])


async def test_picked_place_posted_again_as_a_message_is_answered_once(wechat: WeChat) -> None:
    first = await wechat.send(location_select(*NEAR_COMMUNITY))
    again = await wechat.send(Platform.location(OPENID, *NEAR_COMMUNITY))
    elsewhere = await wechat.send(Platform.location(OPENID, 22.888, 113.870))

    assert first is not None and listed(first["Content"])
    assert again is None
    assert elsewhere is not None
    assert listed(elsewhere["Content"])[0][0] == "南部服务大厅"


async def test_location_event_gets_no_reply_but_is_remembered(
    wechat: WeChat, services: Services
) -> None:
    reply = await wechat.send(location_event(*NEAR_COMMUNITY))

    assert reply is None
    ttl_s = await services.redis.ttl(keys.location_key(OPENID))
    assert 0 < ttl_s <= keys.LOCATION_TTL_S


async def test_nearby_after_a_location_event_uses_that_position(wechat: WeChat) -> None:
    await wechat.send(location_event(22.888, 113.870))

    text = await wechat.say("附近")

    assert listed(text)[0][0] == "南部服务大厅"
    assert_whole_reply(text)


async def test_latest_reported_position_wins(wechat: WeChat) -> None:
    await wechat.send(location_event(22.888, 113.870, create_time=1764900000))
    await wechat.send(location_event(*NEAR_COMMUNITY, create_time=1764900005))

    text = await wechat.say("最近的网点")

    assert listed(text)[0][0] == "社区服务中心分厅"


async def test_nearby_without_a_known_position_asks_for_one(
    wechat: WeChat, services: Services
) -> None:
    await wechat.send(location_event(*NEAR_COMMUNITY))
    await services.redis.delete(keys.location_key(OPENID))  # as when LOCATION_TTL_S has passed

    text = await wechat.say("附近")

    assert "请先发送您的位置" in text
    assert not listed(text)
    assert_whole_reply(text)


async def test_location_event_never_replies_even_when_redis_fails(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise RedisConnectionError("redis is down")

    monkeypatch.setattr(services.redis, "set", refuse)

    assert await wechat.send(location_event(*NEAR_COMMUNITY)) is None


async def test_location_event_leaves_an_open_dialog_alone(wechat: WeChat) -> None:
    await wechat.tap("CONSULT")
    await wechat.send(location_event(*NEAR_COMMUNITY))

    text = await wechat.say("1")

    assert text.startswith("【周末和节假日开放吗？】")


async def test_far_away_position_says_so(wechat: WeChat) -> None:
    reply = await wechat.send(Platform.location(OPENID, 39.9042, 116.4074))  # Beijing

    assert reply is not None
    assert "您离松山湖较远" in reply["Content"]
    assert all(km > 1000 for _, km in listed(reply["Content"]))
    assert_whole_reply(reply["Content"])


async def test_halls_without_position_are_left_out_of_distances(wechat: WeChat) -> None:
    await Hall.exclude(kind="main").update(latitude=None, longitude=None)
    forget_halls()  # a query-set update sends no signal

    reply = await wechat.send(Platform.location(OPENID, *NEAR_COMMUNITY))

    assert reply is not None
    assert [name for name, _ in listed(reply["Content"])] == ["松山湖市民服务中心"]


async def test_no_hall_with_a_position_is_said_plainly(wechat: WeChat) -> None:
    await Hall.all().update(latitude=None, longitude=None)
    forget_halls()  # a query-set update sends no signal

    reply = await wechat.send(Platform.location(OPENID, *NEAR_COMMUNITY))

    assert reply is not None
    assert "暂时无法计算距离" in reply["Content"]
    assert_whole_reply(reply["Content"])


async def test_many_branches_are_shortened_never_cut(wechat: WeChat) -> None:
    for n in range(30):
        await Hall.create(
            code=f"extra{n}",
            name=f"第{n}社区便民服务站",
            kind="branch",
            address=f"东莞市松山湖园区很长很长的第{n}号路{n}号综合楼一楼大厅（示例地址）",
            hours=[{"days": [1, 2, 3, 4, 5], "open": "09:00", "close": "17:30"}],
            hours_text="周一至周五 9:00-17:30",
            summary="社保、医保、居住证、计生、残疾人证等民生事项约30项，另有自助终端。",
            latitude=22.93,
            longitude=113.90,
            sort=10 + n,
        )

    text = await wechat.tap("BRANCHES")

    assert_whole_reply(text)
    assert "个网点未列出" in text


async def test_branch_status_follows_the_hall_clock(wechat: WeChat) -> None:
    """Saturday 10:00 local: the southern hall opens Saturdays, the others are shut till Monday."""
    moment = datetime(2025, 12, 6, 10, 0, tzinfo=HALL_TZ).astimezone(UTC)
    with time_machine.travel(moment, tick=False):
        text = await wechat.tap("BRANCHES")

    lines = text.splitlines()
    south = lines.index("3. 南部服务大厅")
    community = lines.index("1. 社区服务中心分厅")
    assert lines[south + 1].strip().startswith("正在开放，今天12:00结束")
    assert lines[community + 1].strip().startswith("今天休息，下次开放：后天（周一）9:00")
