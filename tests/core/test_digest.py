"""The portfolio digest as values (bot/core/digest.py)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from bot.config import HealthConfig
from bot.core.digest import build_digest, is_at_risk, reasons
from bot.core.health import Peers, score_account
from bot.core.model import Account, Driver, HealthInputs, HealthScore, UsageWindow
from bot.core.retention import retention

D = date(2024, 6, 30)


def acct(pk: int, mrr: str | None = "100", **kw: object) -> Account:
    base: dict[str, object] = {"pk": pk, "account_id": f"a{pk}", "name": f"A{pk}",
                               "start_date": date(2023, 1, 1), "mrr": None if mrr is None else Decimal(mrr)}
    base.update(kw)
    return Account(**base)  # type: ignore[arg-type]


def hs(score: int = 50, band: str = "watch", danger: bool = False, forgotten: bool = False,
       drivers: tuple[Driver, ...] = ()) -> HealthScore:
    return HealthScore(account_id="x", name="X", score=score, band=band, danger_zone=danger,
                       forgotten_zone=forgotten, stickiness=None, engagement=None, drivers=drivers)


@pytest.mark.parametrize(
    ("band", "danger", "forgotten", "expected"),
    [
        ("at_risk", False, False, True),
        ("watch", False, False, False),
        ("watch", True, False, True),
        ("watch", False, True, True),
        ("healthy", True, False, False),  # flagged on its card, not listed as at risk
        ("healthy", False, False, False),
    ],
)
def test_is_at_risk(band, danger, forgotten, expected):
    assert is_at_risk(hs(band=band, danger=danger, forgotten=forgotten)) is expected


@pytest.mark.parametrize(
    ("drivers", "limit", "expected"),
    [
        ((), 2, ""),
        ((Driver("champion", True, 5.0, "a champion contact is on record"),), 2, ""),  # only what pulls down
        (
            (Driver("usage_trend", -42.0, -12.0, "usage down 42% against the previous 30 days"),
             Driver("invoices", 45, -8.0,
                    "1 overdue invoice totalling 1,200.00; the oldest 45 days past due"),
             Driver("seat_utilisation", 0.3, -3.0, "3 peak daily users on 10 seats (30% utilisation)")),
            2,
            "usage down 42% against the previous 30 days; 1 overdue invoice totalling 1,200.00",
        ),
        (
            (Driver("champion", True, 9.0, "a champion contact is on record"),
             Driver("seat_utilisation", 0.3, -3.0, "3 peak daily users on 10 seats (30% utilisation)")),
            1,
            "3 peak daily users on 10 seats",
        ),
    ],
)
def test_reasons_are_the_shortest_form_of_the_negative_drivers(drivers, limit, expected):
    assert reasons(hs(drivers=drivers), limit) == expected


def test_reasons_name_the_forgotten_zone_even_below_the_cap():
    inputs = HealthInputs(acct(1, seats=10), UsageWindow(), has_champion=False)
    h = score_account(inputs, HealthConfig(), D, Peers.of([], 0.25))
    assert h.forgotten_zone and h.drivers[-1].factor == "forgotten_zone"  # its cap took no points
    assert reasons(h).startswith("no product use in the last 30 days; ")


def test_build_digest():
    rows = [
        (acct(1, "500"), hs(80, "healthy", danger=True)),
        (acct(2, "900"), hs(30, "at_risk")),
        (acct(3, "900"), hs(20, "at_risk", forgotten=True, danger=True)),
        (acct(4, "50", renewal_date=D + timedelta(days=10)), hs(55, "watch", danger=True)),
        (acct(5, None, renewal_date=D + timedelta(days=90)), hs(60, "watch")),
        (acct(6, "70", renewal_date=D + timedelta(days=5)), hs(75, "healthy")),
        (acct(7, "10", renewal_date=D + timedelta(days=91)), hs(45, "watch")),
        (acct(8, "10", renewal_date=D - timedelta(days=1)), hs(45, "watch")),
        (acct(9, "999", churn_date=D), hs(10, "at_risk")),  # churned today: not a customer
        (acct(10, "999", start_date=D + timedelta(days=1)), hs(10, "at_risk")),  # not yet a customer
    ]
    ret = retention([a for a, _ in rows], D - timedelta(days=29), D)
    dg = build_digest(rows, D, ret, top=10, renewal_days=90)
    assert dg.customers == 8
    assert dg.mrr == Decimal("2440")
    assert [(b.band, b.accounts, b.mrr) for b in dg.bands] == [
        ("healthy", 2, Decimal("570")), ("watch", 4, Decimal("70")), ("at_risk", 2, Decimal("1800")),
    ]
    assert (dg.danger, dg.forgotten) == (3, 1)
    # most MRR first, then the lower score
    assert [a.pk for a, _ in dg.at_risk] == [3, 2, 4]
    assert dg.at_risk_total == 3
    # soonest renewal first, within [0, 90] days
    assert [a.pk for a, _ in dg.renewals] == [6, 4, 5]
    assert dg.retention is ret


def test_build_digest_top_limits_the_lists_not_the_totals():
    rows = [(acct(i, str(i)), hs(10, "at_risk")) for i in range(1, 6)]
    dg = build_digest(rows, D, retention([a for a, _ in rows], D, D), top=2)
    assert [a.pk for a, _ in dg.at_risk] == [5, 4]
    assert dg.at_risk_total == 5
