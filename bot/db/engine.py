"""Engines for the book: SQLite (embedded default) or PostgreSQL, migrated to the latest schema."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: SQLite books there migrate without the lock
    fcntl = None  # type: ignore[assignment]

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from bot.errors import BadInput, OperationFailed

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
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config(create_engine("sqlite://"))).get_current_head()


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


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
            if _current_revision(conn) == head_revision():
                return
        if engine.dialect.name != "postgresql":
            with _file_lock(engine):
                with engine.connect() as conn:  # another process may have migrated while this one waited
                    current = _current_revision(conn)
                if current != head_revision():
                    command.upgrade(alembic_config(engine), "head")
            return
        with engine.connect() as lock:  # held until this transaction ends, however it ends
            lock.execute(text(f"SELECT pg_advisory_xact_lock(:key, {SCHEMA_KEY})"), {"key": MIGRATION_LOCK})
            with engine.connect() as conn:  # another instance may have migrated while this one waited
                current = _current_revision(conn)
            if current != head_revision():
                command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise OperationFailed(f"cannot reach the database: {reason}") from None
