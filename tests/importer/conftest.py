"""Fixtures for the importer tests: raw fixture files, an import runner and a seeded book."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.db.engine import make_engine, migrate
from bot.db.scratch import scratch_schema
from bot.importer.run import ImportReport, import_csv
from tests.conftest import ENGINES, PG_URL
from tests.importer.helpers import SEED_ACCOUNTS

RawFile = Callable[..., Path]
Importer = Callable[..., ImportReport]


@pytest.fixture
def raw_file(tmp_path: Path) -> RawFile:
    """Factory writing a file exactly as given (no stripping): str is encoded, bytes are written."""

    def make(name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
        return path

    return make


@pytest.fixture
def importer(engine: Engine, raw_file: RawFile) -> Importer:
    """Factory: importer(kind, content, dry_run=False) writes the content to a new file and imports it."""
    counter = itertools.count()

    def run(
        kind: str, content: str | bytes, *, dry_run: bool = False, encoding: str = "utf-8"
    ) -> ImportReport:
        path = raw_file(f"{kind}-{next(counter)}.csv", content, encoding)
        return import_csv(engine, kind, path, dry_run=dry_run)

    return run


@pytest.fixture
def book(engine: Engine, importer: Importer) -> Engine:
    """The migrated engine with the two seed accounts (A1 acme.com, A2 globex.com) imported."""
    importer("accounts", SEED_ACCOUNTS)
    return engine


@pytest.fixture(scope="module", params=ENGINES)
def shared_book(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One seeded book per module and engine, for the many tests that must leave it untouched.

    Refusals assert that the whole book is unchanged, so they can share it: a fresh PostgreSQL schema
    and migration per refusal case would cost most of the suite's time.
    """
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('shared') / 'book.db'}"
        else:
            url = stack.enter_context(scratch_schema(PG_URL or "", prefix="t"))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        migrate(engine)
        path = tmp_path_factory.mktemp("seed") / "accounts.csv"
        path.write_text(SEED_ACCOUNTS)
        import_csv(engine, "accounts", path)
        yield engine


@pytest.fixture
def shared_importer(shared_book: Engine, raw_file: RawFile) -> Importer:
    """Like `importer`, on the module's shared book."""
    counter = itertools.count()

    def run(kind: str, content: str | bytes, *, dry_run: bool = False) -> ImportReport:
        path = raw_file(f"{kind}-{next(counter)}.csv", content)
        return import_csv(shared_book, kind, path, dry_run=dry_run)

    return run
