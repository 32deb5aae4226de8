"""Typed settings: environment (and .env) for secrets and places, keepwell.toml for behaviour.

Loaded once in the CLI's entry point and passed down; nothing imports a settings singleton.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import BadInput

PLACEHOLDERS = ("changeme", "change-me", "replace-me", "your-", "your_", "xxx", "<", "todo", "example", "...")
SLACK_PREFIXES = ("xoxb-", "xoxp-", "xapp-1-", "xapp-")  # a placeholder often keeps the real prefix


class Settings(BaseSettings):
    """Where things are and the secrets to reach them (CONTRACT §2)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///./keepwell.db", validation_alias="KEEPWELL_DATABASE_URL")
    config_path: Path | None = Field(None, validation_alias="KEEPWELL_CONFIG")
    slack_bot_token: str | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    google_api_url: str | None = Field(None, validation_alias="KEEPWELL_GOOGLE_API_URL")
    google_token: Path = Field(
        Path("~/.config/keepwell/google-token.json"), validation_alias="KEEPWELL_GOOGLE_TOKEN"
    )
    google_application_credentials: Path | None = Field(
        None, validation_alias="GOOGLE_APPLICATION_CREDENTIALS"
    )
    secret_key: str | None = Field(None, validation_alias="KEEPWELL_SECRET_KEY")
    outbox: Path = Field(Path("./outbox"), validation_alias="KEEPWELL_OUTBOX")

    @field_validator(
        "slack_bot_token", "slack_signing_secret", "slack_app_token", "secret_key", mode="after"
    )
    @classmethod
    def _no_placeholders(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        low = value.strip().lower()
        for prefix in SLACK_PREFIXES:
            low = low.removeprefix(prefix)
        if any(low.startswith(p) or low == p.strip("-<") for p in PLACEHOLDERS) or "…" in low:
            raise ValueError("looks like a placeholder, not a real secret")
        return value

    @field_validator("slack_bot_token", "slack_signing_secret", "slack_app_token", mode="after")
    @classmethod
    def _slack_shape(cls, value: str | None) -> str | None:
        """Slack's tokens and signing secret are ASCII without spaces (KEEPWELL_SECRET_KEY may be any
        passphrase: it is stretched into a key)."""
        if value is not None and (not value.isascii() or not value.isprintable() or " " in value.strip()):
            raise ValueError("holds characters no Slack secret has (spaces, or beyond ASCII): "
                             "is it a placeholder?")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; a bad value becomes one line naming the variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        field = Settings.model_fields.get(name)
        alias = field.validation_alias if field and isinstance(field.validation_alias, str) else name
        raise BadInput(f"{alias}: {err['msg']}") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Strict):
    """Relative weight of each health factor; they renormalise over the factors that have data."""

    engagement: float = Field(20, ge=0)
    usage_trend: float = Field(15, ge=0)
    stickiness: float = Field(10, ge=0)
    seat_utilisation: float = Field(10, ge=0)
    nps: float = Field(15, ge=0)
    tickets: float = Field(10, ge=0)
    invoices: float = Field(10, ge=0)
    last_touch: float = Field(5, ge=0)
    champion: float = Field(5, ge=0)
    renewal: float = Field(5, ge=0)


class Bands(_Strict):
    healthy: int = Field(70, ge=0, le=100)
    watch: int = Field(40, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.watch > self.healthy:
            raise ValueError("watch must not be above healthy")
        return self


class HealthConfig(_Strict):
    """The scorecard: weights, bands and the thresholds each factor is read against."""

    weights: Weights = Weights()
    bands: Bands = Bands()
    window_days: int = Field(30, ge=7, le=180)
    danger_quantile: float = Field(0.25, gt=0, lt=1)
    forgotten_days: int = Field(30, ge=1, le=365)
    nps_days: int = Field(365, ge=30)
    stickiness_target: float = Field(0.4, gt=0, le=1)
    seat_target: float = Field(0.8, gt=0, le=1)
    trend_floor_pct: float = Field(-50, lt=0)
    trend_ceiling_pct: float = Field(25, gt=0)
    touch_fresh_days: int = Field(30, ge=1)
    touch_stale_days: int = Field(120, ge=2)
    renewal_horizon_days: int = Field(90, ge=1)
    invoice_zero_days: int = Field(60, ge=1)
    ticket_weights: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 4.0, "high": 2.0, "normal": 1.0, "low": 0.5}
    )
    bug_multiplier: float = Field(1.5, ge=1)
    ticket_zero_load: float = Field(8, gt=0)


def _check_schedule(schedule: str, timezone: str) -> None:
    from bot.core.schedule import parse_schedule

    parse_schedule(schedule, timezone)  # ScheduleError is a ValueError: it names the problem


def _check_channel(channel: str | None) -> None:
    if channel is not None and not re.fullmatch(r"[CG][A-Z0-9]{2,20}", channel):
        raise ValueError(f"channel {channel!r} is not a Slack channel id (like C0123ABCD)")


class _Job(_Strict):
    """A daily job: when it runs and where its messages go (besides owners and account channels)."""

    schedule: str = "daily 09:00"
    timezone: str = "UTC"
    channel: str | None = None

    @model_validator(mode="after")
    def _valid_job(self) -> _Job:
        _check_schedule(self.schedule, self.timezone)
        _check_channel(self.channel)
        return self


class ReviewsConfig(_Job):
    """Account reviews (QBRs) on a cadence per tier, and renewal reminders at fixed offsets.

    A review falls due `cadence_days[tier]` after the last one was marked done (or after the start
    date); the team is reminded `remind_days_before` it. Renewals are reminded at each offset.
    """

    enabled: bool = True
    renewal_within_days: int = Field(90, ge=1)  # what `keepwell reviews` and the digest list
    cadence_days: dict[str, int] = {"enterprise": 90, "mid-market": 180}
    default_cadence_days: int | None = Field(None, ge=7)  # tiers not listed (None: no reviews)
    remind_days_before: int = Field(14, ge=0, le=90)
    renewal_offsets: list[int] = [90, 60, 30, 7]
    max_per_run: int = Field(50, ge=1)  # the rest wait for the next run, so a backlog never floods

    @field_validator("cadence_days")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [tier for tier, days in value.items() if days < 7]
        if bad:
            raise ValueError(f"a cadence must be 7 days or more (tier {bad[0]!r})")
        return {tier.strip().lower(): days for tier, days in value.items()}

    @field_validator("renewal_offsets")
    @classmethod
    def _offsets(cls, value: list[int]) -> list[int]:
        if any(d < 0 or d > 365 for d in value):
            raise ValueError("offsets are days before the renewal, 0 to 365")
        return sorted(set(value), reverse=True)

    def cadence_for(self, tier: str | None) -> int | None:
        return self.cadence_days.get((tier or "").strip().lower(), self.default_cadence_days)


class AlertsConfig(_Job):
    """Alert rules: each fires once per account and episode (until the condition clears).

    Set a rule to false (or 0) to turn it off.
    """

    enabled: bool = True
    schedule: str = "daily 08:00"
    danger_zone: bool = True
    forgotten_zone: bool = True
    health_drop_points: int = Field(15, ge=0, le=100)  # a drop of this much ...
    health_drop_days: int = Field(7, ge=1, le=90)  # ... within this many days
    invoice_overdue_days: int = Field(30, ge=0)
    nps_detractor_max: int = Field(6, ge=-1, le=10)  # an NPS answer at or below this; -1: off
    nps_recent_days: int = Field(30, ge=1, le=365)  # a detractor's episode lasts this long after the answer
    snooze_days: int = Field(7, ge=1, le=90)
    max_per_run: int = Field(100, ge=1)


SURVEY_TRIGGERS = ("onboarding", "qbr", "ticket", "renewal")


class SurveysConfig(_Job):
    """NPS survey plans after touchpoints, for the owner to review; one per contact per cooldown."""

    enabled: bool = True
    schedule: str = "daily 10:00"
    after: list[str] = list(SURVEY_TRIGGERS)
    template: str = "nps_survey"
    roles: list[str] = ["champion", "decision_maker", "user"]  # whom a survey plan asks
    cooldown_days: int = Field(90, ge=1)  # no contact is asked again (or after answering) within this
    onboarding_days: int = Field(45, ge=1)  # onboarding counts as over this long after the start date
    lookback_days: int = Field(7, ge=1, le=60)  # events this recent still trigger (covers downtime)

    @field_validator("after")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for trigger in value:
            if trigger not in SURVEY_TRIGGERS:
                raise ValueError(f"unknown trigger {trigger!r}; triggers are {', '.join(SURVEY_TRIGGERS)}")
        return value


class DigestConfig(_Strict):
    channel: str
    schedule: str
    timezone: str = "UTC"
    segment: str | None = None
    only_when_changed: bool = False

    @model_validator(mode="after")
    def _valid_schedule(self) -> DigestConfig:
        from bot.core.segments import parse_segment

        _check_schedule(self.schedule, self.timezone)
        parse_segment(self.segment)
        _check_channel(self.channel)
        return self


class DraftsConfig(_Strict):
    """Check-in drafts: who signs them, what links they may carry, how often a contact may get one."""

    company: str = "our team"  # how emails name your company ("the ACME team")
    signature: str = "Customer Success"
    survey_url: str | None = None  # the NPS survey link (the nps_survey template needs it)
    booking_url: str | None = None  # a meeting-booking link, offered where a template has one
    roles: list[str] = ["champion", "decision_maker"]  # who a bulk plan writes to by default
    cap_days: int = Field(14, ge=0)  # at most one Keepwell draft per contact in this many days
    quiet_days: int = Field(3, ge=0)  # none when any team emailed the contact this recently
    quota_units_per_minute: int = Field(15_000, ge=100)  # Gmail's per-user quota; a create costs 10
    batch_size: int = Field(50, ge=1, le=100)

    @field_validator("survey_url", "booking_url")
    @classmethod
    def _safe_link(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("https://", "http://", "mailto:")):
            raise ValueError("must be an http(s) or mailto link")
        return value


class ContactsConfig(_Strict):
    """How Google Contacts map onto the book (`keepwell sync contacts`)."""

    account_fields: dict[str, str] = {
        "mrr": "mrr", "tier": "tier", "renewal_date": "renewal_date", "seats": "seats",
        "account_id": "account_id",
    }  # a contact's custom field → the account attribute it sets
    role_field: str = "role"
    dnc_groups: list[str] = ["do-not-contact"]
    create_accounts: bool = False
    mailbox: str | None = None  # whose contacts, with a service account


class SlackConfig(_Strict):
    """Who may change what from Slack: everyone reads; writes record their author."""

    admins: list[str] = []  # Slack user ids who may change any account's team
    max_command_chars: int = Field(2000, ge=100, le=10_000)
    account_channels: dict[str, str] = {}  # account id → its channel (alerts and reminders go there too)

    @field_validator("account_channels")
    @classmethod
    def _channels(cls, value: dict[str, str]) -> dict[str, str]:
        for channel in value.values():
            _check_channel(channel)
        return value


class SchedulerConfig(_Strict):
    grace_hours: float = Field(6, ge=0, le=72)  # a job missed while the bot was down runs within this


class KeepwellConfig(_Strict):
    """The whole of keepwell.toml."""

    scheduler: SchedulerConfig = SchedulerConfig()
    health: HealthConfig = HealthConfig()
    reviews: ReviewsConfig = ReviewsConfig()
    alerts: AlertsConfig = AlertsConfig()
    surveys: SurveysConfig = SurveysConfig()
    digests: list[DigestConfig] = []
    slack: SlackConfig = SlackConfig()
    drafts: DraftsConfig = DraftsConfig()
    contacts: ContactsConfig = ContactsConfig()
    templates: Path | None = None  # a folder of your own email templates (override or add)


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_config(path: Path | None) -> KeepwellConfig:
    """Read keepwell.toml (or the built-in defaults); any problem is one line naming the key."""
    if path is None:
        default = Path("keepwell.toml")
        if not default.exists():
            return KeepwellConfig()
        path = default
    path = Path(os.path.expanduser(path))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None
    try:
        return KeepwellConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _dotted(tuple(err["loc"])) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise BadInput(f"{path}: {key}: {msg}") from None
