"""The embedded draft store: one .eml file per draft in a local folder (no Google account needed).

Files are written atomically (a temporary file, then a rename) and named from the draft's
deterministic Message-ID, so writing the same draft twice leaves one file.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from bot.emails import Draft, to_mime
from bot.errors import OperationFailed


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


class Outbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, draft: Draft) -> Path:
        token = re.sub(r"[^a-z0-9]", "", draft.message_id.split("@")[0].lower())[-12:]
        return self.folder / f"{_slug(draft.template)}-{_slug(draft.account_id)}-{token}.eml"

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
