"""The command line as a user meets it: output, JSON keys of the contract, exit codes."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from tests.cli import run

AS_OF = "2026-06-30"
HEALTH_KEYS = {"account_id", "name", "score", "band", "previous_score", "danger_zone", "forgotten_zone",
               "stickiness", "mrr", "renewal_date", "drivers"}
RETENTION_KEYS = {"from", "to", "customers_start", "new_customers", "churned_customers", "customers_end",
                  "retention_rate_pct", "churn_rate_pct", "mrr_start", "expansion_mrr", "contraction_mrr",
                  "churned_mrr", "grr_pct", "nrr_pct", "churn_reasons"}


@pytest.fixture(scope="module")
def demo_book(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 40-account demo book (SQLite), built once for the read-only tests of this module."""
    folder = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.chdir(folder)
    mp.setenv("KEEPWELL_OUTBOX", str(folder / "outbox"))
    url = f"sqlite:///{folder / 'book.db'}"
    try:
        main(["demo", "--accounts", "40", "--as-of", AS_OF, "--db", url])
    except SystemExit as exc:
        assert exc.code in (0, None)
    finally:
        mp.undo()
    return url, folder


def test_demo_prints_the_portfolio_and_writes_valid_drafts(demo_book):
    _, folder = demo_book
    drafts = sorted((folder / "outbox").glob("*.eml"))
    assert 1 <= len(drafts) <= 5
    for path in drafts:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert msg.get_content_type() == "multipart/alternative"
        kinds = [part.get_content_type() for part in msg.iter_parts()]
        assert kinds == ["text/plain", "text/html"]
        assert msg["Subject"].startswith("Checking in on")
        assert msg["To"] and "@" in msg["To"]
        assert msg["Message-ID"].startswith("<keepwell-")
        text = msg.get_body(("plain",)).get_content()
        assert text.startswith("Hi ") and "{{" not in text


def test_demo_rerun_is_clean_and_creates_no_duplicate_drafts(demo_book, capsys, monkeypatch):
    url, folder = demo_book
    before = sorted(p.name for p in (folder / "outbox").glob("*.eml"))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("KEEPWELL_OUTBOX", str(folder / "outbox"))
    code, out, _ = run(capsys, "demo", "--accounts", "40", "--as-of", AS_OF, "--db", url)
    assert code == 0
    assert "Portfolio on 2026-06-30" in out
    assert "retention" in out and "new" in out and "churned" in out
    assert sorted(p.name for p in (folder / "outbox").glob("*.eml")) == before
    code, out, _ = run(capsys, "accounts", "--all", "--json", "--db", url, "--as-of", AS_OF)
    assert len(json.loads(out)) == 40


def test_demo_refuses_a_book_with_the_users_own_accounts(tmp_path, capsys, csv_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'own.db'}"
    path = csv_file("accounts.csv", "account_id,name,start_date\nA1,Mine,2025-01-01")
    assert run(capsys, "import", "accounts", str(path), "--db", url)[0] == 0
    code, _, err = run(capsys, "demo", "--accounts", "20", "--db", url)
    assert code == 2
    assert "of your own" in err and "Traceback" not in err


def test_health_json_has_the_contract_keys_and_explains_itself(demo_book, capsys):
    url, _ = demo_book
    code, out, _ = run(capsys, "health", "acme", "--json", "--db", url, "--as-of", AS_OF)
    assert code == 0
    data = json.loads(out)
    assert set(data) >= HEALTH_KEYS
    assert data["name"] == "ACME Corp"
    assert isinstance(data["score"], int) and 0 <= data["score"] <= 100
    assert data["band"] in {"healthy", "watch", "at_risk"}
    impacts = [abs(d["impact"]) for d in data["drivers"]]
    assert impacts == sorted(impacts, reverse=True)  # biggest impact first, the forgotten zone's too
    assert all({"factor", "value", "impact", "explanation"} == set(d) for d in data["drivers"])
    assert any("usage down" in d["explanation"] for d in data["drivers"])


def test_health_card_in_the_terminal(demo_book, capsys):
    url, _ = demo_book
    code, out, _ = run(capsys, "health", "DEMO-0001", "--db", url, "--as-of", AS_OF)
    assert code == 0
    assert "ACME Corp" in out and "Health" in out and "impact" in out


@pytest.mark.parametrize(
    ("query", "expected"),
    [("zzzzqqq", "nothing close"), ("Acme Crop", "did you mean 'ACME Corp'")],
)
def test_unknown_account_exits_2_with_suggestions(demo_book, capsys, query, expected):
    url, _ = demo_book
    code, out, err = run(capsys, "health", query, "--db", url, "--as-of", AS_OF)
    assert code == 2
    assert expected in err
    assert out == "" and "Traceback" not in err


def test_previous_score_comes_from_the_earlier_snapshot(demo_book, capsys):
    url, _ = demo_book
    assert run(capsys, "score", "--db", url, "--as-of", "2026-06-29")[0] == 0
    code, out, _ = run(capsys, "score", "--db", url, "--as-of", AS_OF, "--json")
    assert code == 0 and json.loads(out)["customers"] > 0
    _, out, _ = run(capsys, "risk", "--json", "--db", url, "--as-of", "2026-06-29")
    yesterday = {r["account_id"]: r["score"] for r in json.loads(out)}
    _, out, _ = run(capsys, "accounts", "--json", "--db", url, "--as-of", AS_OF)
    rows = json.loads(out)
    assert all(r["previous_score"] is not None for r in rows)
    for r in rows:
        if r["account_id"] in yesterday:
            assert r["previous_score"] == yesterday[r["account_id"]]


def test_risk_lists_most_revenue_first_with_contract_keys(demo_book, capsys):
    url, _ = demo_book
    code, out, _ = run(capsys, "risk", "--json", "--db", url, "--as-of", AS_OF)
    assert code == 0
    rows = json.loads(out)
    assert rows, "the demo book has accounts at risk"
    assert all(set(r) >= HEALTH_KEYS for r in rows)
    mrr = [r["mrr"] or 0 for r in rows]
    assert mrr == sorted(mrr, reverse=True)
    assert all(r["band"] == "at_risk" or r["danger_zone"] or r["forgotten_zone"] for r in rows)


def test_accounts_segment_and_all(demo_book, capsys):
    url, _ = demo_book
    _, out, _ = run(capsys, "accounts", "--json", "--db", url, "--as-of", AS_OF)
    customers = json.loads(out)
    _, out, _ = run(capsys, "accounts", "--all", "--json", "--db", url, "--as-of", AS_OF)
    everyone = json.loads(out)
    assert len(everyone) >= len(customers)
    assert all("start_date" in r and "churn_date" in r for r in everyone)
    churn = {r["account_id"]: r["churn_date"] for r in everyone}
    assert all(churn[r["account_id"]] is None or churn[r["account_id"]] > AS_OF for r in customers)
    assert any(r["churn_date"] is not None and r["churn_date"] <= AS_OF for r in everyone)
    _, out, _ = run(capsys, "accounts", "--json", "--segment", "health<60 mrr>=100", "--db", url,
                    "--as-of", AS_OF)
    assert all(r["score"] < 60 and r["mrr"] >= 100 for r in json.loads(out))


def test_retention_json_is_exactly_the_contract(demo_book, capsys):
    url, _ = demo_book
    code, out, _ = run(capsys, "retention", "--from", "2026-01-01", "--to", "2026-06-30", "--json",
                       "--db", url)
    assert code == 0
    data = json.loads(out)
    assert set(data) == RETENTION_KEYS
    start, new, lost = data["customers_start"], data["new_customers"], data["churned_customers"]
    assert data["customers_end"] == start + new - lost
    if data["customers_start"]:
        assert data["retention_rate_pct"] == pytest.approx(
            data["customers_end"] / data["customers_start"] * 100, abs=0.01
        )
    counts = [r["count"] for r in data["churn_reasons"]]
    assert counts == sorted(counts, reverse=True) and sum(counts) == data["churned_customers"]


def test_retention_terminal_shows_new_and_lost_beside_the_rate_and_cohorts(demo_book, capsys):
    url, _ = demo_book
    code, out, _ = run(capsys, "retention", "--cohorts", "--db", url, "--as-of", AS_OF)
    assert code == 0
    for label in ("customers at start", "new customers", "churned customers", "retention rate",
                  "churn rate", "net revenue retention", "Monthly cohorts"):
        assert label in out
    _, out, _ = run(capsys, "retention", "--cohorts", "--json", "--db", url, "--as-of", AS_OF)
    cohorts = json.loads(out)["cohorts"]
    assert cohorts and all(0 <= (v or 0) <= 100 for c in cohorts for v in c["retained_pct"])


def test_reviews_within(demo_book, capsys):
    url, _ = demo_book
    code, out, _ = run(capsys, "reviews", "--within", "60", "--json", "--db", url, "--as-of", AS_OF)
    assert code == 0
    items = json.loads(out)
    renewals = [i for i in items if i["kind"] == "renewal"]
    reviews = [i for i in items if i["kind"] == "review"]
    assert renewals and reviews and len(renewals) + len(reviews) == len(items)
    assert all(0 <= i["days_left"] <= 60 for i in renewals)
    assert all(i["days_left"] <= 60 for i in reviews)  # an overdue review stays listed until it is done
    assert {i["account_id"] for i in reviews} <= {a["account_id"] for a in json.loads(
        run(capsys, "accounts", "--json", "--db", url, "--as-of", AS_OF)[1]) if a["tier"] in (
            "enterprise", "mid-market")}  # tiers with a review cadence by default
    assert [i["due_date"] for i in items] == sorted(i["due_date"] for i in items)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["health", "acme", "--as-of", "2026-13-01"], "--as-of: '2026-13-01' is not a date"),
        (["retention", "--from", "2026-06-01", "--to", "2026-01-01"],
         "the window ends 2026-01-01, before it starts 2026-06-01: give the earlier day first"),
        (["risk", "--segment", "colour:blue"], "unknown segment term 'colour:blue'"),
        (["risk", "--segment", "band:purple"], "unknown band 'purple'"),
        (["import", "gadgets", "x.csv"], "unknown kind 'gadgets'"),
        (["reviews", "--within", "-3"], "--within must be 0 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(demo_book, capsys, args, message):
    url, _ = demo_book
    code, _out, err = run(capsys, *args, "--db", url)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_usage_error_exits_2(capsys):
    code, _, err = run(capsys, "health")
    assert code == 2 and "Missing argument" in err


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[health]\nwieghts = 1\n", "health.wieghts: unknown key"),
        ("[health.weights]\nnps = 'lots'\n", "health.weights.nps: Input should be a valid number"),
        ("[health.bands]\nwatch = 90\n", "watch must not be above healthy"),
        ("not toml at all = = =", "not valid TOML"),
    ],
)
def test_bad_config_is_refused_naming_the_key(tmp_path, capsys, monkeypatch, toml, message):
    cfg = tmp_path / "keepwell.toml"
    cfg.write_text(toml)
    monkeypatch.setenv("KEEPWELL_CONFIG", str(cfg))
    code, _, err = run(capsys, "risk", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_config_changes_the_scorecard(demo_book, capsys, tmp_path, monkeypatch):
    url, _ = demo_book
    cfg = tmp_path / "keepwell.toml"
    cfg.write_text("[health.bands]\nhealthy = 99\nwatch = 98\n")
    monkeypatch.setenv("KEEPWELL_CONFIG", str(cfg))
    _, out, _ = run(capsys, "health", "acme", "--json", "--db", url, "--as-of", AS_OF)
    assert json.loads(out)["band"] == "at_risk"


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("nonsense://", 2, "unsupported database URL"),
        ("::::", 2, "invalid database URL"),
        ("sqlite:////no/such/folder/x.db", 2, "does not exist"),
        ("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", 1, "cannot reach the database"),
    ],
)
def test_database_url_problems(capsys, url, code, message):
    got, _, err = run(capsys, "risk", "--db", url)
    assert got == code
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(("name", "value"), [
    ("SLACK_BOT_TOKEN", "changeme"),
    ("SLACK_BOT_TOKEN", "xoxb-…"),  # docs/deploy.md's own example
    ("SLACK_BOT_TOKEN", "xoxb-your-bot-token"),
    ("SLACK_APP_TOKEN", "xapp-1-..."),
    ("SLACK_SIGNING_SECRET", "<signing secret>"),
    ("SLACK_SIGNING_SECRET", "clé secrète"),
    ("KEEPWELL_SECRET_KEY", "your-secret-key"),
])
def test_placeholder_secret_is_refused_at_start(capsys, monkeypatch, tmp_path, name, value):
    monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "risk", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert (code, out) == (2, "")
    assert err.startswith(f"keepwell: {name}: ") and "placeholder" in err
    assert len(err.splitlines()) == 1


def test_import_failure_through_the_cli(tmp_path, capsys, csv_file):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    path = csv_file("accounts.csv", "account_id,name,start_date\nA1,One,2025-01-01\nA2,Two,yesterday")
    code, _, err = run(capsys, "import", "accounts", str(path), "--db", url)
    assert code == 2
    assert "row 3, column start_date: 'yesterday' is not a date" in err
    code, out, _ = run(capsys, "accounts", "--all", "--json", "--db", url)
    assert json.loads(out) == []


def test_empty_book_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, _, err = run(capsys, "health", "acme", "--db", url)
    assert code == 2 and "the book is empty" in err
    code, out, _ = run(capsys, "risk", "--db", url)
    assert code == 0 and "no accounts match" in out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["run"], {}, "SLACK_APP_TOKEN is not set"),
        (["serve"], {}, "SLACK_SIGNING_SECRET is not set"),
        (["serve"], {"SLACK_SIGNING_SECRET": "s3cret-value"}, "SLACK_BOT_TOKEN is not set"),
        (["serve"], {"SLACK_SIGNING_SECRET": "changeme"}, "SLACK_SIGNING_SECRET: Value error, looks like a"),
    ],
)
def test_slack_modes_refuse_to_start_without_their_secrets(tmp_path, capsys, monkeypatch, args, env, message):
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *args, "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_passphrase_is_a_good_secret_key(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KEEPWELL_SECRET_KEY", "Schlüssel: correct horse battery staple")
    code, _, err = run(capsys, "risk", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert (code, err) == (0, "")


def test_every_command_takes_db():
    """CONTRACT §3: scripts may pass --db to any command."""
    import typer

    from bot.cli import app

    def leaves(cmd: Any, path: str) -> list[tuple[str, Any]]:
        subs = getattr(cmd, "commands", None)  # a group
        if subs is not None:
            return [leaf for name, sub in subs.items() for leaf in leaves(sub, f"{path} {name}")]
        return [(path, cmd)]

    commands = leaves(typer.main.get_command(app), "keepwell")
    assert len(commands) >= 18
    assert [path for path, cmd in commands if "--db" not in {o for p in cmd.params for o in p.opts}] == []
