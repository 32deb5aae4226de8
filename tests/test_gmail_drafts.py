"""Bulk drafts into Gmail through the real googleapiclient against the fake Google on 127.0.0.1:
exactly one draft per eligible contact, whatever fails and whenever the process dies."""

from __future__ import annotations

import email
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from email import policy
from pathlib import Path

import pytest

from bot.config import DraftsConfig, KeepwellConfig, Settings
from bot.db.engine import make_engine, migrate
from bot.drafts import Drafting
from bot.draftstore import AuthFailed
from bot.errors import BadInput
from bot.sample_book import generate_book
from bot.services import Keepwell
from bot.store import Book
from integrations.gmail import GmailStore, Pacer
from tests.fakes.google_api import FakeGoogle

AS_OF = date(2026, 6, 30)
ALL_ROLES = ["champion", "decision_maker", "user", "billing", "other"]


def make_book(folder: Path, accounts: int, roles: list[str] | None = None, batch: int = 50) -> Keepwell:
    engine = make_engine(f"sqlite:///{folder / 'book.db'}")
    migrate(engine)
    # pacing to the real quota has a test of its own; here it would only make the run slow
    config = KeepwellConfig(drafts=DraftsConfig(roles=roles or ALL_ROLES, batch_size=batch,
                                                quota_units_per_minute=10_000_000))
    service = Keepwell(Book(engine), config)
    for kind, path in generate_book(folder / "csv", accounts=accounts, days=40, as_of=AS_OF,
                                    user_level_days=0):
        if kind != "touches":  # no recent emails: every reachable contact is eligible
            service.import_file(kind, path)
    return service


@pytest.fixture
def google(tmp_path: Path) -> Iterator[tuple[FakeGoogle, Path]]:
    with FakeGoogle() as fake:
        cred = fake.authorized_user_file(tmp_path / "google.json")
        yield fake, cred
        own = [e for e in fake.errors if not e.rstrip().endswith(("Connection reset by peer", "Broken pipe"))]
        assert own == []  # (a killed client resetting its connection is not the server's fault)


def store_for(fake: FakeGoogle, cred: Path, config: DraftsConfig) -> GmailStore:
    settings = Settings(GOOGLE_APPLICATION_CREDENTIALS=str(cred), KEEPWELL_GOOGLE_API_URL=fake.root_url)
    store = GmailStore.from_settings(settings, config, None)
    store.sleep = lambda s: None
    return store


def assert_exactly_one_each(fake: FakeGoogle, plan_drafts: list[tuple[str, str]]) -> None:
    on_server = Counter(d["message_id_header"] for d in fake.drafts())
    assert max(on_server.values()) == 1, "a duplicate draft"
    assert len(on_server) == len(plan_drafts), "a missing draft"
    assert sorted(d["to"].split("<")[-1].rstrip(">") for d in fake.drafts()) == sorted(
        to for to, _ in plan_drafts)


def test_plan_then_apply_creates_valid_drafts_and_links(tmp_path, google):
    fake, cred = google
    service = make_book(tmp_path, 30, roles=["champion", "decision_maker"])
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    data = plan.to_dict()
    assert set(data) == {"plan_id", "template", "eligible", "drafts", "skipped"}
    assert data["eligible"] == len(data["drafts"]) > 10
    summary = drafting.apply(plan.plan_id, store_for(fake, cred, service.config.drafts), sleep=lambda s: None)
    assert summary.created == data["eligible"] and not summary.failed
    assert_exactly_one_each(fake, plan.drafts)
    raw = fake.drafts()[0]["raw"]
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert all(link.startswith("https://mail.google.com/mail/") for _, link in summary.links)
    again = drafting.apply(plan.plan_id, store_for(fake, cred, service.config.drafts), sleep=lambda s: None)
    assert again.created == summary.created and len(fake.drafts()) == summary.created
    # each draft became a touch, so the caps see it: a second plan skips everyone it went to
    second = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    assert second.drafts == []
    assert all("a Keepwell draft went to them on" in reason for _, reason in second.skipped
               if reason != "marked do-not-contact" and not reason.startswith("same address"))


def test_a_thousand_drafts_under_faults_end_with_exactly_one_each(tmp_path, google):
    fake, cred = google
    service = make_book(tmp_path, 420)
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    assert len(plan.drafts) >= 1000
    fake.fault_rate("gmail.users.drafts.create", lose_reply=0.05, server_error=0.05, rate_limit=0.05,
                    seed=7, retry_after=0)
    summary = drafting.apply(plan.plan_id, store_for(fake, cred, service.config.drafts), sleep=lambda s: None)
    fake.clear_faults()
    assert not summary.failed
    assert summary.created == len(plan.drafts)
    assert_exactly_one_each(fake, plan.drafts)


def test_killed_halfway_then_run_again_ends_with_exactly_one_each(tmp_path, google):
    fake, cred = google
    service = make_book(tmp_path, 420, batch=10)
    plan = Drafting(service).plan("checkin", as_of=AS_OF, segment="mrr>=0")
    config = tmp_path / "keepwell.toml"
    config.write_text(f"[drafts]\nbatch_size = 10\nquota_units_per_minute = 10000000\n"
                      f"roles = {json.dumps(ALL_ROLES)}\n")
    env = {**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": str(cred),
           "KEEPWELL_GOOGLE_API_URL": fake.root_url, "KEEPWELL_CONFIG": str(config)}
    cmd = [sys.executable, "-m", "bot.cli", "drafts", "apply", plan.plan_id, "--db",
           f"sqlite:///{tmp_path / 'book.db'}", "--json"]
    fake.fault_rate("gmail.users.drafts.create", lose_reply=0.05, seed=3)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(fake.drafts()) < len(plan.drafts) // 2:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(fake.drafts()) < len(plan.drafts)
    fake.clear_faults()
    again = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()
    result = json.loads(again.stdout)
    assert result["created"] == len(plan.drafts) and result["failed"] == []
    assert_exactly_one_each(fake, plan.drafts)


def test_do_not_contact_is_checked_again_at_apply(tmp_path, google, csv_file):
    fake, cred = google
    service = make_book(tmp_path, 20, roles=["champion", "decision_maker"])
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    victim = plan.drafts[0][0]
    service.import_file("contacts", csv_file("dnc.csv", f"email,do_not_contact\n{victim},yes"))
    summary = drafting.apply(plan.plan_id, store_for(fake, cred, service.config.drafts), sleep=lambda s: None)
    assert (victim, "marked do-not-contact since the plan was made") in summary.skipped
    assert victim not in {d["to"].split("<")[-1].rstrip(">") for d in fake.drafts()}
    assert summary.created == len(plan.drafts) - 1


def test_a_revoked_sign_in_stops_with_one_clear_message_and_no_retry_storm(tmp_path, google):
    fake, cred = google
    service = make_book(tmp_path, 20, roles=["champion", "decision_maker"])
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    fake.revoke()
    with pytest.raises(AuthFailed, match="keepwell auth google"):
        drafting.apply(plan.plan_id, store_for(fake, cred, service.config.drafts), sleep=lambda s: None)
    assert len(fake.calls_to("oauth2.token")) <= 2
    assert fake.drafts() == []


def test_pacer_never_spends_more_than_the_quota_in_any_minute():
    now = [0.0]
    spent: list[tuple[float, int]] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(15_000, clock=lambda: now[0], sleep=sleep)
    for _ in range(120):  # 120 batches of 50 creates = 60,000 units: four minutes' worth
        pacer.take(500)
        spent.append((now[0], 500))
    for start, _ in spent:
        in_window = sum(u for t, u in spent if start <= t < start + 60)
        assert in_window <= 15_000
    assert now[0] <= 4 * 60 + 5  # and it uses the quota: ~98% of the ceiling


def test_stored_token_is_encrypted_and_needs_the_same_key(tmp_path):
    from integrations.google_auth import load_token, store_token

    token = tmp_path / "token.json"
    settings = Settings(KEEPWELL_GOOGLE_TOKEN=str(token), KEEPWELL_SECRET_KEY="a-long-random-secret-123456")
    info = {"type": "authorized_user", "refresh_token": "very-secret-refresh", "client_id": "c",
            "client_secret": "s", "account": "ana@example.com"}
    store_token(settings, info)
    assert b"very-secret-refresh" not in token.read_bytes()
    assert oct(token.stat().st_mode & 0o777) == "0o600"
    assert load_token(settings) == info
    wrong = Settings(KEEPWELL_GOOGLE_TOKEN=str(token), KEEPWELL_SECRET_KEY="another-secret-0987654321")
    with pytest.raises(BadInput, match="cannot be read with this KEEPWELL_SECRET_KEY"):
        load_token(wrong)
    with pytest.raises(BadInput, match="KEEPWELL_SECRET_KEY is not set"):
        store_token(Settings(KEEPWELL_GOOGLE_TOKEN=str(token)), info)


def test_the_stored_sign_in_drafts_into_gmail(tmp_path, google):
    from integrations.google_auth import store_token

    fake, _ = google
    settings = Settings(KEEPWELL_GOOGLE_TOKEN=str(tmp_path / "t.json"), KEEPWELL_SECRET_KEY="k" * 32,
                        KEEPWELL_GOOGLE_API_URL=fake.root_url)
    store_token(settings, {"type": "authorized_user", "refresh_token": "r", "client_id": "c",
                           "client_secret": "s", "token_uri": fake.token_url, "account": "me@example.com"})
    service = make_book(tmp_path, 10, roles=["champion"])
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    store = GmailStore.from_settings(settings, service.config.drafts, None)
    assert drafting.apply(plan.plan_id, store, sleep=lambda s: None).created == len(plan.drafts)
    with pytest.raises(BadInput, match="needs a service account"):
        GmailStore.from_settings(settings, service.config.drafts, "someone.else@example.com")


def test_auth_google_refuses_without_a_secret_key_or_client_file(tmp_path, capsys, monkeypatch):
    from bot.cli import main

    monkeypatch.delenv("KEEPWELL_SECRET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["auth", "google"])
    assert exc.value.code == 2 and "KEEPWELL_SECRET_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("KEEPWELL_SECRET_KEY", "s" * 40)
    with pytest.raises(SystemExit) as exc:
        main(["auth", "google", "--client-secrets", str(tmp_path / "nope.json")])
    assert exc.value.code == 2 and "no OAuth client file" in capsys.readouterr().err


def service_account(tmp_path: Path, fake: FakeGoogle) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k1",
                              "private_key": pem, "client_email": "keepwell@p.iam.gserviceaccount.com",
                              "client_id": "1", "token_uri": fake.token_url}))
    return sa


def test_a_delegated_service_account_drafts_into_the_named_mailbox(tmp_path, google):
    import base64

    fake, _ = google
    sa = service_account(tmp_path, fake)
    settings = Settings(GOOGLE_APPLICATION_CREDENTIALS=str(sa), KEEPWELL_GOOGLE_API_URL=fake.root_url)
    service = make_book(tmp_path, 10, roles=["champion"])
    drafting = Drafting(service)
    plan = drafting.plan("checkin", as_of=AS_OF, segment="mrr>=0")
    with pytest.raises(BadInput, match="give --mailbox EMAIL"):
        GmailStore.from_settings(settings, service.config.drafts, None)
    store = GmailStore.from_settings(settings, service.config.drafts, "ana@example.com")
    assert drafting.apply(plan.plan_id, store, sleep=lambda s: None).created == len(plan.drafts)
    [grant] = fake.calls_to("oauth2.token")
    assert grant.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = grant.body["assertion"].split(".")[1]
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["sub"] == "ana@example.com"
    assert payload["scope"] == "https://www.googleapis.com/auth/gmail.compose"
    assert store.link("m-1") == "https://mail.google.com/mail/?authuser=ana@example.com#drafts?compose=m-1"


def test_a_plan_begun_in_one_mailbox_is_not_applied_in_another(tmp_path, google, monkeypatch, capsys):
    """`drafts apply` keeps a plan in the mailbox its first drafts went to (`Drafting.mailbox`)."""
    from tests.cli import run

    fake, _ = google
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account(tmp_path, fake)))
    monkeypatch.setenv("KEEPWELL_GOOGLE_API_URL", fake.root_url)
    service = make_book(tmp_path, 10, roles=["champion"])
    plan = Drafting(service).plan("checkin", as_of=AS_OF, segment="mrr>=0")
    assert Drafting(service).mailbox(plan.plan_id, "Ana@Example.com ") == "ana@example.com"
    db = f"sqlite:///{tmp_path / 'book.db'}"
    code, _, err = run(capsys, "drafts", "apply", plan.plan_id, "--mailbox", "ben@example.com", "--db", db)
    assert code == 2 and f"plan {plan.plan_id}'s drafts go to ana@example.com" in err
    assert not fake.calls_to("gmail.users.drafts.create")
    code, out, err = run(capsys, "drafts", "apply", plan.plan_id, "--db", db, "--json")  # the plan's own
    assert code == 0, err
    assert json.loads(out)["created"] == len(plan.drafts)
