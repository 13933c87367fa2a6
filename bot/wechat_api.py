"""Async client of the WeChat API on aiohttp, with the access token shared through Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bot import keys
from bot.errors import WeChatAPIError
from config.settings import Settings

log = logging.getLogger(__name__)


class WeChatAPI:
    """The calls the project makes; every answer with a non-zero errcode raises."""

    def __init__(
        self, settings: Settings, redis: aioredis.Redis, session: aiohttp.ClientSession
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.session = session
        self.base_url = settings.api_base_url.rstrip("/")

    async def access_token(self, *, force: bool = False) -> str:
        """Return the shared token; one process refreshes it under a lock, the rest wait."""
        if not force:
            token = await self.redis.get(keys.TOKEN_KEY)
            if token:
                return str(token)
        deadline = time.monotonic() + keys.TOKEN_LOCK_TTL_S
        while True:
            got_lock = await self.redis.set(
                keys.TOKEN_LOCK_KEY, "1", nx=True, ex=keys.TOKEN_LOCK_TTL_S
            )
            if got_lock:
                try:
                    return await self._refresh_token(force)
                finally:
                    await self.redis.delete(keys.TOKEN_LOCK_KEY)
            await asyncio.sleep(0.05)
            token = await self.redis.get(keys.TOKEN_KEY)
            if token and not force:
                return str(token)
            if time.monotonic() > deadline:
                raise WeChatAPIError(-1, "timed out waiting for the token lock", "stable_token")

    async def _refresh_token(self, force: bool) -> str:
        body = {
            "grant_type": "client_credential",
            "appid": self.settings.app_id,
            "secret": self.settings.app_secret,
            "force_refresh": force,
        }
        data = await self._call("POST", "/cgi-bin/stable_token", json_body=body)
        token, expires_s = str(data["access_token"]), int(data.get("expires_in", 7200))
        ttl_s = max(expires_s - keys.TOKEN_EARLY_S, 60)
        await self.redis.set(keys.TOKEN_KEY, token, ex=ttl_s)
        log.info("access token refreshed ttl_s=%d forced=%s", ttl_s, force)
        return token

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to an API path with the token; refresh it once on a token error."""
        token = await self.access_token()
        try:
            return await self._call("POST", path, json_body=body, token=token)
        except WeChatAPIError as exc:
            if not exc.is_token_error:
                raise
            log.warning("access token rejected errcode=%d: refreshing", exc.errcode)
            await self.redis.delete(keys.TOKEN_KEY)
            token = await self.access_token(force=exc.errcode == 40001)
            return await self._call("POST", path, json_body=body, token=token)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        params = {"access_token": token} if token else None
        payload = json.dumps(json_body or {}, ensure_ascii=False).encode("utf-8")
        async with self.session.request(
            method,
            self.base_url + path,
            params=params,
            data=payload,
            headers={"Content-Type": "application/json; charset=utf-8"},
        ) as response:
            data = await response.json(content_type=None)
        errcode = int(data.get("errcode", 0) or 0)
        if errcode != 0:
            raise WeChatAPIError(errcode, str(data.get("errmsg", "")), path)
        return dict(data)

    async def send_text(self, openid: str, text: str) -> None:
        """Send a customer-service text (allowed within 48 h of the citizen's last message)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        await self.call("/cgi-bin/message/custom/send", body)

    async def create_menu(self, menu: dict[str, Any]) -> None:
        await self.call("/cgi-bin/menu/create", menu)
