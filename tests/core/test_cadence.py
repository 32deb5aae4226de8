"""Which reviews, renewals, alerts and surveys are due: the rules as tables of cases."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from bot.core.cadence import (
    AlertRules,
    Answer,
    Overdue,
    alert_conditions,
    next_review,
    onboarding_events,
    renewal_events,
    renewal_offset,
    renewals_due,
    reviews_due,
)
from bot.core.model import Account, HealthScore

DAY = date(2026, 6, 30)


def account(pk: int = 1, *, tier: str | None = "enterprise", start: date = date(2025, 1, 1),
            renewal: date | None = None, churn: date | None = None, mrr: int = 100) -> Account:
    return Account(pk, f"A-{pk}", f"Account {pk}", start, tier=tier, renewal_date=renewal, churn_date=churn,
                   mrr=Decimal(mrr))


def health(score: int = 80, *, danger: bool = False, forgotten: bool = False) -> HealthScore:
    band = "healthy" if score >= 70 else "watch" if score >= 40 else "at_risk"
    return HealthScore("A", "A", score, band, danger, forgotten, None, None, ())


@pytest.mark.parametrize(
    ("last", "cadence", "expected"),
    [
        (date(2026, 4, 1), 90, date(2026, 6, 30)),
        (None, 90, date(2025, 4, 1)),  # never reviewed: a cadence after the start
        (date(2026, 4, 1), None, None),  # a tier without a cadence has no reviews
    ],
)
def test_next_review(last, cadence, expected):
    assert next_review(account(), last, cadence) == expected


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [(120, None), (90, 90), (85, 90), (60, 60), (59, 60), (31, 60), (30, 30), (8, 30), (7, 7), (0, 7),
     (-1, None)],
)
def test_renewal_offset_is_the_nearest_one_reached(days_left, expected):
    assert renewal_offset(days_left, [90, 60, 30, 7]) == expected


def test_reviews_due_within_the_reminder_window_by_tier_and_only_for_customers():
    cadence = {"enterprise": 90, "mid-market": 180}.get
    accounts = [account(1), account(2, tier="mid-market"), account(3, tier="smb"),
                account(4, churn=date(2026, 5, 1))]
    last = {1: date(2026, 4, 10), 2: date(2026, 4, 10), 4: date(2026, 4, 1)}
    due = reviews_due(accounts, last, DAY, cadence, 14)
    assert [(d.account.pk, d.due, d.days_left) for d in due] == [(1, date(2026, 7, 9), 9)]


def test_reviews_due_soonest_then_most_mrr_then_in_book_order_and_a_limit_keeps_that_order():
    cadence = {"enterprise": 90}.get
    # never reviewed: due 90 days after the start; pks 3 and 5 fall due together with equal MRR
    starts = {1: date(2026, 3, 1), 2: date(2026, 2, 1), 3: date(2026, 3, 1), 4: date(2026, 3, 20),
              5: date(2026, 3, 1), 6: date(2026, 3, 1)}
    mrr = {1: 100, 2: 50, 3: 300, 4: 900, 5: 300, 6: 0}
    accounts = [account(pk, start=starts[pk], mrr=mrr[pk]) for pk in (5, 1, 6, 3, 4, 2)]
    due = reviews_due(accounts, {}, DAY, cadence, 14)
    assert [d.account.pk for d in due] == [2, 5, 3, 1, 6, 4]
    assert [d.due for d in due[:2]] == [date(2026, 5, 2), date(2026, 5, 30)]
    for limit in range(len(due) + 2):
        assert reviews_due(accounts, {}, DAY, cadence, 14, limit=limit) == due[:limit]


def test_renewals_due_at_their_offset():
    accounts = [account(1, renewal=DAY + timedelta(days=85)), account(2, renewal=DAY + timedelta(days=200)),
                account(3, renewal=DAY + timedelta(days=5)), account(4, renewal=DAY - timedelta(days=1))]
    due = renewals_due(accounts, DAY, [90, 60, 30, 7])
    assert [(d.account.pk, d.rule) for d in due] == [(3, "7d"), (1, "90d")]


def test_alert_conditions_each_rule():
    a, b, c, gone = account(1), account(2), account(3), account(4, churn=DAY)
    rows = [(a, health(30, danger=True, forgotten=True)), (b, health(60)), (c, health(90)),
            (gone, health(10, danger=True))]
    found = alert_conditions(
        rows, DAY, AlertRules(),
        earlier={2: 80, 3: 95},  # b dropped 20, c only 5
        overdue={1: Overdue("INV-1", Decimal("120.00"), 45), 3: Overdue("INV-3", Decimal(5), 10)},
        answers={2: [Answer("x@b.com", DAY, 3, "too slow"), Answer("y@b.com", DAY, 9, None)]},
    )
    got = {(f.rule, f.account.pk, f.subject) for f in found}
    assert got == {("danger_zone", 1, ""), ("forgotten_zone", 1, ""), ("invoice_overdue", 1, ""),
                   ("health_drop", 2, ""), ("nps_detractor", 2, f"x@b.com:{DAY}")}
    drop = next(f for f in found if f.rule == "health_drop")
    assert drop.detail == "health 80 → 60 in 7 days"


def test_alert_rules_can_be_turned_off():
    rows = [(account(1), health(30, danger=True, forgotten=True))]
    off = AlertRules(danger_zone=False, forgotten_zone=False, health_drop_points=0, invoice_overdue_days=0,
                     nps_detractor_max=-1)
    assert alert_conditions(rows, DAY, off, earlier={1: 90}, overdue={1: Overdue("I", Decimal(1), 99)},
                            answers={1: [Answer("", DAY, 0, None)]}) == []


def test_survey_events_after_onboarding_and_renewal():
    since = DAY - timedelta(days=7)
    fresh = account(1, start=DAY - timedelta(days=45))
    old = account(2, start=DAY - timedelta(days=400), renewal=DAY - timedelta(days=2))
    churned = account(3, start=DAY - timedelta(days=45), churn=DAY - timedelta(days=1))
    assert [(e.trigger, e.account.pk) for e in onboarding_events([fresh, old, churned], since, DAY, 45)] == [
        ("onboarding", 1)]
    assert [(e.trigger, e.account.pk) for e in renewal_events([fresh, old], since, DAY)] == [("renewal", 2)]
