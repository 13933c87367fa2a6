"""A second adversarial pass over the recent changes and the webhook.

Tests named ``test_FAILS_...`` pin a fault found (they fail until it is fixed); the others
pass and record behaviour that was probed and held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.app import SERVICES, WEBHOOK_PATH
from bot.platform_sim import Platform
from bot.redis_conn import RedisBatch
from bot.services import Services
from config.menu import entries
from models import feedback
from models.feedback import Evaluation, FollowUp
from tests.conftest import OPENID, WeChat
from tests.handlers.test_evaluation import finish_by_staff
from tests.models.test_queue import MONDAY_10


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MONDAY_10, tick=False) as traveller:
        yield traveller


# 1. A bare digit after a rating invitation --------------------------------------------------


async def test_FAILS_a_digit_answering_an_invitation_sent_by_the_sweep_rates(
    app_client: TestClient, wechat: WeChat, services: Services,
    clock: time_machine.Coordinates, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The invitation at the finish failed (the sweep sends it later, up to 6 h): a 你好 said
    between the finish and the late invitation makes the citizen's 5 to that invitation a
    menu pick; the list is compared with the finish, not with when the invitation went out."""
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


async def test_FAILS_help_list_still_answers_while_redis_is_down(
    wechat: WeChat, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook answers without Redis (no retry protection); the help list now writes
    list-shown first and a failed write turns 你好 and every unknown text into 开了个小差."""

    async def down(self: RedisBatch, *args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("redis is down")

    monkeypatch.setattr(RedisBatch, "_round_trip", down)

    reply = await wechat.say("你好")

    assert "回复序号" in reply, reply


async def test_FAILS_a_rating_reply_still_rates_while_redis_is_down(
    app_client: TestClient, wechat: WeChat, services: Services,
    clock: time_machine.Coordinates, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """5 after an invitation rated without Redis before; list_shown_after's GET now fails it."""
    await finish_by_staff(app_client)
    clock.shift(timedelta(minutes=1))

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("redis is down")

    monkeypatch.setattr(RedisBatch, "_round_trip", down)
    monkeypatch.setattr(services.redis, "get", down)

    reply = await wechat.say("5")

    assert await Evaluation.filter(level=5).exists(), reply
