"""Files of several batches: every row lands exactly, corrections update by key, and on PostgreSQL the
rows are COPYed by a writer thread, into the table or through a staging table (bot/importer/writing.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bot.db.engine import make_engine, migrate
from bot.db.scratch import scratch_database
from bot.errors import BadInput, OperationFailed
from bot.importer import cells, run, writing
from bot.importer.kinds import Context
from bot.importer.run import BATCH, import_csv
from tests.conftest import PG_URL
from tests.importer.conftest import Importer, RawFile
from tests.importer.helpers import SEED_ACCOUNTS, counts, snapshot

FIRST = date(1990, 1, 1)
N = 2 * BATCH + 5_000  # three batches
Key = tuple[str, date]


def _usage_file(rows: dict[Key, tuple[int, int]]) -> str:
    return "account_id,date,active_users,events\n" + "".join(
        f"{a},{d.isoformat()},{users},{events}\n" for (a, d), (users, events) in rows.items()
    )


def _key(i: int) -> Key:
    """Row i of the big file: the accounts alternate, so every batch holds both."""
    return ("A1" if i % 2 == 0 else "A2", FIRST + timedelta(days=i // 2))


def _daily(engine: Engine) -> dict[Key, tuple[int, int]]:
    with engine.connect() as conn:
        result = conn.execute(text(
            "SELECT a.account_id, u.day, u.active_users, u.events FROM usage_daily u "
            "JOIN accounts a ON a.id = u.account_pk"
        ))
        return {(a, d if isinstance(d, date) else date.fromisoformat(d)): (n, e) for a, d, n, e in result}


def _versions(engine: Engine) -> dict[Key, str]:
    """PostgreSQL: the transaction that last wrote each usage row (xmin)."""
    with engine.connect() as conn:
        result = conn.execute(text(
            "SELECT a.account_id, u.day, u.xmin::text FROM usage_daily u "
            "JOIN accounts a ON a.id = u.account_pk"
        ))
        return {(a, d): x for a, d, x in result}


@pytest.fixture(autouse=True)
def copy_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL's writer COPYs every batch on its own, so these files take several COPYs."""
    monkeypatch.setattr(writing, "COPY_ROWS", BATCH)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every call to a writer, as (class.method, rows in the batch or -1 for finish)."""
    calls: list[tuple[str, int]] = []
    for cls in (writing.UpsertWriter, writing.CopyWriter):
        write, finish = cls.write, cls.finish

        def spy_write(self: Any, rows: list[Any], _write: Any = write, _name: str = cls.__name__) -> None:
            calls.append((f"{_name}.write", len(rows)))
            _write(self, rows)

        def spy_finish(self: Any, _finish: Any = finish, _name: str = cls.__name__) -> None:
            calls.append((f"{_name}.finish", -1))
            _finish(self)

        monkeypatch.setattr(cls, "write", spy_write)
        monkeypatch.setattr(cls, "finish", spy_finish)
    yield calls


def test_a_file_of_several_batches_is_stored_exactly_and_a_second_one_updates_it_by_key(
    book: Engine, importer: Importer, writes: list[tuple[str, int]]
) -> None:
    writes.clear()  # the seed accounts' import
    pg = book.dialect.name == "postgresql"
    writer = "CopyWriter" if pg else "UpsertWriter"
    first = {_key(i): (i % 97, (i * 7) % 1000) for i in range(N)}
    assert importer("usage", _usage_file(first)).rows == N
    # the COPY path on PostgreSQL (one COPY per batch, one upsert at the end), executemany on SQLite
    assert writes == [(f"{writer}.write", BATCH), (f"{writer}.write", BATCH),
                      (f"{writer}.write", N - 2 * BATCH), (f"{writer}.finish", -1)]
    assert _daily(book) == first
    before = _versions(book) if pg else {}

    # every other row again (a third of them corrected, the rest as they are), and 3,000 new days
    second: dict[Key, tuple[int, int]] = {}
    changed: set[Key] = set()
    for i in range(0, N, 2):
        users, events = first[_key(i)]
        if i % 3 == 0:
            users, events = users + 1, events + 5
            changed.add(_key(i))
        second[_key(i)] = (users, events)
    added = {_key(i): (1, 2) for i in range(N, N + 3_000)}
    second.update(added)
    assert importer("usage", _usage_file(second)).rows == N // 2 + 3_000
    assert _daily(book) == first | second
    assert counts(book)["usage_daily"] == N + 3_000
    if pg:  # rows equal to the stored ones were left alone, not rewritten
        after = _versions(book)
        assert {k for k, x in before.items() if after[k] != x} == changed
        assert set(after) - set(before) == set(added)

    everything = snapshot(book)
    importer("usage", _usage_file(second))  # the same file again: nothing changes, nothing is rewritten
    assert snapshot(book) == everything
    if pg:
        assert _versions(book) == after


def test_user_level_rows_of_several_batches_are_stored_and_rolled_up_exactly(
    book: Engine, importer: Importer
) -> None:
    days = 150
    users = [f"user-{u}" for u in range(BATCH // days + 20)]  # more than one batch of rows in all
    rows = [(FIRST + timedelta(days=d), u, d % 5) for d in range(days) for u in users]
    content = "account_id,date,user_id,events\n" + "".join(f"A1,{d},{u},{e}\n" for d, u, e in rows)
    assert importer("usage", content).rows == len(rows) > BATCH
    assert counts(book)["usage_users"] == len(rows)
    expected = {("A1", FIRST + timedelta(days=d)): (len(users), len(users) * (d % 5)) for d in range(days)}
    assert _daily(book) == expected


def test_a_row_the_database_refuses_fails_the_file_and_writes_nothing(
    book: Engine, importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error (here a foreign key no account has, in the last batch of an NPS file) is
    exit 1 with nothing written; on PostgreSQL it comes from the writer thread."""
    importer("nps", "account_id,date,score\nA2,2026-01-05,9\n")
    before = snapshot(book)
    real = Context.account_map
    monkeypatch.setattr(Context, "account_map", lambda self: real(self) | {"A9": 987_654})
    content = "account_id,date,score\n" + "".join(
        f"{'A9' if i == N - 1 else 'A1'},{FIRST + timedelta(days=i)},7\n" for i in range(N)
    )
    with pytest.raises(OperationFailed, match="the database refused the import"):
        importer("nps", content)
    assert snapshot(book) == before


def test_postgresql_driver_errors_in_a_copy_are_reported_and_nothing_is_written(
    book: Engine, importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if book.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's COPY path")
    before = snapshot(book)
    monkeypatch.setattr(cells, "MAX_COUNT", 2**40)  # let a count through that an INTEGER cannot hold
    content = "account_id,date,active_users\n" + "".join(
        f"A1,{FIRST + timedelta(days=i)},{2**31 if i == BATCH + 10 else 1}\n" for i in range(N)
    )
    with pytest.raises(OperationFailed, match="the database refused the import"):
        importer("usage", content)
    assert snapshot(book) == before
    importer("usage", "account_id,date,active_users\nA1,2026-01-05,3\n")  # the connection is usable
    assert counts(book)["usage_daily"] == 1


@pytest.mark.parametrize(("first", "again"), [(10, 20), (10, 2 * BATCH + 1), (BATCH + 3, 2 * BATCH + 4)],
                         ids=["within-the-first-batch", "first-and-last-batch", "second-and-last-batch"])
def test_a_key_repeated_anywhere_in_a_big_file_is_reported_as_such_and_nothing_is_written(
    book: Engine, importer: Importer, first: int, again: int
) -> None:
    """Batches already written (on PostgreSQL, COPYed straight into the table, or merged once a
    repeated key made the COPY fail) are rolled back with the file, and the user is told which rows
    repeat, not what the database said about them."""
    importer("usage", "account_id,date,active_users\nA2,2026-01-05,9\n")
    before = snapshot(book)
    rows = {i: _key(i) for i in range(N)}
    rows[again] = rows[first]
    content = "account_id,date,active_users\n" + "".join(f"{a},{d},{i % 7}\n" for i, (a, d) in rows.items())
    with pytest.raises(BadInput) as caught:
        importer("usage", content)
    assert caught.value.details == [
        f"row {again + 2}: same account_id and date as row {first + 2} (a key may appear once)"]
    assert snapshot(book) == before


def test_two_imports_of_the_same_days_at_once_both_succeed_and_store_the_file(
    book: Engine, raw_file: RawFile
) -> None:
    """Two instances importing the same usage at the same time: one COPYs the rows in, the other
    waits for it, meets its keys and merges; neither fails, and the book holds the file once."""
    rows = {_key(i): (i % 13, i % 17) for i in range(BATCH + 500)}
    path = raw_file("usage.csv", _usage_file(rows))
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: import_csv(book, "usage", path), range(2)))
    assert [r.rows for r in reports] == [len(rows)] * 2
    assert _daily(book) == rows


def test_new_rows_go_straight_in_and_rows_after_them_that_meet_stored_keys_are_merged(
    book: Engine, importer: Importer
) -> None:
    """A file of new days followed by corrections of stored ones: on PostgreSQL the first COPY goes
    into the table, the second meets stored keys, is rolled back to its savepoint and merged."""
    old = {_key(i): (1, 1) for i in range(BATCH)}
    importer("usage", _usage_file(old))
    new = {_key(i): (2, 2) for i in range(BATCH, 2 * BATCH)}
    corrected = {k: (3, 3) for k in list(old)[::2]}
    assert importer("usage", _usage_file(new | corrected)).rows == len(new) + len(corrected)
    assert _daily(book) == old | new | corrected


def test_repeated_keys_are_found_with_their_row_numbers_across_skipped_lines() -> None:
    """The repeat check keeps 8 bytes a row: row numbers are rebuilt from where blank lines shifted them."""
    import random

    from bot.importer.run import _Keys

    rng = random.Random(5)
    for _ in range(50):
        keys, rows, row = _Keys(), [], 1
        packed = [rng.randrange(40) for _ in range(rng.randrange(0, 60))]
        for key in packed:
            row += 1 + (rng.random() < 0.2) * rng.randrange(1, 4)  # blank lines skipped now and then
            keys.add(key, row)
            rows.append(row)
        first: dict[int, int] = {}
        expected = []
        for key, at in zip(packed, rows, strict=True):
            if key in first:
                expected.append((at, first[key]))
            else:
                first[key] = at
        assert keys.repeats() == expected


def test_a_big_import_leaves_postgresql_planning_from_the_rows_it_brought(
    book: Engine, importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without fresh statistics, PostgreSQL plans the next reads as if the table were still empty."""
    if book.dialect.name != "postgresql":
        pytest.skip("SQLite keeps no planner statistics unless asked")
    monkeypatch.setattr(run, "ANALYZE_FROM", 1_000)
    with book.begin() as conn:  # only the import may analyze it here
        conn.execute(text("ALTER TABLE usage_daily SET (autovacuum_enabled = false)"))

    def analyzed() -> bool:  # the columns' statistics, which only ANALYZE gathers
        with book.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() "
                "AND tablename = 'usage_daily'")).scalar_one())

    importer("usage", _usage_file({_key(i): (3, 9) for i in range(999)}))
    assert not analyzed()  # a smaller import leaves it to autovacuum
    importer("usage", _usage_file({_key(i): (3, 9) for i in range(999, 2_999)}))
    assert analyzed()


def test_upkeep_after_an_import_never_waits_for_another_sessions_vacuum_or_analyze(
    book: Engine, monkeypatch: pytest.MonkeyPatch, raw_file: RawFile
) -> None:
    """PostgreSQL's ANALYZE and VACUUM run once the import has committed. A table another session is
    vacuuming or analyzing is left to it (SKIP_LOCKED): the import neither waits nor fails."""
    if book.dialect.name != "postgresql":
        pytest.skip("SQLite has no upkeep after an import")
    monkeypatch.setattr(run, "ANALYZE_FROM", 1)
    options = book.url.query.get("options", "")
    impatient = make_engine(book.url.update_query_dict({"options": f"{options} -clock_timeout=200"}))
    accounts = raw_file("more.csv", "account_id,name,start_date\nA3,Initech,2024-01-01\n")
    usage = raw_file("usage.csv", _usage_file({_key(i): (3, 9) for i in range(10)}))
    try:
        with book.connect() as other, other.begin():  # what another ANALYZE or VACUUM holds
            other.execute(text("LOCK TABLE accounts, usage_daily IN SHARE UPDATE EXCLUSIVE MODE"))
            added = import_csv(impatient, "accounts", accounts)
            used = import_csv(impatient, "usage", usage)
    finally:
        impatient.dispose()
    assert (added.rows, added.warnings, used.rows, used.warnings) == (1, [], 10, [])
    with book.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts WHERE account_id = 'A3'")).scalar() == 1
    assert len(_daily(book)) == 10


def test_upkeep_the_database_refuses_after_an_import_leaves_the_rows_in_and_says_so(
    book: Engine, monkeypatch: pytest.MonkeyPatch, importer: Importer
) -> None:
    """The rows have committed when the upkeep runs: if the database refuses it (a statement timeout,
    a dropped connection), the report says what is left to autovacuum, and nothing is undone."""

    def refused(engine: Engine, kind: Any, rows: int) -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))  # a real refusal by the database

    monkeypatch.setattr(run, "_settle", refused)
    report = importer("usage", _usage_file({_key(i): (3, 9) for i in range(10)}))
    assert report.rows == 10 and len(report.warnings) == 1
    assert report.warnings[0].startswith("imported, but the database's upkeep after it failed (")
    assert report.warnings[0].endswith("); autovacuum will catch up")
    assert len(_daily(book)) == 10


@pytest.fixture
def lone_book(raw_file: RawFile) -> Iterator[Engine]:
    """A seeded PostgreSQL book in a database of its own. `VACUUM` may mark a page all-visible only once
    no transaction open in the database could still miss its rows, and the other tests running beside
    this one hold transactions open in the shared database."""
    if not PG_URL:
        pytest.skip("no PG")
    with scratch_database(PG_URL, prefix="t") as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            import_csv(engine, "accounts", raw_file("accounts.csv", SEED_ACCOUNTS))
            yield engine
        finally:
            engine.dispose()


@pytest.mark.parametrize("level", ["daily", "user-level"])
def test_after_an_import_postgresql_reads_the_usage_window_from_the_key_alone(
    lone_book: Engine, raw_file: RawFile, level: str
) -> None:
    """A score reads each account's days from the primary key, which holds the active users
    (migration 0008). The import marks the table's pages all-visible, so not one row is fetched from
    the table: wherever daily imports left an account's days, they cost no page each."""
    book = lone_book
    with book.begin() as conn:  # only the import may vacuum it here
        conn.execute(text("ALTER TABLE usage_daily SET (autovacuum_enabled = false)"))
    days = [FIRST + timedelta(days=d) for d in range(60)]
    if level == "daily":  # day by day, as a book kept up to date lies in the table
        content = _usage_file({(a, d): (3, 9) for d in days for a in ("A1", "A2")})
    else:
        content = "account_id,date,user_id,events\n" + "".join(
            f"{a},{d.isoformat()},u{n},2\n" for d in days for a in ("A1", "A2") for n in range(3))
    import_csv(book, "usage", raw_file("usage.csv", content))
    with book.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        plan = conn.execute(text(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT u.account_pk, sum(u.active_users), max(u.day) "
            "FROM accounts a JOIN usage_daily u ON u.account_pk = a.id AND u.day > :since "
            "GROUP BY u.account_pk"), {"since": days[29]}).scalar_one()

    def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
        found = [node] if node.get("Relation Name") == "usage_daily" else []
        return found + [s for child in node.get("Plans", []) for s in scans(child)]

    (scan,) = scans((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    assert scan["Node Type"] == "Index Only Scan"
    assert scan["Actual Rows"] * scan["Actual Loops"] == 2 * 30
    assert scan["Heap Fetches"] == 0


def test_no_garbage_collection_while_a_file_is_imported_and_the_collector_is_back_after_even_a_refusal(
    book: Engine, importer: Importer, writes: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Millions of row tuples, none in a cycle (bot.collector): no collection stops the parsing thread
    or the writing one, and the collector is back however the import ends."""
    import gc

    seen: list[bool] = []
    stream = run._stream

    def streaming(*args: Any) -> None:
        seen.append(gc.isenabled())
        stream(*args)

    monkeypatch.setattr(run, "_stream", streaming)
    importer("usage", _usage_file({_key(i): (i % 7, i) for i in range(N)}))
    assert seen == [False] and writes and gc.isenabled()
    with pytest.raises(BadInput):
        importer("usage", "account_id,date,active_users,events\nA1,not-a-day,1,1\n")
    assert seen == [False, False] and gc.isenabled()
