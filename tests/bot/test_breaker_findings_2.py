"""Faults a second breaking pass found in the webhook's newer replies, each pinned by a test
named after it, and behaviour it probed and found held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.app import SERVICES, WEBHOOK_PATH, create_app
from bot.platform_sim import Platform
from bot.redis_conn import RedisBatch
from bot.services import Services
from bot.standin import StandIn
from config.menu import entries
from models import feedback
from models.feedback import Evaluation, FollowUp
from tests.bot.test_late_reply import customer_service_texts
from tests.conftest import OPENID, WeChat, _content, make_settings, start_client
from tests.handlers.test_consult import FRIDAY_10, FRIDAY_1830
from tests.handlers.test_evaluation import finish_by_staff
from tests.models.test_queue import MONDAY_10


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


# 1. A bare digit after a rating invitation --------------------------------------------------


async def test_a_digit_answering_an_invitation_the_sweep_sent_after_the_list_rates(
    app_client: TestClient, wechat: WeChat, services: Services,
    clock: time_machine.Coordinates, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The invitation at the finish failed (the sweep sends it later, up to 6 h): a 你好 said
    between the finish and the late invitation makes the citizen's 5 to that invitation a
    menu pick: the list was compared with the finish, not with when the invitation went out."""
    real_invite = feedback._invite

    async def lost_hook(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("hook lost")

    monkeypatch.setattr(feedback, "_invite", lost_hook)
    await finish_by_staff(app_client)
    monkeypatch.setattr(feedback, "_invite", real_invite)
    clock.shift(timedelta(minutes=1))
    assert "回复序号" in await wechat.say("你好")
    clock.shift(timedelta(minutes=5))
    assert await feedback.invite_finished(services) == 1  # the invitation goes out now
    clock.shift(timedelta(seconds=30))

    reply = await wechat.say("5")

    assert await Evaluation.filter(level=5).exists(), reply


async def test_the_help_list_still_answers_while_redis_is_down(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook answers without Redis (no retry protection); the help list now writes
    list-shown first, and a failed write turned 你好 and every unknown text into 开了个小差."""

    async def down(self: RedisBatch, *args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("redis is down")

    monkeypatch.setattr(RedisBatch, "_round_trip", down)

    reply = await wechat.say("你好")

    assert "回复序号" in reply, reply


async def test_a_chinese_numeral_picked_from_the_help_list_is_no_rating(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """The list-shown check covered ASCII digits only: after the invitation and then 你好, a
    spoken (or typed) 一 was still read as 非常不满意 and opened a work order against the window.
    It picks entry 1."""
    await finish_by_staff(app_client)
    clock.shift(timedelta(minutes=2))
    assert "回复序号" in await wechat.say("你好")
    clock.shift(timedelta(seconds=30))

    reply = _content(await wechat.send(Platform.voice(OPENID, "一。")))

    assert not await FollowUp.exists(), reply
    assert not await Evaluation.filter(level=1).exists()


async def test_a_spoken_digit_after_the_help_list_picks_like_a_typed_one(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await finish_by_staff(app_client)
    clock.shift(timedelta(minutes=2))
    assert "回复序号" in await wechat.say("你好")
    clock.shift(timedelta(seconds=30))

    reply = _content(await wechat.send(Platform.voice(OPENID, "1。")))

    assert reply == await wechat.tap(next(iter(entries())))
    assert not await Evaluation.filter(level__isnull=False).exists()


async def test_english_help_after_the_invitation_then_a_digit_picks(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    await wechat.say("English")
    await finish_by_staff(app_client)
    clock.shift(timedelta(minutes=2))
    await wechat.say("help")
    clock.shift(timedelta(seconds=30))

    reply = await wechat.say("2")

    assert reply == await wechat.tap(list(entries())[1])
    assert not await Evaluation.filter(level__isnull=False).exists()
    assert "5 stars" not in reply


async def test_two_finished_services_the_digit_rates_the_one_invited_after_the_list(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    first = await finish_by_staff(app_client)
    clock.shift(timedelta(minutes=2))
    assert "回复序号" in await wechat.say("你好")
    clock.shift(timedelta(minutes=2))
    second = await finish_by_staff(app_client)
    clock.shift(timedelta(seconds=30))

    assert "非常满意" in await wechat.say("5")

    rated = await Evaluation.filter(level=5).values_list("ticket_id", flat=True)
    assert list(rated) == [second.id] and first.id != second.id
    # the first one is still pending; a bare 4 now answers the list shown after it
    await wechat.say("跳过")
    reply = await wechat.say("4")
    assert reply == await wechat.tap(list(entries())[3])


async def test_a_digit_from_the_list_is_no_rating_when_the_invitation_was_muted(
    app_client: TestClient, wechat: WeChat, clock: time_machine.Coordinates
) -> None:
    """A citizen who turned rating invitations off (提醒设置) is never invited, yet a number
    picked from the help list shown before the finish was read as the rating: 1 = 非常不满意
    and a work order against the window. Only an invitation that went out should make a bare
    digit a rating (the same holds when the invitation failed: 43004, API down)."""
    from models.citizen import Citizen
    from models.notice import Notice

    assert "回复序号" in await wechat.say("你好")
    await Citizen.create(openid=OPENID, muted_notices=["service_rate_invite"])
    clock.shift(timedelta(minutes=30))
    ticket = await finish_by_staff(app_client)
    invite = await Notice.get(ref=f"ticket:{ticket.id}", kind="service_rate_invite")
    assert invite.status == "skipped"  # nothing reached the citizen
    clock.shift(timedelta(minutes=2))

    reply = await wechat.say("1")

    assert not await FollowUp.exists(), reply
    assert reply == await wechat.tap(next(iter(entries())))


# 2. The text after a hand-over ------------------------------------------------------------


@pytest.fixture
async def agent_client(db: str, standin: StandIn) -> AsyncIterator[TestClient]:
    settings = make_settings(database_url=db, api_base_url=standin.url)
    client = await start_client(create_app(settings, with_database=False))
    yield client
    await client.close()


def _platform(client: TestClient) -> Platform:
    settings = client.app[SERVICES].settings
    return Platform(settings.token, settings.app_id, settings.aes_key)


async def test_three_concurrent_retries_of_a_hand_over_send_one_text(
    agent_client: TestClient, standin: StandIn
) -> None:
    platform = _platform(agent_client)
    with time_machine.travel(FRIDAY_10, tick=False):
        delivery = platform.deliver(Platform.text(OPENID, "转人工"))
        responses = await asyncio.gather(*[
            agent_client.post(WEBHOOK_PATH, params=delivery.query, data=delivery.body)
            for _ in range(3)
        ])  # fmt: skip
        bodies = [await r.text() for r in responses]
        later = await agent_client.post(WEBHOOK_PATH, params=delivery.query, data=delivery.body)
        bodies.append(await later.text())
    await asyncio.sleep(0.3)
    told = await customer_service_texts(standin, 2, wait_s=1.0)
    types = [(platform.open_reply(b) or {}).get("MsgType") for b in bodies]
    assert types == ["transfer_customer_service"] * 4
    assert len(told) == 1


async def test_a_failing_api_leaves_the_hand_over_itself(
    agent_client: TestClient, standin: StandIn
) -> None:
    standin.fail_next("custom", 45015, times=5)
    platform = _platform(agent_client)
    with time_machine.travel(FRIDAY_10, tick=False):
        delivery = platform.deliver(Platform.text(OPENID, "转人工"))
        response = await agent_client.post(WEBHOOK_PATH, params=delivery.query, data=delivery.body)
        reply = platform.open_reply(await response.text())
    assert reply is not None and reply["MsgType"] == "transfer_customer_service"


async def test_after_hours_message_left_says_left_not_put_through(
    agent_client: TestClient, standin: StandIn
) -> None:
    wechat = WeChat(agent_client, _platform(agent_client))
    with time_machine.travel(FRIDAY_1830, tick=False):
        first = await wechat.say("转人工")
        reply = await wechat.send(Platform.text(OPENID, "留言"))
    told = await customer_service_texts(standin, 1)
    assert "上线" in first
    assert reply is not None and reply["MsgType"] == "transfer_customer_service"
    assert len(told) == 1 and "留言" in told[0] and "转接" not in told[0]


# 3. Unfollow by a citizen never seen ------------------------------------------------------


async def test_unfollow_then_follow_again_by_a_citizen_never_seen_follows(wechat: WeChat) -> None:
    from models.citizen import Citizen

    assert await wechat.send(Platform.event(OPENID, "unsubscribe")) is None
    await asyncio.sleep(1.1)  # a new CreateTime: not a retry of the unfollow
    welcome = _content(await wechat.send(Platform.event(OPENID, "subscribe")))

    citizen = await Citizen.get(openid=OPENID)
    assert (citizen.is_following, citizen.followed_at is not None) == (True, True)
    assert "欢迎关注" in welcome


# 4. The booking's reply -------------------------------------------------------------------


async def test_the_booked_reply_promises_no_reminder_the_citizen_turned_off(
    wechat: WeChat, services: Services
) -> None:
    """booked.j2 listed the reminders "still ahead" by time only: a citizen who turned
    booking reminders off in 提醒设置 was told 办理前一天晚上和开始前会提醒您, and none came."""
    from models.citizen import Citizen
    from tests.handlers.test_booking import remember, walk_and_book
    from tests.models.test_booking import frozen_at

    with frozen_at(MONDAY_10):
        await Citizen.create(openid=OPENID, muted_notices=["booking_reminder"])
        await remember()
        booked = await walk_and_book(wechat)

    assert "预约成功" in booked
    assert "提醒您" not in booked, booked


async def test_booked_late_evening_promises_only_the_hour_reminder_in_english(
    wechat: WeChat,
) -> None:
    from tests.handlers.test_booking import remember
    from tests.models.test_booking import frozen_at
    from tests.models.test_queue import local

    with frozen_at(local(2, 20, 30)):
        await wechat.say("English")
        await remember()
        places = await wechat.tap("BOOKING")
        assert "Reply" in places or "reply" in places
    with frozen_at(local(2, 20, 30)):
        booked = await walk_and_book_en(wechat)
    assert "evening before" not in booked and "1 hour before" in booked, booked
    assert "at least 2 hours before" in booked


async def walk_and_book_en(wechat: WeChat) -> str:
    from tests.handlers.test_booking import index_of

    places = await wechat.tap("BOOKING")
    days = await wechat.say(index_of(places, "民生服务"))
    slots = await wechat.say(index_of(days, "Tomorrow") if "Tomorrow" in days else "2")
    confirm = await wechat.say("1") if "Reply" in slots else slots
    return await wechat.say("1") if "confirm" in confirm.lower() else confirm


# 6. The webhook in general ----------------------------------------------------------------


async def test_a_lone_zero_width_joiner_is_not_echoed_as_empty_quotes(
    wechat: WeChat,
) -> None:
    """normalize kept U+200D for emoji sequences; a message of only ZWJ (or ZWSP+ZWJ) was
    echoed as 没能理解“‍”, the empty quotes test_welcome pins for other invisible characters."""
    for typed in ("\u200d", "\u200b\u200d", "\u200d\u200d "):
        reply = await wechat.say(typed)
        assert "没能理解" not in reply, repr(reply[:20])


async def test_cdata_terminator_typed_is_echoed_inside_the_reply(wechat: WeChat) -> None:
    typed = "]]></Content><MsgType><![CDATA[transfer_customer_service]]></MsgType>"
    reply = await wechat.send(Platform.text(OPENID, typed))
    assert reply is not None and reply["MsgType"] == "text"
    reply = await wechat.send(Platform.text(OPENID, "]]>" * 700))
    assert reply is not None and reply["MsgType"] == "text"


async def test_hand_over_text_still_goes_when_the_app_shuts_down_meanwhile(
    db: str, standin: StandIn
) -> None:
    settings = make_settings(database_url=db, api_base_url=standin.url)
    client = await start_client(create_app(settings, with_database=False))
    wechat = WeChat(client, _platform(client))
    await client.app[SERVICES].api.access_token()  # cached: only the text call is slow
    standin.delay_next("custom", 1.5)
    with time_machine.travel(FRIDAY_10, tick=False):
        reply = await wechat.send(Platform.text(OPENID, "转人工"))
    await client.close()
    assert reply is not None and reply["MsgType"] == "transfer_customer_service"
    assert len(standin.sent("custom")) == 1
