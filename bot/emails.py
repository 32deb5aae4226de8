"""Check-in emails: templates rendered in a sandbox, then built as MIME messages.

Rendering is kept apart from delivery (the outbox here, Gmail drafts later). Templates come from
`templates/email/` — `NAME.subject.j2`, `NAME.txt.j2` and `NAME.html.j2` — and are rendered with
Jinja2's sandbox, StrictUndefined (a missing merge field is an error, never a blank) and HTML
autoescaping for the HTML part.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    Undefined,
    UndefinedError,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from bot.errors import BadInput

MAX_OUTPUT = 200_000
MAX_SECONDS = 2.0
MAX_POWER = 64
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SAFE_URL = re.compile(r"^(https?://|mailto:)[^\s<>\"']+$", re.IGNORECASE)


def builtin_templates() -> Path:
    """templates/ of a source checkout, or the copy shipped inside the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("Keepwell's templates folder is missing from this installation")


class RenderError(ValueError):
    """A template could not be rendered for one recipient (a missing field, a limit)."""


class Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox (no Python internals), plus limits a user's template cannot get round:
    `*` and `**` are checked before they allocate, `range` stops at the render's deadline, and
    output is bounded while it streams (see `render`)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_POWER:
            raise SecurityError(f"power too large in template ({right})")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and (
                    len(seq) * times > MAX_OUTPUT
                ):
                    raise SecurityError(f"template output would exceed {MAX_OUTPUT} characters")
        return super().call_binop(context, operator, left, right)


_deadline: ContextVar[float] = ContextVar("keepwell_render_deadline", default=float("inf"))


def _check_time() -> None:
    if time.monotonic() > _deadline.get():
        raise SecurityError(f"template took longer than {MAX_SECONDS:g}s to render")


def _bounded_range(*args: int) -> Iterator[int]:
    for i, value in enumerate(range(*args)):
        if len(range(*args)) > 100_000:
            raise SecurityError("range too large in template")
        if i % 1000 == 0:
            _check_time()
        yield value


def _require(value: Any, what: str) -> Any:
    """`{{ require(links.survey, "a survey link") }}`: a missing value skips the recipient, with why."""
    if value is None or value == "" or isinstance(value, Undefined):
        raise UndefinedError(f"missing {what}")
    return value


def _url(value: Any) -> str:
    """Only http(s) and mailto links reach an email; `javascript:` and the like are refused."""
    text = str(value).strip()
    if not SAFE_URL.match(text):
        raise UndefinedError(f"refused link {text[:60]!r} (only http, https and mailto)")
    return text


def environment(extra: Path | None = None) -> SandboxedEnvironment:
    paths = [str(p) for p in (extra, builtin_templates() / "email") if p is not None]
    env = Sandbox(
        loader=FileSystemLoader(paths),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(range=_bounded_range, require=_require)
    env.filters["url"] = _url
    return env


def header_text(value: str) -> str:
    """A value safe for one header line: control characters (CR, LF, NUL…) become spaces."""
    return " ".join(CONTROL.sub(" ", unicodedata.normalize("NFC", value)).split())


@dataclass(frozen=True)
class Draft:
    template: str
    account_id: str
    to_email: str
    to_name: str
    from_email: str | None
    from_name: str | None
    subject: str
    text: str
    html: str
    message_id: str


def message_id(*parts: str) -> str:
    """A deterministic Message-ID: the same draft always gets the same one (idempotent retries)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"<keepwell-{digest}@keepwell.invalid>"


def render(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, html) of template NAME for one recipient, or RenderError saying why not."""
    parts = []
    token = _deadline.set(time.monotonic() + MAX_SECONDS)
    try:
        for suffix in ("subject.j2", "txt.j2", "html.j2"):
            try:
                template = env.get_template(f"{name}.{suffix}")
            except TemplateNotFound:
                raise BadInput(f"no email template {name!r} (expected {name}.{suffix})") from None
            chunks: list[str] = []
            size = 0
            try:
                for chunk in template.generate(context):
                    size += len(chunk)
                    if size > MAX_OUTPUT:
                        raise RenderError(
                            f"template {name}.{suffix} rendered more than {MAX_OUTPUT} characters"
                        )
                    chunks.append(chunk)
                    _check_time()
            except TemplateError as exc:
                raise RenderError(f"template {name}.{suffix}: {exc.message}") from None
            parts.append("".join(chunks))
    finally:
        _deadline.reset(token)
    subject = header_text(parts[0])
    if not subject:
        raise RenderError(f"template {name} rendered an empty subject")
    return subject, parts[1].strip() + "\n", parts[2]


def address(name: str, addr: str) -> Address:
    """A mailbox header value, or ValueError for an address no mail system would take."""
    spec = header_text(addr)
    try:
        return Address(header_text(name), addr_spec=spec)
    except (HeaderParseError, IndexError, ValueError):
        raise ValueError(f"unusable email address {addr!r}") from None


def to_mime(draft: Draft, when: datetime) -> EmailMessage:
    """A multipart/alternative message; headers can never be split by data (CR/LF are removed)."""
    msg = EmailMessage(policy=SMTP)
    msg["To"] = address(draft.to_name, draft.to_email)
    if draft.from_email:
        msg["From"] = address(draft.from_name or "", draft.from_email)
    msg["Subject"] = header_text(draft.subject)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = draft.message_id
    msg["X-Keepwell-Template"] = header_text(draft.template)
    msg["X-Keepwell-Account"] = header_text(draft.account_id)
    msg.set_content(draft.text)
    msg.add_alternative(draft.html, subtype="html")
    return msg
