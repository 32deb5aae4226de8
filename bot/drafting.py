"""Who gets a check-in and what it says: recipients and merge fields from the book."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from bot.config import DraftsConfig
from bot.core.model import Account, HealthInputs, HealthScore
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
    account: Account,
    contact: dict[str, Any],
    inputs: HealthInputs,
    last_touch: dict[str, Any] | None,
    as_of: date,
    *,
    health: HealthScore | None = None,
    settings: DraftsConfig | None = None,
    sender_email: str | None = None,
) -> dict[str, Any]:
    """The merge fields of every template (docs/templates.md lists them).

    A field the data lacks is None (or left out, for the contact's names), so a template either
    checks for it or refuses to guess: StrictUndefined and `require()` skip that recipient, with
    the reason, instead of sending a blank.
    """
    cfg = settings or DraftsConfig()
    person: dict[str, Any] = {"email": contact["email"], "role": contact.get("role") or "other"}
    for key in ("first_name", "last_name", "title"):
        if contact.get(key):
            person[key] = contact[key]
    usage = inputs.usage
    change = None
    if usage is not None and usage.prev_user_days > 0:
        change = round(100 * (usage.user_days - usage.prev_user_days) / usage.prev_user_days, 1)
    seats = account.seats
    monthly = (usage.mau if usage.mau is not None else usage.peak_dau) if usage else None
    tickets = inputs.open_tickets or ()
    nps = max(inputs.nps, key=lambda r: r.day) if inputs.nps else None
    sender = sender_email or account.owner_email or ""
    drivers = health.drivers if health else ()
    return {
        "today": as_of.isoformat(),
        "contact": person,
        "account": {
            "id": account.account_id,
            "name": account.name,
            "tier": account.tier,
            "mrr": float(account.mrr) if account.mrr is not None else None,
            "seats": seats,
            "start_date": account.start_date.isoformat(),
            "renewal_date": account.renewal_date.isoformat() if account.renewal_date else None,
            "days_to_renewal": (account.renewal_date - as_of).days if account.renewal_date else None,
            "churn_date": account.churn_date.isoformat() if account.churn_date else None,
            "churn_reason": account.churn_reason,
            "is_customer": account.is_customer_on(as_of),
        },
        "usage": {
            "change_pct": change,
            "active_days": usage.active_days if usage else None,
            "user_days": usage.user_days if usage else None,
            "monthly_users": monthly,
            "utilisation_pct": round(100 * monthly / seats) if monthly is not None and seats else None,
            "last_active": usage.last_active.isoformat() if usage and usage.last_active else None,
            "days_since_active": (as_of - usage.last_active).days if usage and usage.last_active else None,
        },
        "health": {
            "score": health.score if health else None,
            "band": health.band if health else None,
            "concerns": [d.explanation for d in drivers if d.impact < 0][:3],
            "strengths": [d.explanation for d in drivers if d.impact > 0][:3],
        },
        "open_tickets": len(tickets),
        "tickets": {
            "open": len(tickets),
            "urgent": sum(1 for t in tickets if t.priority == "urgent"),
            "bugs": sum(1 for t in tickets if t.kind == "bug"),
        },
        "nps": {"latest": nps.score if nps else None, "date": nps.day.isoformat() if nps else None},
        "last_note": last_touch.get("note") if last_touch else None,
        "last_touch_date": str(last_touch["day"]) if last_touch else None,
        "sender": {
            "name": display_name(sender) if sender else "Your customer success team",
            "email": sender,
            "signature": cfg.signature,
            "company": cfg.company,
        },
        "links": {"survey": cfg.survey_url, "booking": cfg.booking_url},
    }


def draft_for(
    env: SandboxedEnvironment,
    template: str,
    account: Account,
    contact: dict[str, Any],
    inputs: HealthInputs,
    last_touch: dict[str, Any] | None,
    as_of: date,
    *,
    health: HealthScore | None = None,
    settings: DraftsConfig | None = None,
    sender_email: str | None = None,
    id_parts: tuple[str, ...] = (),
) -> Draft | Skip:
    ctx = context(account, contact, inputs, last_touch, as_of, health=health, settings=settings,
                  sender_email=sender_email)
    try:
        subject, text, html = render(env, template, ctx)
    except RenderError as exc:
        return Skip(contact["email"], str(exc))
    name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    return Draft(
        template=template, account_id=account.account_id, to_email=contact["email"], to_name=name,
        from_email=ctx["sender"]["email"] or None, from_name=ctx["sender"]["name"], subject=subject,
        text=text, html=html,
        message_id=message_id(template, account.account_id, contact["email"], as_of.isoformat(), *id_parts),
    )
