"""The whole-book scoring run behind `keepwell score`: set-based reads, chunked, pipelined, streamed.

1. The accounts are cut into ranges of primary keys. A reader thread reads every account once, then
   the first ranges' evidence (NPS, tickets, invoices, touches, champions) straight into columns
   (`Book.score_columns`)
   while this thread and one more read every account's usage windows, half the ranges each, range by
   range (`Book.usage_columns`); then this thread places the day's peers and the danger-zone line,
   which every range needs before it is scored.
2. Each range is scored at once on its columns (`bot.core.bulk`: NumPy, the same rows as
   `score_account` gives one account at a time) while the reader fetches the next.
3. A writer thread, on a connection of its own, deletes the day's old snapshots and stores each scored
   range as it comes (`executemany` on SQLite, binary `COPY` on PostgreSQL) in one transaction that records
   the run at the end: a failed run, wherever it fails, leaves the previous snapshots as they were.

PostgreSQL's driver lets go of the GIL while the server works, so reads, scoring and writes overlap
on two cores. SQLite's gives it up for every row it steps, and beside a busy Python thread each row
then waits for the GIL: on SQLite the run reads, scores and writes in this one thread.

Memory is the usage windows of the book (a few small numbers per account) plus a few ranges, whatever
the size of the book; the result is the same as scoring the whole book at once (`score_book`).

From `PARALLEL_FROM` accounts on, step 2 runs in worker processes (one per core, at most
`MAX_WORKERS`): scoring is Python and holds the GIL, so a second core only helps from another
process. Each worker has its own engine; it is sent a range with that range's usage windows, reads
the rest of the range's evidence, scores it and sends back the rows ready to store. Workers start
from a fork server (never a fork of this process, which may hold threads and open connections);
starting one costs about a second, hence the threshold.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from queue import Full, Queue
from typing import Any

from bot import collector
from bot.config import HealthConfig
from bot.core.bulk import Columns, UsageColumns, peer_engagements, score_columns
from bot.core.health import Peers
from bot.db.engine import make_engine
from bot.store import Book, PeerColumns, PkRange, SnapshotRow

CHUNK = 2_500  # accounts per chunk: each query is one efficient range scan; small enough to overlap
READ_AHEAD = 4  # chunks read ahead of the scoring (at 10,000 accounts: all, while the usage is read)
IN_FLIGHT = 2  # chunks scored ahead of the writing
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


def day_peers(accounts: PeerColumns, as_of: date, cfg: HealthConfig, usage: UsageColumns) -> Peers:
    """The day's peers: the engagement of the customers with some use in the window (`accounts`:
    `Book.peer_columns`)."""
    if not usage.known:
        return Peers.of([], cfg.danger_quantile)
    return Peers.of(peer_engagements(usage, *accounts, as_of), cfg.danger_quantile)


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
    which scores in this process with a reader thread). No garbage collection meanwhile (see
    `bot.collector`: full collections were 15-45 % of a 10k run)."""
    with collector.paused():
        return _score_and_store(book, cfg, as_of, chunk, workers)


def _score_and_store(
    book: Book, cfg: HealthConfig, as_of: date, chunk: int, workers: int | None
) -> RunTotals:
    spans = book.pk_ranges(chunk)
    if workers is None:
        large = sum(span.accounts for span in spans) >= PARALLEL_FROM
        workers = min(MAX_WORKERS, os.cpu_count() or 1) if large else 0
    tally = _Tally()
    run: dict[str, Any] = {}
    if workers <= 1 and book.engine.dialect.name == "sqlite":
        # One thread: the sqlite3 driver gives the GIL up for every row it steps, so beside a busy
        # Python thread each row waits up to the 5 ms switch interval (the usage aggregate of 10k
        # accounts: 0.21 s alone, 45 s beside a thread counting in Python).
        with book.snapshot_writer(as_of) as writer:
            for rows, part in _in_thread(book, cfg, as_of, spans, run, read_ahead=0):
                writer.write_rows(rows)
                tally.add(part)
            writer.threshold = run["peers"].threshold
        return _totals(writer.accounts, tally, run["peers"], 0)
    with ThreadPoolExecutor(1, "keepwell-score-write") as writing:
        rows_in: Queue[list[SnapshotRow] | _Abort | None] = Queue(maxsize=IN_FLIGHT)
        stored = writing.submit(_store, book, as_of, rows_in, run)
        try:
            if workers > 1:
                usage = book.usage_columns(as_of, cfg)
                run["peers"] = day_peers(book.peer_columns(), as_of, cfg, usage)
                chunks = _in_processes(book, cfg, as_of, run["peers"], usage, spans, workers)
            else:
                chunks = _in_thread(book, cfg, as_of, spans, run)
            for rows, part in chunks:
                _hand(rows_in, rows, stored)
                tally.add(part)
            _hand(rows_in, None, stored)
        except BaseException:
            if not stored.done():
                _hand(rows_in, _Abort(), stored)
            raise
        accounts = stored.result()
    return _totals(accounts, tally, run["peers"], workers if workers > 1 else 0)


def _totals(accounts: int, tally: _Tally, peers: Peers, workers: int) -> RunTotals:
    return RunTotals(accounts, tally.customers, {b: tally.bands[b] for b in ("healthy", "watch", "at_risk")},
                     tally.danger, tally.forgotten, peers.threshold, workers, tally.worker_peak_mb)


class _Abort:
    """Sent to the writer thread when scoring failed: it rolls the day back."""


class _Aborted(Exception):
    pass


def _store(book: Book, as_of: date, rows_in: Queue[list[SnapshotRow] | _Abort | None],
           run: dict[str, Any]) -> int:
    """The writer thread: replace the day's snapshots with the rows as they come, in one transaction.

    On its own connection, so the day's old rows are deleted, and each chunk stored, while this
    process reads and scores the next ones."""
    with book.snapshot_writer(as_of) as writer:
        while (rows := rows_in.get()) is not None:
            if isinstance(rows, _Abort):
                raise _Aborted
            writer.write_rows(rows)
        writer.threshold = run["peers"].threshold
    return writer.accounts


def _hand(rows_in: Queue[Any], item: Any, stored: Future[int]) -> None:
    """Queue rows for the writer thread, or raise its error if it has stopped."""
    while True:
        try:
            rows_in.put(item, timeout=0.1)
            return
        except Full:
            if stored.done():
                stored.result()  # raises the writer's error
                raise RuntimeError("the snapshot writer stopped early") from None


def _in_thread(
    book: Book, cfg: HealthConfig, as_of: date, spans: list[PkRange], run: dict[str, Any],
    read_ahead: int = READ_AHEAD,
) -> Iterator[tuple[list[SnapshotRow], _Tally]]:
    """Score here, chunk after chunk, while a reader thread fetches the next chunks' evidence (none
    with `read_ahead` 0: each chunk is read when it is scored).

    The reader starts on the accounts (read once: the peers are chosen from them, and each chunk takes
    its own from them, so a run scores the accounts as they were when it started; evidence of one
    added since is left out) and the first chunks' other evidence while the usage
    windows are read, half the ranges here and half in one more thread (each on a connection of its
    own: PostgreSQL's server then seeks on two cores, and the windows are in 15-20 % sooner); then the
    day's peers are placed (`run["peers"]`), which every chunk needs before it can be scored."""
    weights = cfg.weights.model_dump()
    with ThreadPoolExecutor(1, "keepwell-score-read") as reader, \
            ThreadPoolExecutor(1, "keepwell-score-usage") as second:  # no thread starts unless used
        accounts = reader.submit(book.account_columns) if read_ahead else None

        def evidence(span: PkRange) -> Columns:  # on the reader: the accounts are read by then
            return book.score_columns(as_of, cfg, span, accounts=accounts.result() if accounts else None)

        ahead = deque(reader.submit(evidence, span) for span in spans[:read_ahead])
        half = len(spans) // 2 if read_ahead else 0
        later = second.submit(book.usage_columns, as_of, cfg, spans[half:]) if half else None
        usage = book.usage_columns(as_of, cfg, spans[:half] if half else spans)
        if later is not None:
            usage = UsageColumns.concat([usage, later.result()])
        peers = run["peers"] = day_peers(accounts.result().peers if accounts else book.peer_columns(), as_of,
                                         cfg, usage)
        for i in range(len(spans)):
            if read_ahead:
                columns = ahead.popleft().result()
                if i + read_ahead < len(spans):
                    ahead.append(reader.submit(evidence, spans[i + read_ahead]))
            else:
                columns = book.score_columns(as_of, cfg, spans[i])
            columns.add_usage(usage)
            yield _score_chunk(columns, cfg, as_of, peers, weights)


# worker processes ---------------------------------------------------------------------------------

_worker: dict[str, Any] = {}  # in a worker process: its book and the run's settings


def _start_worker(url: str, cfg: HealthConfig, as_of: date, peers: Peers) -> None:
    _worker.update(book=Book(make_engine(url)), cfg=cfg, as_of=as_of, peers=peers,
                   weights=cfg.weights.model_dump())
    collector.settle()


def _work(span: PkRange, usage: UsageColumns) -> tuple[list[SnapshotRow], _Tally]:
    w = _worker
    with collector.paused():
        columns = w["book"].score_columns(w["as_of"], w["cfg"], span, usage)
        rows, tally = _score_chunk(columns, w["cfg"], w["as_of"], w["peers"], w["weights"])
    tally.worker_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return rows, tally


def _in_processes(
    book: Book, cfg: HealthConfig, as_of: date, peers: Peers, usage: UsageColumns, spans: list[PkRange],
    workers: int,
) -> Iterator[tuple[list[SnapshotRow], _Tally]]:
    """Score in worker processes, a few chunks in flight at a time (memory stays a few chunks)."""
    url = book.engine.url.render_as_string(hide_password=False)
    parts = [usage.part(span.lo, span.hi) for span in spans]

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
