"""Multi-step dialog state of one citizen, kept in Redis with a timeout."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from bot import keys
from bot.redis_conn import RedisBatch


class Dialog:
    """Where a citizen stands in a conversation: a state name and the answers so far."""

    def __init__(
        self,
        redis: aioredis.Redis,
        openid: str,
        ttl_s: int,
        stored: str | None = None,
        batch: RedisBatch | None = None,
    ) -> None:
        self._redis = redis
        # Writes share the webhook's pipeline when it gives one: one round trip for many.
        self._batch = batch
        self._key = keys.dialog_key(openid)
        self._ttl_s = ttl_s
        self.state: str | None = None
        self.data: dict[str, Any] = {}
        self.is_expired = False
        if stored:
            self._load(stored)

    def _load(self, stored: str) -> None:
        try:
            saved = json.loads(stored)
            state, data, expires_at = saved["state"], saved["data"], float(saved["expires_at"])
        except (ValueError, KeyError, TypeError):
            return
        if expires_at < time.time():
            self.is_expired = True
            return
        self.state, self.data = state, data

    @property
    def is_active(self) -> bool:
        return self.state is not None

    async def go(self, state: str, **data: Any) -> None:
        """Move to `state`, keeping earlier answers and adding `data`."""
        self.state = state
        self.data.update(data)
        saved = {"state": state, "data": self.data, "expires_at": time.time() + self._ttl_s}
        payload = json.dumps(saved, ensure_ascii=False)
        await self._write(("SET", self._key, payload, "EX", self._ttl_s + keys.DIALOG_GRACE_S))

    async def start(self, state: str, **data: Any) -> None:
        """Begin a new dialog, dropping anything left from an earlier one."""
        self.data = {}
        await self.go(state, **data)

    async def finish(self) -> None:
        """Leave the dialog; the next message is read afresh."""
        self.state, self.data = None, {}
        await self._write(("DEL", self._key))

    async def _write(self, command: tuple[object, ...]) -> None:
        if self._batch is not None:
            await self._batch.execute(command)
        else:
            await self._redis.execute_command(*command)
