"""Time the portfolio digest on a large book: "the digest for 100,000 accounts from stored snapshots
in ≤ 2 s".

    python -m benchmarks.digest_bench [--accounts 100000] [--days 35] [--gap 7] [--runs 5]
                                      [--segment tier:enterprise] [--out benchmarks/results]
                                      [--keep DIR] [--pg URL] [--profile] [--check]

Steps, on a book generated for this run (``bot.sample_book`` through ``benchmarks.run.make_book``:
seed 7, ids ``ACC-…``, as of 2026-01-31; few usage days by default, since the digest reads stored
snapshots, not usage):

1. import every CSV into a fresh SQLite file with the real importer;
2. store the health snapshots of two days, ``Keepwell.score(since)`` and ``Keepwell.score(as_of)``
   (``--gap`` days apart): the "stored snapshots" the digest is built from;
3. time the digest as the scheduler posts it: ``Keepwell.digest(as_of, None, since)`` followed by
   ``bot.slack.blocks.digest_blocks(digest).to_dict()`` (the Slack message). One "cold" run first, on a
   fresh engine (new connections; the operating system's file cache stays warm), then ``--runs`` more,
   each with a fresh ``Keepwell`` and ``Book`` so no in-process cache helps. Target: median <= 2 s,
   max reported beside it;
4. the same for a segment digest (``--segment``, default ``tier:enterprise``);
5. with ``--pg URL`` (or ``KEEPWELL_TEST_DATABASE_URL``), import, score and the digests again in a
   PostgreSQL schema of its own, dropped afterwards.

With ``--keep DIR`` the book and ``digest.db`` stay in DIR, and a later run with the same
``--accounts``/``--days``/``--gap`` reuses them (no generation, import or scoring: quick re-measuring
while working on the code). ``--profile`` cProfiles one whole-book digest after measuring.

It prints a table and writes ``<out>/digest-<UTC timestamp>.json`` (machine, load average before and
after, arguments, book, every figure with its target and pass/fail, and a fingerprint of the digest so
runs before and after a change can be checked to build the same message). Exit status is 0 unless
``--check`` is given and a target was missed.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import statistics
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from benchmarks.run import (
    AS_OF,
    SEED,
    Figure,
    GeneratedBook,
    Results,
    finish,
    make_book,
    peak_rss_mb,
    percentile,
    report_head,
    say,
    stopwatch,
)
from bot import collector
from bot.config import KeepwellConfig
from bot.db.engine import make_engine, migrate
from bot.db.scratch import scratch_schema
from bot.importer.run import import_csv
from bot.services import Keepwell
from bot.slack.blocks import digest_blocks
from bot.store import Book, S

DIGEST_SECONDS = 2.0
ISSUE_ACCOUNTS = 100_000  # the book the target is set for
MARKER = "digest-bench.json"  # in --keep DIR: what the kept database holds


def fresh_service(engine: Engine) -> Keepwell:
    """A new Keepwell over a new Book: nothing cached in-process from an earlier run."""
    return Keepwell(Book(engine), KeepwellConfig())


def one_digest(
    engine: Engine, segment: str | None, since: date
) -> tuple[float, float, float, dict[str, Any]]:
    """One digest as it is posted: (total, digest, blocks seconds, the Slack payload)."""
    service = fresh_service(engine)
    with stopwatch() as total:
        with stopwatch() as built:
            digest = service.digest(AS_OF, segment, since)
        with stopwatch() as rendered:
            payload = digest_blocks(digest).to_dict()
    return total[0], built[0], rendered[0], payload


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def measure_digests(
    url: str, results: Results, prefix: str, db: str, args: argparse.Namespace, since: date, target: bool
) -> None:
    """A cold run on a fresh engine, then `--runs` runs with a fresh service each; whole book and segment."""
    engine = make_engine(url)
    try:
        for label, segment in (("book", None), ("segment", args.segment)):
            cold: tuple[float, float, float, dict[str, Any]] | None = None
            if label == "book":  # the first digest on this engine: new connections, nothing cached
                cold = one_digest(engine, segment, since)
                say(f"  {db}: digest cold {cold[0]:.3f} s (digest {cold[1]:.3f} s, blocks {cold[2]:.4f} s)")
            runs = [one_digest(engine, segment, since) for _ in range(args.runs)]
            totals = sorted(r[0] for r in runs)
            prints = {fingerprint(r[3]) for r in runs} | ({fingerprint(cold[3])} if cold else set())
            payload = runs[-1][3]
            detail: dict[str, Any] = {
                "segment": segment, "as_of": AS_OF.isoformat(), "since": since.isoformat(),
                "runs_s": [round(r[0], 4) for r in runs],
                "digest_s": [round(r[1], 4) for r in runs],
                "blocks_s": [round(r[2], 4) for r in runs],
                "median_s": round(statistics.median(totals), 4), "max_s": round(totals[-1], 4),
                "p90_s": round(percentile(totals, 90), 4),
                "fingerprint": sorted(prints), "same_message_every_run": len(prints) == 1,
                "fallback_text": payload["text"], "blocks": len(payload["blocks"]),
            }
            if cold is not None:
                detail |= {"cold_s": round(cold[0], 4), "cold_digest_s": round(cold[1], 4),
                           "cold_blocks_s": round(cold[2], 4)}
            what = "whole book" if segment is None else segment
            med = statistics.median(totals)
            results.add(Figure(
                f"{prefix}digest.{label}.median_s",
                f"digest + Slack blocks, {what}, median of {args.runs} ({db})",
                med, "s", DIGEST_SECONDS if target else None, "lower" if target else None, detail,
            ))
            results.add(Figure(f"{prefix}digest.{label}.max_s", f"  the same, max of {args.runs} ({db})",
                               totals[-1], "s", DIGEST_SECONDS if target else None,
                               "lower" if target else None))
            if cold is not None:
                results.add(Figure(f"{prefix}digest.{label}.cold_s", f"  the same, cold first run ({db})",
                                   cold[0], "s"))
            say(f"  {db}: digest ({what}) median {med:.3f} s, max {totals[-1]:.3f} s "
                f"(runs {', '.join(f'{x:.3f}' for x in [r[0] for r in runs])}); {payload['text']!r}")
            if len(prints) != 1:
                say(f"  {db}: WARNING: the digest differed between runs: {sorted(prints)}")
        floor = snapshot_floor(engine)
        results.add(Figure(f"{prefix}digest.floor_s", f"bare read of one day's snapshots ({db})", floor, "s",
                           detail={"sql": "SELECT * FROM health_snapshots WHERE as_of = :as_of"}))
        say(f"  {db}: bare read of one day's snapshots {floor:.3f} s")
    finally:
        engine.dispose()


def snapshot_floor(engine: Engine) -> float:
    """The bare cost of fetching one day's stored snapshot rows (best of 3): the digest's floor."""
    times = []
    with engine.connect() as conn:
        for _ in range(3):
            with stopwatch() as t:
                conn.execute(select(S).where(S.c.as_of == AS_OF)).all()
            times.append(t[0])
    return min(times)


def import_and_score(engine: Engine, book: GeneratedBook, since: date, results: Results, prefix: str,
                     db: str) -> None:
    with stopwatch() as t:
        for kind, path in book.files:
            import_csv(engine, kind, path)
    results.add(Figure(f"{prefix}import.seconds", f"import the whole book ({db})", t[0], "s"))
    say(f"  {db}: imported the book in {t[0]:.1f} s")
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:  # fresh statistics, as autovacuum would give a real book
            conn.execute(text("ANALYZE"))
            conn.commit()
    service = fresh_service(engine)
    for day, key in ((since, "since"), (AS_OF, "as_of")):
        with stopwatch() as t:
            summary = service.score(day)
        results.add(Figure(f"{prefix}score.{key}.seconds", f"Keepwell.score({day}) ({db})", t[0], "s",
                           detail={"customers": summary.accounts, "bands": summary.bands}))
        say(f"  {db}: score({day}) {t[0]:.1f} s ({summary.accounts:,} customers)")


def profile(url: str, since: date, segment: str | None, out: Path, stamp: str) -> None:
    """cProfile one digest (fresh service); write the .prof and print the top functions."""
    engine = make_engine(url)
    try:
        one_digest(engine, segment, since)  # connections and imports warm, as in the timed runs
        prof = cProfile.Profile()
        prof.runcall(one_digest, engine, segment, since)
    finally:
        engine.dispose()
    path = out / f"digest-{stamp}.prof"
    prof.dump_stats(str(path))
    for order in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(order).print_stats(25)
        print(f"\n--- cProfile: digest ({order}; {path}) ---")
        print(buf.getvalue().split("\n\n", 1)[-1].rstrip())


def generate(workdir: Path, args: argparse.Namespace) -> GeneratedBook:
    book = make_book(workdir / "digest-book", args.accounts, args.days)
    say(f"  generated the book in {book.seconds:.1f} s: "
        + ", ".join(f"{name} {n:,}" for name, n in book.rows.items()))
    return book


def prepare_sqlite(workdir: Path, args: argparse.Namespace, since: date, results: Results
                   ) -> tuple[str, GeneratedBook | None, bool]:
    """The SQLite book with both days scored: reused from --keep DIR when it matches, else built."""
    db_path = workdir / "digest.db"
    url = f"sqlite:///{db_path}"
    want = {"accounts": args.accounts, "days": args.days, "since": since.isoformat(),
            "as_of": AS_OF.isoformat(), "seed": SEED}
    marker = workdir / MARKER
    if args.keep and db_path.exists() and marker.exists():
        try:
            reusable = json.loads(marker.read_text(encoding="utf-8")) == want
        except ValueError:
            reusable = False
        if reusable:
            say(f"  reusing {db_path} (book and both days' snapshots as a previous run left them)")
            engine = make_engine(url)
            try:
                migrate(engine)  # the code may have moved on since
            finally:
                engine.dispose()
            return url, generate(workdir, args) if args.pg else None, True
    marker.unlink(missing_ok=True)
    book = generate(workdir, args)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(url)
    try:
        migrate(engine)
        import_and_score(engine, book, since, results, "", "sqlite")
    finally:
        engine.dispose()
    if args.keep:
        marker.write_text(json.dumps(want) + "\n", encoding="utf-8")
    return url, book, False


def run_pg(
    base_url: str, book: GeneratedBook, since: date, results: Results, args: argparse.Namespace
) -> None:
    with scratch_schema(base_url, prefix="digestbench") as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            import_and_score(engine, book, since, results, "pg.", "postgresql")
        finally:
            engine.dispose()
        measure_digests(url, results, "pg.", "postgresql", args, since, target=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.digest_bench",
        description="Time the portfolio digest (and its Slack message) from stored snapshots.",
    )
    parser.add_argument("--accounts", type=int, default=ISSUE_ACCOUNTS)
    parser.add_argument("--days", type=int, default=35,
                        help="usage days generated (default 35: the digest reads snapshots, not usage)")
    parser.add_argument("--gap", type=int, default=7, help="days between the two scored days (default 7)")
    parser.add_argument("--runs", type=int, default=5, help="timed digests after the cold one (default 5)")
    parser.add_argument("--segment", default="tier:enterprise", help="the segment digest's expression")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="where the JSON result goes (default: benchmarks/results)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="generate the book and digest.db in DIR and keep them; reused by a later run "
                             "with the same --accounts/--days/--gap (default: a temp dir, removed)")
    parser.add_argument("--pg", metavar="URL", default=os.environ.get("KEEPWELL_TEST_DATABASE_URL"),
                        help="also measure on this PostgreSQL server, in a throw-away schema "
                             "(default: $KEEPWELL_TEST_DATABASE_URL)")
    parser.add_argument("--profile", action="store_true",
                        help="after measuring, cProfile one whole-book digest (.prof in --out)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.days < 1 or args.gap < 1 or args.runs < 1:
        parser.error("--accounts, --days, --gap and --runs must be >= 1")
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
    since = AS_OF - timedelta(days=args.gap)
    say(f"digest benchmark: {args.accounts:,} accounts x {args.days} days; snapshots of {since} and {AS_OF}")

    with tempfile.TemporaryDirectory(prefix="keepwell-digest-") as tmp:
        workdir = args.keep.resolve() if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        url, book, reused = prepare_sqlite(workdir, args, since, results)
        results.mark_rss("prepare")
        measure_digests(url, results, "", "sqlite", args, since, target=True)
        results.mark_rss("sqlite")
        db_path = workdir / "digest.db"
        db_mb = sum(Path(f"{db_path}{s}").stat().st_size
                    for s in ("", "-wal") if Path(f"{db_path}{s}").exists()) / 1e6
        if args.pg and book is not None:
            run_pg(args.pg, book, since, results, args)
            results.mark_rss("postgresql")
        results.add(Figure("peak_rss_mb", "peak RSS of this process", peak_rss_mb(), "MB",
                           detail={"after_phase_mb": {k: round(v, 1) for k, v in results.rss_mb.items()}}))
        if args.profile:
            profile(url, since, None, args.out, stamp)

    doc = {"benchmark": "digest"} | report_head(started_at, load_before)
    info, load_after = doc["machine"], doc["machine"]["loadavg_after"]
    doc |= {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "pg"}
        | {"pg": bool(args.pg), "as_of": AS_OF.isoformat(), "since": since.isoformat(), "seed": SEED},
        "book": {"rows": book.rows if book else None, "reused": reused,
                 "generate_seconds": round(book.seconds, 3) if book else None,
                 "sqlite_file_mb": round(db_mb, 1)},
        "figures": [f.to_dict() for f in results.figures],
        "targets_apply": args.accounts >= ISSUE_ACCOUNTS,
        "all_targets_passed": all(f.passed is not False for f in results.figures),
    }
    headline = (f"Keepwell digest benchmark: {args.accounts:,} accounts, snapshots of {since} and {AS_OF}"
                f"{' (reused book)' if reused else ''}; nproc {info['nproc']}, Python {info['python']}, "
                f"SQLite {info['sqlite']}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} "
                f"after (other work on the machine makes timings noisy); {doc['seconds']:.0f} s in all")
    caveat = (f"(the target is set for {ISSUE_ACCOUNTS:,} accounts: on a smaller book pass/fail is "
              "indicative only)")
    return finish(results, doc, args.out / f"digest-{stamp}.json", headline, caveat, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
