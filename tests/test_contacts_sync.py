"""`keepwell sync contacts`: the real googleapiclient against the fake People API, into a migrated book
(SQLite, and PostgreSQL when KEEPWELL_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

import integrations.contacts as contacts_module
from bot.config import Settings
from bot.db import models as m
from bot.errors import BadInput, OperationFailed
from bot.services import Keepwell
from integrations.contacts import (
    GOOGLE_LINKS,
    TOKEN_KEY,
    ContactMapping,
    DbSyncState,
    SyncReport,
    build_people_service,
    sync_contacts,
)
from tests.cli import run
from tests.fakes.google_api import FakeGoogle

CONNECTIONS = "people.people.connections.list"
GROUPS = "people.contactGroups.list"
TODAY = date(2026, 6, 30)
ACCOUNTS = """account_id,name,start_date,domain,tags,mrr,tier
A1,Acme,2024-01-01,acme.com,emea,100,Starter
A2,Globex,2024-02-01,globex.com,,,
A3,Initech,2024-03-01,,,,
A4,Umbrella,2024-04-01,umbrella.io,,,
"""

MakeCsv = Callable[..., Path]
A = m.table_of(m.Account)
C = m.table_of(m.Contact)


@pytest.fixture
def google(tmp_path: Path) -> Iterator[tuple[FakeGoogle, Settings]]:
    with FakeGoogle() as fake:
        cred = fake.authorized_user_file(tmp_path / "google.json")
        settings = Settings(GOOGLE_APPLICATION_CREDENTIALS=str(cred), KEEPWELL_GOOGLE_API_URL=fake.root_url)
        yield fake, settings
    assert fake.errors == []


@pytest.fixture
def book(service: Keepwell, csv_file: MakeCsv) -> Engine:
    service.import_file("accounts", csv_file("accounts.csv", ACCOUNTS))
    return service.book.engine


def sync(engine: Engine, settings: Settings, **mapping: Any) -> SyncReport:
    return sync_contacts(engine, build_people_service(settings), mapping=ContactMapping(**mapping),
                         today=TODAY)


def contacts(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every contact (typed values), with its account's account_id as `account`."""
    query = select(C, A.c.account_id.label("account")).outerjoin(A, A.c.id == C.c.account_pk)
    with engine.connect() as conn:
        return {r.email: dict(r._mapping) for r in conn.execute(query.order_by(C.c.email))}


def account(engine: Engine, account_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(select(A).where(A.c.account_id == account_id)).one()._mapping)


def accounts_table(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(A).order_by(A.c.account_id))]


def stored_token(engine: Engine) -> str | None:
    value = DbSyncState(engine).get(TOKEN_KEY)
    return None if value is None else str(json.loads(value)["token"])


# ------------------------------------------------------------------------------------------- full sync


def test_first_sync_pages_through_250_people_and_stores_the_sync_token(
    book: Engine, google: tuple[FakeGoogle, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, settings = google
    monkeypatch.setattr(contacts_module, "PAGE_SIZE", 100)
    for n in range(250):
        fake.add_person(given_name=f"P{n}", family_name="Person", email=f"p{n}@acme.com", title="Ops")

    report = sync(book, settings)

    calls = fake.calls_to(CONNECTIONS)
    assert len(calls) == 3
    assert [c.param("pageToken") is None for c in calls] == [True, False, False]
    for call in calls:
        assert call.param("pageSize") == "100" and call.param("requestSyncToken") == "true"
        assert call.param("personFields") == contacts_module.PERSON_FIELDS
        assert call.param("syncToken") is None
    assert fake.calls_to(GROUPS) == []  # nobody is in a group of their own: no need to list them
    assert (report.fetched, report.created, report.updated, report.deleted) == (250, 250, 0, 0)
    assert not report.incremental and not report.full_resync and report.warnings == []
    rows = contacts(book)
    assert len(rows) == 250
    assert rows["p7@acme.com"].items() >= {"first_name": "P7", "last_name": "Person", "title": "Ops",
                                           "role": "other", "do_not_contact": False, "source": "google",
                                           "account": "A1"}.items()
    token = stored_token(book)
    assert token

    again = sync(book, settings)  # nothing changed in Google: one incremental call, no writes

    assert again.incremental and (again.fetched, again.created, again.updated) == (0, 0, 0)
    assert fake.calls_to(CONNECTIONS)[-1].param("syncToken") == token
    assert contacts(book) == rows


def test_accounts_are_matched_by_org_domain_email_domain_subdomain_org_name_and_account_id(
    book: Engine, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    fake.add_person(given_name="Gil", email="gil@gmail.com", organization="Globex Corp", domain="globex.com")
    fake.add_person(given_name="Jane", email="Jane.Doe@ACME.com")
    fake.add_person(given_name="Eve", email="eve@eu.acme.com")
    fake.add_person(given_name="Ian", email="ian@gmail.com", organization="  initech ")
    fake.add_person(given_name="Uma", email="uma@gmail.com", user_defined={"account_id": "A4"})
    fake.add_person(given_name="Hal", email="hal@hooli.xyz", organization="Hooli")
    fake.add_person(given_name="Phone only", phone="+1 555 0100", organization="Hooli")

    report = sync(book, settings)

    assert {e: r["account"] for e, r in contacts(book).items()} == {
        "gil@gmail.com": "A2", "jane.doe@acme.com": "A1", "eve@eu.acme.com": "A1",
        "ian@gmail.com": "A3", "uma@gmail.com": "A4", "hal@hooli.xyz": None,
    }
    assert report.unmatched == ["hal@hooli.xyz"]
    assert report.unmatched_organizations == ["Hooli"]
    assert report.accounts_created == 0 and len(accounts_table(book)) == 4
    assert report.warnings == []


def test_an_org_domain_wins_over_the_email_domain_and_ambiguity_is_reported(
    service: Keepwell, csv_file: MakeCsv, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    service.import_file("accounts", csv_file("a.csv", """account_id,name,start_date,domain
        A1,Acme,2024-01-01,acme.com
        A2,Globex,2024-02-01,globex.com
        A5,Twin,2024-01-01,twin.com
        A6,Twin,2024-01-01,twin.com"""))
    engine = service.book.engine
    fake.add_person(given_name="Moved", email="m@acme.com", domain="globex.com")
    fake.add_person(given_name="Tess", email="tess@twin.com", organization="Twin")

    report = sync(engine, settings)

    rows = contacts(engine)
    assert rows["m@acme.com"]["account"] == "A2"
    assert rows["tess@twin.com"]["account"] is None
    assert any("twin.com belongs to several accounts" in w for w in report.warnings)
    assert any("several accounts are named 'Twin'" in w for w in report.warnings)


def test_user_defined_fields_update_the_account_and_an_invalid_value_warns(
    book: Engine, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    fake.add_person(given_name="Jane", family_name="Doe", email="jane@acme.com",
                    user_defined={"MRR": "1250.5", "Tier": "Enterprise", "Renewal date": "2026-09-30",
                                  "seats": "40", "role": "Decision maker", "favourite": "tea"})
    fake.add_person(given_name="Bob", email="bob@globex.com",
                    user_defined={"mrr": "12k", "tier": "Pro", "renewal_date": "soon", "role": "boss"})

    report = sync(book, settings)

    acme = account(book, "A1")
    assert (acme["mrr"], acme["tier"], acme["renewal_date"], acme["seats"]) == (
        Decimal("1250.50"), "Enterprise", date(2026, 9, 30), 40)
    globex = account(book, "A2")
    assert (globex["mrr"], globex["tier"], globex["renewal_date"]) == (None, "Pro", None)
    assert report.accounts_updated == 2
    assert [w for w in report.warnings if "Bob" in w] == [
        "Bob <bob@globex.com>: mrr ignored ('12k' is not a number (use a dot for decimals, e.g. 1250.50))",
        "Bob <bob@globex.com>: renewal_date ignored ('soon' is not a date (expected YYYY-MM-DD))",
        "Bob <bob@globex.com>: role ignored ('boss' is not one of "
        "champion|decision_maker|user|billing|other)",
    ]
    rows = contacts(book)
    assert rows["jane@acme.com"]["role"] == "decision_maker"
    assert rows["bob@globex.com"]["role"] == "other"  # the rest of Bob still applied
    assert rows["bob@globex.com"]["account"] == "A2"

    unchanged = sync(book, settings)  # the same values again: no account is touched
    assert unchanged.accounts_updated == 0


def test_fields_of_a_person_without_an_account_are_reported_not_applied(
    book: Engine, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    fake.add_person(given_name="Hal", email="hal@hooli.xyz", user_defined={"mrr": "10"})
    fake.add_person(given_name="Uma", email="uma@gmail.com", user_defined={"account_id": "A9"})

    report = sync(book, settings)

    assert report.warnings == [
        "Hal <hal@hooli.xyz>: mrr not applied (the person matches no account)",
        "Uma <uma@gmail.com>: account_id 'A9' is not in the book",
    ]
    assert accounts_table(book)[0]["mrr"] == Decimal("100.00")


def test_create_accounts_makes_one_account_per_new_organisation(
    book: Engine, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    fake.add_person(given_name="Hal", email="hal@hooli.xyz", organization="Hooli",
                    user_defined={"mrr": "900"})
    fake.add_person(given_name="Gav", email="gavin@hooli.xyz", organization="Hooli", groups=["Beta"])
    fake.add_person(given_name="Pip", email="pip@gmail.com", organization="Pied Piper")

    report = sync(book, settings, create_accounts=True)

    assert report.accounts_created == 2 and report.unmatched == [] and report.unmatched_organizations == []
    hooli = account(book, "hooli.xyz")
    assert (hooli["name"], hooli["domain"], hooli["start_date"], hooli["mrr"], hooli["tags"]) == (
        "Hooli", "hooli.xyz", TODAY, Decimal("900.00"), "beta")
    piper = account(book, "pied-piper")  # a free-mail address gives the account no domain
    assert (piper["name"], piper["domain"]) == ("Pied Piper", None)
    rows = contacts(book)
    assert rows["hal@hooli.xyz"]["account"] == rows["gavin@hooli.xyz"]["account"] == "hooli.xyz"
    assert rows["pip@gmail.com"]["account"] == "pied-piper"


# -------------------------------------------------------------------------------------- groups and DNC


def test_groups_become_tags_and_the_dnc_group_sets_do_not_contact(
    book: Engine, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    fake.add_group("Beta Program")
    fake.add_person(given_name="Jane", email="jane@acme.com", groups=["Beta Program", "VIP"])
    quiet = fake.add_person(given_name="Quinn", email="quinn@acme.com", groups=["Do not contact"])
    fake.add_person(given_name="Gil", email="gil@globex.com", groups=["starred"])

    report = sync(book, settings)

    assert len(fake.calls_to(GROUPS)) == 1
    assert account(book, "A1")["tags"] == "beta-program;emea;vip"  # 'emea' came from the CSV: kept
    assert account(book, "A2")["tags"] == ""  # system groups (starred, myContacts) are no tags
    rows = contacts(book)
    assert rows["quinn@acme.com"]["do_not_contact"] is True
    assert rows["jane@acme.com"]["do_not_contact"] is False
    assert report.accounts_updated == 1

    fake.update_person(quiet, groups=[])  # out of the group again
    later = sync(book, settings)

    assert later.incremental and later.updated == 1
    assert contacts(book)["quinn@acme.com"]["do_not_contact"] is False
    assert account(book, "A1")["tags"] == "beta-program;emea;vip"  # tags are only ever added


def test_dnc_groups_are_configurable(book: Engine, google: tuple[FakeGoogle, Settings]) -> None:
    fake, settings = google
    fake.add_person(given_name="Jane", email="jane@acme.com", groups=["Opted Out"])

    sync(book, settings, dnc_groups=("opted out",))

    assert contacts(book)["jane@acme.com"]["do_not_contact"] is True
    assert account(book, "A1")["tags"] == "emea"


# ----------------------------------------------------------------------------------------- incremental


def test_incremental_sync_applies_only_the_changes(book: Engine, google: tuple[FakeGoogle, Settings]) -> None:
    fake, settings = google
    people = [fake.add_person(given_name=f"P{n}", email=f"p{n}@acme.com") for n in range(5)]
    two = fake.add_person(given_name="Two", email=["two@acme.com", "two.old@acme.com"])
    sync(book, settings)
    first_token = stored_token(book)
    before = contacts(book)

    fake.add_person(given_name="New", email="new@globex.com")
    fake.update_person(people[1], title="CTO", family_name="Smith")
    fake.delete_person(people[2])
    fake.update_person(two, email=["two@acme.com"])  # an address removed from a person
    report = sync(book, settings)

    last = fake.calls_to(CONNECTIONS)[-1]
    assert last.param("syncToken") == first_token and last.param("requestSyncToken") == "true"
    assert report.incremental and not report.full_resync
    assert (report.fetched, report.created, report.updated, report.deleted) == (4, 1, 1, 2)
    after = contacts(book)
    assert set(after) == set(before) - {"p2@acme.com", "two.old@acme.com"} | {"new@globex.com"}
    assert (after["p1@acme.com"]["title"], after["p1@acme.com"]["last_name"]) == ("CTO", "Smith")
    for email in ("p0@acme.com", "p3@acme.com", "p4@acme.com", "two@acme.com"):
        assert after[email] == before[email]  # untouched, updated_at included
    assert stored_token(book) != first_token
    with book.connect() as conn:
        links = dict(conn.execute(GOOGLE_LINKS.select()).all())
    assert set(links) == set(after)


@pytest.mark.parametrize("status", [400, 410])
def test_an_expired_sync_token_means_a_flagged_full_resync_that_also_finds_deletions(
    book: Engine, google: tuple[FakeGoogle, Settings], status: int
) -> None:
    fake, settings = google
    people = [fake.add_person(given_name=f"P{n}", email=f"p{n}@acme.com") for n in range(3)]
    sync(book, settings)
    fake.delete_person(people[0])
    fake.update_person(people[1], title="CEO")
    fake.expire_sync_tokens(status=status)

    report = sync(book, settings)

    calls = fake.calls_to(CONNECTIONS)[-2:]
    assert calls[0].param("syncToken") is not None and calls[1].param("syncToken") is None
    assert report.full_resync and not report.incremental
    assert (report.fetched, report.created, report.updated, report.deleted) == (2, 0, 1, 1)
    assert report.warnings == ["Google no longer accepted the stored sync token (it expires after 7 days): "
                               "listed every contact again"]
    assert sorted(contacts(book)) == ["p1@acme.com", "p2@acme.com"]

    after = sync(book, settings)  # the new token works
    assert after.incremental and after.fetched == 0


def test_a_token_google_rejects_or_made_for_other_parameters_means_a_full_listing(
    book: Engine, google: tuple[FakeGoogle, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, settings = google
    fake.add_person(given_name="Jane", email="jane@acme.com")
    state = DbSyncState(book)
    request = f"{contacts_module.PERSON_FIELDS}|{contacts_module.PAGE_SIZE}"
    state.set(TOKEN_KEY, json.dumps({"token": "not-a-token", "request": request}))

    report = sync(book, settings)  # the fake answers 400 "Sync token is invalid."

    assert report.full_resync and report.created == 1
    calls = fake.calls_to(CONNECTIONS)
    assert [c.param("syncToken") for c in calls] == ["not-a-token", None]

    monkeypatch.setattr(contacts_module, "PAGE_SIZE", 500)  # the token was made with pageSize 1000
    later = sync(book, settings)
    assert not later.incremental and not later.full_resync and later.fetched == 1
    assert fake.calls_to(CONNECTIONS)[-1].param("syncToken") is None


def test_contacts_imported_from_csv_are_enriched_but_never_deleted(
    book: Engine, service: Keepwell, csv_file: MakeCsv, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    service.import_file("contacts", csv_file("contacts.csv", """
        email,account_id,first_name,title,role,do_not_contact
        jane@acme.com,A2,Jane,VP,champion,yes"""))
    jane = fake.add_person(given_name="Janet", email="Jane@acme.com", title="COO")
    gil = fake.add_person(given_name="Gil", email="gil@globex.com")
    sync(book, settings)

    row = contacts(book)["jane@acme.com"]
    kept = ("first_name", "title", "role", "do_not_contact", "source", "account")
    assert tuple(row[k] for k in kept) == ("Janet", "COO", "champion", True, "import", "A2")

    fake.delete_person(jane)
    fake.delete_person(gil)
    report = sync(book, settings)

    assert report.deleted == 1
    assert sorted(contacts(book)) == ["jane@acme.com"]


def test_the_same_address_on_two_people_goes_to_the_most_recently_updated(
    book: Engine, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    older = fake.add_person(given_name="Old", email="shared@acme.com", title="Old title")
    fake.add_person(given_name="New", email=["shared@acme.com", "not an address", ""], title="New title")

    report = sync(book, settings)

    assert contacts(book)["shared@acme.com"]["title"] == "New title"
    assert "shared@acme.com is on several Google contacts (Old <shared@acme.com>, New <shared@acme.com>); " \
           "used New <shared@acme.com> (the most recently updated)" in report.warnings
    assert any(w.startswith("New <shared@acme.com>: skipped the address 'not an address'")
               for w in report.warnings)

    fake.delete_person(older)  # the other person still has the address: it stays
    later = sync(book, settings)
    assert later.deleted == 0 and "shared@acme.com" in contacts(book)


# ------------------------------------------------------------------------------------ failures and atomicity


def test_a_revoked_sign_in_fails_in_one_line_naming_keepwell_auth_google(
    book: Engine, google: tuple[FakeGoogle, Settings]
) -> None:
    fake, settings = google
    fake.add_person(given_name="Jane", email="jane@acme.com")
    fake.revoke()

    with pytest.raises(OperationFailed) as failed:
        sync(book, settings)

    assert "keepwell auth google" in failed.value.message and "\n" not in failed.value.message
    assert contacts(book) == {} and stored_token(book) is None


def test_api_errors_become_operation_failed_and_passing_ones_are_retried(
    book: Engine, google: tuple[FakeGoogle, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, settings = google
    fake.add_person(given_name="Jane", email="jane@acme.com")
    fake.fail(CONNECTIONS, status=403, reason="forbidden")

    with pytest.raises(OperationFailed, match=r"^Google Contacts refused the request \(403: forbidden\)$"):
        sync(book, settings)

    monkeypatch.setattr("googleapiclient.http.time.sleep", lambda seconds: None)
    fake.fail(CONNECTIONS, status=503)
    fake.fail(CONNECTIONS, status=429)
    assert sync(book, settings).created == 1


def test_the_whole_run_is_one_transaction(
    book: Engine, google: tuple[FakeGoogle, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, settings = google
    for n in range(30):
        fake.add_person(given_name=f"P{n}", email=f"p{n}@acme.com", groups=["Beta"],
                        user_defined={"mrr": str(1000 + n)})
    before = accounts_table(book)
    real_upsert = contacts_module._upsert

    def failing_last_write(conn: Any, table: Any, rows: Any, keys: Any) -> None:
        real_upsert(conn, table, rows, keys)
        if table is GOOGLE_LINKS:  # the contacts and the account are written by now
            conn.execute(text("INSERT INTO contacts (email) VALUES (NULL)"))

    monkeypatch.setattr(contacts_module, "_upsert", failing_last_write)
    with pytest.raises(OperationFailed, match="nothing was changed"):
        sync(book, settings)

    assert contacts(book) == {} and accounts_table(book) == before and stored_token(book) is None

    monkeypatch.setattr(contacts_module, "_upsert", real_upsert)
    report = sync(book, settings)  # no token was stored: a full listing again, applied whole
    assert not report.incremental and report.created == 30
    assert account(book, "A1")["mrr"] == Decimal("1029.00") and account(book, "A1")["tags"] == "beta;emea"


def test_a_mapping_to_an_unknown_attribute_is_bad_input() -> None:
    with pytest.raises(BadInput, match="'colour' is not an account attribute"):
        ContactMapping(account_fields={"colour": "colour"})
    with pytest.raises(BadInput, match="mapped twice"):
        ContactMapping(account_fields={"MRR": "mrr", "mrr": "mrr"})


def test_the_sync_contacts_command(tmp_path, capsys, monkeypatch, csv_file):
    """keepwell sync contacts, as a user runs it: credentials file, API root, one line of figures."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    accounts = csv_file("a.csv", "account_id,name,start_date,domain\nA1,Acme,2024-01-01,acme.com")
    assert run(capsys, "import", "accounts", str(accounts), "--db", url)[0] == 0
    with FakeGoogle() as fake:
        fake.add_person(given_name="Dana", family_name="Ruiz", email="dana@acme.com", organization="Acme",
                        user_defined={"role": "champion", "mrr": "1200"})
        fake.add_person(given_name="Lee", email="lee@elsewhere.org")
        cred = fake.authorized_user_file(tmp_path / "google.json")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(cred))
        monkeypatch.setenv("KEEPWELL_GOOGLE_API_URL", fake.root_url)
        code, out, err = run(capsys, "sync", "contacts", "--db", url)
        assert code == 0, err
        assert "2 people fetched; 2 contacts created" in out and "1 address(es) match no account" in out
        code, out, _ = run(capsys, "sync", "contacts", "--db", url, "--json")
        report = json.loads(out)
        assert report["incremental"] is True and report["created"] == 0
        code, out, _ = run(capsys, "health", "A1", "--db", url, "--json")
        assert json.loads(out)["mrr"] == 1200.0
