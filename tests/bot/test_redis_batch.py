"""Batching the webhook's Redis commands: shared pipelines, results and errors kept apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from bot.redis_conn import RedisBatch
from tests.conftest import TEST_REDIS_URL


class CountingRedis(fakeredis.FakeAsyncRedis):
    pipelines = 0


@pytest.fixture
async def redis(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[aioredis.Redis]:
    """A stand-in Redis; CountingRedis.pipelines counts the batch's round trips."""
    CountingRedis.pipelines = 0
    real = RedisBatch._round_trip

    async def counted(
        self: RedisBatch, packed: bytes, commands: list[tuple[Any, ...]]
    ) -> list[Any]:
        CountingRedis.pipelines += 1
        return await real(self, packed, commands)

    monkeypatch.setattr(RedisBatch, "_round_trip", counted)
    if not TEST_REDIS_URL:
        yield CountingRedis(server=fakeredis.FakeServer(), decode_responses=True)
        return
    # The suite's run on a real Redis: the same replies, off a real socket.
    real_redis = aioredis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    await real_redis.flushdb()
    yield real_redis
    await real_redis.aclose()


async def test_concurrent_callers_share_one_pipeline(redis: aioredis.Redis) -> None:
    batch = RedisBatch(redis)

    async def claim(i: int) -> list[Any]:
        return await batch.execute(("SET", f"k{i}", "v", "NX", "EX", 60), ("GET", f"k{i}"))

    results = await asyncio.gather(*(claim(i) for i in range(20)))
    assert results == [[True, "v"]] * 20
    assert CountingRedis.pipelines == 1


async def test_second_claim_of_a_key_sees_it_taken(redis: aioredis.Redis) -> None:
    batch = RedisBatch(redis)
    first, second = await asyncio.gather(
        batch.execute(("SET", "k", "1", "NX")), batch.execute(("SET", "k", "2", "NX"))
    )
    assert (first, second) == ([True], [None])
    assert await redis.get("k") == "1"


async def test_an_error_fails_only_its_own_caller(redis: aioredis.Redis) -> None:
    await redis.set("text", "x")
    batch = RedisBatch(redis)
    good, bad = await asyncio.gather(
        batch.execute(("GET", "text")),
        batch.execute(("HGET", "text", "field")),
        return_exceptions=True,
    )
    assert good == ["x"]
    assert isinstance(bad, Exception)


async def test_a_value_that_cannot_be_packed_fails_only_its_own_caller(
    redis: aioredis.Redis,
) -> None:
    """Packing the whole pipeline at once failed every caller sharing it."""
    await redis.set("text", "x")
    batch = RedisBatch(redis)
    good, bad, also_good = await asyncio.gather(
        batch.execute(("GET", "text")),
        batch.execute(("SET", "other", None)),
        batch.execute(("SET", "third", "y"), ("GET", "third")),
        return_exceptions=True,
    )
    assert good == ["x"] and also_good == [True, "y"]
    assert isinstance(bad, Exception)
    assert await redis.get("other") is None
    assert CountingRedis.pipelines == 1


async def test_commands_queued_during_a_round_trip_share_the_next(redis: aioredis.Redis) -> None:
    batch = RedisBatch(redis)
    first = batch.execute(("SET", "a", "1"))
    await asyncio.sleep(0)  # the first pipeline is on its way
    later = [batch.execute(("INCR", "n")) for _ in range(5)]

    assert await first == [True]
    assert [await f for f in later] == [[1], [2], [3], [4], [5]]
    assert CountingRedis.pipelines == 2


async def test_a_failed_round_trip_does_not_stop_the_next(redis: aioredis.Redis) -> None:
    batch = RedisBatch(redis)
    calls = 0
    real = redis.connection_pool.get_connection

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        conn = await real(*args, **kwargs)
        if calls == 1:

            async def lose(*_: Any, **__: Any) -> None:
                del conn.send_packed_command  # the next use of this connection works again
                raise aioredis.ConnectionError("lost")

            conn.send_packed_command = lose
        return conn

    redis.connection_pool.get_connection = flaky  # type: ignore[method-assign]
    lost = batch.execute(("SET", "a", "1"))
    with pytest.raises(aioredis.ConnectionError):
        await lost
    assert await batch.execute(("SET", "b", "2")) == [True]


async def test_a_cancelled_drain_leaves_no_caller_waiting(redis: aioredis.Redis) -> None:
    """Cancelling drain() once cancelled the round trip in flight: its callers waited forever."""
    batch = RedisBatch(redis)
    first = batch.execute(("SET", "a", "1"))
    draining = asyncio.ensure_future(batch.drain())
    await asyncio.sleep(0)
    draining.cancel()

    results = await asyncio.wait_for(asyncio.gather(first, return_exceptions=True), 5)

    assert results == [[True]]  # the round trip went on, shielded from the drain's caller
    assert await batch.execute(("GET", "a")) == ["1"]


async def test_a_sender_cancelled_mid_round_trip_fails_its_callers(
    redis: aioredis.Redis,
) -> None:
    batch = RedisBatch(redis)
    futures = [batch.execute(("SET", f"k{i}", "v")) for i in range(3)]
    await asyncio.sleep(0)
    assert batch._sender is not None
    batch._sender.cancel()

    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)

    assert [type(r) for r in results] == [RuntimeError] * 3
    assert await batch.execute(("SET", "after", "1")) == [True]  # the next batch works
