"""Tests of the deterministic sample-book generator (bot/sample_book.py)."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from bot.sample_book import generate_book

AS_OF = date(2026, 3, 15)
ACCOUNTS = 60
DAYS = 120
USER_DAYS = 35

EXPECTED_COLUMNS = {
    "accounts": [
        "account_id", "name", "start_date", "domain", "tier", "tags", "owner_email", "mrr", "seats",
        "renewal_date", "churn_date", "churn_reason",
    ],
    "contacts": ["email", "account_id", "first_name", "last_name", "title", "role", "do_not_contact"],
    "team": ["account_id", "member", "function"],
    "mrr": ["account_id", "month", "mrr"],
    "usage": ["account_id", "date", "active_users", "events"],
    "usage_users": ["account_id", "date", "user_id", "events"],
    "nps": ["date", "score", "account_id", "email", "touchpoint", "comment"],
    "tickets": ["ticket_id", "account_id", "opened_at", "closed_at", "priority", "kind"],
    "invoices": ["invoice_id", "account_id", "amount", "due_date", "paid_date"],
    "touches": ["account_id", "date", "channel", "team", "contact_email", "sentiment", "kind", "note"],
}
EMAIL_RE = re.compile(r"^[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")
SLACK_RE = re.compile(r"^U[0-9A-Z]{8,10}$")
MONEY_RE = re.compile(r"^\d+\.\d{2}$")
CHURN_REASONS = {
    "price", "moved to competitor", "no longer needed", "poor onboarding", "missing feature", "budget cuts",
    "acquired",
}

Book = dict[str, list[dict[str, str]]]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh))


def _d(text: str) -> date:
    return date.fromisoformat(text)


def _load(files: list[tuple[str, Path]]) -> Book:
    return {path.stem: _read(path) for _, path in files}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, Path]], Book]:
    out = tmp_path_factory.mktemp("small")
    files = generate_book(out, accounts=ACCOUNTS, days=DAYS, as_of=AS_OF, user_level_days=USER_DAYS)
    return files, _load(files)


@pytest.fixture(scope="module")
def book(small: tuple[list[tuple[str, Path]], Book]) -> Book:
    return small[1]


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Book:
    """A wider book (more accounts, short window) to check proportions."""
    out = tmp_path_factory.mktemp("wide")
    files = generate_book(out, accounts=400, days=60, as_of=AS_OF, user_level_days=0, seed=11)
    return _load(files)


def _accounts(book: Book) -> dict[str, dict[str, str]]:
    return {a["account_id"]: a for a in book["accounts"]}


# ------------------------------------------------------------------------------------------------
# Files, order, determinism
# ------------------------------------------------------------------------------------------------


def test_returned_files_in_import_order(small: tuple[list[tuple[str, Path]], Book]) -> None:
    files, _ = small
    assert [k for k, _ in files] == [
        "accounts", "contacts", "team", "mrr", "usage", "usage", "nps", "tickets", "invoices", "touches",
    ]
    assert [p.name for _, p in files] == [
        "accounts.csv", "contacts.csv", "team.csv", "mrr.csv", "usage.csv", "usage_users.csv", "nps.csv",
        "tickets.csv", "invoices.csv", "touches.csv",
    ]
    assert all(p.is_file() for _, p in files)


def test_without_user_level_usage(tmp_path: Path) -> None:
    files = generate_book(tmp_path, accounts=5, days=30, as_of=AS_OF, user_level_days=0)
    assert [k for k, _ in files] == [
        "accounts", "contacts", "team", "mrr", "usage", "nps", "tickets", "invoices", "touches",
    ]
    assert not (tmp_path / "usage_users.csv").exists()


def test_required_columns(small: tuple[list[tuple[str, Path]], Book]) -> None:
    files, _ = small
    for _, path in files:
        assert _header(path) == EXPECTED_COLUMNS[path.stem], path.name


def test_plain_utf8_comma_csv(small: tuple[list[tuple[str, Path]], Book]) -> None:
    files, _ = small
    for _, path in files:
        raw = path.read_bytes()
        raw.decode("utf-8")
        assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM
        assert b"\r\n" not in raw


def test_deterministic(tmp_path: Path) -> None:
    a = generate_book(tmp_path / "a", accounts=ACCOUNTS, days=DAYS, as_of=AS_OF, user_level_days=USER_DAYS)
    b = generate_book(tmp_path / "b", accounts=ACCOUNTS, days=DAYS, as_of=AS_OF, user_level_days=USER_DAYS)
    assert [(k, p.name) for k, p in a] == [(k, p.name) for k, p in b]
    for (_, pa), (_, pb) in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_seed_changes_the_book(tmp_path: Path) -> None:
    a = generate_book(tmp_path / "a", accounts=20, days=30, as_of=AS_OF, seed=1, user_level_days=0)
    b = generate_book(tmp_path / "b", accounts=20, days=30, as_of=AS_OF, seed=2, user_level_days=0)
    assert a[0][1].read_bytes() != b[0][1].read_bytes()
    assert a[4][1].read_bytes() != b[4][1].read_bytes()


def test_small_book_is_a_prefix_of_a_bigger_one(tmp_path: Path) -> None:
    a = generate_book(tmp_path / "a", accounts=30, days=30, as_of=AS_OF, user_level_days=0)
    b = generate_book(tmp_path / "b", accounts=90, days=30, as_of=AS_OF, user_level_days=0)
    assert b[0][1].read_text(encoding="utf-8").startswith(a[0][1].read_text(encoding="utf-8"))


def test_id_prefix(tmp_path: Path) -> None:
    files = generate_book(tmp_path, accounts=3, days=10, as_of=AS_OF, id_prefix="ACC-", user_level_days=0)
    ids = [a["account_id"] for a in _read(files[0][1])]
    assert ids == ["ACC-0001", "ACC-0002", "ACC-0003"]


# ------------------------------------------------------------------------------------------------
# Integrity
# ------------------------------------------------------------------------------------------------


def test_referential_integrity(book: Book) -> None:
    ids = set(_accounts(book))
    assert len(ids) == len(book["accounts"]) == ACCOUNTS
    for kind in ("contacts", "team", "mrr", "usage", "usage_users", "nps", "tickets", "invoices", "touches"):
        assert book[kind], kind
        assert {r["account_id"] for r in book[kind]} <= ids, kind
    contact_account = {c["email"]: c["account_id"] for c in book["contacts"]}
    for r in book["nps"]:
        assert contact_account.get(r["email"]) == r["account_id"]
    for r in book["touches"]:
        assert contact_account.get(r["contact_email"]) == r["account_id"]
    assert len({t["ticket_id"] for t in book["tickets"]}) == len(book["tickets"])
    assert len({i["invoice_id"] for i in book["invoices"]}) == len(book["invoices"])


def test_contacts(book: Book) -> None:
    emails = [c["email"] for c in book["contacts"]]
    assert len(emails) == len(set(emails))
    accounts = _accounts(book)
    for c in book["contacts"]:
        assert c["email"] == c["email"].lower()
        assert EMAIL_RE.match(c["email"]), c["email"]
        assert c["email"].endswith("@" + accounts[c["account_id"]]["domain"])
        assert c["role"] in {"champion", "decision_maker", "user", "billing", "other"}
        assert c["do_not_contact"] in {"true", "false"}
        assert c["first_name"] and c["last_name"] and c["title"]
    assert {c["account_id"] for c in book["contacts"]} == set(accounts)


def test_do_not_contact_is_respected(book: Book) -> None:
    dnc = {c["email"] for c in book["contacts"] if c["do_not_contact"] == "true"}
    assert not dnc & {t["contact_email"] for t in book["touches"]}


def test_accounts_fields(book: Book) -> None:
    names = [a["name"] for a in book["accounts"]]
    domains = [a["domain"] for a in book["accounts"]]
    assert len(set(names)) == len(names)
    assert len(set(domains)) == len(domains)
    ranges = {"enterprise": (5_000, 40_000, 100, 1_000), "mid-market": (1_000, 5_000, 20, 150),
              "smb": (50, 1_000, 2, 25)}
    for a in book["accounts"]:
        assert re.fullmatch(r"[a-z0-9-]+\.example", a["domain"]), a["domain"]
        assert a["tier"] in ranges
        mrr_lo, mrr_hi, seats_lo, seats_hi = ranges[a["tier"]]
        assert MONEY_RE.match(a["mrr"])
        assert mrr_lo <= float(a["mrr"]) <= mrr_hi
        assert seats_lo <= int(a["seats"]) <= seats_hi
        tags = a["tags"].split(";")
        assert tags[0] in {"emea", "amer", "apac"}
        assert set(tags[1:]) <= {"fintech", "health", "retail", "saas", "logistics", "education"}
        assert re.fullmatch(r"[a-z.]+@keepwell-demo\.example", a["owner_email"])
        start = _d(a["start_date"])
        assert AS_OF - timedelta(days=4 * 366) <= start <= AS_OF
        if a["churn_date"]:
            assert _d(a["churn_date"]) > start
            assert _d(a["churn_date"]) <= AS_OF
            assert a["churn_reason"] in CHURN_REASONS | {""}
            assert a["renewal_date"] == ""
        else:
            assert a["churn_reason"] == ""
            renewal = _d(a["renewal_date"])
            assert AS_OF < renewal <= AS_OF + timedelta(days=366)
            assert (renewal.month, renewal.day) == (start.month, start.day) or start.day == 29
    assert len({a["owner_email"] for a in book["accounts"]}) <= 6


def test_team(book: Book) -> None:
    accounts = _accounts(book)
    members: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in book["team"]:
        assert r["function"] in {"sales", "cs", "support", "marketing", "product", "exec"}
        assert SLACK_RE.match(r["member"]) or EMAIL_RE.match(r["member"]), r["member"]
        members[r["account_id"]].append((r["member"], r["function"]))
    for account_id, a in accounts.items():
        assert 2 <= len(members[account_id]) <= 4
        assert (a["owner_email"], "cs") in members[account_id]


def test_usage_only_while_a_customer(book: Book) -> None:
    accounts = _accounts(book)
    window_start = AS_OF - timedelta(days=DAYS - 1)
    seen: set[tuple[str, str]] = set()
    for kind in ("usage", "usage_users"):
        for r in book[kind]:
            a = accounts[r["account_id"]]
            d = _d(r["date"])
            assert window_start <= d <= AS_OF
            assert d >= _d(a["start_date"])
            if a["churn_date"]:
                assert d < _d(a["churn_date"])
            assert int(r["events"]) >= 0
    for r in book["usage"]:
        key = (r["account_id"], r["date"])
        assert key not in seen  # one row per account per day
        seen.add(key)
        assert 0 <= int(r["active_users"]) <= int(accounts[r["account_id"]]["seats"])


def test_user_level_usage_matches_account_level(book: Book) -> None:
    first_user_day = (AS_OF - timedelta(days=USER_DAYS - 1)).isoformat()
    per_day = Counter((r["account_id"], r["date"]) for r in book["usage_users"])
    events: Counter[tuple[str, str]] = Counter()
    for r in book["usage_users"]:
        events[(r["account_id"], r["date"])] += int(r["events"])
    assert min(d for _, d in per_day) >= first_user_day
    recent = {(r["account_id"], r["date"]): r for r in book["usage"] if r["date"] >= first_user_day}
    for key, r in recent.items():
        assert per_day[key] == int(r["active_users"]), key
        assert events[key] == int(r["events"]), key
    assert set(per_day) <= set(recent)
    # Stickiness: a stable pool of users, so distinct users over the period < sum of daily users.
    distinct: dict[str, set[str]] = defaultdict(set)
    for r in book["usage_users"]:
        distinct[r["account_id"]].add(r["user_id"])
    seats = {a["account_id"]: int(a["seats"]) for a in book["accounts"]}
    daily_sum = Counter(r["account_id"] for r in book["usage_users"])
    for account_id, users in distinct.items():
        assert len(users) <= seats[account_id]
    big = [a for a, n in daily_sum.items() if n > 3 * seats[a]]
    assert big
    for account_id in big:
        assert len(distinct[account_id]) < daily_sum[account_id]


def test_weekends_are_quieter(book: Book) -> None:
    weekday: list[int] = []
    weekend: list[int] = []
    for r in book["usage"]:
        (weekend if _d(r["date"]).weekday() >= 5 else weekday).append(int(r["active_users"]))
    assert sum(weekend) / len(weekend) < 0.4 * sum(weekday) / len(weekday)


def test_mrr_history_within_lifetime(book: Book) -> None:
    accounts = _accounts(book)
    history: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in book["mrr"]:
        assert re.fullmatch(r"\d{4}-\d{2}", r["month"])
        assert MONEY_RE.match(r["mrr"])
        history[r["account_id"]].append((r["month"], r["mrr"]))
    assert set(history) == set(accounts)
    for account_id, a in accounts.items():
        months = [m for m, _ in history[account_id]]
        assert months == sorted(set(months))
        assert months[0] >= a["start_date"][:7]
        if a["churn_date"]:
            last_day = _d(a["churn_date"]) - timedelta(days=1)
            assert months[-1] <= last_day.isoformat()[:7]
        else:
            assert months[-1] == AS_OF.isoformat()[:7]
            assert history[account_id][-1][1] == a["mrr"]
    # Expansion and contraction happen.
    changes: Counter[str] = Counter()
    for rows in history.values():
        for (_, before), (_, after) in pairwise(rows):
            if float(after) > float(before):
                changes["up"] += 1
            elif float(after) < float(before):
                changes["down"] += 1
    assert changes["up"] and changes["down"]


def test_activity_dates(book: Book) -> None:
    accounts = _accounts(book)
    window_start = AS_OF - timedelta(days=DAYS - 1)

    def in_life(account_id: str, d: date) -> bool:
        a = accounts[account_id]
        if not (window_start <= d <= AS_OF and d >= _d(a["start_date"])):
            return False
        return not a["churn_date"] or d < _d(a["churn_date"])

    for r in book["nps"]:
        assert in_life(r["account_id"], _d(r["date"]))
        assert 0 <= int(r["score"]) <= 10
        assert r["touchpoint"] in {"onboarding", "qbr", "support", "renewal", "other"}
    for r in book["touches"]:
        assert in_life(r["account_id"], _d(r["date"]))
        assert r["channel"] in {"email", "meeting", "call", "chat", "other"}
        assert r["team"] in {"sales", "cs", "support", "marketing", "product", "other"}
        assert r["sentiment"] in {"positive", "neutral", "negative"}
        assert r["kind"] in {"checkin", "qbr", "renewal", "onboarding", "other"}
        assert r["note"]
    for r in book["tickets"]:
        assert in_life(r["account_id"], _d(r["opened_at"]))
        if r["closed_at"]:
            assert _d(r["opened_at"]) <= _d(r["closed_at"]) <= AS_OF
        assert r["priority"] in {"urgent", "high", "normal", "low"}
        assert r["kind"] in {"bug", "question", "feature", "other"}
    for r in book["invoices"]:
        a = accounts[r["account_id"]]
        due = _d(r["due_date"])
        assert window_start <= due <= AS_OF + timedelta(days=30)
        assert due >= _d(a["start_date"])
        if a["churn_date"]:
            assert due < _d(a["churn_date"])
        assert MONEY_RE.match(r["amount"]) and float(r["amount"]) > 0
        if r["paid_date"]:
            assert _d(r["paid_date"]) <= AS_OF


# ------------------------------------------------------------------------------------------------
# The shape of the book
# ------------------------------------------------------------------------------------------------


def _usage_by_account(book: Book) -> dict[str, dict[date, int]]:
    out: dict[str, dict[date, int]] = defaultdict(dict)
    for r in book["usage"]:
        out[r["account_id"]][_d(r["date"])] = int(r["active_users"])
    return out


def _window_sum(series: dict[date, int], newest_age: int, oldest_age: int) -> int:
    return sum(v for d, v in series.items() if newest_age <= (AS_OF - d).days < oldest_age)


def test_book_shape(book: Book) -> None:
    accounts = book["accounts"]
    churned = [a for a in accounts if a["churn_date"]]
    assert churned and any(a["churn_reason"] for a in churned)
    assert any(_d(a["start_date"]) > AS_OF - timedelta(days=365) for a in accounts)

    usage = _usage_by_account(book)
    active = [a for a in accounts if not a["churn_date"]]
    forgotten = [
        a for a in active
        if _d(a["start_date"]) < AS_OF - timedelta(days=60)
        and not any(v > 0 and (AS_OF - d).days < 30 for d, v in usage[a["account_id"]].items())
    ]
    assert forgotten
    dropping = [
        a for a in active
        if _window_sum(usage[a["account_id"]], 0, 30) < 0.75 * _window_sum(usage[a["account_id"]], 30, 60)
    ]
    assert len(dropping) >= 2

    invoices = book["invoices"]
    assert any(i["paid_date"] and i["paid_date"] > i["due_date"] for i in invoices)  # late
    assert any(not i["paid_date"] and i["due_date"] < AS_OF.isoformat() for i in invoices)  # overdue
    assert any(not t["closed_at"] for t in book["tickets"])
    scores = [int(r["score"]) for r in book["nps"]]
    assert any(s <= 6 for s in scores) and any(s >= 9 for s in scores)
    assert {t["sentiment"] for t in book["touches"]} == {"positive", "neutral", "negative"}


def test_acme_is_the_interesting_first_account(book: Book) -> None:
    acme = book["accounts"][0]
    assert acme["name"] == "ACME Corp"
    assert acme["domain"] == "acme.example"
    assert acme["tier"] in {"enterprise", "mid-market"}
    assert not acme["churn_date"]
    assert 0 < (_d(acme["renewal_date"]) - AS_OF).days <= 65
    aid = acme["account_id"]

    series = _usage_by_account(book)[aid]
    last30, prev30 = _window_sum(series, 0, 30), _window_sum(series, 30, 60)
    assert 0.25 <= 1 - last30 / prev30 <= 0.6  # usage down ~40%

    nps = [r for r in book["nps"] if r["account_id"] == aid]
    assert any(int(r["score"]) <= 6 and (AS_OF - _d(r["date"])).days <= 30 for r in nps)
    tickets = [t for t in book["tickets"] if t["account_id"] == aid]
    assert any(not t["closed_at"] and t["priority"] == "urgent" and t["kind"] == "bug" for t in tickets)
    overdue = [
        i for i in book["invoices"]
        if i["account_id"] == aid and not i["paid_date"] and _d(i["due_date"]) < AS_OF
    ]
    assert len(overdue) == 1
    touches = [t for t in book["touches"] if t["account_id"] == aid]
    assert touches[-1]["sentiment"] == "negative"


def test_proportions_of_a_wider_book(wide: Book) -> None:
    accounts = wide["accounts"]
    n = len(accounts)
    churned = [a for a in accounts if a["churn_date"]]
    assert 0.08 <= len(churned) / n <= 0.14
    assert any(a["churn_reason"] == "" for a in churned)
    assert len({a["churn_reason"] for a in churned if a["churn_reason"]}) >= 5
    new = [a for a in accounts if _d(a["start_date"]) > AS_OF - timedelta(days=365)]
    assert 0.07 <= len(new) / n <= 0.14
    tiers = Counter(a["tier"] for a in accounts)
    assert 0.04 <= tiers["enterprise"] / n <= 0.16
    assert 0.2 <= tiers["mid-market"] / n <= 0.4
    assert 0.5 <= tiers["smb"] / n <= 0.7
    champions = {c["account_id"] for c in wide["contacts"] if c["role"] == "champion"}
    assert 0.04 <= 1 - len(champions) / n <= 0.18
    dnc = sum(c["do_not_contact"] == "true" for c in wide["contacts"]) / len(wide["contacts"])
    assert 0.01 <= dnc <= 0.06
    comments = [r["comment"] for r in wide["nps"]]
    assert any(c == "" for c in comments)
    assert any("," in c for c in comments)
    assert any(not c.isascii() for c in comments)


def test_a_larger_book_passes_the_real_importer(tmp_path: Path) -> None:
    """Every generated file obeys the import rules, repeated keys included (found at 1,000 accounts)."""
    from bot.db.engine import make_engine, migrate
    from bot.importer.run import import_csv

    files = generate_book(tmp_path / "book", accounts=1000, days=120, as_of=date(2026, 1, 31),
                          user_level_days=0)
    engine = make_engine(f"sqlite:///{tmp_path / 'book.db'}")
    migrate(engine)
    wanted = {"accounts", "contacts", "nps", "tickets", "touches", "team"}
    for kind, path in files:
        if kind in wanted:
            assert import_csv(engine, kind, path).rows > 0
