"""Jobs queued inside the webhook's Redis pipelines are arq's own: any arq worker runs them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.worker import Worker, func

from bot import job_queue, keys
from bot.redis_conn import RedisBatch, connect_redis
from bot.services import Services
from bot.texts import Texts
from bot.worker import _tolerate_missing_info, connect_jobs
from tests.conftest import make_settings

RAN: list[tuple[Any, ...]] = []


async def record(ctx: dict[str, Any], *args: Any) -> None:
    RAN.append(args)


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    RAN.clear()
    _tolerate_missing_info()  # the stand-in has no INFO, which arq logs at start
    settings = make_settings()
    redis = connect_redis(settings.redis_url)
    jobs = connect_jobs(settings, redis)
    yield Services(settings, redis, Texts(), api=None, jobs=jobs, batch=RedisBatch(redis))  # type: ignore[arg-type]
    await jobs.aclose()
    await redis.aclose()


async def run_queue(services: Services) -> None:
    assert services.jobs is not None
    worker = Worker(
        functions=[func(record, name="record")],
        redis_pool=services.jobs,
        queue_name=keys.JOB_QUEUE,
        burst=True,
        handle_signals=False,
        poll_delay=0.01,
        keep_result=0,
    )
    await worker.main()


async def test_a_batched_job_runs_with_its_arguments(services: Services) -> None:
    assert await job_queue.enqueue(services, "record", "ticket:1", {"a": "1"}, job_id="j1")

    await run_queue(services)

    assert RAN == [("ticket:1", {"a": "1"})]


async def test_one_job_id_is_queued_once_however_often_it_is_sent(services: Services) -> None:
    first = await asyncio.gather(
        *(job_queue.enqueue(services, "record", i, job_id="same") for i in range(5))
    )
    assert sorted(first) == [False] * 4 + [True]
    assert not await job_queue.enqueue(services, "record", 9, job_id="same")  # still queued

    await run_queue(services)

    assert len(RAN) == 1


async def test_without_the_batch_arq_queues_it(services: Services) -> None:
    services.batch = None
    assert await job_queue.enqueue(services, "record", "x", job_id="j2")
    assert not await job_queue.enqueue(services, "record", "x", job_id="j2")

    await run_queue(services)

    assert RAN == [("x",)]
