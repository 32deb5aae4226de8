"""Block Kit views of reminders, alerts and survey notices: pure functions from values to blocks.

Each message names the account, says why it came, mentions the account team by function and carries
the buttons that end the episode. Everything from the book goes through `esc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block

from bot.core.digest import reasons
from bot.core.model import HealthScore
from bot.nudges import Acted, Outgoing
from bot.slack.blocks import BAND, Reply, button, context, money, plan_view, section
from bot.slack.mrkdwn import esc, mention

FUNCTION_LABELS = {"sales": "Sales", "cs": "CS", "support": "Support", "marketing": "Marketing",
                   "product": "Product", "exec": "Exec"}
ALERT_TITLES = {
    "danger_zone": "entered the danger zone",
    "forgotten_zone": "entered the forgotten zone",
    "health_drop": "health dropped",
    "invoice_overdue": "has an invoice overdue",
    "nps_detractor": "has a new NPS detractor",
}
NUDGE_ACTIONS = ("nudge_done", "nudge_snooze", "nudge_agenda", "nudge_ack")


def team_line(team: Sequence[tuple[str, str]], owner: str | None, users: Mapping[str, str]) -> str:
    """`Sales: @ana · CS: @bo …`: every member by function; emails shown as Slack users when known."""
    def who(member: str) -> str:
        return mention(users.get(member.lower(), member))

    by_function: dict[str, list[str]] = {}
    for member, function in team:
        by_function.setdefault(function, []).append(who(member))
    parts = [f"*{FUNCTION_LABELS.get(fn, esc(fn))}*: {', '.join(people)}"
             for fn, people in by_function.items()]
    if owner and owner.lower() not in {m.lower() for m, _ in team}:
        parts.insert(0, f"*Owner*: {who(owner)}")
    missing = [FUNCTION_LABELS[f] for f in ("sales", "cs", "support", "marketing") if f not in by_function]
    line = " · ".join(parts) if parts else "_no account team yet_"
    if missing:
        line += f"\n_no {', '.join(missing)} on the team — `/keepwell team ACCOUNT add @user FUNCTION`_"
    return line


def _health(h: HealthScore | None) -> str:
    return f"health *{h.score}* ({BAND[h.band]})" if h is not None else "health not scored yet"


def reminder(item: Outgoing, team_text: str, health: HealthScore | None, as_of: date) -> Reply:
    a = item.account
    days = (item.due - as_of).days if item.due else 0
    when = f"in {days} days" if days > 0 else "today"
    if item.kind == "review" and days < 0:
        when = f"overdue by {-days} days"
        head = f":calendar: *Account review overdue* — *{esc(a.name)}* (due {item.due}, {-days} days ago)"
    elif item.kind == "review":
        head = f":calendar: *Account review due {when}* — *{esc(a.name)}* (due {item.due})"
    else:
        head = f":moneybag: *Renewal {when}* — *{esc(a.name)}* renews on {item.due}"
    buttons = [button("Mark done", "nudge_done", item.key, "primary"),
               button("Snooze a week", "nudge_snooze", item.key),
               button("Draft agenda email", "nudge_agenda", item.key)]
    facts = f"MRR {money(a.mrr)} · tier {esc(a.tier or '—')} · {_health(health)}"
    if health is not None and reasons(health):
        facts += f"\nWatch: {esc(reasons(health))}"
    again = " (again, after a snooze)" if item.round else ""
    blocks: list[Block] = [section(f"{head}{again}\n{facts}"), section(team_text),
                           ActionsBlock(block_id=f"nudge:{item.key}"[:255], elements=buttons),
                           context(f"`/keepwell health {esc(a.account_id)}` for the card")]
    what = "account review" if item.kind == "review" else "renewal"
    return Reply(f"{a.name}: {what} {when}", blocks, in_channel=True)


def alert(item: Outgoing, team_text: str, health: HealthScore | None) -> Reply:
    a = item.account
    title = ALERT_TITLES.get(item.rule, esc(item.rule))
    again = " (still, after a snooze)" if item.round else ""
    blocks: list[Block] = [
        section(f":rotating_light: *{esc(a.name)} {title}*{again}\n{esc(item.detail or '')}\n"
                f"MRR {money(a.mrr)} · renewal {a.renewal_date or '—'} · {_health(health)}"),
        section(team_text),
        ActionsBlock(block_id=f"nudge:{item.key}"[:255], elements=[
            button("Acknowledge", "nudge_ack", item.key, "primary"),
            button("Snooze a week", "nudge_snooze", item.key),
            button("Open card", "open_card", a.account_id)]),
    ]
    return Reply(f"{a.name} {title}", blocks, in_channel=True)


def survey_notice(account_name: str, why: str, plan: Any) -> Reply:
    """A survey plan is waiting for its owner: why now, and the plan with its Create button."""
    view = plan_view(plan)
    head = section(f":speech_balloon: *Time to ask {esc(account_name)} how it went* — {esc(why)}. "
                   "An NPS survey plan is ready for you to review; nothing is created until you press "
                   "the button, and nothing is ever sent for you.")
    return Reply(f"NPS survey plan for {account_name}", [head, *view.blocks], in_channel=True)


def acted(original: Sequence[Mapping[str, Any]], result: Acted, user: str, as_of: date) -> dict[str, Any]:
    """The posted message after a button: its buttons replaced by who did what."""
    said = {"done": "Marked done", "acknowledged": "Acknowledged", "open": "Snoozed",
            "closed": "Closed"}.get(result.state, result.state)
    if result.state == "open" and result.until:
        said += f" until {result.until}"
    line = f"{said} by {mention(user)} on {as_of}"
    if not result.changed:
        line = f"Already {said[0].lower()}{said[1:]} — nothing changed"
    blocks = [b for b in original if b.get("type") != "actions"]
    blocks.append(context(f":white_check_mark: {line}").to_dict())
    return {"blocks": blocks, "text": f"{result.account.name}: {said.lower()}", "replace_original": True}
