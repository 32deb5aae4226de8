"""Shared fixtures: a migrated book on SQLite, and on PostgreSQL when KEEPWELL_TEST_DATABASE_URL is set.

Each PostgreSQL test gets a schema of its own (through search_path), so tests run in parallel
against one server without seeing each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bot.config import KeepwellConfig
from bot.db.engine import make_engine, migrate
from bot.services import Keepwell
from bot.store import Book

PG_URL = os.environ.get("KEEPWELL_TEST_DATABASE_URL")
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="no PG"))]


def _pg_base() -> str:
    url = make_url(PG_URL or "")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'book.db'}"
        return
    base = _pg_base()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def service(engine: Engine) -> Keepwell:
    return Keepwell(Book(engine), KeepwellConfig())


def write_csv(path: Path, text_: str, encoding: str = "utf-8") -> Path:
    """Write a CSV fixture (dedented lines joined by CRLF-free newlines)."""
    lines = [line.strip() for line in text_.strip().splitlines()]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.fixture
def csv_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: csv_file("name.csv", "a,b\\n1,2", encoding="utf-8") → Path."""

    def make(name: str, content: str, encoding: str = "utf-8") -> Path:
        return write_csv(tmp_path / name, content, encoding)

    return make
