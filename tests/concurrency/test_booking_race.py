"""Many citizens confirm the last place of a slot at once, through three server processes."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.platform_sim import Platform
from bot.redis_conn import connect_redis
from bot.standin import StandIn
from config.settings import Settings
from models import booking as bookings
from models.booking import Booking, BookingSlot, Person
from models.booking_rules import booking_rules
from models.hall import Category, Hall
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, make_settings

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL",
)

ROOT = Path(__file__).resolve().parents[2]
SERVERS = 3
CITIZENS = 24
START_WAIT_S = 30.0
_times = itertools.count(int(time.time()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def servers(db: str, standin: StandIn) -> AsyncIterator[list[str]]:
    """Three webhook processes on one database and one Redis; yield their URLs."""
    settings = make_settings(database_url=db, api_base_url=standin.url)
    redis = connect_redis(settings.redis_url)
    await redis.flushdb()
    await redis.aclose()
    env = {**os.environ, **server_env(settings)}
    env.pop("BOT_CONFIG", None)
    ports = [free_port() for _ in range(SERVERS)]
    processes = start_servers(env, ports)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await wait_until_up(urls, processes)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def start_servers(env: dict[str, str], ports: list[int]) -> list[subprocess.Popen[str]]:
    command = [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port"]
    return [
        subprocess.Popen(
            [*command, str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]


def server_env(settings: Settings) -> dict[str, str]:
    return {
        "WECHAT_TOKEN": settings.token,
        "WECHAT_APPID": settings.app_id,
        "WECHAT_APPSECRET": settings.app_secret,
        "WECHAT_AES_KEY": settings.aes_key,
        "WECHAT_MODE": "safe",
        "WECHAT_API_BASE": settings.api_base_url,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
    }


async def wait_until_up(urls: list[str], processes: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + START_WAIT_S
    async with aiohttp.ClientSession() as session:
        for url in urls:
            while True:
                try:
                    async with session.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError(f"servers did not start: {stopped_logs(processes)}")
                await asyncio.sleep(0.1)


def stopped_logs(processes: list[subprocess.Popen[str]]) -> list[str]:
    return [p.stderr.read() for p in processes if p.stderr and p.poll() is not None]


class Citizen:
    """One citizen's chat, each message to whichever server it is handed."""

    def __init__(self, openid: str, platform: Platform, session: aiohttp.ClientSession) -> None:
        self.openid, self.platform, self.session = openid, platform, session

    async def send(self, url: str, xml: str) -> str:
        delivery = self.platform.deliver(xml)
        async with self.session.post(
            f"{url}/wechat", params=delivery.query, data=delivery.body
        ) as response:
            assert response.status == 200
            reply = self.platform.open_reply(await response.text())
        assert reply is not None
        return str(reply["Content"])

    async def tap(self, url: str, key: str) -> str:
        return await self.send(
            url, Platform.event(self.openid, "CLICK", next(_times), EventKey=key)
        )

    async def say(self, url: str, text: str) -> str:
        return await self.send(url, Platform.text(self.openid, text))


def choice(listing: str, text: str, *, after: str = "") -> str:
    section = listing.split(after, 1)[1] if after else listing
    line = next(line for line in section.splitlines() if text in line and ". " in line)
    return line.split(".", 1)[0].strip()


async def walk_to_confirm(citizen: Citizen, urls: list[str]) -> tuple[str, str]:
    """Pick the main hall's 民生服务, the first day and the first slot, a step per server."""
    places = await citizen.tap(urls[0], "BOOKING")
    days = await citizen.say(urls[1], choice(places, "民生服务", after="【松山湖市民服务中心】"))
    slots = await citizen.say(urls[2], "1")
    confirm = await citizen.say(urls[0], "1")
    assert "请确认预约信息" in confirm, confirm
    return days, slots


async def test_many_confirm_the_last_place_and_exactly_one_gets_it(
    servers: list[str], db: str
) -> None:
    settings = make_settings()
    platform = Platform(settings.token, settings.app_id, settings.aes_key, mode="safe")
    openids = [f"oRACE{i:022d}" for i in range(CITIZENS)]
    for openid in openids:
        await bookings.remember(openid, Person("王五", "13700000000"))
    rules = booking_rules()
    capacity = rules.capacity_of("main", "livelihood")

    async with aiohttp.ClientSession() as session:
        citizens = [Citizen(openid, platform, session) for openid in openids]
        days, slots = await walk_to_confirm(citizens[0], servers)
        day_line = next(line for line in days.splitlines() if line.startswith("1. "))
        start = re.search(r"1\. (\d\d):(\d\d)-", slots)
        assert start is not None, slots
        start_min = int(start.group(1)) * 60 + int(start.group(2))
        day = await find_day(day_line)
        await fill_but_one(day, start_min, capacity)
        for i, citizen in enumerate(citizens[1:], 1):
            rotated = servers[i % SERVERS :] + servers[: i % SERVERS]
            await walk_to_confirm(citizen, rotated)

        replies = await asyncio.gather(
            *(c.say(servers[i % SERVERS], "1") for i, c in enumerate(citizens))
        )

    won = [r for r in replies if "预约成功" in r]
    lost = [r for r in replies if "刚刚约满" in r]
    assert len(won) == 1, replies
    assert len(lost) == CITIZENS - 1, [r for r in replies if r not in won + lost]
    assert all("请另选一个时段" in r or "其他空余时段" in r for r in lost)
    slot = await BookingSlot.get(local_day=day, start_min=start_min)
    assert slot.booked == slot.capacity == capacity
    in_slot = await Booking.filter(local_day=day, start_min=start_min, status="booked").count()
    assert in_slot == capacity
    assert await Booking.filter(openid__in=openids).count() == 1


async def find_day(day_line: str) -> date:
    """Read the date of "1. 今天 3月2日（周一） · ..." from the bookable days."""
    found = re.search(r"(\d+)月(\d+)日", day_line)
    assert found is not None, day_line
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    now = datetime.now(make_settings().tz)
    offered = await bookings.offered_days(hall, category, now, booking_rules())
    month, day = int(found.group(1)), int(found.group(2))
    return next(d.day for d in offered if (d.day.month, d.day.day) == (month, day))


async def fill_but_one(day: date, start_min: int, capacity: int) -> None:
    """Book every place of the slot but the last, as other citizens did earlier."""
    hall, category = await Hall.get(code="main"), await Category.get(code="livelihood")
    now = datetime.now(make_settings().tz)
    for i in range(capacity - 1):
        await bookings.book(
            f"oFILL{i:022d}", hall, category, day, start_min, Person("赵六", "13600000000"),
            now, booking_rules(),
        )  # fmt: skip
