"""Open the shared Redis, or an in-process stand-in for a single-process run."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


def connect_redis(url: str) -> aioredis.Redis:
    """Return a client for `url`; with no URL, a fakeredis server living in this process."""
    if url:
        return aioredis.Redis.from_url(url, decode_responses=True)
    import fakeredis

    log.warning(
        "redis stand-in in use: state lives in this process only; "
        "set REDIS_URL before running more than one process"
    )
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
