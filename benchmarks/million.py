"""A million accounts: the whole-book score on daily rollups, with its time and peak memory.

    python -m benchmarks.million [--accounts 1000000] [--days 60] [--keep DIR] [--out DIR] [--pg URL]

`usage_daily` is the book's daily rollup: one row per account and day (imported as such, or rolled up
from user-level rows on import). The score reads at most its 60-day lookback of it, as range seeks per
account, so a book keeps only that much daily usage for scoring; older days cost disk, not score time.
This scenario generates a million accounts with 60 days of daily usage (`bot.sample_book`, seed 7),
imports what the scorecard reads (accounts, usage, NPS, tickets, invoices, touches; not contacts,
team or revenue history, which the score does not read, to keep the run under an hour), then times
one `Keepwell.score` and reports the process's peak memory (targets: ≤ 5 minutes, ≤ 4 GB), and the
health card by id at that size.

`--keep DIR` keeps the generated book and database; a second run with the same sizes reuses them
and goes straight to scoring.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.run import (
    AS_OF,
    SEED,
    Figure,
    GeneratedBook,
    Results,
    finish,
    index_book,
    make_book,
    measure_health,
    peak_rss_mb,
    report_head,
    say,
    stopwatch,
    timed_import,
)
from bot import collector
from bot.config import KeepwellConfig
from bot.db.engine import make_engine, migrate
from bot.db.scratch import scratch_schema
from bot.sample_book import FILE_NAMES
from bot.scoring import score_and_store
from bot.services import Keepwell
from bot.store import Book

SCORE_SECONDS = 300.0
PEAK_MB = 4096.0
KINDS = ("accounts", "usage", "nps", "tickets", "invoices", "touches")
MARKER = "million.json"


def load(url: str, book: GeneratedBook, results: Results, db: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
        for kind, path in book.files:
            if kind not in KINDS:
                continue
            report, seconds = timed_import(engine, kind, path)
            results.add(Figure(f"{db}.import.{path.stem}.seconds", f"import {path.stem} ({db})", seconds, "s",
                               detail={"rows": report.rows, "rows_per_s": round(report.rows / seconds)}))
            say(f"  {db}: imported {path.name}: {report.rows:,} rows in {seconds:.1f} s")
    finally:
        engine.dispose()


def score(url: str, book: GeneratedBook, results: Results, db: str, health_calls: int) -> None:
    engine = make_engine(url)
    try:
        service = Keepwell(Book(engine), KeepwellConfig())
        before = peak_rss_mb()
        with stopwatch() as t:  # what Keepwell.score runs, with the run's worker figures
            run = score_and_store(service.book, service.config.health, AS_OF)
        say(f"  {db}: score {t[0]:.1f} s ({run.customers:,} customers, {run.workers} worker processes)")
        results.add(Figure(f"{db}.score.seconds", f"score the book, {len(book.ids):,} accounts ({db})", t[0],
                           "s", SCORE_SECONDS, "lower",
                           {"customers": run.customers, "bands": run.bands, "danger": run.danger,
                            "forgotten": run.forgotten, "peak_rss_mb_before": round(before, 1)}))
        main_mb = peak_rss_mb()
        results.add(Figure(f"{db}.score.peak_rss_mb", f"peak memory of this process so far ({db})", main_mb,
                           "MB", detail={"note": "an import in the same process counts here"}))
        results.add(Figure(f"{db}.score.worker_peak_rss_mb", f"peak memory of one worker process ({db})",
                           run.worker_peak_mb, "MB", detail={"workers": run.workers}))
        results.add(Figure(f"{db}.score.total_peak_mb",
                           f"this process + {run.workers} workers at their peaks ({db})",
                           main_mb + run.workers * run.worker_peak_mb, "MB", PEAK_MB, "lower"))
        measure_health(service, book, results, f"{db}.", db, health_calls, 0, target=True)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a process of its own, started as the `keepwell` command starts (bot.collector)
        collector.settle()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.million", description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--keep", type=Path, metavar="DIR")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--pg", metavar="URL", help="also on this PostgreSQL, in a throw-away schema")
    parser.add_argument("--health-calls", type=int, default=300)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="keepwell-million-") as tmp:
        folder = args.keep.resolve() if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        want = {"accounts": args.accounts, "days": args.days, "seed": SEED, "kinds": list(KINDS)}
        marker = folder / MARKER
        reuse = marker.exists() and json.loads(marker.read_text(encoding="utf-8")) == want
        db_path = folder / "million.db"
        url = f"sqlite:///{db_path}"
        if not reuse:
            marker.unlink(missing_ok=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        book = make_book(folder / "book", args.accounts, args.days) if not reuse else None
        if book is None:  # reuse: the ids and names from the kept accounts file
            book = make_book_index(folder / "book")
        else:
            say(f"  generated the book in {book.seconds:.0f} s: "
                + ", ".join(f"{name} {n:,}" for name, n in book.rows.items()))
            load(url, book, results, "sqlite")
            marker.write_text(json.dumps(want) + "\n", encoding="utf-8")
        score(url, book, results, "sqlite", args.health_calls)
        if args.pg:
            with scratch_schema(args.pg, prefix="million") as pg_url:
                load(pg_url, book, results, "postgresql")
                score(pg_url, book, results, "postgresql", args.health_calls)
    doc = report_head(started_at, None)
    info = doc["machine"]
    doc |= {
        "args": {"accounts": args.accounts, "days": args.days, "pg": bool(args.pg), "reused": reuse},
        "book": {"rows": book.rows, "kinds_imported": list(KINDS)},
        "figures": [f.to_dict() for f in results.figures],
        "targets_apply": args.accounts >= 1_000_000,
        "all_targets_passed": all(f.passed is not False for f in results.figures),
    }
    headline = (f"Keepwell at {args.accounts:,} accounts x {args.days} days of daily usage, as of {AS_OF}; "
                f"nproc {info['nproc']}, Python {info['python']}, SQLite {info['sqlite']}")
    caveat = "(the targets are set for 1,000,000 accounts: on a smaller book pass/fail is indicative only)"
    return finish(results, doc, args.out / f"million-{stamp}.json", headline, caveat, args.check)


def make_book_index(folder: Path) -> GeneratedBook:
    """A kept book, without generating it again."""
    files = [(kind, folder / name) for kind, name in FILE_NAMES if (folder / name).exists()]
    return index_book(folder, files)


if __name__ == "__main__":
    raise SystemExit(main())
