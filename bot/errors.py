"""The two ways a Keepwell operation ends badly, each with its exit code (CONTRACT §3)."""

from __future__ import annotations


class KeepwellError(Exception):
    """An error a user can act on: printed as one line, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadInput(KeepwellError):
    """The user's input is wrong (usage, invalid file, unknown account): exit code 2."""

    exit_code = 2


class OperationFailed(KeepwellError):
    """The input was fine but the operation could not be done (network, database, quota): exit code 1."""

    exit_code = 1


class ChannelUnavailable(OperationFailed):
    """The bot cannot post to a Slack channel (removed, archived, never invited)."""
