"""Reminders, alerts and survey triggers, end to end: the scheduler over a real book posts through
the real Slack client to the fake Web API; buttons go through the Bolt app like Slack's clicks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from sqlalchemy import insert, select, update

from bot.claims import Claims
from bot.config import KeepwellConfig, Settings
from bot.db import models as m
from bot.db.engine import make_engine
from bot.drafts import Drafting
from bot.scheduler import Scheduler
from bot.services import Keepwell
from bot.slack.app import build_app
from bot.slack.blocks import digest_blocks
from bot.store import Book
from integrations.outbox import Outbox
from integrations.slack_client import Poster
from tests.fakes.slack_api import Call, FakeSlack
from tests.fakes.slack_requests import block_action, signed_headers
from tests.slack.conftest import build_book

SECRET = "nudge-secret"
DEMO = "keepwell-demo.example"
USERS = {  # the demo book's owner of ACME, and staff who are in Slack
    "UMAYA0001": {"name": "maya", "profile": {"email": f"maya.chen@{DEMO}"}},
    "UNORA0001": {"name": "nora", "profile": {"email": f"nora.bell@{DEMO}"}},
    "U04K2P7QD": {"name": "kai", "profile": {"email": f"kai@{DEMO}"}},
    "U03TQ9M2A": {"name": "ivy", "profile": {"email": f"ivy@{DEMO}"}},
    "U0123ABCD": {"name": "ana", "profile": {"email": "ana@example.com"}},
}
OFF = {"enabled": False}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nudges")
    build_book(folder).book.engine.dispose()
    return folder / "book.db"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(users=USERS, channels={"C0CS", "C0ALERTS", "C0ACME"}) as fake:
        yield fake


class World:
    """A copy of the demo book with a config, a clock, the scheduler and the Slack app over it."""

    def __init__(self, folder: Path, template: Path, fake: FakeSlack, stores: Any = None,
                 **config: Any) -> None:
        (folder / "book.db").write_bytes(template.read_bytes())
        self.engine = make_engine(f"sqlite:///{folder / 'book.db'}")
        self.config = KeepwellConfig.model_validate(config)
        self.service = Keepwell(Book(self.engine), self.config, drafts=Outbox(folder / "outbox"))
        self.fake = fake
        self.now = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
        client = WebClient(token="xoxb-nudge", base_url=fake.api_url)
        self.scheduler = Scheduler(self.service, Claims(self.engine, clock=lambda: self.now),
                                   lambda: Poster(client, per_channel_seconds=0))
        self.app = build_app(self.service, Settings(SLACK_SIGNING_SECRET=SECRET), client=client,
                             today=lambda: self.now.date(), stores=stores)
        self.acme = self.service.book.resolve("ACME Corp")

    def tick(self, day: str, hour: int = 12) -> dict[str, str]:
        self.now = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
        return {r.job: r.outcome for r in self.scheduler.tick(self.now)}

    def posts(self, text: str = "") -> list[Call]:
        return [c for c in self.fake.calls_to("chat.postMessage") if text in str(c.params.get("text"))]

    def click(self, action_id: str, value: str, message: Call, name: str) -> dict[str, Any]:
        body = block_action(action_id, value, response_url=self.fake.response_url(name),
                            message={"blocks": message.params["blocks"], "ts": "1.2"})
        request = BoltRequest(body=body.decode(), headers=signed_headers(SECRET, body))  # type: ignore[arg-type]
        before = len([r for r in self.fake.responses if r.name == name])
        assert self.app.dispatch(request).status == 200
        deadline = time.monotonic() + 10
        while len(answers := [r for r in self.fake.responses if r.name == name]) == before:
            assert time.monotonic() < deadline, f"no answer to {action_id}"
            time.sleep(0.02)
        return answers[-1].payload

    def sql(self, statement: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)


def key_of(call: Call) -> str:
    actions = next(b for b in call.params["blocks"] if b["type"] == "actions")
    return str(actions["elements"][0]["value"])


# reminders ------------------------------------------------------------------------------------

@pytest.fixture
def reminders(tmp_path: Path, template: Path, slack: FakeSlack) -> World:
    # ACME's last review is a QBR meeting note of 2026-05-01: enterprise, so due 2026-07-30
    return World(tmp_path, template, slack, reviews={"channel": "C0CS"}, alerts=OFF, surveys=OFF)


def test_a_review_coming_due_reminds_the_whole_team_once(reminders):
    w = reminders
    assert w.tick("2026-07-21")["reminders"].endswith("posted")
    [acme] = w.posts("ACME Corp: account review in 9 days")
    assert acme.params["channel"] == "C0CS"
    text = json.dumps(acme.params["blocks"])
    assert "*Sales*: <@U04K2P7QD>" in text and "*Support*: <@U03TQ9M2A>" in text
    assert "*CS*: <@UMAYA0001>" in text  # the owner, found in Slack by email
    assert "no Marketing on the team" in text
    [actions] = [b for b in acme.params["blocks"] if b["type"] == "actions"]
    labels = [e["text"]["text"] for e in actions["elements"]]
    assert labels == ["Mark done", "Snooze a week", "Draft agenda email"]
    keys = [key_of(c) for c in w.posts()]
    assert len(keys) == len(set(keys))  # one message per episode
    first = len(w.posts())
    assert w.tick("2026-07-21", 18) == {}  # the day's run is done
    w.tick("2026-07-22")
    assert w.posts("ACME Corp: account review") == [acme]  # not again while it stays due
    assert all(key_of(c) not in keys for c in w.posts()[first:])


def test_mark_done_records_the_review_and_restarts_the_cadence(reminders):
    w = reminders
    w.tick("2026-07-21")
    [acme] = w.posts("ACME Corp: account review")
    w.now = datetime(2026, 7, 22, 12, tzinfo=UTC)
    answer = w.click("nudge_done", key_of(acme), acme, "done")
    assert answer["replace_original"] is True
    assert "Marked done by <@U0123ABCD> on 2026-07-22" in json.dumps(answer["blocks"])
    assert not [b for b in answer["blocks"] if b["type"] == "actions"]
    assert w.service.journal.last_review(w.acme.pk) == date(2026, 7, 22)
    again = w.click("nudge_done", key_of(acme), acme, "done")
    assert "Already marked done" in json.dumps(again["blocks"])
    w.tick("2026-07-23")
    w.tick("2026-10-08")  # the next review is due 2026-10-20 (90 days on): reminded 14 days before
    assert [c.params["text"] for c in w.posts("ACME Corp: account review")] == [
        "ACME Corp: account review in 9 days", "ACME Corp: account review in 12 days"]


def test_snooze_brings_a_reminder_back_a_week_later(reminders):
    w = reminders
    w.tick("2026-07-21")
    [acme] = w.posts("ACME Corp: account review")
    answer = w.click("nudge_snooze", key_of(acme), acme, "snooze")
    assert "Snoozed until 2026-07-28 by <@U0123ABCD>" in json.dumps(answer["blocks"])
    w.tick("2026-07-25")
    assert len(w.posts("ACME Corp: account review")) == 1
    w.tick("2026-07-28")
    [_, back] = w.posts("ACME Corp: account review")
    assert "(again, after a snooze)" in json.dumps(back.params["blocks"])


def test_renewals_are_reminded_at_each_offset(reminders):
    w = reminders
    w.tick("2026-06-30")  # ACME renews on 2026-08-21: 52 days, the 60-day reminder
    w.tick("2026-07-10")
    w.tick("2026-07-22")  # 30 days
    w.tick("2026-08-15")  # 6 days: the 7-day one (the bot was down on day 7)
    assert [c.params["text"] for c in w.posts("ACME Corp: renewal")] == [
        "ACME Corp: renewal in 52 days", "ACME Corp: renewal in 30 days", "ACME Corp: renewal in 6 days"]


def test_agenda_button_drafts_the_qbr_invitation_for_the_owner(reminders, tmp_path):
    w = reminders
    w.tick("2026-07-21")
    [acme] = w.posts("ACME Corp: account review")
    answer = w.click("nudge_agenda", key_of(acme), acme, "agenda")
    assert "dana.whitfield@acme.example" in json.dumps(answer)  # the champion
    [eml] = list((tmp_path / "outbox").rglob("*.eml"))
    assert "ACME" in eml.read_text(encoding="utf-8")


# alerts ---------------------------------------------------------------------------------------

@pytest.fixture
def alerts(tmp_path: Path, template: Path, slack: FakeSlack) -> World:
    return World(tmp_path, template, slack, reviews=OFF, surveys=OFF, alerts={"channel": "C0ALERTS"},
                 slack={"account_channels": {"DEMO-0001": "C0ACME"}})


def test_first_alert_run_is_a_baseline_then_one_alert_per_episode(alerts):
    w = alerts
    assert w.acme.account_id == "DEMO-0001"
    assert w.tick("2026-06-30")["alerts"].startswith("baseline")
    assert w.posts() == []
    w.sql(insert(m.table_of(m.NpsResponse)).values(account_pk=w.acme.pk, email="dana.whitfield@acme.example",
                                                   day=date(2026, 7, 1), score=3, touchpoint="other",
                                                   comment="<!channel> nothing works"))
    w.sql(insert(m.table_of(m.Invoice)).values(invoice_id="INV-LATE", account_pk=w.acme.pk, amount=990,
                                               due_date=date(2026, 5, 20)))
    w.tick("2026-07-01")
    detractor = w.posts("ACME Corp has a new NPS detractor")
    late = w.posts("ACME Corp has an invoice overdue")
    assert sorted(c.params["channel"] for c in detractor) == ["C0ACME", "C0ALERTS", "UMAYA0001"]
    assert len(late) == 3 and "INV-LATE" in json.dumps(late[0].params["blocks"])
    assert "&lt;!channel&gt; nothing works" in json.dumps(detractor[0].params["blocks"])  # escaped
    w.tick("2026-07-02")
    w.tick("2026-07-03")
    assert len(w.posts("ACME Corp has an invoice overdue")) == 3  # the episode lasts: no repeat
    invoices = m.table_of(m.Invoice)
    w.sql(update(invoices).where(invoices.c.invoice_id == "INV-LATE").values(paid_date=date(2026, 7, 3)))
    w.tick("2026-07-04")  # paid: the episode ends
    w.sql(update(invoices).where(invoices.c.invoice_id == "INV-LATE").values(paid_date=None))
    w.tick("2026-07-05")  # unpaid again (a bounced payment): a new episode
    assert len(w.posts("ACME Corp has an invoice overdue")) == 6


def test_acknowledge_ends_the_buttons_and_a_snoozed_alert_returns_while_it_lasts(alerts):
    w = alerts
    w.tick("2026-06-30")
    w.sql(insert(m.table_of(m.Invoice)).values(invoice_id="INV-LATE", account_pk=w.acme.pk, amount=990,
                                               due_date=date(2026, 5, 20)))
    w.sql(insert(m.table_of(m.NpsResponse)).values(account_pk=w.acme.pk, email="", day=date(2026, 7, 1),
                                                   score=2, touchpoint="other"))
    w.tick("2026-07-01")
    late = next(c for c in w.posts("ACME Corp has an invoice") if c.params["channel"] == "C0ALERTS")
    nps = next(c for c in w.posts("ACME Corp has a new NPS") if c.params["channel"] == "C0ALERTS")
    assert "Acknowledged by <@U0123ABCD>" in json.dumps(w.click("nudge_ack", key_of(late), late, "ack"))
    w.click("nudge_snooze", key_of(nps), nps, "snz")
    w.tick("2026-07-08")
    assert len(w.posts("ACME Corp has an invoice")) == 3  # acknowledged: quiet while it lasts
    back = w.posts("ACME Corp has a new NPS")[3:]  # snoozed a week, and still recent: back to all three
    assert sorted(c.params["channel"] for c in back) == ["C0ACME", "C0ALERTS", "UMAYA0001"]
    assert all("(still, after a snooze)" in json.dumps(c.params["blocks"]) for c in back)
    w.tick("2026-08-05")  # the answer is over 30 days old: the episode is over
    nudges = m.table_of(m.Nudge)
    with w.engine.connect() as conn:
        states = dict(conn.execute(select(nudges.c.rule, nudges.c.state)
                                   .where(nudges.c.account_pk == w.acme.pk, nudges.c.kind == "alert")).all())
    assert states["invoice_overdue"] == "acknowledged" and states["nps_detractor"] == "closed"


# surveys --------------------------------------------------------------------------------------

@pytest.fixture
def surveys(tmp_path: Path, template: Path, slack: FakeSlack) -> World:
    return World(tmp_path, template, slack, reviews=OFF, alerts=OFF,
                 surveys={"after": ["ticket"]}, drafts={"survey_url": "https://survey.example/nps"})


def test_a_closed_ticket_makes_a_survey_plan_for_the_owner_once(surveys):
    w = surveys
    tickets = m.table_of(m.Ticket)
    w.sql(tickets.delete().where(tickets.c.closed_at >= datetime(2026, 6, 20, tzinfo=UTC)))
    w.sql(insert(tickets).values(ticket_id="T-9", account_pk=w.acme.pk, priority="high", kind="bug",
                                 opened_at=datetime(2026, 6, 28, tzinfo=UTC),
                                 closed_at=datetime(2026, 7, 1, 15, tzinfo=UTC)))
    assert w.tick("2026-07-02")["surveys"] == "1 survey plan(s) announced"
    [notice] = w.posts("NPS survey plan for ACME Corp")
    assert notice.params["channel"] == "UMAYA0001"
    text = json.dumps(notice.params["blocks"])
    assert "after a closed ticket (ticket T-9 closed)" in text and '"apply_plan"' in text
    plan = Drafting(w.service).load(f"survey-{w.acme.pk}-2026-07-02")
    assert plan is not None and plan.template == "nps_survey"
    to = {t for t, _ in plan.drafts}
    assert "tom.hughes@acme.example" not in to and "priya.raman@acme.example" not in to  # dnc; billing
    w.tick("2026-07-03")
    w.sql(insert(tickets).values(ticket_id="T-10", account_pk=w.acme.pk, priority="low", kind="question",
                                 opened_at=datetime(2026, 7, 2, tzinfo=UTC),
                                 closed_at=datetime(2026, 7, 3, 9, tzinfo=UTC)))
    w.tick("2026-07-04")  # everyone it would ask was asked two days ago: no new plan to review
    assert len(w.posts("NPS survey plan")) == 1
    nothing = Drafting(w.service).load(f"survey-{w.acme.pk}-2026-07-04")
    assert nothing is not None and not nothing.drafts
    assert {t for t, why in nothing.skipped if "already asked on 2026-07-02" in why} == to


def test_schedule_lists_every_job(tmp_path, monkeypatch, capsys, template):
    from tests.cli import run

    path = tmp_path / "keepwell.toml"
    path.write_text('[reviews]\nschedule = "daily 07:30"\ntimezone = "Europe/Paris"\n'
                    '[surveys]\nenabled = false\n')
    monkeypatch.setenv("KEEPWELL_CONFIG", str(path))
    code, out, _ = run(capsys, "schedule", "--db", f"sqlite:///{template}")
    assert code == 0
    assert "reminders: daily 07:30 (Europe/Paris)" in out and "alerts: daily 08:00 (UTC)" in out
    assert "surveys" not in out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[reviews]\ncadence_days = { enterprise = 3 }\n',
         "reviews.cadence_days: Value error, a cadence must"),
        ('[surveys]\nafter = ["lunch"]\n', "surveys.after: Value error, unknown trigger 'lunch'"),
        ('[alerts]\ntimezone = "Mars/Olympus"\n', "alerts: Value error, unknown time zone"),
        ('[slack]\naccount_channels = { A1 = "#acme" }\n',
         "slack.account_channels: Value error, channel '#acme'"),
    ],
)
def test_bad_nudge_config_is_refused_with_the_key(tmp_path, monkeypatch, capsys, template, body, message):
    from tests.cli import run

    path = tmp_path / "keepwell.toml"
    path.write_text(body)
    monkeypatch.setenv("KEEPWELL_CONFIG", str(path))
    code, _, err = run(capsys, "schedule", "--db", f"sqlite:///{template}")
    assert code == 2 and message in err, err


def test_digest_shows_reviews_detractors_and_overdue_invoices(alerts):
    w = alerts
    w.sql(insert(m.table_of(m.Invoice)).values(invoice_id="INV-LATE", account_pk=w.acme.pk, amount=990,
                                               due_date=date(2026, 5, 1)))
    digest = w.service.digest(date(2026, 6, 30), None, date(2026, 6, 23))
    assert any(a.name == "ACME Corp" and o.invoice_id == "INV-LATE" for a, o in digest.overdue)
    assert all(ans.score <= 6 for _, ans in digest.detractors)
    assert len(digest.scores) == digest.customers
    assert digest.reviews_due == tuple(sorted(digest.reviews_due, key=lambda p: p[1]))
    shown = json.dumps(digest_blocks(digest).to_dict()["blocks"])
    assert "*Invoices overdue*" in shown and "INV-LATE" in shown


# housekeeping -------------------------------------------------------------------------------------

def test_housekeeping_forgets_old_periods_and_deliveries_once_a_day(reminders: World) -> None:
    """A deployment that runs for years keeps its bookkeeping tables small: a tick prunes periods
    claimed over `KEEP_RUNS` ago and Slack deliveries over a week old, once a day (one instance)."""
    from datetime import timedelta

    runs, deliveries = m.table_of(m.JobRun), m.table_of(m.SlackDelivery)
    world = reminders
    world.now = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
    real_now = datetime.now(UTC)

    def old_rows(tag: str) -> None:
        world.sql(insert(runs).values(job=f"nudge:old-{tag}", period="p", state="done", owner="x",
                                      claimed_at=world.now - timedelta(days=401)))
        world.sql(insert(deliveries).values(key=f"event:old-{tag}", received_at=real_now - timedelta(days=8)))

    old_rows("1")
    world.sql(insert(runs).values(job="nudge:recent", period="p", state="done", owner="x",
                                  claimed_at=world.now - timedelta(days=300)))
    world.sql(insert(deliveries).values(key="event:recent", received_at=real_now - timedelta(days=6)))

    world.tick("2026-06-30")
    with world.engine.connect() as conn:
        jobs = set(conn.execute(select(runs.c.job)).scalars())
        keys = set(conn.execute(select(deliveries.c.key)).scalars())
        done = conn.execute(select(runs.c.result).where(runs.c.job == "housekeeping")).scalar_one()
    assert "nudge:old-1" not in jobs and "nudge:recent" in jobs
    assert keys == {"event:recent"}
    assert json.loads(done) == {"job_runs": 1, "slack_deliveries": 1}
    assert not world.service.journal.claim("event:recent")  # a late retry is still known

    old_rows("2")
    world.tick("2026-06-30", hour=18)  # the same day: done already
    with world.engine.connect() as conn:
        assert "nudge:old-2" in set(conn.execute(select(runs.c.job)).scalars())
    world.tick("2026-07-01")
    with world.engine.connect() as conn:
        assert "nudge:old-2" not in set(conn.execute(select(runs.c.job)).scalars())
        assert "event:old-2" not in set(conn.execute(select(deliveries.c.key)).scalars())


# a plan's mailbox ---------------------------------------------------------------------------------

class SignedOut:
    """A mailbox whose Google sign-in has lapsed: every draft fails (the apply stops, nothing made)."""

    name = "gmail"

    def find(self, message_id: str) -> str | None:
        return None

    def create_many(self, drafts: Any) -> Any:
        from bot.errors import OperationFailed

        raise OperationFailed("Google says the sign-in has expired")

    def link(self, location: str) -> str | None:
        return None


def test_a_plan_resumed_by_someone_else_goes_on_in_the_mailbox_it_began_in(
    tmp_path: Path, template: Path, slack: FakeSlack
) -> None:
    """Maya presses *Create drafts* while her mailbox is signed out; Nora presses it again: the drafts
    go to Maya's mailbox (the plan's), not Nora's, so a plan is never split between two people."""
    asked: list[str | None] = []
    maya, nora = USERS["UMAYA0001"]["profile"]["email"], USERS["UNORA0001"]["profile"]["email"]

    def stores(email: str | None) -> Any:
        asked.append(email)
        return SignedOut() if len(asked) == 1 else Outbox(tmp_path / f"box-{email}")

    world = World(tmp_path, template, slack, stores=stores, alerts=OFF, surveys=OFF, reviews=OFF)
    plan = Drafting(world.service).plan("checkin", as_of=world.now.date(), account="DEMO-0001")
    assert plan.drafts

    def press(user: str, name: str) -> str:
        body = block_action("apply_plan", plan.plan_id, user_id=user, response_url=slack.response_url(name),
                            message={"blocks": [], "ts": "1.2"})
        request = BoltRequest(body=body.decode(), headers=signed_headers(SECRET, body))  # type: ignore[arg-type]
        assert world.app.dispatch(request).status == 200
        deadline = time.monotonic() + 10
        while True:
            said = [json.dumps(r.payload) for r in slack.responses if r.name == name]
            if any("created" in t or ":warning:" in t for t in said):
                return said[-1]
            assert time.monotonic() < deadline, f"no answer to {user}"
            time.sleep(0.02)

    assert "sign-in has expired" in press("UMAYA0001", "maya")
    assert "draft(s) created" in press("UNORA0001", "nora")
    assert asked == [maya, maya]
    assert len(list((tmp_path / f"box-{maya}").rglob("*.eml"))) == len(plan.drafts)
    assert not (tmp_path / f"box-{nora}").exists()
    assert Drafting(world.service).mailbox(plan.plan_id, nora) == maya  # named once, kept
