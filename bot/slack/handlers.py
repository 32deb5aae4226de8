"""Bolt listeners. Each one acknowledges at once (parsing and checks only, no database), then does
the work in a lazy listener and answers through `response_url` or the Web API.

Side effects are claimed in the database first (event id, action timestamp, view id), so Slack's
retries and double clicks never repeat them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.draftstore import DraftStore
from bot.errors import BadInput
from bot.nudges import Nudges
from bot.services import Keepwell
from bot.slack import blocks as B
from bot.slack import nudge_blocks as NB
from bot.slack.commands import Actor, Command, Modal, Usage, draft_modal, execute, parse

log = logging.getLogger("keepwell.slack")
Today = Callable[[], date]
Stores = Callable[[str | None], DraftStore]

# Every action and view the app answers; the manifest test checks these against what blocks use.
ACTIONS = ("open_card", "risk_page", "draft_checkin", "log_note", "review_done", "draft_template",
           "draft_recipient", "apply_plan", "open_draft", "nudge_done", "nudge_snooze", "nudge_ack",
           "nudge_agenda")
VIEWS = ("note_submit", "draft_submit")
EVENTS = ("app_home_opened",)
COMMAND = "/keepwell"
APPLY_WORKERS = 2  # bulk applies at once: minutes each at Gmail's quota, so never on the answer threads


def _oops(respond: Respond | None, exc: Exception) -> None:
    log.exception("a Slack request failed: %s", type(exc).__name__)
    if respond is not None:
        respond(**B.error("Something went wrong on our side; nothing was changed. Try again in a "
                          "minute.").to_dict())


def _reply(client: WebClient, respond: Respond | None, user: str, trigger: str | None,
           result: B.Reply | Modal) -> None:
    """Show a result where the request came from: a modal, the response_url, or a DM."""
    if isinstance(result, Modal):
        if trigger:
            client.views_open(trigger_id=trigger, view=result.view)
            return
        result = result.fallback
    if respond is not None:
        respond(**result.to_dict())
    else:
        client.chat_postMessage(channel=user, **_message(result))


def _message(reply: B.Reply) -> dict[str, Any]:
    """A reply as chat.postMessage arguments (to the user's Messages tab)."""
    return {k: v for k, v in reply.to_dict().items() if k != "response_type"}


def _plain(text: str) -> dict[str, Any]:
    return _message(B.message(text))


def _email(client: WebClient, user: str) -> str | None:
    """The Slack user's email (needs users:read.email), for their mailbox and their accounts."""
    try:
        info: dict[str, Any] = client.users_info(user=user).get("user") or {}
    except SlackApiError:
        return None
    return str((info.get("profile") or {}).get("email") or "").lower() or None


def register(app: App, service: Keepwell, today: Today, stores: Stores | None = None) -> None:
    limit = service.config.slack.max_command_chars
    applying = ThreadPoolExecutor(APPLY_WORKERS, thread_name_prefix="keepwell-apply")

    def store_for(client: WebClient, user: str) -> DraftStore | None:
        """The asking person's mailbox (a delegated service account), or the configured store."""
        return stores(_email(client, user)) if stores is not None else None

    # /keepwell ----------------------------------------------------------------------------------

    def ack_command(ack: Ack, command: dict[str, Any]) -> None:
        try:
            cmd = parse(command.get("text", ""), limit)
        except Usage as exc:
            unknown = exc.message.startswith("unknown command")
            ack(**(B.help_reply(exc.message) if unknown else B.error(exc.message, exc.usage)).to_dict())
            return
        if cmd.name == "help":
            ack(**B.help_reply().to_dict())
            return
        ack()

    def run_command(command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        try:
            cmd = parse(command.get("text", ""), limit)
        except Usage:
            return  # answered in the acknowledgement
        if cmd.name == "help":
            return
        actor = Actor(command["user_id"], f"cmd:{command.get('trigger_id') or command.get('text')}")
        if cmd.name == "draft":
            actor = Actor(actor.user_id, actor.ref, _email(client, actor.user_id))
        try:
            result = execute(service, cmd, actor, today())
            _reply(client, respond, actor.user_id, command.get("trigger_id"), result)
        except BadInput as exc:
            respond(**B.error(exc.message).to_dict())
        except Exception as exc:  # never a stack trace in the channel
            _oops(respond, exc)

    app.command(COMMAND)(ack=ack_command, lazy=[run_command])

    # buttons ------------------------------------------------------------------------------------

    def just_ack(ack: Ack) -> None:
        ack()

    def action(handler: Callable[[dict[str, Any], dict[str, Any], WebClient, Respond | None], None],
               *, once: bool = False, long: bool = False) -> Callable[..., None]:
        """The lazy listener of a button: `handler` answers it (on a pool of its own when `long`, so a
        bulk apply never holds up everyone else's answers)."""
        def answer(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond) -> None:
            user = body["user"]["id"]
            if once and not service.journal.claim(f"action:{user}:{action.get('action_ts')}"):
                return
            reply_to = respond if body.get("response_url") else None
            try:
                handler(body, action, client, reply_to)
            except BadInput as exc:
                _reply(client, reply_to, user, None, B.error(exc.message))
            except Exception as exc:
                _oops(reply_to, exc)

        def lazy(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond) -> None:
            if long:
                applying.submit(answer, body, action, client, respond)
            else:
                answer(body, action, client, respond)
        return lazy

    def open_card(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        card = B.health_card(service.health(act["value"], today()))
        if respond is None:  # from App Home: no message to answer, so show the card in a modal
            client.views_open(trigger_id=body["trigger_id"], view={
                "type": "modal", "title": {"type": "plain_text", "text": "Account health"},
                "close": {"type": "plain_text", "text": "Close"}, "blocks": card.to_dict()["blocks"],
            })
        else:
            respond(**card.to_dict())

    def risk_page(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        spec = json.loads(act["value"])
        expr, page = str(spec.get("expr", "")), int(spec.get("page", 1))
        reply = B.risk_list(service.risk(today(), expr or None), expr, page, today())
        if respond is not None:
            respond(replace_original=True, **reply.to_dict())

    def draft_checkin(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        modal = draft_modal(service, act["value"], today())
        client.views_open(trigger_id=body["trigger_id"], view=modal.view)

    def log_note(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        account = service.book.resolve(act["value"])
        client.views_open(trigger_id=body["trigger_id"], view=B.note_modal(account.account_id, account.name))

    def review_done(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        user = body["user"]["id"]
        account, new = service.teamwork.review_done(act["value"], author=user, as_of=today(),
                                                    ref=f"action:{user}:{act.get('action_ts')}")
        said = "Review recorded as done" if new else "That review was already recorded"
        _reply(client, respond, user, None, B.message(f"{said} for {account.name} on {today()}."))

    def rerender_draft(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        view = body["view"]
        state = view["state"]["values"]
        template = state["template"]["draft_template"]["selected_option"]["value"]
        email = state["recipient"]["draft_recipient"]["selected_option"]["value"]
        modal = draft_modal(service, view["private_metadata"], today(), template=template, email=email)
        client.views_update(view_id=view["id"], hash=view.get("hash"), view=modal.view)

    def apply_plan(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        from bot.drafts import Drafting
        from bot.errors import OperationFailed

        plan_id, user = act["value"], body["user"]["id"]
        if not service.journal.claim(f"action:{user}:{act.get('action_ts')}"):
            return  # this very click again (Slack's retry, perhaps to another instance): answered once
        drafting = Drafting(service)
        # Another click while a worker is on the plan (or after it finished) only says so; a click on a
        # plan whose apply stopped (a crash, Google signed out) resumes it. Two clicks racing both apply,
        # which is safe: workers claim separate batches and never create a draft twice.
        if drafting.status(plan_id) != "open":
            _reply(client, respond, user, None, B.message("Those drafts are already being created."))
            return
        shown = [0]

        def progress(done: int, total: int) -> None:  # a response_url takes 5 updates: show 2 of them
            first = done == 0 and shown[0] == 0
            if respond is not None and total and (first or (shown[0] < 2 and done * 2 >= total)):
                shown[0] += 1
                respond(replace_original=True, **B.apply_progress(done, total).to_dict())

        try:
            store = service.teamwork.drafts
            if stores is not None:  # the plan's mailbox: the first presser's, whoever presses now
                store = stores(drafting.mailbox(plan_id, _email(client, user)))
            summary = drafting.apply(plan_id, store, author=user, progress=progress)
        except OperationFailed as exc:  # Google signed out, the outbox unwritable …: what exists stays
            note = B.error(f"{exc.message.rstrip('.')}. The drafts created so far are kept; press the "
                           "button again to carry on.")
            plan = drafting.load(plan_id)  # the button again: the progress replaced it
            again = B.Reply(note.text, note.blocks + (B.plan_view(plan).blocks if plan else []))
            if respond is not None:
                respond(replace_original=True, **again.to_dict())
            else:
                _reply(client, None, user, None, again)
            return
        final = B.apply_progress(summary.created, summary.created, summary)
        if respond is not None:
            respond(replace_original=True, **final.to_dict())
        else:
            _reply(client, None, user, None, final)

    def nothing(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        """A link button: Slack opens the link; the app only acknowledges the click."""

    def nudge(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        """Mark done, snooze or acknowledge a reminder or alert; the message then says who did."""
        user, as_of = body["user"]["id"], today()
        what = {"nudge_done": "done", "nudge_snooze": "snooze", "nudge_ack": "acknowledge"}[act["action_id"]]
        result = Nudges(service).act(act["value"], what, user=user, as_of=as_of)
        update = NB.acted((body.get("message") or {}).get("blocks") or [], result, user, as_of)
        if respond is not None:
            respond(**update)
        else:
            client.chat_postMessage(channel=user, text=update["text"], blocks=update["blocks"])

    def nudge_agenda(
        body: dict[str, Any], act: dict[str, Any], client: WebClient, respond: Respond | None
    ) -> None:
        """The review's agenda email (the QBR template) as a draft in the owner's mailbox."""
        user = body["user"]["id"]
        row = Nudges(service).get(act["value"])
        if row is None:
            raise BadInput("that reminder is no longer known")
        account = service.book.accounts([row["account_pk"]])[0]
        people = service.teamwork.recipients(account)
        if not people:
            raise BadInput(f"{account.name} has no contact who may be emailed; add one to the book first")
        owner = account.owner_email or _email(client, user)
        outcome = service.teamwork.create_draft(
            account.account_id, people[0]["email"], "qbr_invite", author=user, as_of=today(),
            store=stores(owner) if stores is not None else None)
        reply = B.draft_created(outcome.account.name, outcome.draft, outcome.location, outcome.created)
        if respond is not None:
            respond(replace_original=False, **reply.to_dict())
        else:
            client.chat_postMessage(channel=user, **_message(reply))

    answers = {
        "open_card": (open_card, False), "risk_page": (risk_page, False),
        "draft_checkin": (draft_checkin, False), "log_note": (log_note, False),
        "review_done": (review_done, True), "draft_template": (rerender_draft, False),
        "draft_recipient": (rerender_draft, False), "apply_plan": (apply_plan, False),
        "open_draft": (nothing, False), "nudge_done": (nudge, True), "nudge_snooze": (nudge, True),
        "nudge_ack": (nudge, True), "nudge_agenda": (nudge_agenda, True),
    }
    for action_id in ACTIONS:
        handler, once = answers[action_id]
        app.action(action_id)(ack=just_ack, lazy=[action(handler, once=once, long=action_id == "apply_plan")])

    # modals -------------------------------------------------------------------------------------

    def ack_note(ack: Ack, view: dict[str, Any]) -> None:
        text = (view["state"]["values"].get("note", {}).get("text", {}).get("value") or "").strip()
        if not text:
            ack(response_action="errors", errors={"note": "Write something first."})
            return
        ack()

    def save_note(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = body["user"]["id"]
        values = view["state"]["values"]

        def chosen(block: str) -> str | None:
            option = values.get(block, {}).get("value", {}).get("selected_option")
            return option["value"] if option else None

        try:
            account = service.teamwork.log_note(
                view["private_metadata"], values["note"]["text"]["value"], author=user, as_of=today(),
                ref=f"view:{view['id']}", sentiment=chosen("sentiment"), kind=chosen("kind") or "other",
            )
            client.chat_postMessage(channel=user, **_plain(f"Note logged on {account.name}."))
        except BadInput as exc:
            client.chat_postMessage(channel=user, **_plain(exc.message))
        except Exception as exc:
            _oops(None, exc)

    def save_draft(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = body["user"]["id"]
        values = view["state"]["values"]
        try:
            template = values["template"]["draft_template"]["selected_option"]["value"]
            email = values["recipient"]["draft_recipient"]["selected_option"]["value"]
            outcome = service.teamwork.create_draft(view["private_metadata"], email, template,
                                                    author=user, as_of=today(),
                                                    store=store_for(client, user))
            reply = B.draft_created(outcome.account.name, outcome.draft, outcome.location, outcome.created)
            client.chat_postMessage(channel=user, **_message(reply))
        except BadInput as exc:
            client.chat_postMessage(channel=user, **_plain(exc.message))
        except Exception as exc:
            _oops(None, exc)

    views = {"note_submit": (ack_note, save_note), "draft_submit": (just_ack, save_draft)}
    for callback_id in VIEWS:
        ack_view, work = views[callback_id]
        app.view(callback_id)(ack=ack_view, lazy=[work])

    # App Home -----------------------------------------------------------------------------------

    def publish_home(event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        if not service.journal.claim(f"event:{body.get('event_id')}"):
            return  # a retry of an event already answered
        user = event["user"]
        try:
            email = _email(client, user)  # without it, "my accounts" are those whose team I am on
            as_of = today()
            mine = service.my_accounts(as_of, user, email)
            due = [d for d in service.reviews(as_of, 90) if d.account.pk in {s.account.pk for s in mine}]
            drafts = service.journal.recent_drafts(user)
            client.views_publish(user_id=user, view=B.home_view(mine, due, drafts, as_of))
        except Exception as exc:
            _oops(None, exc)

    for event in EVENTS:
        app.event(event)(ack=just_ack, lazy=[publish_home])


__all__ = ["ACTIONS", "COMMAND", "EVENTS", "VIEWS", "Command", "register"]
