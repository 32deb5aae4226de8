"""Import one CSV file whole or not at all (CONTRACT §4).

Rows stream from disk a block at a time and are validated, a whole block at once where the kind has
a bulk reader and the block is plain (usage), else row by row; valid rows are written in batches
inside a single transaction (upserted on SQLite; COPYed on PostgreSQL, straight into the table or
through a staging table, see `writing`); any invalid row (or a key repeated within the file, found
at the end) rolls the whole file back.
Duplicate keys are found without holding rows in memory: each row's key is packed into 8 bytes in an
array and the array is sorted once at the end.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from bot import collector
from bot.errors import BadInput, OperationFailed
from bot.importer.kinds import DAY_BITS, FAST_MISS, KINDS, Context, Kind, Row, RowError
from bot.importer.reading import CsvFile, is_blank, open_csv
from bot.importer.writing import Writer, writer_for

BATCH = 20_000  # rows handed to the writer at a time (and read at a time by a kind's bulk reader)
ROW_BLOCK = 1_000  # rows read at a time for checking one by one: wide rows (notes) held briefly
SHOWN_ERRORS = 50


@dataclass
class ImportReport:
    kind: str
    path: str
    rows: int = 0
    encoding: str = ""
    delimiter: str = ""
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row, column, problem)
    error_count: int = 0
    seconds: float = 0.0

    def add_error(self, row: int, column: str, problem: str) -> None:
        self.error_count += 1
        self.errors.append((row, column, problem))

    def error_lines(self) -> list[str]:
        shown = sorted(self.errors)[:SHOWN_ERRORS]
        lines = [f"row {r}, column {col}: {msg}" if col else f"row {r}: {msg}" for r, col, msg in shown]
        if self.error_count > len(shown):
            lines.append(f"… and {self.error_count - len(shown)} more")
        return lines


class _Keys:
    """Packed row keys, checked for repeats once the file is read: 8 bytes a row.

    A row's number is its position in the file plus an offset that changes only where blank lines
    were skipped, so the numbers are kept as those few changes, not one per row. The check sorts a
    copy of the keys; only when a key repeats are the rows it is on looked for (47.7M usage rows:
    760 MB at the peak, where an argsort and a row number per row took twice that)."""

    def __init__(self) -> None:
        self.keys = array("q")
        self.offsets: list[tuple[int, int]] = [(0, 2)]  # (from position, row number - position)

    def add(self, key: int, row: int) -> None:
        if row - len(self.keys) != self.offsets[-1][1]:
            self.shift(row)
        self.keys.append(key)

    def shift(self, row: int) -> None:
        """The next key added is on this row, which is not the one after the last (`_stream` calls this
        itself, and appends to `keys` directly: a method call per row costs 20 s on 47.7M rows)."""
        self.offsets.append((len(self.keys), row - len(self.keys)))

    def _row(self, position: int) -> int:
        at = bisect_right(self.offsets, (position, float("inf"))) - 1
        return position + self.offsets[at][1]

    def repeats(self) -> list[tuple[int, int]]:
        """(row, first row with the same key) for every repeated key."""
        if len(self.keys) < 2:
            return []
        keys = np.frombuffer(self.keys, dtype=np.int64)
        ordered = np.sort(keys)
        repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        del ordered
        if not len(repeated):
            return []
        positions = np.flatnonzero(np.isin(keys, repeated))  # in file order
        first: dict[int, int] = {}
        out = []
        for pos in positions.tolist():
            key = int(keys[pos])
            if key in first:
                out.append((self._row(pos), self._row(first[key])))
            else:
                first[key] = pos
        return out


def _packer(kind: Kind) -> Callable[[Row], int]:
    """8 bytes that stand for a row's key: exact for (account, day) keys, a 64-bit hash otherwise."""
    names = tuple(kind.insert[i] for i in kind.key)
    if names in (("account_pk", "day"), ("account_pk", "month")):
        return lambda row: (row[0] << DAY_BITS) | row[1].toordinal()
    get = itemgetter(*kind.key)
    return lambda row: hash(get(row))


def _check_header(kind: Kind, header: Sequence[str], report: ImportReport) -> dict[str, int]:
    known = {col.name for col in kind.columns}
    missing = [name for name in kind.required if name not in header]
    for group in kind.alternatives:
        if not any(name in header for name in group):
            missing.append(" or ".join(group))
    if missing:
        raise BadInput(
            f"{report.path}: missing required column(s): {', '.join(missing)} "
            f"(a {kind.name} file needs {', '.join(kind.required) or 'its key columns'})"
        )
    for a, b in kind.exclusive:
        if a in header and b in header:
            raise BadInput(f"{report.path}: give either {a} or {b}, not both")
    unknown = [name for name in header if name and name not in known]
    if unknown:
        report.warnings.append(f"ignored unknown column(s): {', '.join(unknown)}")
    return {name: i for i, name in enumerate(header) if name in known}


ANALYZE_FROM = 10_000  # rows: a bigger import refreshes the table's planner statistics at once
# Tables a score reads through a covering key (index-only): their visibility map is set after each
# import, else each row read is fetched from the table as well (see migration 0008).
COVERED = frozenset({"usage_daily"})


def _settle(engine: Engine, kind: Kind, rows: int) -> None:
    """PostgreSQL, once an import has committed: what autovacuum would do only some time later.

    - Planner statistics, after a bigger import: until autovacuum refreshes them a freshly imported
      table is planned as if nearly empty (the score's reads of 10k accounts estimated 15 rows where
      24,000 came).
    - The visibility map of the usage table: an index-only scan still visits the table for every row
      on a page not marked all-visible, and autovacuum marks an insert-only table only after a fifth
      of it is new, so a book kept by daily imports would have its latest weeks (the ones a score
      reads) unmarked. A `VACUUM` visits only the pages not marked yet. It cannot mark them while a
      transaction that began before the import committed is open anywhere in the database (a long
      report, another import): the next usage import's `VACUUM`, or autovacuum, marks those.

    SKIP_LOCKED throughout: a table another session is vacuuming or analyzing is left to it rather
    than waited for. SQLite keeps no statistics unless asked, and its usage tables are stored in their
    key."""
    if engine.dialect.name != "postgresql":
        return
    analyze = rows >= ANALYZE_FROM
    tables = {kind.table} | ({"usage_daily"} if kind.name == "usage" else set())  # user-level rolls up
    statements = [f"VACUUM ({'ANALYZE, ' if analyze else ''}SKIP_LOCKED) {table}" if table in COVERED
                  else f"ANALYZE (SKIP_LOCKED) {table}"
                  for table in sorted(tables) if analyze or table in COVERED]
    if not statements:
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def _reason(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)


def import_csv(engine: Engine, kind_name: str, path: Path, *, dry_run: bool = False) -> ImportReport:
    """Validate and upsert a file; on any invalid row raise BadInput with the report, writing nothing.

    With no garbage collection meanwhile (`bot.collector`): the rows are millions of tuples, none in a
    cycle, and each collection stops the parsing thread and the writing one alike (3M usage rows:
    3,900 collections; 467k against 500k rows/s on PostgreSQL, 479k against 505k on SQLite)."""
    with collector.paused():
        return _import_csv(engine, kind_name, path, dry_run)


def _import_csv(engine: Engine, kind_name: str, path: Path, dry_run: bool) -> ImportReport:
    kind = KINDS.get(kind_name)
    if kind is None:
        raise BadInput(f"unknown kind {kind_name!r}; kinds are: {', '.join(KINDS)}")
    report = ImportReport(kind=kind_name, path=str(path), dry_run=dry_run)
    started = time.perf_counter()
    with open_csv(path) as csv_file:
        report.encoding, report.delimiter = csv_file.encoding, csv_file.delimiter
        positions = _check_header(kind, csv_file.header, report)
        try:
            with engine.connect() as conn, conn.begin() as trans:
                ctx = Context(conn)
                if kind.after_header is not None:
                    kind = kind.after_header(kind, csv_file.header, ctx)
                kind = kind.for_header(csv_file.header)
                ctx.kept = kind.kept
                writer = None if dry_run else writer_for(kind, ctx)
                try:
                    _stream(kind, ctx, positions, csv_file, report, writer)
                finally:
                    if writer is not None:
                        writer.close()  # no batch is still being written when the transaction ends
                if report.error_count or writer is None:
                    trans.rollback()
                else:
                    writer.finish()
                    if kind.finish is not None:
                        kind.finish(ctx)
                    broken = kind.broken_by_kept(ctx)
                    if broken:
                        trans.rollback()
                        raise BadInput(f"{path}: rows at odds with what the book holds; nothing was imported",
                                       details=broken)
                    trans.commit()
                if ctx.shared_keys and not report.error_count:
                    report.warnings.append(
                        f"{ctx.shared_keys} row(s) share their {kind.key_label} with an earlier row: "
                        "each is kept as one more of its own")
                if ctx.unmatched_contacts and not report.error_count:  # a dry run warns the same
                    report.warnings.append(
                        f"{ctx.unmatched_contacts} contact(s) matched no account by domain "
                        "(imported without an account)"
                    )
        except DBAPIError as exc:
            raise OperationFailed(f"{path}: the database refused the import: {_reason(exc)}") from None
    if report.rows and not dry_run and not report.error_count:
        try:
            _settle(engine, kind, report.rows)
        except DBAPIError as exc:  # the rows are in: only the upkeep after them is left to autovacuum
            report.warnings.append(f"imported, but the database's upkeep after it failed ({_reason(exc)}); "
                                   "autovacuum will catch up")
    report.seconds = time.perf_counter() - started
    if report.error_count:
        bad_rows = len({row for row, _, _ in report.errors})  # a row may have several problems
        problems = "" if bad_rows == report.error_count else f" ({report.error_count} problems)"
        raise BadInput(
            f"{path}: {bad_rows} invalid row(s){problems}; nothing was imported",
            details=report.error_lines(),
        )
    if report.rows == 0:
        report.warnings.append("the file has a header but no rows")
    return report


Columns = list[tuple[str, Callable[[str], Any], bool, int]]


def _generic_row(
    number: int,
    cells: list[str],
    columns: Columns,
    width: int,
    build: Callable[[dict[str, Any], Context], Row],
    ctx: Context,
    report: ImportReport,
) -> Row | None:
    """Validate one row cell by cell; None (with its problems reported) when it is invalid."""
    if len(cells) < width:
        cells = cells + [""] * (width - len(cells))
    values: dict[str, Any] = {}
    bad = False
    for name, parse, required, pos in columns:
        cell = cells[pos].strip()
        if not cell:
            if required:
                report.add_error(number, name, "required, but empty")
                bad = True
            continue
        try:
            values[name] = parse(cell)
        except ValueError as exc:
            report.add_error(number, name, str(exc))
            bad = True
    if bad:
        return None
    try:
        return build(values, ctx)
    except RowError as exc:
        report.add_error(number, exc.column, str(exc))
        return None


def _stream(
    kind: Kind,
    ctx: Context,
    positions: dict[str, int],
    csv_file: CsvFile,
    report: ImportReport,
    writer: Writer | None,
) -> None:
    """Validate every row, handing valid ones to `writer` in batches until the first invalid one.

    A block the kind's bulk reader takes whole is checked and written column by column; any other
    block goes row by row (the fast reader, else the generic path with its precise messages)."""
    columns: Columns = [(col.name, col.parse, col.required, positions[col.name])
                        for col in kind.columns if col.name in positions]
    width = max(positions.values()) + 1
    keys = _Keys()
    # `expected`: the row the next key would be on without a shift (as `_Keys` starts: row 2)
    add_key, add_keys, expected = keys.keys.append, keys.keys.frombytes, 2
    pack = _packer(kind)
    build = kind.build
    fast = kind.fast(kind, positions, ctx) if kind.fast is not None else None
    bulk = kind.bulk(kind, positions, ctx, writer is not None) if kind.bulk is not None else None
    batch: list[Row] = []
    for first, block in csv_file.blocks(BATCH if bulk is not None else ROW_BLOCK):
        taken = bulk(block) if bulk is not None else None
        if taken is not None:
            out, packed = taken
            report.rows += len(block)
            if first != expected:
                keys.shift(first)
            expected = first + len(block)
            add_keys(packed.tobytes())
            if writer is not None and out is not None and not report.error_count:
                if batch:  # rows checked one by one before this block are handed over first
                    writer.write(batch)
                    batch = []
                writer.write(out)
            continue
        for number, cells in enumerate(block, first):
            if is_blank(cells):
                continue
            report.rows += 1
            row: Row | None = None
            if fast is not None:
                try:
                    row, key = fast(cells)
                except FAST_MISS:
                    row = None
            if row is None:
                row = _generic_row(number, cells, columns, width, build, ctx, report)
                if row is None:
                    continue
                key = pack(row)
            if number != expected:
                keys.shift(number)
            expected = number + 1
            add_key(key)
            if writer is not None and not report.error_count:
                batch.append(row)
                if len(batch) >= BATCH:
                    writer.write(batch)
                    batch = []
    if writer is not None and batch and not report.error_count:
        writer.write(batch)
    for row_number, first_row in keys.repeats():
        report.add_error(row_number, "", f"same {kind.key_label} as row {first_row} (a key may appear once)")
