"""Google credentials: Google's standard credentials file (a service-account key with domain-wide
delegation, or an `authorized_user` file; its `token_uri` honoured), or the token `keepwell auth
google` stored, encrypted with KEEPWELL_SECRET_KEY."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from bot.config import Settings
from bot.errors import BadInput, OperationFailed

COMPOSE = "https://www.googleapis.com/auth/gmail.compose"
CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"
METADATA = "https://www.googleapis.com/auth/gmail.metadata"
SIGN_IN_AGAIN = "run `keepwell auth google` to sign in again"


def _fernet(secret: str | None) -> Fernet:
    if not secret:
        raise BadInput("KEEPWELL_SECRET_KEY is not set: Keepwell will not store a Google token unencrypted "
                       "(set it to a long random string, e.g. from `openssl rand -base64 32`)")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"keepwell-token-v1").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def store_token(settings: Settings, info: dict[str, Any]) -> Path:
    """Encrypt and write an authorized-user token (readable by its owner only)."""
    path = settings.google_token.expanduser()
    data = _fernet(settings.secret_key).encrypt(json.dumps(info).encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


def load_token(settings: Settings) -> dict[str, Any]:
    path = settings.google_token.expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"no Google sign-in stored at {path}; {SIGN_IN_AGAIN}") from None
    try:
        return dict(json.loads(_fernet(settings.secret_key).decrypt(data)))
    except (InvalidToken, ValueError):
        raise BadInput(f"the Google token at {path} cannot be read with this KEEPWELL_SECRET_KEY; "
                       f"{SIGN_IN_AGAIN}") from None


def credentials(settings: Settings, scopes: list[str], mailbox: str | None = None) -> Credentials:
    """Credentials for the mailbox: a delegated service account needs one, a signed-in user is one."""
    path = settings.google_application_credentials
    if path is not None:
        try:
            info = json.loads(Path(path).expanduser().read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"GOOGLE_APPLICATION_CREDENTIALS: cannot read {path} ({exc})") from None
        kind = info.get("type")
        if kind == "service_account":
            if not mailbox:
                raise BadInput("a service account acts for one person's mailbox: give --mailbox EMAIL "
                               "(from Slack, the mailbox is the asking person's email)")
            try:
                creds = service_account.Credentials.from_service_account_info(info, scopes=scopes)
            except (ValueError, KeyError) as exc:
                raise BadInput(f"GOOGLE_APPLICATION_CREDENTIALS: not a usable service-account key ({exc})") \
                    from None
            return creds.with_subject(mailbox)
        if kind == "authorized_user":
            return _user(info, scopes, mailbox)
        raise BadInput(f"GOOGLE_APPLICATION_CREDENTIALS: unsupported credentials type {kind!r} "
                       "(expected service_account or authorized_user)")
    return _user(load_token(settings), scopes, mailbox)


def _user(info: dict[str, Any], scopes: list[str], mailbox: str | None) -> Credentials:
    if mailbox and info.get("account") and mailbox.lower() != str(info["account"]).lower():
        raise BadInput(f"signed in as {info['account']}; --mailbox {mailbox} needs a service account")
    try:
        creds = user_credentials.Credentials.from_authorized_user_info(info, scopes=scopes)
        # google-auth now always uses Google's endpoint here; the contract honours the file's own
        return creds.with_token_uri(info["token_uri"]) if info.get("token_uri") else creds
    except ValueError as exc:
        raise OperationFailed(f"the stored Google sign-in is incomplete ({exc}); {SIGN_IN_AGAIN}") from None


def scopes_for(gmail_activity: bool = False) -> list[str]:
    """The fewest scopes: compose drafts, read contacts; mail metadata only for activity sync."""
    return [COMPOSE, CONTACTS, *([METADATA] if gmail_activity else [])]


def sign_in(settings: Settings, client_secrets: Path, *, gmail_activity: bool = False,
            open_browser: bool = True) -> tuple[Path, str]:
    """Google's installed-app sign-in in the browser; the token is encrypted before it touches disk."""
    from google_auth_oauthlib.flow import InstalledAppFlow
    from googleapiclient.discovery import build

    _fernet(settings.secret_key)  # refuse before asking the user to sign in, not after
    if not client_secrets.exists():
        raise BadInput(f"{client_secrets}: no OAuth client file (create a Desktop app client in Google "
                       "Cloud and download its JSON; see docs/google.md)")
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets),
                                                         scopes=scopes_for(gmail_activity))
    except ValueError as exc:
        raise BadInput(f"{client_secrets}: not an OAuth client file ({exc})") from None
    creds = flow.run_local_server(port=0, open_browser=open_browser,
                                  authorization_prompt_message="Open this link to sign in: {url}")
    info = json.loads(creds.to_json())
    try:
        profile = build("gmail", "v1", credentials=creds, cache_discovery=False).users().getProfile(
            userId="me").execute()
        info["account"] = profile.get("emailAddress", "")
    except Exception as exc:  # a sign-in that cannot even read its own address is no sign-in
        raise OperationFailed(f"signed in, but Gmail did not answer ({exc})") from None
    return store_token(settings, info), info["account"]
