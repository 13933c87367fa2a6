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
