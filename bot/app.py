"""The aiohttp application: the webhook WeChat posts to, and its retry handling."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from redis.exceptions import RedisError

from bot import keys
from bot.dialogs import Dialog
from bot.dispatcher import Context, Dispatcher, Reply
from bot.errors import RefusedRequest
from bot.protocol import (
    Envelope,
    Incoming,
    MessageCrypto,
    clean_text,
    open_envelope,
    read_incoming,
    sign,
    signature_matches,
    text_reply_xml,
    transfer_reply_xml,
)
from bot.redis_conn import RedisBatch, connect_redis
from bot.services import Services
from bot.texts import DEFAULT_LANGUAGE, Texts
from bot.wechat_api import WeChatAPI
from bot.worker import WorkerBeside, connect_jobs
from config.settings import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
CRYPTO = web.AppKey("crypto", MessageCrypto)
LATE_REPLIES = web.AppKey("late_replies", set)
BATCH = web.AppKey("batch", RedisBatch)

WEBHOOK_PATH = "/wechat"
PENDING = "\x00pending"
SUCCESS_BODY = "success"
# WeChat gives up after 5 s; a body still arriving after this is not from it.
BODY_READ_TIMEOUT_S = 3.0


class AccessLogger(AbstractAccessLogger):
    """Log each HTTP request without its query string, which carries the citizen's openid."""

    @property
    def enabled(self) -> bool:
        # Asked once per connection: off unless debug lines are on, so no call per request.
        return self.logger.isEnabledFor(logging.DEBUG)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "http request method=%s path=%s status=%d ms=%.1f",
            request.method,
            request.path,
            response.status,
            time * 1000,
        )


def create_app(settings: Settings, *, with_database: bool = True) -> web.Application:
    """Build the application; connections open on start-up and close on clean-up."""
    from handlers import all_routers

    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[DISPATCHER] = Dispatcher(all_routers())
    app[CRYPTO] = MessageCrypto(
        settings.token, settings.app_id, settings.aes_key, settings.aes_key_previous
    )
    app[LATE_REPLIES] = set()
    app[LANGUAGES_BACK] = LanguagesBack()
    if with_database:
        app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_services)
    app.router.add_get(WEBHOOK_PATH, verify_url)
    app.router.add_post(WEBHOOK_PATH, receive)
    app.router.add_get("/healthz", healthz)
    _add_staff_routes(app)
    return app


def _add_staff_routes(app: web.Application) -> None:
    """Mount the staff and administrators' HTTP API when the project has one."""
    import importlib

    try:
        staff_api = importlib.import_module("bot.staff_api")
    except ModuleNotFoundError as exc:
        if exc.name != "bot.staff_api":
            raise
        return
    staff_api.setup(app)


async def _database(app: web.Application) -> AsyncIterator[None]:
    from models.db import close_db, init_db

    await init_db(app[SETTINGS].database_url, check_schema=True, keep_pool_open=True)
    yield
    await close_db()


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = connect_redis(settings.redis_url)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    api = WeChatAPI(settings, redis, session)
    jobs = connect_jobs(settings, redis)
    services = Services(settings=settings, redis=redis, texts=Texts(), api=api, jobs=jobs)
    app[SERVICES] = services
    # Claims, dialog writes, stored replies and queued jobs of concurrent requests share
    # round trips.
    app[BATCH] = services.batch = RedisBatch(redis)
    # On the Redis stand-in no other process sees the job queue: this one drains it.
    beside = WorkerBeside(services) if settings.uses_redis_standin else None
    if beside is not None:
        beside.start()
    yield
    pending = app[LATE_REPLIES]
    if pending:
        await asyncio.wait(pending, timeout=settings.reply_budget_s + 5)
    await app[BATCH].drain()
    await app[LANGUAGES_BACK].close()
    if beside is not None:
        await beside.stop()
    await jobs.aclose()
    await session.close()
    await redis.aclose()


async def healthz(request: web.Request) -> web.Response:
    await request.app[SERVICES].redis.ping()
    return web.json_response({"ok": True})


async def verify_url(request: web.Request) -> web.Response:
    """Answer the platform's URL check: echo `echostr` when the signature is right."""
    query = request.query
    token = request.app[SETTINGS].token
    expected = sign(token, query.get("timestamp", ""), query.get("nonce", ""))
    if not query.get("timestamp") or not signature_matches(expected, query.get("signature")):
        log.warning("verification refused reason=signature")
        return web.Response(status=403, text="signature does not match")
    return web.Response(text=query.get("echostr", ""), content_type="text/plain")


async def receive(request: web.Request) -> web.Response:
    """Verify, open, de-duplicate and answer one delivery from WeChat."""
    started = time.perf_counter()
    app = request.app
    settings, crypto = app[SETTINGS], app[CRYPTO]
    try:
        body = await _read_body(request, settings.max_body_bytes)
        envelope = open_envelope(body, request.query, crypto, settings.message_mode)
        incoming = read_incoming(envelope)
    except RefusedRequest as exc:
        log.warning("delivery refused status=%d reason=%s", exc.status, exc.reason)
        return web.Response(status=exc.status, text=exc.reason)
    except TimeoutError:
        log.warning("delivery refused status=408 reason=body not complete in time")
        return web.Response(status=408, text="body not complete in time")

    services = app[SERVICES]
    try:
        claimed, stored_dialog, language, kept = await _claim(app, incoming)
    except RedisError:
        # Without Redis retries cannot be told apart; answering beats a 5xx the citizen sees.
        log.exception("redis unavailable: handling without retry protection")
        claimed, stored_dialog, language, kept = True, None, await _row_language(incoming), True
    if claimed and language is None and not kept:
        language = await app[LANGUAGES_BACK].language_of(services, incoming.openid)
    if not claimed:
        xml = await _wait_for_first(services, incoming)
        service, is_retry = "retry", True
    else:
        dialog = Dialog(
            services.redis, incoming.openid, settings.dialog_ttl_s, stored_dialog, app[BATCH]
        )
        ctx = Context(incoming, services, dialog, language=language or DEFAULT_LANGUAGE)
        xml = await _answer(app, ctx)
        # Not awaited: a retry that comes before the reply is stored finds it pending, waits.
        stored = app[BATCH].execute(
            ("SET", keys.dedup_key(incoming.delivery_id), xml, "EX", keys.DEDUP_TTL_S)
        )
        stored.add_done_callback(_log_store_failure)
        service, is_retry = ctx.service or "-", False

    ms = (time.perf_counter() - started) * 1000
    log.info(
        "message handled type=%s event=%s service=%s ms=%.1f retry=%s",
        incoming.msg_type,
        incoming.event or "-",
        service,
        ms,
        is_retry,
    )
    return _respond(xml, envelope, crypto, request)


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise RefusedRequest(413, "body is larger than the limit")
    if request.content.is_eof():  # it all came with the headers: nothing to wait for
        return await _read_arrived(request, limit)
    async with asyncio.timeout(BODY_READ_TIMEOUT_S):
        return await _read_arrived(request, limit)


async def _read_arrived(request: web.Request, limit: int) -> bytes:
    # read() returns what has arrived so far: over a network, maybe a part of the body.
    body = b""
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise RefusedRequest(413, "body is larger than the limit")
    return body


async def _claim(
    app: web.Application, incoming: Incoming
) -> tuple[bool, str | None, str | None, bool]:
    """Claim the delivery and load the citizen's dialog and language, in one round trip.

    The last value says whether Redis keeps every chosen language (keys.LANGUAGES_KEPT_KEY):
    then a citizen without one in their hash has the default.
    """
    claimed, dialog, language, kept = await app[BATCH].execute(
        ("SET", keys.dedup_key(incoming.delivery_id), PENDING, "NX", "EX", keys.DEDUP_TTL_S),
        ("GET", keys.dialog_key(incoming.openid)),
        ("HGET", keys.citizen_key(incoming.openid), "language"),
        ("EXISTS", keys.LANGUAGES_KEPT_KEY),
    )
    return bool(claimed), dialog, language, bool(kept)


async def _row_language(incoming: Incoming) -> str | None:
    """Read the citizen's language from their row, while Redis cannot be read."""
    from models.citizen import Citizen

    try:
        found = await Citizen.filter(openid=incoming.openid).values_list("language", flat=True)
    except Exception:  # the reply matters more than its language
        log.exception("language not read")
        return None
    return str(found[0]) if found and found[0] else None


class LanguagesBack:
    """Puts the chosen languages back into a Redis that lost them, one load at a time.

    Messages that arrive while a load runs wait for it instead of starting their own, up to
    WAIT_S: past that they are answered in the default language and the load goes on.
    """

    WAIT_S = 1.0

    def __init__(self) -> None:
        self._load: asyncio.Task[dict[str, str]] | None = None

    async def language_of(self, services: Services, openid: str) -> str | None:
        """Return the citizen's language from the database's (None: it could not be read)."""
        from models import preferences

        if self._load is None or self._load.done():
            self._load = asyncio.ensure_future(preferences.keep_languages(services))
        try:
            async with asyncio.timeout(self.WAIT_S):
                chosen = await asyncio.shield(self._load)
        except TimeoutError:
            log.warning("languages still being put back: default language for this reply")
            return None
        except Exception:  # the reply matters more than its language
            log.exception("languages not put back")
            return None
        return chosen.get(openid, DEFAULT_LANGUAGE)

    async def close(self) -> None:
        if self._load is not None and not self._load.done():
            self._load.cancel()
            await asyncio.gather(self._load, return_exceptions=True)


LANGUAGES_BACK = web.AppKey("languages_back", LanguagesBack)


def _log_store_failure(stored: asyncio.Future[list[object]]) -> None:
    if not stored.cancelled() and stored.exception() is not None:
        log.error("reply not stored for retries error=%s", stored.exception())


async def _wait_for_first(services: Services, incoming: Incoming) -> str:
    """Return the reply the first delivery gave, waiting while it is still being handled."""
    key = keys.dedup_key(incoming.delivery_id)
    deadline = time.monotonic() + services.settings.reply_budget_s
    while True:
        stored = await services.redis.get(key)
        if stored is None or stored != PENDING:
            return stored or SUCCESS_BODY
        if time.monotonic() >= deadline:
            return SUCCESS_BODY
        await asyncio.sleep(keys.DEDUP_POLL_S)


async def _answer(app: web.Application, ctx: Context) -> str:
    """Dispatch within the reply budget; an overrun is answered later by customer service."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(app[DISPATCHER].dispatch(ctx))
    # What asyncio.wait(timeout=) does, without its sets and per-call helpers: wake on the
    # reply or on the budget, whichever comes first.
    woken = loop.create_future()
    task.add_done_callback(lambda _: _wake(woken))
    timer = loop.call_later(app[SETTINGS].reply_budget_s, _wake, woken)
    try:
        await woken
    finally:
        timer.cancel()
    if task.done():
        reply = task.result()
        if reply.then_text:
            _send_soon(app, ctx, reply.then_text)
        return _reply_xml(ctx.incoming, reply)
    log.warning("reply budget overrun service=%s: answering by customer service", ctx.service)
    late = asyncio.ensure_future(_send_late(ctx, task))
    app[LATE_REPLIES].add(late)
    late.add_done_callback(app[LATE_REPLIES].discard)
    return SUCCESS_BODY


def _send_soon(app: web.Application, ctx: Context, text: str) -> None:
    """Send a customer-service text once the reply is on its way, kept until sent."""
    sending = asyncio.ensure_future(_send_text(ctx, text, "text after the reply"))
    app[LATE_REPLIES].add(sending)
    sending.add_done_callback(app[LATE_REPLIES].discard)


async def _send_text(ctx: Context, text: str, what: str) -> None:
    """Send a customer-service text; a failure is logged as `what` failed, not raised."""
    try:
        await ctx.services.api.send_text(ctx.openid, clean_text(text))
    except Exception:
        log.exception("%s failed service=%s", what, ctx.service)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _send_late(ctx: Context, task: asyncio.Future[Reply]) -> None:
    reply = await task
    if reply.is_transfer:
        # A hand-over exists only as a passive reply: say how to reach an agent instead.
        reply = ctx.reply("errors/late_transfer.j2")
    if reply.text is not None:
        await _send_text(ctx, reply.text, "late reply")


def _reply_xml(incoming: Incoming, reply: Reply) -> str:
    if reply.is_transfer:
        return transfer_reply_xml(incoming)
    if reply.text is None:
        return SUCCESS_BODY
    return text_reply_xml(incoming, reply.text)


def _respond(
    xml: str, envelope: Envelope, crypto: MessageCrypto, request: web.Request
) -> web.Response:
    if xml == SUCCESS_BODY or not envelope.encrypted:
        return web.Response(text=xml, content_type="text/xml" if xml != SUCCESS_BODY else None)
    nonce = request.query.get("nonce", "")
    timestamp = request.query.get("timestamp", "")
    sealed = crypto.encrypt(xml, envelope.key_index, nonce, timestamp)
    return web.Response(text=sealed, content_type="text/xml")
