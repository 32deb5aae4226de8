"""The health scorecard (bot/core/health.py): one table per factor, then the rules that bind them.

Most factor tables use a "solo" config (every other weight 0), so the factor's weight renormalises to 1
and its impact is exactly its sub-score minus the neutral 50: the tables pin the sub-scores too.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import Bands, HealthConfig, Weights
from bot.core.health import Peers, band_of, engagement, lookback_days, score_account, score_book, stickiness
from bot.core.model import (
    Account,
    Driver,
    HealthInputs,
    HealthScore,
    NpsResponse,
    OpenTicket,
    OverdueInvoice,
    UsageWindow,
)

D = date(2024, 6, 30)
CFG = HealthConfig()
FACTORS = tuple(CFG.weights.model_dump())
NO_PEERS = Peers.of([], CFG.danger_quantile)


def days_ago(n: int) -> date:
    return D - timedelta(days=n)


def acct(**kw: object) -> Account:
    base: dict[str, object] = {"pk": 1, "account_id": "acme", "name": "Acme", "start_date": date(2023, 1, 1)}
    base.update(kw)
    return Account(**base)  # type: ignore[arg-type]


def inp(account: Account | None = None, usage: UsageWindow | None = None, **kw: object) -> HealthInputs:
    return HealthInputs(account=account or acct(), usage=usage, **kw)  # type: ignore[arg-type]


def used(**kw: object) -> UsageWindow:
    """Usage that was active today (so never forgotten)."""
    base: dict[str, object] = {"last_active": D}
    base.update(kw)
    return UsageWindow(**base)  # type: ignore[arg-type]


def solo(factor: str, **cfg: object) -> HealthConfig:
    """Only `factor` has a weight."""
    weights = {f: (10.0 if f == factor else 0.0) for f in FACTORS}
    return HealthConfig(weights=Weights(**weights), **cfg)  # type: ignore[arg-type]


def driver(h: HealthScore, factor: str) -> Driver | None:
    found = [d for d in h.drivers if d.factor == factor]
    assert len(found) <= 1
    return found[0] if found else None


def factors(h: HealthScore) -> set[str]:
    return {d.factor for d in h.drivers}


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


def score_solo(factor: str, inputs: HealthInputs, peers: Peers = NO_PEERS, **cfg: object) -> Driver | None:
    h = score_account(inputs, solo(factor, **cfg), D, peers)
    return driver(h, factor)


# --------------------------------------------------------------------------------------------------
# engagement (frequency relative to peers) and the danger zone

@pytest.mark.parametrize(
    ("seats", "mau", "peak", "user_days", "expected"),
    [
        (10, 4, 3, 50, 5.0),  # per seat when seats are known
        (None, 4, 3, 50, 12.5),  # per monthly active user without seats
        (0, 4, 3, 50, 12.5),  # 0 seats counts as unknown
        (None, None, 5, 50, 10.0),  # per peak daily user without user-level rows
        (None, None, 0, 0, 0.0),  # nobody, ever: zero engagement, not a division error
        (3, None, 0, 10, 3.33),  # rounded to two decimals
    ],
)
def test_engagement_value(seats, mau, peak, user_days, expected):
    usage = used(user_days=user_days, mau=mau, peak_dau=peak)
    assert engagement(inp(acct(seats=seats), usage)) == expected


def test_engagement_is_none_without_usage_data():
    assert engagement(inp(acct(seats=10), None)) is None


PEERS_1_TO_8 = Peers.of([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0], 0.25)


@pytest.mark.parametrize(
    ("values", "quantile", "threshold"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8], 0.25, 2),  # the 2 lowest of 8 are the bottom quartile
        ([4, 3, 2, 1], 0.25, 1),  # exactly 4 peers: the lowest one
        ([1, 2, 3], 0.25, None),  # fewer than 4 peers: no threshold
        ([None, 1, 2, None, 3], 0.25, None),  # unknowns are not peers
        ([], 0.25, None),
        ([0, 0, 0, 0, 9], 0.25, 0),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9], 0.5, 5),  # a custom quantile: the bottom half
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110], 0.1, 20),
    ],
)
def test_peers_threshold(values, quantile, threshold):
    assert Peers.of(values, quantile).threshold == threshold


def test_peers_are_sorted_and_drop_unknowns():
    peers = Peers.of([3.0, None, 1.0, 2.0], 0.25)
    assert peers.engagements == (1.0, 2.0, 3.0)
    assert peers.quantile == 0.25


@pytest.mark.parametrize(
    ("value", "pct"),
    [(0.5, 0.0), (1.0, 6.25), (2.0, 18.75), (4.5, 50.0), (8.0, 93.75), (9.0, 100.0)],
)
def test_peers_percentile_counts_ties_half(value, pct):
    assert PEERS_1_TO_8.percentile(value) == pct


def test_percentile_without_peers_is_neutral():
    assert NO_PEERS.percentile(3.0) == 50.0


@pytest.mark.parametrize(
    ("user_days", "impact_sign", "danger", "text"),
    [
        (10, -1, True,
         "each seat active 1 day of the last 30; higher than 0% of peers "
         "(danger zone: 2 or less, the bottom 25%)"),
        (20, -1, True,
         "each seat active 2 days of the last 30; higher than 12% of peers "
         "(danger zone: 2 or less, the bottom 25%)"),
        (30, -1, False, "each seat active 3 days of the last 30; higher than 25% of peers"),
        (45, 0, False, "each seat active 4.5 days of the last 30; higher than 50% of peers"),
        (80, 1, False, "each seat active 8 days of the last 30; higher than 88% of peers"),
        (100, 1, False, "each seat active 10 days of the last 30; higher than 100% of peers"),
    ],
)
def test_engagement_against_peers(user_days, impact_sign, danger, text):
    h = score_account(inp(acct(seats=10), used(user_days=user_days)), solo("engagement"), D, PEERS_1_TO_8)
    d = driver(h, "engagement")
    assert d is not None
    assert d.explanation == text
    assert d.value == user_days / 10
    assert d.impact == pytest.approx(PEERS_1_TO_8.percentile(user_days / 10) - 50, abs=0.051)
    assert sign(d.impact) == impact_sign
    assert h.danger_zone is danger
    assert h.engagement == user_days / 10


def test_engagement_unit_is_user_without_seats():
    d = score_solo("engagement", inp(acct(seats=None), used(user_days=40, mau=10)), PEERS_1_TO_8)
    assert d is not None and d.explanation.startswith("each user active 4 days")


def test_engagement_left_out_without_peers_or_usage():
    assert score_solo("engagement", inp(acct(seats=10), used(user_days=40))) is None
    assert score_solo("engagement", inp(acct(seats=10), None), PEERS_1_TO_8) is None


def test_no_danger_zone_with_fewer_than_four_peers():
    peers = Peers.of([5.0, 6.0, 7.0], 0.25)
    h = score_account(inp(acct(seats=10), used(user_days=1)), CFG, D, peers)
    assert h.engagement == 0.1
    assert h.danger_zone is False


def test_danger_zone_follows_a_custom_quantile():
    peers = Peers.of([1, 2, 3, 4, 5, 6, 7, 8, 9], 0.5)
    low = score_account(inp(acct(seats=1), used(user_days=5)), CFG, D, peers)
    high = score_account(inp(acct(seats=1), used(user_days=6)), CFG, D, peers)
    assert (low.danger_zone, high.danger_zone) == (True, False)


def test_no_danger_zone_without_usage_data():
    h = score_account(inp(acct(seats=10), None), CFG, D, Peers.of([0, 0, 0, 0], 0.25))
    assert h.danger_zone is False and h.forgotten_zone is False and h.engagement is None


def test_score_book_peers_are_todays_customers_with_usage():
    def member(pk: int, user_days: int, **kw: object) -> HealthInputs:
        return inp(acct(pk=pk, account_id=f"a{pk}", seats=1, **kw), used(user_days=user_days))

    book = [
        member(1, 1), member(2, 2), member(3, 3), member(4, 4), member(5, 5),
        member(6, 0, churn_date=days_ago(10)),  # churned: not a peer
        member(7, 0, start_date=D + timedelta(days=1)),  # not a customer yet: not a peer
        inp(acct(pk=8, account_id="a8", seats=1), None),  # no usage: not a peer
    ]
    scores, peers = score_book(book, CFG, D, previous={"a2": 61})
    assert peers.engagements == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert peers.threshold == 2.0
    by_id = {s.account_id: s for s in scores}
    assert [by_id[f"a{i}"].danger_zone for i in range(1, 6)] == [True, True, False, False, False]
    assert by_id["a2"].previous_score == 61
    assert by_id["a1"].previous_score is None
    assert len(scores) == len(book)


def test_danger_threshold_not_diluted_by_accounts_without_use():
    book = [inp(acct(pk=i, account_id=f"z{i}", seats=1), UsageWindow()) for i in range(3)]
    book += [inp(acct(pk=10 + i, account_id=f"u{i}", seats=1), used(user_days=i)) for i in range(1, 6)]
    scores, _ = score_book(book, CFG, D)
    lowest_user = next(s for s in scores if s.account_id == "u1")  # the least engaged of those who use it
    assert lowest_user.danger_zone


def test_engagement_text_does_not_claim_higher_than_tied_peers():
    peers = Peers.of([0.0, 0.0, 0.0, 0.0], 0.25)
    d = score_solo("engagement", inp(acct(seats=10), used(user_days=0)), peers)
    assert d is not None
    assert "higher than 0% of peers" in d.explanation


def test_engagement_text_names_the_configured_quantile():
    peers = Peers.of(list(range(1, 12)), 0.1)
    d = score_solo("engagement", inp(acct(seats=1), used(user_days=1)), peers, danger_quantile=0.1)
    assert d is not None and "the bottom 10%" in d.explanation
    assert "quartile" not in d.explanation


# --------------------------------------------------------------------------------------------------
# usage trend: the last window against the one before

@pytest.mark.parametrize(
    ("prev", "now", "value", "impact", "text"),
    [
        (100, 58, -42.0, -42.0, "usage down 42% against the previous 30 days"),
        (100, 50, -50.0, -50.0, "usage down 50% against the previous 30 days"),
        (100, 20, -80.0, -50.0, "usage down 80% against the previous 30 days"),
        (100, 0, -100.0, -50.0, "usage down 100% against the previous 30 days"),
        (3, 2, -33.3, -33.3, "usage down 33.3% against the previous 30 days"),
        (100, 100, 0.0, 0.0, "usage flat against the previous 30 days"),
        (100, 112, 12.0, 24.0, "usage up 12% against the previous 30 days"),
        (100, 125, 25.0, 50.0, "usage up 25% against the previous 30 days"),
        (10, 40, 300.0, 50.0, "usage up 300% against the previous 30 days"),
    ],
)
def test_usage_trend(prev, now, value, impact, text):
    d = score_solo("usage_trend", inp(acct(), used(user_days=now, prev_user_days=prev)))
    assert d is not None
    assert (d.value, d.explanation) == (value, text)
    assert d.impact == pytest.approx(impact, abs=0.1)


def test_usage_trend_window_is_configurable_in_the_text():
    cfg = {"window_days": 14}
    d = score_solo("usage_trend", inp(acct(), used(user_days=50, prev_user_days=100)), **cfg)
    assert d is not None and d.explanation == "usage down 50% against the previous 14 days"


@pytest.mark.parametrize("usage", [None, used(user_days=50, prev_user_days=0)])
def test_usage_trend_left_out_without_a_previous_window(usage):
    assert score_solo("usage_trend", inp(acct(), usage)) is None


def test_a_usage_decline_never_raises_the_score():
    usage = used(user_days=90, prev_user_days=100)
    d = score_solo("usage_trend", inp(acct(), usage))
    assert d is not None and d.explanation.startswith("usage down 10%")
    assert d.impact <= 0


# --------------------------------------------------------------------------------------------------
# stickiness (DAU/MAU)

@pytest.mark.parametrize(
    ("user_days", "mau", "value", "impact", "pct_text"),
    [
        (120, 10, 0.4, 50.0, "stickiness 40% against a target of 40%"),
        (300, 10, 1.0, 50.0, "stickiness 100% against a target of 40%"),
        (60, 10, 0.2, 0.0, "stickiness 20% against a target of 40%"),
        (30, 10, 0.1, -25.0, "stickiness 10% against a target of 40%"),
        (0, 10, 0.0, -50.0, "stickiness 0% against a target of 40%"),
        (10, 3, 0.111, -22.3, "stickiness 11% against a target of 40%"),
    ],
)
def test_stickiness(user_days, mau, value, impact, pct_text):
    h = score_account(inp(acct(), used(user_days=user_days, mau=mau)), solo("stickiness"), D, NO_PEERS)
    d = driver(h, "stickiness")
    assert d is not None
    assert d.value == value == h.stickiness
    assert d.impact == pytest.approx(impact, abs=0.1)
    assert d.explanation.startswith(pct_text)
    assert "daily ÷ monthly active users" in d.explanation


@pytest.mark.parametrize(
    "usage",
    [None, used(user_days=100, peak_dau=9), used(user_days=100, mau=0)],
    ids=["no-usage", "no-user-level-rows", "zero-mau"],
)
def test_stickiness_is_null_without_user_level_data(usage):
    i = inp(acct(seats=10), usage)
    assert stickiness(i, 30) is None
    h = score_account(i, CFG, D, NO_PEERS)
    assert h.stickiness is None
    assert "stickiness" not in factors(h)


# --------------------------------------------------------------------------------------------------
# seat utilisation

@pytest.mark.parametrize(
    ("seats", "mau", "peak", "value", "impact", "text"),
    [
        (10, 8, 9, 0.8, 50.0, "8 monthly active users on 10 seats (80% utilisation)"),
        (10, 15, 9, 1.5, 50.0, "15 monthly active users on 10 seats (150% utilisation)"),
        (10, 4, 9, 0.4, 0.0, "4 monthly active users on 10 seats (40% utilisation)"),
        (10, 2, 9, 0.2, -25.0, "2 monthly active users on 10 seats (20% utilisation)"),
        (10, 0, 0, 0.0, -50.0, "0 monthly active users on 10 seats (0% utilisation)"),
        (10, None, 3, 0.3, -12.5, "3 peak daily users on 10 seats (30% utilisation)"),
    ],
)
def test_seat_utilisation(seats, mau, peak, value, impact, text):
    d = score_solo("seat_utilisation", inp(acct(seats=seats), used(user_days=50, mau=mau, peak_dau=peak)))
    assert d is not None
    assert (d.value, d.explanation) == (value, text)
    assert d.impact == pytest.approx(impact, abs=0.1)


@pytest.mark.parametrize(
    ("seats", "usage"), [(None, used(mau=5)), (0, used(mau=5)), (10, None)],
    ids=["no-seats", "zero-seats", "no-usage"],
)
def test_seat_utilisation_left_out_without_data(seats, usage):
    assert score_solo("seat_utilisation", inp(acct(seats=seats), usage)) is None


# --------------------------------------------------------------------------------------------------
# NPS: the latest answer and the trailing NPS

def nps(*answers: tuple[int, int]) -> tuple[NpsResponse, ...]:
    return tuple(NpsResponse(days_ago(ago), score) for ago, score in answers)


@pytest.mark.parametrize(
    ("answers", "latest", "trailing", "impact", "text"),
    [
        (nps((0, 10)), 10, 100, 50.0, "latest NPS answer 10 (promoter, 2024-06-30)"),
        (nps((5, 9)), 9, 100, 45.0, "latest NPS answer 9 (promoter, 2024-06-25)"),
        (nps((0, 8)), 8, 0, 15.0, "latest NPS answer 8 (passive, 2024-06-30)"),
        (nps((0, 7)), 7, 0, 10.0, "latest NPS answer 7 (passive, 2024-06-30)"),
        (nps((0, 6)), 6, -100, -20.0, "latest NPS answer 6 (detractor, 2024-06-30)"),
        (nps((0, 0)), 0, -100, -50.0, "latest NPS answer 0 (detractor, 2024-06-30)"),
        (
            nps((0, 3), (10, 9)), 3, 0, -10.0,
            "latest NPS answer 3 (detractor, 2024-06-30); NPS +0 from 2 answers in the last 365 days",
        ),
        (
            nps((100, 2), (0, 10), (50, 4)), 10, -33, 16.8,
            "latest NPS answer 10 (promoter, 2024-06-30); NPS -33 from 3 answers in the last 365 days",
        ),
        (  # an answer 365 days old is outside the trailing year; tomorrow's is not yet given
            nps((365, 0), (364, 9), (-1, 0)), 9, 100, 45.0, "latest NPS answer 9 (promoter, 2023-07-02)",
        ),
    ],
)
def test_nps(answers, latest, trailing, impact, text):
    d = score_solo("nps", inp(nps=answers))
    assert d is not None
    assert d.value["latest"] == latest
    assert d.value["nps"] == trailing
    assert d.explanation == text
    assert d.impact == pytest.approx(impact, abs=0.1)


@pytest.mark.parametrize("answers", [(), nps((400, 10)), nps((-3, 10))], ids=["none", "too-old", "future"])
def test_nps_left_out_without_answers_in_the_window(answers):
    assert score_solo("nps", inp(nps=answers)) is None


@pytest.mark.parametrize("score", [0, 1, 2, 3, 4, 5, 6])
def test_a_lone_detractor_pulls_the_score_down(score):
    d = score_solo("nps", inp(nps=nps((0, score))))
    assert d is not None and d.impact < 0 and "detractor" in d.explanation


def test_latest_detractor_never_raises_the_score():
    answers = nps((200, 10), (150, 10), (100, 10), (0, 6))
    d = score_solo("nps", inp(nps=answers))
    assert d is not None and "detractor" in d.explanation
    assert d.impact <= 0


# --------------------------------------------------------------------------------------------------
# open tickets, weighted by priority and bugs

def tickets(*spec: tuple[str, str]) -> tuple[OpenTicket, ...]:
    return tuple(OpenTicket(p, k) for p, k in spec)


@pytest.mark.parametrize(
    ("open_", "load", "impact", "text"),
    [
        ((), 0, 50.0, "no open support tickets"),
        (tickets(("low", "question")), 0.5, 43.8, "1 open ticket (weighted load 0.5)"),
        (tickets(("normal", "question")), 1, 37.5, "1 open ticket (weighted load 1)"),
        (tickets(("high", "other"), ("high", "feature")), 4, 0.0, "2 open tickets (weighted load 4)"),
        (tickets(("normal", "bug")), 1.5, 31.2, "1 open ticket, 1 bug (weighted load 1.5)"),
        (tickets(("urgent", "question")), 4, 0.0, "1 open ticket, 1 urgent (weighted load 4)"),
        (tickets(("urgent", "bug")), 6, -25.0, "1 open ticket, 1 urgent, 1 bug (weighted load 6)"),
        (
            tickets(("urgent", "bug"), ("urgent", "bug")), 12, -50.0,
            "2 open tickets, 2 urgent, 2 bugs (weighted load 12)",
        ),
        (tickets(("p1", "question")), 1, 37.5, "1 open ticket (weighted load 1)"),  # unknown priority: 1
    ],
)
def test_tickets(open_, load, impact, text):
    d = score_solo("tickets", inp(open_tickets=open_))
    assert d is not None
    assert (d.value, d.explanation) == (load, text)
    assert d.impact == pytest.approx(impact, abs=0.1)


def test_tickets_left_out_when_the_book_has_none():
    assert score_solo("tickets", inp(open_tickets=None)) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["urgent", "high", "normal", "low"]),
                          st.sampled_from(["bug", "question", "other"])), max_size=6),
       st.sampled_from(["urgent", "high", "normal", "low"]), st.sampled_from(["bug", "question"]))
def test_one_more_ticket_never_raises_the_score(spec, priority, kind):
    before = score_account(inp(open_tickets=tickets(*spec)), solo("tickets"), D, NO_PEERS)
    after = score_account(inp(open_tickets=(*tickets(*spec), OpenTicket(priority, kind))), solo("tickets"),
                          D, NO_PEERS)
    assert after.score <= before.score


# --------------------------------------------------------------------------------------------------
# overdue invoices

def invoices(*spec: tuple[str, int]) -> tuple[OverdueInvoice, ...]:
    return tuple(OverdueInvoice(Decimal(amount), days_ago(ago)) for amount, ago in spec)


@pytest.mark.parametrize(
    ("overdue", "worst", "impact", "text"),
    [
        ((), 0, 50.0, "no overdue invoices"),
        (
            invoices(("1200", 45)), 45, -40.0,
            "1 overdue invoice totalling 1,200.00; the oldest 45 days past due",
        ),
        (invoices(("100", 1)), 1, -10.7, "1 overdue invoice totalling 100.00; the oldest 1 day past due"),
        (
            invoices(("100", 10), ("250.5", 90)), 90, -50.0,
            "2 overdue invoices totalling 350.50; the oldest 90 days past due",
        ),
    ],
)
def test_invoices(overdue, worst, impact, text):
    d = score_solo("invoices", inp(overdue_invoices=overdue))
    assert d is not None
    assert (d.value, d.explanation) == (worst, text)
    assert d.impact == pytest.approx(impact, abs=0.1)


def test_invoices_left_out_when_the_book_has_none():
    assert score_solo("invoices", inp(overdue_invoices=None)) is None


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.decimals(min_value=0, max_value=100_000, places=2), st.integers(-5, 400)),
             min_size=1, max_size=4),
    st.integers(0, 30), st.integers(0, 30), st.booleans(),
)
def test_an_overdue_invoice_never_has_positive_impact(spec, w_invoices, w_other, champion):
    weights = {f: float(w_other) for f in FACTORS} | {"invoices": float(w_invoices)}
    cfg = HealthConfig(weights=Weights(**weights))
    overdue = tuple(OverdueInvoice(a, days_ago(ago)) for a, ago in spec)
    h = score_account(inp(overdue_invoices=overdue, has_champion=champion), cfg, D, NO_PEERS)
    d = driver(h, "invoices")
    assert d is None or d.impact <= 0
    assert (d is None) == (w_invoices == 0)


# --------------------------------------------------------------------------------------------------
# days since the last touch, and a champion contact

@pytest.mark.parametrize(
    ("last", "value", "impact", "text"),
    [
        (None, None, -50.0, "no recorded touch with this account"),
        (days_ago(0), 0, 50.0, "last touch 0 days ago (2024-06-30)"),
        (days_ago(10), 10, 50.0, "last touch 10 days ago (2024-06-20)"),
        (days_ago(30), 30, 50.0, "last touch 30 days ago (2024-05-31)"),
        (days_ago(75), 75, 0.0, "last touch 75 days ago (2024-04-16)"),
        (days_ago(120), 120, -50.0, "last touch 120 days ago (2024-03-02)"),
        (days_ago(400), 400, -50.0, "last touch 400 days ago (2023-05-27)"),
    ],
)
def test_last_touch(last, value, impact, text):
    d = score_solo("last_touch", inp(last_touch=last, touches_known=True))
    assert d is not None
    assert (d.value, d.explanation) == (value, text)
    assert d.impact == pytest.approx(impact, abs=0.1)


def test_last_touch_left_out_when_the_book_has_no_touches():
    assert score_solo("last_touch", inp(last_touch=None, touches_known=False)) is None


@pytest.mark.parametrize(
    ("champion", "impact", "text"),
    [
        (True, 50.0, "a champion contact is on record"),
        (False, -50.0, "no champion contact on record"),
        (None, None, None),
    ],
)
def test_champion(champion, impact, text):
    d = score_solo("champion", inp(has_champion=champion))
    if impact is None:
        assert d is None
    else:
        assert d is not None and (d.value, d.impact, d.explanation) == (champion, impact, text)


# --------------------------------------------------------------------------------------------------
# renewal proximity

@pytest.mark.parametrize(
    ("renewal", "value", "impact", "text"),
    [
        (D + timedelta(days=400), 400, 50.0, "renewal in 400 days (2025-08-04)"),
        (D + timedelta(days=90), 90, 50.0, "renewal in 90 days (2024-09-28)"),
        (D + timedelta(days=45), 45, 0.0, "renewal in 45 days (2024-08-14)"),
        (D + timedelta(days=9), 9, -40.0, "renewal in 9 days (2024-07-09)"),
        (D, 0, -50.0, "renewal in 0 days (2024-06-30)"),
        (days_ago(5), -5, 0.0, "renewal date 2024-06-25 has passed; is it up to date?"),
    ],
)
def test_renewal(renewal, value, impact, text):
    d = score_solo("renewal", inp(acct(renewal_date=renewal)))
    assert d is not None
    assert (d.value, d.explanation) == (value, text)
    assert d.impact == pytest.approx(impact, abs=0.1)


def test_renewal_left_out_without_a_date():
    assert score_solo("renewal", inp(acct(renewal_date=None))) is None


# --------------------------------------------------------------------------------------------------
# renormalisation, weights, the score and its drivers

def test_missing_factors_are_left_out_and_the_weights_renormalise():
    # champion (weight 5, sub-score 100) and invoices (weight 10, sub-score 0): (500 + 0) / 15 = 33.3
    h = score_account(inp(has_champion=True, overdue_invoices=invoices(("10", 90))), CFG, D, NO_PEERS)
    assert h.score == 33
    assert [(d.factor, d.impact) for d in h.drivers] == [("invoices", -33.3), ("champion", 16.7)]


def test_an_account_with_only_usage_data_is_not_dragged_to_zero():
    usage = used(user_days=120, prev_user_days=110, mau=9, peak_dau=7)
    i = inp(acct(seats=10), usage)
    peers = Peers.of([1.0, 5.0, 8.0, 12.0], 0.25)
    h = score_account(i, CFG, D, peers)
    assert factors(h) == {"engagement", "usage_trend", "stickiness", "seat_utilisation"}
    assert h.score >= 70 and h.band == "healthy"
    # the missing factors weigh nothing: the score is the weighted mean of the four sub-scores with data
    w = CFG.weights.model_dump()
    subs = {f: 50 + score_solo(f, i, peers).impact for f in factors(h)}  # type: ignore[union-attr]
    mean = sum(w[f] * s for f, s in subs.items()) / sum(w[f] for f in subs)
    assert h.score == round(mean)


def test_no_data_at_all_is_neutral_not_zero():
    h = score_account(inp(), CFG, D, NO_PEERS)
    assert (h.score, h.band, h.drivers) == (50, "watch", ())
    assert (h.danger_zone, h.forgotten_zone, h.stickiness, h.engagement) == (False, False, None, None)


@pytest.mark.parametrize("factor", FACTORS)
def test_a_zero_weight_removes_the_factor(factor):
    rich = inp(
        acct(seats=10, renewal_date=D + timedelta(days=30)),
        used(user_days=100, prev_user_days=150, mau=6, peak_dau=5),
        nps=nps((3, 4)), open_tickets=tickets(("urgent", "bug")), overdue_invoices=invoices(("50", 20)),
        last_touch=days_ago(50), touches_known=True, has_champion=False,
    )
    peers = Peers.of([1.0, 5.0, 8.0, 12.0, 20.0], 0.25)
    full = score_account(rich, CFG, D, peers)
    assert factors(full) == set(FACTORS)
    without = HealthConfig(weights=CFG.weights.model_copy(update={factor: 0.0}))
    h = score_account(rich, without, D, peers)
    assert factors(h) == set(FACTORS) - {factor}


def test_all_weights_zero_is_neutral():
    cfg = HealthConfig(weights=Weights(**{f: 0.0 for f in FACTORS}))
    h = score_account(inp(has_champion=False, open_tickets=tickets(("urgent", "bug"))), cfg, D, NO_PEERS)
    assert (h.score, h.drivers) == (50, ())


def test_weights_are_relative():
    doubled = HealthConfig(weights=Weights(**{f: 2 * v for f, v in CFG.weights.model_dump().items()}))
    i = inp(acct(renewal_date=D + timedelta(days=20)), nps=nps((1, 9)), has_champion=False)
    assert score_account(i, doubled, D, NO_PEERS).drivers == score_account(i, CFG, D, NO_PEERS).drivers


def test_drivers_to_dict():
    d = Driver("tickets", 6.0, -25.0, "1 open ticket")
    assert d.to_dict() == {"factor": "tickets", "value": 6.0, "impact": -25.0, "explanation": "1 open ticket"}


# --------------------------------------------------------------------------------------------------
# bands

@pytest.mark.parametrize(
    ("score", "healthy", "watch", "band"),
    [
        (100, 70, 40, "healthy"), (70, 70, 40, "healthy"), (69, 70, 40, "watch"), (40, 70, 40, "watch"),
        (39, 70, 40, "at_risk"), (0, 70, 40, "at_risk"),
        (80, 80, 50, "healthy"), (79, 80, 50, "watch"), (50, 80, 50, "watch"), (49, 80, 50, "at_risk"),
        (60, 60, 60, "healthy"), (59, 60, 60, "at_risk"),  # no watch band at all
    ],
)
def test_band_of(score, healthy, watch, band):
    assert band_of(score, HealthConfig(bands=Bands(healthy=healthy, watch=watch))) == band


@pytest.mark.parametrize(
    ("days", "score", "band"),
    [(63, 70, "healthy"), (62, 69, "watch"), (36, 40, "watch"), (35, 39, "at_risk")],
)
def test_bands_at_the_exact_thresholds_end_to_end(days, score, band):
    # renewal alone: sub-score = days / 90 × 100
    h = score_account(inp(acct(renewal_date=D + timedelta(days=days))), solo("renewal"), D, NO_PEERS)
    assert (h.score, h.band) == (score, band)


def test_custom_bands_end_to_end():
    cfg = solo("renewal", bands=Bands(healthy=80, watch=50))
    bands = [score_account(inp(acct(renewal_date=D + timedelta(days=n))), cfg, D, NO_PEERS).band
             for n in (72, 71, 45, 44)]
    assert bands == ["healthy", "watch", "watch", "at_risk"]


def test_bands_must_be_ordered():
    with pytest.raises(ValueError, match="watch must not be above healthy"):
        Bands(healthy=40, watch=70)


# --------------------------------------------------------------------------------------------------
# the forgotten zone

GOOD = {"has_champion": True, "open_tickets": (), "overdue_invoices": (), "nps": nps((2, 10))}


@pytest.mark.parametrize(
    ("last_active", "forgotten"),
    [(days_ago(0), False), (days_ago(29), False), (days_ago(30), True), (days_ago(45), True), (None, True)],
)
def test_forgotten_zone_is_thirty_days_without_use(last_active, forgotten):
    usage = UsageWindow(last_active=last_active)
    h = score_account(inp(acct(), usage), CFG, D, NO_PEERS)
    assert h.forgotten_zone is forgotten
    assert ("forgotten_zone" in factors(h)) is forgotten


def test_no_usage_data_is_not_the_forgotten_zone():
    assert score_account(inp(acct(), None, **GOOD), CFG, D, NO_PEERS).forgotten_zone is False


@pytest.mark.parametrize(
    ("last_active", "text"),
    [
        (days_ago(40), "no product use in the last 30 days (last used 2024-05-21); score capped at 39"),
        (None,
         "no product use in the last 30 days (no use on record in the last 60 days); score capped at 39"),
    ],
)
def test_forgotten_caps_the_score_below_watch_ranked_by_the_points_it_took(last_active, text):
    h = score_account(inp(acct(), UsageWindow(last_active=last_active), **GOOD), CFG, D, NO_PEERS)
    uncapped = score_account(inp(acct(), None, **GOOD), CFG, D, NO_PEERS)
    assert uncapped.score > 39
    assert (h.score, h.band, h.forgotten_zone, h.danger_zone) == (39, "at_risk", True, True)
    first = h.drivers[0]  # the cap took more points than any factor gave or took
    assert first.factor == "forgotten_zone"
    assert first.explanation == text
    assert first.value == (last_active.isoformat() if last_active else None)
    assert first.impact == -(uncapped.score - 39)


def test_forgotten_cap_follows_custom_bands():
    cfg = HealthConfig(bands=Bands(healthy=80, watch=55))
    h = score_account(inp(acct(), UsageWindow(), **GOOD), cfg, D, NO_PEERS)
    assert (h.score, h.band) == (54, "at_risk")
    (zone,) = (d for d in h.drivers if d.factor == "forgotten_zone")
    assert zone.explanation.endswith("score capped at 54")


def test_forgotten_zone_uses_the_configured_span():
    cfg = HealthConfig(forgotten_days=90)
    assert lookback_days(cfg) == 90
    recent = score_account(inp(acct(), UsageWindow(last_active=days_ago(60))), cfg, D, NO_PEERS)
    assert recent.forgotten_zone is False
    h = score_account(inp(acct(), UsageWindow()), cfg, D, NO_PEERS)
    (zone,) = (d for d in h.drivers if d.factor == "forgotten_zone")
    assert zone.explanation.startswith(
        "no product use in the last 90 days (no use on record in the last 90 days)")


def test_forgotten_below_the_cap_took_no_points_and_comes_after_the_factors_that_did():
    h = score_account(inp(acct(), UsageWindow(), has_champion=False), CFG, D, NO_PEERS)
    assert h.score == 0 and h.forgotten_zone
    zone = h.drivers[-1]  # impact 0: the factors had taken the score below the cap already
    assert (zone.factor, zone.impact) == ("forgotten_zone", 0.0)
    assert "capped" not in zone.explanation
    assert all(d.impact < 0 for d in h.drivers[:-1])


def test_forgotten_cap_never_goes_below_zero():
    cfg = HealthConfig(bands=Bands(healthy=10, watch=0))
    h = score_account(inp(acct(), UsageWindow()), cfg, D, NO_PEERS)
    assert 0 <= h.score <= 100


def test_a_brand_new_account_is_not_forgotten():
    new = acct(start_date=days_ago(3), seats=5)
    h = score_account(inp(new, UsageWindow(), **GOOD), CFG, D, NO_PEERS)
    assert h.forgotten_zone is False


# --------------------------------------------------------------------------------------------------
# properties over random inputs

DAYS = st.integers(-400, 400).map(lambda n: D - timedelta(days=n))

usage_st = st.one_of(
    st.none(),
    st.builds(
        UsageWindow,
        user_days=st.integers(0, 5000), prev_user_days=st.integers(0, 5000), active_days=st.integers(0, 30),
        peak_dau=st.integers(0, 300), mau=st.none() | st.integers(0, 300),
        last_active=st.none() | st.integers(0, 120).map(days_ago),
    ),
)
inputs_st = st.builds(
    HealthInputs,
    account=st.builds(
        Account, pk=st.just(1), account_id=st.just("a"), name=st.just("A"),
        start_date=st.just(date(2022, 1, 1)),
        seats=st.none() | st.integers(0, 500), renewal_date=st.none() | DAYS,
    ),
    usage=usage_st,
    nps=st.lists(st.builds(NpsResponse, day=DAYS, score=st.integers(0, 10)), max_size=5).map(tuple),
    open_tickets=st.none() | st.lists(
        st.builds(OpenTicket, priority=st.sampled_from(["urgent", "high", "normal", "low", "odd"]),
                  kind=st.sampled_from(["bug", "question", "other"])), max_size=6).map(tuple),
    overdue_invoices=st.none() | st.lists(
        st.builds(OverdueInvoice, amount=st.decimals(min_value=0, max_value=10**6, places=2), due_date=DAYS),
        max_size=3).map(tuple),
    last_touch=st.none() | DAYS,
    touches_known=st.booleans(),
    has_champion=st.none() | st.booleans(),
)
weights_st = st.builds(Weights, **{f: st.sampled_from([0.0, 1.0, 5.0, 10.0, 20.0, 33.3]) for f in FACTORS})
bands_st = st.tuples(st.integers(1, 100), st.integers(1, 100)).map(
    lambda t: Bands(healthy=max(t), watch=min(t))
)
peers_st = st.lists(st.floats(0, 60, allow_nan=False), max_size=12).map(lambda v: Peers.of(v, 0.25))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs_st, weights_st, bands_st, peers_st)
def test_score_properties(i, weights, bands, peers):
    cfg = HealthConfig(weights=weights, bands=bands)
    h = score_account(i, cfg, D, peers)
    assert isinstance(h.score, int) and 0 <= h.score <= 100
    assert h.band == band_of(h.score, cfg)
    # score = 50 + the sum of the impacts, to rounding (the forgotten driver carries the points of its cap)
    assert abs(h.score - (50 + sum(d.impact for d in h.drivers))) <= 1
    rest = list(h.drivers)
    zones = [d for d in rest if d.factor == "forgotten_zone"]
    assert len(zones) == h.forgotten_zone
    if h.forgotten_zone:
        assert zones[0].impact <= 0
        assert h.score <= bands.watch - 1
    magnitudes = [abs(d.impact) for d in rest]  # biggest impact first, the zone's cap among them
    assert magnitudes == sorted(magnitudes, reverse=True)
    rest = [d for d in rest if d.factor != "forgotten_zone"]
    # every driver is a factor with a weight, once, with a sentence
    names = [d.factor for d in rest]
    assert len(names) == len(set(names))
    assert all(getattr(weights, n) > 0 for n in names)
    assert all(d.explanation for d in h.drivers)
    assert h.stickiness is None or h.stickiness >= 0
    if i.usage is None or not i.usage.mau:
        assert h.stickiness is None and "stickiness" not in names
    if h.forgotten_zone:
        assert h.danger_zone


@settings(max_examples=150, deadline=None)
@given(inputs_st, peers_st)
def test_score_with_default_config_stays_in_range(i, peers):
    h = score_account(i, CFG, D, peers)
    assert 0 <= h.score <= 100
    assert abs(h.score - (50 + sum(d.impact for d in h.drivers))) <= 1
