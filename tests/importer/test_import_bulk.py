"""Usage blocks read whole (`Kind.bulk`): they store exactly what reading row by row stores, and a
block with anything unusual in it goes row by row, so messages and row numbers stay exact."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bot.errors import BadInput
from bot.importer import kinds, run
from tests.importer.conftest import Importer
from tests.importer.helpers import rows, snapshot

BLOCK = 200  # rows a block in these tests (the real one is run.BATCH)
FIRST = date(2001, 1, 1)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "BATCH", BLOCK)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every block the bulk reader took whole (and of none it gave back)."""
    sizes: list[int] = []
    usage = kinds.KINDS["usage"]
    make = usage.bulk
    assert make is not None

    def counting(kind: Any, positions: Any, ctx: Any, emit: bool) -> Any:
        take = make(kind, positions, ctx, emit)
        if take is None:
            return None

        def counted(block: list[list[str]]) -> Any:
            got = take(block)
            if got is not None:
                sizes.append(len(block))
            return got

        return counted

    monkeypatch.setitem(kinds.KINDS, "usage", replace(usage, bulk=counting))
    return sizes


def _without_bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kinds.KINDS, "usage", replace(kinds.KINDS["usage"], bulk=None))


def _odd_file(seed: int) -> tuple[str, dict[tuple[str, date], tuple[int, int]]]:
    """A usage file of five blocks: plain ones (some events cells empty), and ones with a valid cell
    the bulk reader does not take (leading zeros and spaces, a timestamp, a blank line, a row of empty
    cells). Returns the file and the rows it must store."""
    rng = random.Random(seed)
    lines = ["date,events,account_id,active_users,comment"]  # columns in another order, one unknown
    expected: dict[tuple[str, date], tuple[int, int]] = {}
    for i in range(5 * BLOCK - 4):
        account, day = ("A1", "A2")[i % 2], FIRST + timedelta(days=i // 2)
        users, events = rng.randrange(0, 10**6), rng.randrange(0, 10**6)
        day_cell, users_cell, events_cell = day.isoformat(), str(users), str(events)
        odd = i in (BLOCK + 7, 3 * BLOCK + 50, 3 * BLOCK + 60)
        if i == BLOCK + 7:
            users_cell = f"00{users}"
        elif i == 3 * BLOCK + 50:
            day_cell = f"{(day - timedelta(days=1)).isoformat()}T23:30:00-02:00"  # the UTC day is `day`
        elif i % 97 == 0:  # the bulk reader takes these: no count of events is one
            events_cell, events = "", 1
        elif i == 3 * BLOCK + 60:
            users_cell = f" {users}"
        lines.append(f"{day_cell},{events_cell},{account},{users_cell},note {i}")
        if i in (BLOCK + 3, 2 * BLOCK + 9) and not odd:
            lines.append("" if i == BLOCK + 3 else ",,,,")
        expected[(account, day)] = (users, events)
    return "\n".join(lines) + "\n", expected


def _daily(engine: Engine) -> dict[tuple[str, date], tuple[int, int]]:
    with engine.connect() as conn:
        result = conn.execute(text(
            "SELECT a.account_id, u.day, u.active_users, u.events FROM usage_daily u "
            "JOIN accounts a ON a.id = u.account_pk"))
        return {(a, d if isinstance(d, date) else date.fromisoformat(d)): (n, e) for a, d, n, e in result}


def test_blocks_read_whole_store_what_rows_read_one_by_one_store(
    book: Engine, importer: Importer, taken: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    content, expected = _odd_file(3)
    assert importer("usage", content, dry_run=True).rows == len(expected)
    assert _daily(book) == {}
    taken.clear()
    assert importer("usage", content).rows == len(expected)
    assert _daily(book) == expected
    # the plain blocks (the first and the last, shorter) were read whole, the others row by row
    assert taken == [BLOCK, BLOCK - 2]
    whole = rows(book, "usage_daily")

    with book.begin() as conn:
        conn.execute(text("DELETE FROM usage_daily"))
    _without_bulk(monkeypatch)
    importer("usage", content)
    assert rows(book, "usage_daily") == whole


def test_user_level_blocks_read_whole_store_and_roll_up_what_rows_read_one_by_one_do(
    book: Engine, importer: Importer, taken: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row per user per day: ids with a backslash, a tab or a quote are stored as they are
    (PostgreSQL's COPY text would need them escaped: that block goes row by row there), an id with
    spaces around it is trimmed by the generic path, and the days roll up into usage_daily."""
    pg = book.dialect.name == "postgresql"
    odd_ids = {BLOCK + 3: "u\\back", BLOCK + 4: '"u\tq""uote"', 2 * BLOCK + 5: " spaced "}
    lines = ["account_id,date,user_id,events"]
    for i in range(3 * BLOCK):
        day = FIRST + timedelta(days=i // 40)
        user = odd_ids.get(i, f"user-{i % 40}@example.com")
        lines.append(f"{('A1', 'A2')[i // 20 % 2]},{day},{user},{'' if i % 7 == 0 else i % 11}")
    content = "\n".join(lines) + "\n"
    assert importer("usage", content).rows == 3 * BLOCK
    assert taken == ([BLOCK] if pg else [BLOCK, BLOCK])  # the first block; on SQLite the second too
    users = rows(book, "usage_users")
    assert {r["user_id"] for r in users} >= {"u\\back", 'u\tq"uote', "spaced"}
    assert len(users) == 3 * BLOCK
    daily = rows(book, "usage_daily")
    assert sum(r["active_users"] for r in daily) == 3 * BLOCK

    with book.begin() as conn:
        conn.execute(text("DELETE FROM usage_users"))
        conn.execute(text("DELETE FROM usage_daily"))
    _without_bulk(monkeypatch)
    importer("usage", content)
    assert (rows(book, "usage_users"), rows(book, "usage_daily")) == (users, daily)


def test_a_user_level_key_repeated_between_a_whole_block_and_a_row_is_found(
    book: Engine, importer: Importer, taken: list[int]
) -> None:
    lines = [f"A1,{FIRST + timedelta(days=i // 50)},user-{i % 50},1" for i in range(2 * BLOCK)]
    lines[BLOCK + 1] = f"A1,{FIRST},user-7 ,1"  # row by row (spaces), the same key as row 9 once trimmed
    before = snapshot(book)
    with pytest.raises(BadInput) as caught:
        importer("usage", "account_id,date,user_id,events\n" + "\n".join(lines) + "\n")
    assert caught.value.details == [
        f"row {BLOCK + 3}: same account_id, date and user_id as row 9 (a key may appear once)"]
    assert taken == [BLOCK]
    assert snapshot(book) == before


def test_a_file_without_events_counts_one_event_a_row(
    book: Engine, importer: Importer, taken: list[int]
) -> None:
    lines = "".join(f"A2,{FIRST + timedelta(days=i)},{i}\n" for i in range(BLOCK))
    importer("usage", "account_id,date,active_users\n" + lines)
    assert taken == [BLOCK]
    assert _daily(book) == {("A2", FIRST + timedelta(days=i)): (i, 1) for i in range(BLOCK)}


def test_a_count_too_long_to_be_plain_goes_row_by_row_and_is_checked_there(
    book: Engine, importer: Importer, taken: list[int]
) -> None:
    """Ten digits may pass MAX_COUNT: the block goes row by row, which stores what is in range
    and refuses what is not."""
    lines = "".join(f"A1,{FIRST + timedelta(days=i)},{'2147483647' if i == 5 else 1}\n" for i in range(BLOCK))
    importer("usage", "account_id,date,active_users\n" + lines)
    assert taken == []
    assert _daily(book)[("A1", FIRST + timedelta(days=5))] == (2**31 - 1, 1)
    before = snapshot(book)
    lines = "".join(f"A2,{FIRST + timedelta(days=i)},{'2147483648' if i == 7 else 1}\n" for i in range(BLOCK))
    with pytest.raises(BadInput) as caught:
        importer("usage", "account_id,date,active_users\n" + lines)
    assert caught.value.details == ["row 9, column active_users: 2147483648 is implausibly large"]
    assert snapshot(book) == before


def test_problems_in_a_big_file_are_reported_with_the_rows_they_are_on(
    book: Engine, importer: Importer, taken: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blank lines in a block read whole shift the numbers of every later row; a block with a bad row
    goes row by row and names it; a key repeated between a block read whole and one read row by row is
    found. The same file read without the bulk reader gives the same messages."""
    lines = ["account_id,date,active_users"]
    for i in range(4 * BLOCK):
        if i in (10, 11):
            lines.append("")
        day = FIRST + timedelta(days=i)
        if i == 2 * BLOCK + 5:
            lines.append(f"A9,{day},1")  # unknown account
        elif i == 3 * BLOCK + 1:
            lines.append(f"A1,{day},-4")
        elif i == 3 * BLOCK + 2:
            lines.append(f"A1,{FIRST + timedelta(days=20)},3")  # the same key as a row of block one
        else:
            lines.append(f"A1,{day},2")
    content = "\n".join(lines) + "\n"
    before = snapshot(book)
    with pytest.raises(BadInput) as caught:
        importer("usage", content)
    expected = [
        f"row {2 * BLOCK + 5 + 4}, column account_id: unknown account 'A9' "
        "(import it in an accounts file first)",
        f"row {3 * BLOCK + 1 + 4}, column active_users: -4 is negative (must be 0 or more)",
        f"row {3 * BLOCK + 2 + 4}: same account_id and date as row {20 + 4} (a key may appear once)",
    ]
    assert caught.value.details == expected
    assert len(taken) >= 2  # blocks before the bad ones were read whole
    assert snapshot(book) == before

    _without_bulk(monkeypatch)
    with pytest.raises(BadInput) as again:
        importer("usage", content)
    assert again.value.details == expected


def test_days_thousands_of_years_apart_are_two_keys(
    book: Engine, importer: Importer, taken: list[int]
) -> None:
    """The repeat check packs (account, day) into one number; no two days share one (2**20 days
    apart they once did, and such a file was refused as repeating a key)."""
    far = date(2024, 1, 1) + timedelta(days=2**20)
    for account, first_count in (("A1", " 1"), ("A2", "1")):  # row by row (a space), a block read whole
        lines = [f"{account},2024-01-01,{first_count}", f"{account},{far},2"]
        content = "account_id,date,active_users\n" + "\n".join(lines) + "\n"
        assert importer("usage", content).rows == len(lines)
    assert taken == [2]  # A2's file
    assert {k: v for k, v in _daily(book).items() if k[1] in (date(2024, 1, 1), far)} == {
        ("A1", date(2024, 1, 1)): (1, 1), ("A1", far): (2, 1),
        ("A2", date(2024, 1, 1)): (1, 1), ("A2", far): (2, 1)}


def test_rows_are_numbered_as_a_spreadsheet_does_when_blank_rows_come_before_the_header(
    book: Engine, importer: Importer
) -> None:
    content = "\n,,\naccount_id,date,active_users\nA1,2026-01-05,1\nA1,2026-01-06,x\nA1,2026-01-05,2\n"
    with pytest.raises(BadInput) as caught:
        importer("usage", content)
    assert caught.value.details == [
        "row 5, column active_users: 'x' is not a whole number",
        "row 6: same account_id and date as row 4 (a key may appear once)",
    ]


def test_a_file_of_timestamps_keeps_a_bounded_number_of_date_cells_parsed(
    book: Engine, importer: Importer, monkeypatch: pytest.MonkeyPatch, taken: list[int]
) -> None:
    """Every row may carry a timestamp of its own: past DATE_CELLS of them, blocks go row by row and
    new cells are parsed where they stand, with the same result."""
    monkeypatch.setattr(kinds, "DATE_CELLS", BLOCK + 10)
    lines = [f"A1,{FIRST + timedelta(days=i)}T{i % 24:02d}:{i % 60:02d}:00Z,{i % 9}"
             for i in range(3 * BLOCK)]
    assert importer("usage", "account_id,date,active_users\n" + "\n".join(lines) + "\n").rows == 3 * BLOCK
    assert taken == [BLOCK]  # the first block's cells were kept; the next ones would be too many
    assert _daily(book) == {("A1", FIRST + timedelta(days=i)): (i % 9, 1) for i in range(3 * BLOCK)}


def test_a_day_whose_users_sum_past_the_largest_count_stores_the_largest_count(
    book: Engine, importer: Importer
) -> None:
    """Two users with the largest count of events each: the day's total cannot fit the book's 32-bit
    column, so it is stored as the largest count (the day's active users stay exact), not refused
    halfway through the import."""
    day = FIRST + timedelta(days=3)
    importer("usage", f"account_id,date,user_id,events\nA1,{day},u1,2147483647\nA1,{day},u2,2147483647\n"
                      f"A1,{day + timedelta(days=1)},u1,5\n")
    assert _daily(book) == {("A1", day): (2, 2**31 - 1), ("A1", day + timedelta(days=1)): (1, 5)}
