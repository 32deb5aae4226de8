"""Where validated rows go, batch by batch, inside the import's one transaction.

SQLite: each batch is upserted through the driver's `executemany` (`INSERT … ON CONFLICT … DO UPDATE`).

PostgreSQL (psycopg 3): rows are written by a thread of their own, `COPY_ROWS` at a time, while the
next ones are read and checked: the server stores rows on one core while Python parses on the other.

- Each COPY goes straight into the kind's table inside a savepoint: the common large import (a
  first load, or days the book does not hold yet) costs the server no more than storing the rows.
- Rows that meet a key the book already holds (a unique violation) are rolled back to the savepoint
  and go, like every row after them, through a temporary staging table (`ON COMMIT DROP`) and one
  `INSERT … SELECT … ON CONFLICT … DO UPDATE` per COPY. Rows equal to the stored ones are left as
  they are (`WHERE … IS DISTINCT FROM`), so re-importing a file rewrites nothing.
- Concurrent imports of the same keys need no lock: a COPY waits for the other transaction's rows,
  meets them as stored keys and merges.

A refused file (an invalid row, a key repeated in the file) is rolled back whole. A database error in
the writer thread stops the writing; `finish` raises it unless the file's own problems explain it
better (a key given twice in one batch, say, is reported as the repeated key it is).

A block of rows that a kind read whole (`Kind.bulk`, the usage file's common case) comes as `CopyText`:
COPY's text format already, built by the reading thread with one `join` a block, so the writer thread
only sends it (its Python cost per row is then none; `write_row` spent about a microsecond a row).

COPY's text format, not the binary one: binary was about 0.7 s faster on 3M usage rows (of 18 s),
but psycopg's binary int4 dumper wraps an out-of-range Python int around silently (2**31 is stored as
-2147483648), where the text format has the server check every value as an INSERT would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Queue
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.exc import DBAPIError

from bot.importer.kinds import Context, CopyText, Kind, Row

if TYPE_CHECKING:  # imported when first needed: SQLite's start-up does without it (~40 ms)
    import psycopg

STAGING = "keepwell_import"  # a temporary table: pg_temp.keepwell_import, dropped at commit
SAVEPOINT = "keepwell_batch"
COPY_ROWS = 100_000  # rows per COPY: each COPY's end is a hand-over of the GIL between the two threads
IN_FLIGHT = 1  # COPYs read ahead of the writer thread (memory: a few hundred thousand rows)


Batch = list[Row] | CopyText


class UpsertWriter:
    """Each batch goes straight into the table through `executemany` (SQLite, and any other driver)."""

    def __init__(self, kind: Kind, ctx: Context) -> None:
        self.ctx = ctx
        self.sql = kind.upsert_sql(ctx.sqlite)

    def write(self, rows: Batch) -> None:
        if isinstance(rows, CopyText):
            raise TypeError("COPY text needs a COPY writer")
        if rows:
            self.ctx.conn.exec_driver_sql(self.sql, rows)

    def finish(self) -> None:
        """Nothing is pending: every batch was written as it came."""

    def close(self) -> None:
        """Nothing runs beside the import."""


@contextmanager
def _as_sqlalchemy_error(sql: str) -> Iterator[None]:
    """A driver error raised as SQLAlchemy would raise it, so the runner reports it the same way."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


class CopyWriter:
    """Batches are COPYed by a writer thread: into the table while no stored key is met, else merged."""

    def __init__(self, kind: Kind, ctx: Context) -> None:
        self.kind = kind
        self.ctx = ctx
        self.raw = cast("psycopg.Connection[Any]", ctx.conn.connection.driver_connection)
        self.columns = ", ".join(kind.insert)
        self.staged = False
        self.merging = False  # a batch met stored keys: this and the later ones go through staging
        self.error: Exception | None = None  # the first error the writer thread met
        self.pending: list[Batch] = []  # batches not yet handed to the writer thread
        self.pending_rows = 0
        self.queue: Queue[list[Batch] | None] = Queue(maxsize=IN_FLIGHT)
        self.thread: threading.Thread | None = None

    def write(self, rows: Batch) -> None:
        """Gather a batch, and hand COPY_ROWS rows at a time to the writer thread.

        The thread that waits on the server must get the GIL back from the thread that parses
        every time the server answers (up to 5 ms each, the interpreter's switch interval): with a
        COPY per 20,000 rows those waits left the server idle a third of the time."""
        if self.error is not None or not rows:
            return
        self.pending.append(rows)
        self.pending_rows += len(rows)
        if self.pending_rows >= COPY_ROWS:
            self._hand_over()

    def _hand_over(self) -> None:
        if not self.pending:
            return
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="keepwell-import-write", daemon=True)
            self.thread.start()
        self.queue.put(self.pending)
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        """Wait for the rows in flight (always called, so no thread outlives the import)."""
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None

    def finish(self) -> None:
        """Store the last rows; then raise the writer's error, if it met one."""
        if self.error is None:
            self._hand_over()
        self.close()
        if self.error is not None:
            with _as_sqlalchemy_error(getattr(self.error, "sql", "")):
                raise self.error

    # the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while (rows := self.queue.get()) is not None:
            if self.error is not None:
                continue  # the transaction is lost: drain what is still coming, so no put blocks
            with self.ctx.lock:
                try:
                    self._store(rows)
                except Exception as exc:  # any error, or the reader would wait on a full queue forever
                    self.error = exc

    def _execute(self, sql: str) -> None:
        import psycopg

        try:
            self.raw.execute(sql)
        except psycopg.Error as exc:
            exc.sql = sql  # type: ignore[attr-defined]
            raise

    def _copy(self, table: str, batches: list[Batch]) -> None:
        import psycopg

        sql = f"COPY {table} ({self.columns}) FROM STDIN"
        try:
            with self.raw.cursor() as cursor, cursor.copy(sql) as copy:
                for batch in batches:
                    if isinstance(batch, CopyText):
                        copy.write(batch.text)
                    else:
                        for row in batch:
                            copy.write_row(row)
        except psycopg.Error as exc:
            exc.sql = sql  # type: ignore[attr-defined]
            raise

    def _store(self, rows: list[Batch]) -> None:
        from psycopg.errors import UniqueViolation

        if not self.merging:
            self._execute(f"SAVEPOINT {SAVEPOINT}")
            try:
                self._copy(self.kind.table, rows)
            except UniqueViolation:
                self._execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                self.merging = True
            else:
                self._execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
                return
        if not self.staged:  # the kind's columns with the target's exact types; no rows, no constraints
            self._execute(f"CREATE TEMP TABLE {STAGING} ON COMMIT DROP AS "
                          f"SELECT {self.columns} FROM {self.kind.table} WITH NO DATA")
            self.staged = True
        self._copy(f"pg_temp.{STAGING}", rows)
        self._execute(self.kind.merge_sql(f"pg_temp.{STAGING}"))
        self._execute(f"TRUNCATE pg_temp.{STAGING}")


Writer = UpsertWriter | CopyWriter


def writer_for(kind: Kind, ctx: Context) -> Writer:
    """COPY on PostgreSQL through psycopg 3; `executemany` upserts otherwise."""
    return CopyWriter(kind, ctx) if ctx.copy else UpsertWriter(kind, ctx)
