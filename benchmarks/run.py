"""Measure the performance figures of the scale issue on a freshly generated book.

    python -m benchmarks.run [--accounts 10000] [--days 365] [--out benchmarks/results] [--keep DIR]
                             [--quick] [--pg URL] [--profile] [--check]

Steps, each on a book generated for this run (``bot.sample_book``, seed 7, ids ``ACC-…``):

1. import every CSV into a fresh SQLite file (WAL; not ``:memory:``), timing each file; the usage
   file's rows per second is the first target (>= 200,000 rows/s; >= 300,000 on PostgreSQL);
2. one bare aggregate of the last 60 days of usage, as a scan (the floor the issue names) and as
   range seeks (the lowest a plan can go), then ``Keepwell.score`` a few times in-process (target:
   median <= 5 s and <= 3 x the scan; from 100k accounts <= 60 s and peak memory <= 2 GB) and once as
   the real ``keepwell score`` command in a subprocess;
3. ``Keepwell.health`` by account id, >= 500 calls over random accounts after a warm-up
   (target: p99 <= 20 ms), then a few lookups by exact and by misspelt account name;
4. the same import / floor / score / health on PostgreSQL when ``--pg URL`` or
   ``KEEPWELL_TEST_DATABASE_URL`` is given, in a schema of its own that is dropped afterwards;
5. on PostgreSQL, the import, floor and score again on the same book with its usage file in date
   order (``pg.by_day.*``; skip with ``--no-by-day``): the layout a book kept up to date by daily
   imports has in PostgreSQL's table, which the score must not depend on.

It prints a table and writes ``<out>/bench-<UTC timestamp>.json`` with the machine (nproc, Python,
load average before and after: other work on the machine makes the timings noisy), the arguments and
every figure with its target and pass/fail. Exit status is 0 unless ``--check`` is given and a
target was missed.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import platform
import pstats
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, and_, func, select, text

from benchmarks.generate import usage_by_day
from bot import collector
from bot.config import KeepwellConfig
from bot.db.engine import make_engine, migrate
from bot.db.scratch import scratch_schema
from bot.errors import BadInput
from bot.importer.run import ImportReport, import_csv
from bot.sample_book import generate_book
from bot.services import Keepwell
from bot.store import A, Book, U

AS_OF = date(2026, 1, 31)  # fixed, like benchmarks.generate, so runs are comparable
SEED = 7
FLOOR_DAYS = 60
QUICK_ACCOUNTS, QUICK_DAYS = 1_000, 120
ISSUE_ACCOUNTS, ISSUE_DAYS = 10_000, 365  # the book the issue's targets are set for

USAGE_ROWS_PER_S = 200_000.0  # SQLite (the first scale issue's target)
PG_USAGE_ROWS_PER_S = 300_000.0  # PostgreSQL through COPY
SCORE_SECONDS = 5.0  # 10k x 365, on each engine
FLOOR_RATIO = 3.0  # score time / the bare aggregate scan of the same window, same engine
LARGE_ACCOUNTS = 100_000  # from here on: score <= 60 s and peak memory <= 2 GB
LARGE_SCORE_SECONDS = 60.0
LARGE_PEAK_MB = 2048.0
HEALTH_P99_MS = 20.0


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure; ``target`` and ``better`` ("higher"/"lower") only for the issue's targets."""

    key: str
    label: str
    value: float
    unit: str
    target: float | None = None
    better: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the measured operation failed: the figure fails whatever its value

    @property
    def passed(self) -> bool | None:
        if self.error is not None:
            return False
        if self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "label": self.label, "value": round(self.value, 6), "unit": self.unit,
            "target": self.target,
            "target_op": None if self.target is None else (">=" if self.better == "higher" else "<="),
            "passed": self.passed, "error": self.error, "detail": self.detail,
        }


class Results:
    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.rss_mb: dict[str, float] = {}

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def mark_rss(self, phase: str) -> None:
        self.rss_mb[phase] = peak_rss_mb()


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size so far in MB (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    raw = resource.getrusage(who).ru_maxrss
    return raw / (1 << 20) if sys.platform == "darwin" else raw / 1024


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil without float error
    return sorted_values[int(rank) - 1]


def latency_detail(ms: list[float]) -> dict[str, Any]:
    s = sorted(ms)
    return {
        "calls": len(s), "p50_ms": round(percentile(s, 50), 3), "p95_ms": round(percentile(s, 95), 3),
        "p99_ms": round(percentile(s, 99), 3), "mean_ms": round(statistics.fmean(s), 3) if s else None,
        "max_ms": round(s[-1], 3) if s else None,
    }


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the wall time in seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The book
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedBook:
    files: list[tuple[str, Path]]
    ids: list[str]
    names: list[str]
    rows: dict[str, int]
    seconds: float


def count_rows(path: Path) -> int:
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


def make_book(folder: Path, accounts: int, days: int) -> GeneratedBook:
    with stopwatch() as t:
        files = generate_book(folder, accounts=accounts, days=days, seed=SEED, as_of=AS_OF,
                              id_prefix="ACC-", user_level_days=0)
    return index_book(folder, files, t[0])


def index_book(folder: Path, files: list[tuple[str, Path]], seconds: float = 0.0) -> GeneratedBook:
    """A generated book's files with its account ids and names (read back from accounts.csv)."""
    ids: list[str] = []
    names: list[str] = []
    with (folder / "accounts.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            ids.append(row["account_id"])
            names.append(row["name"])
    return GeneratedBook(files, ids, names, {p.name: count_rows(p) for _, p in files}, seconds)


# --------------------------------------------------------------------------------------------
# Measurements on one database
# --------------------------------------------------------------------------------------------


def timed_import(engine: Engine, kind: str, path: Path) -> tuple[ImportReport, float]:
    """Import a file and time it (a refused file fails the benchmark: the book must be valid)."""
    with stopwatch() as t:
        report = import_csv(engine, kind, path)
    return report, t[0]


def measure_imports(
    engine: Engine, files: list[tuple[str, Path]], results: Results, prefix: str, db: str,
    usage_target: float | None,
) -> None:
    for kind, path in files:
        report, seconds = timed_import(engine, kind, path)
        rate = report.rows / seconds if seconds > 0 else 0.0
        detail = {"file": path.name, "rows": report.rows, "seconds": round(seconds, 4),
                  "rows_per_s": round(rate), "report_seconds": round(report.seconds, 4)}
        if kind == "usage":
            results.add(Figure(f"{prefix}import.usage.rows_per_s", f"import usage ({db})", rate, "rows/s",
                               usage_target, "higher" if usage_target else None, detail))
        else:
            results.add(Figure(f"{prefix}import.{path.stem}.seconds", f"import {path.stem} ({db})", seconds,
                               "s", detail=detail))
        say(f"  {db}: imported {path.name}: {report.rows:,} rows in {seconds:.2f} s ({rate:,.0f} rows/s)")


def floor_query(as_of: date, seek: bool) -> Any:
    """The bare aggregate of the last 60 days of usage: filtered on the day alone (a scan of the table,
    the floor the issue names), or driven from the accounts (a range seek per account on the primary
    key, as the score reads it: the lowest any plan can go)."""
    window = and_(U.c.day > as_of - timedelta(days=FLOOR_DAYS), U.c.day <= as_of)
    if seek:
        return (select(A.c.id, func.sum(U.c.active_users))
                .select_from(A.join(U, and_(U.c.account_pk == A.c.id, window))).group_by(A.c.id))
    return select(U.c.account_pk, func.sum(U.c.active_users)).where(window).group_by(U.c.account_pk)


def floor_scan(engine: Engine, as_of: date, runs: int, seek: bool = False) -> tuple[list[float], int]:
    """Wall times of the bare 60-day aggregate over usage_daily (and the number of groups)."""
    query = floor_query(as_of, seek)
    times: list[float] = []
    groups = 0
    with engine.connect() as conn:
        for _ in range(runs):
            with stopwatch() as t:
                groups = len(conn.execute(query).all())
            times.append(t[0])
    return times, groups


def pair_ratios(scores: list[float], floors: list[float]) -> list[float]:
    """Each score's ratio to the floor timed just before it."""
    return [score / floor for score, floor in zip(scores, floors, strict=True) if floor > 0]


def paired_ratio(scores: list[float], floors: list[float]) -> float:
    """The median of each score's ratio to the floor timed just before it."""
    ratios = pair_ratios(scores, floors)
    return statistics.median(ratios) if ratios else float("nan")


def measure_score(
    service: Keepwell, engine: Engine, results: Results, prefix: str, db: str, runs: int, large: bool
) -> float:
    """Scores against their floor, in pairs: before each score the bare scan (and the same aggregate as
    seeks) is timed once, so a score and its floor see the machine in the same state (its speed drifts
    by tens of percent within minutes). The ratio is the median of the pairs' ratios. One scan first,
    untimed, so that no timed one sets the hint bits of freshly imported rows."""
    floor_scan(engine, AS_OF, 1)
    floor: list[float] = []
    seek: list[float] = []
    walls: list[float] = []
    inner: list[float] = []
    groups = accounts = 0
    for _ in range(runs):
        scanned, groups = floor_scan(engine, AS_OF, 1)
        floor += scanned
        seek += floor_scan(engine, AS_OF, 1, seek=True)[0]
        with stopwatch() as t:
            summary = service.score(AS_OF)
        walls.append(t[0])
        inner.append(summary.seconds)
        accounts = summary.accounts
        say(f"  {db}: floor scan {floor[-1]:.3f} s, as seeks {seek[-1]:.3f} s, score {t[0]:.2f} s "
            f"({summary.accounts:,} customers scored)")
    floor_med, seek_med = statistics.median(floor), statistics.median(seek)
    results.add(Figure(
        f"{prefix}floor_scan.seconds", f"bare 60-day usage aggregate, a scan ({db})", floor_med, "s",
        detail={"runs_s": [round(x, 4) for x in floor], "groups": groups,
                "sql": "SELECT account_pk, SUM(active_users) FROM usage_daily "
                       "WHERE day > :as_of - 60 AND day <= :as_of GROUP BY account_pk"},
    ))
    results.add(Figure(
        f"{prefix}floor_seek.seconds", f"the same aggregate as range seeks ({db})", seek_med, "s",
        detail={"runs_s": [round(x, 4) for x in seek],
                "sql": "SELECT a.id, SUM(u.active_users) FROM accounts a JOIN usage_daily u "
                       "ON u.account_pk = a.id AND u.day > :as_of - 60 AND u.day <= :as_of GROUP BY a.id"},
    ))
    med = statistics.median(walls)
    target = LARGE_SCORE_SECONDS if large else SCORE_SECONDS
    results.add(Figure(
        f"{prefix}score.seconds", f"Keepwell.score, median of {runs} ({db})", med, "s", target, "lower",
        {"runs_s": [round(x, 4) for x in walls], "first_s": round(walls[0], 4),
         "summary_seconds": [round(x, 4) for x in inner], "customers": accounts,
         "note": "first run writes the day's snapshots; later runs replace them"},
    ))
    pairs = f"{runs} pair{'s' if runs != 1 else ''}"
    results.add(Figure(f"{prefix}score.floor_ratio", f"score / floor scan, median of {pairs} ({db})",
                       paired_ratio(walls, floor), "x", None if large else FLOOR_RATIO,
                       None if large else "lower",
                       {"pairs": [round(r, 3) for r in pair_ratios(walls, floor)],
                        "of_medians": round(med / floor_med, 3) if floor_med else None}))
    results.add(Figure(f"{prefix}score.seek_ratio", f"score / the aggregate as seeks ({db})",
                       paired_ratio(walls, seek), "x"))
    return med


def measure_health(
    service: Keepwell, book: GeneratedBook, results: Results, prefix: str, db: str, calls: int,
    name_calls: int, target: bool,
) -> None:
    rng = random.Random(SEED)
    for account_id in rng.sample(book.ids, min(5, len(book.ids))):  # warm-up: peers cache, pools
        service.health(account_id, AS_OF)
    ms: list[float] = []
    for account_id in (rng.choice(book.ids) for _ in range(calls)):
        started = time.perf_counter()
        service.health(account_id, AS_OF)
        ms.append((time.perf_counter() - started) * 1000)
    detail = latency_detail(ms)
    results.add(Figure(
        f"{prefix}health.by_id.p99_ms", f"health(account id) p99, {calls} calls ({db})", detail["p99_ms"],
        "ms", HEALTH_P99_MS if target else None, "lower" if target else None, detail,
    ))
    say(f"  {db}: health by id p50 {detail['p50_ms']} ms, p95 {detail['p95_ms']} ms, "
        f"p99 {detail['p99_ms']} ms")
    if name_calls <= 0:
        return
    picks = [rng.randrange(len(book.ids)) for _ in range(name_calls)]
    for label, make_query in (("exact", lambda n: n), ("misspelt", misspell)):
        ms = []
        unresolved = 0
        for i in picks:
            query = make_query(book.names[i])
            started = time.perf_counter()
            try:
                card = service.health(query, AS_OF)
                if card.item.account.account_id != book.ids[i]:
                    unresolved += 1
            except BadInput:  # ambiguous or no clear match: still a full lookup
                unresolved += 1
            ms.append((time.perf_counter() - started) * 1000)
        detail = latency_detail(ms)
        detail["not_resolved_to_the_account"] = unresolved
        results.add(Figure(
            f"{prefix}health.by_name_{label}.p50_ms", f"health({label} name) p50, {name_calls} calls ({db})",
            detail["p50_ms"], "ms", detail=detail,
        ))
        say(f"  {db}: health by {label} name p50 {detail['p50_ms']} ms, max {detail['max_ms']} ms "
            f"({unresolved} not resolved to the account)")


def misspell(name: str) -> str:
    """The name in lower case with one interior letter dropped: what a hurried person types."""
    low = name.lower()
    letters = [i for i, ch in enumerate(low) if ch.isalpha() and 0 < i < len(low) - 1]
    if not letters:
        return low
    cut = letters[len(letters) // 2]
    return low[:cut] + low[cut + 1:]


def measure_cli_score(url: str, workdir: Path, results: Results) -> None:
    """The real ``keepwell score`` command: interpreter start-up, imports, migrate check and scoring."""
    code = "import sys; from bot.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "score", "--db", url, "--as-of", AS_OF.isoformat(), "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPWELL_")}
    with stopwatch() as t:
        done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    error = None
    if done.returncode != 0:
        error = f"exit {done.returncode}: {done.stderr.strip()[:500]}"
        say(f"  keepwell score failed ({error})")
    results.add(Figure(
        "score.cli_seconds", "`keepwell score` command, wall (sqlite)", t[0], "s", SCORE_SECONDS, "lower",
        {"exit_code": done.returncode, "child_peak_rss_mb": round(peak_rss_mb(resource.RUSAGE_CHILDREN), 1)},
        error,
    ))
    say(f"  sqlite: `keepwell score` {t[0]:.2f} s (exit {done.returncode})")


def profile(service: Keepwell, book: GeneratedBook, out: Path, stamp: str) -> None:
    """cProfile one score run and 200 health calls; write .prof files and print the top functions."""
    rng = random.Random(SEED + 1)
    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("score", lambda: service.score(AS_OF)),
        ("health", lambda: [service.health(rng.choice(book.ids), AS_OF) for _ in range(200)]),
    ]
    for name, job in jobs:
        prof = cProfile.Profile()
        prof.runcall(job)
        path = out / f"bench-{stamp}-{name}.prof"
        prof.dump_stats(str(path))
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        print(f"\n--- cProfile: {name} (cumulative; {path}) ---")
        print(buf.getvalue().split("\n\n", 1)[-1].rstrip())


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@contextmanager
def pg_book(
    base_url: str, files: list[tuple[str, Path]], results: Results, prefix: str, db: str,
    usage_target: float | None,
) -> Iterator[tuple[Keepwell, Engine]]:
    """A book imported (and timed) into a throw-away PostgreSQL schema, with fresh statistics as
    autovacuum would give a real book: its service and engine, the schema dropped on leaving."""
    with scratch_schema(base_url, prefix="bench_" + prefix.strip(".").replace(".", "_")) as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            measure_imports(engine, files, results, prefix, db, usage_target)
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
            yield Keepwell(Book(engine), KeepwellConfig()), engine
        finally:
            engine.dispose()
    results.mark_rss(db)


def run_pg(base_url: str, book: GeneratedBook, results: Results, args: argparse.Namespace) -> None:
    db = "postgresql"
    with pg_book(base_url, book.files, results, "pg.", db, PG_USAGE_ROWS_PER_S) as (service, engine):
        measure_score(service, engine, results, "pg.", db, args.score_runs, large(args))
        measure_health(service, book, results, "pg.", db, args.health_calls, 0, target=True)
    if not args.no_by_day:
        run_pg_by_day(base_url, book, results, args)


def run_pg_by_day(base_url: str, book: GeneratedBook, results: Results, args: argparse.Namespace) -> None:
    """The same book with its usage file in date order, scored against its floor the same way.

    A book kept up to date by daily imports holds a day of every account, then the next day: an
    account's days of the window lie on as many pages of PostgreSQL's table, where the generated file,
    imported once, leaves them side by side. The score reads them from the covering primary key
    (migration 0008), so it must not depend on that layout; this measures it. SQLite stores its usage
    tables in their key's order whatever the order they came in."""
    (usage,) = [path for kind, path in book.files if kind == "usage"]
    by_day = usage.with_name("usage-by-day.csv")
    usage_by_day(usage, by_day, args.days)  # always: a --keep folder may hold an older book's
    files = [(kind, by_day if kind == "usage" else path) for kind, path in book.files]
    db = "postgresql, usage by day"
    with pg_book(base_url, files, results, "pg.by_day.", db, None) as (service, engine):
        measure_score(service, engine, results, "pg.by_day.", db, args.score_runs, large(args))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "rows/s":
        return f"{value:,.0f}"
    if unit == "MB":
        return f"{value:,.1f}"
    if unit == "x":
        return f"{value:,.1f}"
    return f"{value:,.3f}" if value < 100 else f"{value:,.1f}"


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "unit", "target", "result")]
    for f in figures:
        op = ">= " if f.better == "higher" else "<= "
        target = "" if f.target is None else op + fmt(f.target, f.unit)
        result = "ERROR" if f.error else {True: "PASS", False: "FAIL", None: ""}[f.passed]
        rows.append((f.label, fmt(f.value, f.unit), f.unit, target, result))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join((c.ljust(w) if i in (0, 2, 4) else c.rjust(w))
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=False, cwd=Path(__file__).resolve().parent)
    except OSError:
        return None
    return done.stdout.strip() or None


def machine() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "git_commit": git_commit(),
    }


def large(args: argparse.Namespace) -> bool:
    """The 100k-account book: its own targets (score <= 60 s, peak memory <= 2 GB), no floor ratio."""
    return bool(args.accounts >= LARGE_ACCOUNTS)


def report_head(started_at: datetime, load_before: tuple[float, float, float] | None) -> dict[str, Any]:
    """The start of every benchmark's JSON: when it ran, how long, and the machine with its load."""
    finished_at = datetime.now(UTC)
    load = {"loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    if load_before is not None:
        load = {"loadavg_before": [round(x, 2) for x in load_before]} | load
    return {
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished_at.isoformat(timespec="seconds"),
        "seconds": round((finished_at - started_at).total_seconds(), 1),
        "machine": machine() | load,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="Measure the scale targets on a freshly generated book."
    )
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="where the JSON result goes (default: benchmarks/results)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="generate the book and the SQLite file in DIR and keep them "
                             "(default: a temp dir, removed afterwards)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_ACCOUNTS:,} accounts x {QUICK_DAYS} days")
    parser.add_argument("--pg", metavar="URL", default=os.environ.get("KEEPWELL_TEST_DATABASE_URL"),
                        help="also measure on this PostgreSQL server, in a throw-away schema "
                             "(default: $KEEPWELL_TEST_DATABASE_URL)")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only, whatever --pg says")
    parser.add_argument("--no-by-day", action="store_true",
                        help="PostgreSQL: skip the second book, its usage imported in date order")
    parser.add_argument("--health-calls", type=int, default=500)
    parser.add_argument("--name-calls", type=int, default=20)
    parser.add_argument("--score-runs", type=int, default=5)
    parser.add_argument("--no-cli", action="store_true", help="skip timing the `keepwell score` command")
    parser.add_argument("--profile", action="store_true",
                        help="after measuring, cProfile one score and 200 health calls "
                             "(.prof files in --out)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.accounts, args.days = QUICK_ACCOUNTS, QUICK_DAYS
    if args.no_pg:
        args.pg = None
    if args.accounts < 1 or args.days < 1 or args.health_calls < 1 or args.score_runs < 1:
        parser.error("--accounts, --days, --health-calls and --score-runs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a process of its own, started as the `keepwell` command starts (bot.collector)
        collector.settle()
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    load_before = os.getloadavg()
    results = Results()
    args.out.mkdir(parents=True, exist_ok=True)
    say(f"benchmark: {args.accounts:,} accounts x {args.days} days, as of {AS_OF}")

    with tempfile.TemporaryDirectory(prefix="keepwell-bench-") as tmp:
        workdir = args.keep.resolve() if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        book = make_book(workdir / "book", args.accounts, args.days)
        say(f"  generated the book in {book.seconds:.2f} s: "
            + ", ".join(f"{name} {n:,}" for name, n in book.rows.items()))
        results.mark_rss("generate")

        db_path = workdir / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db_path}"
        engine = make_engine(url)
        try:
            migrate(engine)
            measure_imports(engine, book.files, results, "", "sqlite", USAGE_ROWS_PER_S)
            results.mark_rss("import")
            service = Keepwell(Book(engine), KeepwellConfig())
            measure_score(service, engine, results, "", "sqlite", args.score_runs, large(args))
            results.mark_rss("score")
            if not args.no_cli:
                measure_cli_score(url, workdir, results)
            measure_health(service, book, results, "", "sqlite", args.health_calls, args.name_calls,
                           target=True)
            results.mark_rss("health")
            db_mb = sum(Path(f"{db_path}{s}").stat().st_size
                        for s in ("", "-wal") if Path(f"{db_path}{s}").exists()) / 1e6
        finally:
            engine.dispose()
        if args.pg:
            run_pg(args.pg, book, results, args)
        results.add(Figure("peak_rss_mb", "peak RSS of this process", peak_rss_mb(), "MB",
                           LARGE_PEAK_MB if large(args) else None, "lower" if large(args) else None,
                           detail={"after_phase_mb": {k: round(v, 1) for k, v in results.rss_mb.items()}}))
        if args.profile:
            engine = make_engine(url)
            try:
                profile(Keepwell(Book(engine), KeepwellConfig()), book, args.out, stamp)
            finally:
                engine.dispose()

    doc = report_head(started_at, load_before)
    info, load_after = doc["machine"], doc["machine"]["loadavg_after"]
    doc |= {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                 if k != "pg"} | {"pg": bool(args.pg), "as_of": AS_OF.isoformat(), "seed": SEED},
        "book": {"rows": book.rows, "generate_seconds": round(book.seconds, 3),
                 "sqlite_file_mb": round(db_mb, 1)},
        "figures": [f.to_dict() for f in results.figures],
        "targets_apply": args.accounts >= ISSUE_ACCOUNTS and args.days >= ISSUE_DAYS,
        "all_targets_passed": all(f.passed is not False for f in results.figures),
    }
    headline = (f"Keepwell benchmark: {args.accounts:,} accounts x {args.days} days "
                f"({book.rows.get('usage.csv', 0):,} usage rows), as of {AS_OF}; nproc {info['nproc']}, "
                f"Python {info['python']}, SQLite {info['sqlite']}; load average {load_before[0]:.2f} "
                f"before, {load_after[0]:.2f} after (other work on the machine makes timings noisy)")
    caveat = (f"(the targets are set for {ISSUE_ACCOUNTS:,} accounts x {ISSUE_DAYS} days: on a smaller book "
              "pass/fail is indicative only; a small usage file's rows/s is dominated by fixed costs)")
    return finish(results, doc, args.out / f"bench-{stamp}.json", headline, caveat, args.check)


def finish(results: Results, doc: dict[str, Any], path: Path, headline: str, caveat: str,
           check: bool) -> int:
    """Write the JSON, print the table (and the caveat when the book is smaller than the targets
    assume); exit 1 for a missed target only with --check."""
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"\n{headline}")
    print(table(results.figures))
    if not doc["targets_apply"]:
        print(caveat)
    print(f"\nwritten: {path}")
    missed = [f.label.strip() for f in results.figures if f.passed is False]
    if missed:
        print("missed: " + "; ".join(missed))
    return 1 if (missed and check) else 0


if __name__ == "__main__":
    raise SystemExit(main())
