"""Generate a synthetic customer book as CSV files (for benchmarks and demos).

    python -m benchmarks.generate --accounts 10000 --days 365 --out bench-data/10k
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import TextIO

from bot.sample_book import generate_book


def _count_rows(path: Path) -> int:
    """Data rows (lines minus the header). The generator never writes newlines inside cells."""
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


OPEN_FILES = 400  # date buckets `usage_by_day` writes at once, at most


def _buckets() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return OPEN_FILES if soft == resource.RLIM_INFINITY else max(1, min(OPEN_FILES, soft // 2))


def usage_by_day(src: Path, dst: Path, days: int) -> None:
    """`src`'s usage rows in date order, each date's rows in the order they came (`dst` may be `src`).

    The generator writes an account's year, then the next account's: one import of that leaves each
    account's days side by side in PostgreSQL's table. A book kept up to date by daily imports holds
    a day of every account, then the next day; a file in date order leaves the same layout. Rows go
    through temporary files, a run of `days // buckets + 1` dates each, so memory stays one run (the
    buckets: `OPEN_FILES`, or half the process's limit of open files if lower; macOS allows 256).
    Dates are ISO text (as the generator writes them), so they sort as text."""
    span = days // _buckets() + 1
    with tempfile.TemporaryDirectory(prefix="keepwell-by-day-", dir=dst.parent) as tmp, ExitStack() as files:
        buckets: dict[int, TextIO] = {}
        with src.open(encoding="utf-8", newline="") as fh:
            header = fh.readline()
            at = header.rstrip("\r\n").split(",").index("date")
            for line in fh:
                day = date.fromisoformat(line.split(",", at + 1)[at]).toordinal() // span
                out = buckets.get(day)
                if out is None:
                    out = buckets[day] = files.enter_context(
                        open(os.path.join(tmp, str(day)), "w", encoding="utf-8", newline=""))
                out.write(line)
        files.close()
        part = dst.with_name(dst.name + ".part")
        with part.open("w", encoding="utf-8", newline="") as out_fh:
            out_fh.write(header)
            for day in sorted(buckets):
                with open(os.path.join(tmp, str(day)), encoding="utf-8", newline="") as bucket:
                    lines = bucket.readlines()
                if span > 1:
                    lines.sort(key=lambda line: line.split(",", at + 1)[at])  # stable: accounts' order kept
                out_fh.writelines(lines)
        part.replace(dst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generate", description="Generate a synthetic customer book as CSV files."
    )
    parser.add_argument("--accounts", type=int, required=True, help="number of accounts")
    parser.add_argument("--days", type=int, default=365, help="usage window in days, ending at --as-of")
    parser.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 1, 31),
                        help="last day of data, YYYY-MM-DD (default: 2026-01-31, fixed for reproducibility)")
    parser.add_argument("--user-level-days", type=int, default=0,
                        help="also write usage_users.csv for the last K days (default: 0 = no)")
    parser.add_argument("--id-prefix", default="ACC-")
    parser.add_argument("--usage-by-day", action="store_true",
                        help="write usage.csv in date order (as daily imports lay a book out)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    files = generate_book(
        args.out, accounts=args.accounts, days=args.days, seed=args.seed, as_of=args.as_of,
        id_prefix=args.id_prefix, user_level_days=args.user_level_days,
    )
    if args.usage_by_day:
        for _, path in files:
            if path.name == "usage.csv":
                usage_by_day(path, path, args.days)
    elapsed = time.perf_counter() - started

    usage_rows = 0
    total_bytes = 0
    for kind, path in files:
        rows = _count_rows(path)
        size = path.stat().st_size
        total_bytes += size
        if path.name == "usage.csv":
            usage_rows = rows
        print(f"{kind:<9} {path!s:<60} {rows:>12,} rows {size / 1e6:>9.1f} MB")
    rate = usage_rows / elapsed if elapsed > 0 else 0.0
    print(f"generated {args.accounts:,} accounts x {args.days} days in {elapsed:.2f} s "
          f"({total_bytes / 1e6:.1f} MB; {rate:,.0f} account-level usage rows/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
