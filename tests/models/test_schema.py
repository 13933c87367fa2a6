"""The schema: migrations apply cleanly and match the models."""

from __future__ import annotations

import importlib

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
