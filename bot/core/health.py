"""The health scorecard: inputs about one account (and its peers) → a 0–100 score with its drivers.

Each factor reads one kind of evidence and gives a sub-score from 0 to 100. The score is the weighted
mean of the factors that have data (a factor with no data is left out and the weights renormalise —
never a silent zero). Each driver's impact is its weighted distance from a neutral 50, so that
score = 50 + the sum of the impacts (to rounding): a person can see what pushed it up or down.
One rule overrides the mean: an account in the forgotten zone (no use for 30 days) is capped below
the watch band, and that cap is itself a driver with the points it took away.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from math import floor
from operator import attrgetter
from typing import Any, NamedTuple

from bot.config import HealthConfig
from bot.core.model import Driver, HealthInputs, HealthScore, OpenTicket, UsageWindow


@dataclass(frozen=True)
class Peers:
    """The engagement of the customers an account is compared with, sorted ascending."""

    engagements: tuple[float, ...]
    quantile: float

    @classmethod
    def of(cls, values: Sequence[float | None], quantile: float) -> Peers:
        return cls(tuple(sorted(v for v in values if v is not None)), quantile)

    @property
    def threshold(self) -> float | None:
        """The engagement below which an account is in the danger zone (bottom quantile)."""
        if len(self.engagements) < 4:
            return None
        return self.engagements[floor(self.quantile * (len(self.engagements) - 1))]

    def percentile(self, value: float) -> float:
        """Share of peers with lower engagement, ties counted half (0–100): the sub-score."""
        n = len(self.engagements)
        if n == 0:
            return 50.0
        below = bisect_left(self.engagements, value)
        equal = bisect_right(self.engagements, value) - below
        return 100.0 * (below + equal / 2) / n

    def share_below(self, value: float) -> float:
        """Share of peers strictly below (0–100): what the explanation can honestly claim."""
        if not self.engagements:
            return 0.0
        return 100.0 * bisect_left(self.engagements, value) / len(self.engagements)


def lookback_days(cfg: HealthConfig) -> int:
    """How far back usage is read: two scoring windows, or the forgotten-zone span if longer."""
    return max(2 * cfg.window_days, cfg.forgotten_days)


def band_of(score: int, cfg: HealthConfig) -> str:
    if score >= cfg.bands.healthy:
        return "healthy"
    if score >= cfg.bands.watch:
        return "watch"
    return "at_risk"


def engagement(inputs: HealthInputs) -> float | None:
    """Engagement frequency: the days each licensed (or active) user was active in the window."""
    return engagement_of(inputs.account.seats, inputs.usage)


def engagement_of(seats: int | None, usage: UsageWindow | None) -> float | None:
    """`engagement` from an account's seats and usage alone (what the peers of a day are made of)."""
    if usage is None:
        return None
    base = seats or usage.mau or usage.peak_dau
    if not base:
        return 0.0
    return round(usage.user_days / base, 2)


def stickiness(inputs: HealthInputs, window_days: int) -> float | None:
    """Average daily active users ÷ monthly (window) active users; needs user-level usage."""
    usage = inputs.usage
    if usage is None or not usage.mau:
        return None
    return round(usage.user_days / window_days / usage.mau, 3)


def plural(n: float, word: str) -> str:
    return word if n == 1 else word + "s"


def _linear(value: float, zero_at: float, full_at: float) -> float:
    """0 at zero_at, 100 at full_at, straight in between, clamped."""
    if full_at == zero_at:
        return 100.0
    return max(0.0, min(100.0, 100.0 * (value - zero_at) / (full_at - zero_at)))


class Reading(NamedTuple):
    """One factor's verdict before weighting (a tuple: a book's run makes about nine per account)."""

    factor: str
    subscore: float
    value: object
    facts: tuple[Any, ...]  # what the explanation says besides the value (`explain`)


Factor = Callable[[HealthInputs, HealthConfig, date, Peers], Reading | None]


def explain(factor: str, value: Any, impact: float, facts: Sequence[Any]) -> str:
    """The sentence a driver shows, from its value and facts: what a stored score keeps of it, so the
    sentence is written when someone reads it, not for every account of every run."""
    if factor == "engagement":
        seat, share, window, threshold, quantile = facts
        text = (f"each {'seat' if seat else 'user'} active {value:g} {plural(value, 'day')} of the last "
                f"{window}; higher than {share}% of peers")
        if threshold is not None and value <= threshold:
            text += f" (danger zone: {threshold:g} or less, the bottom {quantile:.0%})"
        return text
    if factor == "usage_trend":
        (window,) = facts
        if value == 0:
            return f"usage flat against the previous {window} days"
        return f"usage {'down' if value < 0 else 'up'} {abs(value):,.4g}% against the previous {window} days"
    if factor == "stickiness":
        (target,) = facts
        return f"stickiness {value:.0%} against a target of {target:.0%} (daily ÷ monthly active users)"
    if factor == "seat_utilisation":
        users, monthly, seats = facts
        who = "monthly active users" if monthly else "peak daily users"
        return f"{users} {who} on {seats} seats ({value:.0%} utilisation)"
    if factor == "nps":
        answered, days = facts
        latest, responses = value["latest"], value["responses"]
        kind = "promoter" if latest >= 9 else "detractor" if latest <= 6 else "passive"
        text = f"latest NPS answer {latest} ({kind}, {answered})"
        if responses > 1:
            text += f"; NPS {value['nps']:+d} from {responses} answers in the last {days} days"
        return text
    if factor == "tickets":
        count, urgent, bugs = facts
        if count == 0:
            return "no open support tickets"
        parts = [f"{count} open ticket{'s' if count != 1 else ''}"]
        if urgent:
            parts.append(f"{urgent} urgent")
        if bugs:
            parts.append(f"{bugs} bug{'s' if bugs != 1 else ''}")
        return ", ".join(parts) + f" (weighted load {value:g})"
    if factor == "invoices":
        count, total = facts
        if count == 0:
            return "no overdue invoices"
        return (f"{count} overdue invoice{'s' if count != 1 else ''} totalling {Decimal(total):,.2f}; "
                f"the oldest {value} {plural(value, 'day')} past due")
    if factor == "last_touch":
        if value is None:
            return "no recorded touch with this account"
        return f"last touch {value} days ago ({facts[0]})"
    if factor == "champion":
        return "a champion contact is on record" if value else "no champion contact on record"
    if factor == "renewal":
        if value < 0:  # more often a date nobody updated than a lapsed contract: say so
            return f"renewal date {facts[0]} has passed; is it up to date?"
        return f"renewal in {value} days ({facts[0]})"
    if factor == "forgotten_zone":
        days, lookback, cap = facts
        since = f"last used {value}" if value else f"no use on record in the last {lookback} days"
        capped = f"; score capped at {cap}" if impact else ""
        return f"no product use in the last {days} days ({since}){capped}"
    raise ValueError(f"no explanation for factor {factor!r}")


def _engagement(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    value = engagement(inp)
    if value is None or not peers.engagements:
        return None
    share = int(f"{peers.share_below(value):.0f}")
    facts = (1 if inp.account.seats else 0, share, cfg.window_days, peers.threshold, cfg.danger_quantile)
    return Reading("engagement", peers.percentile(value), value, facts)


def _usage_trend(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    usage = inp.usage
    if usage is None or usage.prev_user_days <= 0:
        return None
    change = 100.0 * (usage.user_days - usage.prev_user_days) / usage.prev_user_days
    change = round(change, 1)
    # Flat is neutral: a decline never raises a score, a rise never lowers one.
    if change <= 0:
        sub = 50.0 * _linear(change, cfg.trend_floor_pct, 0) / 100
    else:
        sub = 50.0 + 50.0 * _linear(change, 0, cfg.trend_ceiling_pct) / 100
    return Reading("usage_trend", sub, change, (cfg.window_days,))


def _stickiness(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    value = stickiness(inp, cfg.window_days)
    if value is None:
        return None
    return Reading("stickiness", _linear(value, 0, cfg.stickiness_target), value, (cfg.stickiness_target,))


def _seats(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    usage, seats = inp.usage, inp.account.seats
    if usage is None or not seats:
        return None
    users = usage.mau if usage.mau is not None else usage.peak_dau
    value = round(users / seats, 3)
    facts = (users, 1 if usage.mau is not None else 0, seats)
    return Reading("seat_utilisation", _linear(value, 0, cfg.seat_target), value, facts)


_day = attrgetter("day")


def _nps(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    since = as_of - timedelta(days=cfg.nps_days)
    if not inp.nps:
        return None
    answers = sorted((r for r in inp.nps if since < r.day <= as_of), key=_day)
    if not answers:
        return None
    latest = answers[-1]
    promoters = sum(1 for r in answers if r.score >= 9)
    detractors = sum(1 for r in answers if r.score <= 6)
    nps = round(100 * (promoters - detractors) / len(answers))
    sub = 0.5 * latest.score * 10 + 0.5 * (nps + 100) / 2
    if latest.score <= 6:
        sub = min(sub, 40.0)  # however good the history, a detractor's latest word never helps
    value = {"latest": latest.score, "nps": nps, "responses": len(answers)}
    return Reading("nps", sub, value, (latest.day.isoformat(), cfg.nps_days))


def ticket_load(tickets: Iterable[OpenTicket], cfg: HealthConfig) -> float:
    """The weighted load of open tickets: each one's priority weight, times the bug multiplier for
    bugs. Summed by kind of ticket in a fixed order, so that any reading of the same tickets (one
    account's, or a whole book's in `bulk`) gives the same float."""
    return ticket_load_of(Counter((t.priority, t.kind == "bug") for t in tickets), cfg)


def ticket_load_of(kinds: Mapping[tuple[str, bool], int], cfg: HealthConfig) -> float:
    """`ticket_load` from the number of open tickets of each (priority, is a bug)."""
    load = 0.0
    for (priority, bug), count in sorted(kinds.items()):
        load += count * (cfg.ticket_weights.get(priority, 1.0) * (cfg.bug_multiplier if bug else 1.0))
    return load


def _tickets(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    if inp.open_tickets is None:
        return None
    count = len(inp.open_tickets)
    if count == 0:
        return Reading("tickets", 100.0, 0, (0, 0, 0))
    load = round(ticket_load(inp.open_tickets, cfg), 2)
    urgent = sum(1 for t in inp.open_tickets if t.priority == "urgent")
    bugs = sum(1 for t in inp.open_tickets if t.kind == "bug")
    return Reading("tickets", 100.0 - _linear(load, 0, cfg.ticket_zero_load), load, (count, urgent, bugs))


def _invoices(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    if inp.overdue_invoices is None:
        return None
    if not inp.overdue_invoices:
        return Reading("invoices", 100.0, 0, (0, "0"))
    worst = max((as_of - i.due_date).days for i in inp.overdue_invoices)
    total = sum((i.amount for i in inp.overdue_invoices), Decimal(0))
    sub = 40.0 * (1 - _linear(worst, 0, cfg.invoice_zero_days) / 100)  # overdue never helps
    return Reading("invoices", sub, worst, (len(inp.overdue_invoices), str(total)))


def _last_touch(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    if not inp.touches_known:
        return None
    if inp.last_touch is None:
        return Reading("last_touch", 0.0, None, ())
    days = (as_of - inp.last_touch).days
    sub = 100.0 - _linear(days, cfg.touch_fresh_days, cfg.touch_stale_days)
    return Reading("last_touch", sub, days, (inp.last_touch.isoformat(),))


def _champion(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    if inp.has_champion is None:
        return None
    return Reading("champion", 100.0 if inp.has_champion else 0.0, inp.has_champion, ())


def _renewal(inp: HealthInputs, cfg: HealthConfig, as_of: date, peers: Peers) -> Reading | None:
    renewal = inp.account.renewal_date
    if renewal is None:
        return None
    days = (renewal - as_of).days
    sub = 50.0 if days < 0 else _linear(days, 0, cfg.renewal_horizon_days)  # a passed date weighs nothing
    return Reading("renewal", sub, days, (renewal.isoformat(),))


FACTORS: tuple[Factor, ...] = (
    _engagement, _usage_trend, _stickiness, _seats, _nps, _tickets, _invoices, _last_touch, _champion,
    _renewal,
)
FACTOR_NAMES = ("engagement", "usage_trend", "stickiness", "seat_utilisation", "nps", "tickets", "invoices",
                "last_touch", "champion", "renewal")  # what each of FACTORS reads as, in order


def score_account(
    inputs: HealthInputs,
    cfg: HealthConfig,
    as_of: date,
    peers: Peers,
    previous_score: int | None = None,
    weights: Mapping[str, float] | None = None,
) -> HealthScore:
    """Score one account against its peers as of a day (`weights`: `cfg.weights` dumped, once per book)."""
    if weights is None:
        weights = cfg.weights.model_dump()
    readings = [r for f in FACTORS if (r := f(inputs, cfg, as_of, peers)) is not None]
    readings = [r for r in readings if weights[r.factor] > 0]
    total = sum(weights[r.factor] for r in readings)
    drivers: list[Driver] = []
    raw = 50.0
    if total > 0:
        raw = sum(weights[r.factor] * r.subscore for r in readings) / total
        for r in readings:
            impact = round(weights[r.factor] / total * (r.subscore - 50.0), 1)
            drivers.append(Driver(r.factor, r.value, impact, explain(r.factor, r.value, impact, r.facts),
                                  r.facts))
    score = max(0, min(100, round(raw)))
    usage = inputs.usage
    eng = engagement(inputs)
    threshold = peers.threshold
    forgotten = (
        usage is not None
        and (as_of - inputs.account.start_date).days >= cfg.forgotten_days  # new accounts get time
        and (usage.last_active is None or (as_of - usage.last_active).days >= cfg.forgotten_days)
    )
    danger = forgotten or (eng is not None and threshold is not None and eng <= threshold)
    if forgotten and usage is not None:
        # An account nobody uses is at risk whatever else looks fine: the score is capped below watch.
        cap = max(0, cfg.bands.watch - 1)
        lost = float(max(0, score - cap))
        score = min(score, cap)
        value = usage.last_active.isoformat() if usage.last_active else None
        impact = -lost if lost else 0.0
        facts = (cfg.forgotten_days, lookback_days(cfg), cap)
        text = explain("forgotten_zone", value, impact, facts)
        drivers.append(Driver("forgotten_zone", value, impact, text, facts))
    drivers.sort(key=lambda d: (-abs(d.impact), d.factor))  # biggest impact first (CONTRACT §5)
    return HealthScore(
        account_id=inputs.account.account_id,
        name=inputs.account.name,
        score=score,
        band=band_of(score, cfg),
        danger_zone=danger,
        forgotten_zone=forgotten,
        stickiness=stickiness(inputs, cfg.window_days),
        engagement=eng,
        drivers=tuple(drivers),
        previous_score=previous_score,
    )


def is_peer(inputs: HealthInputs, as_of: date) -> bool:
    """Peers are the active accounts: customers on the day with some product use in the window.

    Accounts with no use at all are the forgotten zone already; counting them would drag the
    danger-zone line down to zero and hide the accounts that are sliding toward it.
    """
    return inputs.account.is_customer_on(as_of) and is_active(inputs.usage)


def is_active(usage: UsageWindow | None) -> bool:
    """Some product use in the window (with being a customer on the day: a peer)."""
    return usage is not None and usage.user_days > 0


def score_book(
    inputs: Sequence[HealthInputs],
    cfg: HealthConfig,
    as_of: date,
    previous: dict[str, int] | None = None,
) -> tuple[list[HealthScore], Peers]:
    """Score every account against the active accounts of the day."""
    peers = Peers.of([engagement(i) for i in inputs if is_peer(i, as_of)], cfg.danger_quantile)
    previous = previous or {}
    weights = cfg.weights.model_dump()
    scores = [
        score_account(i, cfg, as_of, peers, previous.get(i.account.account_id), weights) for i in inputs
    ]
    return scores, peers
