"""Retention, churn and cohorts (bot/core/retention.py) against CONTRACT §5, by hand and by property."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.model import Account
from bot.core.retention import (
    Cohort,
    add_months,
    cohorts,
    month_end,
    month_start,
    mrr_on,
    retention,
    revenue_months,
)

FROM, TO = date(2024, 3, 1), date(2024, 3, 31)  # the day before FROM is 2024-02-29
OLD = date(2023, 1, 1)

CONTRACT_KEYS = {
    "customers_start", "new_customers", "churned_customers", "customers_end", "retention_rate_pct",
    "churn_rate_pct", "mrr_start", "expansion_mrr", "contraction_mrr", "churned_mrr", "grr_pct", "nrr_pct",
    "churn_reasons",
}


def acct(pk: int, start: date, churn: date | None = None, mrr: str | None = "100", reason: str | None = None,
         ) -> Account:
    return Account(pk=pk, account_id=f"a{pk}", name=f"Account {pk}", start_date=start, churn_date=churn,
                   mrr=None if mrr is None else Decimal(mrr), churn_reason=reason)


def counts(r) -> tuple[int, int, int, int, int]:  # type: ignore[no-untyped-def]
    return r.customers_start, r.new_customers, r.churned_customers, r.customers_end, r.churned_from_start


# --------------------------------------------------------------------------------------------------
# customers: one account at a time, then a book

@pytest.mark.parametrize(
    ("start", "churn", "expected"),
    [
        # (customers_start, new, churned, customers_end, churned of those at the start)
        (OLD, None, (1, 0, 0, 1, 0)),  # a customer all along
        (OLD, FROM, (1, 0, 1, 0, 1)),  # churn_date == from: a customer the day before, churned in the window
        (OLD, date(2024, 3, 15), (1, 0, 1, 0, 1)),
        (OLD, TO, (1, 0, 1, 0, 1)),  # churns on the last day: no longer a customer on `to`
        (OLD, date(2024, 4, 1), (1, 0, 0, 1, 0)),  # churns the day after the window
        (OLD, date(2024, 2, 29), (0, 0, 0, 0, 0)),  # churned the day before the window
        (date(2024, 2, 29), None, (1, 0, 0, 1, 0)),  # started the day before: already a customer
        (FROM, None, (0, 1, 0, 1, 0)),  # starts on the window's first day: new
        (TO, None, (0, 1, 0, 1, 0)),  # starts on the last day: new and a customer at the end
        (date(2024, 3, 10), date(2024, 3, 20), (0, 1, 1, 0, 0)),  # starts and churns inside the window
        (FROM, TO, (0, 1, 1, 0, 0)),
        (date(2024, 4, 1), None, (0, 0, 0, 0, 0)),  # starts after the window
        (date(2024, 3, 20), date(2024, 5, 1), (0, 1, 0, 1, 0)),
    ],
)
def test_customers_of_one_account(start, churn, expected):
    r = retention([acct(1, start, churn)], FROM, TO)
    assert counts(r) == expected
    assert r.customers_end == r.customers_start + r.new_customers - r.churned_customers


BOOK = [
    acct(1, OLD, mrr="1000"),  # A: stays
    acct(2, OLD, FROM, mrr="300", reason="price"),  # B: churns on the first day
    acct(3, OLD, TO, mrr="200", reason="Price "),  # C: churns on the last day (reason stripped, not folded)
    acct(4, OLD, date(2024, 4, 1), mrr="50"),  # D: churns after the window
    acct(5, FROM, mrr="70"),  # E: new on the first day
    acct(6, date(2024, 3, 10), date(2024, 3, 20), mrr="40", reason="price"),  # F: in and out
    acct(7, TO, mrr="10"),  # G: new on the last day
    acct(8, date(2024, 4, 1), mrr="999"),  # H: not yet
    acct(9, OLD, date(2024, 2, 29), mrr="999", reason="moved"),  # I: gone before the window
    acct(10, date(2024, 2, 29), mrr=None),  # J: a customer at the start, no MRR known
]


def test_hand_worked_book():
    r = retention(BOOK, FROM, TO)
    assert counts(r) == (5, 3, 3, 5, 2)  # start A B C D J; new E F G; churned B C F; end A D E G J
    assert r.retention_rate_pct == 100.0
    assert r.churn_rate_pct == 40.0
    assert r.mrr_start == Decimal("1550")  # A + B + C + D + J(0)
    assert (r.expansion_mrr, r.contraction_mrr, r.churned_mrr) == (0, 0, Decimal("500"))
    assert r.grr_pct == r.nrr_pct == round(1050 / 1550 * 100, 2)
    assert r.churn_reasons == (("price", 2), ("Price", 1))


def test_hand_worked_book_to_dict():
    d = retention(BOOK, FROM, TO).to_dict()
    assert d == {
        "from": "2024-03-01", "to": "2024-03-31",
        "customers_start": 5, "new_customers": 3, "churned_customers": 3, "customers_end": 5,
        "retention_rate_pct": 100.0, "churn_rate_pct": 40.0,
        "mrr_start": 1550.0, "expansion_mrr": 0.0, "contraction_mrr": 0.0, "churned_mrr": 500.0,
        "grr_pct": 67.74, "nrr_pct": 67.74,
        "churn_reasons": [{"reason": "price", "count": 2}, {"reason": "Price", "count": 1}],
    }


@pytest.mark.parametrize(
    ("window", "expected", "retention_pct", "churn_pct"),
    [
        ((date(2024, 1, 1), date(2024, 12, 31)), (1, 2, 1, 2, 0), 200.0, 0.0),
        ((date(2024, 3, 15), date(2024, 3, 15)), (2, 1, 0, 3, 0), 150.0, 0.0),  # a one-day window
        ((date(2024, 3, 20), date(2024, 3, 25)), (3, 0, 1, 2, 1), 66.67, 33.33),
        ((date(2023, 1, 1), date(2023, 12, 31)), (0, 1, 0, 1, 0), None, None),  # nobody at the start
    ],
)
def test_windows(window, expected, retention_pct, churn_pct):
    book = [acct(1, date(2023, 6, 1)), acct(2, date(2024, 3, 15), date(2024, 3, 21)),
            acct(3, date(2024, 3, 1))]
    r = retention(book, *window)
    assert counts(r) == expected
    assert (r.retention_rate_pct, r.churn_rate_pct) == (retention_pct, churn_pct)


def test_window_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        retention([], TO, FROM)


def test_empty_book_has_null_rates():
    d = retention([], FROM, TO).to_dict()
    assert d["customers_start"] == d["customers_end"] == 0
    assert d["retention_rate_pct"] is d["churn_rate_pct"] is d["grr_pct"] is d["nrr_pct"] is None
    assert d["churn_reasons"] == []


# --------------------------------------------------------------------------------------------------
# revenue

JAN, FEB, MAR, APR = (date(2024, m, 1) for m in (1, 2, 3, 4))


@pytest.mark.parametrize(
    ("mrr", "history", "day", "expected"),
    [
        ("100", None, date(2024, 2, 29), "100"),  # no history: accounts.mrr
        (None, None, date(2024, 2, 29), "0"),  # nothing known: 0
        ("100", {FEB: Decimal("80")}, date(2024, 2, 29), "80"),  # the month of the day
        ("100", {JAN: Decimal("80")}, date(2024, 2, 29), "80"),  # else the latest month before it
        ("100", {JAN: Decimal("80"), MAR: Decimal("90")}, date(2024, 2, 29), "80"),
        ("100", {MAR: Decimal("90")}, date(2024, 2, 29), "90"),  # before the history: its first month
        ("100", {MAR: Decimal("90")}, date(2024, 3, 1), "90"),
        ("100", {}, date(2024, 3, 1), "100"),
    ],
)
def test_mrr_on(mrr, history, day, expected):
    assert mrr_on(acct(1, OLD, mrr=mrr), day, history) == Decimal(expected)


@pytest.mark.parametrize(
    ("history", "churn", "mrr_start", "expansion", "contraction", "churned", "grr", "nrr"),
    [
        ({}, None, "500", "0", "0", "0", 100.0, 100.0),  # no history: accounts.mrr at both ends
        ({JAN: "100", MAR: "150"}, None, "100", "50", "0", "0", 100.0, 150.0),  # expansion
        ({FEB: "200", MAR: "120"}, None, "200", "0", "80", "0", 60.0, 60.0),  # contraction
        ({FEB: "200", MAR: "0"}, None, "200", "0", "200", "0", 0.0, 0.0),  # down to 0 without churning
        ({FEB: "200", APR: "900"}, None, "200", "0", "0", "0", 100.0, 100.0),  # April is after the window
        # churned: lost at its MRR on the day before the window, whatever history says later
        ({FEB: "200", MAR: "300"}, date(2024, 3, 20), "200", "0", "0", "200", 0.0, 0.0),
        ({MAR: "800"}, None, "800", "0", "0", "0", 100.0, 100.0),  # history begins in the window
    ],
)
def test_revenue_of_one_account(history, churn, mrr_start, expansion, contraction, churned, grr, nrr):
    a = acct(1, OLD, churn, mrr="500")
    r = retention([a], FROM, TO, {1: {m: Decimal(v) for m, v in history.items()}})
    assert (r.mrr_start, r.expansion_mrr, r.contraction_mrr, r.churned_mrr) == tuple(
        Decimal(x) for x in (mrr_start, expansion, contraction, churned)
    )
    assert (r.grr_pct, r.nrr_pct) == (grr, nrr)


def test_grr_and_nrr_by_hand():
    book = [
        acct(1, OLD, mrr="400"),  # grows to 500 (+100)
        acct(2, OLD, mrr="400"),  # shrinks to 350 (−50)
        acct(3, OLD, date(2024, 3, 5), mrr="200"),  # churns (−200)
        acct(4, date(2024, 3, 5), mrr="10000"),  # new business: not in any of the revenue lines
        acct(5, OLD, mrr=None),  # no MRR known, no history: counts as 0
    ]
    history = {1: {JAN: Decimal("400"), MAR: Decimal("500")}, 2: {FEB: Decimal("400"), MAR: Decimal("350")},
               4: {MAR: Decimal("10000")}}
    r = retention(book, FROM, TO, history)
    assert (r.mrr_start, r.expansion_mrr, r.contraction_mrr, r.churned_mrr) == (1000, 100, 50, 200)
    assert r.grr_pct == 75.0  # (1000 − 50 − 200) / 1000
    assert r.nrr_pct == 85.0  # (1000 + 100 − 50 − 200) / 1000
    assert r.customers_start == 4 and r.churn_rate_pct == 25.0


def test_zero_mrr_at_start_gives_null_revenue_rates_but_customer_rates():
    r = retention([acct(1, OLD, mrr=None), acct(2, OLD, mrr="0")], FROM, TO)
    assert r.mrr_start == 0
    assert (r.grr_pct, r.nrr_pct) == (None, None)
    assert (r.retention_rate_pct, r.churn_rate_pct) == (100.0, 0.0)


def test_money_in_to_dict_is_a_number():
    d = retention([acct(1, OLD, mrr="1234.56")], FROM, TO).to_dict()
    assert d["mrr_start"] == 1234.56 and isinstance(d["mrr_start"], float)


# --------------------------------------------------------------------------------------------------
# churn reasons

@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ([], ()),
        (["price"], (("price", 1),)),
        ([None, None, "price"], (("no reason given", 2), ("price", 1))),
        (["b", "a", "b", "c", "a", "b"], (("b", 3), ("a", 2), ("c", 1))),
        (["z", "y"], (("y", 1), ("z", 1))),  # ties: alphabetical
        ([" price ", "price"], (("price", 2),)),  # surrounding spaces do not split a reason
    ],
)
def test_churn_reasons(reasons, expected):
    book = [acct(i, OLD, date(2024, 3, 10), reason=r) for i, r in enumerate(reasons)]
    r = retention(book, FROM, TO)
    assert r.churn_reasons == expected
    assert sum(n for _, n in r.churn_reasons) == r.churned_customers


def test_churn_reasons_count_every_churn_in_the_window():
    book = [acct(1, OLD, date(2024, 3, 10), reason="price"),
            acct(2, date(2024, 3, 2), date(2024, 3, 9), reason="fit"),  # never a customer at the start
            acct(3, OLD, date(2024, 4, 10), reason="later")]  # after the window
    assert retention(book, FROM, TO).churn_reasons == (("fit", 1), ("price", 1))


def test_blank_churn_reason_is_no_reason_given():
    r = retention([acct(1, OLD, date(2024, 3, 10), reason="   ")], FROM, TO)
    assert r.churn_reasons == (("no reason given", 1),)


# --------------------------------------------------------------------------------------------------
# properties over random books and windows

BASE = date(2023, 1, 1)
REASONS = [None, "price", "fit", "support", "moved", "price"]


@st.composite
def accounts_st(draw: st.DrawFn, pk: int) -> Account:
    start = BASE + timedelta(days=draw(st.integers(0, 700)))
    churn = draw(st.none() | st.integers(1, 400).map(lambda n: start + timedelta(days=n)))
    mrr = draw(st.none() | st.decimals(min_value=0, max_value=5000, places=2))
    reason = draw(st.sampled_from(REASONS)) if churn else None
    return Account(pk=pk, account_id=f"a{pk}", name=f"A{pk}", start_date=start, churn_date=churn, mrr=mrr,
                   churn_reason=reason)


@st.composite
def books_st(draw: st.DrawFn) -> tuple[list[Account], dict[int, dict[date, Decimal]], date, date]:
    n = draw(st.integers(0, 25))
    accounts = [draw(accounts_st(pk)) for pk in range(n)]
    history: dict[int, dict[date, Decimal]] = {}
    for a in accounts:
        months = draw(st.lists(st.integers(0, 30), max_size=5, unique=True))
        if months:
            history[a.pk] = {
                add_months(BASE, m): draw(st.decimals(min_value=0, max_value=5000, places=2)) for m in months
            }
    start = BASE + timedelta(days=draw(st.integers(0, 800)))
    end = start + timedelta(days=draw(st.integers(0, 400)))
    return accounts, history, start, end


def is_customer(a: Account, day: date) -> bool:
    return a.start_date <= day and (a.churn_date is None or day < a.churn_date)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books_st())
def test_retention_properties(book):
    accounts, history, start, end = book
    r = retention(accounts, start, end, history)
    d = r.to_dict()
    before = start - timedelta(days=1)

    # the contract's definitions, restated independently
    at_start = [a for a in accounts if is_customer(a, before)]
    assert r.customers_start == len(at_start)
    assert r.new_customers == sum(start <= a.start_date <= end for a in accounts)
    assert r.churned_customers == sum(
        a.churn_date is not None and start <= a.churn_date <= end for a in accounts
    )
    assert r.customers_end == sum(is_customer(a, end) for a in accounts)

    # the identity
    assert r.customers_end == r.customers_start + r.new_customers - r.churned_customers

    # the rates
    if r.customers_start == 0:
        assert d["retention_rate_pct"] is None and d["churn_rate_pct"] is None
    else:
        assert d["retention_rate_pct"] == pytest.approx(r.customers_end / r.customers_start * 100, abs=0.005)
        lost = sum(not is_customer(a, end) for a in at_start)
        assert d["churn_rate_pct"] == pytest.approx(lost / r.customers_start * 100, abs=0.005)
        assert 0 <= d["churn_rate_pct"] <= 100
    if r.mrr_start == 0:
        assert d["grr_pct"] is None and d["nrr_pct"] is None
    else:
        assert 0 <= d["grr_pct"] <= 100
        assert d["grr_pct"] <= d["nrr_pct"]
        kept = r.mrr_start + r.expansion_mrr - r.contraction_mrr - r.churned_mrr
        assert d["nrr_pct"] == pytest.approx(float(kept / r.mrr_start * 100), abs=0.005)
    assert min(r.expansion_mrr, r.contraction_mrr, r.churned_mrr) >= 0
    assert r.churned_mrr + r.contraction_mrr <= r.mrr_start
    assert r.mrr_start == sum((mrr_on(a, before, history.get(a.pk)) for a in at_start), Decimal(0))

    # churn reasons
    reasons = d["churn_reasons"]
    assert sum(x["count"] for x in reasons) == r.churned_customers
    assert [x["count"] for x in reasons] == sorted((x["count"] for x in reasons), reverse=True)
    assert len({x["reason"] for x in reasons}) == len(reasons)
    churned = [a for a in accounts if a.churn_date is not None and start <= a.churn_date <= end]
    assert Counter({x["reason"]: x["count"] for x in reasons}) == Counter(
        a.churn_reason or "no reason given" for a in churned
    )

    # the shape
    assert set(d) == CONTRACT_KEYS | {"from", "to"}
    assert (d["from"], d["to"]) == (start.isoformat(), end.isoformat())


@settings(max_examples=50, deadline=None)
@given(books_st(), st.integers(1, 200))
def test_consecutive_windows_chain(book, split):
    """The end of one window is the start of the next, and new/churned add up across them."""
    accounts, _, start, _ = book
    middle = start + timedelta(days=split)
    last = middle + timedelta(days=split)
    first, second = retention(accounts, start, middle - timedelta(days=1)), retention(accounts, middle, last)
    whole = retention(accounts, start, last)
    assert first.customers_end == second.customers_start
    assert whole.new_customers == first.new_customers + second.new_customers
    assert whole.churned_customers == first.churned_customers + second.churned_customers
    assert whole.customers_end == second.customers_end


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books_st())
def test_the_history_sampled_on_the_revenue_months_gives_the_same_retention(book):
    """What `Book.mrr_on_months` hands over (each account's revenue on the months retention reads, keyed
    by those months) gives exactly the retention of the whole history."""
    accounts, history, start, end = book
    months = revenue_months(start, end)
    by_pk = {a.pk: a for a in accounts}
    sampled = {pk: {m: mrr_on(by_pk[pk], m, h) for m in months} for pk, h in history.items() if h}
    assert retention(accounts, start, end, sampled) == retention(accounts, start, end, history)


# --------------------------------------------------------------------------------------------------
# cohorts

COHORT_BOOK = [
    acct(1, date(2024, 1, 5)),  # stays
    acct(2, date(2024, 1, 20), date(2024, 2, 10)),  # leaves in February
    acct(3, date(2024, 1, 31), date(2024, 3, 31)),  # leaves on a month-end: gone at that checkpoint
    acct(4, date(2024, 2, 15)),
    acct(5, date(2023, 12, 31)),  # before the first cohort
    acct(6, date(2024, 4, 1)),  # after the last
]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (
            date(2024, 1, 1), date(2024, 3, 31),
            [(date(2024, 1, 1), 3, (100.0, 66.67, 33.33)), (date(2024, 2, 1), 1, (100.0, 100.0)),
             (date(2024, 3, 1), 0, (None,))],
        ),
        (  # a month-end after `end` is not reported; a window from mid-January still holds January
            date(2024, 1, 15), date(2024, 3, 15),
            [(date(2024, 1, 1), 3, (100.0, 66.67)), (date(2024, 2, 1), 1, (100.0,)),
             (date(2024, 3, 1), 0, ())],
        ),
        (date(2024, 2, 1), date(2024, 2, 29), [(date(2024, 2, 1), 1, (100.0,))]),
    ],
)
def test_cohorts(start, end, expected):
    assert cohorts(COHORT_BOOK, start, end) == [Cohort(m, n, cells) for m, n, cells in expected]


@pytest.mark.parametrize(
    ("day", "months", "start", "end"),
    [
        (date(2024, 1, 31), 1, date(2024, 1, 1), date(2024, 1, 31)),
        (date(2024, 2, 29), 1, date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 12, 15), 1, date(2024, 12, 1), date(2024, 12, 31)),
        (date(2024, 12, 15), 13, date(2024, 12, 1), date(2024, 12, 31)),
    ],
)
def test_month_helpers(day, months, start, end):
    assert month_start(day) == start
    assert month_end(day) == end
    assert add_months(day, months) == date(day.year + (day.month - 1 + months) // 12,
                                           (day.month - 1 + months) % 12 + 1, 1)
    assert add_months(day, -12) == date(day.year - 1, day.month, 1)


def test_cohorts_refuse_a_window_that_ends_before_it_starts():
    with pytest.raises(ValueError, match="before it starts"):
        cohorts([], date(2024, 3, 10), date(2024, 2, 1))
