"""`make bench`: every scenario of the scale issue, each in a process of its own, in one table and one JSON.

    python -m benchmarks.all [--out benchmarks/results] [--pg URL] [--quick] [--only NAME ...] [--check]

Scenarios (each one is also a module you can run alone, with more options):

| name        | module                   | what it measures                                                  |
|-------------|--------------------------|-------------------------------------------------------------------|
| book-10k    | benchmarks.run           | 10k x 365: usage import, score and floor ratio, health p50/p99    |
|             |                          | on SQLite and PostgreSQL                                          |
| book-100k   | benchmarks.run           | 100k x 365 (36.5M usage rows), SQLite: score, peak memory, health |
| slack       | benchmarks.slack_bench   | the acknowledgement in-process; `/keepwell health` over HTTP at 8 |
|             |                          | concurrent clients against `keepwell serve`                       |
| drafts      | benchmarks.drafts_bench  | plan render rate; apply against a 15,000 units/min fake Gmail     |
| digest      | benchmarks.digest_bench  | the portfolio digest of 100k accounts, SQLite and PostgreSQL      |

Each scenario writes its own JSON into a folder of this run; this module reads them back, adds each
child's peak memory (its own `ru_maxrss`, from `wait4`), and writes `<out>/all-<stamp>.json` with
every figure and the table printed at the end. `--quick` runs small books (a smoke run: minutes, and
the targets are not meant for it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.run import Figure, Results, finish, report_head


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str
    args: list[str]
    quick_args: list[str]
    prefix: str  # the JSON file the module writes: <prefix>-<stamp>.json
    read: Callable[[dict[str, Any], str], list[Figure]]
    uses_pg: bool = False


def _figures_of(doc: dict[str, Any], scenario: str) -> list[Figure]:
    """A benchmarks.run / digest_bench document: its figures, as they are."""
    out = []
    for f in doc.get("figures", []):
        target = f.get("target")
        out.append(Figure(
            f"{scenario}.{f['key']}", f"{scenario}: {f['label']}", float(f["value"]), f["unit"], target,
            None if target is None else ("higher" if f.get("target_op") == ">=" else "lower"),
            f.get("detail") or {}, f.get("error"),
        ))
    return out


def _slack(doc: dict[str, Any], scenario: str) -> list[Figure]:
    inproc, http = doc["in_process"], doc["http"]
    clients = doc["clients"]
    out = [
        Figure(f"{scenario}.ack.p50_ms", f"{scenario}: ack in-process p50", inproc["ack_p50_ms"], "ms"),
        Figure(f"{scenario}.ack.p99_ms", f"{scenario}: ack in-process p99", inproc["ack_p99_ms"], "ms",
               15.0, "lower", inproc),
        Figure(f"{scenario}.http.ack_p99_ms", f"{scenario}: HTTP ack p99, {clients} clients",
               http["ack_p99_ms"], "ms", 100.0, "lower", http),
        Figure(f"{scenario}.http.acks_per_s", f"{scenario}: HTTP acks per second, open loop",
               http["acks_per_s"], "req/s", 300.0, "higher"),
    ]
    closed = doc.get("closed_loop")
    if closed:
        out += [
            Figure(f"{scenario}.health.answer_p50_ms",
                   f"{scenario}: /keepwell health card p50, {clients} users", closed["answer_p50_ms"], "ms"),
            Figure(f"{scenario}.health.answer_p99_ms",
                   f"{scenario}: /keepwell health card p99, {clients} users", closed["answer_p99_ms"], "ms",
                   detail=closed),
        ]
    return out


def _drafts(doc: dict[str, Any], scenario: str) -> list[Figure]:
    plan, apply = doc["plan"], doc["apply"]
    ratio = apply.get("steady_ratio_to_ceiling")
    out = [
        Figure(f"{scenario}.plan.drafts_per_s", f"{scenario}: plan render rate", plan["drafts_per_s"],
               "drafts/s", 1000.0, "higher", plan),
        Figure(f"{scenario}.apply.duplicates", f"{scenario}: apply duplicates", apply["duplicates"], "drafts",
               0.0, "lower", apply),
    ]
    if ratio is None:  # too short a run for a steady state (--quick)
        out.append(Figure(f"{scenario}.apply.ratio", f"{scenario}: apply rate / quota ceiling (whole run)",
                          apply["drafts_per_s"] / apply["ceiling_per_s"], "x", detail=apply))
    else:
        out.append(Figure(f"{scenario}.apply.ratio", f"{scenario}: apply steady rate / quota ceiling", ratio,
                          "x", 0.9, "higher", apply))
    return out


SCENARIOS = [
    Scenario("book-10k", "benchmarks.run", ["--no-cli"], ["--quick", "--no-cli"], "bench", _figures_of, True),
    Scenario("book-100k", "benchmarks.run",
             ["--accounts", "100000", "--no-pg", "--no-cli", "--score-runs", "1", "--name-calls", "0"],
             ["--accounts", "3000", "--days", "120", "--no-pg", "--no-cli", "--score-runs", "1",
              "--name-calls", "0"], "bench", _figures_of),
    Scenario("slack", "benchmarks.slack_bench", [],
             ["--accounts", "500", "--days", "60", "--seconds", "3", "--ack-calls", "100"], "slack", _slack),
    Scenario("drafts", "benchmarks.drafts_bench", [], ["--accounts", "200", "--apply-drafts", "40"],
             "drafts", _drafts),
    Scenario("digest", "benchmarks.digest_bench", [], ["--accounts", "2000", "--runs", "2"], "digest",
             _figures_of, True),
]


def run_one(scenario: Scenario, folder: Path, quick: bool, pg: str | None) -> tuple[list[Figure], float]:
    """Run a scenario's module in a child process; its figures and its own peak RSS in MB."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", scenario.module, *(scenario.quick_args if quick else scenario.args),
           "--out", str(folder)]
    env = dict(os.environ)
    if scenario.uses_pg:
        if pg:
            cmd += ["--pg", pg]
        else:
            env.pop("KEEPWELL_TEST_DATABASE_URL", None)
    print(f"\n=== {scenario.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / 1024
    files = sorted(folder.glob(f"{scenario.prefix}-*.json"))
    if proc.returncode != 0 or not files:
        return [Figure(f"{scenario.name}.failed", f"{scenario.name}: did not finish", float(proc.returncode),
                       "exit", error=f"exit {proc.returncode}")], peak_mb
    doc = json.loads(files[-1].read_text(encoding="utf-8"))
    return scenario.read(doc, scenario.name), peak_mb


def peak_figure(name: str, peak_mb: float, figures: list[Figure], wall_s: float) -> Figure:
    """The child's peak memory (from wait4), with the target its own report set for it, if any; the
    child's own figure of the same (ru_maxrss of itself) is dropped from `figures`."""
    own = [f for f in figures if f.key == f"{name}.peak_rss_mb"]
    for f in own:
        figures.remove(f)
    target = own[0].target if own else None
    return Figure(f"{name}.peak_rss_mb", f"{name}: peak memory of the process", peak_mb, "MB", target,
                  own[0].better if own else None, {"wall_s": round(wall_s, 1)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.all", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--pg", metavar="URL", default=os.environ.get("KEEPWELL_TEST_DATABASE_URL"),
                        help="PostgreSQL for the scenarios that measure it (default: "
                             "$KEEPWELL_TEST_DATABASE_URL; without one they run on SQLite alone)")
    parser.add_argument("--quick", action="store_true", help="small books: a smoke run of every scenario")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in SCENARIOS], help="these scenarios")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    run_dir = args.out / f"all-{stamp}"
    load_before = os.getloadavg()
    results = Results()
    for scenario in SCENARIOS:
        if args.only and scenario.name not in args.only:
            continue
        began = time.monotonic()
        figures, peak = run_one(scenario, run_dir / scenario.name, args.quick, args.pg)
        memory = peak_figure(scenario.name, peak, figures, time.monotonic() - began)
        for f in figures:
            results.add(f)
        results.add(memory)
    doc = report_head(started_at, load_before)
    info, load_after = doc["machine"], doc["machine"]["loadavg_after"]
    doc |= {
        "args": {"quick": args.quick, "pg": bool(args.pg), "only": args.only},
        "scenario_results": str(run_dir),
        "figures": [f.to_dict() for f in results.figures],
        "targets_apply": not args.quick,
        "all_targets_passed": all(f.passed is not False for f in results.figures),
    }
    headline = (f"Keepwell benchmarks ({'quick' if args.quick else 'full'}): nproc {info['nproc']}, Python "
                f"{info['python']}, SQLite {info['sqlite']}, PostgreSQL {'yes' if args.pg else 'no'}; load "
                f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    caveat = "(--quick: small books; the targets are set for the full sizes, so pass/fail is indicative only)"
    return finish(results, doc, args.out / f"all-{stamp}.json", headline, caveat, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
