"""The embedded draft store: one .eml file per draft in a local folder (no Google account needed).

Files are written atomically (a temporary file, then a rename) and named from the draft's
deterministic Message-ID, so writing the same draft twice leaves one file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bot.draftstore import Created, Outcome
from bot.emails import Draft, to_mime
from bot.errors import OperationFailed


def _token(message_id: str) -> str:
    """The file-name part that stands for a Message-ID (its digest's last 12 characters)."""
    return re.sub(r"[^a-z0-9]", "", message_id.split("@")[0].lower())[-12:]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


class Outbox:
    """Drafts as .eml files (the embedded default): the same plans, caps and idempotency as Gmail."""

    name = "outbox"

    def __init__(self, folder: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.folder = folder
        self.clock = clock

    def find(self, message_id: str) -> str | None:
        for path in self.folder.glob(f"*-{_token(message_id)}.eml") if self.folder.is_dir() else []:
            return str(path)
        return None

    def create_many(self, drafts: Sequence[Draft]) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for draft in drafts:
            path, _ = self.save(draft, self.clock())
            out[draft.message_id] = Created(str(path))
        return out

    def link(self, location: str) -> str | None:
        return None

    def path_for(self, draft: Draft) -> Path:
        name = f"{_slug(draft.template)}-{_slug(draft.account_id)}-{_token(draft.message_id)}"
        return self.folder / f"{name}.eml"

    def save(self, draft: Draft, when: datetime) -> tuple[Path, bool]:
        """Write the draft; (its path, whether it was new)."""
        target = self.path_for(draft)
        if target.exists():
            return target, False
        data = to_mime(draft, when).as_bytes()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".draft-", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except OSError as exc:
            raise OperationFailed(f"cannot write to the outbox {self.folder}: {exc.strerror}") from None
        return target, True
