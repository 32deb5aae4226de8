"""`keepwell demo`: the newcomer's tour on a generated book, with no credentials at all.

The book is written as ordinary CSV files (kept in ./demo-data, to show the formats) and goes through
the same importer as a customer's own files, then it is scored, summarised, and a handful of
check-in drafts are written to the local outbox.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.text import Text
from sqlalchemy import delete, func, select

from bot import render
from bot.core.digest import build_digest
from bot.db import models as m
from bot.drafting import Skip, draft_for, pick_recipient
from bot.emails import environment
from bot.errors import BadInput
from bot.sample_book import generate_book
from bot.services import Keepwell
from bot.store import Book
from integrations.outbox import Outbox

PREFIX = "DEMO-"
DRAFTS = 5


def _reset_demo_book(service: Keepwell) -> None:
    """Remove an earlier demo book (never anyone's own accounts) so a re-run starts clean."""
    A = m.table_of(m.Account)
    with service.book.engine.begin() as conn:
        own = conn.execute(
            select(func.count()).select_from(A).where(A.c.account_id.not_like(f"{PREFIX}%"))
        ).scalar()
        if own:
            raise BadInput(
                f"this database already holds {own} account(s) of your own; the demo will not mix its "
                "book into them. Run it on its own database, e.g. keepwell demo --db sqlite:///demo.db"
            )
        Book.delete_accounts(conn, A.c.account_id.like(f"{PREFIX}%"))
        conn.execute(delete(m.table_of(m.ScoreRun)))


def run_demo(
    service: Keepwell,
    console: Console,
    *,
    accounts: int,
    seed: int,
    as_of: date,
    data_dir: Path,
    outbox: Path,
) -> None:
    started = time.perf_counter()
    _reset_demo_book(service)
    data_dir.mkdir(parents=True, exist_ok=True)
    files = generate_book(data_dir, accounts=accounts, seed=seed, as_of=as_of, id_prefix=PREFIX)
    console.print(Text(f"Generated a book of {accounts} accounts in {data_dir}/ (seed {seed}); importing:"))
    for kind, path in files:
        render.import_report(console, service.import_file(kind, path))
    render.score_summary(console, service.score(as_of))
    console.print()

    scored = service.book_health(as_of)
    report = service.retention(as_of - timedelta(days=364), as_of)
    render.digest(console, build_digest([(s.account, s.health) for s in scored], as_of, report))

    box = Outbox(outbox)
    env = environment()
    written: list[Path] = []
    skipped: list[Skip] = []
    for item in service.risk(as_of):
        if len(written) >= DRAFTS:
            break
        account = item.account
        contact = pick_recipient(service.book.contacts(account.pk))
        if contact is None:
            continue
        inputs = service.book.health_inputs(as_of, service.config.health, [account.pk])[0]
        touch = service.book.latest_touch(account.pk, as_of)
        result = draft_for(env, "checkin", account, contact, inputs, touch, as_of, health=item.health,
                           settings=service.config.drafts)
        if isinstance(result, Skip):
            skipped.append(result)
            continue
        path, _ = box.save(result, datetime.combine(as_of, datetime.min.time(), tzinfo=UTC))
        written.append(path)
    console.print()
    console.print(Text(f"Wrote {len(written)} check-in drafts for at-risk accounts to {outbox}/ "
                       "(open them in any mail client; nothing was sent):"))
    for path in written:
        console.print(Text(f"  {path}"))
    for skip in skipped:
        console.print(Text(f"  skipped {skip.to}: {skip.reason}", style="yellow"))
    console.print()
    console.print(Text(f"Done in {time.perf_counter() - started:.1f}s. Try: keepwell health acme · "
                       "keepwell risk --segment tier:enterprise · keepwell retention --cohorts"))
