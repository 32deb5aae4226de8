"""Bulk check-in drafts: plan (who gets one, who is skipped and why, rendered and stored), then apply
(create each draft exactly once in Gmail or the outbox, however often apply is interrupted).

Plan: accounts → contacts (by role) → do-not-contact → addresses deduplicated → the contact caps
(one Keepwell draft per contact per `cap_days`; none when any team emailed them in `quiet_days`) →
rendered → stored. Apply: do-not-contact and caps are checked again; each item is marked `creating`
before the store is called and `created` after; an item left `creating` (a crash, a lost reply) is
looked up by its Message-ID before anything is created again.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.core.segments import SegmentError, parse_segment
from bot.db import models as m
from bot.drafting import Skip, draft_for
from bot.draftstore import AuthFailed, Created, DraftStore, Failed, Retry
from bot.emails import Draft, environment
from bot.errors import BadInput
from bot.services import Keepwell

P = m.table_of(m.DraftPlan)
PI = m.table_of(m.PlanItem)
C = m.table_of(m.Contact)
TO = m.table_of(m.Touch)
N = m.table_of(m.NpsResponse)
CHURN_TEMPLATES = ("churn_interview", "winback")
MAX_ATTEMPTS = 8


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

    def _set(self, ids: Sequence[int], **values: Any) -> None:
        if ids:
            with self.book.engine.begin() as conn:
                conn.execute(update(PI).where(PI.c.id.in_(list(ids)))
                             .values(updated_at=datetime.now(UTC), **values))

    def _recheck(self, plan_id: str, as_of: date, items: list[Any]) -> list[Any]:
        """Do-not-contact and caps again, as they stand now; skip who no longer qualifies."""
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
                self._set([item.id], state="skipped", reason="marked do-not-contact since the plan was made")
            elif item.contact_email in others and item.state == "pending":
                self._set([item.id], state="skipped",
                          reason=f"another Keepwell draft went to them on {others[item.contact_email]}")
            else:
                keep.append(item)
        return keep

    def _done(self, item: Any, location: str, author: str | None, as_of: date) -> None:
        self._set([item.id], state="created", location=location, reason=None)
        draft = json.loads(item.draft)
        self.service.journal.add_touch(
            item.account_pk, day=as_of, ref=item.message_id, author=author, note=draft["subject"],
            channel="email", team="cs", kind="checkin", contact_email=item.contact_email, source="draft",
        )

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
        """Create the plan's drafts; safe to run again (after a crash, a failure, or when done)."""
        rng = rng or random.Random()
        with self.book.engine.connect() as conn:
            plan = conn.execute(select(P).where(P.c.id == plan_id)).first()
            if plan is None:
                raise BadInput(f"no plan {plan_id!r} (keepwell drafts plan prints its id)")
            items = conn.execute(select(PI).where(PI.c.plan_id == plan_id).order_by(PI.c.id)).all()
        as_of = plan.as_of
        todo = self._recheck(plan_id, as_of, [i for i in items if i.state in ("pending", "creating")])
        total, done = len(todo), 0
        if progress:
            progress(0, total)
        # items a crash or a lost reply left in flight: found where they are, or created below
        found: set[int] = set()
        for item in [i for i in todo if i.state == "creating"]:
            location = store.find(item.message_id)
            if location is not None:
                self._done(item, location, author, as_of)
                found.add(item.id)
                done += 1
        by_mid = {i.message_id: i for i in todo}
        pending = [i for i in todo if i.id not in found]
        attempts: dict[str, int] = {}
        while pending:
            batch, pending = pending[: self.config.batch_size], pending[self.config.batch_size:]
            self._set([i.id for i in batch], state="creating", attempts=PI.c.attempts + 1)
            outcomes = store.create_many([Draft(**json.loads(i.draft)) for i in batch])
            wait = 0.0
            for item in batch:
                outcome = outcomes.get(item.message_id, Retry(maybe_created=True, reason="no answer"))
                if isinstance(outcome, Retry) and outcome.maybe_created:
                    where = store.find(item.message_id)
                    if where is not None:
                        outcome = Created(where)
                if isinstance(outcome, Created):
                    self._done(item, outcome.location, author, as_of)
                    done += 1
                elif isinstance(outcome, Failed):
                    self._set([item.id], state="failed", reason=outcome.reason)
                    done += 1
                else:
                    tries = attempts[item.message_id] = attempts.get(item.message_id, 0) + 1
                    if tries >= MAX_ATTEMPTS:
                        self._set([item.id], state="failed",
                                  reason=f"gave up after {tries} attempts ({outcome.reason})")
                        done += 1
                        continue
                    self._set([item.id], state="pending")
                    pending.append(by_mid[item.message_id])
                    backoff = min(60.0, 0.5 * 2 ** (tries - 1)) * (0.5 + rng.random())
                    wait = max(wait, outcome.after if outcome.after is not None else backoff)
            if progress:
                progress(done, total)
            if wait:
                sleep(wait)
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


__all__ = ["ApplySummary", "AuthFailed", "Created", "DraftStore", "Drafting", "Failed", "Plan", "Retry",
           "address_key"]
