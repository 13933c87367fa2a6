"""Three worker processes drain one queue: every notice reaches the platform exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot import push
from bot.redis_conn import connect_redis
from bot.services import Services
from bot.standin import StandIn
from bot.texts import Texts
from bot.wechat_api import WeChatAPI
from bot.worker import connect_jobs
from models.notice import FINAL_STATES, Notice
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, make_settings

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL",
)

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
NOTICES = 240
DRAIN_WAIT_S = 20.0
CALLED = {"number": "A005", "window": "2号窗口", "hall": "本厅", "called_at": "09:32"}


@pytest.fixture
async def services(db: str, standin: StandIn) -> AsyncIterator[Services]:
    """What a webhook process has: it queues notices, and no worker runs inside it."""
    settings = make_settings(database_url=db, api_base_url=standin.url)
    redis = connect_redis(settings.redis_url)
    await redis.flushdb()
    session = aiohttp.ClientSession()
    jobs = connect_jobs(settings, redis)
    yield Services(
        settings=settings,
        redis=redis,
        texts=Texts(),
        api=WeChatAPI(settings, redis, session),
        jobs=jobs,
    )
    await jobs.aclose()
    await session.close()
    await redis.aclose()


def start_workers(services: Services, count: int) -> list[subprocess.Popen[str]]:
    settings = services.settings
    env = {
        **os.environ,
        "WECHAT_TOKEN": settings.token,
        "WECHAT_APPID": settings.app_id,
        "WECHAT_APPSECRET": settings.app_secret,
        "WECHAT_MODE": "plain",
        "WECHAT_API_BASE": settings.api_base_url,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
    }
    env.pop("BOT_CONFIG", None)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bot", "worker"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[str]]) -> list[str]:
    """Stop the workers as a deployment does (SIGTERM) and return what each logged."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    logs = []
    for worker in workers:
        try:
            _, stderr = worker.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
        logs.append(stderr)
    return logs


async def wait_until_final(count: int, wait_s: float) -> int:
    deadline = time.monotonic() + wait_s
    while True:
        done = await Notice.filter(status__in=FINAL_STATES).count()
        if done >= count or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.1)


async def test_three_worker_processes_send_each_notice_once(
    services: Services, standin: StandIn
) -> None:
    standin.delay_next("template", 0.01, times=NOTICES * 3)  # a platform that takes its time
    workers = start_workers(services, WORKERS)
    try:
        for i in range(NOTICES):
            openid = f"oCONC{i % 40:023d}"
            assert await push.notify(
                services, kind="ticket_called", openid=openid, ref=f"ticket:{i}", values=CALLED
            )
            # A second job for the same notice under another id, as a sweep racing a retry
            # would make: only the database's claim stands between it and a second send.
            notice = await Notice.get(ref=f"ticket:{i}", kind="ticket_called")
            await services.jobs.enqueue_job(push.SEND_JOB, notice.id)  # type: ignore[union-attr]
        done = await wait_until_final(NOTICES, DRAIN_WAIT_S)
    finally:
        logs = stop_workers(workers)

    assert done == NOTICES, "\n".join(log[-2000:] for log in logs)
    statuses = Counter(await Notice.all().values_list("status", flat=True))
    assert statuses == {"sent": NOTICES}
    calls = Counter(r.body["client_msg_id"] for r in standin.records if r.kind == "template")
    assert len(calls) == NOTICES
    assert set(calls.values()) == {1}, [key for key, n in calls.items() if n > 1]
    busy = [log.count("notice sent") for log in logs]
    assert sum(busy) == NOTICES
    assert sum(1 for n in busy if n) >= 2, busy  # the queue really was shared
    assert all(w.returncode == 0 for w in workers), [w.returncode for w in workers]
