"""Engines for the book: SQLite (embedded default) or PostgreSQL, migrated to the latest schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import fcntl
except ImportError:  # not on Windows: SQLite books there migrate without the lock
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from bot.errors import BadInput, OperationFailed

if TYPE_CHECKING:  # Alembic is imported only to migrate: every command checks the revision without it
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x4B57  # PostgreSQL advisory lock for migrations: (this, SCHEMA_KEY)
SCHEMA_KEY = "hashtext(coalesce(current_schema(), ''))"  # books in other schemas migrate independently


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine for a SQLAlchemy URL; a URL that cannot work is bad input (exit 2)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadInput(f"invalid database URL {url!r} (expected e.g. sqlite:///./keepwell.db)") from None
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("postgresql"):
        kwargs.setdefault("pool_pre_ping", True)  # a connection the server closed (a restart) is replaced
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().parent
        if not folder.is_dir():
            raise BadInput(f"database folder {folder} does not exist")
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise BadInput(f"unsupported database URL {parsed.render_as_string()}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    """The latest revision, as Alembic finds it (loading every migration script)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(create_engine("sqlite://"))).get_current_head()


_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([^'\"\s]+)", re.M)


@cache
def latest_revision() -> str | None:
    """The latest revision read from the scripts' text (their `revision` that no script names as its
    `down_revision`): what `head_revision` gives, without importing Alembic and every script
    (`keepwell health` on the demo book: 1.03 s with them, 0.91 s without, medians of 6).
    tests/test_migrations.py checks they agree. None when that is not one revision (branches):
    then `migrate` asks Alembic."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_REVISION.findall(script.read_text()))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _current_revision(conn: Connection) -> str | None:
    """The book's revision, as Alembic records it (None for a new book, or for more than one)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return found[0] if len(found) == 1 else None


def _upgrade(engine: Engine) -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock beside a SQLite file, held while this block runs (none for an in-memory book,
    or where the system has no `flock`). The file stays: removing it would let a third process lock a
    new one while the second still holds the old."""
    database = engine.url.database
    if not database or database == ":memory:" or fcntl is None:
        yield
        return
    with open(f"{Path(database).expanduser()}-migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest revision (a no-op when it is already there).

    Processes starting together against one book migrate it once: the first upgrades, the others wait
    for it and then find the schema at head (without that, the others fail on the tables the first is
    creating). On PostgreSQL they wait on an advisory lock (one per schema); on a SQLite file, on a
    lock of the file beside it (`book.db-migrate.lock`: the service restarted while cron runs `tick`).
    """
    try:
        with engine.connect() as conn:
            latest = latest_revision()
            if latest is not None and _current_revision(conn) == latest:
                return
        if engine.dialect.name != "postgresql":
            with _file_lock(engine):
                with engine.connect() as conn:  # another process may have migrated while this one waited
                    current = _current_revision(conn)
                if current != head_revision():
                    _upgrade(engine)
            return
        with engine.connect() as lock:  # held until this transaction ends, however it ends
            lock.execute(text(f"SELECT pg_advisory_xact_lock(:key, {SCHEMA_KEY})"), {"key": MIGRATION_LOCK})
            with engine.connect() as conn:  # another instance may have migrated while this one waited
                current = _current_revision(conn)
            if current != head_revision():
                _upgrade(engine)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise OperationFailed(f"cannot reach the database: {reason}") from None
