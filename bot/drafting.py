"""Who gets a check-in and what it says: recipients and merge fields from the book."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from bot.core.model import Account, HealthInputs
from bot.emails import Draft, RenderError, message_id, render

ROLES_FIRST = ("champion", "decision_maker")


def display_name(email: str) -> str:
    """'ana.lopez@x.com' → 'Ana Lopez' (for a sender known only by address)."""
    local = email.split("@", 1)[0]
    return " ".join(part.capitalize() for part in local.replace("_", ".").split(".") if part)


def pick_recipient(contacts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The champion, else a decision maker, never someone marked do-not-contact."""
    for role in ROLES_FIRST:
        for c in contacts:
            if c["role"] == role and not c["do_not_contact"]:
                return c
    return None


@dataclass(frozen=True)
class Skip:
    to: str
    reason: str


def context(
    account: Account, contact: dict[str, Any], inputs: HealthInputs, last_note: str | None
) -> dict[str, Any]:
    """Merge fields; a field the data lacks is left out, so StrictUndefined refuses to guess."""
    person: dict[str, Any] = {"email": contact["email"]}
    for key in ("first_name", "last_name", "title"):
        if contact.get(key):
            person[key] = contact[key]
    usage = inputs.usage
    change = None
    if usage is not None and usage.prev_user_days > 0:
        change = round(100 * (usage.user_days - usage.prev_user_days) / usage.prev_user_days, 1)
    sender_email = account.owner_email or ""
    return {
        "contact": person,
        "account": {
            "name": account.name,
            "renewal_date": account.renewal_date.isoformat() if account.renewal_date else None,
            "tier": account.tier,
        },
        "usage": {"change_pct": change},
        "open_tickets": len(inputs.open_tickets or ()),
        "last_note": last_note,
        "sender": {
            "name": display_name(sender_email) if sender_email else "Your customer success team",
            "email": sender_email,
            "signature": "Customer Success",
        },
    }


def draft_for(
    env: SandboxedEnvironment,
    template: str,
    account: Account,
    contact: dict[str, Any],
    inputs: HealthInputs,
    last_note: str | None,
    as_of: date,
) -> Draft | Skip:
    ctx = context(account, contact, inputs, last_note)
    try:
        subject, text, html = render(env, template, ctx)
    except RenderError as exc:
        return Skip(contact["email"], str(exc))
    name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    return Draft(
        template=template, account_id=account.account_id, to_email=contact["email"], to_name=name,
        from_email=account.owner_email, from_name=ctx["sender"]["name"], subject=subject, text=text,
        html=html, message_id=message_id(template, account.account_id, contact["email"], as_of.isoformat()),
    )
