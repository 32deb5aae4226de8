"""Looking inside Slack payloads in tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def nodes(payload: object) -> Iterator[dict[str, Any]]:
    """Every JSON object in a nested payload, depth first."""
    if isinstance(payload, dict):
        yield payload
        for value in payload.values():
            yield from nodes(value)
    elif isinstance(payload, list):
        for value in payload:
            yield from nodes(value)


def texts(payload: object, kinds: tuple[str, ...] = ("mrkdwn", "plain_text")) -> list[str]:
    """Every text object of these kinds."""
    return [n["text"] for n in nodes(payload) if n.get("type") in kinds and isinstance(n.get("text"), str)]


def action_ids(payload: object) -> set[str]:
    return {n["action_id"] for n in nodes(payload) if isinstance(n.get("action_id"), str)}
