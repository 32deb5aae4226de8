"""Choosing the Google-backed draft store (filled in with the Gmail integration)."""

from __future__ import annotations

from typing import Any

from bot.config import DraftsConfig, Settings


def google_configured(settings: Settings) -> bool:
    """Whether Google credentials are set: an application-credentials file or a stored token."""
    return bool(settings.google_application_credentials) or settings.google_token.expanduser().exists()


def gmail_store(settings: Settings, drafts: DraftsConfig, mailbox: str | None) -> Any:
    from integrations.gmail import GmailStore

    return GmailStore.from_settings(settings, drafts, mailbox)
