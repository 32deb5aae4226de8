"""Drafts are valid MIME, headers cannot be injected, templates are sandboxed and strict."""

from __future__ import annotations

import email
from datetime import UTC, date, datetime
from email import policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.model import Account, HealthInputs, UsageWindow
from bot.drafting import Skip, draft_for, pick_recipient
from bot.emails import Draft, RenderError, environment, header_text, message_id, render, to_mime
from integrations.outbox import Outbox

WHEN = datetime(2026, 6, 30, 9, 0, tzinfo=UTC)
ACME = Account(pk=1, account_id="A1", name="ACME Corp", start_date=date(2024, 1, 1),
               owner_email="maya.chen@example.com", renewal_date=date(2026, 8, 1))


def contact(**over: object) -> dict[str, object]:
    base = {"email": "dana@acme.example", "first_name": "Dana", "last_name": "Ruiz", "title": "VP Ops",
            "role": "champion", "do_not_contact": False}
    return {**base, **over}


def inputs(usage: UsageWindow | None = None) -> HealthInputs:
    return HealthInputs(account=ACME, usage=usage or UsageWindow(user_days=58, prev_user_days=100))


def touch(note: str) -> dict[str, object]:
    return {"day": date(2026, 6, 20), "note": note, "team": "cs", "channel": "call"}


def draft(**over: str) -> Draft:
    base = dict(template="checkin", account_id="A1", to_email="dana@acme.example", to_name="Dana Ruiz",
                from_email="maya@example.com", from_name="Maya Chen", subject="Checking in",
                text="Hi Dana\n", html="<p>Hi Dana</p>", message_id=message_id("x"))
    base.update(over)
    return Draft(**base)  # type: ignore[arg-type]


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_checkin_draft_is_personal_and_valid_mime():
    result = draft_for(environment(), "checkin", ACME, contact(), inputs(), touch("wants faster reports"),
                       date(2026, 6, 30))
    assert isinstance(result, Draft)
    msg = parse(to_mime(result, WHEN).as_bytes())
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Checking in on ACME Corp"
    assert msg["To"].addresses[0].addr_spec == "dana@acme.example"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert text.startswith("Hi Dana,")
    assert "42% fewer active days" in text and "2026-08-01" in text
    assert "wants faster reports" in text and "wants faster reports" in html
    assert "Maya Chen" in text


def test_non_ascii_subject_is_encoded_per_rfc_2047():
    raw = to_mime(draft(subject="Überprüfung für Zoë — façade"), WHEN).as_bytes()
    header_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert header_line.isascii() and b"=?utf-8?" in header_line.lower()
    assert parse(raw)["Subject"] == "Überprüfung für Zoë — façade"


@settings(max_examples=1000, deadline=None)
@given(
    name=st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    subject=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60),
    local=st.text(alphabet="abcdefghij\r\n\x00 ", min_size=1, max_size=12),
)
def test_no_header_injection(name, subject, local):
    """CR, LF or NUL anywhere in a name, subject or address never yields an extra header."""
    try:
        msg = to_mime(draft(to_name=name, subject=subject + "\r\nBcc: evil@x.com",
                            to_email=f"{local}@acme.example"), WHEN)
    except ValueError:
        return  # an unusable address is refused outright, which is also safe
    parsed = parse(msg.as_bytes())
    assert parsed["Bcc"] is None
    assert sorted(set(parsed.keys())) == sorted(
        {"To", "From", "Subject", "Date", "Message-ID", "X-Keepwell-Template", "X-Keepwell-Account",
         "Content-Type", "MIME-Version"}
    )


def test_html_part_escapes_data(tmp_path: Path):
    evil = "<script>alert(1)</script> & <b>bold</b>"
    result = draft_for(environment(), "checkin", ACME, contact(first_name=evil), inputs(), touch(evil),
                       date(2026, 6, 30))
    assert isinstance(result, Draft)
    assert "<script>" not in result.html and "&lt;script&gt;" in result.html
    assert "<script>" in result.text  # the text part is plain text, shown as typed


def test_missing_merge_field_skips_the_contact_with_a_reason():
    result = draft_for(environment(), "checkin", ACME, contact(first_name=None), inputs(), None,
                       date(2026, 6, 30))
    assert isinstance(result, Skip)
    assert "first_name" in result.reason


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ account.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
    ],
)
def test_sandbox_blocks_python_internals(tmp_path: Path, source: str):
    for suffix in ("subject.j2", "txt.j2", "html.j2"):
        (tmp_path / f"evil.{suffix}").write_text(source)
    with pytest.raises(RenderError):
        render(environment(tmp_path), "evil", {"account": {"name": "x"}})


def test_output_bomb_stops_at_the_limit(tmp_path: Path):
    (tmp_path / "bomb.subject.j2").write_text("hi")
    (tmp_path / "bomb.txt.j2").write_text("{% for i in range(99999) %}{{ 'abc' }}{% endfor %}")
    (tmp_path / "bomb.html.j2").write_text("x")
    with pytest.raises(RenderError, match="more than"):
        render(environment(tmp_path), "bomb", {})


def test_user_template_overrides_the_builtin(tmp_path: Path):
    (tmp_path / "checkin.subject.j2").write_text("Hello {{ account.name }}")
    subject, _, _ = render(environment(tmp_path), "checkin", {
        "account": {"name": "ACME", "renewal_date": None}, "contact": {"first_name": "D"},
        "usage": {"change_pct": None}, "open_tickets": 0, "last_note": None,
        "sender": {"name": "M", "signature": "CS", "company": "Keepwell"},
    })
    assert subject == "Hello ACME"


@pytest.mark.parametrize(
    ("contacts", "expected"),
    [
        ([contact(role="user"), contact(email="c@x", role="champion")], "c@x"),
        ([contact(role="champion", do_not_contact=True), contact(email="d@x", role="decision_maker")], "d@x"),
        ([contact(role="champion", do_not_contact=True)], None),
        ([], None),
    ],
)
def test_recipient_is_a_reachable_champion_or_decision_maker(contacts, expected):
    found = pick_recipient(contacts)
    assert (found["email"] if found else None) == expected


def test_header_text_folds_control_characters():
    assert header_text("a\r\nBcc: x\x00y") == "a Bcc: x y"


def test_outbox_writes_each_draft_once(tmp_path: Path):
    box = Outbox(tmp_path / "outbox")
    path, new = box.save(draft(), WHEN)
    again, new_again = box.save(draft(), WHEN)
    assert new and not new_again and path == again
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [path.name]
    assert parse(path.read_bytes())["Message-ID"] == draft().message_id


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'a' * 10**8 }}", "would exceed"),
        ("{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}", "longer than"),
        ("{{ range(10**7) | list | length }}", "range too large"),
        ("{{ 2 ** 1000 }}", "power too large"),
        ("{{ require(none, 'a survey link') }}", "missing a survey link"),
        ("<a href='{{ \"javascript:alert(1)\" | url }}'>x</a>", "refused link"),
    ],
)
def test_template_limits_stop_bombs_and_bad_links(tmp_path: Path, source: str, message: str):
    for suffix, text in (("subject.j2", "hi"), ("txt.j2", source), ("html.j2", "x")):
        (tmp_path / f"t.{suffix}").write_text(text)
    with pytest.raises(RenderError, match=message):
        render(environment(tmp_path), "t", {})


def test_safe_links_pass_the_url_filter(tmp_path: Path):
    for suffix, text in (("subject.j2", "hi"), ("txt.j2", "{{ link | url }}"), ("html.j2", "x")):
        (tmp_path / f"t.{suffix}").write_text(text)
    _, text, _ = render(environment(tmp_path), "t", {"link": "https://example.com/survey?a=1"})
    assert text.strip() == "https://example.com/survey?a=1"
