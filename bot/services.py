"""The long-lived things one process shares: settings, Redis, texts, the API client, a clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from bot.texts import Texts
from config.settings import Settings

if TYPE_CHECKING:
    from arq.connections import ArqRedis

    from bot.redis_conn import RedisBatch
    from bot.wechat_api import WeChatAPI


@dataclass(slots=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    texts: Texts
    api: WeChatAPI
    # The background job queue (bot/worker.py); None where no job is ever queued.
    jobs: ArqRedis | None = None
    # The webhook's shared Redis pipelines (bot/redis_conn.py); None outside the webhook.
    batch: RedisBatch | None = None

    def now(self) -> datetime:
        """Return the current time, aware, in UTC."""
        return datetime.now(UTC)

    def local_now(self) -> datetime:
        """Return the current time in the hall's zone."""
        return self.now().astimezone(self.settings.tz)

    def today(self) -> date:
        """Return the hall's local date, which is not the server's when it runs in UTC."""
        return self.local_now().date()
