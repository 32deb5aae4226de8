"""The store gathers exactly the evidence the scorecard needs, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest

from bot.config import HealthConfig
from bot.core.model import NpsResponse, OpenTicket, OverdueInvoice
from bot.errors import BadInput

AS_OF = date(2026, 6, 30)


def day(n: int) -> str:
    """n days before AS_OF."""
    return (AS_OF - timedelta(days=n)).isoformat()


@pytest.fixture
def book(service, csv_file):
    files = [
        ("accounts", "account_id,name,start_date,domain,seats,mrr,renewal_date,churn_date,churn_reason\n"
                     "A1,ACME Corp,2024-01-01,acme.example,10,1000,2026-08-01,,\n"
                     "A2,Globex,2024-01-01,globex.example,5,500,,,\n"
                     f"A3,Initech,2024-01-01,initech.example,5,200,,{day(100)},price\n"
                     "A4,Acme Rockets,2025-01-01,rockets.example,,,,,\n"),
        ("contacts", "email,role\ndana@acme.example,champion\nbob@globex.example,user\n"),
        ("usage", "account_id,date,active_users\n"
                  + "".join(f"A1,{day(n)},{4 if n < 30 else 8}\n" for n in range(60))
                  + f"A2,{day(45)},3\n"),
        ("usage", "account_id,date,user_id\n"
                  + "".join(f"A1,{day(n)},u{n % 5}\n" for n in range(3))),
        ("nps", f"date,score,account_id\n{day(400)},10,A1\n{day(10)},3,A1\n{day(5)},9,A2\n"),
        ("tickets", "ticket_id,account_id,opened_at,closed_at,priority,kind\n"
                    f"T1,A1,{day(3)}T10:00:00Z,,urgent,bug\n"
                    f"T2,A1,{day(20)},{day(10)},high,bug\n"
                    f"T3,A1,{day(2)},{(AS_OF + timedelta(days=2)).isoformat()},low,question\n"),
        ("invoices", "invoice_id,account_id,amount,due_date,paid_date\n"
                     f"I1,A1,1000,{day(14)},\nI2,A1,1000,{day(44)},{day(40)}\n"
                     f"I3,A2,500,{day(5)},{(AS_OF + timedelta(days=1)).isoformat()}\n"),
        ("touches", f"account_id,date,team,note\nA1,{day(4)},cs,call went well\nA1,{day(30)},sales,\n"),
    ]
    for i, (kind, text) in enumerate(files):
        service.import_file(kind, csv_file(f"{i}-{kind}.csv", text))
    return service


def by_id(service, cfg=None):
    inputs = service.book.health_inputs(AS_OF, cfg or HealthConfig())
    return {i.account.account_id: i for i in inputs}


def test_usage_window_is_aggregated_in_the_database(book):
    a1 = by_id(book)["A1"]
    assert a1.usage is not None
    # the last 3 days were rolled up from user-level rows (1 distinct user a day)
    assert a1.usage.user_days == 27 * 4 + 3
    assert a1.usage.prev_user_days == 30 * 8
    assert a1.usage.active_days == 30
    assert a1.usage.peak_dau == 4
    assert a1.usage.mau == 3
    assert a1.usage.last_active == AS_OF


def test_an_account_without_recent_use_has_an_empty_window(book):
    inputs = by_id(book)
    assert inputs["A2"].usage is not None and inputs["A2"].usage.user_days == 0
    assert inputs["A2"].usage.last_active == AS_OF - timedelta(days=45)
    assert inputs["A4"].usage is not None and inputs["A4"].usage.last_active is None


def test_evidence_as_of_the_day(book):
    a1 = by_id(book)["A1"]
    assert a1.nps == (NpsResponse(AS_OF - timedelta(days=10), 3),)  # the 400-day-old answer is out
    assert set(a1.open_tickets or ()) == {OpenTicket("urgent", "bug"), OpenTicket("low", "question")}
    assert a1.overdue_invoices == (OverdueInvoice(Decimal("1000.00"), AS_OF - timedelta(days=14)),)
    assert a1.last_touch == AS_OF - timedelta(days=4)
    assert a1.has_champion is True
    a2 = by_id(book)["A2"]
    assert a2.overdue_invoices == (OverdueInvoice(Decimal("500.00"), AS_OF - timedelta(days=5)),)
    assert a2.has_champion is False and a2.last_touch is None and a2.open_tickets == ()


def test_one_account_and_the_whole_book_agree(book):
    cfg = HealthConfig()
    everyone = by_id(book, cfg)
    for account in book.book.accounts():
        [one] = book.book.health_inputs(AS_OF, cfg, [account.pk])
        assert one == everyone[account.account_id]


def test_kinds_never_imported_are_unknown_not_zero(service, csv_file):
    service.import_file("accounts", csv_file("a.csv", "account_id,name,start_date\nA1,One,2025-01-01"))
    [only] = service.book.health_inputs(AS_OF, HealthConfig())
    assert only.usage is None and only.open_tickets is None and only.overdue_invoices is None
    assert only.has_champion is None and not only.touches_known


def test_snapshots_round_trip_and_previous_scores(book):
    book.score(AS_OF - timedelta(days=1))
    yesterday = book.book.snapshots(AS_OF - timedelta(days=1))
    summary = book.score(AS_OF)
    assert summary.accounts == 3  # A3 churned before AS_OF
    stored = book.book.snapshots(AS_OF)
    assert stored is not None and len(stored) == 4
    card = book.health("A1", AS_OF)
    assert yesterday is not None
    assert card.item.health.previous_score == yesterday[card.item.account.pk].score
    kept = stored[card.item.account.pk]
    assert [d.factor for d in card.item.health.drivers] == [d.factor for d in kept.drivers]
    again = book.score(AS_OF)  # re-scoring replaces, never duplicates
    assert again.accounts == 3 and len(book.book.snapshots(AS_OF) or {}) == 4


@pytest.mark.parametrize(
    ("query", "expected"),
    [("A1", "ACME Corp"), ("acme corp", "ACME Corp"), ("glob", "Globex"), ("Initech Inc", "Initech"),
     ("rockets", "Acme Rockets")],
)
def test_resolve_finds_accounts(book, query, expected):
    assert book.book.resolve(query).name == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [("acme", "'acme' matches several accounts; did you mean 'ACME Corp' or 'Acme Rockets'?"),
     ("Initek", "no account 'Initek'; did you mean 'Initech'?"),
     ("zzzz", "nothing close"), ("   ", "give an account id or name")],
)
def test_resolve_explains_misses(book, query, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        book.book.resolve(query)


def test_risk_and_accounts_use_stored_or_live_scores_alike(book):
    live = {s.account.account_id: s.health.score for s in book.accounts(AS_OF)}
    book.score(AS_OF)
    stored = {s.account.account_id: s.health.score for s in book.accounts(AS_OF)}
    assert live == stored
    assert "A3" not in stored  # churned: not a customer on AS_OF
