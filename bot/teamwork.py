"""What people do to the book (from Slack, the console or the CLI): notes, reviews, the account team,
check-in drafts. Every write records who made it and a reference unique to the request, so a retried
request changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.config import KeepwellConfig
from bot.core.model import Account
from bot.drafting import Skip, draft_for
from bot.draftstore import Created, DraftStore, Failed, Retry
from bot.emails import Draft, builtin_templates, environment
from bot.errors import BadInput, OperationFailed
from bot.importer.cells import enum_parser, parse_member
from bot.store import Book, Journal

MAX_NOTE = 3000
FUNCTIONS = ("sales", "cs", "support", "marketing", "product", "exec")
SENTIMENTS = ("positive", "neutral", "negative")
NOTE_KINDS = ("checkin", "qbr", "renewal", "onboarding", "other")
_function = enum_parser(*FUNCTIONS)


@dataclass(frozen=True)
class DraftOutcome:
    account: Account
    draft: Draft
    location: str
    created: bool


class Teamwork:
    def __init__(self, book: Book, journal: Journal, drafts: DraftStore, config: KeepwellConfig) -> None:
        self.book = book
        self.journal = journal
        self.drafts = drafts
        self.config = config
        self.health = config.health
        self.templates = config.templates

    def log_note(
        self, query: str, text: str, *, author: str, as_of: date, ref: str,
        sentiment: str | None = None, kind: str = "other",
    ) -> Account:
        note = " ".join(text.split())
        if not note:
            raise BadInput("the note is empty")
        if len(note) > MAX_NOTE:
            raise BadInput(f"the note is {len(note)} characters; {MAX_NOTE} at most")
        if sentiment is not None and sentiment not in SENTIMENTS:
            raise BadInput(f"sentiment must be one of {', '.join(SENTIMENTS)}")
        if kind not in NOTE_KINDS:
            raise BadInput(f"kind must be one of {', '.join(NOTE_KINDS)}")
        account = self.book.resolve(query)
        team = next((fn for member, fn in self.book.team(account.pk) if member == author), "other")
        team = team if team in ("sales", "cs", "support", "marketing", "product") else "other"
        self.journal.add_touch(account.pk, day=as_of, ref=ref, author=author, note=note, team=team,
                               kind=kind, sentiment=sentiment, channel="other", source="slack")
        return account

    def review_done(self, query: str, *, author: str, as_of: date, ref: str) -> tuple[Account, bool]:
        account = self.book.resolve(query)
        new = self.journal.review_done(account.pk, day=as_of, author=author, ref=ref)
        if new:
            self.journal.add_touch(account.pk, day=as_of, ref=ref, author=author, note="review done",
                                   kind="qbr", channel="meeting", team="cs", source="slack")
        return account, new

    def team(self, query: str) -> tuple[Account, list[tuple[str, str]]]:
        account = self.book.resolve(query)
        return account, self.book.team(account.pk)

    def team_add(self, query: str, member: str, function: str, *, author: str) -> Account:
        try:
            who = parse_member(member.strip())
            fn = _function(function.strip())
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        account = self.book.resolve(query)
        self.journal.set_team_member(account.pk, who, fn, author=author)
        return account

    def templates_available(self) -> list[str]:
        """Template names, from the configured folder and the built-in ones (check-in first)."""
        folders = [p for p in (self.templates, builtin_templates() / "email") if p is not None and p.is_dir()]
        names = {f.name.removesuffix(".subject.j2") for d in folders for f in d.glob("*.subject.j2")}
        return sorted(names, key=lambda n: (n != "checkin", n))

    def recipients(self, account: Account) -> list[dict[str, Any]]:
        """Contacts a check-in may go to: everyone reachable, champions and decision makers first."""
        order = {"champion": 0, "decision_maker": 1}
        people = [c for c in self.book.contacts(account.pk) if not c["do_not_contact"]]
        return sorted(people, key=lambda c: (order.get(c["role"], 2), c["email"]))

    def preview(self, account: Account, email: str, template: str, as_of: date) -> Draft:
        """Render the draft a person is about to create, or say exactly why it cannot be made."""
        contact = next((c for c in self.recipients(account) if c["email"] == email), None)
        if contact is None:
            raise BadInput(f"{email} is not a reachable contact of {account.name}")
        inputs = self.book.health_inputs(as_of, self.health, [account.pk])[0]
        touch = self.book.latest_touch(account.pk, as_of)
        result = draft_for(environment(self.templates), template, account, contact, inputs, touch, as_of,
                           settings=self.config.drafts)
        if isinstance(result, Skip):
            raise BadInput(f"cannot draft for {result.to}: {result.reason}")
        return result

    def create_draft(
        self, query: str, email: str, template: str, *, author: str, as_of: date,
        store: DraftStore | None = None,
    ) -> DraftOutcome:
        """Create (once) a check-in draft for a person to review and send, and record it as a touch."""
        account = self.book.resolve(query)
        draft = self.preview(account, email, template, as_of)
        store = store or self.drafts
        location = store.find(draft.message_id)
        created = location is None
        if location is None:
            outcome = store.create_many([draft]).get(draft.message_id)
            if not isinstance(outcome, Created):
                why = outcome.reason if isinstance(outcome, Failed | Retry) else "no answer"
                raise OperationFailed(f"the draft could not be created now ({why}); try again in a minute")
            location = outcome.location
        self.journal.add_touch(account.pk, day=as_of, ref=draft.message_id, author=author,
                               note=draft.subject, channel="email", team="cs", kind="checkin",
                               contact_email=draft.to_email, source="draft")
        return DraftOutcome(account, draft, store.link(location) or location, created)

