"""keepwell sync gmail: mail with contacts (metadata only) becomes touches, once, and the caps see it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from tests.cli import run
from tests.fakes.google_api import FakeGoogle


def mail(frm: str, to: str, when: datetime, subject: str = "hello") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Date"] = frm, to, subject, format_datetime(when)
    msg.set_content("body that must never be read")
    return msg.as_bytes()


def test_sync_gmail_records_touches_once_and_the_caps_see_them(tmp_path, capsys, monkeypatch, csv_file):
    url = f"sqlite:///{tmp_path / 'book.db'}"
    today = datetime.now(UTC).date()
    run(capsys, "import", "accounts", str(csv_file("a.csv", "account_id,name,start_date,domain\n"
                                                    "A1,Acme,2024-01-01,acme.com")), "--db", url)
    run(capsys, "import", "contacts", str(csv_file("c.csv", "email,account_id,first_name,role\n"
                                                    "dana@acme.com,A1,Dana,champion\n"
                                                    "lee@acme.com,A1,Lee,decision_maker")), "--db", url)
    with FakeGoogle() as fake:
        recent = datetime(today.year, today.month, today.day, 9, tzinfo=UTC)
        fake.add_message(mail("Ana <ana@us.example>", "Dana <dana@acme.com>", recent), labels=("SENT",))
        fake.add_message(mail("dana@acme.com", "ana@us.example, stranger@else.org", recent))
        fake.add_message(mail("lee@acme.com", "ana@us.example", datetime(2020, 1, 1, tzinfo=UTC)))
        cred = fake.authorized_user_file(tmp_path / "g.json")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(cred))
        monkeypatch.setenv("KEEPWELL_GOOGLE_API_URL", fake.root_url)
        code, out, err = run(capsys, "sync", "gmail", "--db", url, "--json")
        assert code == 0, err
        assert json.loads(out) == {"messages": 2, "touches": 2, "contacts": ["dana@acme.com"]}
        code, out, _ = run(capsys, "sync", "gmail", "--db", url, "--json")
        assert json.loads(out)["touches"] == 0  # the same messages again: nothing new
        bodies = [c for c in fake.calls if c.method == "gmail.users.messages.get"]
        assert bodies and all(c.query.get("format") == ["metadata"] for c in bodies)
        assert fake.errors == []
    code, out, _ = run(capsys, "drafts", "plan", "--template", "checkin", "--account", "A1", "--db", url,
                       "--json")
    plan = json.loads(out)
    assert [d["to"] for d in plan["drafts"]] == ["lee@acme.com"]
    [skip] = plan["skipped"]
    assert skip["to"] == "dana@acme.com" and f"emailed on {today}" in skip["reason"]


def test_sync_gmail_without_the_metadata_scope_says_how_to_fix_it(tmp_path, capsys, monkeypatch):
    with FakeGoogle() as fake:
        cred = fake.authorized_user_file(tmp_path / "g.json")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(cred))
        monkeypatch.setenv("KEEPWELL_GOOGLE_API_URL", fake.root_url)
        fake.fail("gmail.users.messages.list", status=403, reason="insufficientPermissions")
        code, _, err = run(capsys, "sync", "gmail", "--db", f"sqlite:///{tmp_path / 'b.db'}")
    assert code == 1 and "gmail.metadata" in err and "--gmail-activity" in err
    assert len(err.strip().splitlines()) == 1
