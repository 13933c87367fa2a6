"""Async client of the WeChat API on aiohttp, with the access token shared through Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any, Literal

import aiohttp
import redis.asyncio as aioredis

from bot import keys
from bot.errors import WeChatAPIError, WeChatTransportError
from config.settings import Settings

log = logging.getLogger(__name__)

STABLE_TOKEN_PATH = "/cgi-bin/stable_token"
CUSTOM_SEND_PATH = "/cgi-bin/message/custom/send"
TEMPLATE_SEND_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_SEND_PATH = "/cgi-bin/message/subscribe/bizsend"
MENU_CREATE_PATH = "/cgi-bin/menu/create"
MENU_GET_PATH = "/cgi-bin/menu/get"
QRCODE_CREATE_PATH = "/cgi-bin/qrcode/create"

# The refresh call must end before the lock expires, or a second process would refresh beside
# it; a waiter gives up once the holder and one successor could both have finished.
TOKEN_CALL_TIMEOUT_S = keys.TOKEN_LOCK_TTL_S * 0.8
TOKEN_WAIT_S = keys.TOKEN_LOCK_TTL_S * 2
TOKEN_POLL_S = 0.05
# Release the refresh lock only while it is still ours: it may have expired and been retaken.
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# Since 2023-05 a template field shows about 20 characters; the rest is cut with "…".
TEMPLATE_FIELD_SHOWN_CHARS = 20
QR_SCENE_MAX_CHARS = 64
QR_TEMPORARY_MAX_S = 30 * 24 * 3600

Channel = Literal["template", "subscribe"]


class WeChatAPI:
    """The calls the project makes; every answer with a non-zero errcode raises."""

    def __init__(
        self, settings: Settings, redis: aioredis.Redis, session: aiohttp.ClientSession
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.session = session
        self.base_url = settings.api_base_url.rstrip("/")
        # One refresh per (rejected token, force) in this process; the rest await it.
        self._inflight: dict[tuple[str | None, bool], asyncio.Future[str]] = {}
        self._release_lock = redis.register_script(_RELEASE_LOCK)

    async def access_token(self, *, stale: str | None = None, force: bool = False) -> str:
        """Return the shared token; `stale` is one the platform rejected and must be replaced.

        Coroutines of this process share one refresh; processes share one through a Redis lock.
        `force` asks the platform for a new token (errcode 40001) rather than the current one.
        """
        token = _text(await self.redis.get(keys.TOKEN_KEY))
        if token and token != stale:
            return token
        flight = (stale, force)
        future = self._inflight.get(flight)
        if future is None:
            future = asyncio.ensure_future(self._obtain(stale, force))
            self._inflight[flight] = future
            future.add_done_callback(lambda done: self._landed(flight, done))
        return await asyncio.shield(future)

    def _landed(self, flight: tuple[str | None, bool], future: asyncio.Future[str]) -> None:
        if self._inflight.get(flight) is future:
            del self._inflight[flight]
        if not future.cancelled():
            future.exception()  # retrieved here so that an unawaited failure is not reported

    async def _obtain(self, stale: str | None, force: bool) -> str:
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + TOKEN_WAIT_S
        while True:
            if await self.redis.set(keys.TOKEN_LOCK_KEY, owner, nx=True, ex=keys.TOKEN_LOCK_TTL_S):
                try:
                    # Another process may have refreshed between our read and the lock.
                    current = _text(await self.redis.get(keys.TOKEN_KEY))
                    if current and current != stale:
                        return current
                    return await self._refresh_token(force)
                finally:
                    await self._release_lock(keys=[keys.TOKEN_LOCK_KEY], args=[owner])
            await asyncio.sleep(TOKEN_POLL_S)
            current = _text(await self.redis.get(keys.TOKEN_KEY))
            if current and current != stale:
                return current
            if time.monotonic() > deadline:
                raise WeChatAPIError(-1, "timed out waiting for the token lock", STABLE_TOKEN_PATH)

    async def _refresh_token(self, force: bool) -> str:
        body = {
            "grant_type": "client_credential",
            "appid": self.settings.app_id,
            "secret": self.settings.app_secret,
            "force_refresh": force,
        }
        timeout = aiohttp.ClientTimeout(total=TOKEN_CALL_TIMEOUT_S)
        data = await self._request("POST", STABLE_TOKEN_PATH, body=body, client_timeout=timeout)
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise WeChatTransportError(STABLE_TOKEN_PATH, "no access_token in the answer", 200)
        expires_s = int(data.get("expires_in", 7200))
        ttl_s = max(expires_s - keys.TOKEN_EARLY_S, 60)
        await self.redis.set(keys.TOKEN_KEY, token, ex=ttl_s)
        log.info("access token refreshed ttl_s=%d forced=%s", ttl_s, force)
        return token

    async def call(
        self, path: str, body: dict[str, Any] | None = None, *, method: str = "POST"
    ) -> dict[str, Any]:
        """Call an API path with the token; on a token error refresh it and try once more."""
        token = await self.access_token()
        try:
            return await self._request(method, path, body=body, token=token)
        except WeChatAPIError as exc:
            if not exc.is_token_error:
                raise
            errcode = exc.errcode
        log.warning("access token rejected errcode=%d path=%s: refreshing", errcode, path)
        token = await self.access_token(stale=token, force=errcode == 40001)
        return await self._request(method, path, body=body, token=token)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> dict[str, Any]:
        """Send one request; the URL carries the token, so no error message may include it."""
        options: dict[str, Any] = {}
        if token:
            options["params"] = {"access_token": token}
        if body is not None:
            options["data"] = json.dumps(body, ensure_ascii=False).encode("utf-8")
            options["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        if client_timeout is not None:
            options["timeout"] = client_timeout
        started = time.perf_counter()
        try:
            async with self.session.request(method, self.base_url + path, **options) as response:
                status, raw = response.status, await response.read()
        except TimeoutError:
            raise WeChatTransportError(path, "timeout") from None
        except aiohttp.ClientError as exc:
            raise WeChatTransportError(path, type(exc).__name__) from None
        if status != 200:
            raise WeChatTransportError(path, "http status", status)
        try:
            data = json.loads(raw)
        except ValueError:
            raise WeChatTransportError(path, "answer is not JSON", status) from None
        if not isinstance(data, dict):
            raise WeChatTransportError(path, "answer is not a JSON object", status)
        errcode = int(data.get("errcode", 0) or 0)
        log.debug("api call path=%s errcode=%d ms=%.1f", path, errcode, _ms_since(started))
        if errcode != 0:
            raise WeChatAPIError(errcode, str(data.get("errmsg", "")), path)
        return data

    async def send_text(self, openid: str, text: str) -> None:
        """Send a customer-service text (allowed within 48 h of the citizen's last message)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        await self.call(CUSTOM_SEND_PATH, body)

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        client_msg_id: str,
        url: str | None = None,
    ) -> str:
        """Send a template message and return its msgid.

        The platform sends one message per openid + `client_msg_id` within 10 minutes, so a
        retry with the same id cannot reach the citizen twice.
        """
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": _fields(template_id, data),
            "client_msg_id": client_msg_id,
        }
        if url:
            body["url"] = url
        answer = await self.call(TEMPLATE_SEND_PATH, body)
        return str(answer.get("msgid", ""))

    async def send_subscription(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        page: str | None = None,
    ) -> str:
        """Send a subscription notice; return its msgid, or "" when the platform gives none.

        The platform keeps no idempotency key here: the caller must send each notice once.
        """
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": _fields(template_id, data),
        }
        if page:
            body["page"] = page
        answer = await self.call(SUBSCRIBE_SEND_PATH, body)
        return str(answer.get("msgid", "") or "")

    async def send_notice(
        self,
        channel: Channel,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        client_msg_id: str,
        link: str | None = None,
    ) -> str:
        """Send a notice through a template or a subscription message; return the msgid."""
        if channel == "template":
            return await self.send_template(
                openid, template_id, data, client_msg_id=client_msg_id, url=link
            )
        if channel == "subscribe":
            return await self.send_subscription(openid, template_id, data, page=link)
        raise ValueError(f"unknown notice channel {channel!r}")

    async def create_menu(self, payload: dict[str, Any]) -> None:
        """Replace the account's menu with `payload` (the body of menu/create)."""
        await self.call(MENU_CREATE_PATH, payload)

    async def get_menu(self) -> dict[str, Any]:
        """Return the menu the platform holds."""
        return await self.call(MENU_GET_PATH, method="GET")

    async def create_qrcode(
        self, scene_str: str, *, permanent: bool = True, expire_s: int = QR_TEMPORARY_MAX_S
    ) -> dict[str, Any]:
        """Create a QR code for a scene; return the platform's answer (ticket, url, ...)."""
        if not 1 <= len(scene_str) <= QR_SCENE_MAX_CHARS:
            raise ValueError(f"scene_str must be 1-{QR_SCENE_MAX_CHARS} characters")
        body: dict[str, Any] = {
            "action_name": "QR_LIMIT_STR_SCENE" if permanent else "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene_str}},
        }
        if not permanent:
            if not 60 <= expire_s <= QR_TEMPORARY_MAX_S:
                raise ValueError(f"expire_s must be 60-{QR_TEMPORARY_MAX_S} for a temporary code")
            body["expire_seconds"] = expire_s
        answer = await self.call(QRCODE_CREATE_PATH, body)
        return {k: v for k, v in answer.items() if k not in ("errcode", "errmsg")}


def _fields(template_id: str, data: dict[str, str]) -> dict[str, dict[str, str]]:
    """Shape notice fields as the platform wants them, warning of those it will cut."""
    for key, value in data.items():
        if len(value) > TEMPLATE_FIELD_SHOWN_CHARS:
            # Only the key and the length: the value may hold personal data.
            log.warning(
                "notice field will be cut template_id=%s key=%s chars=%d",
                template_id,
                key,
                len(value),
            )
    return {key: {"value": value} for key, value in data.items()}


def _text(value: str | bytes | None) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
