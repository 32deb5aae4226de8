"""The benchmark suite keeps working: a tiny book through benchmarks.run, and how benchmarks.all
gathers a scenario's figures."""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import date, timedelta

import pytest
from sqlalchemy import create_engine, text

from benchmarks import all as bench_all
from benchmarks import run as bench_run
from tests.conftest import PG_URL


def test_a_tiny_book_is_measured_and_written(tmp_path):
    code = bench_run.main(["--accounts", "120", "--days", "65", "--no-cli", "--no-pg", "--score-runs", "1",
                           "--health-calls", "10", "--name-calls", "1", "--out", str(tmp_path)])
    assert code == 0
    [path] = tmp_path.glob("bench-*.json")
    doc = json.loads(path.read_text())
    figures = {f["key"]: f for f in doc["figures"]}
    score, scan = figures["score.seconds"], figures["floor_scan.seconds"]
    assert score["target"] == bench_run.SCORE_SECONDS and score["target_op"] == "<="
    # one run: the ratio of its one pair (the score, and the scan timed just before it)
    [pair] = figures["score.floor_ratio"]["detail"]["pairs"]
    assert figures["score.floor_ratio"]["value"] == pytest.approx(pair, abs=1e-3)
    assert pair == pytest.approx(score["value"] / scan["value"], rel=1e-3)
    assert figures["score.floor_ratio"]["target"] == bench_run.FLOOR_RATIO
    assert figures["score.seek_ratio"]["value"] > 0
    assert figures["health.by_id.p99_ms"]["detail"]["calls"] == 10
    assert figures["import.usage.rows_per_s"]["detail"]["rows"] == doc["book"]["rows"]["usage.csv"]
    assert doc["targets_apply"] is False  # a tiny book: the targets are indicative only


def test_the_floor_ratio_is_the_median_of_each_score_against_the_scan_before_it():
    # the machine slowed by half between the first pair and the last: each pair still says 2 x
    assert bench_run.paired_ratio([0.2, 0.3, 0.4], [0.1, 0.15, 0.2]) == pytest.approx(2.0)
    assert bench_run.paired_ratio([0.5, 0.2, 0.3], [0.1, 0.1, 0.1]) == pytest.approx(3.0)


def test_a_large_book_has_its_own_targets():
    args = bench_run.parse_args(["--accounts", "100000", "--no-pg"])
    assert bench_run.large(args) and args.pg is None
    assert not bench_run.large(bench_run.parse_args(["--accounts", "10000"]))


def test_scenario_figures_keep_their_targets_and_the_child_peak_replaces_its_own():
    doc = {"figures": [
        {"key": "score.seconds", "label": "score", "value": 61.0, "unit": "s", "target": 60.0,
         "target_op": "<=", "detail": {}},
        {"key": "peak_rss_mb", "label": "peak", "value": 900.0, "unit": "MB", "target": 2048.0,
         "target_op": "<=", "detail": {}},
    ]}
    figures = bench_all._figures_of(doc, "book-100k")
    assert figures[0].passed is False  # 61 s against <= 60 s
    memory = bench_all.peak_figure("book-100k", 2100.0, figures, 12.0)
    assert [f.key for f in figures] == ["book-100k.score.seconds"]
    assert memory.target == 2048.0 and memory.passed is False


def test_a_scenario_that_fails_is_an_error_not_a_missing_line(tmp_path):
    broken = bench_all.Scenario("broken", "benchmarks.no_such_module", [], [], "bench", bench_all._figures_of)
    figures, _ = bench_all.run_one(broken, tmp_path / "broken", quick=True, pg=None)
    assert [f.passed for f in figures] == [False] and figures[0].error


def test_score_rounds_import_a_book_once_and_report_the_ratio_of_each_round(tmp_path, capsys):
    import re

    from benchmarks import score_rounds

    args = ["--db", f"sqlite:///{tmp_path / 'rounds.db'}", "--accounts", "60", "--days", "65"]
    assert score_rounds.main([*args, "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "imported a book of 60 accounts x 65 days" in out
    rounds = re.findall(r"^round \d: scan \d+\.\d{3} s, score \d+\.\d{3} s, ratio \d+\.\d\d$", out, re.M)
    assert len(rounds) == 2
    assert re.search(r"^sqlite: median ratio \d+\.\d\d over 2 rounds$", out, re.M)
    assert score_rounds.main([*args, "--rounds", "1", "--pieces", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "imported" not in out  # the book is kept for the next call
    timed = re.findall(r"^piece (.+): \d+\.\d ms, this process \d+\.\d ms$", out, re.M)
    assert timed == ["usage windows", "peers", "evidence", "scoring", "storing into an empty day"]
    with create_engine(f"sqlite:///{tmp_path / 'rounds.db'}").connect() as conn:  # what it stored
        assert conn.execute(text("SELECT COUNT(*) FROM health_snapshots")).scalar() == 60
    with pytest.raises(SystemExit, match="holds a book of 60 accounts, not 70"):
        score_rounds.main([*args[:2], "--accounts", "70"])


@contextmanager
def few_open_files() -> Iterator[None]:
    """This process may open only a few more files than it has open (as on macOS, whose default
    limit is 256): half its limit is fewer than the free ones, as `usage_by_day` assumes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 32
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(2 * held + 16, soft), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(("open_files", "limited"), [(400, False), (3, False), (400, True)])
def test_usage_by_day_keeps_every_row_in_date_order_and_each_dates_rows_in_file_order(
    tmp_path, monkeypatch, open_files, limited
):
    """The file a book kept by daily imports would leave: the same rows, a date at a time. With few
    open files allowed, by the module or by the process, dates share a temporary file and are sorted
    on the way out."""
    from benchmarks import generate

    monkeypatch.setattr(generate, "OPEN_FILES", open_files)
    first, days = date(2025, 6, 1), 240
    rows = [f"ACC-{a:03d},{first + timedelta(days=d)},{a + d},{a * d}\n" for a in range(4)
            for d in range(days)]
    src = tmp_path / "usage.csv"
    src.write_text("account_id,date,active_users,events\n" + "".join(rows), encoding="utf-8")
    with few_open_files() if limited else nullcontext():
        generate.usage_by_day(src, src, days)
    header, *out = src.read_text(encoding="utf-8").splitlines(keepends=True)
    assert header == "account_id,date,active_users,events\n"
    assert out == sorted(rows, key=lambda line: line.split(",")[1])  # stable: accounts stay in order
    assert [p.name for p in tmp_path.iterdir()] == ["usage.csv"]  # no temporary file left behind


@pytest.mark.skipif(not PG_URL, reason="needs KEEPWELL_TEST_DATABASE_URL")
def test_a_tiny_book_is_also_measured_on_postgresql_with_its_usage_in_date_order(tmp_path):
    args = ["--accounts", "60", "--days", "65", "--no-cli", "--pg", PG_URL, "--score-runs", "1"]
    code = bench_run.main([*args, "--health-calls", "5", "--name-calls", "0", "--out", str(tmp_path)])
    assert code == 0
    [path] = tmp_path.glob("bench-*.json")
    figures = {f["key"]: f for f in json.loads(path.read_text())["figures"]}
    imported = figures["pg.by_day.import.usage.rows_per_s"]
    assert imported["detail"]["file"] == "usage-by-day.csv"
    assert imported["detail"]["rows"] == figures["pg.import.usage.rows_per_s"]["detail"]["rows"] > 0
    assert imported["target"] is None  # the import target is for the generated file, as is
    assert figures["pg.by_day.score.floor_ratio"]["target"] == bench_run.FLOOR_RATIO
    assert figures["pg.by_day.score.seconds"]["detail"]["customers"] == figures["pg.score.seconds"]["detail"][
        "customers"] > 0
