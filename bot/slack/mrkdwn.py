"""Slack's limits and escaping, in one place.

Slack mrkdwn gives meaning to only three characters, `&`, `<` and `>` (links, mentions and
`<!channel>` are all made of them), so escaping those three makes any text inert.
"""

from __future__ import annotations

MAX_TEXT = 3000  # characters in one text object
MAX_PLAIN = 150  # a header or button label
MAX_BLOCKS = 50  # blocks in one message or modal
MAX_HOME_BLOCKS = 100


def esc(text: object) -> str:
    """User or customer data made safe for mrkdwn: it shows as typed and pings nobody."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """At most `limit` characters, with an ellipsis when cut (never inside an escape sequence)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def mention(member: str) -> str:
    """A Slack user id as a mention; anything else (an email) as escaped text."""
    if member[:1] in ("U", "W") and member.isalnum() and member.isupper():
        return f"<@{member}>"
    return esc(member)
