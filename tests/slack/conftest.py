"""A small scored demo book shared by the Slack tests of a module (read-mostly)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from bot.config import KeepwellConfig
from bot.db.engine import make_engine, migrate
from bot.sample_book import generate_book
from bot.services import Keepwell
from bot.store import Book
from integrations.outbox import Outbox

AS_OF = date(2026, 6, 30)


def build_book(folder: Path, config: KeepwellConfig | None = None) -> Keepwell:
    engine = make_engine(f"sqlite:///{folder / 'book.db'}")
    migrate(engine)
    service = Keepwell(Book(engine), config or KeepwellConfig(), drafts=Outbox(folder / "outbox"))
    for kind, path in generate_book(folder / "csv", accounts=40, days=90, as_of=AS_OF, user_level_days=0):
        service.import_file(kind, path)
    service.score(AS_OF)
    return service


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keepwell]:
    service = build_book(tmp_path_factory.mktemp("slackbook"))
    yield service
    service.book.engine.dispose()
