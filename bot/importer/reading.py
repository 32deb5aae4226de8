"""Open a customer's CSV as it really comes: any of four encodings, three delimiters, streamed.

CONTRACT §4: UTF-8 with or without BOM, UTF-16 with BOM, Windows-1252; comma, semicolon or tab.
The file is never read into memory whole: the encoding is decided by one streaming pass of the raw
bytes, then rows are read lazily.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from bot.errors import BadInput

CHUNK = 1 << 20
BLOCK = 20_000  # rows the csv module reads in one call for `CsvFile.rows`
DELIMITERS = (",", ";", "\t")
MAX_CELL = 1 << 20

csv.field_size_limit(MAX_CELL)


def is_blank(cells: list[str]) -> bool:
    """A blank line, or a row of empty cells (spreadsheets export ',,,'): no row at all."""
    return not cells or not (cells[0].strip() or any(cell.strip() for cell in cells))


@dataclass(frozen=True)
class CsvFile:
    path: Path
    encoding: str
    delimiter: str
    header: list[str]  # trimmed, lower case
    reader: Iterator[list[str]]  # the rows after the header
    header_row: int = 1  # the header's row number, as a spreadsheet numbers it (blank rows first)

    def blocks(self, size: int) -> Iterator[tuple[int, list[list[str]]]]:
        """The rows after the header, up to `size` at a time, as (the first one's spreadsheet row
        number, every row's cells): blank rows included, numbered as rows (`is_blank` tells them).
        A block is read by the csv module in one call: no Python step per row."""
        number = self.header_row + 1
        while True:
            block: list[list[str]] = []
            try:
                block.extend(islice(self.reader, size))  # keeps the rows read before a malformed one
            except csv.Error as exc:
                raise BadInput(f"{self.path}: row {number + len(block)}: malformed CSV ({exc})") from None
            if not block:
                return
            yield number, block
            number += len(block)

    @property
    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(spreadsheet row number, cells) of every row that is not blank."""
        for first, block in self.blocks(BLOCK):
            for number, cells in enumerate(block, first):
                if not is_blank(cells):
                    yield number, cells


def _decodes(fh: BinaryIO, encoding: str) -> bool:
    """Whether the whole file decodes as `encoding` into text without NUL characters (streamed)."""
    fh.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while chunk := fh.read(CHUNK):
            if "\x00" in decoder.decode(chunk):
                return False
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(path: Path) -> str:
    """UTF-16 and UTF-8 by their BOM; else UTF-8 if every byte decodes, else Windows-1252.

    The whole file must decode (and hold no NUL): a file that does not is binary, not a CSV.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            candidates: tuple[str, ...] = ("utf-16",)
        elif head.startswith(codecs.BOM_UTF8):
            candidates = ("utf-8-sig",)
        else:
            candidates = ("utf-8", "cp1252")
        for encoding in candidates:
            if _decodes(fh, encoding):
                return encoding
    raise BadInput(
        f"{path}: not a text CSV file (expected UTF-8, UTF-16 with BOM or Windows-1252)"
    )


def _pick_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


@contextmanager
def open_csv(path: Path) -> Iterator[CsvFile]:
    """Yield the file's header and a lazy iterator of its rows; errors are BadInput naming the file."""
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if not path.is_file():
        raise BadInput(f"{path}: not a file")
    encoding = detect_encoding(path)
    with path.open("r", encoding=encoding, newline="") as fh:
        first = fh.readline()
        while first and not first.strip():
            first = fh.readline()
        if not first.strip():
            raise BadInput(f"{path}: the file is empty (a header row is required)")
        delimiter = _pick_delimiter(first)
        fh.seek(0)
        reader = csv.reader(fh, delimiter=delimiter, strict=False)
        header_row = 1
        try:
            raw_header = next(reader)
            while not any(cell.strip() for cell in raw_header):
                raw_header = next(reader)
                header_row += 1
        except csv.Error as exc:
            raise BadInput(f"{path}: unreadable header row ({exc})") from None
        except StopIteration:
            raise BadInput(f"{path}: the header row has no column names") from None
        header = [cell.strip().lower() for cell in raw_header]
        seen: set[str] = set()
        for name in header:
            if name and name in seen:
                raise BadInput(f"{path}: column {name!r} appears twice in the header")
            seen.add(name)

        yield CsvFile(path, encoding, delimiter, header, reader, header_row)

