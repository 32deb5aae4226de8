"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite drops tzinfo anyway) and always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class day_number(FunctionElement[int]):
    """A DATE as its proleptic Gregorian ordinal (`date.toordinal()`), computed by the database: a
    whole-book read gets plain integers, with no date object made and dropped per row. NULL stays
    NULL."""

    type = Integer()
    inherit_cache = True
    name = "day_number"


@compiles(day_number, "sqlite")
def _day_number_sqlite(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    # days are ISO text; julianday() of a day is its Julian day at midnight, n + 0.5, exactly
    return f"CAST(julianday({compiler.process(element.clauses, **kw)}) - 1721424.5 AS INTEGER)"


@compiles(day_number, "postgresql")
def _day_number_postgresql(element: day_number, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} - DATE '0001-01-01' + 1)"


def copy_types(raw: Any, table: str, columns: Sequence[str]) -> list[int]:
    """The type OIDs of a PostgreSQL table's columns, in this order, for a binary COPY into it.

    `raw`: a psycopg connection. A binary COPY sends each value as its type's bytes, with no text to
    write and escape in this process (10k snapshot rows: 10 ms instead of 55), and needs the exact
    types, so they are asked of the table itself.

    Only for rows whose values are already of those types and in range: psycopg's binary `int4`
    writes 2**31 as -2**31 without a word, where text COPY gets the server's "out of range" (the
    importer keeps text COPY for that reason: its rows hold dates as text, and counts a test pushes
    past 32 bits)."""
    found = dict(raw.execute(
        "SELECT attname, atttypid FROM pg_attribute "
        "WHERE attrelid = %(table)s::regclass AND attnum > 0 AND NOT attisdropped", {"table": table}
    ).fetchall())
    return [found[name] for name in columns]
