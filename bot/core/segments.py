"""The segment language of CONTRACT §3: terms joined by spaces (AND).

    tier:enterprise  tag:emea  owner:ana@x.com  band:at_risk  zone:danger  zone:forgotten
    health<60  mrr>=1000  renewal<90d
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from bot.core.model import Account, HealthScore

Predicate = Callable[[Account, HealthScore | None, date], bool]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "=": operator.eq,
    "==": operator.eq, "!=": operator.ne,
}
COMPARISON = re.compile(r"^(health|score|mrr|seats|renewal)(<=|>=|==|!=|<|>|=)(-?\d+(?:\.\d+)?)(d?)$")
BANDS = ("healthy", "watch", "at_risk")
HELP = (
    "segment terms: tier:NAME tag:NAME owner:EMAIL band:healthy|watch|at_risk zone:danger|forgotten "
    "health<N mrr>=N seats>N renewal<Nd"
)


class SegmentError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    text: str
    predicates: tuple[Predicate, ...]

    def matches(self, account: Account, health: HealthScore | None, as_of: date) -> bool:
        return all(p(account, health, as_of) for p in self.predicates)


def _term(term: str) -> Predicate:
    low = term.lower()
    if ":" in low:
        key, _, value = low.partition(":")
        if not value:
            raise SegmentError(f"segment term {term!r} has no value; {HELP}")
        if key == "tier":
            return lambda a, h, d: (a.tier or "").lower() == value
        if key == "tag":
            return lambda a, h, d: value in (t.lower() for t in a.tags)
        if key == "owner":
            return lambda a, h, d: (a.owner_email or "").lower() == value
        if key == "band":
            if value not in BANDS:
                raise SegmentError(f"unknown band {value!r}; bands are {', '.join(BANDS)}")
            return lambda a, h, d: h is not None and h.band == value
        if key == "zone":
            if value == "danger":
                return lambda a, h, d: h is not None and h.danger_zone
            if value == "forgotten":
                return lambda a, h, d: h is not None and h.forgotten_zone
            raise SegmentError(f"unknown zone {value!r}; zones are danger, forgotten")
        if key == "id":
            return lambda a, h, d: a.account_id.lower() == value
        raise SegmentError(f"unknown segment term {term!r}; {HELP}")
    match = COMPARISON.match(low)
    if match is None:
        raise SegmentError(f"cannot read segment term {term!r}; {HELP}")
    field, op_text, number, days = match.groups()
    op, limit = OPS[op_text], float(number)
    if field == "renewal":
        if not days:
            raise SegmentError(f"{term!r}: give the renewal horizon in days, like renewal<90d")
        return lambda a, h, d: a.renewal_date is not None and (a.renewal_date - d).days >= 0 and op(
            (a.renewal_date - d).days, limit
        )
    if days:
        raise SegmentError(f"{term!r}: only renewal takes days")
    if field in ("health", "score"):
        return lambda a, h, d: h is not None and op(h.score, limit)
    if field == "mrr":
        return lambda a, h, d: a.mrr is not None and op(float(a.mrr), limit)
    return lambda a, h, d: a.seats is not None and op(a.seats, limit)


def parse_segment(text: str | None) -> Segment:
    """Parse an expression; an empty one matches everything."""
    terms = (text or "").split()
    return Segment(" ".join(terms), tuple(_term(t) for t in terms))
