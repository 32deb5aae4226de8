"""The nine file kinds of CONTRACT §4: their columns, cross-field rules, keys and upserts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

import bot.db.sqlite_adapters  # noqa: F401  (raw executemany on SQLite stores what SQLAlchemy would)
from bot.db.types import utcnow
from bot.importer import cells as c

AMBIGUOUS = -1


class RowError(ValueError):
    """A problem with one row that is not about a single cell's format."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Column:
    name: str
    parse: Callable[[str], Any]
    required: bool = False


def _naive_utc(value: datetime) -> datetime:
    """An aware datetime as naive UTC, as the book's UTCDateTime columns hold it.

    Written raw, an aware value would reach a PostgreSQL `timestamp` column converted to the
    session's TimeZone (local time on many servers), not to UTC.
    """
    return value.astimezone(UTC).replace(tzinfo=None)


class Context:
    """What a kind needs to know about the book while it reads rows (loaded lazily, once)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # held around every statement: PostgreSQL's writer thread shares this connection (writing.py)
        self.lock = threading.Lock()
        self.sqlite = conn.dialect.name == "sqlite"
        # PostgreSQL through psycopg 3: rows are written with COPY (bot/importer/writing.py)
        self.copy = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"
        self.now = _naive_utc(utcnow())
        self._accounts: dict[str, int] | None = None
        self._domains: dict[str, int] | None = None
        self._contacts: dict[str, int | None] | None = None
        self.user_level = False
        self.usage_days: tuple[date, date] | None = None
        self.unmatched_contacts = 0
        self._seen: dict[tuple[Any, ...], int] = {}
        self.kept: frozenset[str] = frozenset()  # the stored columns the file leaves as they are
        self.shared_keys = 0  # rows whose key an earlier row of the file has (kept as rows of their own)

    def nth(self, key: tuple[Any, ...]) -> int:
        """How many rows of the file so far have this key, this one included: 1 for the first."""
        n = self._seen.get(key, 0) + 1
        self._seen[key] = n
        if n > 1:
            self.shared_keys += 1
        return n

    def cover_day(self, day: date) -> None:
        """Widen the span of days a user-level file covers (what `_rollup_users` sums again)."""
        span = self.usage_days
        if span is None or day < span[0] or day > span[1]:
            self.usage_days = (min(day, span[0]), max(day, span[1])) if span else (day, day)

    def _rows(self, sql: str) -> list[Any]:
        with self.lock:
            return [tuple(r) for r in self.conn.execute(text(sql))]

    def account_map(self) -> dict[str, int]:
        """account_id → the account's integer key, loaded once per import."""
        if self._accounts is None:
            self._accounts = dict(self._rows("SELECT account_id, id FROM accounts"))
        return self._accounts

    def account_pk(self, account_id: str, column: str = "account_id") -> int:
        try:
            return self.account_map()[account_id]
        except KeyError:
            raise RowError(
                column, f"unknown account {account_id!r} (import it in an accounts file first)"
            ) from None

    def account_for_email(self, email: str) -> int | None:
        """The account whose domain is the email's domain (or a parent of it); None if no match."""
        if self._domains is None:
            self._domains = {}
            for domain, pk in self._rows("SELECT domain, id FROM accounts WHERE domain IS NOT NULL"):
                self._domains[domain] = AMBIGUOUS if domain in self._domains else pk
        host = email.rsplit("@", 1)[-1]
        while "." in host:
            pk = self._domains.get(host)
            if pk == AMBIGUOUS:
                raise RowError("email", f"domain {host!r} belongs to several accounts; give account_id")
            if pk is not None:
                return pk
            host = host.split(".", 1)[1]
        return None

    def contact_account(self, email: str) -> int | None:
        if self._contacts is None:
            self._contacts = dict(self._rows("SELECT email, account_pk FROM contacts"))
        return self._contacts.get(email)


Row = tuple[Any, ...]


@dataclass(frozen=True)
class CopyText:
    """Rows in COPY's text format, one per line, each ending in a newline; as long as its rows."""

    text: str
    rows: int

    def __len__(self) -> int:
        return self.rows


# An (account, day) key packs into one integer: the account's key above the day's ordinal, which
# fits whole in DAY_BITS (date.max.toordinal() is 3,652,059 < 2**22), so two days never share a key.
DAY_BITS = 22
# Distinct date cells the usage readers keep parsed: a file of days has a few hundred, but one of
# timestamps may have a new cell on every row, and those are then parsed where they stand.
DATE_CELLS = 50_000
FastReader = Callable[[list[str]], tuple[Row, int]]
FAST_MISS = (KeyError, ValueError, IndexError, TypeError, OverflowError)
# A block of rows read whole: what to write (rows for `executemany`, COPY text, or None when nothing
# is written) and the rows' packed keys; or None when any row of the block needs a closer look.
Taken = tuple[list[Row] | CopyText | None, "np.ndarray[Any, np.dtype[np.int64]]"]
BulkReader = Callable[[list[list[str]]], Taken | None]


@dataclass(frozen=True)
class KeptOrder:
    """A stored `later` value, kept because the file has no column for it, must stay after the file's
    `earlier` one (or not before it, with `ties`): the rows where it no longer does, a few, as lines."""

    table: str
    key: str  # the column naming a row in the lines
    noun: str
    earlier: str
    later: str
    ties: bool  # whether equal values break the rule
    width: int  # characters of a value shown
    verb: str  # how an earlier value that breaks it is said to stand
    hint: str = ""

    def broken(self, ctx: Context) -> list[str]:
        rows = ctx._rows(
            f"SELECT {self.key}, {self.earlier}, {self.later} FROM {self.table} "
            f"WHERE {self.later} IS NOT NULL AND {self.later} {'<=' if self.ties else '<'} {self.earlier} "
            f"ORDER BY {self.key} LIMIT 5")
        w = self.width
        return [f"{self.noun} {k}: {self.earlier} {str(e)[:w]} {self.verb} the {self.later} {str(v)[:w]} "
                f"the book holds (the file has no {self.later} column: give it{self.hint})"
                for k, e, v in rows]


@dataclass(frozen=True)
class Kind:
    name: str
    table: str
    columns: tuple[Column, ...]
    insert: tuple[str, ...]  # the table's columns, in the order build() returns values
    conflict: tuple[str, ...]  # the upsert key
    key: tuple[int, ...]  # positions in the built row that make the duplicate-detection key
    build: Callable[[dict[str, Any], Context], Row]
    key_label: str = ""
    alternatives: tuple[tuple[str, ...], ...] = ()  # "one of these columns is required"
    exclusive: tuple[tuple[str, str], ...] = ()  # pairs of columns that must not both be present
    finish: Callable[[Context], None] | None = None
    after_header: Callable[[Kind, Sequence[str], Context], Kind] | None = None
    # A reader for the common, valid row of a huge file: (row, packed key), or any of FAST_MISS for
    # a row it cannot take, which then goes through the generic path (and its precise messages).
    fast: Callable[[Kind, dict[str, int], Context], FastReader] | None = None
    # A reader for a whole block of such rows at once (see `_usage_bulk`); None where it has none.
    bulk: Callable[[Kind, dict[str, int], Context, bool], BulkReader | None] | None = None
    # The stored columns a file column fills where the names differ (else the same name).
    fills: tuple[tuple[str, str], ...] = (("account_id", "account_pk"), ("date", "day"))
    # Stored columns a re-import leaves as they are, because the file has no column for them.
    kept: frozenset[str] = frozenset()
    # Of those, the ones still filled where nothing is stored yet (a contact's account, say, which
    # the import matches by domain when the file names none).
    kept_unless_null: frozenset[str] = frozenset()
    # Columns that go together: one of them in the file writes them all (a churn date and its reason).
    together: tuple[frozenset[str], ...] = ()
    # A cross-field rule that a kept column may break (a new start date after the stored churn date):
    # checked against the stored rows once the file is written, when that column was kept.
    stored_rule: KeptOrder | None = None
    required: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", tuple(col.name for col in self.columns if col.required))

    def for_header(self, header: Sequence[str]) -> Kind:
        """The kind as a file with this header imports it: a stored row keeps what the file has no
        column for (a contact's do-not-contact flag, an invoice's payment, a ticket's closing). An
        empty cell still clears a value: the file then says there is none."""
        named = dict(self.fills)
        absent = {named.get(col.name, col.name) for col in self.columns
                  if not col.required and col.name not in header}
        for group in self.together:
            if not group <= absent:
                absent -= group
        kept = frozenset(col for col in self.insert if col in absent and col not in self.conflict)
        return replace(self, kept=kept, kept_unless_null=kept & self.kept_unless_null)

    def broken_by_kept(self, ctx: Context) -> list[str]:
        """The stored rows that a kept column now puts at odds with the file's values (a few)."""
        if self.stored_rule is None or self.stored_rule.later not in self.kept:
            return []
        return self.stored_rule.broken(ctx)

    def _on_conflict(self, *, skip_equal: bool = False) -> str:
        updates = [col for col in self.insert
                   if col not in self.conflict and (col not in self.kept or col in self.kept_unless_null)]
        if not updates:
            return f"ON CONFLICT ({', '.join(self.conflict)}) DO NOTHING"
        values = [f"coalesce({self.table}.{col}, excluded.{col})" if col in self.kept_unless_null
                  else f"excluded.{col}" for col in updates]
        sets = (f"{col} = {value}" for col, value in zip(updates, values, strict=True))
        action = "DO UPDATE SET " + ", ".join(sets)
        if skip_equal:  # a row equal to the stored one is left alone rather than rewritten
            stored = ", ".join(f"{self.table}.{col}" for col in updates)
            given = ", ".join(values)
            action += f" WHERE ({stored}) IS DISTINCT FROM ({given})"
        return f"ON CONFLICT ({', '.join(self.conflict)}) {action}"

    def upsert_sql(self, sqlite: bool) -> str:
        """One row's upsert, for `executemany`."""
        mark = "?" if sqlite else "%s"
        marks = ", ".join(mark for _ in self.insert)
        return f"INSERT INTO {self.table} ({', '.join(self.insert)}) VALUES ({marks}) {self._on_conflict()}"

    def merge_sql(self, staging: str) -> str:
        """Every row of a staging table with the kind's columns, upserted at once (PostgreSQL)."""
        cols = ", ".join(self.insert)
        return (
            f"INSERT INTO {self.table} ({cols}) SELECT {cols} FROM {staging} "
            f"{self._on_conflict(skip_equal=True)}"
        )


ROLES = c.enum_parser("champion", "decision_maker", "user", "billing", "other")
TOUCHPOINTS = c.enum_parser("onboarding", "qbr", "support", "renewal", "other")
PRIORITIES = c.enum_parser("urgent", "high", "normal", "low")
TICKET_KINDS = c.enum_parser("bug", "question", "feature", "other")
CHANNELS = c.enum_parser("email", "meeting", "call", "chat", "other")
TEAMS = c.enum_parser("sales", "cs", "support", "marketing", "product", "other")
SENTIMENTS = c.enum_parser("positive", "neutral", "negative")
TOUCH_KINDS = c.enum_parser("checkin", "qbr", "renewal", "onboarding", "other")
FUNCTIONS = c.enum_parser("sales", "cs", "support", "marketing", "product", "exec")
ID_CHARS = 200  # the longest id a file may give (an account's, a user's)
ID = c.text_parser(ID_CHARS)
NAME = c.text_parser(300)
SHORT = c.text_parser(200)
LONG = c.text_parser(10_000)


def _account(v: dict[str, Any], ctx: Context) -> Row:
    start, churn = v["start_date"], v.get("churn_date")
    if churn is not None and churn <= start:
        raise RowError("churn_date", f"churn_date {churn} is not after start_date {start}")
    if v.get("churn_reason") and churn is None:
        raise RowError("churn_reason", "churn_reason given without a churn_date")
    return (
        v["account_id"], v["name"], start, v.get("domain"), v.get("tier"), v.get("tags") or "",
        v.get("owner_email"), v.get("mrr"), v.get("seats"), v.get("renewal_date"), churn,
        v.get("churn_reason"), ctx.now,
    )


def _contact(v: dict[str, Any], ctx: Context) -> Row:
    email = v["email"]
    if v.get("account_id") is not None:
        pk: int | None = ctx.account_pk(v["account_id"])
    else:
        pk = ctx.account_for_email(email)
        if pk is None and not ("account_pk" in ctx.kept and ctx.contact_account(email) is not None):
            ctx.unmatched_contacts += 1  # (a contact with an account keeps it when the file has no column)
    return (
        email, pk, v.get("first_name"), v.get("last_name"), v.get("title"), v.get("role") or "other",
        bool(v.get("do_not_contact") or False), "import", ctx.now,
    )


def _usage(v: dict[str, Any], ctx: Context) -> Row:
    pk = ctx.account_pk(v["account_id"])
    events = v.get("events")
    events = 1 if events is None else events
    if ctx.user_level:
        if v.get("user_id") is None:
            raise RowError("user_id", "required")
        ctx.cover_day(v["date"])
        return (pk, v["date"], v["user_id"], events)
    if v.get("active_users") is None:
        raise RowError("active_users", "required")
    return (pk, v["date"], v["active_users"], events)


def _usage_header(kind: Kind, header: Sequence[str], ctx: Context) -> Kind:
    """A file with user_id holds one row per user per day: it goes to usage_users, then rolls up."""
    ctx.user_level = "user_id" in header
    if not ctx.user_level:
        return kind
    return replace(
        kind, table="usage_users", insert=("account_pk", "day", "user_id", "events"),
        conflict=("account_pk", "day", "user_id"), key=(0, 1, 2), key_label="account_id, date and user_id",
    )


def _usage_fast(kind: Kind, positions: dict[str, int], ctx: Context) -> FastReader:
    """Usage rows without a dict per row: each distinct date string is checked once, and on SQLite
    and in PostgreSQL's COPY the ISO text goes to the driver as it is (no adapter call per value).
    Keys match `_packer`'s."""
    accounts = ctx.account_map()
    days: dict[str, tuple[Any, int, date]] = {}
    at, on = positions["account_id"], positions["date"]
    ev_at = positions.get("events")
    iso, user_level = ctx.sqlite or ctx.copy, ctx.user_level
    value_at = positions["user_id" if user_level else "active_users"]

    def day(text: str) -> tuple[Any, int, date]:
        d = _plain_day(text)
        if user_level:
            ctx.cover_day(d)
        got = (d.isoformat() if iso else d, d.toordinal(), d)
        if len(days) < DATE_CELLS:
            days[text] = got
        return got

    def events(cells: list[str]) -> int:
        if ev_at is None or not cells[ev_at]:
            return 1
        n = int(cells[ev_at])
        if not 0 <= n <= c.MAX_COUNT:
            raise ValueError(n)
        return n

    if user_level:
        def read_user(cells: list[str]) -> tuple[Row, int]:
            value, _, d = days.get(cells[on]) or day(cells[on])
            pk = accounts[cells[at]]
            user = cells[value_at]
            if not user or user != user.strip() or len(user) > ID_CHARS:
                raise ValueError(user)
            return (pk, value, user, events(cells)), hash((pk, d, user))

        return read_user

    def read_daily(cells: list[str]) -> tuple[Row, int]:
        value, ordinal, _ = days.get(cells[on]) or day(cells[on])
        pk = accounts[cells[at]]
        users = int(cells[value_at])
        if not 0 <= users <= c.MAX_COUNT:
            raise ValueError(users)
        return (pk, value, users, events(cells)), (pk << DAY_BITS) | ordinal

    return read_daily


def _plain_day(text: str) -> date:
    """A date cell as the fast readers take it: no spaces around it (the generic path trims them)."""
    d = c.parse_date(text)
    if text != text.strip():
        raise ValueError(text)
    return d


COUNT_DIGITS = len(str(c.MAX_COUNT)) - 1  # this many digits are always within MAX_COUNT


def _plain_counts(cells: Sequence[str]) -> bool:
    """Whether every cell is a whole number written with ASCII digits alone and short enough to be
    within MAX_COUNT: text that `parse_count` and the database both read as the same number."""
    if "" in cells or max(map(len, cells)) > COUNT_DIGITS:
        return False
    digits = "".join(cells)
    return digits.isascii() and digits.isdigit()


COPY_SPECIAL = ("\\", "\t", "\n", "\r")  # characters COPY's text format would need escaped


def _usage_bulk(kind: Kind, positions: dict[str, int], ctx: Context, emit: bool) -> BulkReader | None:
    """Usage rows a block at a time, column by column: each step is one C-level pass over the block
    (`map`, `join`), not Python per row. A block with any cell the checks below do not take (an
    unknown account, a date not yet seen that does not parse, a count that is not plain digits, a
    user id with spaces around it or a character COPY would escape, a short row, a blank one)
    returns None, and its rows go one by one through `fast` and the generic path, which say
    precisely what is wrong. What it stores is what those would store: the day as ISO text, the
    counts as the numbers their digits spell (COPY text on PostgreSQL, tuples for `executemany`
    elsewhere); keys match `fast`'s (`_packer`'s)."""
    if not (ctx.sqlite or ctx.copy):
        return None
    accounts = ctx.account_map()
    at, on = positions["account_id"], positions["date"]
    user_level = ctx.user_level
    value_at = positions["user_id" if user_level else "active_users"]
    events_at = positions.get("events")
    width = max(positions.values()) + 1
    iso: dict[str, str] = {}  # date cell → ISO text, for every distinct cell seen
    day_of: dict[str, date] = {}  # date cell → the day, for the keys

    def learn(cells: set[str]) -> None:
        """Parse date cells not seen yet (ValueError if one does not parse, or if there would be more
        than DATE_CELLS: then the block goes row by row)."""
        if len(iso) + len(cells) > DATE_CELLS:
            raise ValueError("too many distinct date cells to keep")
        for cell in cells:
            d = _plain_day(cell)
            iso[cell], day_of[cell] = d.isoformat(), d
            if user_level:
                ctx.cover_day(d)

    def plain_users(users: Sequence[str]) -> bool:
        """Whether every user id is what `fast` takes as it is (and COPY needs no escape in it)."""
        if "" in users or max(map(len, users)) > ID_CHARS:
            return False
        if any(map(str.__ne__, users, map(str.strip, users))):
            return False
        joined = "".join(users)
        return "\x00" not in joined and not (ctx.copy and any(ch in joined for ch in COPY_SPECIAL))

    def take(block: list[list[str]]) -> Taken | None:
        if min(map(len, block)) < width:
            return None
        columns = list(zip(*block, strict=False))  # as many columns as the shortest row: at least width
        pks = list(map(accounts.get, columns[at]))
        if None in pks:
            return None
        dates = columns[on]
        days: list[Any] = list(map(iso.get, dates))
        if None in days:
            try:
                learn(set(dates).difference(iso))
            except ValueError:
                return None
            days = list(map(iso.get, dates))
        values = columns[value_at]
        events: Sequence[str] = columns[events_at] if events_at is not None else ("1",) * len(block)
        if "" in events:
            events = [cell or "1" for cell in events]  # no count of events is one, as in `_usage`
        if not (_plain_counts(events) and (plain_users(values) if user_level else _plain_counts(values))):
            return None
        n = len(block)
        if user_level:
            triples = zip(pks, map(day_of.__getitem__, dates), values, strict=True)
            keys = np.fromiter(map(hash, triples), np.int64, n)
        else:
            keys = np.fromiter(pks, np.int64, n) << DAY_BITS
            keys |= np.fromiter(map(date.toordinal, map(day_of.__getitem__, dates)), np.int64, n)
        if not emit:
            return None, keys
        if ctx.copy:
            lines = "\n".join(map("\t".join, zip(map(str, pks), days, values, events, strict=True)))
            return CopyText(lines + "\n", n), keys
        counts = values if user_level else map(int, values)
        return list(zip(pks, days, counts, map(int, events), strict=True)), keys

    return take


def _rollup_users(ctx: Context) -> None:
    """User-level rows are summed into daily active users for the days the file covered.

    A day's events are at most `MAX_COUNT`: each user's count is, but their sum need not be, and the
    column is 32-bit on PostgreSQL (the sum past it is stored as it, not refused midway)."""
    if not ctx.user_level or ctx.usage_days is None:
        return
    first, last = ctx.usage_days
    mark = "?" if ctx.sqlite else "%s"
    least = "MIN" if ctx.sqlite else "LEAST"  # of two values: SQLite's MIN, PostgreSQL's LEAST
    ctx.conn.exec_driver_sql(
        "INSERT INTO usage_daily (account_pk, day, active_users, events) "
        f"SELECT account_pk, day, COUNT(*), {least}(SUM(events), {c.MAX_COUNT}) FROM usage_users "
        f"WHERE day >= {mark} AND day <= {mark} GROUP BY account_pk, day "
        "ON CONFLICT (account_pk, day) DO UPDATE SET "
        "active_users = excluded.active_users, events = excluded.events",
        (first, last),
    )


def _nps(v: dict[str, Any], ctx: Context) -> Row:
    email = v.get("email") or ""
    if v.get("account_id") is not None:
        pk = ctx.account_pk(v["account_id"])
    elif email:
        found = ctx.contact_account(email)
        if found is None:
            found = ctx.account_for_email(email)
        if found is None:
            raise RowError("email", f"{email} is not a contact of any account and matches no domain")
        pk = found
    else:
        raise RowError("account_id", "give account_id or email")
    touchpoint = v.get("touchpoint") or "other"
    nth = ctx.nth((pk, email, v["date"], touchpoint))
    return (pk, email, v["date"], v["score"], touchpoint, v.get("comment"), nth)


def _ticket(v: dict[str, Any], ctx: Context) -> Row:
    opened, closed = v["opened_at"], v.get("closed_at")
    if closed is not None and closed < opened:
        raise RowError("closed_at", f"closed_at {closed:%Y-%m-%d %H:%M} is before opened_at")
    return (
        v["ticket_id"], ctx.account_pk(v["account_id"]), _naive_utc(opened),
        None if closed is None else _naive_utc(closed),
        v.get("priority") or "normal", v.get("kind") or "other",
    )


def _invoice(v: dict[str, Any], ctx: Context) -> Row:
    return (
        v["invoice_id"], ctx.account_pk(v["account_id"]), v["amount"], v["due_date"], v.get("paid_date"),
    )


def _mrr(v: dict[str, Any], ctx: Context) -> Row:
    return (ctx.account_pk(v["account_id"]), v["month"], v["mrr"])


def _touch(v: dict[str, Any], ctx: Context) -> Row:
    """Two touches of a file may share their key (two calls with the account on one day): each after
    the first is told apart by its rank (`ref` 'import#2', …), so the same file imported again finds
    every touch where it left it."""
    pk, channel, team = ctx.account_pk(v["account_id"]), v.get("channel") or "other", v.get("team") or "other"
    contact, kind = v.get("contact_email") or "", v.get("kind") or "other"
    nth = ctx.nth((pk, v["date"], channel, team, contact, kind))
    return (pk, v["date"], channel, team, contact, v.get("sentiment"), kind, v.get("note"), "import",
            "" if nth == 1 else f"import#{nth}")


def _team(v: dict[str, Any], ctx: Context) -> Row:
    return (ctx.account_pk(v["account_id"]), v["member"], v["function"])


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "accounts", "accounts",
            (
                Column("account_id", ID, True), Column("name", NAME, True),
                Column("start_date", c.parse_date, True), Column("domain", c.parse_domain),
                Column("tier", c.text_parser(100)), Column("tags", c.parse_tags),
                Column("owner_email", c.parse_email), Column("mrr", c.parse_money),
                Column("seats", c.parse_count), Column("renewal_date", c.parse_date),
                Column("churn_date", c.parse_date), Column("churn_reason", c.text_parser(500)),
            ),
            ("account_id", "name", "start_date", "domain", "tier", "tags", "owner_email", "mrr", "seats",
             "renewal_date", "churn_date", "churn_reason", "updated_at"),
            ("account_id",), (0,), _account, "account_id",
            together=(frozenset({"churn_date", "churn_reason"}),),
            stored_rule=KeptOrder("accounts", "account_id", "account", "start_date", "churn_date", ties=True,
                                  width=10, verb="is not before", hint=", empty if the account is back"),
        ),
        Kind(
            "contacts", "contacts",
            (
                Column("email", c.parse_email, True), Column("account_id", ID),
                Column("first_name", SHORT), Column("last_name", SHORT), Column("title", NAME),
                Column("role", ROLES), Column("do_not_contact", c.parse_bool),
            ),
            ("email", "account_pk", "first_name", "last_name", "title", "role", "do_not_contact", "source",
             "updated_at"),
            ("email",), (0,), _contact, "email", kept_unless_null=frozenset({"account_pk"}),
        ),
        Kind(
            "usage", "usage_daily",
            (
                Column("account_id", ID, True), Column("date", c.parse_date, True),
                Column("active_users", c.parse_count), Column("user_id", ID), Column("events", c.parse_count),
            ),
            ("account_pk", "day", "active_users", "events"),
            ("account_pk", "day"), (0, 1), _usage, "account_id and date",
            alternatives=(("active_users", "user_id"),), exclusive=(("active_users", "user_id"),),
            after_header=_usage_header, finish=_rollup_users, fast=_usage_fast, bulk=_usage_bulk,
        ),
        Kind(
            "nps", "nps_responses",
            (
                Column("date", c.parse_date, True), Column("score", c.parse_score, True),
                Column("account_id", ID), Column("email", c.parse_email),
                Column("touchpoint", TOUCHPOINTS), Column("comment", LONG),
            ),
            ("account_pk", "email", "day", "score", "touchpoint", "comment", "nth"),
            ("account_pk", "email", "day", "touchpoint", "nth"), (0, 1, 2, 4, 6), _nps,
            "account, email, date and touchpoint", alternatives=(("account_id", "email"),),
        ),
        Kind(
            "tickets", "tickets",
            (
                Column("ticket_id", ID, True), Column("account_id", ID, True),
                Column("opened_at", c.parse_timestamp, True), Column("closed_at", c.parse_timestamp),
                Column("priority", PRIORITIES), Column("kind", TICKET_KINDS),
            ),
            ("ticket_id", "account_pk", "opened_at", "closed_at", "priority", "kind"),
            ("ticket_id",), (0,), _ticket, "ticket_id",
            stored_rule=KeptOrder("tickets", "ticket_id", "ticket", "opened_at", "closed_at", ties=False,
                                  width=16, verb="is after"),
        ),
        Kind(
            "invoices", "invoices",
            (
                Column("invoice_id", ID, True), Column("account_id", ID, True),
                Column("amount", c.parse_money, True), Column("due_date", c.parse_date, True),
                Column("paid_date", c.parse_date),
            ),
            ("invoice_id", "account_pk", "amount", "due_date", "paid_date"),
            ("invoice_id",), (0,), _invoice, "invoice_id",
        ),
        Kind(
            "mrr", "mrr_history",
            (
                Column("account_id", ID, True), Column("month", c.parse_month, True),
                Column("mrr", c.parse_money, True),
            ),
            ("account_pk", "month", "mrr"), ("account_pk", "month"), (0, 1), _mrr, "account_id and month",
        ),
        Kind(
            "touches", "touches",
            (
                Column("account_id", ID, True), Column("date", c.parse_date, True),
                Column("channel", CHANNELS), Column("team", TEAMS), Column("contact_email", c.parse_email),
                Column("sentiment", SENTIMENTS), Column("kind", TOUCH_KINDS), Column("note", LONG),
            ),
            ("account_pk", "day", "channel", "team", "contact_email", "sentiment", "kind", "note", "source",
             "ref"),
            ("account_pk", "day", "channel", "team", "contact_email", "kind", "ref"), (0, 1, 2, 3, 4, 6, 9),
            _touch,
            "account, date, channel, team, contact and kind",
        ),
        Kind(
            "team", "account_team",
            (
                Column("account_id", ID, True), Column("member", c.parse_member, True),
                Column("function", FUNCTIONS, True),
            ),
            ("account_pk", "member", "function"), ("account_pk", "member"), (0, 1), _team,
            "account_id and member",
        ),
    )
}
