"""Parsers for one CSV cell each: a value, or a ValueError whose text a person can act on."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

TRUE = {"true", "yes", "1", "y", "t"}
FALSE = {"false", "no", "0", "n", "f"}
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,20}$")
MAX_COUNT = 2**31 - 1  # the book's INTEGER columns (32-bit on PostgreSQL)
DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


def parse_date(cell: str) -> date:
    """YYYY-MM-DD, or an ISO 8601 timestamp whose UTC day is taken."""
    if len(cell) == 10:
        try:
            return date.fromisoformat(cell)
        except ValueError:
            pass
    elif len(cell) > 10:
        return parse_timestamp(cell).date()
    raise ValueError(f"{cell!r} is not a date (expected YYYY-MM-DD)")


def parse_timestamp(cell: str) -> datetime:
    """ISO 8601 date or timestamp; naive times are taken as UTC."""
    try:
        value = datetime.fromisoformat(cell)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset pushes it past year 1 or 9999
        raise ValueError(f"{cell!r} is not a date or ISO 8601 timestamp") from None


def parse_month(cell: str) -> date:
    """YYYY-MM (or a full date, whose month is taken) → the first day of that month."""
    if len(cell) == 7 and cell[4] == "-":
        try:
            return date(int(cell[:4]), int(cell[5:]), 1)
        except ValueError:
            pass
    else:
        try:
            return parse_date(cell).replace(day=1)
        except ValueError:
            pass
    raise ValueError(f"{cell!r} is not a month (expected YYYY-MM)")


def parse_count(cell: str) -> int:
    """A whole number ≥ 0."""
    try:
        value = int(cell)
    except ValueError:
        raise ValueError(f"{cell!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{cell} is negative (must be 0 or more)")
    if value > MAX_COUNT:
        raise ValueError(f"{cell} is implausibly large")
    return value


def parse_money(cell: str) -> Decimal:
    """A decimal amount ≥ 0 with at most 2 decimals; thousands separators are not accepted."""
    try:
        value = Decimal(cell)
    except InvalidOperation:
        raise ValueError(f"{cell!r} is not a number (use a dot for decimals, e.g. 1250.50)") from None
    if not value.is_finite():
        raise ValueError(f"{cell!r} is not a number")
    if value < 0:
        raise ValueError(f"{cell} is negative (must be 0 or more)")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError(f"{cell} has more than 2 decimals")
    if value >= Decimal("1e12"):
        raise ValueError(f"{cell} is implausibly large")
    return value.quantize(Decimal("0.01"))


def parse_bool(cell: str) -> bool:
    low = cell.lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise ValueError(f"{cell!r} is not true/false/yes/no/1/0")


@lru_cache(maxsize=65536)
def parse_email(cell: str) -> str:
    """A syntactically valid address, normalised to lower case (no deliverability check)."""
    try:
        result = validate_email(cell, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{cell!r} is not a valid email address ({exc})") from None
    return result.normalized.lower()


def parse_member(cell: str) -> str:
    """An account-team member: a Slack user id (U0123ABCD) or an email address."""
    if SLACK_USER.match(cell):
        return cell
    if "@" in cell:
        return parse_email(cell)
    raise ValueError(f"{cell!r} is neither a Slack user id (like U0123ABCD) nor an email address")


def enum_parser(*allowed: str):  # type: ignore[no-untyped-def]
    """A parser accepting one of `allowed` (case-insensitive)."""
    options = frozenset(allowed)
    listing = "|".join(allowed)

    def parse(cell: str) -> str:
        low = cell.lower()
        if low not in options:
            raise ValueError(f"{cell!r} is not one of {listing}")
        return low

    return parse


def text_parser(max_len: int):  # type: ignore[no-untyped-def]
    def parse(cell: str) -> str:
        if len(cell) > max_len:
            raise ValueError(f"longer than {max_len} characters")
        if "\x00" in cell:
            raise ValueError("contains a NUL character")
        return cell

    return parse


def parse_score(cell: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        raise ValueError(f"{cell!r} is not a whole number from 0 to 10") from None
    if not 0 <= value <= 10:
        raise ValueError(f"{value} is outside 0–10")
    return value


def parse_tags(cell: str) -> str:
    tags = sorted({t.strip().lower() for t in cell.split(";") if t.strip()})
    joined = ";".join(tags)
    if len(joined) > 2000:
        raise ValueError("too many tags (2000 characters at most)")
    return joined


def parse_domain(cell: str) -> str:
    low = cell.strip().lower().removeprefix("https://").removeprefix("http://").removeprefix("www.")
    low = low.rstrip("/")
    # 253: the longest domain name, and the size of the accounts.domain column
    if len(low) > 253 or not DOMAIN.fullmatch(low):
        raise ValueError(f"{cell!r} is not a domain name (like acme.com)")
    return low
