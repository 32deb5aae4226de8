"""Where drafts go (Gmail, or the local outbox), seen from the code that creates them.

A store creates drafts in batches and says, for each, whether it exists now, should be retried, or
failed for good; it can find a draft by its Message-ID, which is how a retry after a crash or a lost
reply avoids creating a second one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.emails import Draft
from bot.errors import OperationFailed


@dataclass(frozen=True)
class Created:
    location: str  # the Gmail draft id, or the .eml path


@dataclass(frozen=True)
class Retry:
    """Not done yet: try again after `after` seconds. `maybe_created`: the store may have acted
    (a lost reply, a 5xx), so look the draft up before creating it again."""

    after: float | None = None
    maybe_created: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Failed:
    reason: str


Outcome = Created | Retry | Failed


class AuthFailed(OperationFailed):
    """The store's credentials are expired or revoked: stop at once, say how to sign in again."""


class DraftStore(Protocol):
    name: str

    def find(self, message_id: str) -> str | None:
        """Where the draft with this Message-ID already is, if anywhere."""

    def create_many(self, drafts: Sequence[Draft]) -> dict[str, Outcome]:
        """Create these drafts (one batch); the outcome of each, by Message-ID."""

    def link(self, location: str) -> str | None:
        """A link a person can open, if the store has one."""



class NoStore:
    """The store when none is configured: every attempt says so."""

    name = "none"

    def find(self, message_id: str) -> str | None:
        return None

    def create_many(self, drafts: Sequence[Draft]) -> dict[str, Outcome]:
        raise OperationFailed("no draft store is configured (set KEEPWELL_OUTBOX or sign in to Google)")

    def link(self, location: str) -> str | None:
        return None
