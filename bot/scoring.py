"""The whole-book scoring run behind `keepwell score`: set-based reads, chunked, pipelined, streamed.

1. One aggregate reads every account's usage windows (`Book.usage_read`), and the accounts' start,
   churn and seats: enough to choose the day's peers and place the danger-zone line before any
   account is scored.
2. The accounts are cut into ranges of primary keys. A reader thread fetches the next range's other
   evidence (accounts, NPS, tickets, invoices, touches, champions) on a connection of its own while
   this thread scores the current one: the database (and its driver, which lets go of the GIL while
   it waits) works beside the scoring on a second core.
3. Each scored chunk goes straight into the day's snapshots through the driver (`executemany` on
   SQLite, `COPY` on PostgreSQL), inside one transaction that replaced the day's old snapshots and
   records the run at the end: a failed run leaves the previous snapshots as they were.

Memory is the usage windows of the book (a few small numbers per account) plus two chunks, whatever
the size of the book; the result is the same as scoring the whole book at once (`score_book`).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

from bot.config import HealthConfig
from bot.core.health import Peers, engagement_of, is_active, score_account
from bot.core.model import HealthInputs
from bot.store import Book, PkRange, UsageRead

CHUNK = 5_000  # accounts per chunk: big enough that each query is one efficient range scan


@dataclass(frozen=True)
class RunTotals:
    """What a run stored: counts over the customers of the day (accounts scored covers everyone)."""

    accounts: int
    customers: int
    bands: dict[str, int]
    danger: int
    forgotten: int
    threshold: float | None


def _is_customer(start: date, churn: date | None, day: date) -> bool:
    return start <= day and (churn is None or day < churn)


def day_peers(book: Book, as_of: date, cfg: HealthConfig, usage: UsageRead) -> tuple[Peers, set[int]]:
    """The day's peers (customers with some use in the window) and their primary keys."""
    windows = usage.windows
    if windows is None:
        return Peers.of([], cfg.danger_quantile), set()
    values: list[float | None] = []
    pks: set[int] = set()
    for pk, start, churn, seats in book.peer_facts():
        window = windows.get(pk)
        if is_active(window) and _is_customer(start, churn, as_of):
            pks.add(pk)
            values.append(engagement_of(seats, window))
    return Peers.of(values, cfg.danger_quantile), pks


def score_and_store(book: Book, cfg: HealthConfig, as_of: date, chunk: int = CHUNK) -> RunTotals:
    """Score every account as of a day and replace the day's snapshots with the result."""
    usage = book.usage_read(as_of, cfg)
    peers, peer_pks = day_peers(book, as_of, cfg, usage)
    weights = cfg.weights.model_dump()
    bands: Counter[str] = Counter()
    customers = danger = forgotten = 0

    def fetch(span: PkRange) -> list[HealthInputs]:
        return book.health_inputs(as_of, cfg, span, usage_read=usage)

    spans = book.pk_ranges(chunk)
    with book.snapshot_writer(as_of) as writer, ThreadPoolExecutor(1, "keepwell-score-read") as reader:
        writer.threshold = peers.threshold
        pending = reader.submit(fetch, spans[0]) if spans else None
        for i in range(len(spans)):
            assert pending is not None
            inputs = pending.result()
            pending = reader.submit(fetch, spans[i + 1]) if i + 1 < len(spans) else None
            scored = [(i_.account, score_account(i_, cfg, as_of, peers, None, weights)) for i_ in inputs]
            writer.write((a.pk, s, a.pk in peer_pks) for a, s in scored)
            for account, s in scored:
                if account.is_customer_on(as_of):
                    customers += 1
                    bands[s.band] += 1
                    danger += s.danger_zone
                    forgotten += s.forgotten_zone
    return RunTotals(writer.accounts, customers, {b: bands[b] for b in ("healthy", "watch", "at_risk")},
                     danger, forgotten, peers.threshold)
