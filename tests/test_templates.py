"""The built-in email templates: each renders from real merge fields, escapes its HTML, reads short, and
refuses (skips the recipient, with the reason) what it cannot say honestly."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bot.config import DraftsConfig, HealthConfig
from bot.core.health import Peers, score_account
from bot.core.model import Account, Driver, HealthInputs, HealthScore, NpsResponse, OpenTicket, UsageWindow
from bot.drafting import Skip, context, draft_for
from bot.emails import RenderError, builtin_templates, environment, render

TODAY = date(2026, 6, 30)
TEMPLATES = ["checkin", "qbr_invite", "renewal_checkin", "low_usage", "nps_survey", "winback",
             "churn_interview", "onboarding_check", "referral_ask"]
WITH_BOOKING = ["qbr_invite", "renewal_checkin", "low_usage", "churn_interview", "onboarding_check"]
SETTINGS = DraftsConfig(company="the Keepwell team", survey_url="https://survey.example.com/nps?a=1&b=2",
                        booking_url="https://cal.example.com/maya")
ACME = Account(pk=1, account_id="A1", name="ACME Corp", start_date=date(2024, 1, 1), tier="pro",
               owner_email="maya.chen@example.com", mrr=Decimal("1200"), seats=50,
               renewal_date=TODAY + timedelta(days=60))
USAGE = UsageWindow(user_days=580, prev_user_days=1000, active_days=20, peak_dau=30, mau=40,
                    last_active=date(2026, 5, 20))
DRIVERS = (
    Driver("usage_trend", -42.0, -6.0, "usage down 42% against the previous 30 days"),
    Driver("seat_utilisation", 0.8, 5.0, "40 monthly active users on 50 seats (80% utilisation)"),
    Driver("nps", {"latest": 9}, 3.0, "latest NPS answer 9 (promoter, 2026-04-02)"),
    Driver("champion", False, -2.0, "no champion contact on record"),
)


def health(band: str = "healthy", drivers: tuple[Driver, ...] = DRIVERS) -> HealthScore:
    return HealthScore(account_id="A1", name="ACME Corp", score=74, band=band, danger_zone=False,
                       forgotten_zone=False, stickiness=None, engagement=11.6, drivers=drivers)


def for_template(template: str, account: Account = ACME) -> Account:
    """churn_interview is for an account that has left; every other template gets the account as is."""
    if template == "churn_interview" and account.churn_date is None:
        return dataclasses.replace(account, churn_date=TODAY - timedelta(days=20), churn_reason="Budget cuts")
    return account


def ctx(
    template: str = "checkin",
    *,
    account: Account = ACME,
    first_name: str | None = "Dana",
    usage: UsageWindow | None = USAGE,
    score: HealthScore | None = None,
    settings: DraftsConfig = SETTINGS,
    full: bool = True,
) -> dict[str, Any]:
    """Merge fields from the real context builder; `full=False` leaves out everything optional."""
    account = for_template(template, account)
    person = {"email": "dana@acme.example", "first_name": first_name, "last_name": "Ruiz", "title": "VP Ops",
              "role": "champion", "do_not_contact": False}
    if not full:
        return context(account, person, HealthInputs(account=account, usage=None), None, TODAY,
                       settings=DraftsConfig(survey_url=settings.survey_url))
    inputs = HealthInputs(account=account, usage=usage, nps=(NpsResponse(date(2026, 4, 2), 9),),
                          open_tickets=(OpenTicket("urgent", "bug"), OpenTicket("normal", "question")))
    touch = {"day": date(2026, 6, 1), "note": "wants faster reports"}
    return context(account, person, inputs, touch, TODAY, health=score or health(), settings=settings)


def draft(template: str, context: dict[str, Any] | None = None) -> tuple[str, str, str]:
    return render(environment(), template, context if context is not None else ctx(template))


class Tags(HTMLParser):
    """Fails on a closing tag that does not match the last one opened (void tags aside)."""

    VOID = frozenset({"br", "meta", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"


def assert_balanced(html: str) -> None:
    parser = Tags()
    parser.feed(html)
    parser.close()
    assert parser.open == []


def assert_clean(*parts: str) -> None:
    for part in parts:
        for leak in ("{{", "}}", "{%", "%}", "{#", "None", "Undefined"):
            assert leak not in part, f"{leak!r} leaked into {part!r}"


# -- every template ------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
def test_renders_short_personal_and_signed(template: str):
    folder = builtin_templates() / "email"
    assert all((folder / f"{template}.{part}.j2").is_file() for part in ("subject", "txt", "html"))
    subject, text, html = draft(template)
    assert subject and "\n" not in subject and len(subject) <= 70
    assert all(ord(c) < 0x2000 for c in subject), "no emoji or symbols in subjects"
    assert text.startswith("Hi Dana,\n")
    assert "Maya Chen" in text and "Maya Chen" in html
    assert_clean(subject, text, html)
    assert len(text.split()) <= 150
    assert html.startswith("<!doctype html>") and "<img" not in html and "<script" not in html
    assert_balanced(html)


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t != "checkin"])
def test_signs_with_name_signature_and_company(template: str):
    _, text, html = draft(template)
    assert text.rstrip().endswith("Maya Chen\nCustomer Success, the Keepwell team")
    assert "Customer Success, the Keepwell team" in html


@pytest.mark.parametrize("template", TEMPLATES)
def test_html_part_is_escaped_and_text_part_is_as_typed(template: str):
    _, text, html = draft(template, ctx(template, first_name="<b>Zoë</b>"))
    assert "&lt;b&gt;Zoë&lt;/b&gt;" in html and "<b>Zoë</b>" not in html
    assert text.startswith("Hi <b>Zoë</b>,")


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_contact_without_a_first_name_is_skipped_with_the_reason(template: str):
    with pytest.raises(RenderError, match="first_name"):
        draft(template, ctx(template, first_name=None))
    person = {"email": "x@acme.example", "role": "champion", "do_not_contact": False}
    account = for_template(template)
    result = draft_for(environment(), template, account, person, HealthInputs(account=account, usage=USAGE),
                       None, TODAY, settings=SETTINGS)
    assert isinstance(result, Skip) and "first_name" in result.reason


@pytest.mark.parametrize("template", TEMPLATES)
def test_sparse_data_never_prints_a_blank_or_none(template: str):
    """No usage, health, tickets, NPS, notes, seats or booking link: each still reads naturally."""
    bare = dataclasses.replace(ACME, seats=None, mrr=None, tier=None)
    subject, text, html = draft(template, ctx(template, account=bare, full=False))
    assert_clean(subject, text, html)
    assert "Customer Success, our team" in text or template == "checkin"
    assert_balanced(html)


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_user_folder_overrides_each_builtin_part(template: str, tmp_path: Path):
    (tmp_path / f"{template}.subject.j2").write_text("Mine: {{ account.name }}")
    subject, text, _ = render(environment(tmp_path), template, ctx(template))
    assert subject == "Mine: ACME Corp"
    assert text == draft(template)[1]  # the parts not overridden are still the built-in ones


# -- links ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", WITH_BOOKING)
@pytest.mark.parametrize("link", ["javascript:alert(1)", 'https://x.example/"><script>alert(1)</script>'])
def test_a_dangerous_booking_link_is_refused(template: str, link: str):
    # The config refuses such links too; the template refuses them again, whatever the context says.
    context = ctx(template)
    context["links"]["booking"] = link
    with pytest.raises(RenderError, match="refused link"):
        draft(template, context)


@pytest.mark.parametrize("template", WITH_BOOKING)
def test_the_booking_link_appears_only_when_set(template: str):
    _, text, html = draft(template)
    assert "https://cal.example.com/maya" in text and 'href="https://cal.example.com/maya"' in html
    _, text, html = draft(template, ctx(template, settings=DraftsConfig(company="the Keepwell team")))
    assert "cal.example.com" not in text and "href" not in html


# -- template by template ------------------------------------------------------------------------------


def test_nps_survey_asks_one_question_with_the_link():
    _, text, html = draft("nps_survey")
    assert "How likely are you to recommend us" in text and "0 (not at all likely)" in text
    assert "https://survey.example.com/nps?a=1&b=2" in text
    assert 'href="https://survey.example.com/nps?a=1&amp;b=2"' in html


def test_nps_survey_needs_a_survey_link():
    with pytest.raises(RenderError, match=r"missing a survey link \(\[drafts\] survey_url"):
        draft("nps_survey", ctx("nps_survey", settings=DraftsConfig()))
    context = ctx("nps_survey")
    context["links"]["survey"] = "javascript:alert(1)"
    with pytest.raises(RenderError, match="refused link"):
        draft("nps_survey", context)


def test_renewal_checkin_needs_a_renewal_date_in_the_future():
    with pytest.raises(RenderError, match="missing a renewal date"):
        draft("renewal_checkin", ctx(account=dataclasses.replace(ACME, renewal_date=None)))
    with pytest.raises(RenderError, match=r"2026-06-20 has passed"):
        draft("renewal_checkin", ctx(account=dataclasses.replace(ACME, renewal_date=date(2026, 6, 20))))


STAGES = {"early": "plan it together", "scope": "Scope:", "final": "purchase order"}


@pytest.mark.parametrize(
    ("days", "stage", "subject", "says"),
    [
        (200, "early", "Planning ahead for the ACME Corp renewal", "about 7 months from now"),
        (90, "early", "Planning ahead for the ACME Corp renewal", "about 3 months from now"),
        (60, "scope", "ACME Corp renewal: confirming scope and who's involved",
         "you have 50 seats, and 40 people used the product in the last 30 days"),
        (30, "final", "ACME Corp renewal on 2026-07-30: final details", "on 2026-07-30, 30 days from now"),
        (0, "final", "ACME Corp renewal on 2026-06-30: final details", "on 2026-06-30, today."),
    ],
)
def test_renewal_checkin_wording_follows_the_days_left(days: int, stage: str, subject: str, says: str):
    account = dataclasses.replace(ACME, renewal_date=TODAY + timedelta(days=days))
    got_subject, text, html = draft("renewal_checkin", ctx(account=account))
    assert got_subject == subject
    assert says in text and says in html
    assert [name for name, phrase in STAGES.items() if phrase in text] == [stage]


def test_referral_ask_refuses_an_account_that_is_not_healthy():
    for band in ("at_risk", "watch"):
        with pytest.raises(RenderError, match=f"a healthy account .*this one is {band}"):
            draft("referral_ask", ctx(score=health(band)))
    _, text, _ = draft("referral_ask", ctx())
    assert "gave us a 9 out of 10 on 2026-04-02" in text and "introduction" in text
    _, text, _ = draft("referral_ask", ctx(full=False))  # no score at all: a person chose the account
    assert "thank you" in text


def test_qbr_invite_agenda_is_built_from_the_data():
    _, text, html = draft("qbr_invite")
    assert "- What's gone well: 40 monthly active users on 50 seats (80% utilisation)" in text
    assert ("- What to work on: usage down 42% against the previous 30 days; "
            "your 2 open support tickets (1 urgent)") in text
    assert "usage down 42% against the previous 30 days" in html
    assert "- Your renewal on 2026-08-29, 60 days from now" in text
    # Internal health drivers are never quoted to the customer.
    assert "champion" not in text and "promoter" not in text and "NPS" not in text


def test_qbr_invite_leaves_out_what_it_does_not_know():
    far = dataclasses.replace(ACME, renewal_date=TODAY + timedelta(days=200))
    context = ctx(account=far, score=health(drivers=()), settings=DraftsConfig())
    context["open_tickets"] = 0
    _, text, html = draft("qbr_invite", context)
    assert "gone well" not in text and "work on" not in text and "renewal" not in text
    assert "Your goals for the next quarter" in text and "two or three times" in text
    assert "<li>" in html and "work on" not in html


def test_qbr_invite_quotes_the_real_health_wording():
    """Scored by the real scorecard, so a change of wording in health.py cannot silently empty the agenda."""
    inputs = HealthInputs(account=ACME, usage=USAGE, touches_known=True, last_touch=date(2026, 1, 1),
                          has_champion=False, open_tickets=())
    score = score_account(inputs, HealthConfig(), TODAY, Peers.of([1.0, 5.0, 9.0, 20.0], 0.25))
    _, text, _ = draft("qbr_invite", ctx(score=score))
    assert "What to work on: usage down 42% against the previous 30 days" in text
    assert "each seat active 11.6 days of the last 30" in text and "peers" not in text
    assert "last touch" not in text and "champion" not in text


def test_low_usage_names_the_quiet_spell_without_blame():
    _, text, _ = draft("low_usage")
    assert "hasn't used the product since 2026-05-20 (41 days ago)" in text
    assert "Was there something that got in the way?" in text and "training" in text
    recent = dataclasses.replace(USAGE, last_active=TODAY - timedelta(days=2))
    _, text, _ = draft("low_usage", ctx(usage=recent))
    assert "about 42% less than the month before" in text


def test_winback_asks_what_went_wrong():
    _, text, _ = draft("winback")
    assert "hasn't used the product since 2026-05-20" in text and "was it something we did?" in text
    gone = dataclasses.replace(ACME, churn_date=date(2026, 3, 31))
    _, text, _ = draft("winback", ctx(account=gone))
    assert "the subscription ended on 2026-03-31" in text and "isn't a sales email" in text


def test_churn_interview_needs_a_churn_date_and_quotes_the_reason_only_when_known():
    with pytest.raises(RenderError, match="missing a churn date"):
        draft("churn_interview", ctx())  # ctx("checkin") builds an account that has not left
    _, text, html = draft("churn_interview")
    assert "ended on 2026-06-10" in text and "20 minutes" in text
    assert 'main reason as "Budget cuts"' in text and "&ldquo;Budget cuts&rdquo;" in html
    leaving = dataclasses.replace(ACME, churn_date=TODAY + timedelta(days=30), churn_reason=None)
    _, text, _ = draft("churn_interview", ctx(account=leaving))
    assert "ending on 2026-07-30" in text and "reason" not in text


def test_onboarding_check_points_at_next_steps():
    _, text, _ = draft("onboarding_check")
    assert "since 2024-01-01" in text and "40 of your 50 seats" in text
    assert "bring in the rest of your team" in text and "30-minute session" in text
    full_house = dataclasses.replace(USAGE, mau=50)
    _, text, _ = draft("onboarding_check", ctx(usage=full_house))
    assert "rest of your team" not in text


# -- a folder of your own ------------------------------------------------------------------------------


def test_a_user_folder_can_add_a_template(tmp_path: Path):
    (tmp_path / "thanks.subject.j2").write_text("Thank you, {{ contact.first_name }}")
    (tmp_path / "thanks.txt.j2").write_text(
        "Hi {{ contact.first_name }}, {{ require(links.booking, 'a link') | url }}")
    (tmp_path / "thanks.html.j2").write_text("<p>Hi {{ contact.first_name }}</p>")
    env = environment(tmp_path)
    subject, text, html = render(env, "thanks", ctx(first_name="<i>Zoë</i>"))
    assert subject == "Thank you, <i>Zoë</i>"
    assert text == "Hi <i>Zoë</i>, https://cal.example.com/maya\n"
    assert html == "<p>Hi &lt;i&gt;Zoë&lt;/i&gt;</p>"
    with pytest.raises(RenderError, match="missing a link"):
        render(env, "thanks", ctx(settings=DraftsConfig()))
    subject, _, _ = render(env, "checkin", ctx())  # the built-ins are still there
    assert subject == "Checking in on ACME Corp"
