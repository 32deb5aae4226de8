"""Logging for the long-running commands (`serve`, `run`, `tick`): one line per record, JSON or text.

A record's structured fields travel in `extra={"fields": {...}}` (see `fields`); the JSON formatter
writes them beside the time, level, logger and message, the text formatter as `key=value` pairs after
the message. Only those explicit fields are written, never a record's other attributes, so nothing
reaches the log by accident.

Our loggers (`keepwell.*`) log at `KEEPWELL_LOG_LEVEL`; everything else (waitress, slack_sdk, urllib3)
stays at WARNING whatever that level is, because their debug output carries request bodies. Bolt's
logger (`keepwell.slack.bolt`) never goes below INFO for the same reason.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import BadInput

LEVELS = ("debug", "info", "warning", "error")
# the commands that configure logging, and their default format
COMMANDS: dict[str, Literal["json", "text"]] = {"serve": "json", "run": "json", "tick": "text"}
BOLT_LOGGER = "keepwell.slack.bolt"


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a structured record: `log.info("request", extra=fields(status=200))`."""
    return {"fields": values}


def _fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    found = getattr(record, "fields", None)
    return found if isinstance(found, Mapping) else {}


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", …fields, "error"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": _time(record), "level": record.levelname.lower(),
                                "logger": record.name, "message": record.getMessage()}
        for key, value in _fields_of(record).items():
            data.setdefault(key, value)  # a field never overwrites the four above
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def _logfmt(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`TIME LEVEL logger: message key=value …` (a traceback, if any, on the lines after)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        pairs = " ".join(f"{k}={_logfmt(v)}" for k, v in _fields_of(record).items() if v is not None)
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class LogSettings(BaseSettings):
    """KEEPWELL_LOG_FORMAT and KEEPWELL_LOG_LEVEL (from the environment or `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    format: Literal["json", "text"] | None = Field(None, validation_alias="KEEPWELL_LOG_FORMAT")
    level: Literal["debug", "info", "warning", "error"] = Field("info", validation_alias="KEEPWELL_LOG_LEVEL")

    @field_validator("format", "level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value


def load_log_settings() -> LogSettings:
    try:
        return LogSettings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "KEEPWELL_LOG_LEVEL" if "KEEPWELL_LOG_LEVEL" in err["loc"] else "KEEPWELL_LOG_FORMAT"
        allowed = ", ".join(LEVELS) if name == "KEEPWELL_LOG_LEVEL" else "json, text"
        raise BadInput(f"{name}: expected one of {allowed}") from None


@contextmanager
def configured(fmt: Literal["json", "text"], level: str = "info") -> Iterator[logging.Handler]:
    """Send every record to stderr in `fmt`; our loggers at `level`. Undone on the way out."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root, ours, bolt = logging.getLogger(), logging.getLogger("keepwell"), logging.getLogger(BOLT_LOGGER)
    number = logging.getLevelNamesMapping()[level.upper()]
    saved = (root.level, ours.level, bolt.level)
    root.addHandler(handler)
    root.setLevel(max(number, logging.WARNING))
    ours.setLevel(number)
    bolt.setLevel(max(number, logging.INFO))
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
        bolt.setLevel(saved[2])


@contextmanager
def for_command(argv: list[str]) -> Iterator[None]:
    """Logging as `keepwell ARGV…` wants it: configured for serve, run and tick; untouched otherwise."""
    command = argv[0] if argv else None
    if command not in COMMANDS:
        yield
        return
    settings = load_log_settings()
    with configured(settings.format or COMMANDS[command], settings.level):
        yield
