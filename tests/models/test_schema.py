"""The schema: migrations apply cleanly and match the models."""

from __future__ import annotations

import importlib
from pathlib import Path

from tortoise import Tortoise

from models.db import MODEL_MODULES


def test_model_docstring_semicolon_breaks_migration() -> None:
    """A ';' in a table comment splits tortoise's SQLite DDL; no model may carry one."""
    for module_name in MODEL_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            meta = getattr(value, "_meta", None)
            if meta is None or getattr(meta, "abstract", True):
                continue
            assert ";" not in (meta.table_description or ""), value
            for field in meta.fields_map.values():
                assert ";" not in (field.description or ""), (value, field.model_field_name)


async def test_migrations_create_every_model_table(db: str) -> None:
    conn = Tortoise.get_connection("default")
    for app in Tortoise.apps.values():
        for model in app.values():
            # Raises when the migrations did not create the table or one of its columns.
            columns = ", ".join(model._meta.fields_db_projection.values())
            await conn.execute_query(f"SELECT {columns} FROM {model._meta.db_table} WHERE 1 = 0")


async def test_serving_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    """`serve` once started on an empty database and answered every message with an error."""
    import pytest

    from models.db import SchemaNotReady, init_db, migrate

    url = f"sqlite://{tmp_path / 'empty.sqlite3'}"
    with pytest.raises(SchemaNotReady, match="db create"):
        await init_db(url, check_schema=True)
    await migrate(url)
    await init_db(url, check_schema=True)
    await Tortoise.close_connections()


def test_a_servers_pool_opens_all_its_connections_and_keeps_them() -> None:
    """The pool started at one connection and let idle ones go after 5 minutes: the morning
    rush met a shrunken pool and opened connections under load."""
    from models.db import POOL_SIZE, tortoise_config

    url = "postgres://postgres@127.0.0.1:5432/civic"
    served = tortoise_config(url, keep_pool_open=True)["connections"]["default"]["credentials"]
    one_off = tortoise_config(url)["connections"]["default"]["credentials"]
    chosen = tortoise_config(
        url + "?maxsize=9&max_inactive_connection_lifetime=60", keep_pool_open=True
    )

    assert (served["minsize"], served["maxsize"]) == (POOL_SIZE, POOL_SIZE)
    assert served["max_inactive_connection_lifetime"] == 0
    assert "minsize" not in one_off  # a command or a test: tortoise's lazy default
    credentials = chosen["connections"]["default"]["credentials"]
    assert (int(credentials["minsize"]), int(credentials["maxsize"])) == (9, 9)
    assert credentials["max_inactive_connection_lifetime"] == 60
    small_max = tortoise_config(url + "?minsize=7", keep_pool_open=True)["connections"]["default"]
    assert int(small_max["credentials"]["maxsize"]) == 7  # not 5 under a minsize of 7
    assert (
        tortoise_config("sqlite://x.sqlite3", keep_pool_open=True)["connections"]["default"]
        == "sqlite://x.sqlite3"
    )


def test_a_url_with_sslmode_reaches_asyncpg_as_ssl() -> None:
    """?sslmode=require went to asyncpg as an unknown keyword: db create died with a traceback."""
    from models.db import tortoise_config

    config = tortoise_config("postgres://u@db.example:5432/civic?sslmode=require")
    credentials = config["connections"]["default"]["credentials"]

    assert credentials["ssl"] == "require" and "sslmode" not in credentials
