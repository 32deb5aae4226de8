"""`keepwell sync contacts`: Google Contacts (People API) → the book's contacts and accounts.

One run reads everything it needs from Google first (every page; only the changes when a sync token
is stored), then writes the book in one transaction, and only after the commit stores the new sync
token. A token Google no longer accepts (EXPIRED_SYNC_TOKEN, after 7 days) means a full listing, and a
full listing also removes the contacts of people deleted meanwhile.

Who a contact belongs to: the person's `userDefined` account_id (an explicit link), else an
organisation's domain, else an email's domain (or a parent domain), else an organisation's name —
matched against the book's accounts. Contact groups become account tags (added, never removed);
membership of a do-not-contact group sets do_not_contact. Configured `userDefined` fields (mrr, tier,
renewal_date, …) update the account, validated with the CSV importer's parsers.

Contacts the sync creates have source 'google' and are Google's: its values replace theirs, and a
person deleted in Google (or an address removed from a person) deletes them. Contacts imported from a
CSV (source 'import') are only enriched: a non-empty Google value replaces theirs, nothing is
blanked, their account and a do-not-contact flag are never taken away, and they are never deleted.

Two small tables (`sync_state`, `google_contact_links`) hold what must survive between runs: the
sync token and, for each address the sync wrote, the Google person it came from (a deleted person
arrives as its resource name alone).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import requests
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from bot.config import Settings
from bot.db import models as m
from bot.errors import BadInput, OperationFailed
from bot.importer import cells as c
from bot.importer.kinds import ID, NAME, ROLES, SHORT
from integrations.gmail import NoResendHttp
from integrations.google_auth import CONTACTS, SIGN_IN_AGAIN, credentials

__all__ = [
    "ACCOUNT_ATTRIBUTES",
    "PERSON_FIELDS",
    "ContactMapping",
    "DbSyncState",
    "SyncReport",
    "SyncState",
    "build_people_service",
    "sync_contacts",
]

PEOPLE_ROOT = "https://people.googleapis.com/"
# Sent unchanged on every call: Google wants a sync request's parameters to match the call that made
# the token, so they are stored with it and a change of them means a full listing.
PERSON_FIELDS = "names,emailAddresses,organizations,memberships,userDefined,metadata"
PAGE_SIZE = 1000  # the People API's maximum, for connections and for contact groups
RETRIES = 3  # googleapiclient's own backoff for 429 / 5xx; every call here is a read
TOKEN_KEY = "google_contacts.sync"
CHUNK = 500  # values per IN (...) list

A = m.table_of(m.Account)
C = m.table_of(m.Contact)

# ------------------------------------------------------------------------------------------- state tables

SYNC_STATE = m.table_of(m.SyncState)
GOOGLE_LINKS = m.table_of(m.GoogleContactLink)


class SyncState(Protocol):
    """Small durable values between runs (the People API sync token)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


class DbSyncState:
    """SyncState in the book's own database (table `sync_state`), so every machine of a team sees it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(SYNC_STATE.c.value).where(SYNC_STATE.c.key == key)).scalar()
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            _upsert(conn, SYNC_STATE, [{"key": key, "value": value, "updated_at": datetime.now(UTC)}],
                    ["key"])


# ----------------------------------------------------------------------------------------------- mapping

TIER = c.text_parser(100)
# Account attributes a userDefined field may set, each with the importer's parser for that column.
ACCOUNT_ATTRIBUTES: dict[str, Callable[[str], Any]] = {
    "mrr": c.parse_money,
    "tier": TIER,
    "seats": c.parse_count,
    "renewal_date": c.parse_date,
    "owner_email": c.parse_email,
}
LINK = "account_id"  # not written: it names the account the person belongs to
DEFAULT_FIELDS = {"mrr": "mrr", "tier": "tier", "renewal_date": "renewal_date", "seats": "seats",
                  "account_id": "account_id"}
# Where an organisation's accounts are created from an address, these domains are no company's.
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
    "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de",
    "web.de", "mail.com", "yandex.com", "fastmail.com", "hey.com", "zoho.com",
})


def _field_key(key: str) -> str:
    """A userDefined key as compared: 'Renewal date', 'renewal-date' and 'RENEWAL_DATE' are the same."""
    return re.sub(r"[\s\-]+", "_", key.strip().lower())


def _tag(group_name: str) -> str:
    """A contact group's name as a tag: lower case, spaces (and ';', the tag separator) → '-'."""
    return re.sub(r"[\s;]+", "-", group_name.strip().lower()).strip("-")


@dataclass(frozen=True)
class ContactMapping:
    """How Google contact data maps onto the book (keepwell.toml [contacts])."""

    # userDefined key → account attribute (one of ACCOUNT_ATTRIBUTES, or account_id: the link)
    account_fields: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    role_field: str = "role"  # a userDefined key holding the contact's role (champion|decision_maker|…)
    dnc_groups: tuple[str, ...] = ("do-not-contact",)  # contact groups whose members are do_not_contact
    create_accounts: bool = False  # an organisation matching no account: create it, or just report it

    def __post_init__(self) -> None:
        allowed = sorted([*ACCOUNT_ATTRIBUTES, LINK])
        for key, attribute in self.account_fields.items():
            if attribute not in allowed:
                raise BadInput(f"[contacts] account_fields: {key} → {attribute!r} is not an account "
                               f"attribute the sync can set ({', '.join(allowed)})")
        keys = [_field_key(k) for k in self.account_fields]
        if len(set(keys)) != len(keys) or _field_key(self.role_field) in keys:
            raise BadInput("[contacts] a userDefined key is mapped twice (keys are compared in lower "
                           "case, with spaces and '-' as '_')")

    def fields(self) -> dict[str, str]:
        return {_field_key(k): v for k, v in self.account_fields.items()}

    def dnc_tags(self) -> frozenset[str]:
        return frozenset(_tag(g) for g in self.dnc_groups)


@dataclass
class SyncReport:
    fetched: int = 0  # people received from Google (deleted ones included)
    created: int = 0  # contacts
    updated: int = 0  # contacts whose stored values changed
    deleted: int = 0  # contacts (source 'google' only)
    unmatched: list[str] = field(default_factory=list)  # addresses written without an account
    accounts_updated: int = 0  # attributes or tags changed
    accounts_created: int = 0  # only with create_accounts
    unmatched_organizations: list[str] = field(default_factory=list)  # organisations with no account
    full_resync: bool = False  # the stored sync token had expired, so everything was listed again
    incremental: bool = False  # only the changes since the last run were listed
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ Google side


def build_people_service(settings: Settings, mailbox: str | None = None) -> Any:
    """A People API client: one send per request (NoResendHttp), Keepwell's credentials."""
    creds = credentials(settings, [CONTACTS], mailbox)
    root = settings.google_api_url or PEOPLE_ROOT
    root = root if root.endswith("/") else root + "/"
    return build("people", "v1", http=NoResendHttp(creds), static_discovery=True,
                 client_options={"api_endpoint": root}, cache_discovery=False)


def _first_line(text: Any, limit: int = 200) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _reasons(exc: HttpError) -> set[str]:
    details = exc.error_details if isinstance(exc.error_details, list) else []
    return {str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")}


def _expired(exc: HttpError) -> bool:
    """Google no longer takes the sync token: 400 FAILED_PRECONDITION with reason EXPIRED_SYNC_TOKEN
    (after 7 days), 410 (other Google APIs' way), or a 400 about the token itself (e.g. one made for
    another Google user). A full listing is the cure for each."""
    if exc.status_code == 410:
        return True
    return exc.status_code == 400 and (
        "EXPIRED_SYNC_TOKEN" in _reasons(exc) or "sync token" in str(exc.reason).lower()
    )


def _fingerprint() -> str:
    """The request parameters a sync token is only good for (Google: they must match the first call)."""
    return f"{PERSON_FIELDS}|{PAGE_SIZE}"


def _failure(exc: Exception) -> OperationFailed:
    """One line a person can act on, for anything the People API call raised."""
    if isinstance(exc, RefreshError):
        why = _first_line(exc.args[0]) if exc.args else "invalid_grant"
        return OperationFailed(f"Google refused the sign-in ({why}); {SIGN_IN_AGAIN}")
    if isinstance(exc, HttpError):
        status, reason = exc.status_code, _first_line(exc.reason)
        if status == 401:
            return OperationFailed(f"Google rejected the credentials; {SIGN_IN_AGAIN}")
        if status == 403 and ("ACCESS_TOKEN_SCOPE_INSUFFICIENT" in _reasons(exc)
                              or "insufficient authentication scopes" in reason.lower()):
            return OperationFailed(f"the Google sign-in does not allow reading contacts; {SIGN_IN_AGAIN}")
        if status == 429:
            return OperationFailed(f"Google Contacts is limiting requests ({reason}); try again in a minute")
        return OperationFailed(f"Google Contacts refused the request ({status}: {reason})")
    if isinstance(exc, requests.RequestException | TransportError | OSError):
        return OperationFailed(f"cannot reach Google Contacts ({type(exc).__name__}: {_first_line(exc)})")
    raise exc


def _pages(make: Callable[[str | None], Any], key: str) -> Iterator[dict[str, Any]]:
    """Every page of a list call; the last page is yielded last (it carries nextSyncToken)."""
    token: str | None = None
    seen: set[str] = set()
    while True:
        page: dict[str, Any] = make(token).execute(num_retries=RETRIES)
        yield page
        token = page.get("nextPageToken")
        if not token:
            return
        if token in seen:
            raise OperationFailed(f"Google Contacts repeated a page token while listing {key}")
        seen.add(token)


def _list_people(service: Any, sync_token: str | None) -> tuple[list[dict[str, Any]], str | None]:
    params: dict[str, Any] = {"resourceName": "people/me", "personFields": PERSON_FIELDS,
                              "pageSize": PAGE_SIZE, "requestSyncToken": True}
    if sync_token:
        params["syncToken"] = sync_token
    people: list[dict[str, Any]] = []
    next_sync: str | None = None

    def call(page: str | None) -> Any:
        return service.people().connections().list(**params, **({"pageToken": page} if page else {}))

    for page in _pages(call, "contacts"):
        people.extend(page.get("connections") or [])
        next_sync = page.get("nextSyncToken") or next_sync
    return people, next_sync


def _list_groups(service: Any) -> dict[str, str]:
    """User contact groups: resource name → name (system groups such as myContacts are no tags)."""
    out: dict[str, str] = {}

    def call(page: str | None) -> Any:
        return service.contactGroups().list(
            groupFields="name,groupType", pageSize=PAGE_SIZE, **({"pageToken": page} if page else {})
        )

    for page in _pages(call, "contact groups"):
        for group in page.get("contactGroups") or []:
            if group.get("groupType", "USER_CONTACT_GROUP") == "USER_CONTACT_GROUP" and group.get("name"):
                out[str(group["resourceName"])] = str(group["name"])
    return out


def _group_refs(people: Iterable[dict[str, Any]]) -> set[str]:
    refs: set[str] = set()
    for person in people:
        for membership in person.get("memberships") or []:
            ref = (membership.get("contactGroupMembership") or {}).get("contactGroupResourceName")
            if ref:
                refs.add(str(ref))
    return refs


_SYSTEM_GROUPS = {f"contactGroups/{g}" for g in (
    "myContacts", "starred", "all", "chatBuddies", "friends", "family", "coworkers", "blocked")}


@dataclass
class _Fetched:
    people: list[dict[str, Any]]
    groups: dict[str, str]
    sync_token: str | None
    incremental: bool
    full_resync: bool


def _fetch(service: Any, stored: str | None) -> _Fetched:
    """Everything this run needs from Google, before the book is touched."""
    saved: dict[str, Any] = {}
    if stored:
        try:
            saved = dict(json.loads(stored))
        except (ValueError, TypeError):
            saved = {}
    token = saved.get("token") if saved.get("request") == _fingerprint() else None
    try:
        people: list[dict[str, Any]] | None = None
        next_sync: str | None = None
        expired = False
        if token:
            try:
                people, next_sync = _list_people(service, str(token))
            except HttpError as exc:
                if not _expired(exc):
                    raise
                expired = True
        if people is None:
            people, next_sync = _list_people(service, None)
        refs = _group_refs(people) - _SYSTEM_GROUPS
        groups = _list_groups(service) if refs else {}
    except Exception as exc:  # every failure becomes one line (a bug is re-raised by _failure)
        raise _failure(exc) from None
    return _Fetched(people, groups, next_sync, incremental=bool(token) and not expired, full_resync=expired)


# -------------------------------------------------------------------------------------------- the people


@dataclass
class _Person:
    rn: str
    label: str
    updated: str
    emails: list[str]
    first: str | None
    last: str | None
    title: str | None
    role: str | None  # None: not given, or invalid
    role_invalid: bool
    dnc: bool
    tags: set[str]
    org_names: list[str]
    org_domains: list[str]
    attrs: dict[str, Any]  # account attribute → parsed value
    account_id: str | None  # the explicit link


def _primary_first(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    items = list(items or [])
    return sorted(items, key=lambda i: not (i.get("metadata") or {}).get("primary"))


def _clean(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _read_person(raw: dict[str, Any], mapping: ContactMapping, fields: dict[str, str],
                 groups: dict[str, str], warn: Callable[[str], None]) -> _Person:
    rn = str(raw.get("resourceName") or "")
    names = _primary_first(raw.get("names"))
    name = names[0] if names else {}
    display = _clean(name.get("displayName")) or " ".join(
        p for p in (_clean(name.get("givenName")), _clean(name.get("familyName"))) if p)
    addresses = [_clean(e.get("value")) for e in _primary_first(raw.get("emailAddresses"))]
    label_bits = [display] if display else []
    if addresses and addresses[0]:
        label_bits.append(f"<{addresses[0]}>")
    label = " ".join(label_bits) or rn

    emails: list[str] = []
    for value in addresses:
        if not value:
            continue
        try:
            email = c.parse_email(value)
        except ValueError as exc:
            warn(f"{label}: skipped the address {value!r} ({exc})")
            continue
        if email not in emails:
            emails.append(email)

    def text(value: Any, parse: Callable[[str], str], what: str) -> str | None:
        cleaned = _clean(value)
        if not cleaned:
            return None
        try:
            return parse(cleaned)
        except ValueError as exc:
            warn(f"{label}: {what} ignored ({exc})")
            return None

    orgs = _primary_first(raw.get("organizations"))
    org_names = [n for n in (_clean(o.get("name")) for o in orgs) if n]
    org_domains: list[str] = []
    for org in orgs:
        if _clean(org.get("domain")):
            try:
                org_domains.append(c.parse_domain(_clean(org.get("domain"))))
            except ValueError as exc:
                warn(f"{label}: organisation domain ignored ({exc})")

    role: str | None = None
    role_invalid = False
    attrs: dict[str, Any] = {}
    account_id: str | None = None
    role_key = _field_key(mapping.role_field)
    for item in raw.get("userDefined") or []:
        key, value = _field_key(_clean(item.get("key"))), _clean(item.get("value"))
        if not value:
            continue
        if key == role_key:
            try:
                role = ROLES(re.sub(r"[\s\-]+", "_", value))
            except ValueError as exc:
                role_invalid = True
                warn(f"{label}: {mapping.role_field} ignored ({exc})")
            continue
        attribute = fields.get(key)
        if attribute is None:
            continue
        if attribute == LINK:
            account_id = text(value, ID, "account_id")
            continue
        try:
            attrs[attribute] = ACCOUNT_ATTRIBUTES[attribute](value)
        except ValueError as exc:
            warn(f"{label}: {_clean(item.get('key'))} ignored ({exc})")

    dnc_tags = mapping.dnc_tags()
    dnc, tags = False, set()
    for ref in sorted(_group_refs([raw])):
        group = groups.get(ref)
        if group is None:
            continue
        tag = _tag(group)
        if tag in dnc_tags:
            dnc = True
        elif tag:
            tags.add(tag)

    sources = (raw.get("metadata") or {}).get("sources") or [{}]
    updated = max(_clean(s.get("updateTime")) for s in sources)
    return _Person(
        rn, label, updated, emails,
        text(name.get("givenName"), SHORT, "first name"), text(name.get("familyName"), SHORT, "last name"),
        text(orgs[0].get("title") if orgs else None, NAME, "title"), role, role_invalid, dnc, tags, org_names,
        org_domains, attrs, account_id,
    )


# ------------------------------------------------------------------------------------------ the accounts

_AMBIGUOUS = -1


@dataclass
class _Account:
    key: int  # the primary key, or a negative placeholder for one this run creates
    account_id: str
    name: str
    domain: str | None
    tags: str
    values: dict[str, Any]  # current ACCOUNT_ATTRIBUTES values
    changes: dict[str, Any] = field(default_factory=dict)
    new: bool = False
    start_date: date | None = None


class _Accounts:
    """The book's accounts, indexed the ways a person is matched (loaded once per run)."""

    def __init__(self, conn: Connection, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.by_key: dict[int, _Account] = {}
        self.by_id: dict[str, _Account] = {}
        self.by_domain: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        cols = [A.c.id, A.c.account_id, A.c.name, A.c.domain, A.c.tags, *(A.c[a] for a in ACCOUNT_ATTRIBUTES)]
        for row in conn.execute(select(*cols)):
            values = {a: row._mapping[a] for a in ACCOUNT_ATTRIBUTES}
            self._add(_Account(row.id, row.account_id, row.name, row.domain, row.tags or "", values))
        self._next_new = -2

    def _add(self, account: _Account) -> None:
        self.by_key[account.key] = account
        self.by_id[account.account_id] = account
        if account.domain:
            known = self.by_domain.get(account.domain)
            self.by_domain[account.domain] = account.key if known is None else _AMBIGUOUS
        folded = account.name.strip().casefold()
        if folded:
            known = self.by_name.get(folded)
            self.by_name[folded] = account.key if known is None else _AMBIGUOUS

    def _by_domain(self, host: str, who: str) -> _Account | None:
        while "." in host:
            key = self.by_domain.get(host)
            if key == _AMBIGUOUS:
                self.warn(f"{who}: the domain {host} belongs to several accounts; not matched by it")
                return None
            if key is not None:
                return self.by_key[key]
            host = host.split(".", 1)[1]
        return None

    def match(self, p: _Person) -> _Account | None:
        if p.account_id is not None and p.account_id in self.by_id:
            return self.by_id[p.account_id]
        for domain in p.org_domains:
            found = self._by_domain(domain, p.label)
            if found is not None:
                return found
        for email in p.emails:
            found = self._by_domain(email.rsplit("@", 1)[1], p.label)
            if found is not None:
                return found
        for name in p.org_names:
            key = self.by_name.get(name.casefold())
            if key == _AMBIGUOUS:
                self.warn(f"{p.label}: several accounts are named {name!r}; not matched by name")
            elif key is not None:
                return self.by_key[key]
        return None

    def create(self, p: _Person, today: date) -> _Account | None:
        """A new account for the person's organisation (or explicit account_id), if one can be named."""
        domain = p.org_domains[0] if p.org_domains else None
        if domain is None and p.org_names:
            company = [e.rsplit("@", 1)[1] for e in p.emails if e.rsplit("@", 1)[1] not in FREE_MAIL]
            domain = company[0] if company else None
        name = p.org_names[0] if p.org_names else None
        if p.account_id is None and name is None and not p.org_domains:
            return None
        slug = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
        account_id = (p.account_id or domain or slug)[:200]
        if not account_id:
            return None
        if account_id in self.by_id:
            self.warn(f"{p.label}: an account {account_id!r} exists but matches neither the person's "
                      "domain nor organisation; no account created")
            return None
        account = _Account(self._next_new, account_id, (name or domain or account_id)[:300], domain, "",
                           dict.fromkeys(ACCOUNT_ATTRIBUTES), new=True, start_date=today)
        self._next_new -= 1
        self._add(account)
        return account


# -------------------------------------------------------------------------------------------- the writes


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), CHUNK):
        yield values[i: i + CHUNK]


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE for many rows in one statement, on either engine."""
    if not rows:
        return
    make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = make(table)
    updates = {col: stmt.excluded[col] for col in rows[0] if col not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates), rows)


def _create_accounts(conn: Connection, accounts: _Accounts, now: datetime) -> int:
    new = [a for a in accounts.by_key.values() if a.new]
    if not new:
        return 0
    rows = [{"account_id": a.account_id, "name": a.name, "start_date": a.start_date, "domain": a.domain,
             "tags": a.tags, **{k: v for k, v in a.values.items()}, "updated_at": now} for a in new]
    conn.execute(A.insert(), rows)
    ids = {a.account_id: a for a in new}
    for chunk in _chunks(list(ids)):
        for pk, account_id in conn.execute(select(A.c.id, A.c.account_id).where(A.c.account_id.in_(chunk))):
            ids[account_id].key = pk
    return len(new)


def _update_accounts(conn: Connection, changed: list[_Account], now: datetime) -> None:
    """One UPDATE per set of changed columns, each for all the accounts that changed those."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for account in changed:
        cols = tuple(sorted(account.changes))
        groups[cols].append({"b_pk": account.key, "b_updated_at": now,
                             **{f"b_{k}": v for k, v in account.changes.items()}})
    for cols, rows in groups.items():
        values = {col: bindparam(f"b_{col}", type_=A.c[col].type) for col in (*cols, "updated_at")}
        conn.execute(update(A).where(A.c.id == bindparam("b_pk")).values(values), rows)


@dataclass
class _Plan:
    """The contact rows to write, and the links and contacts to remove."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # addresses no live person has any more


def _load(conn: Connection, table: Table, column: str, values: Iterable[str]) -> list[Any]:
    out: list[Any] = []
    for chunk in _chunks(sorted(set(values))):
        out.extend(conn.execute(select(table).where(table.c[column].in_(chunk))))
    return out


def _apply(conn: Connection, people: list[_Person], deleted: set[str], full: bool,
           mapping: ContactMapping, today: date, report: SyncReport) -> None:
    warn = report.warnings.append
    now = datetime.now(UTC)
    accounts = _Accounts(conn, warn)

    # 1. each person's account (created, with create_accounts), and what the person says about it
    matched: dict[str, _Account | None] = {}
    unmatched_orgs: dict[str, int] = defaultdict(int)
    proposed: dict[int, dict[str, tuple[Any, _Person]]] = defaultdict(dict)
    for p in people:  # oldest change first: the most recently updated person's values win
        unknown_id = p.account_id is not None and p.account_id not in accounts.by_id
        account = accounts.match(p)
        if account is None and mapping.create_accounts:
            account = accounts.create(p, today)
        elif unknown_id:
            found = f"; matched {account.account_id} by domain or name" if account is not None else ""
            warn(f"{p.label}: account_id {p.account_id!r} is not in the book{found}")
        if account is None and (p.org_names or p.org_domains):
            unmatched_orgs[p.org_names[0] if p.org_names else p.org_domains[0]] += 1
        matched[p.rn] = account
        if account is None:
            if p.attrs:
                warn(f"{p.label}: {', '.join(sorted(p.attrs))} not applied (the person matches no account)")
            continue
        for attribute, value in p.attrs.items():
            before = proposed[account.key].get(attribute)
            if before is not None and before[0] != value:
                warn(f"account {account.account_id}: {attribute} is {before[0]} on {before[1].label} but "
                     f"{value} on {p.label}; kept {value} (the most recently updated)")
            proposed[account.key][attribute] = (value, p)
        if p.tags:
            current = account.tags if account.new else account.changes.get("tags", account.tags)
            try:
                tags = c.parse_tags(";".join([current, *sorted(p.tags)]))
            except ValueError as exc:
                warn(f"account {account.account_id}: tags from {p.label} not added ({exc})")
            else:
                if account.new:
                    account.tags = tags
                elif tags != account.tags:
                    account.changes["tags"] = tags
    report.unmatched_organizations = sorted(unmatched_orgs, key=str.casefold)

    for key, values in proposed.items():
        account = accounts.by_key[key]
        for attribute, (value, _) in values.items():
            if account.new:
                account.values[attribute] = value
            elif account.values.get(attribute) != value:
                account.changes[attribute] = value
    report.accounts_created = _create_accounts(conn, accounts, now)
    changed = [a for a in accounts.by_key.values() if a.changes and not a.new]
    _update_accounts(conn, changed, now)
    report.accounts_updated = len(changed)

    # 2. the contacts: every address of every live person; the most recently updated person wins
    wanted: dict[str, tuple[_Person, _Account | None]] = {}
    for p in people:
        for email in p.emails:
            earlier = wanted.get(email)
            if earlier is not None and earlier[0].rn != p.rn:
                warn(f"{email} is on several Google contacts ({earlier[0].label}, {p.label}); "
                     f"used {p.label} (the most recently updated)")
            wanted[email] = (p, matched[p.rn])
    touched = {p.rn for p in people} | deleted
    if full:
        links = list(conn.execute(select(GOOGLE_LINKS)))
    else:
        links = _load(conn, GOOGLE_LINKS, "resource_name", touched)
        links += _load(conn, GOOGLE_LINKS, "email", wanted)
    linked = {row.email: row.resource_name for row in links}
    plan = _Plan()
    plan.gone = sorted(
        email for email, rn in linked.items() if email not in wanted and (full or rn in touched)
    )
    existing = {row.email: row for row in _load(conn, C, "email", wanted)}

    for email, (p, account) in wanted.items():
        pk = None if account is None else account.key
        old = existing.get(email)
        if old is None:
            row = {"email": email, "account_pk": pk, "first_name": p.first, "last_name": p.last,
                   "title": p.title, "role": p.role or "other", "do_not_contact": p.dnc, "source": "google"}
        elif old.source == "google":  # Google's own contact: its values, whatever they are
            row = {"email": email, "account_pk": pk, "first_name": p.first, "last_name": p.last,
                   "title": p.title, "role": p.role or (old.role if p.role_invalid else "other"),
                   "do_not_contact": p.dnc, "source": "google"}
        else:  # imported from a file: enriched, never blanked, its account and do-not-contact kept
            row = {"email": email, "account_pk": old.account_pk if old.account_pk is not None else pk,
                   "first_name": p.first or old.first_name, "last_name": p.last or old.last_name,
                   "title": p.title or old.title, "role": p.role or old.role,
                   "do_not_contact": bool(old.do_not_contact) or p.dnc, "source": old.source}
        if row["account_pk"] is None:
            report.unmatched.append(email)
        if old is None:
            report.created += 1
        elif any(row[k] != getattr(old, k) for k in row):
            report.updated += 1
        else:
            row = {}
        if row:
            plan.rows.append({**row, "updated_at": now})
        if linked.get(email) != p.rn:
            plan.links.append({"email": email, "resource_name": p.rn})
    report.unmatched.sort()

    _upsert(conn, C, plan.rows, ["email"])
    _upsert(conn, GOOGLE_LINKS, plan.links, ["email"])
    for chunk in _chunks(plan.gone):
        result = conn.execute(delete(C).where(C.c.email.in_(chunk), C.c.source == "google"))
        report.deleted += result.rowcount or 0
        conn.execute(delete(GOOGLE_LINKS).where(GOOGLE_LINKS.c.email.in_(chunk)))


# ------------------------------------------------------------------------------------------------- sync


def sync_contacts(engine: Engine, people_service: Any, *, mapping: ContactMapping, today: date,
                  state: SyncState | None = None) -> SyncReport:
    """Pull Google Contacts into the book: all of it, or the changes since the last run.

    `people_service` is a People API client (see `build_people_service()`); `today` is the start date of
    accounts it creates. The book is written in one transaction; the sync token is stored after it.
    """
    state = state if state is not None else DbSyncState(engine)
    fetched = _fetch(people_service, state.get(TOKEN_KEY))
    report = SyncReport(fetched=len(fetched.people), full_resync=fetched.full_resync,
                        incremental=fetched.incremental)
    if fetched.full_resync:
        report.warnings.append("Google no longer accepted the stored sync token (it expires after 7 days): "
                               "listed every contact again")

    fields = mapping.fields()
    live: list[_Person] = []
    deleted: set[str] = set()
    for raw in fetched.people:
        rn = str(raw.get("resourceName") or "")
        if not rn:
            continue
        if (raw.get("metadata") or {}).get("deleted"):
            deleted.add(rn)
        else:
            live.append(_read_person(raw, mapping, fields, fetched.groups, report.warnings.append))
    live.sort(key=lambda p: p.updated)  # stable: Google's order among equal times
    deleted -= {p.rn for p in live}

    try:
        with engine.begin() as conn:
            _apply(conn, live, deleted, not fetched.incremental, mapping, today, report)
    except DBAPIError as exc:
        reason = _first_line(exc.orig if exc.orig is not None else exc)
        raise OperationFailed(f"the database refused the contacts sync (nothing was changed): {reason}") \
            from None
    if fetched.sync_token:
        state.set(TOKEN_KEY, json.dumps({"token": fetched.sync_token, "request": _fingerprint()}))
    else:
        report.warnings.append("Google sent no sync token: the next run lists every contact again")
    return report
