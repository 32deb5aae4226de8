"""Bulk check-in drafts: plan (who gets one, who is skipped and why, rendered and stored), then apply
(create each draft exactly once in Gmail or the outbox, however often apply is interrupted, and however
many workers apply one plan at once).

Plan: accounts → contacts (by role) → do-not-contact → addresses deduplicated → the contact caps
(one Keepwell draft per contact per `cap_days`; none when any team emailed them in `quiet_days`) →
rendered → stored. Apply: each worker claims batches of pending items (`creating`, with the worker as
their holder; FOR UPDATE SKIP LOCKED on PostgreSQL), checks do-not-contact and caps again, calls the
store and marks each item `created`. An item left `creating` by a worker that stopped (released on its
way out, a process known to be gone, or silent for longer than the lease) is looked up by its
Message-ID before anything is created again; one held by a live worker is waited for.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import secrets
import socket
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.core.segments import SegmentError, parse_segment
from bot.db import models as m
from bot.drafting import Skip, draft_for
from bot.draftstore import AuthFailed, Created, DraftStore, Failed, Retry
from bot.emails import Draft, environment
from bot.errors import BadInput
from bot.services import Keepwell
from bot.store import TO, C, N

P = m.table_of(m.DraftPlan)
PI = m.table_of(m.PlanItem)
CHURN_TEMPLATES = ("churn_interview", "winback")
MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=10)  # an item `creating` this long with no word from its holder is abandoned
RENEW = 60.0  # seconds: how often a worker busy with a batch says it still holds it
POLL = 0.2  # seconds between looks while other workers finish their last batches


# workers --------------------------------------------------------------------------------------

@functools.cache
def _node() -> str:
    """Where a process id means one process: this boot of this machine and its PID namespace (Linux),
    else the host name. Containers on one machine have PID namespaces of their own, so none judges
    another's pids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return socket.gethostname()


def _stat(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks after boot), from /proc (Linux); None when
    there is nothing to read. The start time tells a reused pid from the process that held an item."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


_LIVE: set[str] = set()  # the holders of the applies running in this process
_LIVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Owner:
    """The worker holding an item while it is `creating`: one apply in one process. It is kept in the
    item's `reason`, which only skipped and failed items otherwise use."""

    node: str
    pid: int
    started: str
    token: str

    def __str__(self) -> str:
        return f"worker|{self.node}|{self.pid}|{self.started}|{self.token}"

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        parts = (text or "").split("|")
        if len(parts) != 5 or parts[0] != "worker" or not parts[2].isdigit():
            return None
        return cls(parts[1], int(parts[2]), parts[3], parts[4])

    @classmethod
    def here(cls) -> Owner:
        """A new holder for one apply in this process, live until `stop`."""
        pid = os.getpid()
        owner = cls(_node(), pid, (_stat(pid) or ("", "-"))[1], secrets.token_hex(6))
        with _LIVE_LOCK:
            _LIVE.add(str(owner))
        return owner

    def stop(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(str(self))

    def gone(self) -> bool:
        """Known to have stopped: an apply of this process that returned, or a process of this machine
        that exited. Of a process elsewhere nothing is known, and only the lease decides."""
        if self.node != _node():
            return False
        if self.pid == os.getpid() and self.started == (_stat(self.pid) or ("", "-"))[1]:
            with _LIVE_LOCK:
                return str(self) not in _LIVE
        if os.name != "posix":
            return False
        try:
            os.kill(self.pid, 0)  # signal 0 only asks whether the process exists
        except ProcessLookupError:
            return True
        except OSError:  # it exists, under another user
            pass
        stat = _stat(self.pid)
        if stat is None:  # it exists, and /proc does not say more
            return False
        state, started = stat
        return state in ("Z", "X") or (self.started != "-" and started != self.started)


# plan -----------------------------------------------------------------------------------------

@dataclass
class Plan:
    plan_id: str
    template: str
    target: str
    drafts: list[tuple[str, str]] = field(default_factory=list)  # (to, subject)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (to, reason)
    sample: Draft | None = None

    def to_dict(self) -> dict[str, Any]:
        """CONTRACT §3's `drafts plan --json`."""
        return {
            "plan_id": self.plan_id,
            "template": self.template,
            "eligible": len(self.drafts),
            "drafts": [{"to": to, "subject": subject} for to, subject in self.drafts],
            "skipped": [{"to": to, "reason": reason} for to, reason in self.skipped],
        }


def address_key(email: str) -> str:
    """Two spellings of one mailbox are one address: case, spaces and Unicode forms folded."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


def _since(as_of: date, days: int) -> date:
    return as_of - timedelta(days=max(days, 0))


class Drafting:
    """Plan and apply bulk drafts over one book."""

    def __init__(self, service: Keepwell) -> None:
        self.service = service
        self.book = service.book
        self.config = service.config.drafts

    def _targets(self, account: str | None, segment: str | None, template: str, as_of: date) -> list[Any]:
        if bool(account) == bool(segment):
            raise BadInput("give either --account or --segment")
        if account:
            found = self.book.resolve(account)
            return [s for s in self.service.book_health(as_of) if s.account.pk == found.pk]
        try:
            parse_segment(segment)
        except SegmentError as exc:
            raise BadInput(str(exc)) from None
        everyone = template in CHURN_TEMPLATES
        return self.service.accounts(as_of, segment, everyone=everyone)

    def _recent_email(self, as_of: date) -> tuple[dict[str, date], dict[str, tuple[date, str]]]:
        """Per address: the last Keepwell draft within the cap, the last email by any team recently."""
        since = min(_since(as_of, self.config.cap_days), _since(as_of, self.config.quiet_days))
        drafts: dict[str, date] = {}
        emailed: dict[str, tuple[date, str]] = {}
        with self.book.engine.connect() as conn:
            rows = conn.execute(
                select(TO.c.contact_email, TO.c.source, TO.c.channel, TO.c.team, func.max(TO.c.day))
                .where(TO.c.day > since, TO.c.day <= as_of, TO.c.contact_email != "")
                .group_by(TO.c.contact_email, TO.c.source, TO.c.channel, TO.c.team)
            )
            for email, source, channel, team, day in rows:
                day = date.fromisoformat(day) if isinstance(day, str) else day
                key = address_key(email)
                if source == "draft" and day > drafts.get(key, date.min):
                    drafts[key] = day
                if channel == "email" and day > emailed.get(key, (date.min, ""))[0]:
                    emailed[key] = (day, "Keepwell draft" if source == "draft" else team)
        return drafts, emailed

    def _surveyed(self, template: str, as_of: date, days: int) -> dict[str, str]:
        """Who was asked (a plan with this template) or answered NPS in the last `days`: the reason."""
        since = _since(as_of, days)
        out: dict[str, str] = {}
        with self.book.engine.connect() as conn:
            asked = conn.execute(
                select(PI.c.contact_email, func.max(P.c.as_of)).join(P, P.c.id == PI.c.plan_id)
                .where(P.c.template == template, P.c.as_of > since, P.c.as_of <= as_of,
                       PI.c.state.in_(("pending", "creating", "created")))
                .group_by(PI.c.contact_email)
            )
            for email, day in asked:
                out[address_key(email)] = f"already asked on {day} (one survey every {days} days)"
            answered = conn.execute(select(N.c.email, func.max(N.c.day))
                                    .where(N.c.day > since, N.c.day <= as_of, N.c.email != "")
                                    .group_by(N.c.email))
            for email, day in answered:
                out[address_key(email)] = f"answered NPS on {day} (one survey every {days} days)"
        return out

    def load(self, plan_id: str) -> Plan | None:
        """A stored plan as `plan` returned it (the sample is its first draft)."""
        with self.book.engine.connect() as conn:
            head = conn.execute(select(P).where(P.c.id == plan_id)).first()
            if head is None:
                return None
            items = conn.execute(select(PI).where(PI.c.plan_id == plan_id).order_by(PI.c.id)).all()
        plan = Plan(plan_id, head.template, head.target)
        for i in items:
            if i.state == "skipped":
                plan.skipped.append((i.contact_email, i.reason or ""))
            else:
                plan.drafts.append((i.contact_email, i.subject or ""))
                plan.sample = plan.sample or Draft(**json.loads(i.draft))
        return plan

    def plan(
        self, template: str, *, as_of: date, account: str | None = None, segment: str | None = None,
        author: str | None = None, sender_email: str | None = None, plan_id: str | None = None,
        roles: Sequence[str] | None = None, cooldown_days: int | None = None,
    ) -> Plan:
        """Who gets a draft and who is skipped and why, rendered and stored under `plan_id`.

        With `cooldown_days`, a contact asked with this template, or who answered NPS, within that
        many days is skipped (surveys). A given `plan_id` that exists already is returned as stored.
        """
        env = environment(self.service.config.templates)
        if template not in self.service.teamwork.templates_available():
            raise BadInput(f"no template '{template}'; templates are: "
                           f"{', '.join(self.service.teamwork.templates_available())}")
        if plan_id is not None and (stored := self.load(plan_id)) is not None:
            return stored
        targets = self._targets(account, segment, template, as_of)
        plan = Plan(plan_id or f"p{secrets.token_hex(5)}", template, account or segment or "")
        roles = list(roles or self.config.roles)
        surveyed = self._surveyed(template, as_of, cooldown_days) if cooldown_days else {}
        pks = [s.account.pk for s in targets]
        inputs = {i.account.pk: i for i in self.book.health_inputs(as_of, self.service.config.health, pks)}
        touches = self.book.latest_touches(pks, as_of)
        contacts = self.book.contacts_of(pks)
        last_draft, emailed = self._recent_email(as_of)
        cap_from, quiet_from = _since(as_of, self.config.cap_days), _since(as_of, self.config.quiet_days)
        seen: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for scored in targets:
            a = scored.account
            for c in contacts.get(a.pk, []):
                if c["role"] not in roles:
                    continue
                to, key = c["email"], address_key(c["email"])
                reason = None
                if c["do_not_contact"]:
                    reason = "marked do-not-contact"
                elif key in seen:
                    reason = f"same address as {seen[key]} (one draft per person)"
                elif key in surveyed:
                    reason = surveyed[key]
                elif key in last_draft and last_draft[key] > cap_from:
                    reason = (f"a Keepwell draft went to them on {last_draft[key]} "
                              f"(at most one every {self.config.cap_days} days)")
                elif key in emailed and emailed[key][0] > quiet_from:
                    day, who = emailed[key]
                    reason = f"emailed on {day} by {who} (quiet for {self.config.quiet_days} days)"
                seen.setdefault(key, to)
                row = {"plan_id": plan.plan_id, "account_pk": a.pk, "contact_email": to, "updated_at": now,
                       "reason": None, "subject": None, "message_id": None, "draft": None}
                if reason is None:
                    result = draft_for(env, template, a, c, inputs[a.pk], touches.get(a.pk), as_of,
                                       health=scored.health, settings=self.config,
                                       sender_email=sender_email, id_parts=(plan.plan_id,))
                    if isinstance(result, Skip):
                        reason = result.reason
                    else:
                        plan.drafts.append((to, result.subject))
                        plan.sample = plan.sample or result
                        rows.append({**row, "state": "pending", "subject": result.subject,
                                     "message_id": result.message_id, "draft": json.dumps(asdict(result))})
                        continue
                plan.skipped.append((to, reason))
                rows.append({**row, "state": "skipped", "reason": reason})
        try:
            with self.book.engine.begin() as conn:
                conn.execute(insert(P).values(id=plan.plan_id, template=template, target=plan.target[:2000],
                                              as_of=as_of, created_by=author, created_at=now))
                for start in range(0, len(rows), 1000):
                    conn.execute(insert(PI), rows[start:start + 1000])
        except IntegrityError:
            if plan_id is None or (stored := self.load(plan_id)) is None:
                raise
            return stored  # another process stored this very plan first
        return plan

    # apply --------------------------------------------------------------------------------------

    lease: timedelta = LEASE  # tests shorten it

    def _open(self, plan_id: str) -> int:
        """How many of the plan's items are not finished (pending, or creating)."""
        with self.book.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(PI).where(
                PI.c.plan_id == plan_id, PI.c.state.in_(("pending", "creating")))).scalar() or 0)

    def _holding(self, owner: Owner) -> Any:
        """The condition "held by this worker" (its holder string is unique to one apply)."""
        return (PI.c.state == "creating") & (PI.c.reason == str(owner))

    def _mine(self, ids: Iterable[int], owner: Owner, **values: Any) -> set[int]:
        """Change items this worker holds; the ids it still held (and, with no `values`, renew their
        lease). An item another worker took over after the lease is left to that worker."""
        ids = list(ids)
        if not ids:
            return set()
        with self.book.engine.begin() as conn:
            mine = PI.c.id.in_(ids) & self._holding(owner)
            if values:  # one item: the count says whether it was still this worker's
                done = conn.execute(update(PI).where(mine).values(updated_at=datetime.now(UTC), **values))
                return set(ids) if done.rowcount == len(ids) else set()
            conn.execute(update(PI).where(mine).values(updated_at=datetime.now(UTC)))
            return set(conn.execute(select(PI.c.id).where(mine)).scalars())

    def _claim(self, plan_id: str, owner: Owner, size: int) -> list[Any]:
        """Take the plan's next `size` pending items: `creating` from now on, held by `owner`.

        No item is taken twice: on PostgreSQL the rows are locked as they are picked and other workers
        skip them (FOR UPDATE SKIP LOCKED); SQLite has one writer at a time, and there picking and
        marking are one statement. The `state = 'pending'` guard holds on both."""
        pick = (select(PI.c.id).where(PI.c.plan_id == plan_id, PI.c.state == "pending")
                .order_by(PI.c.id).limit(size))
        with self.book.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                ids = list(conn.execute(pick.with_for_update(skip_locked=True)).scalars())
                if not ids:
                    return []
                which = PI.c.id.in_(ids)
            else:
                which = PI.c.id.in_(pick)
            conn.execute(update(PI).where(which, PI.c.state == "pending")
                         .values(state="creating", reason=str(owner), updated_at=datetime.now(UTC),
                                 attempts=PI.c.attempts + 1))
            # what this worker holds now is exactly what it just took (between batches it holds nothing)
            return list(conn.execute(select(PI).where(PI.c.plan_id == plan_id, self._holding(owner))
                                     .order_by(PI.c.id)))

    def _abandoned(self, holder: str | None, known: dict[str | None, bool]) -> bool:
        """Whether an item's holder will never finish it: released (no holder) or a stopped worker."""
        if holder not in known:
            other = Owner.parse(holder)
            known[holder] = holder is None or (other is not None and other.gone())
        return known[holder]

    def _reclaim(self, plan_id: str, owner: Owner, size: int) -> tuple[list[Any], bool]:
        """Take over up to `size` items other workers left `creating` and will not finish: released on
        their way out, held by a process known to be gone, or silent for longer than the lease. Each
        may exist already, so the caller looks it up before creating anything. Also: whether live
        workers still hold items of the plan (to wait for)."""
        now = datetime.now(UTC)
        cutoff = now - self.lease
        with self.book.engine.connect() as conn:
            held = conn.execute(select(PI.c.id, PI.c.reason, PI.c.updated_at)
                                .where(PI.c.plan_id == plan_id, PI.c.state == "creating")
                                .order_by(PI.c.id)).all()
        known: dict[str | None, bool] = {}
        takes: dict[tuple[str | None, bool], list[int]] = {}
        live, wanted = False, 0
        for row in held:
            if self._abandoned(row.reason, known):
                key = (row.reason, False)
            elif row.updated_at < cutoff:
                key = (row.reason, True)
            else:
                live = True
                continue
            if wanted < size:
                takes.setdefault(key, []).append(row.id)
                wanted += 1
        rows: list[Any] = []
        if takes:
            with self.book.engine.begin() as conn:
                for (was, by_lease), ids in takes.items():
                    # one winner: the holder must still be the one seen (and, by lease, still silent)
                    guard = [PI.c.id.in_(ids), PI.c.state == "creating",
                             PI.c.reason.is_(None) if was is None else PI.c.reason == was]
                    if by_lease:
                        guard.append(PI.c.updated_at < cutoff)
                    conn.execute(update(PI).where(*guard).values(reason=str(owner), updated_at=now))
                rows = list(conn.execute(select(PI).where(PI.c.plan_id == plan_id, self._holding(owner))
                                         .order_by(PI.c.id)))
        # items another worker took over just before this one are live again: wait for them too
        return rows, live or len(rows) < wanted

    def _release(self, plan_id: str, owner: Owner) -> None:
        """On the way out (done, or an error): what this worker still holds stays `creating` with no
        holder, so the next apply looks each one up at once rather than after the lease."""
        with contextlib.suppress(SQLAlchemyError), self.book.engine.begin() as conn:
            conn.execute(update(PI).where(PI.c.plan_id == plan_id, PI.c.state == "creating",
                                          PI.c.reason == str(owner))
                         .values(reason=None, updated_at=datetime.now(UTC)))

    def status(self, plan_id: str) -> Literal["open", "running", "done"]:
        """`running`: a live worker holds some of the plan's items; `open`: something is left to create
        (never started, or its workers stopped); `done`: every item is created, skipped or failed."""
        cutoff = datetime.now(UTC) - self.lease
        with self.book.engine.connect() as conn:
            if conn.execute(select(P.c.id).where(P.c.id == plan_id)).first() is None:
                raise BadInput(f"no plan {plan_id!r} (keepwell drafts plan prints its id)")
            rows = conn.execute(select(PI.c.state, PI.c.reason, PI.c.updated_at).where(
                PI.c.plan_id == plan_id, PI.c.state.in_(("pending", "creating")))).all()
        known: dict[str | None, bool] = {}
        if any(r.state == "creating" and r.updated_at >= cutoff and not self._abandoned(r.reason, known)
               for r in rows):
            return "running"
        return "open" if rows else "done"

    def _recheck(self, as_of: date, items: list[Any], owner: Owner) -> list[Any]:
        """Do-not-contact and caps again, as they stand just before creating; skip who no longer qualifies."""
        if not items:
            return []
        emails = [i.contact_email for i in items]
        with self.book.engine.connect() as conn:
            dnc = {r[0] for r in conn.execute(select(C.c.email).where(C.c.do_not_contact.is_(True),
                                                                      C.c.email.in_(emails)))}
            others = dict(conn.execute(
                select(TO.c.contact_email, func.max(TO.c.day)).where(
                    TO.c.source == "draft", TO.c.contact_email.in_(emails),
                    TO.c.day > _since(as_of, self.config.cap_days),
                    TO.c.ref.not_in([i.message_id for i in items]),
                ).group_by(TO.c.contact_email)
            ).all())
        keep = []
        for item in items:
            if item.contact_email in dnc:
                self._mine([item.id], owner, state="skipped",
                           reason="marked do-not-contact since the plan was made")
            elif item.contact_email in others:
                self._mine([item.id], owner, state="skipped",
                           reason=f"another Keepwell draft went to them on {others[item.contact_email]}")
            else:
                keep.append(item)
        return keep

    def _done(self, item: Any, location: str, owner: Owner, author: str | None, as_of: date) -> None:
        if not self._mine([item.id], owner, state="created", location=location, reason=None):
            return  # taken over after the lease: its new holder finds this draft and records it
        draft = json.loads(item.draft)
        self.service.journal.add_touch(
            item.account_pk, day=as_of, ref=item.message_id, author=author, note=draft["subject"],
            channel="email", team="cs", kind="checkin", contact_email=item.contact_email, source="draft",
        )

    def _work(self, batch: list[Any], store: DraftStore, owner: Owner, *, author: str | None, as_of: date,
              attempts: dict[str, int], rng: random.Random, look_first: bool) -> float:
        """Create one batch this worker holds; the backoff to wait before the next (0: none)."""
        held = {i.id for i in batch}
        renewed = [time.monotonic()]

        def still_held(item: Any) -> bool:  # say "still on it" every RENEW seconds, well within the lease
            if time.monotonic() - renewed[0] >= RENEW:
                held.intersection_update(self._mine(held, owner))
                renewed[0] = time.monotonic()
            return item.id in held

        if look_first:  # a stopped worker's items: each may exist already, so look before creating
            rest = []
            for item in batch:
                if not still_held(item):
                    continue
                where = store.find(item.message_id)
                if where is not None:
                    self._done(item, where, owner, author, as_of)
                else:
                    rest.append(item)
            batch = rest
        batch = self._recheck(as_of, [i for i in batch if still_held(i)], owner)
        if not batch:
            return 0.0
        outcomes = store.create_many([Draft(**json.loads(i.draft)) for i in batch])
        wait = 0.0
        for item in batch:
            if not still_held(item):
                continue  # taken over after the lease: its new holder looks it up
            outcome = outcomes.get(item.message_id, Retry(maybe_created=True, reason="no answer"))
            if isinstance(outcome, Retry) and outcome.maybe_created:
                where = store.find(item.message_id)
                if where is not None:
                    outcome = Created(where)
            if isinstance(outcome, Created):
                self._done(item, outcome.location, owner, author, as_of)
            elif isinstance(outcome, Failed):
                self._mine([item.id], owner, state="failed", reason=outcome.reason)
            else:
                tries = attempts[item.message_id] = attempts.get(item.message_id, 0) + 1
                if tries >= MAX_ATTEMPTS:
                    self._mine([item.id], owner, state="failed",
                               reason=f"gave up after {tries} attempts ({outcome.reason})")
                    continue
                self._mine([item.id], owner, state="pending", reason=None)  # not created: back in line
                backoff = min(60.0, 0.5 * 2 ** (tries - 1)) * (0.5 + rng.random())
                wait = max(wait, outcome.after if outcome.after is not None else backoff)
        return wait

    def mailbox(self, plan_id: str, wanted: str | None) -> str | None:
        """The mailbox the plan's drafts go to: the first one an apply named (`wanted`, if none was).

        A plan's drafts all land in one mailbox, whoever presses *Create drafts* and whenever: resumed by
        someone else, or pressed by two people at once, it is not split, and a draft left in flight is
        looked up by its Message-ID in the mailbox it was created in. None: no apply named one."""
        with self.book.engine.begin() as conn:
            if wanted:
                conn.execute(update(P).where(P.c.id == plan_id, P.c.mailbox.is_(None))
                             .values(mailbox=wanted.strip().lower()))
            return conn.execute(select(P.c.mailbox).where(P.c.id == plan_id)).scalar()

    def apply(
        self,
        plan_id: str,
        store: DraftStore,
        *,
        author: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> ApplySummary:
        """Create the plan's drafts; safe to run again (after a crash, a failure, or when done), and on
        several workers at once: each claims its own batches, and waits for the others' last ones, so
        every worker returns the finished plan's summary. `progress(done, total)` counts the plan's
        items finished since this apply began, by any worker."""
        rng = rng or random.Random()
        with self.book.engine.connect() as conn:
            plan = conn.execute(select(P).where(P.c.id == plan_id)).first()
        if plan is None:
            raise BadInput(f"no plan {plan_id!r} (keepwell drafts plan prints its id)")
        as_of, size = plan.as_of, self.config.batch_size
        total = left = self._open(plan_id)
        if progress:
            progress(0, total)
        attempts: dict[str, int] = {}
        owner = Owner.here()
        try:
            while True:
                batch, look_first, busy = self._claim(plan_id, owner, size), False, False
                if not batch:
                    batch, busy = self._reclaim(plan_id, owner, size)
                    look_first = True
                wait = 0.0
                if batch:
                    wait = self._work(batch, store, owner, author=author, as_of=as_of, attempts=attempts,
                                      rng=rng, look_first=look_first)
                before, left = left, self._open(plan_id)
                if progress and (batch or left != before):
                    progress(max(0, total - left), total)
                if not batch:
                    if not (busy or left):
                        break
                    # live workers hold the rest (or are taking it this instant): wait for their last batches
                    time.sleep(POLL)
                if wait:
                    sleep(wait)
        finally:
            self._release(plan_id, owner)
            owner.stop()
        return self.summary(plan_id, store)

    def summary(self, plan_id: str, store: DraftStore | None = None) -> ApplySummary:
        with self.book.engine.connect() as conn:
            rows = conn.execute(select(PI).where(PI.c.plan_id == plan_id).order_by(PI.c.id)).all()
        created = [r for r in rows if r.state == "created"]
        return ApplySummary(
            plan_id=plan_id,
            created=len(created),
            skipped=[(r.contact_email, r.reason or "") for r in rows if r.state == "skipped"],
            failed=[(r.contact_email, r.reason or "") for r in rows if r.state == "failed"],
            links=[(r.contact_email, (store.link(r.location) if store else None) or r.location or "")
                   for r in created],
        )


@dataclass
class ApplySummary:
    plan_id: str
    created: int
    skipped: list[tuple[str, str]]
    failed: list[tuple[str, str]]
    links: list[tuple[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id, "created": self.created,
            "skipped": [{"to": t, "reason": r} for t, r in self.skipped],
            "failed": [{"to": t, "reason": r} for t, r in self.failed],
            "drafts": [{"to": t, "link": link} for t, link in self.links],
        }


__all__ = ["LEASE", "ApplySummary", "AuthFailed", "Created", "DraftStore", "Drafting", "Failed", "Owner",
           "Plan", "Retry", "address_key"]
