"""The store gathers exactly the evidence the scorecard needs, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from bot.config import HealthConfig
from bot.core.health import explain
from bot.core.model import Driver, NpsResponse, OpenTicket, OverdueInvoice
from bot.core.retention import mrr_on, retention
from bot.errors import BadInput
from bot.store import A, S, Scored, _drivers, drivers_json

AS_OF = date(2026, 6, 30)


def day(n: int) -> str:
    """n days before AS_OF."""
    return (AS_OF - timedelta(days=n)).isoformat()


@pytest.fixture
def book(service, csv_file):
    files = [
        ("accounts", "account_id,name,start_date,domain,seats,mrr,renewal_date,churn_date,churn_reason\n"
                     "A1,ACME Corp,2024-01-01,acme.example,10,1000,2026-08-01,,\n"
                     "A2,Globex,2024-01-01,globex.example,5,500,,,\n"
                     f"A3,Initech,2024-01-01,initech.example,5,200,,{day(100)},price\n"
                     "A4,Acme Rockets,2025-01-01,rockets.example,,,,,\n"),
        ("contacts", "email,role\ndana@acme.example,champion\nbob@globex.example,user\n"),
        ("usage", "account_id,date,active_users\n"
                  + "".join(f"A1,{day(n)},{4 if n < 30 else 8}\n" for n in range(60))
                  + f"A2,{day(45)},3\n"),
        ("usage", "account_id,date,user_id\n"
                  + "".join(f"A1,{day(n)},u{n % 5}\n" for n in range(3))),
        ("nps", f"date,score,account_id\n{day(400)},10,A1\n{day(10)},3,A1\n{day(5)},9,A2\n"),
        ("tickets", "ticket_id,account_id,opened_at,closed_at,priority,kind\n"
                    f"T1,A1,{day(3)}T10:00:00Z,,urgent,bug\n"
                    f"T2,A1,{day(20)},{day(10)},high,bug\n"
                    f"T3,A1,{day(2)},{(AS_OF + timedelta(days=2)).isoformat()},low,question\n"),
        ("invoices", "invoice_id,account_id,amount,due_date,paid_date\n"
                     f"I1,A1,1000,{day(14)},\nI2,A1,1000,{day(44)},{day(40)}\n"
                     f"I3,A2,500,{day(5)},{(AS_OF + timedelta(days=1)).isoformat()}\n"),
        ("touches", f"account_id,date,team,note\nA1,{day(4)},cs,call went well\nA1,{day(30)},sales,\n"),
    ]
    for i, (kind, text) in enumerate(files):
        service.import_file(kind, csv_file(f"{i}-{kind}.csv", text))
    return service


def by_id(service, cfg=None):
    inputs = service.book.health_inputs(AS_OF, cfg or HealthConfig())
    return {i.account.account_id: i for i in inputs}


def test_usage_window_is_aggregated_in_the_database(book):
    a1 = by_id(book)["A1"]
    assert a1.usage is not None
    # the last 3 days were rolled up from user-level rows (1 distinct user a day)
    assert a1.usage.user_days == 27 * 4 + 3
    assert a1.usage.prev_user_days == 30 * 8
    assert a1.usage.active_days == 30
    assert a1.usage.peak_dau == 4
    assert a1.usage.mau == 3
    assert a1.usage.last_active == AS_OF


def test_an_account_without_recent_use_has_an_empty_window(book):
    inputs = by_id(book)
    assert inputs["A2"].usage is not None and inputs["A2"].usage.user_days == 0
    assert inputs["A2"].usage.last_active == AS_OF - timedelta(days=45)
    assert inputs["A4"].usage is not None and inputs["A4"].usage.last_active is None


def test_evidence_as_of_the_day(book):
    a1 = by_id(book)["A1"]
    assert a1.nps == (NpsResponse(AS_OF - timedelta(days=10), 3),)  # the 400-day-old answer is out
    assert set(a1.open_tickets or ()) == {OpenTicket("urgent", "bug"), OpenTicket("low", "question")}
    assert a1.overdue_invoices == (OverdueInvoice(Decimal("1000.00"), AS_OF - timedelta(days=14)),)
    assert a1.last_touch == AS_OF - timedelta(days=4)
    assert a1.has_champion is True
    a2 = by_id(book)["A2"]
    assert a2.overdue_invoices == (OverdueInvoice(Decimal("500.00"), AS_OF - timedelta(days=5)),)
    assert a2.has_champion is False and a2.last_touch is None and a2.open_tickets == ()


def test_one_account_and_the_whole_book_agree(book):
    """On two days and settings, one after the other: the card's statements are built once, with the
    account and the days as parameters (nothing of one call may stay in them for the next)."""
    for back, window in ((0, 30), (12, 7), (0, 30)):
        cfg = HealthConfig(window_days=window)
        day = AS_OF - timedelta(days=back)
        everyone = {i.account.account_id: i for i in book.book.health_inputs(day, cfg)}
        for account in book.book.accounts():
            [one] = book.book.health_inputs(day, cfg, [account.pk])
            assert one == everyone[account.account_id]
            assert book.book.account_inputs(account, day, cfg) == one  # the health card's own read


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_the_accounts_are_cut_into_ranges_of_the_size_asked_in_key_order(book, size):
    with book.book.engine.connect() as conn:
        ids = conn.execute(select(A.c.id).order_by(A.c.id)).scalars().all()
    spans = book.book.pk_ranges(size)
    assert [(s.lo, s.hi, s.accounts) for s in spans] == [
        (ids[i], ids[min(i + size, len(ids)) - 1], len(ids[i:i + size])) for i in range(0, len(ids), size)]


def test_an_empty_book_has_no_ranges(service):
    assert service.book.pk_ranges(3) == []


def test_the_columns_a_run_scores_are_what_the_accounts_inputs_say(book):
    """`Book.score_columns` (a whole-book run's read) against `health_inputs` (one account's)."""
    from bot.core.bulk import Columns
    from bot.store import PkRange

    cfg = HealthConfig()
    store = book.book
    usage = store.usage_columns(AS_OF, cfg)
    accounts = store.account_columns()  # read once by a run, each range's taken from them
    for span in [*store.pk_ranges(1), *store.pk_ranges(2), PkRange(0, 10**9)]:
        inputs = sorted(store.health_inputs(AS_OF, cfg, span), key=lambda i: i.account.pk)
        want = Columns.of(inputs, cfg, AS_OF)
        for got in (store.score_columns(AS_OF, cfg, span, usage),
                    store.score_columns(AS_OF, cfg, span, usage, accounts=accounts)):
            for name, value in vars(want).items():
                same = getattr(got, name)
                assert (list(same) if hasattr(same, "tolist") else same) == (
                    list(value) if hasattr(value, "tolist") else value), name


def test_an_account_added_after_a_run_read_the_accounts_is_left_out_of_its_ranges(book, csv_file):
    """A run reads the accounts once; one added meanwhile, inside a range, with an open ticket and an
    overdue invoice of its own, is not scored by that run (nor does it stop it)."""
    from bot.store import PkRange

    cfg = HealthConfig()
    accounts = book.book.account_columns()
    book.import_file("accounts", csv_file("late.csv", "account_id,name,start_date\nA9,Lateco,2025-01-01\n"))
    book.import_file("tickets", csv_file("late-t.csv", "ticket_id,account_id,opened_at,priority\n"
                                         f"T9,A9,{day(3)},urgent\n"))
    book.import_file("invoices", csv_file("late-i.csv", "invoice_id,account_id,amount,due_date\n"
                                          f"I9,A9,70,{day(9)}\n"))
    got = book.book.score_columns(AS_OF, cfg, PkRange(0, 10**9), accounts=accounts)
    assert got.pk == accounts.rows[0].tolist() and len(got.pk) == 4
    assert sum(got.tickets_open) == 2 and sum(got.overdue_n) == 2  # A1's two, A1's and A2's


def test_a_runs_latest_nps_answer_is_the_last_of_the_latest_day(book, csv_file):
    """Two answers on one day: the one imported last is the account's latest, in a run's tally
    (`_nps_tally`, one packed maximum an account) as in what the health card reads; a 0 is kept."""
    from bot.store import PkRange

    book.import_file("nps", csv_file("more-nps.csv", "date,score,account_id,touchpoint\n"
                                     f"{day(2)},4,A2,support\n{day(2)},8,A2,onboarding\n"
                                     f"{day(3)},10,A2,other\n{day(1)},0,A4,other\n"))
    cfg = HealthConfig()
    got = book.book.score_columns(AS_OF, cfg, PkRange(0, 10**9))
    at = {a.account_id: got.pk.index(a.pk) for a in book.book.accounts()}
    latest = AS_OF.toordinal() - 2
    def nps(account: str) -> list[int]:
        k = at[account]
        return [int(col[k]) for col in (got.nps_n, got.nps_promoters, got.nps_detractors, got.nps_latest,
                                        got.nps_latest_day)]

    assert nps("A2") == [4, 2, 1, 8, latest]  # 9, 10, 4 and 8: the 8 was imported after the 4
    assert nps("A4") == [1, 0, 1, 0, AS_OF.toordinal() - 1]
    from bot.core.bulk import Columns

    want = Columns.of(sorted(book.book.health_inputs(AS_OF, cfg), key=lambda i: i.account.pk), cfg, AS_OF)
    for name in ("nps_n", "nps_promoters", "nps_detractors", "nps_latest", "nps_latest_day"):
        assert list(getattr(got, name)) == list(getattr(want, name)), name


def test_the_usage_columns_of_a_run_are_the_windows_the_health_card_reads(book):
    """`usage_columns` (a whole-book run) against `usage_read` (one account's card, the same windows)."""
    cfg = HealthConfig()
    store = book.book
    columns = store.usage_columns(AS_OF, cfg)
    card = store.usage_read(AS_OF, cfg).windows
    assert card and any(w.active_days for w in card.values())
    for pk in card:
        assert store.usage_read(AS_OF, cfg, [pk]).windows == {pk: card[pk]}
    # a run leaves out the active days (nothing it scores reads them)
    windows = {pk: dataclasses.replace(w, active_days=0) for pk, w in card.items()}
    assert columns.known
    assert columns.windows() == windows
    for size in (1, 3):  # read range by range, as a run in this process reads them
        assert store.usage_columns(AS_OF, cfg, store.pk_ranges(size)).windows() == windows
    pks = sorted(windows)
    lo, hi = pks[0], pks[-1]
    assert columns.part(lo + 1, hi).windows() == {pk: w for pk, w in windows.items() if lo < pk <= hi}
    # a run reads them in halves (two threads) and puts them back together
    from bot.core.bulk import UsageColumns

    assert UsageColumns.concat([columns.part(0, lo), columns.part(lo + 1, 10**9)]).windows() == windows
    # accounts without rows read as no use, in the order asked
    unknown = max(pks) + 1000
    taken = columns.take([unknown, hi, lo])
    assert taken.user_days.tolist() == [0, windows[hi].user_days, windows[lo].user_days]
    assert taken.mau.tolist()[0] == -1 and taken.last_active.tolist()[0] == 0
    assert columns.part(unknown, unknown + 5).take([unknown]).user_days.tolist() == [0]


def test_reading_usage_by_ranges_turns_parallel_workers_off_for_that_read_only(book):
    if book.book.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    with book.book.engine.connect() as conn:
        default = conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar()
    for _ in range(3):  # whichever pooled connection the read had
        book.book.usage_columns(AS_OF, HealthConfig(), book.book.pk_ranges(2))
    with book.book.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() == default


def test_a_run_commits_without_waiting_for_the_disk_and_leaves_the_setting_as_it_was(book):
    """Snapshots are derived data: the run's commit does not wait for its WAL to be flushed (a crash
    right after loses the day and its run record together, and the next score stores them again).
    The setting is the run's transaction's alone; pooled connections keep the server's."""
    if book.book.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    with book.book.engine.connect() as conn:
        default = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
    seen = []
    with book.book.snapshot_writer(AS_OF) as writer:
        seen.append(writer.conn.exec_driver_sql("SHOW synchronous_commit").scalar())
    assert seen == ["off"]
    assert book.book.scored_on(AS_OF)  # committed, and seen by other connections at once
    for _ in range(3):  # whichever pooled connection the run had
        with book.book.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == default


def test_kinds_never_imported_are_unknown_not_zero(service, csv_file):
    service.import_file("accounts", csv_file("a.csv", "account_id,name,start_date\nA1,One,2025-01-01"))
    [only] = service.book.health_inputs(AS_OF, HealthConfig())
    assert only.usage is None and only.open_tickets is None and only.overdue_invoices is None
    assert only.has_champion is None and not only.touches_known


def test_snapshots_round_trip_and_previous_scores(book):
    book.score(AS_OF - timedelta(days=1))
    yesterday = book.book.snapshots(AS_OF - timedelta(days=1))
    summary = book.score(AS_OF)
    assert summary.accounts == 3  # A3 churned before AS_OF
    stored = book.book.snapshots(AS_OF)
    assert stored is not None and len(stored) == 4
    card = book.health("A1", AS_OF)
    assert yesterday is not None
    assert card.item.health.previous_score == yesterday[card.item.account.pk].score
    kept = stored[card.item.account.pk]
    assert [d.factor for d in card.item.health.drivers] == [d.factor for d in kept.drivers]
    again = book.score(AS_OF)  # re-scoring replaces, never duplicates
    assert again.accounts == 3 and len(book.book.snapshots(AS_OF) or {}) == 4


@pytest.mark.parametrize(
    ("query", "expected"),
    [("A1", "ACME Corp"), ("acme corp", "ACME Corp"), ("glob", "Globex"), ("Initech Inc", "Initech"),
     ("rockets", "Acme Rockets")],
)
def test_resolve_finds_accounts(book, query, expected):
    assert book.book.resolve(query).name == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [("acme", "'acme' matches several accounts; did you mean 'ACME Corp' or 'Acme Rockets'?"),
     ("Initek", "no account 'Initek'; did you mean 'Initech'?"),
     ("zzzz", "nothing close"), ("   ", "give an account id or name")],
)
def test_resolve_explains_misses(book, query, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        book.book.resolve(query)


def test_risk_and_accounts_use_stored_or_live_scores_alike(book):
    live = {s.account.account_id: s.health.score for s in book.accounts(AS_OF)}
    book.score(AS_OF)
    stored = {s.account.account_id: s.health.score for s in book.accounts(AS_OF)}
    assert live == stored
    assert "A3" not in stored  # churned: not a customer on AS_OF


def separate_reads(service, as_of):
    """What book_health built from the accounts, the day's snapshots and the previous scores, apart."""
    accounts = {a.pk: a for a in service.book.accounts()}
    stored = service.book.snapshots(as_of)
    previous = service.book.previous_scores(as_of)
    return {pk: Scored(accounts[pk], dataclasses.replace(h, previous_score=previous.get(pk)))
            for pk, h in stored.items()}


def test_stored_health_is_each_account_with_its_snapshot_and_previous_score(book, csv_file):
    assert book.book.stored_health(AS_OF) is None  # `keepwell score` did not run that day
    for n in (3, 1, 0):
        book.score(AS_OF - timedelta(days=n))
    stored = book.book.stored_health(AS_OF)
    assert stored is not None
    assert [s.account for s in stored] == book.book.accounts()  # every account, by id
    assert {s.account.pk: s for s in stored} == separate_reads(book, AS_OF)
    assert all(s.health.previous_score is not None for s in stored)
    first = book.book.stored_health(AS_OF - timedelta(days=3))
    assert first is not None and all(s.health.previous_score is None for s in first)
    with book.book.engine.connect() as conn:  # the drivers as stored, parsed the plain way
        raw = dict(conn.execute(select(S.c.account_pk, S.c.drivers).where(S.c.as_of == AS_OF)).all())
    for s in stored:  # as scored: each driver's facts, its explanation written from them when read
        plain = json.loads(raw[s.account.pk])
        assert s.health.drivers == tuple(
            Driver(d["f"], d["v"], d["i"], explain(d["f"], d["v"], d["i"], d["x"])) for d in plain)
        assert "explanation" not in raw[s.account.pk]
    a1 = stored[0].account.pk  # missing from the last run (by hand): its score of 3 days ago is previous
    with book.book.engine.begin() as conn:
        conn.execute(delete(S).where(S.c.account_pk == a1, S.c.as_of == AS_OF - timedelta(days=1)))
    again = {s.account.pk: s for s in book.book.stored_health(AS_OF) or []}
    assert again == separate_reads(book, AS_OF)
    assert again[a1].health.previous_score == (book.book.snapshots(AS_OF - timedelta(days=3)) or {})[a1].score
    # an account without a snapshot of the day: book_health scores the book itself
    book.import_file("accounts", csv_file("new.csv", "account_id,name,start_date\nA5,Newco,2026-06-01\n"))
    assert book.book.stored_health(AS_OF) is None
    assert {s.account.account_id for s in book.book_health(AS_OF)} == {"A1", "A2", "A3", "A4", "A5"}


def test_stored_drivers_are_read_back_whatever_their_text():
    odd = Driver("nps", [{"a": 1}, {"factor": 2}], -1.5, 'said "}, {"factor": " and left }, {')
    plain = Driver("champion", True, 3.0, "a champion contact is on record")
    for drivers in ([], [plain], [odd, plain], [plain, odd, plain]):
        for text in (json.dumps([d.to_dict() for d in drivers], default=str),  # as snapshot_row writes
                     json.dumps([d.to_dict() for d in drivers], separators=(",", ":"))):
            assert _drivers(text, {}) == tuple(Driver(**d) for d in json.loads(text))
    scored = [Driver("renewal", 12, -4.2, "renewal in 12 days (2026-07-12)", ("2026-07-12",)),
              Driver("champion", False, -5.0, "no champion contact on record", ())]
    for drivers in ([], scored, scored[::-1]):  # as scored: by facts, the texts written again
        assert _drivers(drivers_json(drivers), {}) == tuple(drivers)
        assert [d.facts for d in _drivers(drivers_json(drivers), {})] == [d.facts for d in drivers]
    other = Driver("renewal", 12, -4.2, "renewal in 12 days (2026-07-12)")
    known: dict[str, Driver] = {}
    one = _drivers(json.dumps([plain.to_dict(), other.to_dict()]), known)
    two = _drivers(json.dumps([other.to_dict(), plain.to_dict()]), known)
    assert one == (plain, other) and one[0] is two[1]  # a driver repeated across accounts is one value


def test_mrr_on_months_is_the_history_as_mrr_on_reads_it(book, csv_file):
    book.import_file("mrr", csv_file("m.csv", "account_id,month,mrr\nA1,2025-01,900\nA1,2025-03,1100.50\n"
                                              "A1,2026-05,1200\nA2,2026-02,450\n"))
    accounts = {a.pk: a for a in book.book.accounts()}
    history = book.book.mrr_history()
    months = [date(2024, 12, 1), date(2025, 1, 1), date(2025, 2, 1), date(2026, 4, 1), date(2026, 6, 1)]
    sampled = book.book.mrr_on_months(months)
    assert set(sampled) == {pk for pk, h in history.items() if h}  # A3 and A4 have no history
    for pk, by_month in sampled.items():
        assert by_month == {m: mrr_on(accounts[pk], m, history[pk]) for m in months}
    a1 = next(pk for pk, a in accounts.items() if a.account_id == "A1")
    assert sampled[a1] == {date(2024, 12, 1): Decimal("900.00"), date(2025, 1, 1): Decimal("900.00"),
                           date(2025, 2, 1): Decimal("900.00"), date(2026, 4, 1): Decimal("1100.50"),
                           date(2026, 6, 1): Decimal("1200.00")}
    for start, end in ((date(2025, 2, 1), date(2026, 6, 30)), (AS_OF - timedelta(days=6), AS_OF)):
        assert book.retention(start, end) == retention(book.book.accounts(), start, end, history)


@pytest.mark.parametrize(("chunk", "workers"), [(1, 0), (3, 0), (5_000, 0), (1, 2)])
def test_a_chunked_run_stores_what_scoring_the_whole_book_gives(book, chunk, workers):
    """In this process with a reader thread, or in two worker processes: the same snapshots."""
    from bot.core.health import is_peer, score_book
    from bot.scoring import score_and_store

    cfg = HealthConfig()
    inputs = book.book.health_inputs(AS_OF, cfg)
    expected, peers = score_book(inputs, cfg, AS_OF)
    totals = score_and_store(book.book, cfg, AS_OF, chunk=chunk, workers=workers)
    stored = book.book.snapshots(AS_OF)
    assert stored is not None
    assert {i.account.pk: s for i, s in zip(inputs, expected, strict=True)} == stored
    assert totals.accounts == 4 and totals.threshold == peers.threshold
    assert totals.customers == 3 and sum(totals.bands.values()) == 3  # A3 churned before the day
    assert totals.workers == workers and (totals.worker_peak_mb > 0) == (workers > 1)
    with book.book.engine.connect() as conn:
        flagged = set(conn.execute(select(S.c.account_pk).where(S.c.as_of == AS_OF, S.c.peer)).scalars())
    assert flagged == {i.account.pk for i in inputs if is_peer(i, AS_OF)}


def test_no_garbage_collection_interrupts_a_run_and_the_collector_is_back_after_it(book, monkeypatch):
    """Full collections walked every object of the process, 15-45 % of a 10k run (bot.collector)."""
    import gc

    import bot.scoring
    from bot.store import SnapshotWriter

    seen: list[tuple[str, bool]] = []
    score_chunk, write_rows = bot.scoring._score_chunk, SnapshotWriter.write_rows

    def scoring(*args):
        seen.append(("score", gc.isenabled()))
        return score_chunk(*args)

    def writing(self, rows):
        seen.append(("write", gc.isenabled()))  # on PostgreSQL, in the writer thread
        return write_rows(self, rows)

    monkeypatch.setattr(bot.scoring, "_score_chunk", scoring)
    monkeypatch.setattr(SnapshotWriter, "write_rows", writing)
    assert gc.isenabled()
    book.score(AS_OF)
    assert {what for what, _ in seen} == {"score", "write"}
    assert not any(enabled for _, enabled in seen)
    assert gc.isenabled()


def test_a_run_whose_writes_fail_raises_and_leaves_the_day_as_it_was(book, monkeypatch):
    """The snapshots are written by a thread of their own: its error reaches the caller, nothing hangs."""
    from bot.scoring import score_and_store
    from bot.store import SnapshotWriter

    book.score(AS_OF)
    before = book.book.snapshots(AS_OF)
    real = SnapshotWriter.write_rows
    calls = {"n": 0}

    def failing(self, rows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(self, rows)

    monkeypatch.setattr(SnapshotWriter, "write_rows", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        score_and_store(book.book, HealthConfig(), AS_OF, chunk=1)
    assert book.book.snapshots(AS_OF) == before


def test_a_run_that_fails_leaves_the_day_as_it_was(book, monkeypatch):
    from bot.core import bulk
    from bot.scoring import score_and_store

    book.score(AS_OF)
    before = book.book.snapshots(AS_OF)
    calls = {"n": 0}
    real = bulk.score_columns

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr("bot.scoring.score_columns", failing)
    with pytest.raises(RuntimeError):
        score_and_store(book.book, HealthConfig(), AS_OF, chunk=1)
    assert book.book.snapshots(AS_OF) == before
