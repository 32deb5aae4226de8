"""The scorecard of `health.py`, a chunk of accounts at a time, on columns: what a whole-book run uses.

`score_account` reads one account's evidence and builds its drivers one by one: about 60 µs an
account, most of it Python objects and JSON, where the arithmetic is a few dozen float operations.
Here every factor is computed for the whole chunk with NumPy, and the snapshot rows (`SnapshotRow`,
drivers as the JSON `store.drivers_json` writes: value, impact and the facts their sentences are
written from) are assembled from per-factor pieces. The result is the same, bit for bit
(tests/core/test_bulk.py checks it against `score_account` on generated books):

- floats go through the same operations in the same order (a factor left out adds 0.0, which
  changes no sum), and Python's own `round` decides where NumPy's could differ;
- values and facts are written as `json.dumps` writes them, each driver in one format operation,
  and the strings a chunk repeats (impacts, days) written once each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np

from bot.config import HealthConfig
from bot.core.health import FACTOR_NAMES, Peers, lookback_days, ticket_load
from bot.core.model import HealthInputs, UsageWindow

Array = np.ndarray[Any, Any]
NONE = 0  # an ordinal no day has: "no date" in the date columns (date.min is ordinal 1)


@dataclass(frozen=True)
class UsageColumns:
    """The usage windows of many accounts as columns, by account primary key (ascending): what a run
    scores (not the active days, which only a check-in email's facts use).

    Accounts without a row have no use (zeros, no monthly users, never active). `known` is False when
    the book has no usage at all: then no account has a usage factor or can be forgotten."""

    known: bool
    pk: Array
    user_days: Array
    prev_user_days: Array
    peak_dau: Array
    mau: Array  # -1: no user-level rows
    last_active: Array  # ordinal, NONE for none

    @classmethod
    def of_rows(cls, rows: Sequence[Sequence[Any]], known: bool = True) -> UsageColumns:
        """From (pk, user-days, before, peak, monthly users or -1, last active ordinal or 0) rows, in
        any order (None read as 0)."""
        n = len(rows)
        cols = [np.fromiter((r[i] or 0 for r in rows), np.int64, n) for i in range(6)]
        order = np.argsort(cols[0], kind="stable")
        return cls(known, *(col[order] for col in cols))

    def take(self, pks: Sequence[int]) -> UsageColumns:
        """The windows of these accounts, in this order."""
        want = np.asarray(pks, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.pk, want), max(len(self.pk) - 1, 0))
        found = self.pk[at] == want if len(self.pk) else np.zeros(len(want), bool)

        def pick(col: Array, default: int) -> Array:
            if not len(self.pk):
                return np.full(len(want), default, np.int64)
            return np.where(found, col[at], default)

        return UsageColumns(self.known, want, pick(self.user_days, 0), pick(self.prev_user_days, 0),
                            pick(self.peak_dau, 0), pick(self.mau, -1), pick(self.last_active, NONE))

    def part(self, lo: int, hi: int) -> UsageColumns:
        """The windows of the accounts with primary keys from lo to hi (both included)."""
        a, b = np.searchsorted(self.pk, lo, "left"), np.searchsorted(self.pk, hi, "right")
        return UsageColumns(self.known, *(col[a:b] for col in (
            self.pk, self.user_days, self.prev_user_days, self.peak_dau, self.mau, self.last_active)))

    @classmethod
    def concat(cls, parts: Sequence[UsageColumns]) -> UsageColumns:
        """The windows of consecutive ranges of accounts (each part's keys below the next one's)."""
        fields = ("pk", "user_days", "prev_user_days", "peak_dau", "mau", "last_active")
        return cls(any(p.known for p in parts),
                   *(np.concatenate([getattr(p, f) for p in parts]) for f in fields))

    def windows(self) -> dict[int, UsageWindow]:
        """As one `UsageWindow` per account with a row (active days 0: a run does not read them)."""
        return {pk: UsageWindow(ud, prev, 0, peak, None if mau < 0 else mau,
                                None if last == NONE else date.fromordinal(last))
                for pk, ud, prev, peak, mau, last in zip(*(col.tolist() for col in (
                    self.pk, self.user_days, self.prev_user_days, self.peak_dau, self.mau,
                    self.last_active)), strict=True)}


def engagements(seats: Array, usage: UsageColumns | Columns) -> Array:
    """`health.engagement_of` of each account: user-days over seats, else monthly users, else peak
    daily users, rounded to hundredths as Python's `round` does; 0.0 when none of them."""
    base = np.where(seats > 0, seats, np.where(usage.mau > 0, usage.mau, usage.peak_dau))
    raw = np.divide(usage.user_days.astype(np.float64), base, out=np.zeros(len(seats)), where=base > 0)
    return np.array(_rounded(raw, 2), dtype=np.float64)


def peer_engagements(usage: UsageColumns, pk: Array, start: Array, churn: Array, seats: Array,
                     as_of: date) -> list[float]:
    """The engagement of the day's peers: the customers on the day with some use in the window."""
    if not usage.known:
        return []
    day = as_of.toordinal()
    mine = usage.take(pk.tolist())
    peer = (start <= day) & ((churn == NONE) | (day < churn)) & (mine.user_days > 0)
    return engagements(seats, mine)[peer].tolist()


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

    def add_usage(self, usage: UsageColumns) -> None:
        """The accounts' usage windows, from those of the whole book."""
        self.usage_known = usage.known
        if usage.known:
            mine = usage.take(self.pk)
            self.user_days, self.prev_user_days = mine.user_days, mine.prev_user_days
            self.peak_dau, self.mau, self.last_active = mine.peak_dau, mine.mau, mine.last_active

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


class _Factor:
    """One factor over the chunk: where it reads (mask), its sub-scores, and each account's driver value
    and the facts its explanation is written from, both as JSON (None where the factor does not read)."""

    def __init__(self, name: str, mask: Array, sub: Array) -> None:
        self.name = name
        self.mask = mask
        self.sub = np.where(mask, sub, 0.0)
        self.values: list[str | None] = [None] * len(mask)
        self.facts: list[str | None] = [None] * len(mask)

    def at(self, where: list[int], values: list[str], facts: list[str]) -> None:
        """The drivers of the accounts at `where` (in that order)."""
        for k, v, x in zip(where, values, facts, strict=True):
            self.values[k], self.facts[k] = v, x

    def drivers(self, impacts: list[float]) -> list[str | None]:
        """Each account's driver as `store.drivers_json` writes it (its impact as `repr` writes it:
        impacts are rounded to tenths, so the few hundred distinct ones are written once)."""
        head = f'{{"f": "{self.name}", "v": '
        written: dict[float, str] = {}
        out: list[str | None] = []
        for v, i, x in zip(self.values, impacts, self.facts, strict=True):
            if v is None:
                out.append(None)
                continue
            r = written.get(i) if i else None  # 0.0 and -0.0 are one key, and are written apart
            if r is None:
                r = repr(i)
                if i:
                    written[i] = r
            out.append(f'{head}{v}, "i": {r}, "x": {x}}}')
        return out


class _Days:
    """Days written as JSON strings, each distinct day once (a chunk's accounts share most of them)."""

    def __init__(self) -> None:
        self.written: dict[int, str] = {}

    def __call__(self, ordinal: int) -> str:
        text = self.written.get(ordinal)
        if text is None:
            text = self.written[ordinal] = f'"{date.fromordinal(ordinal).isoformat()}"'
        return text


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
    eng = engagements(c.seats, c)
    eng_list = eng.tolist()
    threshold = peers.threshold
    factors: list[_Factor] = []
    iso_day = _Days()

    # engagement
    if len(peers.engagements) and c.usage_known:
        sorted_peers = np.array(peers.engagements)
        below = np.searchsorted(sorted_peers, eng, side="left")
        equal = np.searchsorted(sorted_peers, eng, side="right") - below
        f = _Factor("engagement", usage, 100.0 * (below + equal / 2) / len(sorted_peers))
        share = (100.0 * below / len(sorted_peers)).tolist()
        tail = f", {W}, {_json(threshold)}, {cfg.danger_quantile!r}]"
        f.values = [repr(e) for e in eng_list]
        f.facts = [f"[{1 if seats else 0}, {sh:.0f}{tail}"
                   for seats, sh in zip(c.seats.tolist(), share, strict=True)]
        factors.append(f)

    # usage trend
    prev = c.prev_user_days.astype(np.float64)
    mask = usage & (c.prev_user_days > 0)
    change = np.array(_rounded(np.divide(100.0 * (ud - prev), prev, out=np.zeros(n), where=mask), 1),
                      dtype=np.float64)
    sub = np.where(change <= 0, 50.0 * _linear(change, cfg.trend_floor_pct, 0) / 100,
                   50.0 + 50.0 * _linear(change, 0, cfg.trend_ceiling_pct) / 100)
    f = _Factor("usage_trend", mask, sub)
    where = np.flatnonzero(mask).tolist()
    f.at(where, [repr(v) for v in change[where].tolist()], [f"[{W}]"] * len(where))
    factors.append(f)

    # stickiness (and the snapshot's stickiness column)
    stick_raw = np.divide(ud / W, c.mau, out=np.zeros(n), where=has_mau)
    stick = np.array(_rounded(stick_raw, 3), dtype=np.float64)
    f = _Factor("stickiness", has_mau, _linear(stick, 0, cfg.stickiness_target))
    stick_list = stick.tolist()
    where = np.flatnonzero(has_mau).tolist()
    f.at(where, [repr(stick_list[k]) for k in where], [f"[{cfg.stickiness_target!r}]"] * len(where))
    factors.append(f)

    # seat utilisation
    mask = usage & (c.seats > 0)
    users = np.where(c.mau >= 0, c.mau, c.peak_dau)
    util = np.array(_rounded(np.divide(users, c.seats, out=np.zeros(n), where=mask), 3), dtype=np.float64)
    f = _Factor("seat_utilisation", mask, _linear(util, 0, cfg.seat_target))
    where = np.flatnonzero(mask).tolist()
    f.at(where, [repr(u) for u in util[where].tolist()],
         [f"[{u}, {1 if m >= 0 else 0}, {s}]" for u, m, s in zip(
             users[where].tolist(), c.mau[where].tolist(), c.seats[where].tolist(), strict=True)])
    factors.append(f)

    # NPS
    mask = c.nps_n > 0
    nps_n = np.maximum(c.nps_n, 1)
    nps_arr = np.rint(100 * (c.nps_promoters - c.nps_detractors) / nps_n)  # as Python's round: half to even
    sub = 0.5 * c.nps_latest * 10 + 0.5 * (nps_arr + 100) / 2
    sub = np.where(c.nps_latest <= 6, np.minimum(sub, 40.0), sub)
    f = _Factor("nps", mask, sub)
    where = np.flatnonzero(mask).tolist()
    f.at(where,
         [f'{{"latest": {latest}, "nps": {score}, "responses": {count}}}' for latest, score, count in zip(
             c.nps_latest[where].tolist(), nps_arr[where].astype(np.int64).tolist(), c.nps_n[where].tolist(),
             strict=True)],
         [f"[{iso_day(d)}, {cfg.nps_days}]" for d in c.nps_latest_day[where].tolist()])
    factors.append(f)

    # tickets
    if c.tickets_known:
        load = np.array(_rounded(np.array(c.tickets_load, dtype=np.float64), 2), dtype=np.float64)
        none_open = c.tickets_open == 0
        f = _Factor("tickets", np.ones(n, bool),
                    np.where(none_open, 100.0, 100.0 - _linear(load, 0, cfg.ticket_zero_load)))
        opened = c.tickets_open.tolist()
        f.values = ["0" if o == 0 else repr(v) for o, v in zip(opened, load.tolist(), strict=True)]
        f.facts = [f"[{o}, {u}, {b}]" for o, u, b in zip(
            opened, c.tickets_urgent.tolist(), c.tickets_bugs.tolist(), strict=True)]
        factors.append(f)

    # invoices
    if c.invoices_known:
        none_due = c.overdue_n == 0
        sub = np.where(none_due, 100.0, 40.0 * (1 - _linear(c.overdue_worst.astype(np.float64), 0,
                                                             cfg.invoice_zero_days) / 100))
        f = _Factor("invoices", np.ones(n, bool), sub)
        overdue = c.overdue_n.tolist()
        f.values = ["0" if o == 0 else str(v) for o, v in zip(overdue, c.overdue_worst.tolist(), strict=True)]
        f.facts = ['[0, "0"]' if o == 0 else f'[{o}, "{total}"]'
                   for o, total in zip(overdue, c.overdue_total, strict=True)]
        factors.append(f)

    # last touch
    if c.touches_known:
        touched = c.last_touch != NONE
        ago = day - c.last_touch
        sub = np.where(touched, 100.0 - _linear(ago.astype(np.float64), cfg.touch_fresh_days,
                                                cfg.touch_stale_days), 0.0)
        f = _Factor("last_touch", np.ones(n, bool), sub)
        touches = c.last_touch.tolist()
        f.values = ["null" if t == NONE else str(a) for t, a in zip(touches, ago.tolist(), strict=True)]
        f.facts = ["[]" if t == NONE else f"[{iso_day(t)}]" for t in touches]
        factors.append(f)

    # champion
    if c.champions_known:
        f = _Factor("champion", np.ones(n, bool), np.where(c.champion, 100.0, 0.0))
        f.values = ["true" if champion else "false" for champion in c.champion.tolist()]
        f.facts = ["[]"] * n
        factors.append(f)

    # renewal
    mask = c.renewal != NONE
    ahead = c.renewal - day
    sub = np.where(ahead < 0, 50.0, _linear(ahead.astype(np.float64), 0, cfg.renewal_horizon_days))
    f = _Factor("renewal", mask, sub)
    where = np.flatnonzero(mask).tolist()
    f.at(where, [str(a) for a in ahead[where].tolist()],
         [f"[{iso_day(r)}]" for r in c.renewal[where].tolist()])
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

    # drivers: biggest impact first, then by name
    rounded = [np.array(_rounded(i, 1), dtype=np.float64) for i in impacts]
    order = np.argsort(np.array([f.name for f in factors])) if factors else np.zeros(0, np.int64)
    ranked: list[list[str]] = [[] for _ in range(n)]
    if factors:
        matrix = np.stack([rounded[j] for j in order.tolist()], axis=1)  # columns by name
        key = np.where(np.isnan(matrix), np.inf, -np.abs(matrix))
        present = (~np.isnan(matrix)).sum(axis=1).tolist()
        # each factor's drivers, complete, in name order; then each account's biggest impact first
        # (absent ones sort last): a row's first `present` are its drivers
        table = np.empty(matrix.shape, dtype=object)
        for column, j in enumerate(order.tolist()):
            table[:, column] = factors[j].drivers(matrix[:, column].tolist())
        by_impact = np.take_along_axis(table, np.argsort(key, axis=1, kind="stable"), axis=1).tolist()
        ranked = [row[:p] for row, p in zip(by_impact, present, strict=True)]
    # the cap is a driver too, with the points it took away, ranked among the others by them (set in
    # place on the few forgotten rows: a column of its own would cost every row)
    zoned = np.flatnonzero(forgotten)
    if len(zoned):
        took = lost[zoned].astype(np.float64)
        before = np.zeros(len(zoned), np.int64)  # drivers ahead of it: bigger, or as big and named first
        if factors:
            sizes = np.abs(matrix[zoned])  # absent ones are NaN, which compares false
            named_first = np.sort(np.array([f.name for f in factors])) < "forgotten_zone"
            before = ((sizes > took[:, None]) | ((sizes == took[:, None]) & named_first)).sum(axis=1)
        facts = f"[{cfg.forgotten_days}, {lookback_days(cfg)}, {cap}]"
        for k, at, lk, last in zip(zoned.tolist(), before.tolist(), took.tolist(),
                                   c.last_active[zoned].tolist(), strict=True):
            value = "null" if last == NONE else iso_day(last)
            ranked[k].insert(at, f'{{"f": "forgotten_zone", "v": {value}, "i": {-lk if lk else 0.0!r}, '
                                 f'"x": {facts}}}')
    scores = score.tolist()
    band = np.where(score >= cfg.bands.healthy, 2, np.where(score >= cfg.bands.watch, 1, 0))
    bands: list[str] = np.array(("at_risk", "watch", "healthy"), dtype=object)[band].tolist()  # band_of
    forgotten_list, danger_list, peer_list, mau_known = (
        forgotten.tolist(), danger.tolist(), peer.tolist(), has_mau.tolist())
    stick_out = [s if known else None for s, known in zip(stick_list, mau_known, strict=True)]
    eng_out = eng_list if c.usage_known else [None] * n
    rows: list[SnapshotRow] = list(zip(
        c.pk, scores, bands, danger_list, forgotten_list, stick_out, eng_out, peer_list,
        ["[" + ", ".join(parts) + "]" for parts in ranked], strict=True))
    return rows, bands
