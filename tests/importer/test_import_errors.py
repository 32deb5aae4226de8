"""Every way a file is refused: exit code 2, a report naming row and column, and nothing written."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.cli import main
from bot.errors import BadInput
from bot.importer.run import import_csv
from tests.importer.conftest import Importer, RawFile
from tests.importer.helpers import SEED_ACCOUNTS, counts, snapshot

ACC = "account_id,name,start_date"
LONG_DOMAIN = ".".join(c * 60 for c in "abcde") + ".com"  # 308 > 253 characters

# (kind, file, the one line of the report); the seed book holds A1 (acme.com) and A2 (globex.com).
ROW_ERRORS = [
    # accounts
    ("accounts", f"{ACC}\nA3,Initech,2024-03-01\nA4,Umbrella,2026-13-01\n",
     "row 3, column start_date: '2026-13-01' is not a date (expected YYYY-MM-DD)"),
    ("accounts", f"{ACC}\nA3,Initech,01/03/2024\n",
     "row 2, column start_date: '01/03/2024' is not a date (expected YYYY-MM-DD)"),
    ("accounts", f"{ACC}\nA3,Initech,2024-02-30\n",
     "row 2, column start_date: '2024-02-30' is not a date (expected YYYY-MM-DD)"),
    ("accounts", f"{ACC},churn_date\nA3,Initech,2024-03-01,2024-03-01\n",
     "row 2, column churn_date: churn_date 2024-03-01 is not after start_date 2024-03-01"),
    ("accounts", f"{ACC},churn_date\nA3,Initech,2024-03-01,\nA4,Umbrella,2024-03-01,2023-12-31\n",
     "row 3, column churn_date: churn_date 2023-12-31 is not after start_date 2024-03-01"),
    ("accounts", f"{ACC},churn_reason\nA3,Initech,2024-03-01,price\n",
     "row 2, column churn_reason: churn_reason given without a churn_date"),
    ("accounts", f"{ACC},mrr\nA3,Initech,2024-03-01,-5\n",
     "row 2, column mrr: -5 is negative (must be 0 or more)"),
    ("accounts", f"{ACC},mrr\nA3,Initech,2024-03-01,10.005\n",
     "row 2, column mrr: 10.005 has more than 2 decimals"),
    ("accounts", "account_id;name;start_date;mrr\nA3;Initech;2024-03-01;1,200\n",
     "row 2, column mrr: '1,200' is not a number (use a dot for decimals, e.g. 1250.50)"),
    ("accounts", f"{ACC},seats\nA3,Initech,2024-03-01,-1\n",
     "row 2, column seats: -1 is negative (must be 0 or more)"),
    ("accounts", f"{ACC},seats\nA3,Initech,2024-03-01,3000000000\n",
     "row 2, column seats: 3000000000 is implausibly large"),
    ("accounts", f"{ACC},owner_email\nA3,Initech,2024-03-01,bob@\n",
     "row 2, column owner_email: 'bob@' is not a valid email address"),
    ("accounts", f"{ACC},renewal_date\nA3,Initech,2024-03-01,next year\n",
     "row 2, column renewal_date: 'next year' is not a date"),
    ("accounts", f"{ACC},domain\nA3,Initech,2024-03-01,not a domain\n",
     "row 2, column domain: 'not a domain' is not a domain name (like acme.com)"),
    ("accounts", f"{ACC},domain\nA3,Initech,2024-03-01,{LONG_DOMAIN}\n",
     f"row 2, column domain: '{LONG_DOMAIN}' is not a domain name (like acme.com)"),
    ("accounts", f"{ACC}\nA3,,2024-03-01\n", "row 2, column name: required, but empty"),
    ("accounts", f"{ACC}\nA3,Initech,2024-03-01\nA4,Umbrella,2024-03-01\nA3,Initech again,2024-03-01\n",
     "row 4: same account_id as row 2 (a key may appear once)"),
    # contacts
    ("contacts", "email\njane@acme.com\njane@\n",
     "row 3, column email: 'jane@' is not a valid email address"),
    ("contacts", "email,account_id\njane@acme.com,NOPE\n",
     "row 2, column account_id: unknown account 'NOPE' (import it in an accounts file first)"),
    ("contacts", "email,role\njane@acme.com,ceo\n",
     "row 2, column role: 'ceo' is not one of champion|decision_maker|user|billing|other"),
    ("contacts", "email,do_not_contact\njane@acme.com,maybe\n",
     "row 2, column do_not_contact: 'maybe' is not true/false/yes/no/1/0"),
    ("contacts", "email\nJane@Acme.com\njane@acme.COM\n",
     "row 3: same email as row 2 (a key may appear once)"),
    # usage
    ("usage", "account_id,date,active_users\nA1,2026-01-05,-3\n",
     "row 2, column active_users: -3 is negative (must be 0 or more)"),
    ("usage", "account_id,date,active_users\nA1,2026-01-05,3.5\n",
     "row 2, column active_users: '3.5' is not a whole number"),
    ("usage", "account_id,date,active_users,events\nA1,2026-01-05,3,-1\n",
     "row 2, column events: -1 is negative (must be 0 or more)"),
    ("usage", "account_id,date,active_users\nA1,2026-01-05,\n", "row 2, column active_users: required"),
    ("usage", "account_id,date,active_users\nA9,2026-01-05,3\n",
     "row 2, column account_id: unknown account 'A9'"),
    ("usage", "account_id,date,active_users\nA1,5 Jan 2026,3\n",
     "row 2, column date: '5 Jan 2026' is not a date"),
    ("usage", "account_id,date,active_users\nA1,2026-01-05,3\nA2,2026-01-05,4\nA1,2026-01-05,5\n",
     "row 4: same account_id and date as row 2 (a key may appear once)"),
    ("usage", "account_id,date,user_id\nA1,2026-01-05,u1\nA1,2026-01-05,\n",
     "row 3, column user_id: required"),
    ("usage", "account_id,date,user_id\nA1,2026-01-05,u1\nA1,2026-01-05,u2\nA1,2026-01-05,u1\n",
     "row 4: same account_id, date and user_id as row 2 (a key may appear once)"),
    # nps
    ("nps", "account_id,date,score\nA1,2026-01-05,9\nA1,2026-01-06,11\n",
     "row 3, column score: 11 is outside 0–10"),
    ("nps", "account_id,date,score\nA1,2026-01-05,-1\n", "row 2, column score: -1 is outside 0–10"),
    ("nps", "account_id,date,score\nA1,2026-01-05,7.5\n",
     "row 2, column score: '7.5' is not a whole number from 0 to 10"),
    ("nps", "account_id,email,date,score\n,,2026-01-05,7\n",
     "row 2, column account_id: give account_id or email"),
    ("nps", "email,date,score\nx@nowhere.org,2026-01-05,7\n",
     "row 2, column email: x@nowhere.org is not a contact of any account and matches no domain"),
    ("nps", "email,date,score\nx@@acme.com,2026-01-05,7\n",
     "row 2, column email: 'x@@acme.com' is not a valid email address"),
    ("nps", "account_id,date,score\nA9,2026-01-05,7\n", "row 2, column account_id: unknown account 'A9'"),
    ("nps", "account_id,date,score,touchpoint\nA1,2026-01-05,7,lunch\n",
     "row 2, column touchpoint: 'lunch' is not one of onboarding|qbr|support|renewal|other"),
    # tickets
    ("tickets", "ticket_id,account_id,opened_at\nT1,A1,yesterday\n",
     "row 2, column opened_at: 'yesterday' is not a date or ISO 8601 timestamp"),
    ("tickets", "ticket_id,account_id,opened_at\nT1,A1,\n", "row 2, column opened_at: required, but empty"),
    ("tickets", "ticket_id,account_id,opened_at,closed_at\nT1,A1,2026-01-05T10:00:00Z,2026-01-05T09:59:00Z\n",
     "row 2, column closed_at: closed_at 2026-01-05 09:59 is before opened_at"),
    ("tickets", "ticket_id,account_id,opened_at\nT1,A9,2026-01-05\n",
     "row 2, column account_id: unknown account 'A9'"),
    ("tickets", "ticket_id,account_id,opened_at,priority\nT1,A1,2026-01-05,p1\n",
     "row 2, column priority: 'p1' is not one of urgent|high|normal|low"),
    ("tickets", "ticket_id,account_id,opened_at\nT1,A1,2026-01-05\nT1,A2,2026-01-06\n",
     "row 3: same ticket_id as row 2 (a key may appear once)"),
    # invoices
    ("invoices", "invoice_id,account_id,amount,due_date\nI1,A1,-10,2026-01-31\n",
     "row 2, column amount: -10 is negative (must be 0 or more)"),
    ("invoices", "invoice_id,account_id,amount,due_date\nI1,A1,ten,2026-01-31\n",
     "row 2, column amount: 'ten' is not a number"),
    ("invoices", "invoice_id,account_id,amount,due_date\nI1,A1,10,2026-02-31\n",
     "row 2, column due_date: '2026-02-31' is not a date"),
    ("invoices", "invoice_id,account_id,amount,due_date,paid_date\nI1,A1,10,2026-01-31,soon\n",
     "row 2, column paid_date: 'soon' is not a date"),
    ("invoices", "invoice_id,account_id,amount,due_date\nI1,A9,10,2026-01-31\n",
     "row 2, column account_id: unknown account 'A9'"),
    ("invoices", "invoice_id,account_id,amount,due_date\nI1,A1,10,2026-01-31\nI1,A1,10,2026-01-31\n",
     "row 3: same invoice_id as row 2 (a key may appear once)"),
    # mrr
    ("mrr", "account_id,month,mrr\nA1,2026-13,100\n",
     "row 2, column month: '2026-13' is not a month (expected YYYY-MM)"),
    ("mrr", "account_id,month,mrr\nA1,2026-01,-100\n",
     "row 2, column mrr: -100 is negative (must be 0 or more)"),
    ("mrr", "account_id,month,mrr\nA1,2026-01,100\nA1,2026-01-15,120\n",
     "row 3: same account_id and month as row 2 (a key may appear once)"),
    # touches
    ("touches", "account_id,date,channel\nA1,2026-01-05,fax\n",
     "row 2, column channel: 'fax' is not one of email|meeting|call|chat|other"),
    ("touches", "account_id,date,sentiment\nA1,2026-01-05,angry\n",
     "row 2, column sentiment: 'angry' is not one of positive|neutral|negative"),
    ("touches", "account_id,date,contact_email\nA1,2026-01-05,jane.acme.com\n",
     "row 2, column contact_email: 'jane.acme.com' is not a valid email address"),
    ("touches", "account_id,date\nA9,2026-01-05\n", "row 2, column account_id: unknown account 'A9'"),
    # team
    ("team", "account_id,member,function\nA1,bob,cs\n",
     "row 2, column member: 'bob' is neither a Slack user id (like U0123ABCD) nor an email address"),
    ("team", "account_id,member,function\nA1,U0123ABCD,ceo\n",
     "row 2, column function: 'ceo' is not one of sales|cs|support|marketing|product|exec"),
    ("team", "account_id,member,function\nA9,U0123ABCD,cs\n",
     "row 2, column account_id: unknown account 'A9'"),
    ("team", "account_id,member,function\nA1,U0123ABCD,cs\nA1,U0123ABCD,sales\n",
     "row 3: same account_id and member as row 2 (a key may appear once)"),
]


def refuse(importer: Importer, kind: str, content: str | bytes, *, dry_run: bool = False) -> BadInput:
    with pytest.raises(BadInput) as caught:
        importer(kind, content, dry_run=dry_run)
    assert caught.value.exit_code == 2
    return caught.value


def _ids(cases: list[tuple[str, str, str]]) -> list[str]:
    """accounts-start_date, accounts-repeat, … numbered where a kind has several of the same."""
    ids: list[str] = []
    for kind, _, line in cases:
        what = line.split("column ")[1].split(":")[0] if "column " in line else "repeat"
        base = f"{kind}-{what}"
        ids.append(f"{base}-{sum(i.startswith(base + '-') or i == base for i in ids) + 1}")
    return ids


@pytest.mark.parametrize(("kind", "content", "line"), ROW_ERRORS, ids=_ids(ROW_ERRORS))
def test_an_invalid_row_fails_the_file_naming_row_and_column_and_writes_nothing(
    shared_book: Engine, shared_importer: Importer, kind: str, content: str, line: str
) -> None:
    before = snapshot(shared_book)
    real = refuse(shared_importer, kind, content)
    assert len(real.details) == 1, real.details
    assert real.details[0].startswith(line), real.details
    assert real.message.endswith("1 invalid row(s); nothing was imported")
    assert snapshot(shared_book) == before
    dry = refuse(shared_importer, kind, content, dry_run=True)  # a dry run reports exactly the same
    assert dry.details == real.details
    assert snapshot(shared_book) == before


HEADER_ERRORS = [
    ("accounts", "ACCOUNT_ID, Name\nA3,Initech\n",
     "missing required column(s): start_date (a accounts file needs account_id, name, start_date)"),
    ("contacts", "account_id,first_name\nA1,Jane\n", "missing required column(s): email"),
    ("usage", "account_id,date,events\nA1,2026-01-05,3\n",
     "missing required column(s): active_users or user_id"),
    ("usage", "account_id,date\nA1,2026-01-05\n", "missing required column(s): active_users or user_id"),
    ("usage", "account_id,date,active_users,user_id\nA1,2026-01-05,3,u1\n",
     "give either active_users or user_id"),
    ("nps", "account_id,date\nA1,2026-01-05\n", "missing required column(s): score"),
    ("nps", "date,score,comment\n2026-01-05,9,great\n", "missing required column(s): account_id or email"),
    ("tickets", "ticket_id,account_id\nT1,A1\n", "missing required column(s): opened_at"),
    ("invoices", "invoice_id,account_id\nI1,A1\n", "missing required column(s): amount, due_date"),
    ("mrr", "account_id,mrr\nA1,100\n", "missing required column(s): month"),
    ("touches", "account_id,channel\nA1,call\n", "missing required column(s): date"),
    ("team", "account_id,member\nA1,U0123ABCD\n", "missing required column(s): function"),
    ("accounts", "account_id,name,start_date,Name\nA3,x,2024-01-01,y\n", "column 'name' appears twice"),
]


@pytest.mark.parametrize(("kind", "content", "message"), HEADER_ERRORS, ids=[c[0] for c in HEADER_ERRORS])
def test_a_bad_header_fails_the_file_before_any_row(
    shared_book: Engine, shared_importer: Importer, kind: str, content: str, message: str
) -> None:
    before = counts(shared_book)
    error = refuse(shared_importer, kind, content)
    assert message in error.message
    assert counts(shared_book) == before


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(40)
FILE_ERRORS = [
    pytest.param(b"", "the file is empty (a header row is required)", id="empty"),
    pytest.param(b" \n\t\n\r\n  ", "the file is empty (a header row is required)", id="whitespace-only"),
    pytest.param(PNG, "not a text CSV file", id="png"),
    pytest.param(random.Random(3).randbytes(3000) + b"\x00\x01", "not a text CSV file", id="random-bytes"),
]


@pytest.mark.parametrize(("data", "message"), FILE_ERRORS)
@pytest.mark.parametrize("kind", ["accounts", "usage"])
def test_a_file_that_is_no_csv_fails(
    shared_book: Engine, shared_importer: Importer, kind: str, data: bytes, message: str
) -> None:
    before = counts(shared_book)
    assert message in refuse(shared_importer, kind, data).message
    assert counts(shared_book) == before


def test_a_missing_file_and_an_unknown_kind_fail(book: Engine, raw_file: RawFile, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        import_csv(book, "accounts", tmp_path / "nope.csv")
    path = raw_file("a.csv", SEED_ACCOUNTS)
    with pytest.raises(BadInput, match=r"unknown kind 'customers'; kinds are: accounts, contacts, usage"):
        import_csv(book, "customers", path)


def test_all_problems_of_a_row_are_reported_and_it_counts_once(book: Engine, importer: Importer) -> None:
    error = refuse(importer, "accounts", f"{ACC},mrr\n,,,-1\nA3,Initech,2024-03-01,1\n")
    assert error.details == [
        "row 2, column account_id: required, but empty",
        "row 2, column mrr: -1 is negative (must be 0 or more)",
        "row 2, column name: required, but empty",
        "row 2, column start_date: required, but empty",
    ]
    assert error.message.endswith("1 invalid row(s) (4 problems); nothing was imported")


def test_the_report_shows_the_first_50_problems_then_how_many_more(book: Engine, importer: Importer) -> None:
    lines = [f"A1,{date(2026, 1, 1) + timedelta(days=i)},-{i + 1}" for i in range(120)]
    error = refuse(importer, "usage", "account_id,date,active_users\n" + "\n".join(lines) + "\n")
    assert error.message.endswith("120 invalid row(s); nothing was imported")
    assert error.details == [
        *(f"row {i + 2}, column active_users: -{i + 1} is negative (must be 0 or more)" for i in range(50)),
        "… and 70 more",
    ]


def test_repeated_keys_found_at_the_end_are_reported_in_row_order(book: Engine, importer: Importer) -> None:
    content = """account_id,date,active_users
    A1,2026-01-05,1
    A1,2026-01-06,-1
    A1,2026-01-05,2
    A1,2026-01-07,x
    A1,2026-01-05,3
    """
    error = refuse(importer, "usage", "\n".join(line.strip() for line in content.splitlines()))
    assert error.details == [
        "row 3, column active_users: -1 is negative (must be 0 or more)",
        "row 4: same account_id and date as row 2 (a key may appear once)",
        "row 5, column active_users: 'x' is not a whole number",
        "row 6: same account_id and date as row 2 (a key may appear once)",
    ]


BIG = 30_000


def _usage_rows(n: int) -> list[str]:
    first = date(1990, 1, 1)
    return [f"A1,{first + timedelta(days=i)},{i % 50}" for i in range(n)]


@pytest.mark.parametrize(
    ("last", "line"),
    [
        ("A1,2026-13-01,3", f"row {BIG + 2}, column date: '2026-13-01' is not a date (expected YYYY-MM-DD)"),
        ("A1,1990-01-01,3", f"row {BIG + 2}: same account_id and date as row 2 (a key may appear once)"),
        ("A9,2080-01-01,3",
         f"row {BIG + 2}, column account_id: unknown account 'A9' (import it in an accounts file first)"),
    ],
    ids=["bad-date", "repeated-key", "unknown-account"],
)
def test_a_bad_last_row_after_30000_good_ones_rolls_back_the_batches_already_written(
    book: Engine, importer: Importer, last: str, line: str
) -> None:
    importer("usage", "account_id,date,active_users\nA2,2026-01-05,9\n")
    before = snapshot(book)
    content = "account_id,date,active_users\n" + "\n".join([*_usage_rows(BIG), last]) + "\n"
    error = refuse(importer, "usage", content)
    assert error.details == [line]
    assert snapshot(book) == before


def test_user_level_usage_is_rolled_back_too(book: Engine, importer: Importer) -> None:
    rows = [f"A1,{r.split(',')[1]},u{i % 3}" for i, r in enumerate(_usage_rows(BIG))]
    content = "account_id,date,user_id\n" + "\n".join([*rows, "A1,2000-01-01,"]) + "\n"
    before = counts(book)
    assert refuse(importer, "usage", content).details == [f"row {BIG + 2}, column user_id: required"]
    assert counts(book) == before


def test_the_cli_prints_the_report_and_exits_2(
    db_url: str, book: Engine, raw_file: RawFile, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    path = raw_file("bad.csv", f"{ACC}\nA3,Initech,2024-03-01\nA4,Umbrella,2026-13-01\n")
    with pytest.raises(SystemExit) as caught:
        main(["import", "accounts", str(path), "--db", db_url])
    assert caught.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "keepwell: " in err and "1 invalid row(s); nothing was imported" in err
    assert "row 3, column start_date: '2026-13-01' is not a date (expected YYYY-MM-DD)" in err
    assert counts(book)["accounts"] == 2

    with pytest.raises(SystemExit) as caught:
        main(["import", "customers", str(path), "--db", db_url])
    assert caught.value.code == 2
    assert "unknown kind 'customers'" in capsys.readouterr().err
