"""`/keepwell …`: parsing (pure and instant, done before the acknowledgement) and execution (over the
services, done after it). The console uses the same two steps, so what it shows is what Slack shows.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import date, timedelta

from slack_sdk.models.views import View

from bot.core.retention import add_months
from bot.errors import BadInput
from bot.services import Keepwell
from bot.slack import blocks as B

MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
NAMES = ("health", "risk", "retention", "reviews", "draft", "note", "team", "review", "help")


class Usage(BadInput):
    """The command's words are off: answered at once, with what would work."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Command:
    name: str
    words: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def rest(self) -> str:
        return " ".join(self.words)


@dataclass(frozen=True)
class Modal:
    """Open this view (needs the request's trigger_id); `fallback` is what a console shows instead."""

    view: View
    fallback: B.Reply


@dataclass(frozen=True)
class Actor:
    """Who asked, and a reference unique to the request (makes retried writes no-ops)."""

    user_id: str
    ref: str
    email: str | None = None


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote: take the words as they are
        return text.split()


def parse(text: str, max_chars: int = 2000) -> Command:
    """Words → a command; Usage for anything that cannot work (no database needed)."""
    if len(text) > max_chars:
        raise Usage(f"that is {len(text):,} characters; a command takes at most {max_chars:,}",
                    "`/keepwell help` lists the commands")
    words = _split(text.strip())
    if not words:
        return Command("help")
    name, args = words[0].lower(), tuple(words[1:])
    usage = next((f"`/keepwell {u}`" for u, _ in B.HELP if u.split()[0] == name), "`/keepwell help`")
    if name not in NAMES:
        raise Usage(f"unknown command '{words[0]}'", "`/keepwell help` lists the commands")
    if name in ("health", "draft", "note", "team") and not args:
        raise Usage(f"{name} needs an account", usage)
    if name == "draft" and len(args) < 2:
        raise Usage("draft needs a template and an account, e.g. `draft checkin ACME`", usage)
    if name == "note" and len(args) < 2:
        raise Usage("note needs an account and some text", usage)
    if name == "review":
        if not args or args[0].lower() != "done" or len(args) < 2:
            raise Usage("say `review done ACCOUNT`", "`/keepwell review done ACCOUNT`")
        return Command("review_done", args[1:])
    if name == "team" and len(args) >= 4 and args[-3].lower() == "add":
        member = MENTION.sub(r"\1", args[-2])
        return Command("team_add", args[:-3], {"member": member, "function": args[-1].lower()})
    if name == "retention":
        return Command("retention", args)
    return Command(name, args)


def is_segment(target: str) -> bool:
    """`tier:enterprise health<60` is a segment; `ACME Corp` is an account."""
    return any(ch in target for ch in ":<>=")


def window(args: tuple[str, ...], as_of: date) -> tuple[date, date]:
    """FROM TO, last-month or last-quarter; by default the 12 months up to today."""
    if not args:
        return as_of - timedelta(days=364), as_of
    if len(args) == 1 and args[0].lower() == "last-month":
        first = add_months(as_of.replace(day=1), -1)
        return first, as_of.replace(day=1) - timedelta(days=1)
    if len(args) == 1 and args[0].lower() == "last-quarter":
        this_quarter = date(as_of.year, 3 * ((as_of.month - 1) // 3) + 1, 1)
        return add_months(this_quarter, -3), this_quarter - timedelta(days=1)
    if len(args) == 2:
        try:
            return date.fromisoformat(args[0]), date.fromisoformat(args[1])
        except ValueError:
            pass
    raise Usage("retention takes FROM TO (YYYY-MM-DD), last-month or last-quarter",
                "`/keepwell retention last-quarter`")


def note_target(service: Keepwell, words: tuple[str, ...]) -> tuple[str, str]:
    """Split 'ACME Corp had a call' into account and text: the longest leading words naming one."""
    for cut in range(len(words) - 1, 0, -1):
        if service.book.find_exact(" ".join(words[:cut])) is not None:
            return " ".join(words[:cut]), " ".join(words[cut:])
    return words[0], " ".join(words[1:])


def execute(service: Keepwell, cmd: Command, actor: Actor, as_of: date) -> B.Reply | Modal:
    """Run a parsed command; BadInput (unknown account…) propagates for the caller to show."""
    tw = service.teamwork
    if cmd.name == "help":
        return B.help_reply()
    if cmd.name == "health":
        return B.health_card(service.health(cmd.rest, as_of))
    if cmd.name == "risk":
        page = int(cmd.extra.get("page", "1"))
        return B.risk_list(service.risk(as_of, cmd.rest or None), cmd.rest, page, as_of)
    if cmd.name == "retention":
        start, end = window(cmd.words, as_of)
        return B.retention_view(service.retention(start, end))
    if cmd.name == "reviews":
        within = service.config.reviews.renewal_within_days
        return B.reviews_view(service.reviews(as_of, within), within)
    if cmd.name == "team":
        account, members = tw.team(cmd.rest)
        return B.team_view(account.name, members)
    if cmd.name == "team_add":
        admins = service.config.slack.admins
        account, members = tw.team(cmd.rest)
        if admins and actor.user_id not in admins and actor.user_id not in {m for m, _ in members}:
            raise BadInput(
                f"only the account's team or a Keepwell admin can change the team of {account.name}"
            )
        tw.team_add(account.account_id, cmd.extra["member"], cmd.extra["function"], author=actor.user_id)
        return B.team_view(account.name, tw.team(account.account_id)[1])
    if cmd.name == "review_done":
        account, new = tw.review_done(cmd.rest, author=actor.user_id, as_of=as_of, ref=actor.ref)
        said = "Review recorded as done" if new else "That review was already recorded"
        return B.message(f"{said} for {account.name} on {as_of}.")
    if cmd.name == "note":
        query, text = note_target(service, cmd.words)
        account = service.book.resolve(query)
        return Modal(B.note_modal(account.account_id, account.name, text),
                     B.message(f"Note for {account.name}: {text}"))
    if cmd.name == "draft":
        template, target = cmd.words[0].lower(), " ".join(cmd.words[1:])
        if is_segment(target):
            from bot.drafts import Drafting

            plan = Drafting(service).plan(template, as_of=as_of, segment=target, author=actor.user_id,
                                          sender_email=actor.email)
            return B.plan_view(plan)
        return draft_modal(service, target, as_of, template=template)
    raise Usage(f"unknown command '{cmd.name}'", "`/keepwell help`")


def draft_modal(
    service: Keepwell, query: str, as_of: date, *, template: str = "checkin", email: str | None = None
) -> Modal:
    """The draft modal for an account, with the preview of the chosen template and recipient."""
    tw = service.teamwork
    account = service.book.resolve(query)
    people = tw.recipients(account)
    options = [(c["email"], f"{c.get('first_name') or ''} {c.get('last_name') or ''} ({c['role']})".strip())
               for c in people]
    templates = tw.templates_available()
    if template not in templates:
        raise BadInput(f"no template '{template}'; templates are: {', '.join(templates)}")
    email = email or (people[0]["email"] if people else None)
    preview, problem = None, None
    if email:
        try:
            preview = tw.preview(account, email, template, as_of)
        except BadInput as exc:
            problem = exc.message
    view = B.draft_modal(account.account_id, account.name, templates, options, preview,
                         (template, email or ""), problem)
    text = (f"Draft for {account.name} to {email}: {preview.subject}" if preview
            else f"No draft possible for {account.name}: {problem or 'no reachable contact'}")
    return Modal(view, B.message(text))
