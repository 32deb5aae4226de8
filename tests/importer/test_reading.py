"""open_csv / detect_encoding: encodings, delimiters, quoting, headers and files that are not CSVs."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import BadInput
from bot.importer.reading import CHUNK, MAX_CELL, detect_encoding, open_csv
from tests.importer.helpers import ENCODINGS, NAME, encode

TEXT = f"account_id,name\nA1,{NAME}\n"


def read(path: Path) -> tuple[str, str, list[str], list[tuple[int, list[str]]]]:
    with open_csv(path) as f:
        return f.encoding, f.delimiter, f.header, list(f.rows)


def write(tmp_path: Path, data: bytes | str, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_the_windows_1252_fixture_really_holds_the_1252_bytes() -> None:
    data = TEXT.encode("cp1252")
    assert b"\x93" in data and b"\x94" in data and b"\xe9" in data and b"\xdf" in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")


@pytest.mark.parametrize(("how", "encoding"), ENCODINGS.items())
def test_each_encoding_is_detected_and_decoded_exactly(tmp_path: Path, how: str, encoding: str) -> None:
    path = write(tmp_path, encode(TEXT, how))
    assert detect_encoding(path) == encoding
    # the BOM never leaks into the first column name
    assert read(path) == (encoding, ",", ["account_id", "name"], [(2, ["A1", NAME])])


# A header and one row whose cells hold every delimiter, a quote and a line break.
TRICKY = ['a, b; c\td', 'say "hi"', "line one\nline two"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_delimiters_and_quoted_cells(tmp_path: Path, delimiter: str, newline: str) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    writer.writerow(["account_id", "name", "note"])
    writer.writerow(TRICKY)
    writer.writerow(["A2", "plain", ""])
    _, found, header, rows = read(write(tmp_path, buf.getvalue()))
    assert found == delimiter
    assert header == ["account_id", "name", "note"]
    # a line break inside quotes is kept as written, whatever ends the rows (as Excel writes them)
    assert rows == [(2, TRICKY), (3, ["A2", "plain", ""])]


def test_header_names_are_trimmed_and_lower_cased(tmp_path: Path) -> None:
    path = write(tmp_path, " Account_ID ;  NAME\t; Start_Date \nA1;Acme;2024-01-01\n")
    _, delimiter, header, rows = read(path)
    assert delimiter == ";"
    assert header == ["account_id", "name", "start_date"]
    assert rows == [(2, ["A1", "Acme", "2024-01-01"])]  # data cells are not touched by the reader


def test_blank_lines_are_skipped_but_still_counted_as_rows(tmp_path: Path) -> None:
    """Numbered as a spreadsheet shows the file: the three blank rows before the header count too."""
    path = write(tmp_path, "\n\n  \na,b\n1,2\n\n3,4\n")
    _, _, header, rows = read(path)
    assert header == ["a", "b"]
    assert rows == [(5, ["1", "2"]), (7, ["3", "4"])]


def test_row_numbers_count_records_not_physical_lines(tmp_path: Path) -> None:
    path = write(tmp_path, 'a,b\n1,"x\ny\nz"\n2,w\n')
    assert read(path)[3] == [(2, ["1", "x\ny\nz"]), (3, ["2", "w"])]


def test_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    assert read(write(tmp_path, "account_id,name\n"))[2:] == (["account_id", "name"], [])


def test_a_column_named_twice_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="column 'name' appears twice"):
        read(write(tmp_path, "account_id,Name, name \nA1,x,y\n"))


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + bytes(64)
NOT_CSV = [
    pytest.param(b"", "the file is empty", id="empty"),
    pytest.param(b"   \n\n\t \r\n", "the file is empty", id="whitespace-only"),
    pytest.param(codecs.BOM_UTF8, "the file is empty", id="utf-8-bom-only"),
    pytest.param(codecs.BOM_UTF16_LE + "\n \n".encode("utf-16-le"), "the file is empty", id="utf-16-blank"),
    pytest.param(b",,,\n , ,\n", "the header row has no column names", id="only-empty-header-cells"),
    pytest.param(PNG, "not a text CSV file", id="png"),
    pytest.param(random.Random(7).randbytes(4096) + b"\x00", "not a text CSV file", id="random-bytes"),
    pytest.param(b"account_id,name\nA1,Ac\x00me\n", "not a text CSV file", id="utf-8-with-nul"),
    pytest.param(b"account_id,name\nA1,Acme\x81\x00\n", "not a text CSV file", id="1252-with-nul"),
    pytest.param(b"\x81\x8d\x8f\x90\x9d\n", "not a text CSV file", id="bytes-undefined-in-1252"),
    pytest.param(TEXT.encode("utf-16") + b"\x00", "not a text CSV file", id="utf-16-odd-length"),
    pytest.param(codecs.BOM_UTF16_LE + b"\x00\xd8a\x00", "not a text CSV file", id="utf-16-lone-surrogate"),
    pytest.param(TEXT.encode("utf-32"), "not a text CSV file", id="utf-32"),
    pytest.param(codecs.BOM_UTF8 + b"account_id\n\xff\n", "not a text CSV file", id="utf-8-bom-then-invalid"),
]


@pytest.mark.parametrize(("data", "message"), NOT_CSV)
def test_files_that_are_not_csv_are_bad_input_naming_the_file(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(BadInput) as caught:
        read(path)
    assert message in caught.value.message
    assert caught.value.message.startswith(str(path))
    assert caught.value.exit_code == 2


def test_a_missing_file_and_a_folder_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        read(tmp_path / "nope.csv")
    with pytest.raises(BadInput, match="not a file"):
        read(tmp_path)


def test_a_cell_over_the_size_limit_is_reported_with_its_row(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n3," + "x" * (MAX_CELL + 1) + "\n")
    with open_csv(path) as f, pytest.raises(BadInput, match=r"row 3: malformed CSV"):
        list(f.rows)


def test_windows_1252_is_found_even_when_the_first_odd_byte_is_past_the_first_chunk(tmp_path: Path) -> None:
    filler = f"A,{'x' * (CHUNK // 2)}\n" * 2  # two long rows: more than a chunk of plain ASCII
    path = write(tmp_path, b"a,b\n" + filler.encode() + "B,café\n".encode("cp1252"))
    assert detect_encoding(path) == "cp1252"
    with open_csv(path) as f:
        assert [(n, cells[1][:3]) for n, cells in f.rows] == [(2, "xxx"), (3, "xxx"), (4, "caf")]
    with open_csv(path) as f:
        assert list(f.rows)[-1][1] == ["B", "café"]


def test_a_utf8_character_split_across_chunks_is_still_utf8(tmp_path: Path) -> None:
    head = b"a,b\n"
    pad = b"x" * (CHUNK - len(head) - 3)
    data = head + b"1," + pad + "é\n".encode()  # é's two bytes straddle the chunk boundary
    assert data[CHUNK - 1 : CHUNK + 1] == "é".encode()
    path = write(tmp_path, data)
    assert detect_encoding(path) == "utf-8"


CELL_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    table=st.lists(st.lists(CELL_TEXT, min_size=3, max_size=3), max_size=6),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-bom", "utf-16", "utf-16-le-bom", "utf-16-be-bom"]),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_any_table_written_by_a_spreadsheet_reads_back_exactly(
    table: list[list[str]], delimiter: str, encoding: str, newline: str
) -> None:
    if newline == "\n":  # csv.writer leaves a lone CR unquoted unless CR ends the rows: ambiguous
        table = [[cell.replace("\r", "") for cell in row] for row in table]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    writer.writerow(["A", " b ", "c"])
    writer.writerows(table)
    text_ = buf.getvalue()
    data = encode(text_, encoding)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        path.write_bytes(data)
        _, found, header, rows = read(path)
    assert found == delimiter
    assert header == ["a", "b", "c"]
    kept = [(n, row) for n, row in enumerate(table, start=2) if any(cell.strip() for cell in row)]
    assert [cells for _, cells in rows] == [row for _, row in kept]  # all-blank rows are no rows
    assert [n for n, _ in rows] == [n for n, _ in kept]


def test_rows_of_empty_cells_are_skipped_not_refused(tmp_path: Path) -> None:
    data = b"account_id,name,start_date\nA1,Acme,2024-01-01\n,,\n , ,\nA2,Globex,2024-01-01\n,,\n"
    path = write(tmp_path, data)
    _, _, _, rows = read(path)
    assert rows == [(2, ["A1", "Acme", "2024-01-01"]), (5, ["A2", "Globex", "2024-01-01"])]


def test_random_garbage_never_escapes_as_anything_but_bad_input(tmp_path: Path) -> None:
    rng = random.Random(1234)
    for i in range(40):
        path = write(tmp_path, rng.randbytes(rng.randrange(1, 300)), f"g{i}.bin")
        with contextlib.suppress(BadInput):  # anything else (a traceback) fails the test
            read(path)

