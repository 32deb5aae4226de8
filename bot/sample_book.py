"""Deterministic generator of a believable customer book, written as CSV files.

Used by ``keepwell demo`` (a few hundred accounts) and by the benchmarks (10,000+ accounts).
Everything is derived from ``seed`` and ``as_of`` only: no global random state, no clock, so the
same arguments always give byte-identical files. Rows are streamed to disk account by account;
nothing proportional to the size of the book is kept in memory except the set of used names.

Each account gets its own ``random.Random`` streams derived from ``(seed, account number)``, so the
first N accounts of a big book are the same as those of a small one (given the same ``days``).
"""

from __future__ import annotations

import csv
import random
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

__all__ = ["FILE_NAMES", "generate_book"]

# File name per kind, in import order. Both usage files have kind "usage".
FILE_NAMES: tuple[tuple[str, str], ...] = (
    ("accounts", "accounts.csv"),
    ("contacts", "contacts.csv"),
    ("team", "team.csv"),
    ("mrr", "mrr.csv"),
    ("usage", "usage.csv"),
    ("usage", "usage_users.csv"),
    ("nps", "nps.csv"),
    ("tickets", "tickets.csv"),
    ("invoices", "invoices.csv"),
    ("touches", "touches.csv"),
)

HEADERS: dict[str, tuple[str, ...]] = {
    "accounts.csv": (
        "account_id", "name", "start_date", "domain", "tier", "tags", "owner_email", "mrr", "seats",
        "renewal_date", "churn_date", "churn_reason",
    ),
    "contacts.csv": ("email", "account_id", "first_name", "last_name", "title", "role", "do_not_contact"),
    "team.csv": ("account_id", "member", "function"),
    "mrr.csv": ("account_id", "month", "mrr"),
    "usage.csv": ("account_id", "date", "active_users", "events"),
    "usage_users.csv": ("account_id", "date", "user_id", "events"),
    "nps.csv": ("date", "score", "account_id", "email", "touchpoint", "comment"),
    "tickets.csv": ("ticket_id", "account_id", "opened_at", "closed_at", "priority", "kind"),
    "invoices.csv": ("invoice_id", "account_id", "amount", "due_date", "paid_date"),
    "touches.csv": ("account_id", "date", "channel", "team", "contact_email", "sentiment", "kind", "note"),
}

# --------------------------------------------------------------------------------------------
# Word lists
# --------------------------------------------------------------------------------------------

_NAME_HEADS = (
    "North", "Blue", "Silver", "Red", "Iron", "Bright", "Clear", "Green", "High", "Deep", "Swift",
    "Stone", "Oak", "Pine", "Cedar", "Maple", "River", "Lake", "Sun", "Star", "Moon", "Cloud", "Summit",
    "Harbor", "Granite", "Copper", "Golden", "Crystal", "True", "Open", "Wild", "Quiet", "Bold", "Ever",
    "West", "East", "South", "Far", "Prime", "Alder", "Birch", "Falcon", "Raven", "Fox", "Wolf", "Bear",
    "Hawk", "Arrow", "Beacon", "Atlas",
)
_NAME_TAILS = (
    "wind", "peak", "field", "stone", "bridge", "gate", "point", "wood", "light", "line", "wave", "path",
    "view", "crest", "ridge", "brook", "haven", "works", "forge", "mark", "leaf", "spring", "shore",
    "port", "side", "vale", "dale", "star", "bay", "loop",
)
# Sector word -> industry tag ("" = no industry tag implied by the name).
_SECTORS: tuple[tuple[str, str], ...] = (
    ("Capital", "fintech"), ("Payments", "fintech"), ("Finance", "fintech"), ("Ledger", "fintech"),
    ("Health", "health"), ("Care", "health"), ("Clinics", "health"), ("Medical", "health"),
    ("Retail", "retail"), ("Goods", "retail"), ("Outfitters", "retail"), ("Market", "retail"),
    ("Software", "saas"), ("Labs", "saas"), ("Systems", "saas"), ("Cloud", "saas"),
    ("Logistics", "logistics"), ("Freight", "logistics"), ("Shipping", "logistics"),
    ("Transport", "logistics"), ("Learning", "education"), ("Academy", "education"),
    ("Education", "education"), ("Schools", "education"), ("Partners", ""), ("Group", ""),
    ("Industries", ""), ("Works", ""), ("Ventures", ""), ("Studio", ""), ("Consulting", ""),
    ("Energy", ""), ("Foods", ""), ("Media", ""),
)
_LEGAL = ("", "", "", "", "", " Inc", " Ltd", " & Co", " GmbH", " Holdings")
_INDUSTRIES = ("fintech", "health", "retail", "saas", "logistics", "education")
_REGIONS = ("amer", "amer", "amer", "emea", "emea", "apac")

_FIRST_NAMES = (
    "Alice", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hiro", "Isabel", "Jonas", "Kara",
    "Liam", "Maria", "Noah", "Olivia", "Pavel", "Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera",
    "Wen", "Xavier", "Yara", "Zoë", "José", "Søren", "François", "Chloé", "Björn", "Renée", "Łukasz",
    "Ana", "Chen", "Dmitri", "Elena", "Fatima", "Gustavo", "Hannah", "Ines", "Jakub", "Kenji", "Leila",
    "Mateo", "Nadia", "Oscar", "Priya", "Ravi", "Sofia", "Tomás", "Aisha", "Marcus", "Julia", "Kofi",
)
_LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Müller", "Nguyen", "Kim", "Patel", "Rossi", "Novak", "Silva",
    "Cohen", "O'Brien", "Dubois", "Andersen", "Kowalski", "Tanaka", "Okafor", "Haddad", "Larsen",
    "Núñez", "Fischer", "Ødegaard", "Moreau", "Brown", "Wilson", "Martin", "Lopez", "Schmidt", "Singh",
    "Yamamoto", "Clarke", "Hughes", "Bauer", "Costa", "Ivanova", "Mensah", "Reyes", "Walsh", "Berg",
    "Sato", "Ahmed", "Jensen", "Romero", "Weber", "Lindqvist", "Chowdhury", "Park", "Evans", "Khan",
)
_TITLES: dict[str, tuple[str, ...]] = {
    "champion": (
        "Head of Operations", "Product Manager", "Director of Customer Operations", "Team Lead",
        "Operations Manager", "Head of Analytics",
    ),
    "decision_maker": ("VP Operations", "COO", "CFO", "CTO", "VP Finance", "Head of IT", "CEO"),
    "billing": ("Accounts Payable", "Finance Manager", "Controller", "Billing Specialist"),
    "user": (
        "Analyst", "Support Specialist", "Operations Associate", "Account Executive", "Data Analyst",
        "Customer Success Rep",
    ),
    "other": ("IT Administrator", "Procurement Lead", "Legal Counsel", "Security Officer"),
}

_COMPANY_DOMAIN = "keepwell-demo.example"
_CSMS = tuple(
    f"{n}@{_COMPANY_DOMAIN}"
    for n in ("maya.chen", "sam.okafor", "lena.fischer", "diego.ramos", "priya.nair", "tom.becker")
)
# Other functions: a mix of Slack user ids and emails, as a real team.csv would be.
_STAFF: dict[str, tuple[str, ...]] = {
    "sales": ("U04K2P7QD", f"nora.bell@{_COMPANY_DOMAIN}", "U05B8XJ3R", f"omar.vidal@{_COMPANY_DOMAIN}"),
    "support": ("U03TQ9M2A", "U06HF4K8Z", f"ines.moreau@{_COMPANY_DOMAIN}"),
    "product": ("U02ZL5W1C", f"felix.wagner@{_COMPANY_DOMAIN}"),
    "marketing": ("U07MR2D6E",),
    "exec": (f"ruth.adler@{_COMPANY_DOMAIN}", "U01AB3CDE"),
}

_CHURN_REASONS = (
    "price", "moved to competitor", "no longer needed", "poor onboarding", "missing feature",
    "budget cuts", "acquired",
)

_NPS_DETRACTOR = (
    "Reports keep timing out, and support takes days to answer.",
    "Too expensive for what we actually use.",
    "Onboarding was rushed; half the team never got access.",
    "We need SSO, the CSV export is not enough.",
    "Zoë on our side has given up on the dashboards.",
    "Billing errors, twice this quarter.",
    "The façade looks nice, but the data is often stale.",
    "Not sure we still need it — usage has dropped a lot.",
    "Slow, buggy, and the new UI broke our workflow.",
)
_NPS_PASSIVE = (
    "Does the job, nothing more.",
    "Good product, pricing is a bit high.",
    "Fine overall; the mobile app needs work.",
    "Useful, but our team hasn't adopted it fully.",
    "Solid, though reporting could be faster.",
    "OK. Would like better Salesforce sync.",
)
_NPS_PROMOTER = (
    "Our CSM is great, always quick to help.",
    "Saves my team hours every week!",
    "Easy to set up, and the health scores are spot on.",
    "Love the new dashboards — merci à l'équipe!",
    "Indispensable for our weekly reviews, très bien.",
    "Exactly what we needed, thanks José and team.",
    "Great support, fast answers.",
)

# Touch notes by (kind, sentiment); {first} = contact first name, {n} = a small number.
_NOTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("checkin", "positive"): (
        "Quick check-in with {first}: adoption looks healthy, no blockers.",
        '{first} says the weekly report saves them "at least a day" a month.',
        "Reviewed usage with {first}; they want to roll out to {n} more people.",
    ),
    ("checkin", "neutral"): (
        "Sent the monthly summary, no reply yet.",
        "{first} asked about SSO, shared the docs link.",
        "Checked in on open tickets, {first} is waiting on IT.",
        "Routine check-in; nothing new, usage steady.",
    ),
    ("checkin", "negative"): (
        '{first} is unhappy with report speed, "it\'s getting worse".',
        "Usage down, {first} says the team went back to spreadsheets.",
        "Escalation: {first} flagged data gaps, asked for a call with product.",
    ),
    ("qbr", "positive"): (
        "QBR with {first}: goals met, discussed expansion to {n} more seats.",
        'QBR went well, {first} called the health dashboard "a game changer".',
    ),
    ("qbr", "neutral"): (
        "QBR: reviewed health score, agreed on training for new hires.",
        "QBR with {first}, steady usage; follow up on the API roadmap.",
    ),
    ("qbr", "negative"): (
        "QBR was tense; {first} questioned the value, wants a plan before renewal.",
        'QBR: {first} said "we are not getting ROI", asked for a discount.',
    ),
    ("renewal", "positive"): (
        "Renewal call, {first} confirmed budget; sending the order form.",
        "{first} wants to renew for two years, asked about multi-year pricing.",
    ),
    ("renewal", "neutral"): (
        "Renewal prep: {first} asked for a quote, comparing options.",
        "Sent renewal paperwork, {first} needs legal review.",
    ),
    ("renewal", "negative"): (
        '{first} hinted at "looking around" before renewal, price is the issue.',
        "Renewal at risk: budget frozen, {first} can't commit yet.",
    ),
    ("onboarding", "positive"): (
        "Kickoff done, {first} invited {n} users, first dashboard live.",
        "Onboarding session with {first}: data import finished, great energy.",
    ),
    ("onboarding", "neutral"): (
        "Onboarding session 2: data import half done, follow-up Thursday.",
        "Walked {first} through the admin settings, SSO next week.",
    ),
    ("onboarding", "negative"): (
        "Onboarding stalled, {first} hasn't connected the CRM yet.",
        "Kickoff postponed twice; {first} is swamped, rescheduling.",
    ),
    ("other", "positive"): (
        "Shared the product webinar invite with {first}, she's in.",
        "Sent the case study draft, {first} approved the quote.",
    ),
    ("other", "neutral"): (
        "Shared the product webinar invite with {first}.",
        "Sent release notes, {first} may join the customer advisory board.",
    ),
    ("other", "negative"): (
        "{first} replied to the newsletter: \"please stop, we're reconsidering\".",
        "Support escalation forwarded to product, {first} copied.",
    ),
}

# One deck of 28 statuses is shuffled per block of 28 accounts (ACME excluded): the proportions hold
# even in a small book. Churned ~10.7%, forgotten ~3.6%, sliding ~7%, growing ~14%, recovering ~7%.
_STATUS_DECK = (
    ("churned",) * 3 + ("forgotten",) + ("sliding",) * 2 + ("growing",) * 4 + ("recovering",) * 2
    + ("stable",) * 16
)
_NEW_DECK = (True,) + (False,) * 9  # ~10% of accounts started within the last 12 months

_TIER_RANGES: dict[str, tuple[float, float, int, int]] = {
    # tier: (mrr min, mrr max, seats min, seats max)
    "enterprise": (5_000.0, 40_000.0, 100, 1_000),
    "mid-market": (1_000.0, 5_000.0, 20, 150),
    "smb": (50.0, 1_000.0, 2, 25),
}

_TRANSLIT = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "Æ": "AE"})


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _ascii_slug(text: str, sep: str = "") -> str:
    """Lowercase ASCII letters/digits of ``text``; runs of other characters become ``sep``."""
    folded = unicodedata.normalize("NFKD", text.translate(_TRANSLIT)).encode("ascii", "ignore").decode()
    out: list[str] = []
    pending = False
    for ch in folded.lower():
        if ch.isascii() and ch.isalnum():
            if pending and out:
                out.append(sep)
            pending = False
            out.append(ch)
        elif ch not in "'’":
            pending = True
    return "".join(out)


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _next_anniversary(start: date, after: date) -> date:
    """First anniversary of ``start`` strictly after ``after``."""
    years = max(1, after.year - start.year)
    ann = _add_years(start, years)
    while ann <= after:
        years += 1
        ann = _add_years(start, years)
    return ann


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def _month_label(mi: int) -> str:
    return f"{mi // 12:04d}-{mi % 12 + 1:02d}"


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    total = sum(w for _, w in options)
    x = rng.random() * total
    for value, w in options:
        x -= w
        if x < 0:
            return value
    return options[-1][0]


def _curve(n: int, knots: Sequence[tuple[int, float]]) -> list[float]:
    """Piecewise-linear curve over indexes 0..n-1 through ``knots`` (flat before/after them)."""
    out = [knots[0][1]] * n
    for (x0, y0), (x1, y1) in pairwise(knots):
        if x1 <= x0:
            continue
        slope = (y1 - y0) / (x1 - x0)
        for j in range(max(x0, 0), min(x1, n - 1) + 1):
            out[j] = y0 + slope * (j - x0)
    last_x, last_y = knots[-1]
    for j in range(max(last_x + 1, 0), n):
        out[j] = last_y
    return out


def _sub_seed(seed: int, purpose: int, index: int) -> int:
    return (seed * 1_000_003 + purpose) * 10_000_019 + index


# --------------------------------------------------------------------------------------------
# The account model
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Contact:
    email: str
    first: str
    last: str
    title: str
    role: str
    dnc: bool


@dataclass(slots=True)
class _Account:
    index: int
    account_id: str
    name: str
    domain: str
    tier: str
    tags: str
    owner: str
    seats: int
    mrr: float
    start: date
    churn: date | None
    churn_reason: str
    renewal: date | None
    status: str
    is_new: bool
    billing_day: int
    payer: str
    silent_from: date | None = None  # forgotten: first day without any usage
    trouble_from: date | None = None  # sliding/churned/recovering: the bad stretch
    trouble_to: date | None = None
    slide_end: float = 1.0
    dip_low: float = 1.0
    contacts: list[_Contact] = field(default_factory=list)
    team: list[tuple[str, str]] = field(default_factory=list)

    def in_trouble(self, d: date) -> bool:
        return (
            self.trouble_from is not None
            and self.trouble_to is not None
            and self.trouble_from <= d <= self.trouble_to
        )

    @property
    def last_day(self) -> date | None:
        """Last day as a customer (None = still a customer)."""
        return self.churn - timedelta(days=1) if self.churn else None


@dataclass(slots=True)
class _Ctx:
    as_of: date
    days: int
    window_start: date
    user_level_days: int
    id_prefix: str
    id_width: int
    used_names: set[str]
    used_domains: set[str]
    dates: list[str]  # ISO strings of the usage window
    day_mult: list[float]  # weekly seasonality and holidays per window day
    counters: dict[str, int]


# --------------------------------------------------------------------------------------------
# Profile: account, contacts, team
# --------------------------------------------------------------------------------------------


def _pick_name(rng: random.Random, ctx: _Ctx, index: int) -> tuple[str, str]:
    """A unique (name, industry implied by the name)."""
    for _ in range(40):
        head = rng.choice(_NAME_HEADS)
        tail = rng.choice(_NAME_TAILS)
        if head.lower() == tail or head.lower().endswith(tail):
            continue
        sector, industry = rng.choice(_SECTORS)
        name = f"{head}{tail} {sector}{rng.choice(_LEGAL)}"
        domain = _ascii_slug(name, "-") + ".example"
        if name not in ctx.used_names and domain not in ctx.used_domains:
            return name, industry
    name = f"{rng.choice(_NAME_HEADS)}{rng.choice(_NAME_TAILS)} Company {index}"
    return name, ""


def _make_contacts(rng: random.Random, acc: _Account) -> list[_Contact]:
    lo, hi = {"smb": (1, 3), "mid-market": (2, 5), "enterprise": (4, 8)}[acc.tier]
    count = rng.randint(lo, hi)
    roles: list[str] = []
    if rng.random() >= 0.10:
        roles.append("champion")
    roles.append("decision_maker")
    if acc.tier != "smb" or rng.random() < 0.4:
        roles.append("billing")
    while len(roles) < count:
        roles.append("user" if rng.random() < 0.8 else "other")
    roles = roles[:count]
    contacts: list[_Contact] = []
    used: set[str] = set()
    for k, role in enumerate(roles):
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        f_slug, l_slug = _ascii_slug(first), _ascii_slug(last)
        local = f"{f_slug}.{l_slug}" if rng.random() < 0.8 else f"{f_slug[0]}{l_slug}"
        email = f"{local}@{acc.domain}"
        n = 2
        while email in used:
            email = f"{local}{n}@{acc.domain}"
            n += 1
        used.add(email)
        dnc = k > 0 and rng.random() < 0.04
        contacts.append(_Contact(email, first, last, rng.choice(_TITLES[role]), role, dnc))
    return contacts


def _make_team(rng: random.Random, acc: _Account) -> list[tuple[str, str]]:
    team = [(acc.owner, "cs")]
    if acc.tier != "smb" or rng.random() < 0.7:
        team.append((rng.choice(_STAFF["sales"]), "sales"))
    if rng.random() < 0.5:
        team.append((rng.choice(_STAFF["support"]), "support"))
    if acc.tier == "enterprise" and rng.random() < 0.8:
        team.append((rng.choice(_STAFF["exec"]), "exec"))
    if rng.random() < 0.1:
        team.append((rng.choice(_STAFF["product"]), "product"))
    if rng.random() < 0.05:
        team.append((rng.choice(_STAFF["marketing"]), "marketing"))
    if len(team) < 2:
        team.append((rng.choice(_STAFF["sales"]), "sales"))
    return team[:4]


def _make_account(rng: random.Random, ctx: _Ctx, index: int, status: str, is_new: bool) -> _Account:
    as_of = ctx.as_of
    tier = _weighted(rng, (("enterprise", 0.1), ("mid-market", 0.3), ("smb", 0.6)))
    mrr_lo, mrr_hi, seats_lo, seats_hi = _TIER_RANGES[tier]
    seats = round(seats_lo * (seats_hi / seats_lo) ** rng.random())
    price = rng.choice((29, 35, 39, 45, 49, 55)) * (1 - rng.choice((0.0, 0.0, 0.05, 0.1, 0.15, 0.2)))
    mrr = min(max(seats * price, mrr_lo), mrr_hi)
    mrr = float(round(mrr)) if rng.random() < 0.6 else round(mrr, 2)
    name, industry = _pick_name(rng, ctx, index)
    domain = _ascii_slug(name, "-") + ".example"
    if not industry and rng.random() < 0.5:
        industry = rng.choice(_INDUSTRIES)
    tags = rng.choice(_REGIONS) + (f";{industry}" if industry else "")
    owner = rng.choice(_CSMS)

    # Lifetime. "ago" values are days before as_of.
    churn: date | None = None
    reason = ""
    if is_new:
        min_ago = {"churned": 120, "forgotten": 150, "sliding": 130, "recovering": 220}.get(status, 7)
        start = as_of - timedelta(days=rng.randint(min_ago, 360))
    else:
        start = as_of - timedelta(days=rng.randint(366, 1460))
    if status == "churned":
        start_ago = (as_of - start).days
        churn_ago = rng.randint(3, min(360, start_ago - 60))
        churn = as_of - timedelta(days=churn_ago)
        if not is_new and rng.random() < 0.5:  # most churn happens at renewal time
            ann = _next_anniversary(start, as_of - timedelta(days=361))
            if ann <= as_of - timedelta(days=3):
                churn = ann
        reason = "" if rng.random() < 0.2 else rng.choice(_CHURN_REASONS)
    renewal = None if churn else _next_anniversary(start, as_of)
    payer = _weighted(rng, (("autopay", 0.4), ("prompt", 0.35), ("slow", 0.2), ("erratic", 0.05)))
    acc = _Account(
        index=index, account_id=f"{ctx.id_prefix}{index:0{ctx.id_width}d}", name=name, domain=domain,
        tier=tier, tags=tags, owner=owner, seats=seats, mrr=mrr, start=start, churn=churn,
        churn_reason=reason, renewal=renewal, status=status, is_new=is_new,
        billing_day=min(start.day, 28), payer=payer,
    )
    if status == "forgotten":
        acc.silent_from = as_of - timedelta(days=rng.randint(36, 100))
    elif status == "sliding":
        acc.trouble_from = as_of - timedelta(days=rng.randint(45, 75))
        acc.trouble_to = as_of
        acc.slide_end = rng.uniform(0.3, 0.55)
    elif status == "churned" and churn is not None:
        if reason != "acquired" and rng.random() < 0.8:
            acc.trouble_from = max(churn - timedelta(days=rng.randint(30, 90)), start + timedelta(days=20))
            acc.trouble_to = churn - timedelta(days=1)
            acc.slide_end = rng.uniform(0.1, 0.4)
    elif status == "recovering":
        acc.trouble_from = as_of - timedelta(days=rng.randint(110, 150))
        acc.trouble_to = as_of - timedelta(days=rng.randint(15, 35))
        acc.dip_low = rng.uniform(0.4, 0.6)
    acc.contacts = _make_contacts(rng, acc)
    acc.team = _make_team(rng, acc)
    return acc


def _make_acme(ctx: _Ctx, index: int) -> _Account:
    """ACME Corp: the account the demo is about. Enterprise, sliding, renewal in ~52 days."""
    as_of = ctx.as_of
    renewal = as_of + timedelta(days=52)
    start = _add_years(renewal, -2)
    acc = _Account(
        index=index, account_id=f"{ctx.id_prefix}{index:0{ctx.id_width}d}", name="ACME Corp",
        domain="acme.example", tier="enterprise", tags="amer;retail", owner=_CSMS[0], seats=220,
        mrr=12_400.0, start=start, churn=None, churn_reason="", renewal=_next_anniversary(start, as_of),
        status="sliding", is_new=False, billing_day=min((as_of - timedelta(days=14)).day, 28),
        payer="prompt", trouble_from=as_of - timedelta(days=60), trouble_to=as_of, slide_end=0.3,
    )
    d = acc.domain
    acc.contacts = [
        _Contact(f"dana.whitfield@{d}", "Dana", "Whitfield", "Head of Operations", "champion", False),
        _Contact(f"marcus.lee@{d}", "Marcus", "Lee", "VP Finance", "decision_maker", False),
        _Contact(f"priya.raman@{d}", "Priya", "Raman", "Accounts Payable", "billing", False),
        _Contact(f"zoe.laurent@{d}", "Zoë", "Laurent", "Operations Analyst", "user", False),
        _Contact(f"tom.hughes@{d}", "Tom", "Hughes", "Support Specialist", "user", True),
    ]
    acc.team = [(_CSMS[0], "cs"), (_STAFF["sales"][0], "sales"), (_STAFF["support"][0], "support"),
                (_STAFF["exec"][0], "exec")]
    return acc


# --------------------------------------------------------------------------------------------
# Activity: MRR history, usage, NPS, tickets, invoices, touches
# --------------------------------------------------------------------------------------------


def _mrr_history(rng: random.Random, ctx: _Ctx, acc: _Account) -> list[tuple[int, float]]:
    """Monthly MRR from the start month (at most 24 months back) to the last month as a customer."""
    last_mi = _month_index(acc.last_day or ctx.as_of)
    first_mi = max(_month_index(acc.start), _month_index(ctx.as_of) - 24)
    trouble_mi = _month_index(acc.trouble_from) if acc.trouble_from else None
    values = [acc.mrr]
    v = acc.mrr
    for mi in range(last_mi - 1, first_mi - 1, -1):
        # Walk backwards: undo the change that happened going from month mi to mi + 1.
        change = 0.0
        if acc.status == "growing" and rng.random() < 0.12:
            change = rng.uniform(0.08, 0.35)
        elif trouble_mi is not None and mi + 1 >= trouble_mi and rng.random() < 0.3:
            change = -rng.uniform(0.08, 0.25)
        elif acc.is_new and mi - first_mi < 4 and rng.random() < 0.3:
            change = rng.uniform(0.1, 0.5)
        elif rng.random() < 0.05:
            change = rng.uniform(-0.06, 0.12)
        if change:
            v = min(max(v / (1 + change), 0.3 * acc.mrr), 3 * acc.mrr)
            v = float(round(v)) if v >= 100 else round(v, 2)
        values.append(v)
    values.reverse()
    return [(first_mi + k, val) for k, val in enumerate(values)]


def _usage_curve(rng: random.Random, ctx: _Ctx, acc: _Account) -> list[float]:
    n = ctx.days
    ws = ctx.window_start

    def jx(d: date) -> int:
        return (d - ws).days

    knots: list[tuple[int, float]]
    if acc.status == "growing":
        knots = [(0, rng.uniform(0.6, 0.8)), (n - 1, rng.uniform(1.1, 1.3))]
    elif acc.status in ("sliding", "churned") and acc.trouble_from and acc.trouble_to:
        knots = [(jx(acc.trouble_from), 1.0), (jx(acc.trouble_to), acc.slide_end)]
    elif acc.status == "recovering" and acc.trouble_from and acc.trouble_to:
        tf, tt = jx(acc.trouble_from), jx(acc.trouble_to)
        bottom = tf + (tt - tf) // 3
        knots = [(tf, 1.0), (bottom, acc.dip_low), (bottom + (tt - bottom) // 2, acc.dip_low * 1.05),
                 (tt, rng.uniform(0.95, 1.1))]
    elif acc.status == "forgotten" and acc.silent_from:
        knots = [(jx(acc.silent_from) - 30, 1.0), (jx(acc.silent_from), 0.7)]
    else:
        knots = [(0, rng.uniform(0.92, 1.08)), (n - 1, rng.uniform(0.92, 1.08))]
    curve = _curve(n, knots)
    s = jx(acc.start)
    if s > -45:  # onboarding ramp over the first 45 days
        for j in range(max(s, 0), min(s + 45, n)):
            curve[j] *= 0.25 + 0.75 * (j - s) / 45
    return curve


def _write_usage(
    rng: random.Random, ctx: _Ctx, acc: _Account, out: IO[str], out_users: IO[str] | None
) -> tuple[int, int]:
    """Account-level (and, for the last days, user-level) usage rows. Returns the row counts."""
    n = ctx.days
    ws = ctx.window_start
    lo = max(0, (acc.start - ws).days)
    hi = n
    if acc.churn is not None:
        hi = min(hi, (acc.churn - ws).days)
    if acc.silent_from is not None:
        hi = min(hi, (acc.silent_from - ws).days)
    if hi <= lo:
        return 0, 0
    util_lo, util_hi = {"enterprise": (0.25, 0.55), "mid-market": (0.35, 0.65), "smb": (0.45, 0.85)}[acc.tier]
    util = rng.uniform(util_lo, util_hi)
    seats = acc.seats
    base = seats * util
    epu = rng.uniform(5.0, 40.0)  # events per active user per day
    curve = _usage_curve(rng, ctx, acc)
    mult = ctx.day_mult
    dates = ctx.dates
    aid = acc.account_id
    rnd = rng.random
    parts: list[str] = []
    rows = 0
    split = hi if out_users is None else max(lo, min(hi, n - ctx.user_level_days))
    for j in range(lo, split):
        au = int(base * curve[j] * mult[j] * (0.85 + 0.3 * rnd()) + 0.5)
        if au <= 0:
            continue
        if au > seats:
            au = seats
        parts.append(f"{aid},{dates[j]},{au},{int(au * epu * (0.7 + 0.6 * rnd())) + au}\n")
    user_rows = 0
    if out_users is not None and split < hi:
        # A stable pool of users; the daily active set is a window over the pool, skewed toward
        # its head (the regulars), so monthly distinct users < sum of daily users.
        pool = [f"{aid}-U{k:04d}" for k in range(1, seats + 1)]
        rng.shuffle(pool)
        pool2 = pool + pool
        uparts: list[str] = []
        for j in range(split, hi):
            au = int(base * curve[j] * mult[j] * (0.85 + 0.3 * rnd()) + 0.5)
            if au <= 0:
                continue
            if au > seats:
                au = seats
            ds = dates[j]
            off = int(rnd() * rnd() * seats)
            total = 0
            for uid in pool2[off:off + au]:
                ev = 1 + int(epu * (0.2 + 1.6 * rnd()))
                total += ev
                uparts.append(f"{aid},{ds},{uid},{ev}\n")
            parts.append(f"{aid},{ds},{au},{total}\n")
            user_rows += au
        out_users.write("".join(uparts))
    rows = len(parts)
    out.write("".join(parts))
    return rows, user_rows


def _score(rng: random.Random, mean: float) -> int:
    noise = (rng.random() + rng.random() + rng.random() - 1.5) * 3.0
    return min(10, max(0, round(mean + noise)))


def _comment(rng: random.Random, score: int) -> str:
    if rng.random() < 0.35:
        return ""
    pool = _NPS_DETRACTOR if score <= 6 else _NPS_PASSIVE if score <= 8 else _NPS_PROMOTER
    return rng.choice(pool)


def _mood(acc: _Account, d: date) -> float:
    """Mean NPS score for the account on day ``d``."""
    if acc.in_trouble(d):
        return 3.5
    if acc.is_new and (d - acc.start).days < 120:
        return 8.6
    return {"growing": 8.8, "stable": 8.0, "recovering": 7.6, "forgotten": 7.0, "churned": 6.8,
            "sliding": 7.4}[acc.status]


def _reachable(acc: _Account) -> list[_Contact]:
    return [c for c in acc.contacts if not c.dnc] or acc.contacts


def _nps_rows(rng: random.Random, ctx: _Ctx, acc: _Account, lo: date, hi: date) -> list[list[Any]]:
    rows: list[tuple[date, int, str, str, str]] = []
    contacts = _reachable(acc)
    # Onboarding survey ~40 days after start.
    onb = acc.start + timedelta(days=rng.randint(30, 50))
    if lo <= onb <= hi and rng.random() < 0.6:
        s = _score(rng, _mood(acc, onb))
        rows.append((onb, s, contacts[0].email, "onboarding", _comment(rng, s)))
    # Relationship survey every ~quarter.
    touchpoint = "other" if acc.tier == "smb" else "qbr"
    d = lo + timedelta(days=rng.randint(0, 89))
    while d <= hi:
        for c in contacts:
            if rng.random() < 0.3:
                dd = min(d + timedelta(days=rng.randint(0, 6)), hi)
                s = _score(rng, _mood(acc, dd))
                rows.append((dd, s, c.email, touchpoint, _comment(rng, s)))
        d += timedelta(days=rng.randint(80, 100))
    # Renewal survey.
    if acc.renewal is not None:
        rd = acc.renewal - timedelta(days=rng.randint(30, 60) + 365)
        if lo <= rd <= hi and rng.random() < 0.3:
            s = _score(rng, _mood(acc, rd))
            rows.append((rd, s, rng.choice(contacts).email, "renewal", _comment(rng, s)))
    if acc.name == "ACME Corp" and acc.index == 1:
        dd = max(lo, ctx.as_of - timedelta(days=9))
        rows.append((dd, 3, acc.contacts[0].email, "qbr",
                     "Reports are slow, exports fail, and nobody follows up. Reconsidering before renewal."))
    rows.sort(key=lambda r: r[0])
    return [[r[0].isoformat(), r[1], acc.account_id, r[2], r[3], r[4]] for r in rows]


def _ticket_rows(
    rng: random.Random, ctx: _Ctx, acc: _Account, lo: date, hi: date
) -> tuple[list[list[Any]], list[date]]:
    """Ticket rows, and the close dates of closed tickets (for support NPS)."""
    base = {"smb": 0.3, "mid-market": 0.8, "enterprise": 2.0}[acc.tier] / 30.0
    peak = base * 3.0
    found: list[tuple[date, date | None, str, str]] = []
    t = 0.0
    span = (hi - lo).days
    while True:
        t += rng.expovariate(peak)
        if t > span:
            break
        opened = lo + timedelta(days=int(t))
        trouble = acc.in_trouble(opened)
        if not trouble and rng.random() >= 1 / 3:
            continue
        if trouble:
            prio = _weighted(rng, (("urgent", 15), ("high", 35), ("normal", 40), ("low", 10)))
            kind = _weighted(rng, (("bug", 60), ("question", 25), ("feature", 10), ("other", 5)))
        else:
            prio = _weighted(rng, (("urgent", 4), ("high", 18), ("normal", 58), ("low", 20)))
            kind = _weighted(rng, (("bug", 35), ("question", 45), ("feature", 15), ("other", 5)))
        lo_d, hi_d = {"urgent": (0, 2), "high": (0, 6), "normal": (1, 12), "low": (2, 30)}[prio]
        days_open = rng.randint(lo_d, hi_d) if rng.random() >= 0.04 else rng.randint(40, 200)
        closed: date | None = opened + timedelta(days=days_open)
        if closed is not None and closed > ctx.as_of:
            closed = None
        if closed is not None and acc.churn is not None and closed > acc.churn:
            closed = acc.churn
        found.append((opened, closed, prio, kind))
    if acc.name == "ACME Corp" and acc.index == 1:
        found.append((max(lo, ctx.as_of - timedelta(days=6)), None, "urgent", "bug"))
        found.sort(key=lambda r: r[0])
    rows: list[list[Any]] = []
    closes: list[date] = []
    for opened, closed, prio, kind in found:
        ctx.counters["ticket"] += 1
        rows.append([f"T-{ctx.counters['ticket']:06d}", acc.account_id, opened.isoformat(),
                     closed.isoformat() if closed else "", prio, kind])
        if closed is not None:
            closes.append(closed)
    return rows, closes


def _invoice_rows(
    rng: random.Random, ctx: _Ctx, acc: _Account, history: list[tuple[int, float]]
) -> list[list[Any]]:
    as_of = ctx.as_of
    first_due = max(acc.start, ctx.window_start)
    last_due = as_of + timedelta(days=30)
    if acc.last_day is not None:
        last_due = min(last_due, acc.last_day)
    if first_due > last_due:
        return []
    by_month = dict(history)
    first_hist, last_hist = history[0], history[-1]
    is_acme = acc.name == "ACME Corp" and acc.index == 1
    acme_overdue: date | None = None
    if is_acme:
        due_dates = [
            date(mi // 12, mi % 12 + 1, acc.billing_day)
            for mi in range(_month_index(first_due), _month_index(last_due) + 1)
        ]
        acme_overdue = max((d for d in due_dates if d < as_of), default=None)
    rows: list[list[Any]] = []
    for mi in range(_month_index(first_due), _month_index(last_due) + 1):
        due = date(mi // 12, mi % 12 + 1, acc.billing_day)
        if due < first_due or due > last_due:
            continue
        amount = by_month.get(mi, first_hist[1] if mi < first_hist[0] else last_hist[1])
        paid: date | None
        if acc.payer == "autopay":
            paid = due
        elif acc.payer == "prompt":
            paid = due - timedelta(days=rng.randint(0, 10))
        elif acc.payer == "slow":
            paid = due + timedelta(days=rng.randint(1, 18))
        else:
            paid = due + timedelta(days=rng.randint(-5, 35))
        if is_acme:
            paid = None if due == acme_overdue else due - timedelta(days=rng.randint(0, 5))
        elif acc.in_trouble(due):
            r = rng.random()
            if acc.status == "sliding" and (as_of - due).days <= 45 and r < 0.5:
                paid = None
            elif acc.status == "churned" and r < 0.12:
                paid = None  # written off after the churn
            elif r < 0.7:
                paid = due + timedelta(days=rng.randint(8, 45))
        elif (as_of - due).days < 60 and rng.random() < 0.01:
            paid = None  # the odd forgotten invoice
        if paid is not None and paid > as_of:
            paid = None
        ctx.counters["invoice"] += 1
        rows.append([f"INV-{ctx.counters['invoice']:06d}", acc.account_id, f"{amount:.2f}",
                     due.isoformat(), paid.isoformat() if paid else ""])
    return rows


def _touch_rows(rng: random.Random, ctx: _Ctx, acc: _Account, lo: date, hi: date) -> list[list[Any]]:
    if acc.silent_from is not None:  # forgotten accounts: nobody talked to them either
        hi = min(hi, acc.silent_from - timedelta(days=rng.randint(0, 25)))
    gap_lo, gap_hi = {"enterprise": (7, 21), "mid-market": (14, 35), "smb": (30, 80)}[acc.tier]
    contacts = _reachable(acc)
    weights = [3.0 if c.role == "champion" else 1.5 if c.role == "decision_maker" else 1.0 for c in contacts]
    rows: list[list[Any]] = []
    last_qbr = lo - timedelta(days=rng.randint(0, 90))
    d = lo + timedelta(days=rng.randint(0, gap_hi))
    is_acme = acc.name == "ACME Corp" and acc.index == 1
    if is_acme:
        hi = min(hi, ctx.as_of - timedelta(days=5))
    while d <= hi:
        if d.weekday() >= 5:
            d += timedelta(days=7 - d.weekday())
            if d > hi:
                break
        kind = "checkin"
        if (d - acc.start).days < 60:
            kind = "onboarding"
        elif (_next_anniversary(acc.start, d) - d).days <= 60:
            kind = "renewal"
        elif acc.tier != "smb" and (d - last_qbr).days >= 85:
            kind = "qbr"
            last_qbr = d
        elif rng.random() < 0.06:
            kind = "other"
        if acc.in_trouble(d):
            sentiment = _weighted(rng, (("negative", 55), ("neutral", 35), ("positive", 10)))
        elif acc.status == "growing":
            sentiment = _weighted(rng, (("positive", 65), ("neutral", 32), ("negative", 3)))
        elif acc.status == "forgotten":
            sentiment = _weighted(rng, (("positive", 30), ("neutral", 60), ("negative", 10)))
        else:
            sentiment = _weighted(rng, (("positive", 45), ("neutral", 48), ("negative", 7)))
        if kind in ("qbr", "onboarding"):
            channel = "meeting" if rng.random() < 0.75 else "call"
            team = "cs"
        elif kind == "renewal":
            channel = _weighted(rng, (("meeting", 40), ("call", 30), ("email", 30)))
            team = "sales" if rng.random() < 0.5 else "cs"
        elif kind == "other":
            channel = _weighted(rng, (("email", 60), ("chat", 20), ("other", 20)))
            team = _weighted(rng, (("support", 35), ("product", 25), ("marketing", 30), ("other", 10)))
        else:
            channel = _weighted(rng, (("email", 45), ("call", 20), ("chat", 15), ("meeting", 20)))
            team = _weighted(rng, (("cs", 80), ("support", 12), ("product", 5), ("marketing", 3)))
        contact = rng.choices(contacts, weights)[0]
        note = rng.choice(_NOTES[(kind, sentiment)]).format(first=contact.first, n=rng.randint(2, 12))
        rows.append([acc.account_id, d.isoformat(), channel, team, contact.email, sentiment, kind, note])
        d += timedelta(days=rng.randint(gap_lo, gap_hi))
    if is_acme and lo <= ctx.as_of - timedelta(days=4):
        d = ctx.as_of - timedelta(days=4)
        rows.append([acc.account_id, d.isoformat(), "call", "cs", acc.contacts[0].email, "negative",
                     "checkin", 'Dana: usage down since last month, team "frustrated with slow reports", '
                     "wants an escalation before renewal."])
    return rows


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_book(
    out_dir: Path,
    *,
    accounts: int = 300,
    days: int = 365,
    seed: int = 7,
    as_of: date,
    id_prefix: str = "DEMO-",
    user_level_days: int = 35,
) -> list[tuple[str, Path]]:
    """Write the book's CSV files into out_dir; return (kind, path) pairs in the order they must be imported.

    ``as_of`` is the last day of data. ``days`` is the usage window ending at ``as_of`` (tickets, NPS,
    touches and invoices cover the same window; accounts' start dates and MRR history go further back).
    ``user_level_days`` > 0 also writes usage_users.csv for the last ``user_level_days`` days.
    """
    if accounts < 1:
        raise ValueError("accounts must be >= 1")
    if days < 1:
        raise ValueError("days must be >= 1")
    if user_level_days < 0:
        raise ValueError("user_level_days must be >= 0")
    if any(ch in id_prefix for ch in ',"\r\n'):
        raise ValueError("id_prefix must not contain commas, quotes or newlines")
    user_level_days = min(user_level_days, days)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    window_start = as_of - timedelta(days=days - 1)
    dates: list[str] = []
    day_mult: list[float] = []
    for j in range(days):
        d = window_start + timedelta(days=j)
        dates.append(d.isoformat())
        m = (1.0, 1.0, 1.0, 1.0, 0.95, 0.16, 0.13)[d.weekday()]
        if (d.month == 12 and d.day >= 24) or (d.month == 1 and d.day == 1):
            m *= 0.5
        day_mult.append(m)
    ctx = _Ctx(
        as_of=as_of, days=days, window_start=window_start, user_level_days=user_level_days,
        id_prefix=id_prefix, id_width=max(4, len(str(accounts))), used_names={"ACME Corp"},
        used_domains={"acme.example"}, dates=dates, day_mult=day_mult,
        counters={"ticket": 0, "invoice": 0},
    )

    kinds = [(k, f) for k, f in FILE_NAMES if user_level_days > 0 or f != "usage_users.csv"]
    paths = {f: out_dir / f for _, f in kinds}
    handles: dict[str, IO[str]] = {}
    try:
        for _, f in kinds:
            fh = open(paths[f], "w", encoding="utf-8", newline="", buffering=1 << 20)  # noqa: SIM115
            handles[f] = fh
            fh.write(",".join(HEADERS[f]) + "\n")
        writers: dict[str, Callable[[Sequence[Any]], Any]] = {
            f: csv.writer(handles[f], lineterminator="\n").writerow for _, f in kinds
        }
        writer_rows: dict[str, Callable[[Any], Any]] = {
            f: csv.writer(handles[f], lineterminator="\n").writerows for _, f in kinds
        }
        deck: list[str] = []
        new_deck: list[bool] = []
        for index in range(1, accounts + 1):
            prng = random.Random(_sub_seed(seed, 1, index))
            arng = random.Random(_sub_seed(seed, 2, index))
            if index == 1:
                acc = _make_acme(ctx, index)
            else:
                slot = index - 2
                if slot % len(_STATUS_DECK) == 0:
                    deck = list(_STATUS_DECK)
                    random.Random(_sub_seed(seed, 3, slot)).shuffle(deck)
                if slot % len(_NEW_DECK) == 0:
                    new_deck = list(_NEW_DECK)
                    random.Random(_sub_seed(seed, 4, slot)).shuffle(new_deck)
                acc = _make_account(
                    prng, ctx, index, deck[slot % len(_STATUS_DECK)], new_deck[slot % len(_NEW_DECK)]
                )
            ctx.used_names.add(acc.name)
            ctx.used_domains.add(acc.domain)
            history = _mrr_history(prng, ctx, acc)
            acc.mrr = history[-1][1]
            writers["accounts.csv"]([
                acc.account_id, acc.name, acc.start.isoformat(), acc.domain, acc.tier, acc.tags, acc.owner,
                f"{acc.mrr:.2f}", acc.seats, acc.renewal.isoformat() if acc.renewal else "",
                acc.churn.isoformat() if acc.churn else "", acc.churn_reason,
            ])
            writer_rows["contacts.csv"](
                [c.email, acc.account_id, c.first, c.last, c.title, c.role, "true" if c.dnc else "false"]
                for c in acc.contacts
            )
            writer_rows["team.csv"]([acc.account_id, member, fn] for member, fn in acc.team)
            handles["mrr.csv"].write(
                "".join(f"{acc.account_id},{_month_label(mi)},{v:.2f}\n" for mi, v in history)
            )
            _write_usage(arng, ctx, acc, handles["usage.csv"], handles.get("usage_users.csv"))

            lo = max(acc.start, window_start)
            hi = min(as_of, acc.last_day or as_of)
            if lo <= hi:
                nps = _nps_rows(arng, ctx, acc, lo, hi)
                tickets, closes = _ticket_rows(arng, ctx, acc, lo, hi)
                contacts = _reachable(acc)
                for closed in closes:  # post-ticket support surveys
                    if closed <= hi and arng.random() < 0.12:
                        s = _score(arng, _mood(acc, closed))
                        nps.append([closed.isoformat(), s, acc.account_id, arng.choice(contacts).email,
                                    "support", _comment(arng, s)])
                nps.sort(key=lambda row: str(row[0]))
                seen: set[tuple[str, str, str]] = set()  # one survey per contact, day and touchpoint
                unique = []
                for row in nps:
                    key = (str(row[0]), str(row[3]), str(row[4]))
                    if key not in seen:
                        seen.add(key)
                        unique.append(row)
                writer_rows["nps.csv"](unique)
                writer_rows["tickets.csv"](tickets)
                writer_rows["touches.csv"](_touch_rows(arng, ctx, acc, lo, hi))
            writer_rows["invoices.csv"](_invoice_rows(arng, ctx, acc, history))
    finally:
        for handle in handles.values():
            handle.close()
    return [(k, paths[f]) for k, f in kinds]
