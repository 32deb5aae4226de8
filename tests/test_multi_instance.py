"""Many instances against one database: bulk apply spread over workers (no contact claimed twice, no
draft created twice), scheduled jobs posted once, Slack retries acted on once — on SQLite and PostgreSQL.

The workers here are real: each has its own engine, and creates drafts in the fake Gmail through the
real googleapiclient; the last test starts two `keepwell serve` processes behind "a load balancer"
(the test, sending each request to one or both of them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot.config import DraftsConfig, KeepwellConfig, Settings
from bot.db.engine import make_engine, migrate
from bot.db.models import JobRun, PlanItem, Review, Touch, table_of
from bot.db.scratch import scratch_schema
from bot.drafts import Drafting, Owner, _node
from bot.draftstore import AuthFailed
from bot.emails import Draft
from bot.sample_book import generate_book
from bot.services import Keepwell
from bot.store import Book, Journal
from integrations.gmail import GmailStore
from tests.conftest import PG_URL
from tests.fakes.google_api import FakeGoogle
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import (
    app_home_opened,
    block_action,
    event_headers,
    post,
    signed_headers,
    slash_command,
    wait_until_serving,
)
from tests.slack.test_http_e2e import DAILY_JOBS_OFF, free_port

AS_OF = date(2026, 6, 30)
ALL_ROLES = ["champion", "decision_maker", "user", "billing", "other"]
PI, TO, J, RV = table_of(PlanItem), table_of(Touch), table_of(JobRun), table_of(Review)


def make_book(url: str, folder: Path, accounts: int, *, batch: int = 10, touches: bool = False,
              roles: list[str] | None = None) -> Keepwell:
    engine = make_engine(url)
    migrate(engine)
    config = KeepwellConfig(drafts=DraftsConfig(roles=roles or ALL_ROLES, batch_size=batch,
                                                quota_units_per_minute=10_000_000))
    service = Keepwell(Book(engine), config)
    for kind, path in generate_book(folder / "csv", accounts=accounts, days=40, as_of=AS_OF,
                                    user_level_days=0):
        if touches or kind != "touches":  # without recent emails every reachable contact is eligible
            service.import_file(kind, path)
    return service


@pytest.fixture
def google(tmp_path: Path) -> Iterator[tuple[FakeGoogle, Path]]:
    with FakeGoogle() as fake:
        yield fake, fake.authorized_user_file(tmp_path / "google.json")
        own = [e for e in fake.errors if not e.rstrip().endswith(("Connection reset by peer", "Broken pipe"))]
        assert own == []


def gmail(fake: FakeGoogle, cred: Path, config: DraftsConfig) -> GmailStore:
    settings = Settings(GOOGLE_APPLICATION_CREDENTIALS=str(cred), KEEPWELL_GOOGLE_API_URL=fake.root_url)
    store = GmailStore.from_settings(settings, config, None)
    store.sleep = lambda s: None
    return store


def assert_exactly_one_each(fake: FakeGoogle, plan_drafts: list[tuple[str, str]]) -> None:
    on_server = Counter(d["message_id_header"] for d in fake.drafts())
    assert max(on_server.values()) == 1, f"duplicates: {[k for k, n in on_server.items() if n > 1][:5]}"
    assert sorted(d["to"].split("<")[-1].rstrip(">") for d in fake.drafts()) == sorted(
        to for to, _ in plan_drafts), "a missing (or unexpected) draft"


def items(service: Keepwell, plan_id: str) -> list[Any]:
    with service.book.engine.connect() as conn:
        return conn.execute(select(PI).where(PI.c.plan_id == plan_id).order_by(PI.c.id)).all()


def race(url: str, config: KeepwellConfig, plan_id: str, fake: FakeGoogle, cred: Path,
         names: list[str]) -> dict[str, Any]:
    """Each name a worker thread with an engine of its own, all applying the plan at once."""
    results: dict[str, Any] = {}
    start = threading.Barrier(len(names))

    def work(name: str) -> None:
        engine = make_engine(url)
        try:
            store = gmail(fake, cred, config.drafts)
            drafting = Drafting(Keepwell(Book(engine), config))
            start.wait(30)
            results[name] = drafting.apply(plan_id, store, author=name, sleep=lambda s: None)
        except BaseException as exc:
            results[name] = exc
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a worker never finished"
    return results


# bulk apply on several workers ----------------------------------------------------------------

def test_two_workers_apply_one_plan_each_draft_once_and_both_do_some(db_url, tmp_path, google):
    fake, cred = google
    service = make_book(db_url, tmp_path, 130)
    plan = Drafting(service).plan("checkin", as_of=AS_OF, segment="mrr>=0")
    assert len(plan.drafts) >= 300
    results = race(db_url, service.config, plan.plan_id, fake, cred, ["w1", "w2"])
    for name, summary in results.items():
        assert not isinstance(summary, BaseException), f"{name}: {summary!r}"
        assert summary.created == len(plan.drafts) and not summary.failed  # each saw the whole plan done
    assert_exactly_one_each(fake, plan.drafts)
    rows = [r for r in items(service, plan.plan_id) if r.state != "skipped"]
    assert {r.state for r in rows} == {"created"}
    assert {r.attempts for r in rows} == {1}, "an item was claimed twice"
    assert len({r.location for r in rows}) == len(rows)
    with service.book.engine.connect() as conn:
        by_worker = dict(conn.execute(select(TO.c.author, func.count()).where(TO.c.source == "draft")
                                      .group_by(TO.c.author)).all())
    assert sum(by_worker.values()) == len(plan.drafts)
    assert by_worker.get("w1", 0) > 0 and by_worker.get("w2", 0) > 0, by_worker


def test_three_workers_under_gmail_faults_still_create_each_draft_once(db_url, tmp_path, google):
    fake, cred = google
    service = make_book(db_url, tmp_path, 80)
    plan = Drafting(service).plan("checkin", as_of=AS_OF, segment="mrr>=0")
    fake.fault_rate("gmail.users.drafts.create", lose_reply=0.05, server_error=0.05, rate_limit=0.05,
                    seed=11, retry_after=0)
    results = race(db_url, service.config, plan.plan_id, fake, cred, ["w1", "w2", "w3"])
    fake.clear_faults()
    for name, summary in results.items():
        assert not isinstance(summary, BaseException), f"{name}: {summary!r}"
        assert summary.created == len(plan.drafts) and not summary.failed
    assert_exactly_one_each(fake, plan.drafts)


def test_an_apply_stopped_by_an_error_leaves_nothing_held_and_the_next_one_resumes(db_url, tmp_path, google):
    fake, cred = google
    service = make_book(db_url, tmp_path, 30)
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    store = gmail(fake, cred, service.config.drafts)

    def sign_out_halfway(done: int, total: int) -> None:
        if done * 2 >= total > 0:
            fake.revoke()  # the next batch fails: Google says sign in again

    with pytest.raises(AuthFailed):
        drafting.apply(plan.plan_id, store, progress=sign_out_halfway, sleep=lambda s: None)
    made = len(fake.drafts())
    assert 0 < made < len(plan.drafts)
    held = [r for r in items(service, plan.plan_id) if r.state == "creating"]
    assert held and all(r.reason is None for r in held)  # released on the way out: nobody waits a lease
    assert drafting.status(plan.plan_id) == "open"
    with fake._cond:  # signed in again
        fake._revoked = False
    looked_up = len(fake.calls_to("gmail.users.drafts.list"))
    summary = drafting.apply(plan.plan_id, gmail(fake, cred, service.config.drafts), sleep=lambda s: None)
    assert summary.created == len(plan.drafts)
    assert_exactly_one_each(fake, plan.drafts)
    assert len(fake.calls_to("gmail.users.drafts.list")) - looked_up >= len(held)  # each looked up first
    assert drafting.status(plan.plan_id) == "done"


def test_a_batch_held_by_a_silent_worker_elsewhere_is_taken_over_after_the_lease_and_looked_up(
        db_url, tmp_path, google):
    fake, cred = google
    service = make_book(db_url, tmp_path, 20)
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    store = gmail(fake, cred, service.config.drafts)
    # a worker on another machine claimed the first five, created three of them in Gmail, then vanished
    elsewhere = Owner("another-machine", 4242, "77", "t0")
    first = [r for r in items(service, plan.plan_id) if r.state == "pending"][:5]
    with service.book.engine.begin() as conn:
        conn.execute(update(PI).where(PI.c.id.in_([r.id for r in first]))
                     .values(state="creating", reason=str(elsewhere), updated_at=datetime.now(UTC)))
    store.create_many([Draft(**json.loads(r.draft)) for r in first[:3]])
    assert drafting.status(plan.plan_id) == "running"  # for all anyone here can tell, it is still at work
    drafting.lease = timedelta(seconds=1.5)
    started = time.monotonic()
    summary = drafting.apply(plan.plan_id, store, sleep=lambda s: None)
    assert time.monotonic() - started >= 1.0  # it waited for the lease before touching those five
    assert summary.created == len(plan.drafts)
    assert_exactly_one_each(fake, plan.drafts)
    looked_up = {c.param("q") for c in fake.calls_to("gmail.users.drafts.list")}
    assert {f"rfc822msgid:{r.message_id.strip('<>')}" for r in first} <= looked_up


def test_only_a_stopped_worker_of_this_machine_counts_as_gone():
    here = Owner.here()
    assert not here.gone()
    here.stop()
    assert here.gone()  # an apply of this process that returned
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    assert Owner(_node(), int(done.stdout), "1234", "t").gone()  # a process that exited
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from bot.drafts import _stat

        stat = _stat(alive.pid)
        started = stat[1] if stat else "-"
        assert not Owner(_node(), alive.pid, started, "t").gone()
        if stat:  # Linux: the same pid with another start time is another process (a reused pid)
            assert Owner(_node(), alive.pid, str(int(started) + 1), "t").gone()
    finally:
        alive.kill()
        alive.wait()
    assert not Owner("another-machine", 1, "1", "t").gone()  # elsewhere: only the lease tells


# Slack deliveries ---------------------------------------------------------------------------------

def test_a_slack_delivery_is_claimed_by_one_instance_only(db_url):
    """Slack's retries (or a load balancer) hand one delivery to several instances: one acts on it."""
    migrate(make_engine(db_url))
    keys = [f"event:Ev{n:03d}" for n in range(40)]
    won: dict[str, list[str]] = {}
    start = threading.Barrier(3)

    def instance(name: str) -> None:
        engine = make_engine(db_url)
        journal = Journal(engine)
        start.wait(30)
        won[name] = [k for k in keys if journal.claim(k)]
        engine.dispose()

    threads = [threading.Thread(target=instance, args=(f"i{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = Counter(k for got in won.values() for k in got)
    assert claimed == Counter(keys), "a delivery acted on twice, or by nobody"


# two `keepwell serve` against one database ---------------------------------------------------

SECRET = "multi-instance-signing-secret-42"
USERS = {
    "U0123ABCD": {"team_id": "T0FAKE", "name": "ana", "real_name": "Ana Lopez", "deleted": False,
                  "is_bot": False, "profile": {"email": "ana@example.com", "real_name": "Ana Lopez"}},
    "U0BEN": {"team_id": "T0FAKE", "name": "ben", "real_name": "Ben Okafor", "deleted": False,
              "is_bot": False, "profile": {"email": "ben@example.com", "real_name": "Ben Okafor"}},
}


@pytest.fixture
def shared_url(tmp_path: Path) -> Iterator[str]:
    """One database for every instance: PostgreSQL when KEEPWELL_TEST_DATABASE_URL is set, else a file."""
    if PG_URL:
        with scratch_schema(PG_URL, prefix="multi") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'book.db'}"


def until(what: str, check: Any, timeout: float = 20.0) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def at_once(*sends: tuple[str, bytes, dict[str, str]]) -> None:
    """POST each (url, body, headers) from its own thread, all released together: a load balancer
    handing Slack's deliveries to different instances at the same moment."""
    go = threading.Barrier(len(sends))
    answers: list[int] = []

    def send(url: str, body: bytes, headers: dict[str, str]) -> None:
        go.wait(10)
        answers.append(post(url, body, headers)[0])

    threads = [threading.Thread(target=send, args=s) for s in sends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert answers == [200] * len(sends)


def test_two_serve_instances_on_one_database_act_once(shared_url, tmp_path):
    started = time.monotonic()
    service = make_book(shared_url, tmp_path, 40, touches=True, roles=["champion", "decision_maker"])
    service.score(AS_OF)
    engine = service.book.engine
    due = datetime.now(UTC) - timedelta(minutes=10)
    config = tmp_path / "keepwell.toml"
    config.write_text(DAILY_JOBS_OFF
                      + f'[[digests]]\nchannel = "C0MULTI"\nschedule = "daily {due:%H:%M}"\n'
                      + "[drafts]\nbatch_size = 5\nquota_units_per_minute = 10000000\n")
    with ExitStack() as stack:
        slack = stack.enter_context(FakeSlack(users=USERS))
        google = stack.enter_context(FakeGoogle())
        env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-multi", "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": slack.api_url, "KEEPWELL_CONFIG": str(config),
               "KEEPWELL_DATABASE_URL": shared_url,
               "GOOGLE_APPLICATION_CREDENTIALS": str(google.authorized_user_file(tmp_path / "google.json")),
               "KEEPWELL_GOOGLE_API_URL": google.root_url}
        urls = []
        for name in ("a", "b"):
            port = free_port()
            log = stack.enter_context((tmp_path / f"serve-{name}.log").open("wb"))
            proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                                    env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(proc.wait, 10)
            stack.callback(proc.terminate)
            urls.append((f"http://127.0.0.1:{port}", proc, tmp_path / f"serve-{name}.log"))

        for base, proc, log in urls:
            wait_until_serving(base, proc, log, timeout=30)
        a, b = (f"{base}/slack/events" for base, _, _ in urls)

        # (a) a digest due now: both schedulers ticked when they started, one posted it
        until("the digest", lambda: [c for c in slack.calls_to("chat.postMessage")
                                     if c.params.get("channel") == "C0MULTI"])

        # (b) one Slack event delivered to both instances (the original and its retry): one App Home
        home = app_home_opened("U0123ABCD", event_id="EvMultiHome1")
        at_once((a, home, event_headers(SECRET, home)),
                (b, home, {**event_headers(SECRET, home), "X-Slack-Retry-Num": "1",
                           "X-Slack-Retry-Reason": "http_timeout"}))
        until("views.publish", lambda: slack.calls_to("views.publish"))
        #     and one button click delivered to both: one review recorded, one answer
        with engine.connect() as conn:
            reviews_before = conn.execute(select(func.count()).select_from(RV)).scalar()
        click = block_action("review_done", "DEMO-0002", response_url=slack.response_url("review"))
        at_once((a, click, signed_headers(SECRET, click)), (b, click, signed_headers(SECRET, click)))
        until("the review's answer", lambda: [r for r in slack.responses if r.name == "review"])

        def plan_button(segment: str, name: str) -> tuple[str, list[Any]]:
            """Ask instance A for a plan; its id (the button's value) and the items it will create."""
            ask = slash_command(f"draft checkin {segment}", response_url=slack.response_url(name))
            assert post(a, ask, signed_headers(SECRET, ask))[0] == 200
            [plan] = until(name, lambda: [r.payload for r in slack.responses if r.name == name])
            [button] = [e for blk in plan["blocks"] if blk["type"] == "actions" for e in blk["elements"]
                        if e["action_id"] == "apply_plan"]
            return button["value"], [r for r in items(service, button["value"]) if r.state == "pending"]

        def answers(name: str) -> list[str]:
            return [json.dumps(r.payload) for r in slack.responses if r.name == name]

        def finals(name: str) -> list[str]:
            return [t for t in answers(name) if "draft(s) created" in t or "already being created" in t]

        # (c) an apply stopped by an error (Google signed out) on one instance, resumed by pressing the
        #     button again on the other: the rest is created, nothing twice
        stopped_id, stopped = plan_button("tier:enterprise", "plan-1")
        assert stopped
        google.revoke()
        press = block_action("apply_plan", stopped_id, response_url=slack.response_url("stopped"))
        assert post(a, press, signed_headers(SECRET, press))[0] == 200
        [error] = until("the error", lambda: [t for t in answers("stopped") if ":warning:" in t])
        assert "press the button again" in error and '"apply_plan"' in error  # with the button back
        assert Drafting(service).status(stopped_id) == "open"
        with google._cond:  # signed in again
            google._revoked = False
        press = block_action("apply_plan", stopped_id, response_url=slack.response_url("resumed"))
        assert post(b, press, signed_headers(SECRET, press))[0] == 200
        [resumed] = until("the resumed apply", lambda: finals("resumed"))
        assert f"{len(stopped)} draft(s) created" in resumed

        # (d) a plan's "Create drafts" pressed on both instances at once (and the first press also
        #     delivered again to the second instance): every draft created once
        plan_id, to_create = plan_button("mrr>=0", "plan-2")
        assert len(to_create) >= 20
        first = block_action("apply_plan", plan_id, response_url=slack.response_url("apply-ana"))
        second = block_action("apply_plan", plan_id, user_id="U0BEN",
                              response_url=slack.response_url("apply-ben"))
        at_once((a, first, signed_headers(SECRET, first)), (b, first, signed_headers(SECRET, first)),
                (b, second, signed_headers(SECRET, second)))
        until("both presses answered", lambda: finals("apply-ana") and finals("apply-ben"), timeout=30)
        assert_exactly_one_each(google, [(r.contact_email, "") for r in stopped + to_create])
        assert {r.state for r in items(service, plan_id) if r.contact_email in
                {t.contact_email for t in to_create}} == {"created"}
        both = finals("apply-ana") + finals("apply-ben")
        assert any(f"{len(to_create)} draft(s) created" in f for f in both)
        with engine.connect() as conn:  # by whichever instance(s) took the batches: once in all
            made = conn.execute(select(func.count()).select_from(TO).where(
                TO.c.source == "draft", TO.c.author.in_(["U0123ABCD", "U0BEN"]))).scalar()
        assert made == len(stopped) + len(to_create)

        # nothing acted on twice, now that both instances have long finished with every delivery
        time.sleep(0.5)
        assert len(finals("apply-ana")) == 1 and len(finals("apply-ben")) == 1
        assert len(slack.calls_to("views.publish")) == 1
        assert len([r for r in slack.responses if r.name == "review"]) == 1
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(RV)).scalar() == reviews_before + 1
            digests = conn.execute(select(J.c.state).where(J.c.job == "digest:C0MULTI:all")).scalars().all()
        assert digests == ["done"]  # one period, claimed once
        assert len([c for c in slack.calls_to("chat.postMessage")
                    if c.params.get("channel") == "C0MULTI"]) == 1
        assert len(slack.calls_to("files.completeUploadExternal")) == 1  # and its chart once
        for _, proc, log in urls:
            assert proc.poll() is None, log.read_text(errors="replace")
    engine.dispose()
    assert time.monotonic() - started < 60
