"""Block Kit views of Keepwell's reports: pure functions from values to slack_sdk blocks.

Every piece of customer or user data goes through `esc` (mrkdwn) or into plain_text objects, and
through `clip` (Slack's 3,000-character limit), so no account name can ping a channel or break a card.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.core.digest import is_at_risk, reasons
from bot.core.retention import Retention
from bot.emails import Draft
from bot.services import DueItem, HealthCard
from bot.slack.mrkdwn import MAX_BLOCKS, MAX_HOME_BLOCKS, MAX_PLAIN, clip, esc, mention
from bot.store import Scored

PAGE = 10
BAND = {"healthy": "🟢 healthy", "watch": "🟡 watch", "at_risk": "🔴 at risk"}
HELP = [
    ("health ACCOUNT", "an account's health card (an id or part of its name)"),
    ("risk [SEGMENT]", "accounts at risk, most revenue first — e.g. `risk tier:enterprise`"),
    ("retention [FROM TO | last-month | last-quarter]", "customers kept, new and lost, GRR and NRR"),
    ("reviews", "account reviews and renewals coming due in the next 90 days"),
    ("draft TEMPLATE ACCOUNT", "a check-in draft to review before anyone sends it"),
    ("note ACCOUNT TEXT", "log a note on the account"),
    ("team ACCOUNT [add @user FUNCTION]", "who works on the account (sales, cs, support, marketing…)"),
    ("review done ACCOUNT", "record the account review as done"),
    ("help", "this list"),
]


@dataclass(frozen=True)
class Reply:
    """What a command answers: blocks plus the plain-text fallback Slack shows in notifications."""

    text: str
    blocks: list[Block]
    in_channel: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": clip(esc(self.text)),  # notifications show it, and parse it as mrkdwn
            "blocks": [b.to_dict() for b in self.blocks[:MAX_BLOCKS]],
            "response_type": "in_channel" if self.in_channel else "ephemeral",
        }


def plain(text: str, limit: int = MAX_PLAIN) -> PlainTextObject:
    return PlainTextObject(text=clip(text, limit) or " ", emoji=True)


def md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(text) or " ")


def section(text: str, accessory: Any = None) -> SectionBlock:
    return SectionBlock(text=md(text), accessory=accessory)


def context(text: str) -> ContextBlock:
    return ContextBlock(elements=[md(text)])


def button(label: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(text=plain(label, 75), action_id=action_id, value=value[:2000], style=style)


def money(value: Decimal | float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def message(text: str) -> Reply:
    """A one-paragraph answer (confirmations and errors)."""
    return Reply(text, [section(esc(text))])


def error(text: str, hint: str | None = None) -> Reply:
    """Bad input: what was wrong, and what would work."""
    blocks: list[Block] = [section(f":warning: {esc(text)}")]
    if hint:
        blocks.append(context(hint))
    return Reply(text, blocks)


def help_reply(intro: str | None = None) -> Reply:
    lines = "\n".join(f"`/keepwell {usage}` — {what}" for usage, what in HELP)
    blocks: list[Block] = []
    if intro:
        blocks.append(section(f":warning: {esc(intro)}"))
    blocks.append(section(f"*Keepwell* — account health, retention and check-ins\n{lines}"))
    return Reply(intro or "Keepwell commands", blocks)


def trend(score: int, previous: int | None) -> str:
    if previous is None:
        return "first score"
    delta = score - previous
    return "no change" if delta == 0 else f"{'▲' if delta > 0 else '▼'} {abs(delta)} since last score"


def zones(danger: bool, forgotten: bool) -> str:
    parts = [z for z, on in (("danger zone", danger), ("forgotten zone", forgotten)) if on]
    return " · ".join(f":rotating_light: {p}" for p in parts)


def health_card(card: HealthCard) -> Reply:
    a, h = card.item.account, card.item.health
    facts = [
        f"*Health {h.score}* · {BAND.get(h.band, h.band)} · {trend(h.score, h.previous_score)}",
        zones(h.danger_zone, h.forgotten_zone),
        f"MRR *{money(a.mrr)}* · renewal {a.renewal_date.isoformat() if a.renewal_date else '—'}"
        f" · owner {esc(a.owner_email or '—')}",
    ]
    if card.last_touch:
        t = card.last_touch
        note = f" — _{esc(clip(t['note'], 300))}_" if t.get("note") else ""
        facts.append(f"Last touch {t['day']} ({esc(t['team'])}, {esc(t['channel'])}){note}")
    drivers = "\n".join(
        f"{'🔻' if d.impact < 0 else '🔺' if d.impact > 0 else '•'} `{d.impact:+.1f}` {esc(d.explanation)}"
        for d in h.drivers[:6]
    )
    blocks: list[Block] = [
        HeaderBlock(text=plain(a.name)),
        section("\n".join(f for f in facts if f)),
        section(f"*Why*\n{drivers}" if drivers else "_No data to score yet._"),
    ]
    if card.team:
        blocks.append(context("Team: " + ", ".join(f"{mention(m)} ({esc(fn)})" for m, fn in card.team)))
    blocks.append(ActionsBlock(block_id="card_actions", elements=[
        button("Draft check-in", "draft_checkin", a.account_id, "primary"),
        button("Log note", "log_note", a.account_id),
        button("Mark review done", "review_done", a.account_id),
    ]))
    blocks.append(context(f"{esc(a.account_id)} · as of {card.as_of}"))
    return Reply(f"{a.name}: health {h.score} ({h.band})", blocks)


def risk_list(rows: Sequence[Scored], expr: str, page: int, as_of: date) -> Reply:
    pages = max(1, -(-len(rows) // PAGE))
    page = min(max(page, 1), pages)
    shown = rows[(page - 1) * PAGE: page * PAGE]
    title = f"At risk on {as_of}: {len(rows)} account{'s' if len(rows) != 1 else ''}"
    if expr:
        title += f" matching `{esc(expr)}`"
    blocks: list[Block] = [section(f"*{title}*, most revenue first")]
    for s in shown:
        a, h = s.account, s.health
        line = (f"*{esc(a.name)}* — {h.score} {BAND.get(h.band, h.band)} · MRR {money(a.mrr)}\n"
                f"{esc(reasons(h)) or '—'}")
        blocks.append(section(line, accessory=button("Open", "open_card", a.account_id)))
    if not rows:
        blocks.append(section("Nothing at risk. :tada:"))
    if pages > 1:
        nav = []
        if page > 1:
            nav.append(button("‹ Previous", "risk_page", json.dumps({"expr": expr, "page": page - 1})))
        if page < pages:
            nav.append(button("Next ›", "risk_page", json.dumps({"expr": expr, "page": page + 1})))
        blocks.append(ActionsBlock(block_id="risk_nav", elements=nav))
        blocks.append(context(f"page {page} of {pages}"))
    return Reply(title, blocks)


def retention_view(r: Retention) -> Reply:
    lines = [
        f"*Retention {r.start} → {r.end}*",
        f"Customers: *{r.customers_start}* at start, *+{r.new_customers}* new, *−{r.churned_customers}* "
        f"churned, *{r.customers_end}* at end",
        f"Retention rate (end ÷ start) *{pct(r.retention_rate_pct)}* beside churn rate "
        f"*{pct(r.churn_rate_pct)}*",
        f"MRR {money(r.mrr_start)} at start: +{money(r.expansion_mrr)} expansion, "
        f"−{money(r.contraction_mrr)} contraction, −{money(r.churned_mrr)} churned",
        f"GRR *{pct(r.grr_pct)}* · NRR *{pct(r.nrr_pct)}*",
    ]
    blocks: list[Block] = [section("\n".join(lines))]
    if r.churn_reasons:
        top = ", ".join(f"{esc(reason)} ({n})" for reason, n in r.churn_reasons[:5])
        blocks.append(context(f"Why they left: {top}"))
    return Reply(f"Retention {r.start} to {r.end}", blocks)


def reviews_view(items: Sequence[DueItem], within: int) -> Reply:
    blocks: list[Block] = [section(f"*Coming due in the next {within} days*")]
    for d in items[: MAX_BLOCKS - 3]:
        health = f"{d.health.score} {BAND.get(d.health.band, d.health.band)}" if d.health else "—"
        blocks.append(section(
            f"{d.due} ({f'in {d.days_left}d' if d.days_left >= 0 else f'{-d.days_left}d overdue'}) · "
            f"{d.kind} · *{esc(d.account.name)}* · {health} · "
            f"MRR {money(d.account.mrr)}",
            accessory=button("Open", "open_card", d.account.account_id),
        ))
    if not items:
        blocks.append(section("Nothing coming due."))
    elif len(items) > MAX_BLOCKS - 3:
        blocks.append(context(f"… and {len(items) - (MAX_BLOCKS - 3)} more"))
    return Reply(f"{len(items)} coming due", blocks)


def team_view(name: str, members: Sequence[tuple[str, str]]) -> Reply:
    listing = "\n".join(f"• {mention(m)} — {esc(fn)}" for m, fn in members) or "_nobody yet_"
    return Reply(f"Team of {name}", [
        section(f"*Account team of {esc(name)}*\n{listing}"),
        context("Add someone: `/keepwell team ACCOUNT add @user FUNCTION` "
                "(sales, cs, support, marketing, product, exec)"),
    ])


def draft_created(account_name: str, draft: Draft, location: str, created: bool) -> Reply:
    what = "Draft created" if created else "This draft already exists"
    blocks: list[Block] = [
        section(f":email: *{what}* for {esc(draft.to_name or draft.to_email)} &lt;{esc(draft.to_email)}&gt; "
                f"at {esc(account_name)}\nSubject: _{esc(draft.subject)}_"),
    ]
    if location.startswith("https://"):
        blocks.append(ActionsBlock(elements=[ButtonElement(text=plain("Open draft in Gmail"), url=location,
                                                           action_id="open_draft")]))
        blocks.append(context("Review it and send it yourself; Keepwell never sends."))
    else:
        blocks.append(context(f"Saved as `{esc(location)}` — review it and send it yourself; "
                              "Keepwell never sends."))
    return Reply(f"{what} for {draft.to_email}", blocks)


def plan_view(plan: Any) -> Reply:
    """A bulk plan: counts, why people are skipped, a sample, and the button that creates them."""
    counts: dict[str, int] = {}
    for _, reason in plan.skipped:
        key = reason.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    lines = [f"*{len(plan.drafts)} draft(s)* with template `{esc(plan.template)}` for `{esc(plan.target)}`; "
             f"{len(plan.skipped)} skipped"]
    lines += [f"• skipped {n}: {esc(reason)}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    blocks: list[Block] = [section("\n".join(lines))]
    if plan.sample is not None:
        blocks.append(section(f"*Sample* — to {esc(plan.sample.to_email)}: _{esc(plan.sample.subject)}_\n"
                              f"{esc(clip(plan.sample.text, 1500))}"))
    if plan.drafts:
        blocks.append(ActionsBlock(block_id="plan_actions", elements=[
            button(f"Create {len(plan.drafts)} drafts", "apply_plan", plan.plan_id, "primary")]))
    blocks.append(context(f"plan {esc(plan.plan_id)} · nothing is created until you press the button"))
    return Reply(f"Plan: {len(plan.drafts)} drafts", blocks)


def apply_progress(done: int, total: int, summary: Any = None) -> Reply:
    if summary is None:
        return message(f"Creating drafts: {done} of {total}…")
    text = (f"{summary.created} draft(s) created, {len(summary.skipped)} skipped, {len(summary.failed)} "
            "failed. Review and send them yourself; Keepwell never sends.")
    blocks: list[Block] = [section(f":email: {esc(text)}")]
    links = [f"• <{link}|{esc(to)}>" if link.startswith("https://") else f"• {esc(to)}: `{esc(link)}`"
             for to, link in summary.links[:20]]
    if links:
        blocks.append(section("\n".join(links)))
    if summary.failed:
        blocks.append(context("Failed: " + "; ".join(f"{esc(t)} ({esc(r)})" for t, r in summary.failed[:10])))
    return Reply(text, blocks)


# modals -------------------------------------------------------------------------------------------

def _options(pairs: Sequence[tuple[str, str]]) -> list[Option]:
    return [Option(text=plain(label, 75), value=value[:150]) for value, label in pairs[:100]]


def note_modal(account_id: str, name: str, text: str = "") -> View:
    return View(
        type="modal", callback_id="note_submit", private_metadata=account_id,
        title=plain("Log a note", 24), submit=plain("Log note", 24), close=plain("Cancel", 24),
        blocks=[
            section(f"Note on *{esc(name)}*"),
            InputBlock(block_id="note", label=plain("What happened?"),
                       element=PlainTextInputElement(action_id="text", multiline=True,
                                                     initial_value=clip(text, 3000) or None,
                                                     max_length=3000)),
            InputBlock(block_id="sentiment", label=plain("Sentiment"), optional=True,
                       element=StaticSelectElement(action_id="value", options=_options(
                           [("positive", "Positive"), ("neutral", "Neutral"), ("negative", "Negative")]))),
            InputBlock(block_id="kind", label=plain("Kind"), optional=True,
                       element=StaticSelectElement(action_id="value", options=_options(
                           [("checkin", "Check-in"), ("qbr", "Review (QBR)"), ("renewal", "Renewal"),
                            ("onboarding", "Onboarding"), ("other", "Other")]))),
        ],
    )


def draft_modal(
    account_id: str,
    name: str,
    templates: Sequence[str],
    recipients: Sequence[tuple[str, str]],
    preview: Draft | None,
    chosen: tuple[str, str] | None = None,
    problem: str | None = None,
) -> View:
    """Template and recipient choice with a rendered preview; choosing re-renders the preview."""
    template, email = chosen or (templates[0] if templates else "", recipients[0][0] if recipients else "")
    blocks: list[Block] = [section(f"Check-in draft for *{esc(name)}* — it lands in your drafts, "
                                   "you review it and send it yourself.")]
    if not recipients:
        blocks.append(section(":warning: No reachable contact on this account (all missing or marked "
                              "do-not-contact)."))
        return View(type="modal", callback_id="draft_submit", title=plain("Draft check-in", 24),
                    close=plain("Close", 24), private_metadata=account_id, blocks=blocks)
    t_opts, r_opts = _options([(t, t) for t in templates]), _options(recipients)
    blocks += [
        InputBlock(block_id="template", label=plain("Template"), dispatch_action=True,
                   element=StaticSelectElement(action_id="draft_template", options=t_opts,
                                               initial_option=next(o for o in t_opts if o.value == template)
                                               if template in templates else t_opts[0])),
        InputBlock(block_id="recipient", label=plain("To"), dispatch_action=True,
                   element=StaticSelectElement(action_id="draft_recipient", options=r_opts,
                                               initial_option=next((o for o in r_opts if o.value == email),
                                                                   r_opts[0]))),
        DividerBlock(),
    ]
    if problem:
        blocks.append(section(f":warning: {esc(problem)}"))
    elif preview is not None:
        blocks.append(section(f"*Subject:* {esc(preview.subject)}"))
        blocks.append(section(esc(clip(preview.text, 2900))))
    return View(type="modal", callback_id="draft_submit", private_metadata=account_id,
                title=plain("Draft check-in", 24), submit=plain("Create draft", 24),
                close=plain("Cancel", 24), blocks=blocks[:MAX_BLOCKS])


# App Home -----------------------------------------------------------------------------------------

def home_view(
    mine: Sequence[Scored],
    due: Sequence[DueItem],
    drafts: Sequence[dict[str, Any]],
    as_of: date,
) -> View:
    at_risk = [s for s in mine if is_at_risk(s.health)]
    blocks: list[Block] = [HeaderBlock(text=plain("Keepwell")),
                           context(f"Your accounts as of {as_of}. `/keepwell help` lists every command.")]
    blocks.append(section(f"*My accounts* ({len(mine)})"))
    for s in list(mine)[:20]:
        a, h = s.account, s.health
        blocks.append(section(
            f"*{esc(a.name)}* — {h.score} {BAND.get(h.band, h.band)} · MRR {money(a.mrr)}",
            accessory=button("Open", "open_card", a.account_id),
        ))
    if not mine:
        blocks.append(context("You are not the owner of, or on the team of, any account yet."))
    elif len(mine) > 20:
        blocks.append(context(f"… and {len(mine) - 20} more: `/keepwell risk owner:you@company.com`"))
    blocks += [DividerBlock(), section(f"*At risk* ({len(at_risk)})")]
    for s in at_risk[:15]:
        blocks.append(section(f"*{esc(s.account.name)}* — {s.health.score} · {esc(reasons(s.health))}",
                              accessory=button("Open", "open_card", s.account.account_id)))
    blocks += [DividerBlock(), section("*Coming due*")]
    for d in list(due)[:15]:
        blocks.append(section(f"{d.due} · {d.kind} · *{esc(d.account.name)}* (in {d.days_left}d)"))
    if not due:
        blocks.append(context("Nothing coming due in the next 90 days."))
    blocks += [DividerBlock(), section("*My recent drafts*")]
    for row in list(drafts)[:10]:
        blocks.append(context(f"{row['day']} · {esc(row['name'])} · {esc(row['contact_email'])} · "
                              f"_{esc(row['note'] or '')}_"))
    if not drafts:
        blocks.append(context("No drafts yet: open an account and press *Draft check-in*."))
    return View(type="home", blocks=blocks[:MAX_HOME_BLOCKS])


def _names(pairs: Sequence[tuple[Any, Any]], limit: int = 8) -> str:
    shown = ", ".join(f"{esc(a.name)} ({h.score})" for a, h in pairs[:limit])
    return shown + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")


def digest_blocks(d: Any, title: str = "Portfolio digest") -> Reply:
    """The portfolio digest for a channel: the whole book at a glance, and what moved."""
    r = d.retention
    bands = " · ".join(f"{BAND[b.band]} {b.accounts} ({money(b.mrr)})" for b in d.bands)
    blocks: list[Block] = [
        HeaderBlock(text=plain(f"{title} — {d.as_of}")),
        section(f"*{d.customers:,} customers*, MRR *{money(d.mrr)}*\n{bands}\n"
                f":rotating_light: {d.danger} in the danger zone · {d.forgotten} forgotten"),
        section(f"*Retention {r.start} → {r.end}*: {r.customers_start} at start, *+{r.new_customers} new*, "
                f"*−{r.churned_customers} churned*, {r.customers_end} at end — "
                f"rate {pct(r.retention_rate_pct)} beside churn {pct(r.churn_rate_pct)}; "
                f"GRR {pct(r.grr_pct)}, NRR {pct(r.nrr_pct)}"),
    ]
    if d.since is not None:
        moves = [("Newly at risk", d.newly_at_risk), ("Recovered", d.recovered),
                 ("Entered the danger zone", d.entered_danger),
                 ("Entered the forgotten zone", d.entered_forgotten)]
        lines = [f"*{label}*: {_names(pairs)}" for label, pairs in moves if pairs]
        blocks.append(section(f"*Since {d.since}*\n" + ("\n".join(lines) if lines else "No account moved.")))
    if d.at_risk:
        rows = "\n".join(f"• *{esc(a.name)}* — {h.score} · MRR {money(a.mrr)} · {esc(reasons(h))}"
                         for a, h in d.at_risk)
        blocks.append(section(f"*At risk, most revenue first* ({d.at_risk_total} in all)\n{rows}"))
    if d.renewals:
        rows = "\n".join(f"• {a.renewal_date} *{esc(a.name)}* — "
                         f"{h.score if h else '—'} · MRR {money(a.mrr)}" for a, h in d.renewals)
        blocks.append(section(f"*Renewals coming due*\n{rows}"))
    if d.reviews_due:
        rows = "\n".join(f"• {due} *{esc(a.name)}*" + (" — overdue" if due < d.as_of else "")
                         for a, due in d.reviews_due)
        blocks.append(section(f"*Account reviews coming due*\n{rows}"))
    if d.detractors:
        rows = "\n".join(f"• *{esc(a.name)}* — NPS {ans.score} on {ans.day}"
                         + (f": _{esc(clip(ans.comment, 140))}_" if ans.comment else "")
                         for a, ans in d.detractors)
        blocks.append(section(f"*Detractors*\n{rows}"))
    if d.overdue:
        rows = "\n".join(f"• *{esc(a.name)}* — invoice {esc(o.invoice_id)}, {money(o.amount)}, "
                         f"{o.days} days overdue" for a, o in d.overdue)
        blocks.append(section(f"*Invoices overdue*\n{rows}"))
    blocks.append(context("`/keepwell risk` for the full list · `/keepwell health ACCOUNT` for a card"))
    return Reply(f"{title} for {d.as_of}: {d.customers} customers, {d.at_risk_total} at risk", blocks,
                 in_channel=True)
