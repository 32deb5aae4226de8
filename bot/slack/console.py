"""`keepwell console`: type `/keepwell health acme` and read the reply as Slack would show it,
with no Slack workspace at all. It runs the same parse and execute steps as the Slack app.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any, TextIO

from bot.errors import BadInput
from bot.services import Keepwell
from bot.slack import blocks as B
from bot.slack.commands import Actor, Modal, Usage, execute, is_segment, note_target, parse

MENTION = re.compile(r"<@([A-Z0-9]+)>")


def _plain(mrkdwn: str) -> str:
    text = MENTION.sub(r"@\1", mrkdwn)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*", r"\1", text)
    text = re.sub(r"(?<![\w_])_([^_\n]+)_", r"\1", text)
    return html.unescape(text.replace("`", ""))


def render_blocks(blocks: Iterable[dict[str, Any]]) -> str:
    """Block Kit as terminal text: headers, sections, context lines and [buttons]."""
    out: list[str] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "header":
            title = b["text"]["text"]
            out += [title, "═" * min(len(title), 60)]
        elif kind == "section":
            out.append(_plain(b.get("text", {}).get("text", "")))
            if b.get("accessory", {}).get("type") == "button":
                out[-1] += f"   [{b['accessory']['text']['text']}]"
        elif kind == "context":
            out.append("  " + " ".join(_plain(e.get("text", "")) for e in b.get("elements", [])))
        elif kind == "actions":
            out.append("  " + "  ".join(f"[{e['text']['text']}]" for e in b.get("elements", [])))
        elif kind == "divider":
            out.append("─" * 40)
    return "\n".join(out)


def answer(service: Keepwell, line: str, user: str, as_of: date) -> str:
    """One command line in, the reply's text out (errors included, as Slack would show them)."""
    text = line.strip()
    if text.startswith("/keepwell"):
        text = text[len("/keepwell"):]
    actor = Actor(user, f"console:{uuid.uuid4().hex}")
    try:
        cmd = parse(text, service.config.slack.max_command_chars)
        if cmd.name == "note":  # no form to fill in here: log it as written
            query, note = note_target(service, cmd.words)
            account = service.teamwork.log_note(query, note, author=user, as_of=as_of, ref=actor.ref)
            return f"Note logged on {account.name}."
        if cmd.name == "draft" and not is_segment(" ".join(cmd.words[1:])):  # a segment: the plan, below
            account = service.book.resolve(" ".join(cmd.words[1:]))
            people = service.teamwork.recipients(account)
            if not people:
                return f"No reachable contact on {account.name}."
            outcome = service.teamwork.create_draft(account.account_id, people[0]["email"],
                                                    cmd.words[0].lower(), author=user, as_of=as_of)
            reply = B.draft_created(account.name, outcome.draft, outcome.location, outcome.created)
            return render_blocks(reply.to_dict()["blocks"]) + "\n\n" + outcome.draft.text
        result = execute(service, cmd, actor, as_of)
        reply = result.fallback if isinstance(result, Modal) else result
        return render_blocks(reply.to_dict()["blocks"])
    except Usage as exc:
        unknown = exc.message.startswith("unknown command")
        reply = B.help_reply(exc.message) if unknown else B.error(exc.message, exc.usage)
        return render_blocks(reply.to_dict()["blocks"])
    except BadInput as exc:
        return render_blocks(B.error(exc.message).to_dict()["blocks"])


def repl(service: Keepwell, user: str, as_of: date, stdin: TextIO, stdout: TextIO, prompt: bool) -> None:
    if prompt:
        stdout.write("Keepwell console — type /keepwell help (Ctrl-D to leave)\n")
    while True:
        if prompt:
            stdout.write("> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        stdout.write(answer(service, line, user, as_of) + "\n\n")
        stdout.flush()
