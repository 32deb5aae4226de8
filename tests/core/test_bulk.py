"""The scorecard on columns (bot/core/bulk.py) stores exactly what `score_account` says, account by account.

Generated books cover every branch a factor has: no data of a kind at all, no rows for one account,
forgotten and new accounts, seats or none, user-level usage or not, renewals passed and ahead,
detractors, ties among peers, weights of zero.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import HealthConfig, Weights
from bot.core.bulk import Columns, score_columns
from bot.core.health import Peers, engagement, is_peer, score_account
from bot.core.model import Account, HealthInputs, NpsResponse, OpenTicket, OverdueInvoice, UsageWindow
from bot.store import snapshot_row

AS_OF = date(2026, 1, 31)
PRIORITIES = ("urgent", "high", "normal", "low")
TICKET_KINDS = ("bug", "question", "feature", "other")


def _day(draw: st.DrawFn, back: int = 400, ahead: int = 0) -> date:
    return AS_OF + timedelta(days=draw(st.integers(-back, ahead)))


def _maybe_day(draw: st.DrawFn, back: int, ahead: int) -> date | None:
    return None if draw(st.booleans()) else _day(draw, back, ahead)


@st.composite
def books(draw: st.DrawFn) -> tuple[list[HealthInputs], HealthConfig]:
    usage_known, tickets_known, invoices_known, touches_known, champions_known = (
        draw(st.booleans()) for _ in range(5))
    user_level = draw(st.booleans())
    n = draw(st.integers(1, 30))
    inputs = []
    for pk in range(1, n + 1):
        account = Account(
            pk=pk, account_id=f"A{pk}", name=f"Account {pk}", start_date=_day(draw, 800, 10),
            seats=draw(st.none() | st.integers(0, 300)),
            renewal_date=_maybe_day(draw, 60, 400), churn_date=_maybe_day(draw, 300, 30),
        )
        usage = None
        if usage_known:
            ud = draw(st.integers(0, 3000) | st.sampled_from([0, 30, 60]))
            usage = UsageWindow(
                user_days=ud, prev_user_days=draw(st.integers(0, 3000)), active_days=draw(st.integers(0, 30)),
                peak_dau=draw(st.integers(0, 200)),
                mau=draw(st.integers(0, 150)) if user_level and draw(st.booleans()) else None,
                last_active=_maybe_day(draw, 60, 0),
            )
        nps = tuple(NpsResponse(_day(draw, 420, 3), draw(st.integers(0, 10)))
                    for _ in range(draw(st.integers(0, 4))))
        tickets = (tuple(OpenTicket(draw(st.sampled_from(PRIORITIES)), draw(st.sampled_from(TICKET_KINDS)))
                         for _ in range(draw(st.integers(0, 5)))) if tickets_known else None)
        invoices = (tuple(OverdueInvoice(Decimal(draw(st.integers(1, 10**7))) / 100, _day(draw, 200, -1))
                          for _ in range(draw(st.integers(0, 3)))) if invoices_known else None)
        touch = _maybe_day(draw, 400, 0)
        inputs.append(HealthInputs(
            account=account, usage=usage, nps=nps, open_tickets=tickets, overdue_invoices=invoices,
            last_touch=touch if touches_known else None, touches_known=touches_known,
            has_champion=draw(st.booleans()) if champions_known else None,
        ))
    weights = {name: draw(st.sampled_from([0.0, 1.0, 5.0, 7.5, 20.0])) for name in Weights.model_fields}
    cfg = HealthConfig(
        weights=Weights(**weights),
        window_days=draw(st.sampled_from([7, 30, 45])),
        forgotten_days=draw(st.sampled_from([14, 30])),
        danger_quantile=draw(st.sampled_from([0.1, 0.25, 0.5])),
        ticket_weights={"urgent": 3.3, "high": 2.0, "normal": 0.7, "low": 0.1},
        bug_multiplier=draw(st.sampled_from([1.0, 1.5, 1.7])),
    )
    return inputs, cfg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books())
def test_columns_store_what_score_account_says_for_every_account(
    book: tuple[list[HealthInputs], HealthConfig],
) -> None:
    inputs, cfg = book
    peers = Peers.of([engagement(i) for i in inputs if is_peer(i, AS_OF)], cfg.danger_quantile)
    weights = cfg.weights.model_dump()
    expected = [
        snapshot_row(i.account.pk, score_account(i, cfg, AS_OF, peers, None, weights), is_peer(i, AS_OF))
        for i in inputs
    ]
    rows, bands = score_columns(Columns.of(inputs, cfg, AS_OF), cfg, AS_OF, peers, weights)
    for got, want in zip(rows, expected, strict=True):
        assert got == want, f"{json.loads(got[-1])}\n!=\n{json.loads(want[-1])}"
    assert bands == [r[2] for r in expected]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6) | st.integers(-10**6, 10**6).map(lambda i: i / 200), min_size=1),
       st.sampled_from([1, 2, 3]))
def test_rounding_a_column_is_pythons_round_of_each_value(values: list[float], digits: int) -> None:
    """Halves such as 0.15 or 2.675 (not exactly halves in binary) round as Python rounds them."""
    import numpy as np

    from bot.core.bulk import _rounded

    got = _rounded(np.array(values, dtype=np.float64), digits)
    assert [repr(v) for v in got] == [repr(round(v, digits)) for v in values]
