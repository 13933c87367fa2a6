"""The arq worker: the jobs and periodic jobs it runs, its Redis, and how it starts and stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from arq import cron
from arq import worker as arq_worker
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Function, Worker, func
from redis.exceptions import ResponseError

from bot import keys, notices, push
from bot.redis_conn import connect_redis
from bot.services import Services
from bot.texts import Texts
from config.settings import Settings
from models import application, booking_flow, classroom, feedback, queue_flow

log = logging.getLogger(__name__)

# Every job a worker runs, by the name it is queued under. A service adds its own here.
FUNCTIONS: list[Function] = [
    func(
        push.send_notice,
        name=push.SEND_JOB,
        timeout=push.JOB_TIMEOUT_S,
        # push counts attempts itself (config/notices.toml); these cover reruns after a stop.
        max_tries=notices.notice_book().delivery.max_attempts + 3,
        keep_result=0,
    ),
    # Sends at most once whatever it is retried: the claim is the notice's unique row.
    func(
        push.claim_and_send,
        name=push.CLAIM_JOB,
        timeout=push.JOB_TIMEOUT_S,
        max_tries=push.CLAIM_MAX_TRIES,
        keep_result=0,
    ),
    *queue_flow.FUNCTIONS,
    *booking_flow.FUNCTIONS,
    *classroom.FUNCTIONS,
]

# Periodic jobs, at the hall's local time (settings.timezone). A service adds its own here,
# e.g. `cron(queue.expire_waiting, minute={0, 15, 30, 45}, timeout=60)`. However many workers
# run, each occurrence runs once: arq gives it a job id made of its name and time.
CRON_JOBS: list[CronJob] = [
    cron(push.requeue_stalled, name="requeue_stalled_notices", second={0}, timeout=60),
    *queue_flow.CRON_JOBS,
    *booking_flow.CRON_JOBS,
    *classroom.CRON_JOBS,
    *feedback.CRON_JOBS,
    *application.CRON_JOBS,
]

# How often an idle worker looks for work. The in-process one is cheap to poll (no network).
POLL_DELAY_S = 0.5
STANDIN_POLL_DELAY_S = 0.1
# Jobs one worker runs at a time; each waits mostly on the API.
MAX_JOBS = 20
# On SIGTERM a worker stops taking jobs and lets running ones finish this long.
STOP_GRACE_S = 5


class HideJobArguments(logging.Filter):
    """Keep arq's "job started" line but not its arguments: they carry openids and notice values.

    arq has no switch for it; its results are kept out with `log_results=False`.
    """

    STARTED = "%6.2fs → %s(%s)%s"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.STARTED and isinstance(record.args, tuple) and len(record.args) == 4:
            waited, ref, _arguments, extra = record.args
            record.args = (waited, ref, "…", extra)
        return True


HIDE_JOB_ARGUMENTS = HideJobArguments()
logging.getLogger(arq_worker.__name__).addFilter(HIDE_JOB_ARGUMENTS)


def connect_jobs(settings: Settings, redis: aioredis.Redis) -> ArqRedis:
    """Return the job queue's client: on REDIS_URL, or on the stand-in server behind `redis`."""
    if settings.redis_url:
        jobs = ArqRedis.from_url(settings.redis_url)
        jobs.default_queue_name = keys.JOB_QUEUE
        return jobs
    # arq reads bytes, the project's client decodes: same fakeredis server, another pool.
    pool = redis.connection_pool
    jobs_pool = aioredis.ConnectionPool(
        connection_class=pool.connection_class,
        **{**pool.connection_kwargs, "decode_responses": False},
    )
    return ArqRedis(jobs_pool, default_queue_name=keys.JOB_QUEUE)


def build_worker(
    settings: Settings,
    jobs: ArqRedis,
    *,
    ctx: dict[str, Any] | None = None,
    handle_signals: bool = True,
    poll_delay_s: float = POLL_DELAY_S,
    burst: bool = False,
) -> Worker:
    """Build an arq Worker for FUNCTIONS and CRON_JOBS on `jobs` (run it inside a loop)."""
    return Worker(
        functions=FUNCTIONS,
        cron_jobs=CRON_JOBS,
        redis_pool=jobs,
        queue_name=keys.JOB_QUEUE,
        ctx=ctx,
        handle_signals=handle_signals,
        job_completion_wait=STOP_GRACE_S if handle_signals else 0,
        poll_delay=poll_delay_s,
        max_jobs=MAX_JOBS,
        burst=burst,
        keep_result=0,
        log_results=False,
        timezone=settings.tz,  # type: ignore[arg-type]  # arq only calls datetime.now(tz)
    )


async def stop_worker(worker: Worker, main: asyncio.Task[None]) -> None:
    """Cancel what the worker runs and wait for it; its Redis is left to the caller to close.

    (arq's own `close` uses a call redis-py deprecates, which the test run treats as an error.)
    """
    worker.handle_sig(signal.SIGUSR1)
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    with contextlib.suppress(asyncio.CancelledError):
        await main
    with contextlib.suppress(Exception):
        await worker.pool.delete(worker.health_check_key)


class WorkerBeside:
    """A worker inside the webhook process, for the single-process run on the Redis stand-in.

    Nothing else could drain the queue there: the stand-in lives in this process only.
    """

    def __init__(self, services: Services) -> None:
        if services.jobs is None:
            raise ValueError("services.jobs is needed to run a worker")
        _tolerate_missing_info()
        self.worker = build_worker(
            services.settings,
            services.jobs,
            ctx={"services": services},
            handle_signals=False,
            poll_delay_s=STANDIN_POLL_DELAY_S,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.worker.async_run())
        log.info("job worker running in this process (redis stand-in)")

    async def stop(self) -> None:
        if self.task is not None:
            await stop_worker(self.worker, self.task)
            self.task = None


def _tolerate_missing_info() -> None:
    """Let arq start on fakeredis, which has no INFO command (arq only logs what it says)."""
    original = arq_worker.log_redis_info
    if getattr(original, "tolerates_missing_info", False):
        return

    async def log_redis_info(redis: Any, log_func: Callable[[str], Any]) -> None:
        try:
            await original(redis, log_func)
        except ResponseError:
            log_func("redis stand-in: no server information")

    log_redis_info.tolerates_missing_info = True  # type: ignore[attr-defined]
    arq_worker.log_redis_info = log_redis_info


async def open_services(settings: Settings) -> Services:
    """Open what a worker process needs: the database, Redis, the API client, the queue."""
    from bot.wechat_api import WeChatAPI
    from models.db import init_db

    await init_db(settings.database_url, keep_pool_open=True)
    redis = connect_redis(settings.redis_url)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=push.SEND_TIMEOUT_S))
    api = WeChatAPI(settings, redis, session)
    jobs = connect_jobs(settings, redis)
    return Services(settings=settings, redis=redis, texts=Texts(), api=api, jobs=jobs)


async def close_services(services: Services) -> None:
    from models.db import close_db

    await services.api.session.close()
    if services.jobs is not None:
        await services.jobs.aclose()
    await services.redis.aclose()
    await close_db()


async def run(settings: Settings, *, burst: bool = False) -> None:
    """Run a worker process until SIGINT or SIGTERM, or with `burst` until the queue is empty."""
    if settings.worker_nice:
        # In a rush the replies come first; the notices queued meanwhile follow seconds later.
        os.nice(settings.worker_nice)
    services = await open_services(settings)
    assert services.jobs is not None
    worker = build_worker(settings, services.jobs, ctx={"services": services}, burst=burst)
    log.info(
        "job worker started queue=%s jobs=%d nice=%d",
        keys.JOB_QUEUE,
        len(worker.functions),
        os.nice(0),
    )
    main = asyncio.ensure_future(worker.async_run())
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await main
    finally:
        await stop_worker(worker, main)
        await close_services(services)
        log.info(
            "job worker stopped complete=%d failed=%d retried=%d",
            worker.jobs_complete,
            worker.jobs_failed,
            worker.jobs_retried,
        )
