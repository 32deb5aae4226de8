"""The schema comes from migrations alone, and the migrations match the models, on both engines."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from bot.db.engine import alembic_config, head_revision, latest_revision, make_engine, migrate


def test_upgrade_creates_head_and_is_idempotent(db_url):
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # a second run is a no-op
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    engine.dispose()


def test_models_and_migrations_agree(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == []


def test_downgrade_to_base_and_back(engine):
    cfg = alembic_config(engine)
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "head")
    assert "usage_daily" in inspect(engine).get_table_names()


def test_unreachable_database_is_one_clear_line():
    import pytest

    from bot.errors import OperationFailed

    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(OperationFailed, match="cannot reach the database"):
        migrate(engine)


# pytest-alembic's standard checks, on both engines: one head, and every revision steps up and back.


def test_single_head_revision():
    from alembic.script import ScriptDirectory

    from bot.db.engine import alembic_config as config_for

    script = ScriptDirectory.from_config(config_for(make_engine("sqlite://")))
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()}"


def test_the_latest_revision_read_from_the_scripts_is_alembics_head():
    assert latest_revision() == head_revision() is not None


def test_a_book_a_revision_behind_is_migrated_and_one_at_head_is_checked_without_alembic(engine, db_url):
    """Every command checks the book's revision: without Alembic when it is at the latest (a command
    then starts about 0.1 s sooner), and a book behind it is still brought up to date."""
    command.downgrade(alembic_config(engine), "-1")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() != head_revision()
    migrate(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    check = ("import sys; from bot.db.engine import make_engine, migrate; "
             f"migrate(make_engine({db_url!r})); "
             "print(sorted(m for m in sys.modules if m.startswith('alembic')))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "[]"


def _schema(engine) -> dict[str, tuple]:
    """Tables with their columns, indexes and foreign keys: what a downgrade must put back."""
    insp = inspect(engine)
    out = {}
    for name in sorted(insp.get_table_names()):
        if name == "alembic_version":
            continue
        out[name] = (
            tuple(sorted(c["name"] for c in insp.get_columns(name))),
            tuple(sorted((i["name"] or "", tuple(i["column_names"])) for i in insp.get_indexes(name))),
            tuple(sorted((tuple(f["constrained_columns"]), f["referred_table"])
                         for f in insp.get_foreign_keys(name))),
        )
    return out


def test_every_revision_steps_up_and_back(db_url):
    """The stairway: up one revision, down one, up again; each downgrade restores the schema below."""
    from alembic.script import ScriptDirectory

    engine = make_engine(db_url)
    cfg = alembic_config(engine)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]
    try:
        for rev in revisions:
            before = _schema(engine)
            command.upgrade(cfg, rev)
            after = _schema(engine)
            command.downgrade(cfg, "-1")
            assert _schema(engine) == before, f"downgrade of {rev} did not restore the schema"
            command.upgrade(cfg, rev)
            assert _schema(engine) == after, f"{rev} upgraded twice gives a different schema"
    finally:
        engine.dispose()


def test_dropping_the_usage_and_snapshot_foreign_keys_keeps_every_row_and_deleting_accounts_takes_theirs(
    db_url,
):
    """0004 and 0006 rebuild the usage and snapshot tables on SQLite: their rows survive it; with no
    cascade left, `Book.delete_accounts` removes an account's usage and snapshots itself."""
    from sqlalchemy import text

    from bot.db import models as m
    from bot.store import Book

    engine = make_engine(db_url)
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0003")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (id, account_id, name, start_date, tags, updated_at) "
                          "VALUES (1, 'A1', 'One', '2025-01-01', '', '2025-01-01'), "
                          "(2, 'A2', 'Two', '2025-01-01', '', '2025-01-01')"))
        conn.execute(text("INSERT INTO usage_daily VALUES (1, '2025-02-01', 3, 9), (2, '2025-02-01', 4, 8)"))
        conn.execute(text("INSERT INTO usage_users VALUES "
                          "(1, '2025-02-01', 'u1', 2), (2, '2025-02-01', 'u2', 5)"))
        conn.execute(text(
            "INSERT INTO health_snapshots VALUES "
            "(1, '2025-02-01', 41, 'at_risk', true, false, 0.5, 0.2, true, '[]', '2025-02-01'), "
            "(2, '2025-02-01', 77, 'healthy', false, false, null, null, false, '[]', '2025-02-01')"))
    command.upgrade(cfg, "head")
    for table in ("usage_daily", "usage_users", "health_snapshots"):
        assert not inspect(engine).get_foreign_keys(table), table
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("health_snapshots")}
    assert indexes == {"ix_health_snapshots_day"}
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT account_pk, day, active_users, events FROM usage_daily ORDER BY 1"))
        assert [(pk, str(day), n, e) for pk, day, n, e in rows] == [
            (1, "2025-02-01", 3, 9), (2, "2025-02-01", 4, 8)]
        assert conn.execute(text("SELECT count(*) FROM usage_users")).scalar() == 2
        accounts = m.table_of(m.Account)
        assert Book.delete_accounts(conn, accounts.c.account_id == "A1") == 1
        assert conn.execute(text("SELECT account_pk FROM usage_daily")).scalars().all() == [2]
        assert conn.execute(text("SELECT account_pk FROM usage_users")).scalars().all() == [2]
        assert conn.execute(text("SELECT account_pk, score, band FROM health_snapshots")).all() == [
            (2, 77, "healthy")]
    engine.dispose()


def _waiting_for_lock(path: Path) -> bool:
    """Whether some process is blocked on a flock of this file (Linux lists it in /proc/locks, '->')."""
    inode = os.stat(path).st_ino
    return any("->" in line and line.split()[-3].endswith(f":{inode}")
               for line in Path("/proc/locks").read_text().splitlines())


def test_processes_migrating_one_sqlite_file_at_once_migrate_it_once(tmp_path):
    """The service restarted while cron runs `keepwell tick`: both migrate the same new book."""
    if not Path("/proc/locks").exists():
        pytest.skip("needs Linux's /proc/locks to see the second process wait")
    db = tmp_path / "book.db"
    url = f"sqlite:///{db}"
    lock = Path(f"{db}-migrate.lock")
    second = None
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # this test is the first process, in the middle of migrating
        second = subprocess.Popen(
            [sys.executable, "-c", "import sys; from bot.db.engine import make_engine, migrate; "
                                   "migrate(make_engine(sys.argv[1]))", url],
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not _waiting_for_lock(lock):
            assert second.poll() is None, f"the second process did not wait: {second.communicate()[1]}"
            assert time.monotonic() < deadline, "the second process never reached the lock"
            time.sleep(0.05)
        engine = make_engine(url)
        command.upgrade(alembic_config(engine), "head")  # what the first process does under the lock
        fcntl.flock(held, fcntl.LOCK_UN)
    _, errors = second.communicate(timeout=60)
    assert second.returncode == 0, errors
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    engine.dispose()
