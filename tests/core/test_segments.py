"""The segment language (bot/core/segments.py): every term kind, AND, and the errors people will meet."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from bot.core.model import Account, HealthScore
from bot.core.segments import SegmentError, parse_segment

D = date(2024, 6, 30)

ACCOUNT = Account(
    pk=1, account_id="ACME-1", name="Acme", start_date=date(2022, 1, 1), tier="Enterprise",
    tags=("emea", "retail"), owner_email="Ana@X.com", mrr=Decimal("1000"), seats=50,
    renewal_date=D + timedelta(days=60),
)
BARE = Account(pk=2, account_id="bare", name="Bare", start_date=date(2022, 1, 1))


def health(
    score: int = 55, band: str = "watch", danger: bool = False, forgotten: bool = False
) -> HealthScore:
    return HealthScore(account_id="ACME-1", name="Acme", score=score, band=band, danger_zone=danger,
                       forgotten_zone=forgotten, stickiness=None, engagement=None, drivers=())


H = health()


def matches(text: str, account: Account = ACCOUNT, h: HealthScore | None = H, as_of: date = D) -> bool:
    return parse_segment(text).matches(account, h, as_of)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tier:enterprise", True), ("TIER:Enterprise", True), ("tier:smb", False),
        ("tag:emea", True), ("tag:retail", True), ("tag:amer", False), ("tag:emea;retail", False),
        ("owner:ana@x.com", True), ("owner:ANA@x.com", True), ("owner:bob@x.com", False),
        ("id:acme-1", True), ("id:acme-2", False),
        ("health<60", True), ("health<55", False), ("health<=55", True), ("health>55", False),
        ("health>=55", True), ("health=55", True), ("health==55", True), ("health!=55", False),
        ("score<60", True), ("health<55.5", True),
        ("mrr>=1000", True), ("mrr>1000", False), ("mrr<1000.01", True), ("mrr=1000", True),
        ("seats>49", True), ("seats>50", False),
        ("renewal<90d", True), ("renewal<60d", False), ("renewal<=60d", True), ("renewal>30d", True),
        ("renewal<90D", True),
    ],
)
def test_each_term_matches_and_mismatches(text, expected):
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "h", "expected"),
    [
        ("band:watch", health(band="watch"), True), ("band:healthy", health(band="watch"), False),
        ("band:at_risk", health(band="at_risk"), True), ("BAND:At_Risk", health(band="at_risk"), True),
        ("band:healthy", health(band="healthy"), True),
        ("zone:danger", health(danger=True), True), ("zone:danger", health(), False),
        ("zone:forgotten", health(forgotten=True), True), ("zone:forgotten", health(danger=True), False),
        ("health<60", health(score=59), True), ("health<60", health(score=60), False),
    ],
)
def test_health_terms(text, h, expected):
    assert matches(text, h=h) is expected


@pytest.mark.parametrize(
    "text", ["band:watch", "zone:danger", "zone:forgotten", "health<101", "score>=0", "health!=5"],
)
def test_health_terms_never_match_an_account_without_a_score(text):
    assert matches(text, h=None) is False


@pytest.mark.parametrize(
    "text", ["tier:enterprise", "tag:emea", "owner:ana@x.com", "mrr>=0", "mrr<1", "seats>=0", "renewal<999d",
             "renewal>0d"],
)
def test_account_terms_never_match_missing_fields(text):
    assert matches(text, account=BARE) is False


@pytest.mark.parametrize(
    ("days", "text", "expected"),
    [
        (0, "renewal<90d", True),  # renewing today
        (89, "renewal<90d", True),
        (90, "renewal<90d", False),
        (90, "renewal<=90d", True),
        (-1, "renewal<90d", False),  # a renewal date that has passed is not "within 90 days"
        (-1, "renewal>=0d", False),
    ],
)
def test_renewal_counts_days_from_as_of(days, text, expected):
    a = Account(pk=3, account_id="r", name="R", start_date=date(2022, 1, 1),
                renewal_date=D + timedelta(days=days))
    assert matches(text, account=a) is expected


def test_renewal_moves_with_as_of():
    assert matches("renewal<30d", as_of=D + timedelta(days=40)) is True
    assert matches("renewal<30d", as_of=D) is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tier:enterprise tag:emea", True),
        ("tier:enterprise tag:amer", False),
        ("tag:emea tag:retail owner:ana@x.com mrr>=1000 health<60 renewal<90d band:watch", True),
        ("tag:emea tag:retail owner:ana@x.com mrr>=1000 health<60 renewal<90d band:healthy", False),
        ("  tier:enterprise \t  tag:emea  ", True),  # any whitespace separates terms
    ],
)
def test_terms_are_anded(text, expected):
    assert matches(text) is expected


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_expression_matches_everything(text):
    seg = parse_segment(text)
    assert seg.predicates == () and seg.text == ""
    assert seg.matches(ACCOUNT, H, D) and seg.matches(BARE, None, D)


def test_segment_text_is_normalised():
    assert parse_segment("  tier:enterprise   tag:emea ").text == "tier:enterprise tag:emea"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("region:emea", r"unknown segment term 'region:emea'; segment terms: tier:NAME"),
        (":emea", r"unknown segment term ':emea'"),
        ("tier:", r"segment term 'tier:' has no value"),
        ("band:red", r"unknown band 'red'; bands are healthy, watch, at_risk"),
        ("band:at-risk", r"unknown band 'at-risk'"),
        ("zone:sleepy", r"unknown zone 'sleepy'; zones are danger, forgotten"),
        ("enterprise", r"cannot read segment term 'enterprise'; segment terms:"),
        ("health<abc", r"cannot read segment term 'health<abc'"),
        ("health<", r"cannot read segment term 'health<'"),
        ("health=<60", r"cannot read segment term 'health=<60'"),
        ("health<>60", r"cannot read segment term 'health<>60'"),
        ("mrr>=1,000", r"cannot read segment term 'mrr>=1,000'"),
        ("nps>5", r"cannot read segment term 'nps>5'"),
        ("renewal<90", r"'renewal<90': give the renewal horizon in days, like renewal<90d"),
        ("health<60d", r"'health<60d': only renewal takes days"),
        ("renewal<90w", r"cannot read segment term 'renewal<90w'"),
        ("tier:enterprise bogus", r"cannot read segment term 'bogus'"),  # one bad term spoils the lot
    ],
)
def test_errors_are_segment_errors_with_help(text, message):
    with pytest.raises(SegmentError, match=message):
        parse_segment(text)


def test_spaces_inside_a_comparison_name_the_stray_word():
    # "mrr >= 1000" is three terms; the error names the first one it cannot read
    with pytest.raises(SegmentError, match=r"cannot read segment term 'mrr'"):
        parse_segment("mrr >= 1000")


def test_segment_error_is_a_value_error():
    assert issubclass(SegmentError, ValueError)
