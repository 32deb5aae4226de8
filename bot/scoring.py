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

Memory is the usage windows of the book (a few small numbers per account) plus a few chunks,
whatever the size of the book; the result is the same as scoring the whole book at once
(`score_book`).

From `PARALLEL_FROM` accounts on, step 2 runs in worker processes (one per core, at most
`MAX_WORKERS`): scoring is Python and holds the GIL, so a second core only helps from another
process. Each worker has its own engine; it is sent a range with that range's usage windows, reads
the rest of the range's evidence, scores it and sends back the rows ready to store, and this process
writes them. Workers start from a fork server (never a fork of this process, which may hold threads
and open connections); starting one costs about a second, hence the threshold.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.config import HealthConfig
from bot.core.bulk import Columns, score_columns
from bot.core.health import Peers, engagement_of, is_active
from bot.core.model import UsageWindow
from bot.db.engine import make_engine
from bot.store import Book, PkRange, SnapshotRow, UsageRead

CHUNK = 5_000  # accounts per chunk: big enough that each query is one efficient range scan
PARALLEL_FROM = 50_000  # accounts: below this, starting worker processes costs more than it saves
MAX_WORKERS = 4


@dataclass(frozen=True)
class RunTotals:
    """What a run stored: counts over the customers of the day (accounts scored covers everyone)."""

    accounts: int
    customers: int
    bands: dict[str, int]
    danger: int
    forgotten: int
    threshold: float | None
    workers: int = 0
    worker_peak_mb: float = 0.0


def _is_customer(start: date, churn: date | None, day: date) -> bool:
    return start <= day and (churn is None or day < churn)


def day_peers(book: Book, as_of: date, cfg: HealthConfig, usage: UsageRead) -> Peers:
    """The day's peers: the engagement of the customers with some use in the window."""
    windows = usage.windows
    if windows is None:
        return Peers.of([], cfg.danger_quantile)
    values: list[float | None] = []
    for pk, start, churn, seats in book.peer_facts():
        window = windows.get(pk)
        if is_active(window) and _is_customer(start, churn, as_of):
            values.append(engagement_of(seats, window))
    return Peers.of(values, cfg.danger_quantile)


@dataclass
class _Tally:
    customers: int = 0
    danger: int = 0
    forgotten: int = 0
    worker_peak_mb: float = 0.0  # the largest resident size a worker process reached

    def __post_init__(self) -> None:
        self.bands: Counter[str] = Counter()

    def add(self, other: _Tally) -> None:
        self.customers += other.customers
        self.danger += other.danger
        self.forgotten += other.forgotten
        self.bands.update(other.bands)
        self.worker_peak_mb = max(self.worker_peak_mb, other.worker_peak_mb)


def _score_chunk(
    columns: Columns, cfg: HealthConfig, as_of: date, peers: Peers, weights: dict[str, Any]
) -> tuple[list[SnapshotRow], _Tally]:
    """Score a chunk: its snapshot rows ready to store, and its counts over the day's customers."""
    rows, bands = score_columns(columns, cfg, as_of, peers, weights)
    tally = _Tally()
    day = as_of.toordinal()
    customer = ((columns.start <= day) & ((columns.churn == 0) | (day < columns.churn))).tolist()
    for row, band, is_customer in zip(rows, bands, customer, strict=True):
        if is_customer:
            tally.customers += 1
            tally.bands[band] += 1
            tally.danger += row[3]
            tally.forgotten += row[4]
    return rows, tally


def score_and_store(
    book: Book, cfg: HealthConfig, as_of: date, chunk: int = CHUNK, workers: int | None = None
) -> RunTotals:
    """Score every account as of a day and replace the day's snapshots with the result.

    `workers`: processes to score in (default: one per core from `PARALLEL_FROM` accounts, else 0,
    which scores in this process with a reader thread)."""
    usage = book.usage_read(as_of, cfg)
    peers = day_peers(book, as_of, cfg, usage)
    spans = book.pk_ranges(chunk)
    if workers is None:
        large = book.account_count() >= PARALLEL_FROM
        workers = min(MAX_WORKERS, os.cpu_count() or 1) if large else 0
    tally = _Tally()
    with book.snapshot_writer(as_of) as writer:
        writer.threshold = peers.threshold
        chunks = (_in_processes(book, cfg, as_of, peers, usage, spans, workers) if workers > 1
                  else _in_thread(book, cfg, as_of, peers, usage, spans))
        for rows, part in chunks:
            writer.write_rows(rows)
            tally.add(part)
    return RunTotals(writer.accounts, tally.customers,
                     {b: tally.bands[b] for b in ("healthy", "watch", "at_risk")},
                     tally.danger, tally.forgotten, peers.threshold, workers if workers > 1 else 0,
                     tally.worker_peak_mb)


def _in_thread(
    book: Book, cfg: HealthConfig, as_of: date, peers: Peers, usage: UsageRead, spans: list[PkRange]
) -> Iterator[tuple[list[SnapshotRow], _Tally]]:
    """Score here, chunk after chunk, while a reader thread fetches the next chunk's evidence."""
    weights = cfg.weights.model_dump()

    def fetch(span: PkRange) -> Columns:
        return book.score_columns(as_of, cfg, span, usage)

    with ThreadPoolExecutor(1, "keepwell-score-read") as reader:
        pending = reader.submit(fetch, spans[0]) if spans else None
        for i in range(len(spans)):
            assert pending is not None
            columns = pending.result()
            pending = reader.submit(fetch, spans[i + 1]) if i + 1 < len(spans) else None
            yield _score_chunk(columns, cfg, as_of, peers, weights)


# worker processes ---------------------------------------------------------------------------------

_worker: dict[str, Any] = {}  # in a worker process: its book and the run's settings


def _start_worker(url: str, cfg: HealthConfig, as_of: date, peers: Peers) -> None:
    _worker.update(book=Book(make_engine(url)), cfg=cfg, as_of=as_of, peers=peers,
                   weights=cfg.weights.model_dump())


def _work(span: PkRange, usage: UsageRead) -> tuple[list[SnapshotRow], _Tally]:
    w = _worker
    columns = w["book"].score_columns(w["as_of"], w["cfg"], span, usage)
    rows, tally = _score_chunk(columns, w["cfg"], w["as_of"], w["peers"], w["weights"])
    tally.worker_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return rows, tally


def _in_processes(
    book: Book, cfg: HealthConfig, as_of: date, peers: Peers, usage: UsageRead, spans: list[PkRange],
    workers: int,
) -> Iterator[tuple[list[SnapshotRow], _Tally]]:
    """Score in worker processes, a few chunks in flight at a time (memory stays a few chunks)."""
    url = book.engine.url.render_as_string(hide_password=False)
    windows = usage.windows

    parts: list[UsageRead] = [usage] * len(spans)
    if windows is not None:  # each range's windows, in one pass over the book
        cut: list[dict[int, UsageWindow]] = [{} for _ in spans]
        starts = [span.lo for span in spans]
        for pk, window in windows.items():
            cut[bisect_right(starts, pk) - 1][pk] = window
        parts = [UsageRead(c) for c in cut]

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bot.scoring"])
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(url, cfg, as_of, peers)) as pool:
        queue: deque[Future[tuple[list[SnapshotRow], _Tally]]] = deque()
        todo = iter(range(len(spans)))
        for i in todo:
            queue.append(pool.submit(_work, spans[i], parts[i]))
            if len(queue) >= 2 * workers:
                break
        while queue:
            done = queue.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                queue.append(pool.submit(_work, spans[nxt], parts[nxt]))
            yield done
