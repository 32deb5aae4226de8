"""The scorecard of `health.py`, a chunk of accounts at a time, on columns: what a whole-book run uses.

`score_account` reads one account's evidence and builds its drivers one by one: about 60 µs an
account, most of it Python objects and JSON, where the arithmetic is a few dozen float operations.
Here every factor is computed for the whole chunk with NumPy, and the snapshot rows (`SnapshotRow`,
drivers as the JSON `store.drivers_json` writes: value, impact and the facts their sentences are
written from) are assembled from per-factor pieces. The result is the same, bit for bit
(tests/core/test_bulk.py checks it against `score_account` on generated books):

- floats go through the same operations in the same order (a factor left out adds 0.0, which
  changes no sum), and Python's own `round` decides where NumPy's could differ;
- values and facts are written as `json.dumps` writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np

from bot.config import HealthConfig
from bot.core.health import FACTOR_NAMES, Peers, band_of, lookback_days, ticket_load
from bot.core.model import HealthInputs, UsageWindow

Array = np.ndarray[Any, Any]
NONE = 0  # an ordinal no day has: "no date" in the date columns (date.min is ordinal 1)


@dataclass
class Columns:
    """A chunk of accounts as columns: everything the scorecard reads about them.

    Dates are ordinals (`date.toordinal()`), 0 for none. A `*_known` flag is False when the book has
    no rows of that kind at all (the factor is then left out, never scored as zero)."""

    pk: list[int]
    start: Array
    churn: Array  # 0: not churned
    seats: Array  # 0 for none: the scorecard reads 0 seats and no seats alike
    renewal: Array
    # usage (None when the book has no usage: then no usage factor, no forgotten zone)
    usage_known: bool
    user_days: Array
    prev_user_days: Array
    peak_dau: Array
    mau: Array  # -1: no user-level rows for the account
    last_active: Array
    # NPS answers in the window: how many, promoters, detractors, and the latest (by day, then import)
    nps_n: Array
    nps_promoters: Array
    nps_detractors: Array
    nps_latest: Array
    nps_latest_day: Array
    tickets_known: bool
    tickets_open: Array
    tickets_urgent: Array
    tickets_bugs: Array
    tickets_load: list[float]  # `ticket_load` of each account's open tickets
    invoices_known: bool
    overdue_n: Array
    overdue_worst: Array  # days past due of the oldest overdue invoice
    overdue_total: list[Decimal]
    touches_known: bool
    last_touch: Array
    champions_known: bool
    champion: Array

    @property
    def size(self) -> int:
        return len(self.pk)

    def add_usage(self, windows: Mapping[int, UsageWindow] | None) -> None:
        """The accounts' usage windows (None: the book has no usage at all)."""
        self.usage_known = windows is not None
        if windows is None:
            return
        n, empty = self.size, UsageWindow()
        got = [windows.get(p, empty) for p in self.pk]
        self.user_days = np.fromiter((u.user_days for u in got), np.int64, n)
        self.prev_user_days = np.fromiter((u.prev_user_days for u in got), np.int64, n)
        self.peak_dau = np.fromiter((u.peak_dau for u in got), np.int64, n)
        self.mau = np.fromiter((-1 if u.mau is None else u.mau for u in got), np.int64, n)
        self.last_active = np.fromiter(
            (NONE if u.last_active is None else u.last_active.toordinal() for u in got), np.int64, n)

    @classmethod
    def of(cls, inputs: Sequence[HealthInputs], cfg: HealthConfig, as_of: date) -> Columns:
        """The columns of inputs read one account at a time (what tests compare the two paths on)."""
        def ordinal(d: date | None) -> int:
            return NONE if d is None else d.toordinal()

        n = len(inputs)
        usage_known = bool(inputs) and inputs[0].usage is not None
        c = cls(
            pk=[i.account.pk for i in inputs],
            start=np.array([i.account.start_date.toordinal() for i in inputs], dtype=np.int64),
            churn=np.array([ordinal(i.account.churn_date) for i in inputs], dtype=np.int64),
            seats=np.array([i.account.seats or 0 for i in inputs], dtype=np.int64),
            renewal=np.array([ordinal(i.account.renewal_date) for i in inputs], dtype=np.int64),
            usage_known=usage_known,
            user_days=np.zeros(n, np.int64), prev_user_days=np.zeros(n, np.int64),
            peak_dau=np.zeros(n, np.int64), mau=np.full(n, -1, np.int64), last_active=np.zeros(n, np.int64),
            nps_n=np.zeros(n, np.int64), nps_promoters=np.zeros(n, np.int64),
            nps_detractors=np.zeros(n, np.int64), nps_latest=np.zeros(n, np.int64),
            nps_latest_day=np.zeros(n, np.int64),
            tickets_known=bool(inputs) and inputs[0].open_tickets is not None,
            tickets_open=np.zeros(n, np.int64), tickets_urgent=np.zeros(n, np.int64),
            tickets_bugs=np.zeros(n, np.int64), tickets_load=[0.0] * n,
            invoices_known=bool(inputs) and inputs[0].overdue_invoices is not None,
            overdue_n=np.zeros(n, np.int64), overdue_worst=np.zeros(n, np.int64),
            overdue_total=[Decimal(0)] * n,
            touches_known=bool(inputs) and inputs[0].touches_known,
            last_touch=np.array([ordinal(i.last_touch) for i in inputs], dtype=np.int64),
            champions_known=bool(inputs) and inputs[0].has_champion is not None,
            champion=np.array([bool(i.has_champion) for i in inputs], dtype=bool),
        )
        since = as_of.toordinal() - cfg.nps_days
        for k, i in enumerate(inputs):
            if i.usage is not None:
                u = i.usage
                c.user_days[k], c.prev_user_days[k], c.peak_dau[k] = u.user_days, u.prev_user_days, u.peak_dau
                c.mau[k] = -1 if u.mau is None else u.mau
                c.last_active[k] = ordinal(u.last_active)
            answers = sorted((r for r in i.nps if since < r.day.toordinal() <= as_of.toordinal()),
                             key=lambda r: r.day)
            if answers:
                c.nps_n[k] = len(answers)
                c.nps_promoters[k] = sum(1 for r in answers if r.score >= 9)
                c.nps_detractors[k] = sum(1 for r in answers if r.score <= 6)
                c.nps_latest[k], c.nps_latest_day[k] = answers[-1].score, answers[-1].day.toordinal()
            if i.open_tickets:
                c.tickets_open[k] = len(i.open_tickets)
                c.tickets_urgent[k] = sum(1 for t in i.open_tickets if t.priority == "urgent")
                c.tickets_bugs[k] = sum(1 for t in i.open_tickets if t.kind == "bug")
                c.tickets_load[k] = ticket_load(i.open_tickets, cfg)
            if i.overdue_invoices:
                c.overdue_n[k] = len(i.overdue_invoices)
                c.overdue_worst[k] = max((as_of - v.due_date).days for v in i.overdue_invoices)
                c.overdue_total[k] = sum((v.amount for v in i.overdue_invoices), Decimal(0))
        return c


def _linear(value: Array, zero_at: float, full_at: float) -> Array:
    """`health._linear` on an array: the same operations, element by element."""
    if full_at == zero_at:
        return np.full(len(value), 100.0)
    return np.maximum(0.0, np.minimum(100.0, 100.0 * (value - zero_at) / (full_at - zero_at)))


def _rounded(values: Array, digits: int) -> list[float]:
    """Python's `round(v, digits)` of each value, which NumPy's `round` is not always.

    Python rounds the exact value and returns the float nearest the decimal result; `rint` of the
    scaled value, divided back, gives that same float unless the scaled value is within its own
    rounding error of a half, where only Python's answer is right: those few are rounded by Python."""
    scale = 10.0 ** digits
    scaled = values * scale
    out = (np.rint(scaled) / scale).tolist()
    near = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < 1e-6
    for k in np.flatnonzero(near).tolist():
        out[k] = round(float(values[k]), digits)
    return out


def _fragment(factor: str, value: str, facts: str) -> tuple[str, str]:
    """One driver as `store.drivers_json` writes it, in the two pieces around its impact (value and
    facts come as JSON already)."""
    return f'{{"f": "{factor}", "v": {value}, "i": ', f', "x": {facts}}}'


class _Factor:
    """One factor over the chunk: where it reads (mask), its sub-scores and each account's driver."""

    def __init__(self, name: str, mask: Array, sub: Array) -> None:
        self.name = name
        self.mask = mask
        self.sub = np.where(mask, sub, 0.0)
        self.pieces: list[tuple[str, str] | None] = [None] * len(mask)  # each driver's JSON around its impact
        self.head = f'{{"f": "{name}", "v": '

    def say(self, k: int, value: str, facts: str) -> None:
        """Account k's driver: its value and the facts its explanation is written from (as JSON)."""
        self.pieces[k] = self.head + value + ', "i": ', ', "x": ' + facts + "}"


def _json(value: float | None) -> str:
    return "null" if value is None else repr(value)


# (account pk, score, band, danger, forgotten, stickiness, engagement, peer, drivers JSON): a snapshot
# without its day and run time, which the store's writer adds
SnapshotRow = tuple[int, int, str, bool, bool, float | None, float | None, bool, str]


def score_columns(
    c: Columns, cfg: HealthConfig, as_of: date, peers: Peers, weights: dict[str, float]
) -> tuple[list[SnapshotRow], list[str]]:
    """The snapshot rows of a chunk (as `store.snapshot_row(pk, score_account(...), is_peer(...))`)
    and each account's band (for the run's counts)."""
    n = c.size
    day = as_of.toordinal()
    W = cfg.window_days
    ud = c.user_days.astype(np.float64)
    usage = np.full(n, c.usage_known)
    has_mau = usage & (c.mau > 0)
    # engagement_of: seats, else monthly users, else peak daily users; 0.0 when none of them
    base = np.where(c.seats > 0, c.seats, np.where(c.mau > 0, c.mau, c.peak_dau))
    eng_raw = np.divide(ud, base, out=np.zeros(n), where=base > 0)
    eng = np.array(_rounded(eng_raw, 2), dtype=np.float64)
    eng_list = eng.tolist()
    threshold = peers.threshold
    factors: list[_Factor] = []

    # engagement
    if len(peers.engagements) and c.usage_known:
        sorted_peers = np.array(peers.engagements)
        below = np.searchsorted(sorted_peers, eng, side="left")
        equal = np.searchsorted(sorted_peers, eng, side="right") - below
        f = _Factor("engagement", usage, 100.0 * (below + equal / 2) / len(sorted_peers))
        share = (100.0 * below / len(sorted_peers)).tolist()
        tail = f", {W}, {_json(threshold)}, {cfg.danger_quantile!r}]"
        seats = c.seats.tolist()
        for k in range(n):
            f.say(k, repr(eng_list[k]), f"[{1 if seats[k] else 0}, {share[k]:.0f}{tail}")
        factors.append(f)

    # usage trend
    prev = c.prev_user_days.astype(np.float64)
    mask = usage & (c.prev_user_days > 0)
    change = np.array(_rounded(np.divide(100.0 * (ud - prev), prev, out=np.zeros(n), where=mask), 1),
                      dtype=np.float64)
    sub = np.where(change <= 0, 50.0 * _linear(change, cfg.trend_floor_pct, 0) / 100,
                   50.0 + 50.0 * _linear(change, 0, cfg.trend_ceiling_pct) / 100)
    f = _Factor("usage_trend", mask, sub)
    changes = change.tolist()
    window = f"[{W}]"
    for k in np.flatnonzero(mask).tolist():
        f.say(k, repr(changes[k]), window)
    factors.append(f)

    # stickiness (and the snapshot's stickiness column)
    stick_raw = np.divide(ud / W, c.mau, out=np.zeros(n), where=has_mau)
    stick = np.array(_rounded(stick_raw, 3), dtype=np.float64)
    f = _Factor("stickiness", has_mau, _linear(stick, 0, cfg.stickiness_target))
    target = f"[{cfg.stickiness_target!r}]"
    stick_list = stick.tolist()
    for k in np.flatnonzero(has_mau).tolist():
        f.say(k, repr(stick_list[k]), target)
    factors.append(f)

    # seat utilisation
    mask = usage & (c.seats > 0)
    users = np.where(c.mau >= 0, c.mau, c.peak_dau)
    util = np.array(_rounded(np.divide(users, c.seats, out=np.zeros(n), where=mask), 3), dtype=np.float64)
    f = _Factor("seat_utilisation", mask, _linear(util, 0, cfg.seat_target))
    utils, user_list, seat_list, mau_list = util.tolist(), users.tolist(), c.seats.tolist(), c.mau.tolist()
    for k in np.flatnonzero(mask).tolist():
        f.say(k, repr(utils[k]), f"[{user_list[k]}, {1 if mau_list[k] >= 0 else 0}, {seat_list[k]}]")
    factors.append(f)

    # NPS
    mask = c.nps_n > 0
    nps_n = np.maximum(c.nps_n, 1)
    nps_arr = np.rint(100 * (c.nps_promoters - c.nps_detractors) / nps_n)  # as Python's round: half to even
    nps = nps_arr.astype(np.int64).tolist()
    sub = 0.5 * c.nps_latest * 10 + 0.5 * (nps_arr + 100) / 2
    sub = np.where(c.nps_latest <= 6, np.minimum(sub, 40.0), sub)
    f = _Factor("nps", mask, sub)
    latests, counts, answer_days = c.nps_latest.tolist(), c.nps_n.tolist(), c.nps_latest_day.tolist()
    for k in np.flatnonzero(mask).tolist():
        answered = date.fromordinal(answer_days[k]).isoformat()
        f.say(k, f'{{"latest": {latests[k]}, "nps": {nps[k]}, "responses": {counts[k]}}}',
              f'["{answered}", {cfg.nps_days}]')
    factors.append(f)

    # tickets
    if c.tickets_known:
        load = np.array(_rounded(np.array(c.tickets_load, dtype=np.float64), 2), dtype=np.float64)
        none_open = c.tickets_open == 0
        f = _Factor("tickets", np.ones(n, bool),
                    np.where(none_open, 100.0, 100.0 - _linear(load, 0, cfg.ticket_zero_load)))
        opened, urgents, bug_counts, loads = (
            c.tickets_open.tolist(), c.tickets_urgent.tolist(), c.tickets_bugs.tolist(), load.tolist())
        for k in range(n):
            if opened[k] == 0:
                f.say(k, "0", "[0, 0, 0]")
            else:
                f.say(k, repr(loads[k]), f"[{opened[k]}, {urgents[k]}, {bug_counts[k]}]")
        factors.append(f)

    # invoices
    if c.invoices_known:
        none_due = c.overdue_n == 0
        sub = np.where(none_due, 100.0, 40.0 * (1 - _linear(c.overdue_worst.astype(np.float64), 0,
                                                             cfg.invoice_zero_days) / 100))
        f = _Factor("invoices", np.ones(n, bool), sub)
        overdue, worsts = c.overdue_n.tolist(), c.overdue_worst.tolist()
        for k in range(n):
            if overdue[k] == 0:
                f.say(k, "0", '[0, "0"]')
            else:
                f.say(k, str(worsts[k]), f'[{overdue[k]}, "{c.overdue_total[k]}"]')
        factors.append(f)

    # last touch
    if c.touches_known:
        touched = c.last_touch != NONE
        days = day - c.last_touch
        sub = np.where(touched, 100.0 - _linear(days.astype(np.float64), cfg.touch_fresh_days,
                                                cfg.touch_stale_days), 0.0)
        f = _Factor("last_touch", np.ones(n, bool), sub)
        touches, ago = c.last_touch.tolist(), days.tolist()
        for k in range(n):
            if touches[k] == NONE:
                f.say(k, "null", "[]")
            else:
                f.say(k, str(ago[k]), f'["{date.fromordinal(touches[k]).isoformat()}"]')
        factors.append(f)

    # champion
    if c.champions_known:
        f = _Factor("champion", np.ones(n, bool), np.where(c.champion, 100.0, 0.0))
        for k, champion in enumerate(c.champion.tolist()):
            f.say(k, "true" if champion else "false", "[]")
        factors.append(f)

    # renewal
    mask = c.renewal != NONE
    days = c.renewal - day
    sub = np.where(days < 0, 50.0, _linear(days.astype(np.float64), 0, cfg.renewal_horizon_days))
    f = _Factor("renewal", mask, sub)
    ahead, renewals = days.tolist(), c.renewal.tolist()
    for k in np.flatnonzero(mask).tolist():
        f.say(k, str(ahead[k]), f'["{date.fromordinal(renewals[k]).isoformat()}"]')
    factors.append(f)

    # the weighted mean over the factors with data (and a weight), in FACTOR_NAMES order
    factors = [f for f in factors if weights[f.name] > 0]
    factors.sort(key=lambda f: FACTOR_NAMES.index(f.name))
    total = np.zeros(n)
    acc = np.zeros(n)
    for f in factors:
        w = weights[f.name]
        total = total + np.where(f.mask, w, 0.0)
        acc = acc + np.where(f.mask, w * f.sub, 0.0)
    scored = total > 0
    raw = np.divide(acc, total, out=np.full(n, 50.0), where=scored)
    score = np.clip(np.rint(raw), 0, 100).astype(np.int64)  # rint: half to even, as Python's round
    impacts = []
    for f in factors:
        w = weights[f.name]
        exact = np.divide(w, total, out=np.zeros(n), where=scored) * (f.sub - 50.0)
        impacts.append(np.where(f.mask & scored, exact, np.nan))

    # the forgotten zone: no use for `forgotten_days` (new accounts get that long first)
    forgotten = usage & (day - c.start >= cfg.forgotten_days) & (
        (c.last_active == NONE) | (day - c.last_active >= cfg.forgotten_days))
    cap = max(0, cfg.bands.watch - 1)
    lost = np.where(forgotten, np.maximum(0, score - cap), 0)
    score = np.where(forgotten, np.minimum(score, cap), score)
    danger = forgotten | (usage & (eng <= threshold)) if threshold is not None else forgotten
    customer = (c.start <= day) & ((c.churn == NONE) | (day < c.churn))
    peer = customer & usage & (c.user_days > 0)

    # drivers: biggest impact first, then by name; the forgotten zone leads
    rounded = [np.array(_rounded(i, 1), dtype=np.float64) for i in impacts]
    order = np.argsort(np.array([f.name for f in factors])) if factors else np.zeros(0, np.int64)
    if factors:
        matrix = np.stack([rounded[j] for j in order.tolist()], axis=1)  # columns by name
        key = np.where(np.isnan(matrix), np.inf, -np.abs(matrix))
        ranks = np.argsort(key, axis=1, kind="stable").tolist()
        present = (~np.isnan(matrix)).sum(axis=1).tolist()
        # each factor's drivers, complete, then each account's in name order
        drivers = list(zip(*(
            [None if p is None else p[0] + repr(i) + p[1]
             for p, i in zip(factors[j].pieces, m.tolist(), strict=True)]
            for j, m in zip(order.tolist(), matrix.T, strict=True)
        ), strict=True))
    zone_facts = f"[{cfg.forgotten_days}, {lookback_days(cfg)}, {cap}]"
    scores = score.tolist()
    bands = [band_of(s, cfg) for s in scores]
    forgotten_list, danger_list, peer_list, mau_known = (
        forgotten.tolist(), danger.tolist(), peer.tolist(), has_mau.tolist())
    last_list, lost_list = c.last_active.tolist(), lost.tolist()
    rows: list[SnapshotRow] = []
    for k in range(n):
        parts: list[str] = []
        if forgotten_list[k]:
            last = last_list[k]
            used = date.fromordinal(last).isoformat() if last != NONE else None
            lk = float(lost_list[k])
            head, tail = _fragment("forgotten_zone", "null" if used is None else f'"{used}"', zone_facts)
            parts.append(head + repr(-lk if lk else 0.0) + tail)
        if factors:
            mine = drivers[k]
            parts.extend([mine[j] for j in ranks[k][:present[k]]])
        rows.append((
            c.pk[k], scores[k], bands[k], danger_list[k], forgotten_list[k],
            stick_list[k] if mau_known[k] else None, eng_list[k] if c.usage_known else None, peer_list[k],
            "[" + ", ".join(parts) + "]",
        ))
    return rows, bands
