"""Terminal views of reports. User data always enters as rich Text, never as markup."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from bot.core.digest import Digest, reasons
from bot.core.retention import Cohort, Retention
from bot.drafts import ApplySummary, Plan
from bot.importer.run import ImportReport
from bot.services import DueItem, HealthCard, ScoreSummary
from bot.store import Scored

BAND_STYLE = {"healthy": "green", "watch": "yellow", "at_risk": "red"}
BAND_LABEL = {"healthy": "healthy", "watch": "watch", "at_risk": "at risk"}


def money(value: Decimal | float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def band(b: str, score: int | None = None) -> Text:
    label = BAND_LABEL.get(b, b)
    return Text(f"{score} {label}" if score is not None else label, style=BAND_STYLE.get(b, ""))


def trend(score: int, previous: int | None) -> Text:
    if previous is None:
        return Text("")
    delta = score - previous
    if delta == 0:
        return Text("±0", style="dim")
    return Text(f"{delta:+d}", style="green" if delta > 0 else "red")


def zones(danger: bool, forgotten: bool) -> str:
    return ", ".join(z for z, on in (("danger", danger), ("forgotten", forgotten)) if on)


def import_report(console: Console, r: ImportReport) -> None:
    verb = "checked (dry run, nothing written)" if r.dry_run else "imported"
    rate = f", {r.rows / r.seconds:,.0f} rows/s" if r.seconds > 0 and r.rows >= 100_000 else ""
    console.print(Text(f"{r.kind}: {r.rows:,} rows {verb} from {r.path} "
                       f"({r.encoding}, {_delimiter(r.delimiter)}; {r.seconds:.2f}s{rate})"))
    for w in r.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))


def _delimiter(d: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab"}.get(d, repr(d))


def score_summary(console: Console, s: ScoreSummary) -> None:
    console.print(Text(
        f"scored {s.accounts:,} customers as of {s.as_of} in {s.seconds:.2f}s: "
        f"{s.bands['healthy']} healthy, {s.bands['watch']} watch, {s.bands['at_risk']} at risk; "
        f"{s.danger} in the danger zone, {s.forgotten} forgotten"
    ))


def health_card(console: Console, card: HealthCard) -> None:
    a, h = card.item.account, card.item.health
    title = Text.assemble(Text(a.name, style="bold"), f"  ({a.account_id})")
    head = Text.assemble(
        "Health ", band(h.band, h.score), "  ", trend(h.score, h.previous_score),
        f"   previous {h.previous_score}" if h.previous_score is not None else "   no previous score",
    )
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("zones", Text(zones(h.danger_zone, h.forgotten_zone) or "none"))
    facts.add_row("MRR", money(a.mrr))
    facts.add_row("renewal", a.renewal_date.isoformat() if a.renewal_date else "—")
    facts.add_row("tier", Text(a.tier or "—"))
    facts.add_row("owner", Text(a.owner_email or "—"))
    if card.last_touch:
        t = card.last_touch
        note = f" — {t['note']}" if t.get("note") else ""
        facts.add_row("last touch", Text(f"{t['day']} {t['team']} {t['channel']}{note}"))
    if card.team:
        facts.add_row("team", Text(", ".join(f"{member} ({fn})" for member, fn in card.team)))
    drivers = Table(box=None, show_header=True, header_style="dim", padding=(0, 1))
    drivers.add_column("impact", justify="right")
    drivers.add_column("why")
    for d in h.drivers:
        style = "green" if d.impact > 0 else "red" if d.impact < 0 else "dim"
        drivers.add_row(Text(f"{d.impact:+.1f}", style=style), Text(d.explanation))
    console.print(Panel(Group(head, Text(""), facts, Text(""), drivers), title=title,
                        subtitle=f"as of {card.as_of}", expand=False))


def account_table(console: Console, rows: Sequence[Scored], title: str, *, show_dates: bool = False) -> None:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("account")
    table.add_column("health", justify="right")
    table.add_column("Δ", justify="right")
    table.add_column("zones")
    table.add_column("MRR", justify="right")
    table.add_column("renewal")
    if show_dates:
        table.add_column("start")
        table.add_column("churn")
    table.add_column("pulling it down")
    for s in rows:
        a, h = s.account, s.health
        cells: list[Text | str] = [
            Text(a.name), band(h.band, h.score), trend(h.score, h.previous_score),
            zones(h.danger_zone, h.forgotten_zone), money(a.mrr),
            a.renewal_date.isoformat() if a.renewal_date else "—",
        ]
        if show_dates:
            cells += [a.start_date.isoformat(), a.churn_date.isoformat() if a.churn_date else ""]
        cells.append(Text(reasons(h, 1), overflow="fold"))
        table.add_row(*cells)
    console.print(table)
    if not rows:
        console.print("no accounts match")


def retention_view(console: Console, r: Retention) -> None:
    table = Table(title=f"Retention {r.start} → {r.end}", title_justify="left", show_header=False)
    table.add_column(style="dim")
    table.add_column(justify="right")
    for label, value in (
        ("customers at start", f"{r.customers_start:,}"),
        ("new customers", f"+{r.new_customers:,}"),
        ("churned customers", f"−{r.churned_customers:,}"),
        ("customers at end", f"{r.customers_end:,}"),
        ("retention rate (end ÷ start)", pct(r.retention_rate_pct)),
        ("churn rate", pct(r.churn_rate_pct)),
        ("MRR at start", money(r.mrr_start)),
        ("expansion", f"+{money(r.expansion_mrr)}"),
        ("contraction", f"−{money(r.contraction_mrr)}"),
        ("churned MRR", f"−{money(r.churned_mrr)}"),
        ("gross revenue retention", pct(r.grr_pct)),
        ("net revenue retention", pct(r.nrr_pct)),
    ):
        table.add_row(label, value)
    console.print(table)
    if r.churn_reasons:
        console.print(Text("why they left: " + ", ".join(f"{reason} ({n})" for reason, n in r.churn_reasons)))


def cohort_table(console: Console, rows: Sequence[Cohort]) -> None:
    width = max((len(c.retained_pct) for c in rows), default=0)
    table = Table(title="Monthly cohorts: % still customers at each month-end", title_justify="left")
    table.add_column("cohort")
    table.add_column("size", justify="right")
    for i in range(width):
        table.add_column(f"m{i}", justify="right")
    for c in rows:
        cells = ["" if v is None else f"{v:.0f}" for v in c.retained_pct]
        table.add_row(c.month.strftime("%Y-%m"), str(c.size), *cells, *[""] * (width - len(cells)))
    console.print(table)


def reviews(console: Console, items: Sequence[DueItem], within: int) -> None:
    table = Table(title=f"Coming due within {within} days", title_justify="left", header_style="bold")
    for col in ("due", "in", "what", "account", "health", "MRR", "owner"):
        table.add_column(col, justify="right" if col in ("in", "MRR") else "left")
    for d in items:
        table.add_row(
            d.due.isoformat(), f"{d.days_left}d" if d.days_left >= 0 else f"{-d.days_left}d late", d.kind,
            Text(d.account.name),
            band(d.health.band, d.health.score) if d.health else "—", money(d.account.mrr),
            Text(d.account.owner_email or "—"),
        )
    console.print(table)
    if not items:
        console.print("nothing coming due")


def digest(console: Console, d: Digest) -> None:
    console.rule(Text(f"Portfolio on {d.as_of}", style="bold"))
    console.print(Text(f"{d.customers:,} customers, {money(d.mrr)} MRR"))
    bands = Table(show_header=True, header_style="dim", box=None, padding=(0, 2))
    for col in ("band", "accounts", "MRR"):
        bands.add_column(col, justify="left" if col == "band" else "right")
    for b in d.bands:
        bands.add_row(band(b.band), str(b.accounts), money(b.mrr))
    console.print(bands)
    console.print(Text(f"{d.danger} in the danger zone (lowest engagement among active accounts), "
                       f"{d.forgotten} forgotten (no recent use)"))
    console.print()
    r = d.retention
    console.print(Text(
        f"Last 12 months: {r.customers_start} customers at start, +{r.new_customers} new, "
        f"−{r.churned_customers} churned, {r.customers_end} at end — retention {pct(r.retention_rate_pct)}, "
        f"churn {pct(r.churn_rate_pct)}, GRR {pct(r.grr_pct)}, NRR {pct(r.nrr_pct)}"
    ))
    if r.churn_reasons:
        console.print(Text("why they left: " + ", ".join(f"{x} ({n})" for x, n in r.churn_reasons[:5])))
    console.print()
    risk = Table(title=f"At risk, most revenue first ({d.at_risk_total} in all)", title_justify="left",
                 header_style="bold")
    for col in ("account", "health", "MRR", "why"):
        risk.add_column(col, justify="right" if col in ("MRR",) else "left")
    for a, score in d.at_risk:
        risk.add_row(Text(a.name), band(score.band, score.score), money(a.mrr),
                     Text(reasons(score), overflow="fold"))
    console.print(risk)
    if d.renewals:
        ren = Table(title="Renewals in the next 90 days", title_justify="left", header_style="bold")
        for col in ("date", "account", "health", "MRR"):
            ren.add_column(col, justify="right" if col == "MRR" else "left")
        for a, h in d.renewals:
            ren.add_row(a.renewal_date.isoformat() if a.renewal_date else "", Text(a.name),
                        band(h.band, h.score) if h else "—", money(a.mrr))
        console.print(ren)


def plan_view(console: Console, plan: Plan) -> None:
    console.print(Text(f"Plan {plan.plan_id}: {len(plan.drafts)} draft(s) with template {plan.template} "
                       f"for {plan.target}; {len(plan.skipped)} skipped", style="bold"))
    reasons_count: dict[str, int] = {}
    for _, reason in plan.skipped:
        key = reason.split(" (")[0]
        reasons_count[key] = reasons_count.get(key, 0) + 1
    for reason, n in sorted(reasons_count.items(), key=lambda kv: -kv[1]):
        console.print(Text(f"  skipped {n}: {reason}"))
    for to, reason in plan.skipped[:10]:
        console.print(Text(f"    {to}: {reason}", style="dim"))
    if plan.sample is not None:
        console.print(Text(f"Sample, to {plan.sample.to_email} — {plan.sample.subject}", style="bold"))
        console.print(Text(plan.sample.text))
    console.print(Text(f"Create them with: keepwell drafts apply {plan.plan_id}"))


@contextmanager
def progress_bar(console: Console, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    with Progress(TextColumn("drafts"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=disable, transient=False) as bar:
        task = bar.add_task("drafts", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def apply_view(console: Console, summary: ApplySummary, store: str) -> None:
    where = "Gmail drafts" if store == "gmail" else "the outbox"
    console.print(Text(f"{summary.created} draft(s) in {where}; {len(summary.skipped)} skipped; "
                       f"{len(summary.failed)} failed. Nothing was sent: review and send them yourself.",
                       style="bold"))
    for to, link in summary.links[:20]:
        console.print(Text(f"  {to}: {link}"))
    if len(summary.links) > 20:
        console.print(Text(f"  … and {len(summary.links) - 20} more"))
    for to, reason in summary.failed:
        console.print(Text(f"  failed {to}: {reason}", style="red"))
