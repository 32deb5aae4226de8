"""Rounds of the whole-book score against its floor, on a book kept between calls: what an A/B of two
commits alternates.

    python -m benchmarks.score_rounds --db URL [--accounts 10000] [--days 365] [--rounds 2]

`URL` is a SQLite file (`sqlite:///path`) or a PostgreSQL server; on PostgreSQL the book lives in a
schema of its own (`--schema`, default `keepwell_rounds`). The first call generates the book as
`benchmarks.run` does (seed 7, as of 2026-01-31) and imports it; later calls with the same sizes
reuse it, so that each call measures the score only. Each round empties the stored scores, then
times three times the bare 60-day scan (`benchmarks.run.floor_scan`, the floor the issue names) and
`Keepwell.score` right after it (the first into an empty day, the next two replacing it), and prints
both medians and the median of the three ratios; the last line is the median ratio over the rounds.

With `--pieces`, each piece of a score is also timed alone, one after the other (median of `--runs`
calls): the usage windows, the other evidence, scoring, storing into an empty day and the day's
peers, with the process's own CPU beside each wall time (the rest of the wall is the server's, as
the client waits while it works). Their sum is what a score costs two cores.

The machine's speed drifts by tens of percent within minutes, so two commits are compared by
alternating them, each from its own checkout (the package is imported from the working directory):

    git worktree add ../before <commit>
    for i in 1 2 3 4 5; do
        (cd ../before && python -m benchmarks.score_rounds --db URL | tail -1)
        python -m benchmarks.score_rounds --db URL | tail -1
    done
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from benchmarks.run import AS_OF, floor_scan, make_book, paired_ratio
from bot import collector, scoring
from bot.config import KeepwellConfig
from bot.db import models as m
from bot.db.engine import make_engine, migrate
from bot.db.scratch import psycopg_url
from bot.importer.run import import_csv
from bot.services import Keepwell
from bot.store import A, Book

RUNS = 3  # scans, then scores, in a round: as `benchmarks.run` measures them
T = TypeVar("T")


def book_engine(url: str, schema: str) -> Engine:
    """An engine on the book's database: on PostgreSQL, in its own schema (created if absent)."""
    if make_url(url).get_backend_name() != "postgresql":
        return make_engine(url)
    base = psycopg_url(url)
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        admin.dispose()
    sep = "&" if "?" in base else "?"
    return make_engine(f"{base}{sep}options=-csearch_path%3D{schema}")


def ensure_book(engine: Engine, accounts: int, days: int) -> bool:
    """Import a generated book unless the database holds one of this size already; True if it did."""
    migrate(engine)
    with engine.connect() as conn:
        held = conn.execute(select(func.count()).select_from(A)).scalar()
        # touches are imported last: with them the import finished
        whole = conn.execute(select(func.count()).select_from(m.table_of(m.Touch))).scalar()
    if held == accounts and whole:
        return False
    if held:
        raise SystemExit(f"the database holds a book of {held:,} accounts, not {accounts:,}: "
                         "use another --schema or database")
    with tempfile.TemporaryDirectory(prefix="keepwell-rounds-") as tmp:
        book = make_book(Path(tmp), accounts, days)
        for kind, path in book.files:
            import_csv(engine, kind, path)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:  # fresh statistics, as autovacuum would give a real book
            conn.execute(text("ANALYZE"))
            conn.commit()
    return True


def one_round(service: Keepwell, engine: Engine) -> tuple[float, float, float]:
    """(median scan, median score, median ratio of each score to the scan just before it) of one round,
    in seconds."""
    tables = (m.table_of(m.HealthSnapshot), m.table_of(m.ScoreRun))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # no dead rows left to slow the next rounds
            conn.execute(text(f"TRUNCATE {', '.join(t.name for t in tables)}"))
        else:
            for table in tables:
                conn.execute(table.delete())
    floor_scan(engine, AS_OF, 1)  # untimed, as benchmarks.run: no timed scan sets fresh rows' hint bits
    scans, scores = [], []
    for _ in range(RUNS):
        scans += floor_scan(engine, AS_OF, 1)[0]
        started = time.perf_counter()
        service.score(AS_OF)
        scores.append(time.perf_counter() - started)
    return statistics.median(scans), statistics.median(scores), paired_ratio(scores, scans)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(name: str, runs: int, piece: Callable[[], T]) -> T:
    """Run a piece `runs` times; print its median wall time and this process's median CPU time."""
    walls, cpus = [], []
    out: Any = None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), _cpu()
        out = piece()
        walls.append(time.perf_counter() - wall)
        cpus.append(_cpu() - cpu)
    print(f"piece {name}: {statistics.median(walls) * 1000:.1f} ms, "
          f"this process {statistics.median(cpus) * 1000:.1f} ms", flush=True)
    return out


def pieces(book: Book, engine: Engine, runs: int) -> None:
    """Each piece of a score alone, as `bot.scoring` runs it on a range of accounts at a time."""
    cfg = KeepwellConfig().health
    weights = cfg.weights.model_dump()
    spans = book.pk_ranges(scoring.CHUNK)
    with collector.paused():
        usage = timed("usage windows", runs, lambda: book.usage_columns(AS_OF, cfg, spans))
        accounts = timed("peers", runs, book.peer_columns)
        peers = scoring.day_peers(accounts, AS_OF, cfg, usage)
        columns = timed("evidence", runs, lambda: [book.score_columns(AS_OF, cfg, span) for span in spans])
        for part in columns:
            part.add_usage(usage)
        rows = timed("scoring", runs, lambda: [
            scoring._score_chunk(part, cfg, AS_OF, peers, weights)[0] for part in columns])

        def store() -> None:
            with engine.begin() as conn:
                conn.execute(m.table_of(m.HealthSnapshot).delete())
            with book.snapshot_writer(AS_OF) as writer:
                for part_rows in rows:
                    writer.write_rows(part_rows)

        timed("storing into an empty day", runs, store)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a process of its own, as the `keepwell` command is (bot.collector)
        collector.settle()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.score_rounds",
                                     description="Rounds of the score against its floor on a kept book.")
    parser.add_argument("--db", required=True, metavar="URL", help="sqlite:///path or a PostgreSQL URL")
    parser.add_argument("--schema", default="keepwell_rounds", help="PostgreSQL: the book's schema")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pieces", action="store_true", help="also time each piece of a score alone")
    parser.add_argument("--runs", type=int, default=5, help="with --pieces: calls of each piece")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.days < 1 or args.rounds < 1:
        parser.error("--accounts, --days and --rounds must be >= 1")
    engine = book_engine(args.db, args.schema)
    try:
        if ensure_book(engine, args.accounts, args.days):
            print(f"imported a book of {args.accounts:,} accounts x {args.days} days", flush=True)
        service = Keepwell(Book(engine), KeepwellConfig())
        ratios = []
        for n in range(1, args.rounds + 1):
            scan, score, ratio = one_round(service, engine)
            ratios.append(ratio)
            print(f"round {n}: scan {scan:.3f} s, score {score:.3f} s, ratio {ratio:.2f}", flush=True)
        median = statistics.median(ratios)
        print(f"{engine.dialect.name}: median ratio {median:.2f} over {args.rounds} rounds")
        if args.pieces:
            pieces(service.book, engine, max(1, args.runs))
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
