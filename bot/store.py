"""The book on disk: reads that return core values, and the writes scoring needs.

Every read is set-based — one query per kind of evidence for the whole book (or one account), never
a Python loop over usage rows — so scoring 10,000 accounts is a handful of aggregate scans.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache, lru_cache, partial
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
from rapidfuzz import fuzz, process
from sqlalchemy import (
    BigInteger,
    BindParameter,
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

import bot.db.sqlite_adapters  # noqa: F401  (raw executemany on SQLite stores what SQLAlchemy would)
from bot.config import HealthConfig
from bot.core.bulk import Columns, SnapshotRow, UsageColumns
from bot.core.digest import State
from bot.core.health import Peers, explain, lookback_days, ticket_load_of
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
from bot.db import models as m
from bot.db.types import copy_types, day_number
from bot.errors import BadInput

A = m.table_of(m.Account)
C = m.table_of(m.Contact)
U = m.table_of(m.UsageDaily)
UU = m.table_of(m.UsageUser)
N = m.table_of(m.NpsResponse)
T = m.table_of(m.Ticket)
I = m.table_of(m.Invoice)  # noqa: E741
R = m.table_of(m.MrrMonth)
TO = m.table_of(m.Touch)
TM = m.table_of(m.TeamMember)
S = m.table_of(m.HealthSnapshot)
SR = m.table_of(m.ScoreRun)
RV = m.table_of(m.Review)
SD = m.table_of(m.SlackDelivery)


# What an Account holds, in its field order (not `updated_at`: converting it costs and nothing reads it).
ACCOUNT_COLUMNS = (
    A.c.id, A.c.account_id, A.c.name, A.c.start_date, A.c.domain, A.c.tier, A.c.tags, A.c.owner_email,
    A.c.mrr, A.c.seats, A.c.renewal_date, A.c.churn_date, A.c.churn_reason,
)
_ACCOUNT_WIDTH = len(ACCOUNT_COLUMNS)


def _account(row: Sequence[Any]) -> Account:
    """An Account from the first columns of a row selected with ACCOUNT_COLUMNS first."""
    pk, account_id, name, start, domain, tier, tags, owner, mrr, seats, renewal, churn, reason = (
        row[:_ACCOUNT_WIDTH]
    )
    return Account(pk, account_id, name, start, domain, tier, _tags(tags), owner, mrr, seats, renewal, churn,
                   reason)


@lru_cache(maxsize=4096)
def _tags(text: str | None) -> tuple[str, ...]:
    """The tags of an account (stored ';'-joined); a book has few distinct sets, shared as one tuple each."""
    return tuple(t for t in (text or "").split(";") if t)


# The stored score of a day, in the order _score reads it (after the account's columns, or after the pk).
SCORE_COLUMNS = (
    S.c.score, S.c.band, S.c.danger_zone, S.c.forgotten_zone, S.c.stickiness, S.c.engagement, S.c.drivers,
)
# Drivers are stored as JSON in one of two forms, told apart by their start:
# - as scored (`snapshot_row`, `bulk`): '[{"f": factor, "v": value, "i": impact, "x": [facts]}, …]', the
#   explanation written from the facts when read (`health.explain`): a third of the bytes;
# - given as text (and by earlier versions): '[{"factor": …, "value": …, "impact": …, "explanation": …}, …]'.
_FORMS = (('[{"f": ', '}, {"f": '), ('[{"factor": ', '}, {"factor": '))  # (start, between two drivers)


def _driver(piece: dict[str, Any]) -> Driver:
    if "f" in piece:
        factor, value, impact, facts = piece["f"], piece["v"], piece["i"], tuple(piece["x"])
        return Driver(factor, value, impact, explain(factor, value, impact, facts), facts)
    return Driver(**piece)


def _drivers(text: str, known: dict[str, Driver]) -> tuple[Driver, ...]:
    """The drivers of a stored score: the JSON list `snapshot_row` wrote, back as Driver values.

    Drivers repeat across accounts (a whole book of 100,000 has about 800,000 drivers, 50,000 of them
    distinct), so one read keeps one (frozen) Driver per distinct JSON object in `known` and parses each
    once. The list is cut between drivers where a '"' outside a JSON string proves the cut is structural;
    a piece that is not a whole driver object (text written some other way) falls back to parsing all.
    """
    if text == "[]":
        return ()
    for start, between in _FORMS:
        if text.startswith(start) and text.endswith("}]"):
            parts = text[len(start):-2].split(between)
            try:
                return tuple(map(known.__getitem__, parts))  # the usual case: every driver seen already
            except KeyError:
                pass
            head = start[1:]
            out: list[Driver] = []
            for part in parts:
                driver = known.get(part)
                if driver is None:
                    try:
                        driver = _driver(json.loads(head + part + "}"))
                    except (ValueError, TypeError, KeyError):
                        break
                    known[part] = driver
                out.append(driver)
            else:
                return tuple(out)
            break
    return tuple(_driver(d) for d in json.loads(text))


def _score(row: Sequence[Any], at: int, account_id: str, name: str, known: dict[str, Driver],
           previous: int | None = None) -> HealthScore:
    """A HealthScore from SCORE_COLUMNS starting at row[at]."""
    score, band, danger, forgotten, stickiness, engagement, drivers = row[at:at + 7]
    return HealthScore(account_id, name, score, band, danger, forgotten, stickiness, engagement,
                       _drivers(drivers, known), previous)


@dataclass(frozen=True)
class PkRange:
    """Accounts by primary key, both ends included: one chunk of a whole-book run."""

    lo: int
    hi: int
    accounts: int = 0  # how many there are (as `Book.pk_ranges` counted them)


Pks = Sequence[int] | PkRange | None
# pk, start, churn (0: none) and seats (0: none) of every account, as columns of ordinals and counts
PeerColumns = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]


@dataclass(frozen=True)
class AccountColumns:
    """Accounts in key order as a (5, accounts) array: pk, start, churn, seats and renewal, as
    ordinals and counts (0: none). A whole-book run reads them once, for the peers and every range."""

    rows: np.ndarray[Any, Any]

    @property
    def peers(self) -> PeerColumns:
        pk, start, churn, seats, _ = self.rows
        return pk, start, churn, seats

    def part(self, span: PkRange) -> np.ndarray[Any, Any]:
        """The columns of the accounts in a range."""
        lo, hi = np.searchsorted(self.rows[0], (span.lo, span.hi + 1))
        return self.rows[:, lo:hi]


@dataclass(frozen=True)
class UsageRead:
    """The usage windows of a day, already read: `windows` is None when the book has no usage rows."""

    windows: dict[int, UsageWindow] | None


def _where_pk(column: Any, pks: Pks | Sequence[BindParameter[int]]) -> Any:
    if pks is None:
        return True
    if isinstance(pks, PkRange):
        return column.between(pks.lo, pks.hi)
    if len(pks) == 1:
        return column == pks[0]
    return column.in_(pks)


def _day_end(as_of: date) -> datetime:
    return datetime.combine(as_of + timedelta(days=1), time(), tzinfo=UTC)


def _open_tickets(as_of: date) -> tuple[Any, ...]:
    """Tickets open at the end of the day."""
    return _open_at(_day_end(as_of))


def _open_at(end: Any) -> tuple[Any, ...]:
    """Tickets open at an instant (a datetime, or a bind parameter for one)."""
    return T.c.opened_at < end, or_(T.c.closed_at.is_(None), T.c.closed_at >= end)


def _overdue(as_of: date | BindParameter[date]) -> tuple[Any, ...]:
    """Invoices past due and unpaid on the day."""
    return I.c.due_date < as_of, or_(I.c.paid_date.is_(None), I.c.paid_date > as_of)


class _Card(NamedTuple):
    usage: Any
    evidence: Any


# The card's other reads, as `_card_statements`' are: built once, with bind parameters
_ACCOUNT_BY_ID = select(*ACCOUNT_COLUMNS).where(A.c.account_id == bindparam("q"))
_SCORE_BEFORE = (select(S.c.score).where(S.c.account_pk == bindparam("pk"), S.c.as_of < bindparam("as_of"))
                 .order_by(S.c.as_of.desc()).limit(1))
_TEAM = select(TM.c.member, TM.c.function).where(TM.c.account_pk == bindparam("pk")).order_by(
    TM.c.function, TM.c.member)
_LATEST_TOUCH = (select(TO).where(TO.c.account_pk == bindparam("pk"), TO.c.day <= bindparam("as_of"))
                 .order_by(TO.c.day.desc(), TO.c.id.desc()).limit(1))
RUN_COMPUTED_AT = select(SR.c.computed_at).where(SR.c.as_of == bindparam("as_of"))


@cache
def _card_statements(dialect: str) -> _Card:
    """The health card's two reads of one account, built once per engine with bind parameters for the
    account and the days: `pk` and `UsageDays`' fields; `since` (NPS answers after it), `as_of` and
    `end` (its end, for open tickets). Building and keying them for each card cost about a fifth of it.

    `usage`: the account's usage windows (as `_usage_windows` reads them) with its monthly users in
    the same round trip. `evidence`: NPS answers, open tickets, overdue invoices, the last touch and a
    champion, in one `UNION ALL` of text columns (kind, a, b, the NPS answers' import order): a card on
    PostgreSQL pays a round trip per statement."""
    pk: BindParameter[int] = bindparam("pk")
    days = UsageDays(*(bindparam(name) for name in UsageDays._fields))
    aggregates, source, where = _usage_windows(dialect, days, [pk])
    aggregates.append(select(func.count(func.distinct(UU.c.user_id)))
                      .where(UU.c.account_pk == pk, *days.users_in_window())
                      .scalar_subquery())
    usage = select(*aggregates).select_from(source).where(where).group_by(aggregates[0])
    as_of: BindParameter[date] = bindparam("as_of")
    none = cast(null(), String)
    evidence = union_all(
        select(literal("nps"), cast(N.c.day, String), cast(N.c.score, String), N.c.id)
        .where(N.c.account_pk == pk, N.c.day > bindparam("since"), N.c.day <= as_of),
        select(literal("ticket"), T.c.priority, T.c.kind, literal(0))
        .where(T.c.account_pk == pk, *_open_at(bindparam("end"))),
        select(literal("invoice"), cast(I.c.amount, String), cast(I.c.due_date, String), literal(0))
        .where(I.c.account_pk == pk, *_overdue(as_of)),
        select(literal("touch"), cast(func.max(TO.c.day), String), none, literal(0))
        .where(TO.c.account_pk == pk, TO.c.day <= as_of),
        select(literal("champion"), none, none, literal(0))
        .where(exists().where(C.c.role == "champion", C.c.account_pk == pk)),
    )
    return _Card(usage, evidence)


class UsageDays(NamedTuple):
    """The days a usage read is bounded by: the day itself, and the first days (excluded) of its
    window, of the window before it and of the lookback. Dates, or bind parameters for them in a
    statement built once (`_card_statements`)."""

    as_of: Any
    window: Any
    before: Any
    lookback: Any

    @classmethod
    def of(cls, as_of: date, cfg: HealthConfig) -> UsageDays:
        window = cfg.window_days
        return cls(as_of, as_of - timedelta(days=window), as_of - timedelta(days=2 * window),
                   as_of - timedelta(days=lookback_days(cfg)))

    def users_in_window(self) -> tuple[Any, ...]:
        """User-level rows of the window: who the monthly (distinct) users are counted from."""
        return UU.c.day > self.window, UU.c.day <= self.as_of


def _usage_windows(
    dialect: str, days: UsageDays, pks: Pks | Sequence[BindParameter[int]]
) -> tuple[list[Any], Any, Any]:
    """The select list (pk, user-days, user-days before, active days, peak, last active day), its
    FROM and its WHERE: each account's usage windows in one aggregate, the fastest way each engine
    has (10k accounts x 365 days, whole book)."""
    as_of, w, p, lb = days
    if dialect == "sqlite":
        # Range seeks on usage_daily's primary key (account_pk, day): the last window's rows joined
        # and aggregated; the window before summed, and the last active day found (newest first,
        # up to the first), by correlated subqueries. Days are text in SQLite: asking each row of
        # the lookback which window it is in took five text comparisons a row, 0.32 s against 0.17.
        before, last = U.alias("before"), U.alias("last")
        prev_sum = (select(func.sum(before.c.active_users))
                    .where(before.c.account_pk == A.c.id, before.c.day > p, before.c.day <= w)
                    .scalar_subquery())
        last_active = (select(last.c.day)
                       .where(last.c.account_pk == A.c.id, last.c.day > lb, last.c.day <= as_of,
                              last.c.active_users > 0)
                       .order_by(last.c.day.desc()).limit(1).scalar_subquery())
        return ([A.c.id, func.sum(U.c.active_users), prev_sum,
                 func.sum(case((U.c.active_users > 0, 1), else_=0)), func.max(U.c.active_users),
                 last_active],
                A.outerjoin(U, and_(U.c.account_pk == A.c.id, U.c.day > w, U.c.day <= as_of)),
                _where_pk(A.c.id, pks))
    # PostgreSQL: one pass over the lookback, each row summed into its window. Reading the whole
    # book it scans the days with parallel workers (0.13 s, against 0.19 driven from the accounts
    # and 0.37 with the subqueries above); for a range of accounts it seeks from them (see
    # `usage_columns`). FILTER, not CASE: a row outside a window is then not added at all (0.20 s
    # of the server against 0.25, serial).
    recent = U.c.day > w
    in_window = and_(U.c.day > lb, U.c.day <= as_of)
    key: Any = U.c.account_pk
    source: Any = U
    where: Any = in_window
    if pks is not None:
        key, source = A.c.id, A.join(U, and_(U.c.account_pk == A.c.id, in_window))
        where = _where_pk(A.c.id, pks)
    return ([key,
             func.sum(U.c.active_users).filter(recent),
             func.sum(U.c.active_users).filter(U.c.day > p, U.c.day <= w),
             func.count().filter(recent, U.c.active_users > 0),
             func.max(U.c.active_users).filter(recent),
             func.max(U.c.day).filter(U.c.active_users > 0)],
            source, where)


# An NPS answer as one number that orders as (day, id) do, its score (0-10, as the importer admits) in
# the lowest 4 bits: the day's ordinal (under 2^22 up to the year 9999) above 31 bits of id (an INTEGER
# key), 57 bits in all. The largest of an account's is its latest answer (`Book._nps_tally`).
_NPS_ID_SHIFT, _NPS_DAY_SHIFT, _NPS_SCORE_MASK = 4, 35, 15


def _nps_key() -> Any:
    def wide(value: Any) -> Any:
        return cast(value, BigInteger)

    def shifted(value: Any, bits: int) -> Any:  # by an integer constant: PostgreSQL has no bigint << bigint
        return wide(value).op("<<")(literal_column(str(bits)))

    return shifted(day_number(N.c.day), _NPS_DAY_SHIFT).op("|")(shifted(N.c.id, _NPS_ID_SHIFT)).op("|")(
        wide(N.c.score))


def _int_columns(rows: Sequence[Any], width: int) -> np.ndarray[Any, Any]:
    """Rows of `width` integers (no NULLs) as a (width, rows) array: the values stream into NumPy as
    they are, with no Python expression per value."""
    return np.fromiter(chain.from_iterable(rows), np.int64, len(rows) * width).reshape(-1, width).T


def _has_rows(conn: Connection, table: Any) -> bool:
    return bool(conn.execute(select(exists().select_from(table))).scalar())


_drivers_json = json.JSONEncoder(default=str).encode  # what json.dumps(..., default=str) writes, made once
# in the order of a `SnapshotRow` followed by the day and the run's time, so a stored row is the scored
# row with two values added at its end (`row + tail`, no unpacking)
_SNAPSHOT_COLUMNS = ("account_pk", "score", "band", "danger_zone", "forgotten_zone", "stickiness",
                     "engagement", "peer", "drivers", "as_of", "computed_at")


class SnapshotWriter:
    """Scored accounts into `health_snapshots`, inside `Book.snapshot_writer`'s transaction.

    Straight through the driver: `executemany` on SQLite, a binary `COPY` on PostgreSQL (the day's rows were
    just deleted, so nothing can conflict). The values are converted as SQLAlchemy would store them:
    `computed_at` naive UTC, the drivers as the JSON list `_drivers` reads back."""

    def __init__(self, conn: Connection, as_of: date, now: datetime) -> None:
        self.conn = conn
        self.as_of = as_of
        self.computed_at = now.astimezone(UTC).replace(tzinfo=None)
        self.accounts = 0
        self.threshold: float | None = None  # the day's danger-zone line, recorded with the run
        self.types: list[int] = []  # PostgreSQL: the columns' type OIDs, for a binary COPY
        self.copy = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"
        columns = ", ".join(_SNAPSHOT_COLUMNS)
        if self.copy:  # binary: no text to write and escape here (bot.db.types.copy_types)
            self.sql = f"COPY {S.name} ({columns}) FROM STDIN (FORMAT BINARY)"
            self.types = copy_types(conn.connection.driver_connection, S.name, _SNAPSHOT_COLUMNS)
        else:
            marks = ", ".join("?" if conn.dialect.paramstyle == "qmark" else "%s" for _ in _SNAPSHOT_COLUMNS)
            self.sql = f"INSERT INTO {S.name} ({columns}) VALUES ({marks})"

    def write_rows(self, rows: Sequence[SnapshotRow]) -> int:
        """Add rows made by `snapshot_row` (in a worker process, say); returns how many."""
        if not rows:
            return 0
        tail = (self.as_of, self.computed_at)
        if self.copy:
            raw = self.conn.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(self.sql) as copy:  # type: ignore[union-attr]
                copy.set_types(self.types)
                for row in rows:
                    copy.write_row(row + tail)
        else:
            self.conn.exec_driver_sql(self.sql, [row + tail for row in rows])
        self.accounts += len(rows)
        return len(rows)




def snapshot_row(pk: int, s: HealthScore, peer: bool) -> SnapshotRow:
    return (pk, s.score, s.band, s.danger_zone, s.forgotten_zone, s.stickiness, s.engagement, peer,
            drivers_json(s.drivers))


def drivers_json(drivers: Sequence[Driver]) -> str:
    """Drivers as stored: by their facts where all have them (as scored), else with their texts."""
    if all(d.facts is not None for d in drivers):
        return _drivers_json([{"f": d.factor, "v": d.value, "i": d.impact, "x": d.facts} for d in drivers])
    return _drivers_json([d.to_dict() for d in drivers])


class Book:
    """One customer book in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._names_cache: tuple[tuple[Any, ...], list[_Name]] | None = None
        self._present: set[str] = set()  # tables known to hold rows (checked again while empty)

    @contextmanager
    def use(self, conn: Connection | None = None) -> Iterator[Connection]:
        """The given connection (one report, one connection), or a new one."""
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as new:
                yield new

    def _has(self, conn: Connection, table: Any) -> bool:
        """Whether the book has any rows of a kind: a factor without data is left out, not zero."""
        if table.name in self._present:
            return True
        if _has_rows(conn, table):
            self._present.add(table.name)
            return True
        return False

    def ping(self) -> bool:
        """True while the database answers (for load balancers' health checks)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            return True
        except Exception:
            return False

    # accounts -----------------------------------------------------------------------------------

    def accounts(self, pks: Sequence[int] | None = None) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*ACCOUNT_COLUMNS).where(_where_pk(A.c.id, pks)).order_by(A.c.account_id)
            )
            return [_account(r) for r in rows]

    @staticmethod
    def delete_accounts(conn: Connection, condition: Any) -> int:
        """Delete the accounts matching `condition` with everything of theirs; returns how many.

        The usage tables and the snapshots have no foreign key (see models), so no cascade: their rows
        go first, here."""
        doomed = select(A.c.id).where(condition)
        for keyed in (U, m.table_of(m.UsageUser), S):
            conn.execute(delete(keyed).where(keyed.c.account_pk.in_(doomed)))
        return conn.execute(delete(A).where(condition)).rowcount

    def _names(self, conn: Connection) -> list[_Name]:
        """Every account's name prepared for matching; rebuilt only when the accounts change."""
        stamp = tuple(conn.execute(select(func.count(), func.max(A.c.updated_at), func.max(A.c.id))).one())
        if self._names_cache is None or self._names_cache[0] != stamp:
            rows = conn.execute(select(A.c.id, A.c.name, A.c.account_id)).all()
            self._names_cache = (stamp, [_Name(r.id, r.name, r.account_id.casefold(),
                                               r.name.casefold(), _words(r.name)) for r in rows])
        return self._names_cache[1]

    def find_exact(self, query: str, conn: Connection | None = None) -> Account | None:
        """The account whose id or name is exactly this (case aside), if exactly one."""
        q = " ".join(query.split())
        if not q:
            return None
        with self.use(conn) as conn:
            row = conn.execute(_ACCOUNT_BY_ID, {"q": q}).first()
            if row is None:
                found = conn.execute(
                    select(*ACCOUNT_COLUMNS).where(func.lower(A.c.name) == q.lower()).limit(2)
                ).all()
                row = found[0] if len(found) == 1 else None
        return _account(row) if row is not None else None

    def resolve(self, query: str, conn: Connection | None = None) -> Account:
        """An account by id, exact name, unique word-prefix, or a clearly best fuzzy match."""
        q = " ".join(query.split())
        if not q:
            raise BadInput("give an account id or name")
        found = self.find_exact(q, conn)  # the usual case, answered by the database
        if found is not None:
            return found
        with self.engine.connect() as conn:
            names = self._names(conn)
        if not names:
            raise BadInput(f"no account {q!r}: the book is empty (import accounts or run keepwell demo)")
        low = q.casefold()
        exact = [n for n in names if low in (n.folded, n.folded_id)]
        if len(exact) == 1:
            return self.accounts([exact[0].pk])[0]
        prefixed = [n for n in names if any(w.startswith(low) for w in n.words)]
        if len(prefixed) == 1:
            return self.accounts([prefixed[0].pk])[0]
        choices = {n.pk: n.folded for n in names}
        display = {n.pk: n.name for n in names}
        ranked = process.extract(low, choices, scorer=fuzz.WRatio, limit=3)
        if (
            ranked and not prefixed and ranked[0][1] >= 90
            and (len(ranked) == 1 or ranked[0][1] - ranked[1][1] >= 5)
        ):
            return self.accounts([ranked[0][2]])[0]
        pool = [n.name for n in prefixed[:3]] or [display[r[2]] for r in ranked if r[1] >= 50]
        if pool:
            quoted = " or ".join(f"'{name}'" for name in pool[:3])
            if len(prefixed) > 1:
                raise BadInput(f"{q!r} matches several accounts; did you mean {quoted}?")
            raise BadInput(f"no account {q!r}; did you mean {quoted}?")
        raise BadInput(f"no account {q!r}, and nothing close to it")

    # health inputs ------------------------------------------------------------------------------

    def health_inputs(
        self, as_of: date, cfg: HealthConfig, pks: Pks = None,
        conn: Connection | None = None, *, usage_read: UsageRead | None = None,
    ) -> list[HealthInputs]:
        """Everything the scorecard reads, for every account (or the given ones), as of a day.

        `usage_read`: the day's usage windows when the caller has them already (a whole-book run
        reads them once, for the peers, before it reads the rest chunk by chunk)."""
        with self.use(conn) as conn:
            accounts = [_account(r) for r in conn.execute(
                select(*ACCOUNT_COLUMNS).where(_where_pk(A.c.id, pks)).order_by(A.c.account_id)
            )]
            if not accounts:
                return []
            if usage_read is None:
                usage_read = self.usage_read(as_of, cfg, pks, conn)
            usage = usage_read.windows
            nps = self._nps(conn, as_of, cfg, pks)
            tickets = self._open_tickets(conn, as_of, pks) if self._has(conn, T) else None
            invoices = self._overdue(conn, as_of, pks) if self._has(conn, I) else None
            touches_known = self._has(conn, TO)
            last_touch = self._last_touch(conn, as_of, pks) if touches_known else {}
            champions = self._champions(conn, pks) if self._has(conn, C) else None
        empty = UsageWindow()
        return [
            HealthInputs(
                account=a,
                usage=None if usage is None else usage.get(a.pk, empty),
                nps=tuple(nps.get(a.pk, ())),
                open_tickets=None if tickets is None else tuple(tickets.get(a.pk, ())),
                overdue_invoices=None if invoices is None else tuple(invoices.get(a.pk, ())),
                last_touch=last_touch.get(a.pk),
                touches_known=touches_known,
                has_champion=None if champions is None else a.pk in champions,
            )
            for a in accounts
        ]

    def account_inputs(
        self, account: Account, as_of: date, cfg: HealthConfig, conn: Connection | None = None
    ) -> HealthInputs:
        """`health_inputs` of one account already resolved, in two statements rather than eight, each
        built once (`_card_statements`)."""
        pk = account.pk
        with self.use(conn) as conn:
            usage = self.usage_read(as_of, cfg, [pk], conn).windows
            known = {t.name: self._has(conn, t) for t in (T, I, TO, C)}
            since = as_of - timedelta(days=cfg.nps_days)
            rows = conn.execute(_card_statements(conn.dialect.name).evidence,
                                {"pk": pk, "since": since, "as_of": as_of, "end": _day_end(as_of)}).all()
        nps: list[NpsResponse] = []
        tickets: list[OpenTicket] = []
        invoices: list[OverdueInvoice] = []
        last_touch: date | None = None
        champion = False
        # NPS answers by day, then import order (the last is the latest); the rest as they came
        for kind, a, b, _ in sorted(rows, key=lambda r: (r[1], r[3]) if r[0] == "nps" else ("", 0)):
            if kind == "nps":
                nps.append(NpsResponse(date.fromisoformat(a), int(b)))
            elif kind == "ticket":
                tickets.append(OpenTicket(a, b))
            elif kind == "invoice":
                invoices.append(OverdueInvoice(Decimal(a), date.fromisoformat(b)))
            elif kind == "touch":
                last_touch = None if a is None else date.fromisoformat(a)
            else:
                champion = True
        return HealthInputs(
            account=account,
            usage=None if usage is None else usage.get(pk, UsageWindow()),
            nps=tuple(nps),
            open_tickets=tuple(tickets) if known[T.name] else None,
            overdue_invoices=tuple(invoices) if known[I.name] else None,
            last_touch=last_touch,
            touches_known=known[TO.name],
            has_champion=champion if known[C.name] else None,
        )

    def score_columns(
        self, as_of: date, cfg: HealthConfig, pks: PkRange, usage: UsageColumns | None = None,
        conn: Connection | None = None, accounts: AccountColumns | None = None,
    ) -> Columns:
        """What `health_inputs` reads about a range of accounts, as the columns `bulk` scores (the usage
        windows when given; else `Columns.add_usage` adds them once read; the accounts themselves from
        `accounts` when the run has read them all, else here).

        The same evidence read the same way, aggregated per account as it arrives: no Python object
        per account or per row (tests/test_store.py checks it equals `Columns.of(health_inputs)`)."""
        with self.use(conn) as conn:
            columns = self._account_rows(conn, pks) if accounts is None else accounts.part(pks)
            keys = columns[0]
            pk = keys.tolist()
            at = {p: k for k, p in enumerate(pk)}
            n = len(pk)

            def place(rows: Sequence[Any], width: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
                """Rows led by an account's key as columns, and each row's position in the chunk (rows
                of an account added since the chunk's accounts were read are left out)."""
                got = _int_columns(rows, width)
                k = np.searchsorted(keys, got[0]) if n else np.zeros(len(got[0]), np.int64)
                known = keys[np.minimum(k, n - 1)] == got[0] if n else np.zeros(len(k), bool)
                return got[:, known], k[known]

            zeros = partial(np.zeros, n, np.int64)
            c = Columns(
                pk=pk, start=columns[1], churn=columns[2], seats=columns[3], renewal=columns[4],
                usage_known=False,
                user_days=zeros(), prev_user_days=zeros(), peak_dau=zeros(), mau=np.full(n, -1, np.int64),
                last_active=zeros(), nps_n=zeros(), nps_promoters=zeros(), nps_detractors=zeros(),
                nps_latest=zeros(), nps_latest_day=zeros(),
                tickets_known=self._has(conn, T), tickets_open=zeros(), tickets_urgent=zeros(),
                tickets_bugs=zeros(), tickets_load=[0.0] * n,
                invoices_known=self._has(conn, I), overdue_n=zeros(), overdue_worst=zeros(),
                overdue_total=[Decimal(0)] * n,
                touches_known=self._has(conn, TO), last_touch=zeros(),
                champions_known=self._has(conn, C), champion=np.zeros(n, bool),
            )
            if usage is not None:
                c.add_usage(usage)
            nps, answered = place(self._nps_tally(conn, as_of, cfg, pks), 6)
            c.nps_n[answered], c.nps_promoters[answered], c.nps_detractors[answered] = nps[1:4]
            c.nps_latest[answered], c.nps_latest_day[answered] = nps[4:]
            if c.tickets_known:
                kinds: dict[int, Counter[tuple[str, bool]]] = defaultdict(Counter)
                for p, priority, kind, count in conn.execute(
                    select(T.c.account_pk, T.c.priority, T.c.kind, func.count())
                    .where(*_open_tickets(as_of), _where_pk(T.c.account_pk, pks))
                    .group_by(T.c.account_pk, T.c.priority, T.c.kind)
                ).all():
                    if (k := at.get(p)) is None:  # an account added since the accounts were read
                        continue
                    kinds[k][(priority, kind == "bug")] += count
                    if kind == "bug":
                        c.tickets_bugs[k] += count
                for k, counts in kinds.items():
                    c.tickets_open[k] = sum(counts.values())
                    c.tickets_urgent[k] = counts[("urgent", False)] + counts[("urgent", True)]
                    c.tickets_load[k] = ticket_load_of(counts, cfg)
            if c.invoices_known:
                today = as_of.toordinal()
                overdue: dict[int, list[Any]] = {}  # k → [invoices, oldest, total]
                for p, amount, due in conn.execute(
                    select(I.c.account_pk, I.c.amount, I.c.due_date)
                    .where(*_overdue(as_of), _where_pk(I.c.account_pk, pks))
                ).all():
                    if (k := at.get(p)) is None:
                        continue
                    seen_i = overdue.setdefault(k, [0, 0, Decimal(0)])
                    seen_i[0] += 1
                    seen_i[1] = max(seen_i[1], today - due.toordinal())
                    seen_i[2] += Decimal(amount)
                for k, (count, oldest, total) in overdue.items():
                    c.overdue_n[k], c.overdue_worst[k], c.overdue_total[k] = count, oldest, total
            if c.touches_known:
                touches, touched = place(conn.execute(
                    select(TO.c.account_pk, day_number(func.max(TO.c.day)))
                    .where(TO.c.day <= as_of, _where_pk(TO.c.account_pk, pks)).group_by(TO.c.account_pk)
                ).all(), 2)
                c.last_touch[touched] = touches[1]
            if c.champions_known:
                _, championed = place([(p,) for p in self._champions(conn, pks)], 1)
                c.champion[championed] = True
        return c

    def usage_read(
        self, as_of: date, cfg: HealthConfig, pks: Pks = None, conn: Connection | None = None
    ) -> UsageRead:
        """The usage windows of every account (or the given ones) as of a day, in one aggregate."""
        with self.use(conn) as conn:
            return UsageRead(self._usage(conn, as_of, cfg, pks) if self._has(conn, U) else None)

    def usage_columns(
        self, as_of: date, cfg: HealthConfig, spans: Sequence[PkRange] | None = None
    ) -> UsageColumns:
        """Every account's usage windows as of a day, as columns (a whole-book run): in one aggregate,
        or range by range (`spans`, the run's ranges), seeking from the accounts.

        By ranges PostgreSQL reads each account's rows from the primary key in one process: 0.16
        CPU-seconds for 10k accounts, against 0.22 for the one scan with its parallel workers, which is
        quicker alone but is never alone in a run (the evidence is read beside it on two cores: the
        run took 0.28-0.29 s against 0.30-0.32). Parallel workers are off for that read only, else it
        plans each range as a parallel scan of the whole table."""
        with self.engine.connect() as conn, conn.begin():
            if not self._has(conn, U):
                return UsageColumns.of_rows([], known=False)
            if spans is None:
                return UsageColumns.of_rows(self._usage_rows(conn, as_of, cfg, None, run=True))
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            return UsageColumns.of_rows(
                [row for span in spans for row in self._usage_rows(conn, as_of, cfg, span, run=True)])

    def peer_columns(self) -> PeerColumns:
        """pk, start, churn (0: none) and seats (0: none) of every account, as columns of ordinals and
        counts: what the day's peers are chosen by."""
        return self.account_columns().peers

    def account_columns(self) -> AccountColumns:
        """Every account's pk, start, churn, seats and renewal, in key order (`AccountColumns`)."""
        with self.engine.connect() as conn:
            return AccountColumns(self._account_rows(conn, None))

    @staticmethod
    def _account_rows(conn: Connection, pks: Pks) -> np.ndarray[Any, Any]:
        return _int_columns(conn.execute(
            select(A.c.id, *(func.coalesce(v, 0) for v in (
                day_number(A.c.start_date), day_number(A.c.churn_date), A.c.seats,
                day_number(A.c.renewal_date))))
            .where(_where_pk(A.c.id, pks)).order_by(A.c.id)
        ).all(), 5)

    def pk_ranges(self, size: int) -> list[PkRange]:
        """The accounts cut into ranges of `size` primary keys (the last one shorter), in key order:
        numbered and cut by the database (a row per range, not one per account)."""
        # integer division in both engines ("//" would need FLOOR, which not every SQLite build has)
        k = (func.row_number().over(order_by=A.c.id) - 1).self_group().op("/")(size)
        numbered = select(A.c.id, k.label("k")).subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(select(func.min(numbered.c.id), func.max(numbered.c.id), func.count())
                                .group_by(numbered.c.k).order_by(numbered.c.k)).all()
        return [PkRange(lo, hi, n) for lo, hi, n in rows]

    def _usage(
        self, conn: Connection, as_of: date, cfg: HealthConfig, pks: Pks
    ) -> dict[int, UsageWindow]:
        out = {}
        for pk, ud, prev, days, peak, mau, last in self._usage_rows(conn, as_of, cfg, pks, run=False):
            if isinstance(last, str):  # in case the driver hands a day back as text
                last = date.fromisoformat(last)
            out[pk] = UsageWindow(int(ud or 0), int(prev or 0), int(days or 0), int(peak or 0),
                                  None if mau < 0 else mau, last)
        return out

    def _usage_rows(
        self, conn: Connection, as_of: date, cfg: HealthConfig, pks: Pks, *, run: bool
    ) -> list[tuple[Any, ...]]:
        """(pk, user-days, before, active days, peak, monthly users or -1, last active day) of each
        account with usage rows in the lookback. For a run (`run`): no active days, which nothing a run
        scores reads (one aggregate less a row: 5-15 % of the read), and the last active day as an
        ordinal."""
        days = UsageDays.of(as_of, cfg)
        one = pks[0] if isinstance(pks, Sequence) and len(pks) == 1 else None
        if one is not None:  # one account (the health card): its monthly users in the same round trip
            card = _card_statements(conn.dialect.name).usage
            rows = conn.execute(card, {"pk": one, **days._asdict()}).all()
            mau: dict[int, int] = {r[0]: r[6] for r in rows if r[6]}  # 0: no user-level rows
        else:
            aggregates, source, where = _usage_windows(conn.dialect.name, days, pks)
            if run:
                del aggregates[3]
                aggregates[-1] = day_number(aggregates[-1])
            rows = conn.execute(select(*aggregates).select_from(source).where(where)
                                .group_by(aggregates[0])).all()
            mau = dict(conn.execute(
                select(UU.c.account_pk, func.count(func.distinct(UU.c.user_id)))
                .where(*days.users_in_window(), _where_pk(UU.c.account_pk, pks))
                .group_by(UU.c.account_pk)
            ).all())
        if run:
            return [(r[0], r[1], r[2], r[3], mau.get(r[0], -1), r[4]) for r in rows]
        return [(r[0], r[1], r[2], r[3], r[4], mau.get(r[0], -1), r[5]) for r in rows]

    @staticmethod
    def _nps_rows(conn: Connection, as_of: date, cfg: HealthConfig, pks: Pks) -> Any:
        """(pk, day, score) of the answers in the NPS window, by account, day, then import order (the
        last of an account is its latest answer)."""
        since = as_of - timedelta(days=cfg.nps_days)
        return conn.execute(
            select(N.c.account_pk, N.c.day, N.c.score)
            .where(N.c.day > since, N.c.day <= as_of, _where_pk(N.c.account_pk, pks))
            .order_by(N.c.account_pk, N.c.day, N.c.id)
        )

    @staticmethod
    def _nps_tally(conn: Connection, as_of: date, cfg: HealthConfig, pks: Pks) -> Sequence[Any]:
        """(pk, answers, promoters, detractors, latest score, its day) of each account with answers in
        the NPS window: what `_nps_rows` gives, counted by the database (one row an account, not one an
        answer). The latest is the last answer of the latest day, by import order.

        In one pass, no lookup per account: each answer is packed into one number that orders as (day,
        id) do, with the score in its lowest bits (`NPS_KEY`), and the account's largest is its latest
        answer. Reading 10k accounts' tallies from PostgreSQL: 44-58 ms against 71-75 with a subquery
        finding each account's latest."""
        since = as_of - timedelta(days=cfg.nps_days)
        latest = func.max(_nps_key())
        return conn.execute(
            select(N.c.account_pk, func.count(), func.count().filter(N.c.score >= 9),
                   func.count().filter(N.c.score <= 6), latest.op("&")(_NPS_SCORE_MASK),
                   latest.op(">>")(literal_column(str(_NPS_DAY_SHIFT))))
            .where(N.c.day > since, N.c.day <= as_of, _where_pk(N.c.account_pk, pks))
            .group_by(N.c.account_pk)
        ).all()

    def _nps(
        self, conn: Connection, as_of: date, cfg: HealthConfig, pks: Pks
    ) -> dict[int, list[NpsResponse]]:
        out: dict[int, list[NpsResponse]] = defaultdict(list)
        for pk, day, score in self._nps_rows(conn, as_of, cfg, pks):
            out[pk].append(NpsResponse(day, score))
        return out

    def _open_tickets(
        self, conn: Connection, as_of: date, pks: Pks
    ) -> dict[int, list[OpenTicket]]:
        out: dict[int, list[OpenTicket]] = defaultdict(list)
        for pk, priority, kind in conn.execute(
            select(T.c.account_pk, T.c.priority, T.c.kind)
            .where(*_open_tickets(as_of), _where_pk(T.c.account_pk, pks))
        ):
            out[pk].append(OpenTicket(priority, kind))
        return out

    def _overdue(
        self, conn: Connection, as_of: date, pks: Pks
    ) -> dict[int, list[OverdueInvoice]]:
        out: dict[int, list[OverdueInvoice]] = defaultdict(list)
        for pk, amount, due in conn.execute(
            select(I.c.account_pk, I.c.amount, I.c.due_date)
            .where(*_overdue(as_of), _where_pk(I.c.account_pk, pks))
        ):
            out[pk].append(OverdueInvoice(Decimal(amount), due))
        return out

    def _last_touch(self, conn: Connection, as_of: date, pks: Pks) -> dict[int, date]:
        rows = conn.execute(
            select(TO.c.account_pk, func.max(TO.c.day))
            .where(TO.c.day <= as_of, _where_pk(TO.c.account_pk, pks))
            .group_by(TO.c.account_pk)
        )
        return {pk: (date.fromisoformat(d) if isinstance(d, str) else d) for pk, d in rows.all()}

    def _champions(self, conn: Connection, pks: Pks) -> set[int]:
        rows = conn.execute(
            select(C.c.account_pk).distinct()
            .where(C.c.role == "champion", C.c.account_pk.is_not(None), _where_pk(C.c.account_pk, pks))
        )
        return {r[0] for r in rows.all()}

    # snapshots ----------------------------------------------------------------------------------

    def previous_scores(
        self, as_of: date, pks: Sequence[int] | None = None, conn: Connection | None = None
    ) -> dict[int, int]:
        """Each account's latest stored score from before `as_of`."""
        if pks is not None and len(pks) == 1:
            with self.use(conn) as c:
                score = c.execute(_SCORE_BEFORE, {"pk": pks[0], "as_of": as_of}).scalar()
            return {} if score is None else {pks[0]: score}
        latest = (
            select(S.c.account_pk, func.max(S.c.as_of).label("day"))
            .where(S.c.as_of < as_of, _where_pk(S.c.account_pk, pks))
            .group_by(S.c.account_pk)
            .subquery()
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(S.c.account_pk, S.c.score).join(
                    latest, and_(S.c.account_pk == latest.c.account_pk, S.c.as_of == latest.c.day)
                )
            )
            return {pk: score for pk, score in rows}

    @contextmanager
    def snapshot_writer(self, as_of: date) -> Iterator[SnapshotWriter]:
        """Replace the day's snapshots and record the run, in one transaction, chunk by chunk.

        The day's old snapshots and run are deleted first; `write` adds scored chunks as they come; on
        leaving, the run is recorded and everything commits together (an error rolls it all back)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Snapshots are derived data: a crash in the instant after the commit loses at most
                # this run, day and record together, and the next score of the day stores it again.
                # So the commit does not wait for its WAL to reach the disk (others see it at once).
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            conn.execute(delete(S).where(S.c.as_of == as_of))
            conn.execute(delete(SR).where(SR.c.as_of == as_of))
            writer = SnapshotWriter(conn, as_of, now)
            yield writer
            conn.execute(insert(SR).values(
                as_of=as_of, accounts=writer.accounts, danger_threshold=writer.threshold, computed_at=now,
            ))

    def run_peers(self, as_of: date, quantile: float) -> Peers | None:
        """The peers of a stored scoring run of that day, if there was one."""
        with self.engine.connect() as conn:
            if conn.execute(select(SR.c.as_of).where(SR.c.as_of == as_of)).first() is None:
                return None
            values = conn.execute(
                select(S.c.engagement).where(S.c.as_of == as_of, S.c.peer.is_(True))
            ).scalars().all()
        return Peers.of(values, quantile)

    def snapshots(self, as_of: date) -> dict[int, HealthScore] | None:
        """The stored scores of a day (None when `keepwell score` did not run for it)."""
        known: dict[str, Driver] = {}
        with self.engine.connect() as conn:
            if conn.execute(select(SR.c.as_of).where(SR.c.as_of == as_of)).first() is None:
                return None
            # From the accounts (an outer join, no WHERE on it): SQLite then reads the day's rows in
            # key order, not scattered by the (as_of, score) index: half the time on a large book.
            rows = conn.execute(
                select(A.c.id, A.c.account_id, A.c.name, *SCORE_COLUMNS)
                .select_from(A.outerjoin(S, and_(S.c.account_pk == A.c.id, S.c.as_of == as_of)))
            )
            return {r[0]: _score(r, 3, r[1], r[2], known) for r in rows if r[3] is not None}

    def scored_on(self, as_of: date) -> bool:
        """Whether `keepwell score` stored the day's scores."""
        with self.engine.connect() as conn:
            return conn.execute(select(SR.c.as_of).where(SR.c.as_of == as_of)).first() is not None

    def states(self, as_of: date) -> dict[int, State] | None:
        """Each account's band and zones on a stored day (what movers are measured against): a narrow
        read, no drivers. None when `keepwell score` did not run that day."""
        with self.engine.connect() as conn:
            if conn.execute(select(SR.c.as_of).where(SR.c.as_of == as_of)).first() is None:
                return None
            rows = conn.execute(select(A.c.id, S.c.band, S.c.danger_zone, S.c.forgotten_zone).select_from(
                A.join(S, and_(S.c.account_pk == A.c.id, S.c.as_of == as_of))))
            return {pk: State(band, bool(danger), bool(forgotten)) for pk, band, danger, forgotten in rows}

    def drivers_of(self, as_of: date, pks: Sequence[int]) -> dict[int, tuple[Driver, ...]]:
        """The stored drivers of a few accounts on a day (a lean read leaves them out)."""
        if not pks:
            return {}
        known: dict[str, Driver] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.c.account_pk, S.c.drivers)
                                .where(S.c.as_of == as_of, S.c.account_pk.in_(list(pks))))
            return {pk: _drivers(text, known) for pk, text in rows}

    def stored_health(
        self, as_of: date, *, drivers: bool = True, previous: bool = True
    ) -> list[Scored] | None:
        """Every account (by id) with its stored score of the day and its previous score, in one query.

        None when `keepwell score` did not run that day or some account has no snapshot of it (then
        the caller scores the book itself). The previous score is each account's latest stored score
        from before the day, as `previous_scores` gives it: the snapshot of the latest run before the
        day (a run stores every account, so that is the latest), looked up apart only for accounts
        without one (added since, say).
        """
        p = S.alias("p")
        at = _ACCOUNT_WIDTH
        columns = SCORE_COLUMNS if drivers else (*SCORE_COLUMNS[:-1], literal("[]"))  # lean: none
        known: dict[str, Driver] = {}
        out: list[Scored] = []
        unknown: list[int] = []  # indexes in `out` of accounts with no snapshot in the last run
        with self.engine.connect() as conn:
            runs = conn.execute(
                select(SR.c.as_of).where(SR.c.as_of <= as_of).order_by(SR.c.as_of.desc()).limit(2)
            ).scalars().all()
            if not runs or runs[0] != as_of:
                return None
            last = runs[1] if len(runs) > 1 and previous else None
            joined = A.outerjoin(S, and_(S.c.account_pk == A.c.id, S.c.as_of == as_of))
            if last is not None:
                joined = joined.outerjoin(p, and_(p.c.account_pk == A.c.id, p.c.as_of == last))
            before = p.c.score if last is not None else literal(None)
            rows = conn.execute(
                select(*ACCOUNT_COLUMNS, *columns, before).select_from(joined).order_by(A.c.account_id)
            )
            for r in rows:
                if r[at] is None:  # no snapshot of the day for this account (scores are NOT NULL)
                    return None
                if r[at + 7] is None and previous:
                    unknown.append(len(out))
                out.append(Scored(_account(r), _score(r, at, r[1], r[2], known, r[at + 7])))
        if unknown:
            pks = [out[i].account.pk for i in unknown]
            found = self.previous_scores(as_of, pks if len(pks) <= 500 else None)
            for i in unknown:
                item = out[i]
                if item.account.pk in found:
                    health = dataclasses.replace(item.health, previous_score=found[item.account.pk])
                    out[i] = Scored(item.account, health)
        return out

    # retention ----------------------------------------------------------------------------------

    def mrr_history(self) -> dict[int, dict[date, Decimal]]:
        out: dict[int, dict[date, Decimal]] = defaultdict(dict)
        with self.engine.connect() as conn:
            for pk, month, mrr in conn.execute(select(R.c.account_pk, R.c.month, R.c.mrr)):
                out[pk][month] = Decimal(mrr)
        return out

    def mrr_on_months(self, months: Sequence[date]) -> dict[int, dict[date, Decimal]]:
        """Each account's revenue on each of these months (first days), as `mrr_on` reads its history.

        The value of the latest history month at or before the month, else of the account's first
        month; accounts without history are left out. Keyed by the months asked for, so `mrr_on` over
        this gives, for days in those months, what it gives over the whole history, for two index
        seeks per account and month instead of reading every month of every account.
        """
        firsts = select(R.c.mrr).where(R.c.account_pk == A.c.id).order_by(R.c.month).limit(1)
        asked = sorted(set(months))
        values = [
            func.coalesce(
                select(R.c.mrr).where(R.c.account_pk == A.c.id, R.c.month <= m)
                .order_by(R.c.month.desc()).limit(1).scalar_subquery(),
                firsts.scalar_subquery(),
            )
            for m in asked
        ]
        with self.engine.connect() as conn:
            rows = conn.execute(select(A.c.id, *values)).all()
        # None: the account has no history at all. Values come as Decimal (the column's type).
        if len(asked) == 1:  # a window within one month (a digest's week): one dict a row, no zip
            (month,) = asked
            return {pk: {month: value} for pk, value in rows if value is not None}
        return {pk: dict(zip(asked, found, strict=True)) for pk, *found in rows if found[0] is not None}

    # account details ----------------------------------------------------------------------------

    def team(self, pk: int, conn: Connection | None = None) -> list[tuple[str, str]]:
        with self.use(conn) as conn:
            return [(r[0], r[1]) for r in conn.execute(_TEAM, {"pk": pk})]

    def contacts(self, pk: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(C).where(C.c.account_pk == pk).order_by(C.c.role, C.c.email))
            return [dict(r._mapping) for r in rows]

    def latest_touches(self, pks: Sequence[int], as_of: date) -> dict[int, dict[str, Any]]:
        """Each account's latest touch on or before the day (one ordered scan for many accounts)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(TO).where(TO.c.day <= as_of, _where_pk(TO.c.account_pk, list(pks)))
                .order_by(TO.c.account_pk, TO.c.day, TO.c.id)
            )
            out: dict[int, dict[str, Any]] = {}
            for r in rows:
                out[r.account_pk] = dict(r._mapping)
            return out

    def contacts_of(self, pks: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """The contacts of many accounts at once, by account."""
        out: dict[int, list[dict[str, Any]]] = defaultdict(list)
        with self.engine.connect() as conn:
            for r in conn.execute(select(C).where(_where_pk(C.c.account_pk, list(pks)))
                                  .order_by(C.c.account_pk, C.c.role, C.c.email)):
                out[r.account_pk].append(dict(r._mapping))
        return out

    def latest_touch(self, pk: int, as_of: date, conn: Connection | None = None) -> dict[str, Any] | None:
        with self.use(conn) as conn:
            row = conn.execute(_LATEST_TOUCH, {"pk": pk, "as_of": as_of}).first()
            return dict(row._mapping) if row else None


def _words(name: str) -> tuple[str, ...]:
    return tuple(w for w in name.casefold().replace("-", " ").split() if w)


@dataclass(frozen=True, slots=True)
class _Name:
    pk: int
    name: str
    folded_id: str
    folded: str
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scored:
    """An account with its health, as lists and reports show it."""

    account: Account
    health: HealthScore


def _insert_ignore(conn: Connection, table: Any, values: dict[str, Any], keys: Sequence[str]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on either engine; True when the row is new."""
    make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = make(table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    # psycopg reports -1 for an INSERT's rowcount unless SQLAlchemy is told to keep it
    return bool(conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount)


class Journal:
    """What people do to the book from Slack (and drafts): notes, reviews, team changes, deliveries.

    Every write carries a reference that is unique per request, so a retried request is a no-op.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, key: str) -> bool:
        """Record a Slack delivery; False when it was handled already (a retry or a double click)."""
        with self.engine.begin() as conn:
            return _insert_ignore(conn, SD, {"key": key[:200], "received_at": datetime.now(UTC)}, ["key"])

    def prune_deliveries(self, before: datetime) -> int:
        """Forget the Slack deliveries received before `before` (Slack retries within minutes)."""
        with self.engine.begin() as conn:
            return conn.execute(delete(SD).where(SD.c.received_at < before)).rowcount

    def add_touch(
        self, pk: int, *, day: date, ref: str, author: str | None, note: str | None,
        channel: str = "other", team: str = "other", kind: str = "other", sentiment: str | None = None,
        contact_email: str = "", source: str = "slack",
    ) -> bool:
        values = {"account_pk": pk, "day": day, "channel": channel, "team": team,
                  "contact_email": contact_email, "sentiment": sentiment, "kind": kind, "note": note,
                  "source": source, "ref": ref[:200], "author": author}
        with self.engine.begin() as conn:
            return _insert_ignore(
                conn, TO, values, ["account_pk", "day", "channel", "team", "contact_email", "kind", "ref"]
            )

    def review_done(self, pk: int, *, day: date, author: str | None, ref: str, kind: str = "qbr") -> bool:
        with self.engine.begin() as conn:
            return _insert_ignore(conn, RV, {
                "account_pk": pk, "kind": kind, "done_on": day, "done_by": author, "ref": ref[:200],
                "created_at": datetime.now(UTC),
            }, ["ref"])

    def last_review(self, pk: int) -> date | None:
        with self.engine.connect() as conn:
            day = conn.execute(select(func.max(RV.c.done_on)).where(RV.c.account_pk == pk)).scalar()
        return date.fromisoformat(day) if isinstance(day, str) else day

    def set_team_member(self, pk: int, member: str, function: str, *, author: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(TM).where(TM.c.account_pk == pk, TM.c.member == member))
            conn.execute(insert(TM).values(account_pk=pk, member=member, function=function,
                                           added_by=author))

    def accounts_of(self, member_ids: Sequence[str]) -> set[int]:
        """Accounts on whose team any of these (Slack ids or emails) sits."""
        if not member_ids:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(select(TM.c.account_pk).where(TM.c.member.in_(list(member_ids))))
            return {r[0] for r in rows}

    def recent_drafts(self, author: str, limit: int = 10) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(TO, A.c.name).join(A, A.c.id == TO.c.account_pk)
                .where(TO.c.source == "draft", TO.c.author == author)
                .order_by(TO.c.day.desc(), TO.c.id.desc()).limit(limit)
            )
            return [dict(r._mapping) for r in rows]
