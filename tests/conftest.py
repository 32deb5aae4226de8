"""Shared fixtures: a migrated book on SQLite, and on PostgreSQL when KEEPWELL_TEST_DATABASE_URL is set.

Each PostgreSQL test gets a schema of its own (through search_path), so tests run in parallel
against one server without seeing each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.config import KeepwellConfig
from bot.db.engine import make_engine, migrate
from bot.db.scratch import scratch_schema
from bot.services import Keepwell
from bot.store import Book

PG_URL = os.environ.get("KEEPWELL_TEST_DATABASE_URL")
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="no PG"))]
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True, scope="session")
def _no_proxy() -> Iterator[None]:
    """Every fake listens on 127.0.0.1, and some clients (slack_sdk's Socket Mode client) take a proxy
    from the environment whatever NO_PROXY says: the suite never goes through one."""
    with pytest.MonkeyPatch.context() as patch:
        for name in PROXY_VARIABLES:
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'book.db'}"
        return
    with scratch_schema(PG_URL or "", prefix="t") as url:
        yield url


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
