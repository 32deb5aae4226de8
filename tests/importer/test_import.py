"""Imports that succeed: every kind and column, encodings, delimiters, warnings, upserts and dry runs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bot.cli import main
from bot.db.engine import make_engine
from bot.errors import BadInput
from bot.importer.run import import_csv
from tests.importer.conftest import Importer, RawFile
from tests.importer.helpers import ENCODINGS, NAME, counts, encode, scalar, snapshot, stored

D = date.fromisoformat


def at(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


# (kind, file, table, the rows it must hold afterwards); the book holds A1 (acme.com), A2 (globex.com).
EVERY_KIND = [
    ("accounts",
     "account_id,name,start_date,domain,tier,tags,owner_email,mrr,seats,renewal_date,churn_date,churn_reason\n"
     'A3,Initech,2024-03-01,https://www.Initech.com/,Enterprise,"Beta; emea;;EMEA ; vip",Owner@Initech.COM,'
     "1250.5,40,2026-03-01,2025-06-30,price\n"
     "A4,Umbrella,2024-04-01,,,,,,,,,\n",
     "accounts",
     [dict(account_id="A3", name="Initech", start_date=D("2024-03-01"), domain="initech.com",
           tier="Enterprise", tags="beta;emea;vip", owner_email="owner@initech.com", mrr=Decimal("1250.50"),
           seats=40,
           renewal_date=D("2026-03-01"), churn_date=D("2025-06-30"), churn_reason="price"),
      dict(account_id="A4", name="Umbrella", start_date=D("2024-04-01"), domain=None, tier=None, tags="",
           owner_email=None, mrr=None, seats=None, renewal_date=None, churn_date=None, churn_reason=None)]),
    ("contacts",
     "email,account_id,first_name,last_name,title,role,do_not_contact\n"
     "Jane@Acme.com,,Jane,Doe,VP Ops,Champion,yes\nbob@globex.com,A1,Bob,,,,0\nsue@eu.globex.com,,,,,,\n",
     "contacts",
     [dict(email="bob@globex.com", account="A1", first_name="Bob", last_name=None, title=None, role="other",
           do_not_contact=False, source="import"),
      dict(email="jane@acme.com", account="A1", first_name="Jane", last_name="Doe", title="VP Ops",
           role="champion", do_not_contact=True, source="import"),
      dict(email="sue@eu.globex.com", account="A2", first_name=None, last_name=None, title=None, role="other",
           do_not_contact=False, source="import")]),
    ("usage",
     "account_id,date,active_users,events\nA1,2026-01-05,3,10\nA1,2026-01-06,4,\nA2,2026-01-05,0,0\n",
     "usage_daily",
     [dict(account="A1", day=D("2026-01-05"), active_users=3, events=10),
      dict(account="A1", day=D("2026-01-06"), active_users=4, events=1),  # events default to 1
      dict(account="A2", day=D("2026-01-05"), active_users=0, events=0)]),
    ("nps",
     'account_id,date,score,touchpoint,comment\nA1,2026-01-05,9,QBR,"Great, thanks"\nA2,2026-01-05,0,,\n',
     "nps_responses",
     [dict(account="A1", email="", day=D("2026-01-05"), score=9, touchpoint="qbr", comment="Great, thanks",
           nth=1),
      dict(account="A2", email="", day=D("2026-01-05"), score=0, touchpoint="other", comment=None, nth=1)]),
    ("tickets",
     "ticket_id,account_id,opened_at,closed_at,priority,kind\n"
     "T1,A1,2026-01-05T10:00:00+02:00,2026-01-06T09:30:00Z,Urgent,bug\nT2,A2,2026-01-05,,,\n"
     "T3,A2,2026-01-05T10:00:00,2026-01-05 10:00:00-05:00,low,FEATURE\n",
     "tickets",
     [dict(ticket_id="T1", account="A1", opened_at=at("2026-01-05T08:00"), closed_at=at("2026-01-06T09:30"),
           priority="urgent", kind="bug"),
      dict(ticket_id="T2", account="A2", opened_at=at("2026-01-05T00:00"), closed_at=None, priority="normal",
           kind="other"),
      dict(ticket_id="T3", account="A2", opened_at=at("2026-01-05T10:00"), closed_at=at("2026-01-05T15:00"),
           priority="low", kind="feature")]),
    ("invoices",
     "invoice_id,account_id,amount,due_date,paid_date\nI1,A1,1200.50,2026-01-31,2026-02-03\nI2,A2,0,2026-02-28,\n",
     "invoices",
     [dict(invoice_id="I1", account="A1", amount=Decimal("1200.50"), due_date=D("2026-01-31"),
           paid_date=D("2026-02-03")),
      dict(invoice_id="I2", account="A2", amount=Decimal("0.00"), due_date=D("2026-02-28"), paid_date=None)]),
    ("mrr",
     "account_id,month,mrr\nA1,2026-01,100\nA1,2026-02-01,110.5\n",
     "mrr_history",
     [dict(account="A1", month=D("2026-01-01"), mrr=Decimal("100.00")),
      dict(account="A1", month=D("2026-02-01"), mrr=Decimal("110.50"))]),
    ("touches",
     "account_id,date,channel,team,contact_email,sentiment,kind,note\n"
     'A1,2026-01-05,Meeting,CS,Jane@Acme.com,positive,qbr,"Went well\nnext: renewal"\nA2,2026-01-06,,,,,,\n',
     "touches",
     [dict(account="A1", day=D("2026-01-05"), channel="meeting", team="cs", contact_email="jane@acme.com",
           sentiment="positive", kind="qbr", note="Went well\nnext: renewal", source="import",
           ref="", author=None),
      dict(account="A2", day=D("2026-01-06"), channel="other", team="other", contact_email="", sentiment=None,
           kind="other", note=None, source="import", ref="", author=None)]),
    ("team",
     "account_id,member,function\nA1,U0123ABCD,cs\nA1,Zoe@Acme.com,Exec\n",
     "account_team",
     [dict(account="A1", member="U0123ABCD", function="cs", added_by=None),
      dict(account="A1", member="zoe@acme.com", function="exec", added_by=None)]),
]


@pytest.mark.parametrize(("kind", "content", "table", "expected"), EVERY_KIND, ids=[c[0] for c in EVERY_KIND])
def test_every_kind_stores_every_column(
    book: Engine, importer: Importer, kind: str, content: str, table: str, expected: list[dict[str, Any]]
) -> None:
    report = importer(kind, content)
    assert (report.rows, report.warnings, report.errors) == (len(expected), [], [])
    got = stored(book, table)
    assert (got[2:] if table == "accounts" else got) == expected  # accounts: after the seeds A1, A2


@pytest.mark.parametrize(("how", "encoding"), ENCODINGS.items())
def test_each_encoding_keeps_a_non_ascii_name_exactly(
    book: Engine, importer: Importer, how: str, encoding: str
) -> None:
    report = importer("accounts", encode(f"account_id,name,start_date\nA3,{NAME},2024-03-01\n", how))
    assert (report.encoding, report.rows) == (encoding, 1)
    assert scalar(book, "SELECT name FROM accounts WHERE account_id = 'A3'") == NAME


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_delimiters_and_quoted_cells_with_delimiters_quotes_and_line_breaks(
    book: Engine, importer: Importer, delimiter: str, newline: str
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    writer.writerow(["account_id", "name", "start_date", "tags", "churn_date", "churn_reason"])
    writer.writerow(["A3", 'Acme, "West"; Ltd\tEU', "2024-03-01", "b;a", "2025-01-01", "line one\nline two"])
    writer.writerow(["A4", "Plain", "2024-03-01", "", "", ""])
    report = importer("accounts", buf.getvalue())
    assert (report.delimiter, report.rows) == (delimiter, 2)
    got = {r["account_id"]: r for r in stored(book, "accounts")}
    assert got["A3"]["name"] == 'Acme, "West"; Ltd\tEU'
    assert got["A3"]["tags"] == "a;b"
    assert got["A3"]["churn_reason"] == "line one\nline two"
    assert got["A4"]["name"] == "Plain"


def test_header_case_and_spaces_and_cell_spaces_do_not_matter(book: Engine, importer: Importer) -> None:
    report = importer("accounts", " Account_ID ,  NAME ,Start_Date\t\n  A3 ,  Initech  , 2024-03-01 \n")
    assert (report.rows, report.warnings) == (1, [])
    a3 = stored(book, "accounts")[2]
    assert (a3["account_id"], a3["name"], a3["start_date"]) == ("A3", "Initech", D("2024-03-01"))


def test_unknown_columns_are_named_in_a_warning_and_ignored(book: Engine, importer: Importer) -> None:
    report = importer("accounts", "account_id,Colour,name,start_date, Notes ,\nA3,red,Initech,2024-03-01,x,")
    assert report.warnings == ["ignored unknown column(s): colour, notes"]
    assert report.rows == 1
    assert [r["account_id"] for r in stored(book, "accounts")] == ["A1", "A2", "A3"]


HEADERS = {
    "accounts": "account_id,name,start_date", "contacts": "email", "usage": "account_id,date,user_id",
    "nps": "date,score,email", "tickets": "ticket_id,account_id,opened_at",
    "invoices": "invoice_id,account_id,amount,due_date", "mrr": "account_id,month,mrr",
    "touches": "account_id,date", "team": "account_id,member,function",
}


@pytest.mark.parametrize("kind", HEADERS)
def test_a_header_only_file_imports_nothing_with_a_warning(
    shared_book: Engine, shared_importer: Importer, kind: str
) -> None:
    before = counts(shared_book)
    report = shared_importer(kind, HEADERS[kind] + "\n\n")
    assert (report.rows, report.errors, report.warnings) == (0, [], ["the file has a header but no rows"])
    assert counts(shared_book) == before


# One file of every kind, imported in this order (later kinds refer to earlier ones).
ALL_FILES = [
    ("accounts", "account_id,name,start_date,domain,tags,mrr\nA3,Initech,2024-03-01,initech.com,b;a,10.5\n"),
    ("contacts", "email,role\njane@acme.com,champion\nbob@initech.com,user\nx@nowhere.org,\n"),
    ("usage", "account_id,date,active_users\nA1,2026-01-05,3\nA3,2026-01-05,4\n"),
    ("usage", "account_id,date,user_id,events\nA2,2026-01-05,u1,2\nA2,2026-01-05,u2,\nA2,2026-01-06,u1,1\n"),
    ("nps", "email,date,score\njane@acme.com,2026-01-05,9\ncarol@initech.com,2026-01-05,3\n"),
    ("tickets", "ticket_id,account_id,opened_at,closed_at\nT1,A1,2026-01-05T10:00:00+02:00,2026-01-06\n"),
    ("invoices", "invoice_id,account_id,amount,due_date\nI1,A1,99.99,2026-01-31\n"),
    ("mrr", "account_id,month,mrr\nA1,2026-01,100\nA3,2026-01,50\n"),
    ("touches", "account_id,date,channel,note\nA1,2026-01-05,call,hello\n"),
    ("team", "account_id,member,function\nA1,U0123ABCD,cs\nA3,zoe@initech.com,sales\n"),
]


def test_importing_every_file_again_changes_nothing(book: Engine, importer: Importer) -> None:
    for kind, content in ALL_FILES:
        importer(kind, content)
    # every column, ids included, but accounts' and contacts' updated_at, which a re-import refreshes
    first = snapshot(book, exclude=("updated_at",))
    assert all(first.values()), "every table got rows"
    for kind, content in ALL_FILES:
        importer(kind, content)
        assert snapshot(book, exclude=("updated_at",)) == first, f"re-importing {kind} changed the book"


# (kind, first file, corrected file, table, column, that column's values after both imports)
UPSERTS = [
    ("accounts", "account_id,name,start_date,mrr\nA3,Initech,2024-03-01,10\nA4,Umbrella,2024-03-01,20\n",
     "account_id,name,start_date,mrr\nA3,Initech Corp,2024-03-01,\n", "accounts", "mrr",
     [None, None, None, Decimal("20.00")]),
    ("contacts", "email,account_id,role\njane@acme.com,,user\n",
     "email,account_id,role\nJANE@acme.com,A2,billing\n", "contacts", "account", ["A2"]),
    ("usage", "account_id,date,active_users\nA1,2026-01-05,3\nA1,2026-01-06,3\n",
     "account_id,date,active_users,events\nA1,2026-01-05,7,5\n", "usage_daily", "active_users", [7, 3]),
    ("nps", "account_id,date,score\nA1,2026-01-05,3\n",
     "account_id,date,score,comment\nA1,2026-01-05,8,better\n", "nps_responses", "score", [8]),
    ("tickets", "ticket_id,account_id,opened_at\nT1,A1,2026-01-05\n",
     "ticket_id,account_id,opened_at,closed_at\nT1,A2,2026-01-05,2026-01-07T12:00:00Z\n",
     "tickets", "closed_at", [at("2026-01-07T12:00")]),
    ("invoices", "invoice_id,account_id,amount,due_date\nI1,A1,10,2026-01-31\n",
     "invoice_id,account_id,amount,due_date,paid_date\nI1,A1,12,2026-01-31,2026-02-02\n",
     "invoices", "paid_date", [D("2026-02-02")]),
    ("mrr", "account_id,month,mrr\nA1,2026-01,100\n", "account_id,month,mrr\nA1,2026-01-31,150\n",
     "mrr_history", "mrr", [Decimal("150.00")]),
    ("touches", "account_id,date,note\nA1,2026-01-05,first\n",
     "account_id,date,note\nA1,2026-01-05,second\n", "touches", "note", ["second"]),
    ("team", "account_id,member,function\nA1,U0123ABCD,cs\n",
     "account_id,member,function\nA1,U0123ABCD,exec\n", "account_team", "function", ["exec"]),
]


@pytest.mark.parametrize(("kind", "first", "second", "table", "column", "after"), UPSERTS,
                         ids=[c[0] for c in UPSERTS])
def test_a_corrected_file_updates_rows_by_key_and_keeps_the_others(
    book: Engine, importer: Importer, kind: str, first: str, second: str, table: str, column: str, after: list
) -> None:
    importer(kind, first)
    importer(kind, second)
    assert [r[column] for r in stored(book, table)] == after


def test_contacts_are_matched_to_accounts_by_email_domain(book: Engine, importer: Importer) -> None:
    importer("accounts", "account_id,name,start_date,domain\nA3,Acme Europe,2024-01-01,eu.acme.com\n")
    report = importer("contacts", "email,account_id\njane@eu.acme.com,\njim@de.eu.acme.com,\n"
                      "ann@us.acme.com,\nbob@GLOBEX.com,\nkim@acme.com,A2\nx@nowhere.org,\ny@notacme.com,\n")
    assert report.warnings == ["2 contact(s) matched no account by domain (imported without an account)"]
    assert {r["email"]: r["account"] for r in stored(book, "contacts")} == {
        "jane@eu.acme.com": "A3",  # the most specific domain wins
        "jim@de.eu.acme.com": "A3",
        "ann@us.acme.com": "A1",  # a subdomain of acme.com
        "bob@globex.com": "A2",
        "kim@acme.com": "A2",  # account_id, when given, beats the domain
        "x@nowhere.org": None,
        "y@notacme.com": None,  # matched by whole labels, not by suffix
    }


# A second file that leaves a column out, and what the rows hold after it: the first file's values
# where the second has no column for them, the second's where it has one (an empty cell clears).
PARTIAL = [
    ("contacts", "email,account_id,role,do_not_contact,title\n"
                 "ann@acme.com,A2,champion,yes,CEO\nbob@acme.com,,user,no,\nkim@acme.com,,,no,\n",
     "email,title\nann@acme.com,CTO\nbob@acme.com,VP\nnew@globex.com,\n",
     "contacts", ("account", "role", "do_not_contact", "title"),
     [("A2", "champion", True, "CTO"), ("A1", "user", False, "VP"), ("A1", "other", False, None),
      ("A2", "other", False, None)]),
    ("accounts", "account_id,name,start_date,tier,tags,mrr,seats,renewal_date,churn_date,churn_reason\n"
                 "A1,Acme,2024-01-01,enterprise,emea;retail,100,20,2027-01-01,,\n",
     "account_id,name,start_date,mrr\nA1,Acme Corp,2024-01-01,\n",
     "accounts", ("name", "tier", "tags", "mrr", "seats", "renewal_date"),
     [("Acme Corp", "enterprise", "emea;retail", None, 20, date(2027, 1, 1)),
      ("Globex", None, "", None, None, None)]),
    ("invoices", "invoice_id,account_id,amount,due_date,paid_date\nI1,A1,100,2025-01-01,2025-01-05\n",
     "invoice_id,account_id,amount,due_date\nI1,A1,120,2025-01-01\nI2,A1,50,2025-02-01\n",
     "invoices", ("amount", "paid_date"), [(Decimal(120), date(2025, 1, 5)), (Decimal(50), None)]),
    ("tickets", "ticket_id,account_id,opened_at,closed_at,priority,kind\n"
                "T1,A1,2025-01-01T09:00:00Z,2025-01-02T09:00:00Z,urgent,bug\n",
     "ticket_id,account_id,opened_at\nT1,A2,2025-01-01T09:00:00Z\n",
     "tickets", ("account", "closed_at", "priority", "kind"),
     [("A2", datetime(2025, 1, 2, 9, tzinfo=UTC), "urgent", "bug")]),
    ("usage", "account_id,date,active_users,events\nA1,2025-01-01,3,40\n",
     "account_id,date,active_users\nA1,2025-01-01,4\nA1,2025-01-02,5\n",
     "usage_daily", ("active_users", "events"), [(4, 40), (5, 1)]),
]


@pytest.mark.parametrize(("kind", "first", "second", "table", "columns", "after"), PARTIAL,
                         ids=[c[0] for c in PARTIAL])
def test_a_file_without_a_column_leaves_what_the_book_holds_for_it(
    book: Engine, importer: Importer, kind: str, first: str, second: str, table: str,
    columns: tuple[str, ...], after: list[tuple[Any, ...]],
) -> None:
    """A contacts export without the do-not-contact column must not unflag anybody, nor one without
    payments make every invoice overdue: a re-import updates the columns its file has."""
    importer(kind, first)
    importer(kind, second)
    assert [tuple(r[c] for c in columns) for r in stored(book, table)] == after
    before = stored(book, table)
    importer(kind, second)  # and the same file again changes nothing
    assert stored(book, table) == before


@pytest.mark.parametrize(("kind", "first", "second", "table", "problem"), [
    ("accounts", "account_id,name,start_date,churn_date,churn_reason\nA1,Acme,2024-01-01,2025-03-01,price\n",
     "account_id,name,start_date\nA1,Acme,2025-06-01\n", "accounts",
     "account A1: start_date 2025-06-01 is not before the churn_date 2025-03-01 the book holds (the file "
     "has no churn_date column: give it, empty if the account is back)"),
    ("tickets", "ticket_id,account_id,opened_at,closed_at\nT1,A2,2025-01-01T00:00:00Z,2025-01-02T00:00:00Z\n",
     "ticket_id,account_id,opened_at\nT1,A2,2025-03-01T00:00:00Z\n", "tickets",
     "ticket T1: opened_at 2025-03-01 00:00 is after the closed_at 2025-01-02 00:00 the book holds (the "
     "file has no closed_at column: give it)"),
])
def test_a_file_whose_rows_contradict_a_kept_column_is_refused_whole(
    book: Engine, importer: Importer, kind: str, first: str, second: str, table: str, problem: str
) -> None:
    """A kept column escapes the row's own checks: the rows it would leave at odds are refused after
    the writing, and nothing is imported, as for any invalid row."""
    importer(kind, first)
    before = snapshot(book)
    with pytest.raises(BadInput) as refused:
        importer(kind, second)
    assert refused.value.message.endswith(": rows at odds with what the book holds; nothing was imported")
    assert refused.value.details == [problem]
    assert snapshot(book) == before


def test_a_churn_date_and_its_reason_go_together(book: Engine, importer: Importer) -> None:
    """A file with churn_date but no churn_reason column brings an account back whole: no reason is
    left without its date."""
    importer("accounts",
             "account_id,name,start_date,churn_date,churn_reason\nA1,Acme,2024-01-01,2025-03-01,price\n")
    importer("accounts", "account_id,name,start_date,churn_date\nA1,Acme,2024-01-01,\n")
    (a1,) = (r for r in stored(book, "accounts") if r["account_id"] == "A1")
    assert (a1["churn_date"], a1["churn_reason"]) == (None, None)


def test_a_contact_that_keeps_its_account_is_not_called_unmatched(book: Engine, importer: Importer) -> None:
    importer("contacts", "email,account_id\nbob@other.org,A1\n")
    report = importer("contacts", "email,title\nbob@other.org,VP\nnew@other.org,CFO\n")
    assert report.warnings == ["1 contact(s) matched no account by domain (imported without an account)"]
    assert {r["email"]: r["account"] for r in stored(book, "contacts")} == {
        "bob@other.org": "A1", "new@other.org": None}


@pytest.mark.parametrize(("kind", "content", "table", "column", "label", "stored_", "corrected"), [
    ("nps", "account_id,date,score,touchpoint\nA1,2026-01-05,7,qbr\nA1,2026-01-05,9,QBR\n"
            "A1,2026-01-05,3,qbr\nA2,2026-01-05,8,qbr\n",
     "nps_responses", "score", "account, email, date and touchpoint", [7, 9, 3, 8], [6, 9, 3, 8]),
    ("touches", "account_id,date,channel,note\nA1,2026-01-05,call,first\nA1,2026-01-05,Call,second\n"
                "A1,2026-01-05,call,third\nA2,2026-01-05,call,other account\n",
     "touches", "note", "account, date, channel, team, contact and kind",
     ["first", "second", "third", "other account"], ["first call", "second", "third", "other account"]),
])
def test_rows_that_share_a_key_are_each_kept_and_a_second_import_finds_them(
    book: Engine, importer: Importer, kind: str, content: str, table: str, column: str, label: str,
    stored_: list[Any], corrected: list[Any],
) -> None:
    """Two anonymous answers of one account on one day, two calls with it: real rows, not repeats. Each
    is stored under its rank among the rows of its key, which a later import of the file finds again."""
    report = importer(kind, content)
    assert report.warnings == [f"2 row(s) share their {label} with an earlier row: each is kept as one "
                               "more of its own"]
    assert [r[column] for r in stored(book, table)] == stored_  # by key, then rank
    before = stored(book, table)
    importer(kind, content)  # the same file again changes nothing
    assert stored(book, table) == before
    importer(kind, content.replace(",7,", ",6,").replace(",first", ",first call"))  # and corrects by rank
    assert [r[column] for r in stored(book, table)] == corrected


def test_a_domain_shared_by_two_accounts_is_ambiguous_unless_account_id_is_given(
    book: Engine, importer: Importer
) -> None:
    importer("accounts", "account_id,name,start_date,domain\n"
                         "A3,One,2024-01-01,shared.io\nA4,Two,2024-01-01,Shared.IO\n")
    with pytest.raises(BadInput) as caught:
        importer("contacts", "email\nok@acme.com\nx@team.shared.io\n")
    assert caught.value.details == [
        "row 3, column email: domain 'shared.io' belongs to several accounts; give account_id"
    ]
    assert counts(book)["contacts"] == 0
    importer("contacts", "email,account_id\nx@team.shared.io,A4\n")
    assert [r["account"] for r in stored(book, "contacts")] == ["A4"]


def test_nps_by_email_goes_to_the_contacts_account_else_the_domains(book: Engine, importer: Importer) -> None:
    importer("contacts", "email,account_id\nbob@acme.com,A2\nlost@nowhere.org,\n")
    importer("nps", "email,date,score\nBob@Acme.com,2026-01-05,7\ncarol@acme.com,2026-01-05,9\n"
                    "sue@eu.globex.com,2026-01-05,4\n")
    got = {r["email"]: (r["account"], r["score"]) for r in stored(book, "nps_responses")}
    assert got == {"bob@acme.com": ("A2", 7), "carol@acme.com": ("A1", 9), "sue@eu.globex.com": ("A2", 4)}
    with pytest.raises(BadInput) as caught:  # a contact without an account, and no domain match
        importer("nps", "email,date,score\nlost@nowhere.org,2026-01-06,5\n")
    assert caught.value.details[0].startswith("row 2, column email: lost@nowhere.org is not a contact")


def test_user_level_usage_rolls_up_into_daily_active_users(book: Engine, importer: Importer) -> None:
    report = importer("usage", "account_id,date,user_id,events\nA1,2026-01-05,u1,3\nA1,2026-01-05,u2,\n"
                               "A1,2026-01-05,u3,2\nA1,2026-01-06,u1,1\nA2,2026-01-05,u1,0\n")
    assert report.rows == 5
    assert len(stored(book, "usage_users")) == 5
    assert stored(book, "usage_daily") == [
        dict(account="A1", day=D("2026-01-05"), active_users=3, events=6),  # u2's events default to 1
        dict(account="A1", day=D("2026-01-06"), active_users=1, events=1),
        dict(account="A2", day=D("2026-01-05"), active_users=1, events=0),
    ]
    # a later file with another user that day: the day is recounted from every user row
    importer("usage", "account_id,date,user_id\nA1,2026-01-06,u9\n")
    assert [(r["day"], r["active_users"], r["events"]) for r in stored(book, "usage_daily")][:2] == [
        (D("2026-01-05"), 3, 6), (D("2026-01-06"), 2, 2)]


@pytest.fixture
def far_east_engine(db_url: str, engine: Engine) -> Iterator[Engine]:
    """On PostgreSQL, the same book through sessions whose TimeZone is Asia/Tokyo (+09:00)."""
    if engine.dialect.name == "sqlite":
        yield engine
        return
    url = make_url(db_url)
    options = f"{url.query['options']} -ctimezone=Asia/Tokyo"
    eng = make_engine(url.update_query_dict({"options": options}).render_as_string(hide_password=False))
    assert scalar(eng, "SHOW timezone") == "Asia/Tokyo"
    yield eng
    eng.dispose()


def test_timestamps_are_stored_in_utc_whatever_the_session_time_zone(
    engine: Engine, far_east_engine: Engine, raw_file: RawFile
) -> None:
    accounts = raw_file("a.csv", "account_id,name,start_date\nA1,Acme,2024-01-01\n")
    tickets = raw_file("t.csv", "ticket_id,account_id,opened_at,closed_at\n"
                                "T1,A1,2026-01-05T10:00:00+02:00,2026-01-05T23:15Z\n")
    import_csv(far_east_engine, "accounts", accounts)
    import_csv(far_east_engine, "tickets", tickets)
    [ticket] = stored(engine, "tickets")
    assert (ticket["opened_at"], ticket["closed_at"]) == (at("2026-01-05T08:00"), at("2026-01-05T23:15"))
    raw = scalar(engine, "SELECT opened_at FROM tickets")  # naive UTC, as the models store it
    assert str(raw).startswith("2026-01-05 08:00:00")
    updated = stored(engine, "accounts", exclude=())[0]["updated_at"]
    assert abs((datetime.now(UTC) - updated).total_seconds()) < 600


def test_iso_timestamps_in_date_columns_give_their_utc_day(book: Engine, importer: Importer) -> None:
    importer("usage", "account_id,date,active_users\nA1,2026-01-05T10:00:00Z,1\n"
                      "A1,2026-01-06T23:30:00-02:00,2\nA1,2026-01-08T09:00:00,3\n"
                      "A1,2026-01-10 00:30:00+01:00,4\n")
    assert [(r["day"], r["active_users"]) for r in stored(book, "usage_daily")] == [
        (D("2026-01-05"), 1), (D("2026-01-07"), 2), (D("2026-01-08"), 3), (D("2026-01-09"), 4)
    ]


def test_a_dry_run_reports_like_a_real_run_and_writes_nothing(book: Engine, importer: Importer) -> None:
    importer(*ALL_FILES[0])  # the other files refer to account A3
    before = snapshot(book)
    for kind, content in ALL_FILES:
        report = importer(kind, content, dry_run=True)
        assert report.dry_run and report.rows == content.count("\n") - 1
        assert snapshot(book) == before, kind
    contacts = "email,colour\nx@nowhere.org,red\njane@acme.com,\n"
    dry = importer("contacts", contacts, dry_run=True)
    real = importer("contacts", contacts)
    assert dry.warnings == real.warnings == [
        "ignored unknown column(s): colour",
        "1 contact(s) matched no account by domain (imported without an account)",
    ]
    assert (dry.rows, dry.encoding, dry.delimiter) == (real.rows, real.encoding, real.delimiter)
    assert (real.rows, real.encoding, real.delimiter) == (2, "utf-8", ",")
    assert not real.dry_run and counts(book)["contacts"] == 2


def test_the_cli_imports_and_dry_runs(
    db_url: str, engine: Engine, raw_file: RawFile, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    path = raw_file("accounts.csv", "account_id;name;start_date\nA1;Acme;2024-01-01\nA2;Globex;2024-02-01\n")
    for args, said in (
        (["--dry-run"], "accounts: 2 rows checked (dry run, nothing written)"),
        ([], "accounts: 2 rows imported"),
    ):
        with pytest.raises(SystemExit) as caught:
            main(["import", "accounts", str(path), "--db", db_url, *args])
        assert caught.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert said in out and "(utf-8, semicolon;" in out
        assert counts(engine)["accounts"] == (0 if args else 2)
