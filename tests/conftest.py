"""Shared fixtures: settings, a migrated database, a flushed Redis, and a WeChat that posts."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import SERVICES, WEBHOOK_PATH, AccessLogger, create_app
from bot.platform_sim import Platform
from bot.services import Services
from bot.standin import StandIn
from config.settings import Settings

CASES_DIR = Path(__file__).resolve().parents[2] / "shared" / "cases" / "messages"
if not CASES_DIR.is_dir():  # a clone beside shared/, as CI lays it out
    CASES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "cases" / "messages"

# Set by .ci/run for the second pass against the real servers.
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")

OPENID = "oTEST0000000000000000000001"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OLD_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


def make_settings(**overrides: Any) -> Settings:
    base = Settings(
        token="testtoken",
        app_id="wxtest000000000001",
        app_secret="test-secret",
        aes_key=AES_KEY,
        message_mode="compatible",
        api_base_url="http://127.0.0.1:9",
        database_url="sqlite://:memory:",
        redis_url=TEST_REDIS_URL,
        reply_budget_s=1.0,
        staff_tokens="tok-w1:W01,tok-w2:W02,tok-admin:admin",
    )
    return replace(base, **overrides)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate an empty database once per session: real PostgreSQL when asked, else SQLite."""
    from models.db import migrate

    if TEST_DATABASE_URL:
        asyncio.run(_reset_postgres(TEST_DATABASE_URL))
        url = TEST_DATABASE_URL
    else:
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    asyncio.run(migrate(url))
    return url


async def _reset_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[str]:
    """Connect tortoise to the session's database, emptied of rows, and seeded."""
    from tortoise import Tortoise

    from models.db import close_db, init_db, seed

    await init_db(database_url)
    conn = Tortoise.get_connection("default")
    tables = [m._meta.db_table for app in Tortoise.apps.values() for m in app.values()]
    tables += ["hall_category"]
    if TEST_DATABASE_URL:
        await conn.execute_script(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    else:
        await conn.execute_script("".join(f"DELETE FROM {t};" for t in tables))
    await seed()
    yield database_url
    await close_db()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
async def app_client(settings: Settings, db: str) -> AsyncIterator[TestClient]:
    """The webhook app running on a local port, its Redis flushed."""
    client = await start_client(create_app(settings, with_database=False))
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def client_with_worker(settings: Settings) -> AsyncIterator[TestClient]:
    """Run the webhook app with a job worker draining its queue, as notices need."""
    from bot.worker import WorkerBeside

    client = await start_client(create_app(settings, with_database=False))
    # On the stand-in the app runs its own worker; on REDIS_URL it leaves that to workers.
    beside = None if settings.uses_redis_standin else WorkerBeside(client.app[SERVICES])
    if beside is not None:
        beside.start()
    try:
        yield client
    finally:
        if beside is not None:
            await beside.stop()
        await client.close()


async def start_client(app: web.Application) -> TestClient:
    server = TestServer(app)
    # The access logger of `serve`: the default one would log openids from the query string.
    await server.start_server(access_log_class=AccessLogger)
    client = TestClient(server)
    await client.start_server()
    # Each test starts from an empty Redis: on a real server, keys outlive the app.
    await client.app[SERVICES].redis.flushdb()
    return client


@pytest.fixture
def services(app_client: TestClient) -> Services:
    return app_client.app[SERVICES]


class WeChat:
    """Posts deliveries to the webhook as the platform does and opens what comes back."""

    def __init__(self, client: TestClient, platform: Platform, openid: str = OPENID) -> None:
        self.client = client
        self.platform = platform
        self.openid = openid

    async def post(self, xml: str, **deliver: Any) -> tuple[int, str]:
        delivery = self.platform.deliver(xml, **deliver)
        response = await self.client.post(WEBHOOK_PATH, params=delivery.query, data=delivery.body)
        return response.status, await response.text()

    async def send(self, xml: str) -> dict[str, Any] | None:
        """Post `xml`, expect 200, and return the opened reply (None for `success`)."""
        status, body = await self.post(xml)
        assert status == 200, body
        return self.platform.open_reply(body)

    async def say(self, text: str) -> str:
        """Type `text` and return the text of the reply."""
        return _content(await self.send(Platform.text(self.openid, text)))

    async def tap(self, key: str) -> str:
        """Tap the menu entry `key` and return the text of the reply."""
        return _content(await self.send(Platform.click(self.openid, key)))


def _content(reply: dict[str, Any] | None) -> str:
    assert reply is not None, "expected a passive reply, got success"
    assert reply["MsgType"] == "text", reply
    return str(reply["Content"])


@pytest.fixture
def platform(settings: Settings) -> Platform:
    return Platform(settings.token, settings.app_id, settings.aes_key, mode="safe")


@pytest.fixture
def wechat(app_client: TestClient, platform: Platform) -> WeChat:
    return WeChat(app_client, platform)


@pytest.fixture
def case_files() -> Iterator[Path]:
    return iter(sorted(CASES_DIR.glob("*.xml")))


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    """A started WeChat API stand-in for the test account; point `api_base_url` at its url."""
    account = make_settings()
    stand_in = StandIn(app_id=account.app_id, app_secret=account.app_secret)
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


async def claimed_notice(services: Services, ref: str, kind: str, wait_s: float = 5.0) -> Any:
    """Return the row of a notice queued with `push.notify_soon`, once a job has claimed it.

    On the Redis stand-in the app's own worker runs the job; on a real Redis one runs here
    meanwhile (not in burst mode: a retry deferred by a frozen clock would keep it going).
    """
    from bot.worker import build_worker, stop_worker
    from models.notice import Notice

    worker, running = None, None
    if not services.settings.uses_redis_standin and services.jobs is not None:
        worker = build_worker(
            services.settings, services.jobs, ctx={"services": services}, handle_signals=False,
            poll_delay_s=0.01,
        )  # fmt: skip
        running = asyncio.ensure_future(worker.async_run())
    try:
        for _ in range(int(wait_s / 0.02)):  # counted, not timed: tests may freeze the clock
            notice = await Notice.get_or_none(ref=ref, kind=kind)
            if notice is not None:
                return notice
            await asyncio.sleep(0.02)
    finally:
        if worker is not None and running is not None:
            # Let the job that claimed it finish sending before the worker stops.
            if worker.tasks:
                await asyncio.wait(list(worker.tasks.values()), timeout=wait_s)
            await stop_worker(worker, running)
    raise AssertionError(f"notice {kind} {ref} was never claimed")
