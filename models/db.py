"""Database set-up: the tortoise configuration, migrations and seeding from config/."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url

from config.settings import CONFIG_DIR

log = logging.getLogger(__name__)

MODEL_MODULES = [
    "models.citizen",
    "models.hall",
    "models.notice",
    "models.queue",
    "models.booking",
    "models.calendar",
    "models.feedback",
    "models.classroom",
    "models.catalogue",
    "models.application",
]
SEED_FILE = CONFIG_DIR / "halls.toml"
# For the `tortoise` command (makemigrations): `tortoise -c models.db.TORTOISE_ORM ...`
TORTOISE_ORM: dict[str, Any] = {}


class _KeepSessionConnection(asyncpg.Connection):
    """A pooled connection given back without asyncpg's reset query (RESET ALL, UNLISTEN, ...).

    The project sets no session state, and that query is one more round trip after every
    query; an open transaction is still rolled back on release.
    """

    def get_reset_query(self) -> str:
        return ""


# PostgreSQL connections per process (tortoise's default maxsize), and how long a query of
# the webhook or a worker may take.
POOL_SIZE = 5
COMMAND_TIMEOUT_S = 60.0


def tortoise_config(database_url: str, *, keep_pool_open: bool = False) -> dict[str, Any]:
    url = database_url
    if url.startswith("postgresql://"):
        url = "postgres://" + url[len("postgresql://") :]
    connection: str | dict[str, Any] = url
    if url.startswith("postgres://"):
        connection = expand_db_url(url)
        credentials = connection["credentials"]
        credentials["connection_class"] = _KeepSessionConnection
        if "sslmode" in credentials:  # libpq's name in a URL; asyncpg takes the same values as ssl
            credentials["ssl"] = credentials.pop("sslmode")
        if keep_pool_open:
            # All of a server's connections open at start and stay open: a pool left to shrink
            # overnight met the morning rush opening connections (a PostgreSQL process each)
            # under load. The URL's own minsize / maxsize / max_inactive_connection_lifetime win.
            minsize = credentials.get("minsize")
            credentials.setdefault("maxsize", max(POOL_SIZE, int(minsize or 0)))
            credentials.setdefault("minsize", credentials["maxsize"])
            credentials.setdefault("max_inactive_connection_lifetime", 0.0)
            # Nothing recycles a kept connection: a query on one dropped without a word
            # (a failover, a firewall's idle cut) gives up after this, not after TCP's hours.
            credentials.setdefault("command_timeout", COMMAND_TIMEOUT_S)
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _ensure_sqlite_dir(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        Path(database_url[len("sqlite://") :]).parent.mkdir(parents=True, exist_ok=True)


class SchemaNotReady(RuntimeError):
    """The database lacks migrations this code needs: `python -m bot db create` applies them."""


async def init_db(
    database_url: str, *, check_schema: bool = False, keep_pool_open: bool = False
) -> None:
    """Connect tortoise; `keep_pool_open` for the long-running webhook and workers."""
    from models.queue import forget_calling_halls

    # Another database may hold other halls and openings; a read of the last one's left in
    # flight (its connection closed under it) must not hold this one's.
    forget_calling_halls()
    _ensure_sqlite_dir(database_url)
    await Tortoise.init(config=tortoise_config(database_url, keep_pool_open=keep_pool_open))
    if check_schema:
        pending = await pending_migrations()
        if pending:
            await Tortoise.close_connections()
            raise SchemaNotReady(
                f"the database lacks {len(pending)} migration(s), the first {pending[0]}: "
                "run `python -m bot db create` (or `db migrate`) first"
            )


async def pending_migrations() -> list[str]:
    """Return the migrations not yet applied to the connected database, in order."""
    from tortoise.connection import get_connection
    from tortoise.migrations.executor import MigrationExecutor

    config = tortoise_config("sqlite://:memory:")["apps"]
    executor = MigrationExecutor(get_connection("default"), config)
    steps = await executor.plan()
    return [type(step.migration).__module__.rsplit(".", 1)[-1] for step in steps]


async def close_db() -> None:
    await Tortoise.close_connections()


async def migrate(database_url: str) -> None:
    """Apply every migration in models/migrations to the database."""
    from tortoise.migrations.api.migrate import migrate as run_migrations

    _ensure_sqlite_dir(database_url)
    try:
        await run_migrations(config=tortoise_config(database_url))
    finally:
        # An open aiosqlite thread would keep the process alive after a failed migration.
        await Tortoise.close_connections()


def load_seed(path: Path = SEED_FILE) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


async def seed(path: Path = SEED_FILE) -> dict[str, int]:
    """Create or update the categories and halls in `path`; return how many of each."""
    from models.hall import HALL_KINDS, Category, Hall, forget_halls

    data = load_seed(path)
    categories = {}
    for sort, item in enumerate(data.get("categories", [])):
        defaults = {k: item[k] for k in ("name", "prefix") if k in item}
        defaults.update(description=item.get("description", ""), sort=sort)
        category, _ = await Category.update_or_create(defaults, code=item["code"])
        categories[category.code] = category
    halls = 0
    for sort, item in enumerate(data.get("halls", [])):
        if item.get("kind", "branch") not in HALL_KINDS:
            raise ValueError(f"hall {item['code']}: kind must be one of {HALL_KINDS}")
        fields = {k: v for k, v in item.items() if k not in ("code", "categories")}
        fields["sort"] = sort
        hall, _ = await Hall.update_or_create(fields, code=item["code"])
        await hall.categories.clear()
        chosen = [categories[c] for c in item.get("categories", [])]
        if chosen:
            await hall.categories.add(*chosen)
        halls += 1
    from models.catalogue import seed_catalogue
    from models.classroom import seed_activities
    from models.queue import seed_windows

    windows = await seed_windows()
    await seed_catalogue()
    await seed_activities()
    forget_halls()
    log.info("seeded categories=%d halls=%d windows=%d", len(categories), halls, windows)
    return {"categories": len(categories), "halls": halls, "windows": windows}


TORTOISE_ORM.update(tortoise_config("sqlite://data/makemigrations.sqlite3"))
