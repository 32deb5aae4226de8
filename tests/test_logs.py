"""Log lines of the long-running commands: JSON or text, their fields only, set up by `serve`, `run`
and `tick` and by nothing else; each scheduled job run is one line."""

from __future__ import annotations

import json
import logging

import pytest

from bot import logs
from tests.cli import run
from tests.test_tick import WEEKLY, book_url, config, fresh_db, slack  # noqa: F401  (fixtures)


def record(message: str = "request", level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("keepwell.http", level, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_the_fields_and_nothing_else_of_the_record():
    rec = record(fields={"status": 200, "ids": ["open_card"], "message": "not this", "level": "not this"},
                 body="secret body", token="xoxb-not-this")  # extras other than fields are never written
    line = json.loads(logs.JsonFormatter().format(rec))
    assert line == {"time": line["time"], "level": "info", "logger": "keepwell.http", "message": "request",
                    "status": 200, "ids": ["open_card"]}
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-11-23T09:00:00.123Z")


def test_a_traceback_stays_inside_its_one_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("a tick failed", logging.ERROR, exc_info=sys.exc_info())
    text = logs.JsonFormatter().format(rec)
    assert "\n" not in text and "ValueError: boom" in json.loads(text)["error"]


def test_text_lines_are_the_message_then_key_value_pairs():
    rec = record("job run", fields={"job": "digest:C0A:all", "period": "2026-11-23",
                                    "outcome": "2 posted, 1 x", "ids": ["a", "b"], "team": None})
    text = logs.TextFormatter().format(rec)
    assert text.endswith(' INFO keepwell.http: job run job=digest:C0A:all period=2026-11-23 '
                         'outcome="2 posted, 1 x" ids=a,b')


def test_configured_logging_is_undone_on_the_way_out(capsys):
    root, ours = logging.getLogger(), logging.getLogger("keepwell")
    before = (list(root.handlers), root.level, ours.level)
    with logs.configured("json", "debug"):
        logging.getLogger("keepwell.test").debug("ours", extra=logs.fields(n=1))
        logging.getLogger("urllib3.connectionpool").info("theirs stays at WARNING")
        logging.getLogger("keepwell.slack.bolt").debug("Bolt would log a body here")
    assert (list(root.handlers), root.level, ours.level) == before
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert (line["message"], line["n"]) == ("ours", 1)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("KEEPWELL_LOG_FORMAT", "xml", "KEEPWELL_LOG_FORMAT: expected one of json, text"),
    ("KEEPWELL_LOG_LEVEL", "chatty", "KEEPWELL_LOG_LEVEL: expected one of debug, info, warning, error"),
])
def test_a_bad_log_setting_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, variable, value, message):
    monkeypatch.setenv(variable, value)
    code, _, err = run(capsys, "tick", "--db", f"sqlite:///{tmp_path / 'b.db'}")
    assert code == 2 and err.strip() == f"keepwell: {message}"


def test_only_the_long_running_commands_set_logging_up(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KEEPWELL_LOG_FORMAT", "xml")  # read only by serve, run and tick
    code, _, err = run(capsys, "schedule", "--db", f"sqlite:///{tmp_path / 'b.db'}")
    assert code == 0 and "KEEPWELL_LOG_FORMAT" not in err


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_tick_logs_one_line_per_job_run(tmp_path, monkeypatch, capsys, slack, book_url, fmt):  # noqa: F811
    url = fresh_db(tmp_path, book_url)
    config(tmp_path, monkeypatch, WEEKLY)
    if fmt == "json":
        monkeypatch.setenv("KEEPWELL_LOG_FORMAT", "json")  # text is tick's default
    code, out, err = run(capsys, "tick", "--now", "2026-06-22T09:05:00+02:00", "--db", url)
    assert code == 0, err
    assert "digest:C0WEEKLY:all 2026-06-22T09:00+02:00: posted" in out  # what tick prints is unchanged
    if fmt == "text":
        [line] = [x for x in err.splitlines() if "keepwell.scheduler: job run" in x]
        assert " INFO keepwell.scheduler: job run job=digest:C0WEEKLY:all period=2026-06-22T09:00+02:00 " \
               "outcome=posted duration_ms=" in line
        return
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    [line] = [x for x in lines if x["message"] == "job run"]
    [daily] = [x for x in lines if x["message"] == "housekeeping"]  # the day's pruning, once
    assert daily["job_runs_pruned"] == 0 and daily["slack_deliveries_pruned"] == 0
    assert {k: line[k] for k in ("level", "logger", "message", "job", "period", "outcome")} == {
        "level": "info", "logger": "keepwell.scheduler", "message": "job run", "job": "digest:C0WEEKLY:all",
        "period": "2026-06-22T09:00+02:00", "outcome": "posted"}
    assert line["duration_ms"] > 0
    assert "xoxb-" not in err
