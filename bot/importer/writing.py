"""Where validated rows go, batch by batch, inside the import's one transaction.

SQLite: each batch is upserted through the driver's `executemany` (`INSERT … ON CONFLICT … DO UPDATE`).

PostgreSQL (psycopg 3): each batch is sent with `COPY` into a temporary staging table holding the
kind's columns (`ON COMMIT DROP`); once the whole file has validated, one `INSERT … SELECT … ON
CONFLICT … DO UPDATE` moves the rows into the book. Rows equal to the stored ones are left as they are
(`WHERE … IS DISTINCT FROM`), so re-importing a file rewrites nothing. A refused file never gets to
that statement, and the transaction's rollback takes the staging table with it.

COPY's text format, not the binary one: binary was about 0.7 s faster on 3M usage rows (of 18 s),
but psycopg's binary int4 dumper wraps an out-of-range Python int around silently (2**31 is stored as
-2147483648), where the text format has the server check every value as an INSERT would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.exc import DBAPIError

from bot.importer.kinds import Context, Kind, Row

if TYPE_CHECKING:  # imported when first needed: SQLite's start-up does without it (~40 ms)
    import psycopg

STAGING = "keepwell_import"  # a temporary table: pg_temp.keepwell_import, dropped at commit


class UpsertWriter:
    """Each batch goes straight into the table through `executemany` (SQLite, and any other driver)."""

    def __init__(self, kind: Kind, ctx: Context) -> None:
        self.ctx = ctx
        self.sql = kind.upsert_sql(ctx.sqlite)

    def write(self, rows: list[Row]) -> None:
        if rows:
            self.ctx.conn.exec_driver_sql(self.sql, rows)

    def finish(self) -> None:
        """Nothing is pending: every batch was written as it came."""


@contextmanager
def _as_sqlalchemy_error(sql: str) -> Iterator[None]:
    """A driver error raised as SQLAlchemy would raise it, so the runner reports it the same way."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


class CopyWriter:
    """Batches are COPYed into a staging table; `finish` upserts them into the kind's table at once."""

    def __init__(self, kind: Kind, ctx: Context) -> None:
        self.kind = kind
        self.raw = cast("psycopg.Connection[Any]", ctx.conn.connection.driver_connection)
        self.columns = ", ".join(kind.insert)
        self.staged = False

    def _create(self) -> None:
        """The staging table: the kind's columns with the target's exact types; no rows, no constraints."""
        sql = (
            f"CREATE TEMP TABLE {STAGING} ON COMMIT DROP AS "
            f"SELECT {self.columns} FROM {self.kind.table} WITH NO DATA"
        )
        with _as_sqlalchemy_error(sql):
            self.raw.execute(sql)
        self.staged = True

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if not self.staged:
            self._create()
        sql = f"COPY pg_temp.{STAGING} ({self.columns}) FROM STDIN"
        with _as_sqlalchemy_error(sql), self.raw.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def finish(self) -> None:
        if not self.staged:  # nothing was written
            return
        sql = self.kind.merge_sql(f"pg_temp.{STAGING}")
        with _as_sqlalchemy_error(sql):
            self.raw.execute(sql)


Writer = UpsertWriter | CopyWriter


def writer_for(kind: Kind, ctx: Context) -> Writer:
    """COPY on PostgreSQL through psycopg 3; `executemany` upserts otherwise."""
    return CopyWriter(kind, ctx) if ctx.copy else UpsertWriter(kind, ctx)
