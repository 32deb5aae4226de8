"""The `keepwell` command line: thin commands over the services (CONTRACT §3).

Exit codes: 0 success; 1 the operation failed (one-line reason); 2 bad input (a precise message).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError

from bot import collector, logs, render
from bot.config import KeepwellConfig, Settings, load_config, load_settings
from bot.db.engine import make_engine, migrate
from bot.errors import BadInput, KeepwellError, OperationFailed
from bot.importer.kinds import KINDS
from bot.services import Keepwell, digest_dict, health_dict
from bot.store import Book
from integrations.outbox import Outbox

app = typer.Typer(
    help="Keepwell: account health, honest retention and reviewed check-in drafts for CS teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)

DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy database URL.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable keys).")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="The day to report for, YYYY-MM-DD (default: today, UTC).")
]


class Runtime:
    """Settings and configuration, loaded once per invocation and passed down."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._settings: Settings | None = None
        self._config: KeepwellConfig | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def config(self) -> KeepwellConfig:
        if self._config is None:
            self._config = load_config(self.settings.config_path)
        return self._config

    def service(self, db: str | None) -> Keepwell:
        engine = make_engine(db or self.settings.database_url)
        migrate(engine)
        return Keepwell(Book(engine), self.config, drafts=Outbox(self.settings.outbox))


runtime = Runtime()


def parse_day(value: str | None, option: str) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{option}: {value!r} is not a date (expected YYYY-MM-DD)") from None


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@app.command("import")
def import_(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
    file: Annotated[Path, typer.Argument(help="The CSV file.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the file; write nothing.")] = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a CSV file whole or not at all (re-importing changes nothing)."""
    if kind not in KINDS:
        raise BadInput(f"unknown kind {kind!r}; kinds are: {', '.join(KINDS)}")
    report = runtime.service(db).import_file(kind, file, dry_run=dry_run)
    if as_json:
        emit_json({"kind": report.kind, "file": report.path, "rows": report.rows, "dry_run": dry_run,
                   "warnings": report.warnings, "seconds": round(report.seconds, 3)})
    else:
        render.import_report(out, report)


@app.command()
def score(db: DbOpt = None, as_of: AsOfOpt = None, as_json: JsonOpt = False) -> None:
    """Compute and store today's health snapshot for every account."""
    summary = runtime.service(db).score(parse_day(as_of, "--as-of"))
    if as_json:
        emit_json({"as_of": summary.as_of.isoformat(), "customers": summary.accounts,
                   "bands": summary.bands, "danger_zone": summary.danger,
                   "forgotten_zone": summary.forgotten, "seconds": round(summary.seconds, 3)})
    else:
        render.score_summary(out, summary)


@app.command()
def health(
    account: Annotated[str, typer.Argument(help="An account id or (part of) its name.")],
    db: DbOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One account's health card: score, band, zones and the drivers behind them."""
    card = runtime.service(db).health(account, parse_day(as_of, "--as-of"))
    if as_json:
        emit_json({**health_dict(card.item), "as_of": card.as_of.isoformat(),
                   "team": [{"member": m, "function": f} for m, f in card.team]})
    else:
        render.health_card(out, card)


SegmentOpt = Annotated[
    str | None,
    typer.Option("--segment", help="e.g. 'tier:enterprise health<60 renewal<90d' (terms are ANDed)."),
]


@app.command()
def risk(
    segment: SegmentOpt = None, db: DbOpt = None, as_of: AsOfOpt = None, as_json: JsonOpt = False
) -> None:
    """Customers at risk (at-risk band, danger or forgotten zone), most revenue at stake first."""
    day = parse_day(as_of, "--as-of")
    rows = runtime.service(db).risk(day, segment)
    if as_json:
        emit_json([health_dict(r) for r in rows])
    else:
        render.account_table(out, rows, f"At risk on {day}: {len(rows)} accounts, most MRR first")


@app.command()
def accounts(
    segment: SegmentOpt = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every account, churned or not.")] = False,
    db: DbOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The customers on --as-of (or a segment of them) with their health, lowest first."""
    day = parse_day(as_of, "--as-of")
    rows = runtime.service(db).accounts(day, segment, everyone=everyone)
    if as_json:
        items = []
        for r in rows:
            item = health_dict(r)
            if everyone:
                item["start_date"] = r.account.start_date.isoformat()
                item["churn_date"] = r.account.churn_date.isoformat() if r.account.churn_date else None
            items.append(item)
        emit_json(items)
    else:
        what = "accounts" if everyone else "customers"
        render.account_table(out, rows, f"{len(rows)} {what} on {day}", show_dates=everyone)


@app.command()
def retention(
    start: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day (default: --as-of).")] = None,
    with_cohorts: Annotated[bool, typer.Option("--cohorts", help="Add monthly cohorts.")] = False,
    db: DbOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retention and churn for a window (default: the 12 months to --as-of), new and lost beside the rate."""
    day = parse_day(as_of, "--as-of")
    last = parse_day(end, "--to") if end else day
    first = parse_day(start, "--from") if start else last - timedelta(days=364)
    service = runtime.service(db)
    report = service.retention(first, last)
    table = service.cohorts(first, last) if with_cohorts else []
    if as_json:
        data = report.to_dict()
        if with_cohorts:
            data["cohorts"] = [
                {"month": c.month.strftime("%Y-%m"), "size": c.size, "retained_pct": list(c.retained_pct)}
                for c in table
            ]
        emit_json(data)
    else:
        render.retention_view(out, report)
        if with_cohorts:
            render.cohort_table(out, table)


@app.command()
def reviews(
    within: Annotated[int, typer.Option("--within", help="Days ahead to look.")] = 90,
    db: DbOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Account reviews (overdue ones too) and renewals coming due, soonest first."""
    day = parse_day(as_of, "--as-of")
    items = runtime.service(db).reviews(day, within)
    if as_json:
        emit_json([
            {"account_id": d.account.account_id, "name": d.account.name, "kind": d.kind,
             "due_date": d.due.isoformat(), "days_left": d.days_left,
             "score": d.health.score if d.health else None, "band": d.health.band if d.health else None,
             "mrr": float(d.account.mrr) if d.account.mrr is not None else None,
             "owner_email": d.account.owner_email}
            for d in items
        ])
    else:
        render.reviews(out, items, within)


@app.command()
def demo(
    n_accounts: Annotated[int, typer.Option("--accounts", min=10, max=20000, help="Book size.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same book.")] = 7,
    db: DbOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Build a believable demo book, score it, show the portfolio and write sample drafts."""
    from bot.demo import run_demo

    run_demo(runtime.service(db), out, accounts=n_accounts, seed=seed, as_of=parse_day(as_of, "--as-of"),
             data_dir=Path("demo-data"), outbox=runtime.settings.outbox)


drafts_app = typer.Typer(help="Check-in drafts: plan who gets one, then create them for review.",
                         no_args_is_help=True)
app.add_typer(drafts_app, name="drafts")


def draft_store(mailbox: str | None) -> Any:
    """Gmail when Google credentials are configured, else the local outbox (the one wiring point)."""
    from integrations.google_store import gmail_store, google_configured

    settings = runtime.settings
    if google_configured(settings):
        return gmail_store(settings, runtime.config.drafts, mailbox)
    return Outbox(settings.outbox)


@drafts_app.command("plan")
def drafts_plan(
    template: Annotated[str, typer.Option("--template", help="e.g. checkin, qbr_invite, nps_survey.")],
    account: Annotated[str | None, typer.Option("--account", help="One account (id or name).")] = None,
    segment: SegmentOpt = None,
    db: DbOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who would get a draft, who is skipped and why; stores the plan (nothing is created yet)."""
    from bot.drafts import Drafting

    plan = Drafting(runtime.service(db)).plan(template, as_of=parse_day(as_of, "--as-of"),
                                               account=account, segment=segment)
    if as_json:
        emit_json(plan.to_dict())
    else:
        render.plan_view(out, plan)


@drafts_app.command("apply")
def drafts_apply(
    plan_id: Annotated[str, typer.Argument(help="The id `drafts plan` printed.")],
    mailbox: Annotated[str | None, typer.Option("--mailbox", help="Delegated mailbox (service account).")]
    = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the plan's drafts (Gmail or the outbox); safe to re-run, never creates one twice."""
    from bot.drafts import Drafting
    from integrations.google_store import google_configured

    if mailbox and not google_configured(runtime.settings):
        raise BadInput("--mailbox needs Google credentials (keepwell auth google, or "
                       "GOOGLE_APPLICATION_CREDENTIALS with a service account)")
    drafting = Drafting(runtime.service(db))
    if google_configured(runtime.settings):  # a plan's drafts all go to one mailbox (Drafting.mailbox)
        recorded = drafting.mailbox(plan_id, mailbox)
        if mailbox and recorded and recorded != mailbox.strip().lower():
            raise BadInput(f"plan {plan_id}'s drafts go to {recorded}, where the first of them were created; "
                           f"leave out --mailbox, or give --mailbox {recorded}")
        mailbox = recorded or mailbox
    store = draft_store(mailbox)
    with render.progress_bar(out, disable=as_json) as advance:
        summary = drafting.apply(plan_id, store, progress=advance)
    if as_json:
        emit_json(summary.to_dict())
    else:
        render.apply_view(out, summary, store.name)


sync_app = typer.Typer(help="Pull from Google: contacts (and later mail activity).", no_args_is_help=True)
app.add_typer(sync_app, name="sync")


@sync_app.command("contacts")
def sync_contacts_cmd(
    mailbox: Annotated[str | None, typer.Option("--mailbox", help="Whose contacts (service account).")]
    = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pull Google Contacts into the book (incrementally after the first run)."""
    from integrations.contacts import ContactMapping, build_people_service, sync_contacts

    cfg = runtime.config.contacts
    service = runtime.service(db)
    people = build_people_service(runtime.settings, mailbox or cfg.mailbox)
    mapping = ContactMapping(account_fields=dict(cfg.account_fields), role_field=cfg.role_field,
                             dnc_groups=tuple(cfg.dnc_groups), create_accounts=cfg.create_accounts)
    report = sync_contacts(service.book.engine, people, mapping=mapping, today=datetime.now(UTC).date())
    if as_json:
        emit_json(dataclasses.asdict(report))
        return
    kind = "full resync" if report.full_resync else "incremental" if report.incremental else "first sync"
    out.print(f"Google Contacts ({kind}): {report.fetched} people fetched; {report.created} contacts "
              f"created, {report.updated} updated, {report.deleted} deleted; {report.accounts_updated} "
              f"accounts updated", markup=False)
    if report.unmatched:
        out.print(f"{len(report.unmatched)} address(es) match no account (add the account's domain)",
                  markup=False)
    for warning in report.warnings[:20]:
        out.print(f"warning: {warning}", markup=False, style="yellow")


@sync_app.command("gmail")
def sync_gmail_cmd(
    days: Annotated[int, typer.Option("--days", min=1, max=365, help="How far back to look.")] = 30,
    mailbox: Annotated[str | None, typer.Option("--mailbox", help="Whose mail (service account).")] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the mail exchanged with your contacts (metadata only) as touches, for caps and health."""
    from integrations.gmail_activity import gmail_service, sync_gmail

    service = runtime.service(db)
    gmail, batch_uri = gmail_service(runtime.settings, mailbox or runtime.config.contacts.mailbox)
    report = sync_gmail(service.book.engine, gmail, batch_uri, today=datetime.now(UTC).date(), days=days)
    if as_json:
        emit_json({"messages": report.messages, "touches": report.touches,
                   "contacts": sorted(report.contacts)})
    else:
        out.print(f"Gmail: {report.messages} messages in the last {days} days; {report.touches} new touches "
                  f"with {len(report.contacts)} contacts", markup=False)


auth_app = typer.Typer(help="Sign in to outside services.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")


@auth_app.command("google")
def auth_google(
    client_secrets: Annotated[Path, typer.Option(
        "--client-secrets", help="The OAuth client file (Desktop app) from Google Cloud; see docs/google.md."
    )] = Path("client_secret.json"),
    gmail_activity: Annotated[bool, typer.Option(
        "--gmail-activity", help="Also read mail metadata (for keepwell sync gmail)."
    )] = False,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the sign-in link instead.")] = False,
    db: Annotated[str | None, typer.Option(
        "--db", show_default=False,
        help="Taken as every command takes it; unused: the token goes to KEEPWELL_GOOGLE_TOKEN.",
    )] = None,
) -> None:
    """Sign in to Google (Gmail drafts, contacts); the token is stored encrypted with KEEPWELL_SECRET_KEY."""
    from integrations.google_auth import sign_in

    path, account = sign_in(runtime.settings, client_secrets, gmail_activity=gmail_activity,
                            open_browser=not no_browser)
    out.print(f"Signed in as {account}; the token is stored, encrypted, at {path}", markup=False)


@app.command()
def digest(
    channel: Annotated[str, typer.Option("--channel", help="The Slack channel id (C0123ABCD).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print it here instead of posting.")] = False,
    segment: SegmentOpt = None,
    since: Annotated[str | None, typer.Option("--since", help="Compare with this day's scores.")] = None,
    db: DbOpt = None,
    as_of: AsOfOpt = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="With --dry-run: the digest as JSON (stable keys), not as Slack shows it.")] = False,
) -> None:
    """Post (or print) the portfolio digest: health, retention with new and lost, movers, risks."""
    from bot.slack.blocks import digest_blocks
    from bot.slack.console import render_blocks

    if as_json and not dry_run:
        raise BadInput("--json prints the digest instead of posting it: add --dry-run")
    day = parse_day(as_of, "--as-of")
    service = runtime.service(db)
    digest = service.digest(day, segment, parse_day(since, "--since") if since else None)
    if as_json:
        emit_json(digest_dict(digest))
        return
    reply = digest_blocks(digest)
    if dry_run:
        out.print(render_blocks(reply.to_dict()["blocks"]), markup=False, highlight=False)
        return
    from slack_sdk.errors import SlackApiError

    from bot.scheduler import chart_png
    from bot.slack.app import web_client
    from integrations.slack_client import ChannelUnavailable, Poster

    poster = Poster(web_client(runtime.settings))
    try:
        ts = poster.post(channel, reply)
    except ChannelUnavailable as exc:
        raise BadInput(f"{exc} (invite the bot to the channel, or check the id)") from None
    out.print(f"posted to {channel} (ts {ts})", markup=False)
    try:
        poster.upload(channel, chart_png(service, digest), filename=f"keepwell-health-{day}.png",
                      title=f"Health and retention, {day}")
    except SlackApiError as exc:
        fail(f"the chart was not uploaded: {exc.response.get('error')} (the files:write scope?)")


@app.command()
def tick(
    now: Annotated[str | None, typer.Option("--now", help="Run as of this moment (ISO 8601).")] = None,
    db: DbOpt = None,
) -> None:
    """Run every scheduled job that is due, once (for cron); each period runs exactly once."""
    from bot.claims import Claims
    from bot.scheduler import Scheduler
    from bot.slack.app import web_client
    from integrations.slack_client import Poster

    moment = datetime.now(UTC)
    if now:
        try:
            moment = datetime.fromisoformat(now)
        except ValueError:
            raise BadInput(f"--now: {now!r} is not an ISO 8601 moment (like 2026-11-23T09:00:00Z)") from None
        if moment.tzinfo is None:
            raise BadInput("--now needs a time zone (like 2026-11-23T09:00:00Z)")
    service = runtime.service(db)
    started = datetime.now(UTC)

    def clock() -> datetime:  # claims are stamped on the --now timeline, so leases work in backfills
        return moment + (datetime.now(UTC) - started)

    claims = Claims(service.book.engine, clock=clock)
    scheduler = Scheduler(service, claims, lambda: Poster(web_client(runtime.settings)))
    ran = scheduler.tick(moment)
    for r in ran:
        out.print(f"{r.job} {r.period}: {r.outcome}" + (f" ({r.reason})" if r.reason else ""),
                  markup=False, soft_wrap=True)
    for job, period in claims.interrupted(since=moment - scheduler.grace - timedelta(days=1)):
        fail(f"{job} {period}: interrupted while posting; not repeated (Slack may have shown it): "
             "check the channel")
    if not ran:
        out.print("nothing due", markup=False)
    failed = [r for r in ran if r.outcome == "failed"]
    if failed:  # cron, or whatever runs the tick, learns it from the exit code
        raise OperationFailed(f"{len(failed)} of {len(ran)} due job(s) failed: "
                              + ", ".join(f"{r.job} {r.period}" for r in failed))


@app.command()
def schedule(db: DbOpt = None) -> None:
    """Every scheduled job with its next run."""
    from bot.scheduler import jobs

    now = datetime.now(UTC)
    listed = jobs(runtime.service(db))
    for job in listed:
        nxt = job.schedule.next_fire(now).astimezone(job.schedule.tz)
        out.print(f"{job.name}: {job.schedule.text} ({job.schedule.tz.key}) — next {nxt:%Y-%m-%d %H:%M %Z}",
                  markup=False)
    if not listed:
        out.print("no scheduled jobs: add [[digests]] to keepwell.toml (docs/scheduling.md)", markup=False)


HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")]


NoSchedulerOpt = Annotated[bool, typer.Option(
    "--no-scheduler", help="Leave scheduled jobs to `keepwell tick` (cron) instead of running them here.")]


def _slack_app(db: str | None, scheduler: bool = True) -> tuple[Any, Keepwell]:
    from bot.claims import Claims
    from bot.scheduler import Background, Scheduler, check_channels
    from bot.slack.app import build_app
    from integrations.slack_client import Poster

    service = runtime.service(db)
    app = build_app(service, runtime.settings, stores=draft_store)
    poster = Poster(app.client)
    for warning in check_channels(service, poster.channel_problem):  # an unknown channel stops here
        fail(warning)
    collector.settle_again()  # the Slack app is loaded: what lives as long as the process, from here
    if scheduler:
        Background(Scheduler(service, Claims(service.book.engine), lambda: poster)).start()
    return app, service


@app.command()
def serve(host: HostOpt = "127.0.0.1", port: PortOpt = 3000, db: DbOpt = None,
          no_scheduler: NoSchedulerOpt = False) -> None:
    """The Slack bot over HTTP: POST /slack/events (and GET /healthz), multi-threaded; with the scheduler."""
    from bot.slack.http import SlackWSGI
    from bot.slack.http import serve as serve_http

    bolt, service = _slack_app(db, scheduler=not no_scheduler)
    wsgi = SlackWSGI(bolt, runtime.settings.slack_signing_secret or "", service.book.ping)
    out.print(f"Keepwell is listening on http://{host}:{port}/slack/events", markup=False)
    serve_http(wsgi, host, port)


@app.command()
def run(db: DbOpt = None, no_scheduler: NoSchedulerOpt = False) -> None:
    """The Slack bot over Socket Mode (needs SLACK_APP_TOKEN, xapp-…), with the scheduler."""
    from bot.slack.socket import LoggedSocketModeHandler

    token = runtime.settings.slack_app_token
    if not token:
        raise BadInput("SLACK_APP_TOKEN is not set (an app-level token, xapp-…, with connections:write)")
    bolt, _ = _slack_app(db, scheduler=not no_scheduler)
    out.print("Keepwell is connected over Socket Mode (Ctrl-C to stop)", markup=False)
    LoggedSocketModeHandler(bolt, token, web_client=bolt.client).start()


@app.command()
def console(
    user: Annotated[str, typer.Option("--user", help="The Slack user id you act as.")] = "U0CONSOLE",
    db: DbOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Try the Slack bot in the terminal: type /keepwell commands, read the replies."""
    from bot.slack.console import repl

    repl(runtime.service(db), user, parse_day(as_of, "--as-of"), sys.stdin, sys.stdout, sys.stdin.isatty())


def main(argv: list[str] | None = None) -> None:
    """Entry point: every KeepwellError becomes one line and its exit code, never a traceback.

    Typer itself answers usage errors (exit 2) and --help; anything else raised by a command
    arrives here.
    """
    runtime.reset()
    if argv is None:  # the process's own command line: its start-up is over (not a test calling in)
        collector.settle()
    try:
        with logs.for_command(sys.argv[1:] if argv is None else argv):  # serve, run and tick log
            app(args=argv, prog_name="keepwell")
    except KeepwellError as exc:
        fail(exc.message, exc.details)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted; nothing was half-written")
        sys.exit(130)
    except DBAPIError as exc:  # the database said no: its first line, not the statement and rows
        if os.environ.get("KEEPWELL_DEBUG"):
            raise
        fail(f"database error: {first_line(exc.orig if exc.orig is not None else exc)}")
        sys.exit(1)
    except Exception as exc:  # a bug: say so in one line, the full trace only when asked
        if os.environ.get("KEEPWELL_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {first_line(exc)} "
             "(run with KEEPWELL_DEBUG=1 for the traceback)")
        sys.exit(1)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def fail(message: str, details: list[str] | None = None) -> None:
    """An error as plain lines on stderr: never wrapped, never styled, easy to grep."""
    sys.stderr.write(f"keepwell: {message}\n")
    for line in details or []:
        sys.stderr.write(f"  {line}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    main()
