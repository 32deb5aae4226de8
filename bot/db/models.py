"""The book's tables (CONTRACT §4) plus health snapshots.

Accounts have an integer surrogate key (`id`) that every other table references as `account_pk`:
the usage tables hold millions of rows, and an integer key keeps them small and their joins fast.
The account's own identifier from the customer's data is `account_id`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from bot.db.types import UTCDateTime, utcnow

MONEY = Numeric(14, 2)


def _account_fk(primary_key: bool = False, nullable: bool = False, index: bool = True) -> Column[int]:
    return Column(
        "account_pk",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=nullable,
        index=index and not primary_key,
    )


def _account_key() -> Column[int]:
    """An account key without a foreign key, for the tables written in bulk (usage, snapshots).

    PostgreSQL checks a foreign key with one locking lookup per inserted row: on 3M usage rows that
    was 11 s of a 16 s load. The importer resolves every account_id against `accounts` inside the
    import's own transaction, and `keepwell score` writes snapshots only for the accounts it has just
    read, so no row names an account that is not there; and where accounts are deleted
    (`Book.delete_accounts`) their rows go with them, in the same transaction. Every read joins these
    tables from the accounts, so a stray row could not be seen anyway.
    """
    return Column("account_pk", Integer, primary_key=True, nullable=False, autoincrement=False)


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=200, unique=True)
    name: str = Field(max_length=300)
    start_date: date
    domain: str | None = Field(default=None, max_length=253, index=True)
    tier: str | None = Field(default=None, max_length=100)
    tags: str = Field(default="", max_length=2000)  # ';'-joined, lower case
    owner_email: str | None = Field(default=None, max_length=320)
    mrr: Decimal | None = Field(default=None, sa_type=MONEY)
    seats: int | None = None
    renewal_date: date | None = None
    churn_date: date | None = None
    churn_reason: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)  # normalised: trimmed, lower case
    account_pk: int | None = Field(default=None, sa_column=_account_fk(nullable=True))
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=300)
    role: str = Field(default="other", max_length=20)
    do_not_contact: bool = False
    source: str = Field(default="import", max_length=20)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UsageDaily(SQLModel, table=True):
    """Daily active users of an account: imported as such, or rolled up from user-level rows."""

    __tablename__ = "usage_daily"
    # Clustered on (account_pk, day) only: a second index on day halved import speed, while the
    # scoring window scan over 3.65M rows was 0.48 s without it against 0.32 s with it. On
    # PostgreSQL the key holds the active users too, so a score reads an account's days from the key
    # alone, wherever daily imports left them in the table (migration 0008).
    __table_args__ = (PrimaryKeyConstraint("account_pk", "day", postgresql_include=["active_users"]),
                      {"sqlite_with_rowid": False})

    account_pk: int = Field(sa_column=_account_key())
    day: date = Field(primary_key=True)
    active_users: int = 0
    events: int = 0


class UsageUser(SQLModel, table=True):
    """One row per user per day, where the customer's data has them (for monthly distinct users)."""

    __tablename__ = "usage_users"
    __table_args__ = ({"sqlite_with_rowid": False},)

    account_pk: int = Field(sa_column=_account_key())
    day: date = Field(primary_key=True)
    user_id: str = Field(primary_key=True, max_length=200)
    events: int = 1


class NpsResponse(SQLModel, table=True):
    __tablename__ = "nps_responses"
    __table_args__ = (
        # nth: the answer's rank among the file's answers with the same account, email, day and
        # touchpoint (two anonymous answers of one day, say): 1 for the first (migration 0009)
        UniqueConstraint("account_pk", "email", "day", "touchpoint", "nth", name="uq_nps_key"),
        # an account's answers newest first: its latest answer without sorting them all (migration 0007)
        Index("ix_nps_responses_account_day", "account_pk", "day", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_pk: int = Field(sa_column=_account_fk(index=False))
    email: str = Field(default="", max_length=320)  # '' when answered for the account as a whole
    day: date
    score: int
    touchpoint: str = Field(default="other", max_length=20)
    comment: str | None = None
    nth: int = Field(default=1, sa_column_kwargs={"server_default": "1"})


class Ticket(SQLModel, table=True):
    __tablename__ = "tickets"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(max_length=200, unique=True)
    account_pk: int = Field(sa_column=_account_fk())
    opened_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    priority: str = Field(default="normal", max_length=10)
    kind: str = Field(default="other", max_length=10)


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(max_length=200, unique=True)
    account_pk: int = Field(sa_column=_account_fk())
    amount: Decimal = Field(sa_type=MONEY)
    due_date: date
    paid_date: date | None = None


class MrrMonth(SQLModel, table=True):
    __tablename__ = "mrr_history"
    __table_args__ = ({"sqlite_with_rowid": False},)

    account_pk: int = Field(sa_column=_account_fk(primary_key=True))
    month: date = Field(primary_key=True)  # the first day of the month
    mrr: Decimal = Field(sa_type=MONEY)


class Touch(SQLModel, table=True):
    """Any contact with the account: a meeting note, a call, an email (imported, logged or drafted)."""

    __tablename__ = "touches"
    __table_args__ = (
        UniqueConstraint(
            "account_pk", "day", "channel", "team", "contact_email", "kind", "ref", name="uq_touch_key"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_pk: int = Field(sa_column=_account_fk())
    day: date
    channel: str = Field(default="other", max_length=10)
    team: str = Field(default="other", max_length=12)
    contact_email: str = Field(default="", max_length=320)
    sentiment: str | None = Field(default=None, max_length=10)
    kind: str = Field(default="other", max_length=12)
    note: str | None = None
    source: str = Field(default="import", max_length=20)  # import | slack | draft
    # '' for an imported row (its key is the columns above), 'import#N' for the N-th row of a file with
    # that key; a unique reference for a note logged in Slack or a draft, so two of them on the same
    # day never overwrite each other
    ref: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})
    author: str | None = Field(default=None, max_length=320)  # the Slack user who wrote it


class TeamMember(SQLModel, table=True):
    __tablename__ = "account_team"

    account_pk: int = Field(sa_column=_account_fk(primary_key=True))
    member: str = Field(primary_key=True, max_length=320)
    function: str = Field(max_length=12)
    added_by: str | None = Field(default=None, max_length=320)  # the Slack user, for changes made there


class Review(SQLModel, table=True):
    """An account review (QBR) marked done: it restarts the review cadence."""

    __tablename__ = "reviews"

    id: int | None = Field(default=None, primary_key=True)
    account_pk: int = Field(sa_column=_account_fk())
    kind: str = Field(default="qbr", max_length=12)
    done_on: date
    done_by: str | None = Field(default=None, max_length=320)
    ref: str = Field(max_length=200, unique=True)  # one record per request, however often it is retried
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SlackDelivery(SQLModel, table=True):
    """A Slack request already handled (event id, action), so Slack's retries do nothing twice."""

    __tablename__ = "slack_deliveries"

    key: str = Field(primary_key=True, max_length=200)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class HealthSnapshot(SQLModel, table=True):
    """One account's score on one day, as `keepwell score` computed it."""

    __tablename__ = "health_snapshots"
    __table_args__ = (
        # a day's rows, its lowest scores, and its bands and zones without touching the wide rows (the
        # digest's movers): one covering index, as each extra index costs every day's write
        Index("ix_health_snapshots_day", "as_of", "account_pk", "score", "band", "danger_zone",
              "forgotten_zone"),
        {"sqlite_with_rowid": False},
    )

    # no foreign key (`_account_key`): checking it was a third of the time a day's snapshots took to write
    account_pk: int = Field(sa_column=_account_key())
    as_of: date = Field(primary_key=True)
    score: int
    band: str = Field(max_length=10)
    danger_zone: bool
    forgotten_zone: bool
    stickiness: float | None = None
    engagement: float | None = None
    peer: bool = False  # counted among the day's active accounts (the danger-zone peers)
    drivers: str  # JSON list of drivers
    computed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ScoreRun(SQLModel, table=True):
    """A whole-book scoring: what the peers looked like that day, for one-account reports."""

    __tablename__ = "score_runs"

    as_of: date = Field(primary_key=True)
    accounts: int
    danger_threshold: float | None = None
    computed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)



class DraftPlan(SQLModel, table=True):
    """Who would get a draft and who is skipped, rendered and stored before anything is created."""

    __tablename__ = "draft_plans"

    id: str = Field(primary_key=True, max_length=40)
    template: str = Field(max_length=100)
    target: str = Field(max_length=2000)  # the account or segment it was made for
    as_of: date
    created_by: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # whose mailbox its drafts go to (a delegated service account): set by the first apply naming one
    mailbox: str | None = Field(default=None, max_length=320)


class PlanItem(SQLModel, table=True):
    """One recipient of a plan: a draft to create (pending → creating → created), or a skip and why.

    `creating` is written before the API call and `created` after it, so after a crash or an
    ambiguous failure apply looks the draft up by its Message-ID instead of creating it twice.
    """

    __tablename__ = "plan_items"
    __table_args__ = (
        UniqueConstraint("plan_id", "contact_email", name="uq_plan_contact"),
        Index("ix_plan_items_state", "plan_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    plan_id: str = Field(sa_column=Column(
        "plan_id", String(40), ForeignKey("draft_plans.id", ondelete="CASCADE"), nullable=False, index=True
    ))
    account_pk: int = Field(sa_column=_account_fk())
    contact_email: str = Field(max_length=320)
    state: str = Field(max_length=10)  # pending | creating | created | skipped | failed
    reason: str | None = None  # why skipped or failed
    subject: str | None = None
    message_id: str | None = Field(default=None, max_length=200, unique=True)
    draft: str | None = None  # the draft as JSON (headers and both parts), as rendered at plan time
    location: str | None = Field(default=None, max_length=500)  # the Gmail draft id, or the .eml path
    attempts: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)



class SyncState(SQLModel, table=True):
    """Small durable values between runs, such as the People API's sync token."""

    __tablename__ = "sync_state"

    key: str = Field(primary_key=True, max_length=100)
    value: str
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class GoogleContactLink(SQLModel, table=True):
    """Which Google person a synced contact came from (a deleted person arrives as a name only)."""

    __tablename__ = "google_contact_links"
    __table_args__ = (Index("ix_google_contact_links_resource_name", "resource_name"),)

    email: str = Field(primary_key=True, max_length=320)
    resource_name: str = Field(max_length=200)



class JobRun(SQLModel, table=True):
    """One scheduled job's one period, claimed before its side effect and recorded after it.

    claimed → posting → done. A claim whose process died before posting can be taken over after its
    lease; one that died while posting is never repeated automatically (Slack may have accepted it).
    """

    __tablename__ = "job_runs"

    job: str = Field(primary_key=True, max_length=200)
    period: str = Field(primary_key=True, max_length=60)
    state: str = Field(max_length=10)
    owner: str = Field(max_length=100)  # host:pid of the claimant
    claimed_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    result: str | None = None  # e.g. the posted message's ts, or why it failed


class Nudge(SQLModel, table=True):
    """A reminder or an alert for one account: one row per episode, however many days it lasts.

    `key` names the episode (rule, account, what it is about); state is open → done | acknowledged |
    closed (the condition cleared). A snoozed nudge stays open and is posted again on `snoozed_until`;
    `posts` counts how often it was posted (each post is claimed in job_runs, so none is repeated).
    """

    __tablename__ = "nudges"
    __table_args__ = (Index("ix_nudges_open", "kind", "rule", "state"),)

    key: str = Field(primary_key=True, max_length=300)
    kind: str = Field(max_length=10)  # review | renewal | alert | survey
    rule: str = Field(max_length=30)  # the alert rule, the renewal offset, the survey trigger
    account_pk: int = Field(sa_column=_account_fk())
    subject: str = Field(default="", max_length=200)  # what in the account it is about
    opened_on: date
    due: date | None = None
    detail: str | None = None  # the facts the message shows
    state: str = Field(default="open", max_length=12)
    snoozed_until: date | None = None
    posts: int = 0
    acted_by: str | None = Field(default=None, max_length=320)
    acted_on: date | None = None
    closed_on: date | None = None


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a model, for set-based queries and bulk writes."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]
