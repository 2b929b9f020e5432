"""`baton login NAME`: a token from the local issuer for a named person, kept under `.baton/` as `gh` keeps its own.

Against `baton dev`'s local issuer only (worker/issuer.py): its address and
client secret are under `.baton/issuer/`, readable by whoever runs the stack.
With an organisation's issuer, get a token from it and put it in BATON_TOKEN.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from client.credentials import TOKEN_FILE
from worker.issuer import CLIENT_ID, DIRECTORY


class LoginFailed(ConnectionError):
    pass


def login(person: str, issuer: str | None = None, directory: Path = DIRECTORY) -> str:
    """`person`'s token from the local issuer, stored in TOKEN_FILE (owner-only) for later commands."""
    token = issue(person, issuer, directory)
    store(token)
    return token


def issue(person: str, issuer: str | None = None, directory: Path = DIRECTORY) -> str:
    """Ask the local issuer whose files are in `directory` (or at `issuer`) for `person`'s token."""
    url = issuer or _read(directory / "url", "no local issuer has run here: start `baton dev` (or pass --issuer)")
    secret = _read(directory / "client-secret", "no local issuer's client secret under .baton/issuer")
    try:
        answer = httpx.post(f"{url.rstrip('/')}/token", data={"grant_type": "password", "username": person},
                            auth=(CLIENT_ID, secret), timeout=10)
    except httpx.HTTPError as err:
        raise LoginFailed(f"cannot reach the issuer at {url}: {type(err).__name__} (is `baton dev` running?)") from None
    if answer.status_code != 200:
        raise LoginFailed(f"the issuer at {url} refused: HTTP {answer.status_code} {answer.json().get('error', '')}")
    return answer.json()["access_token"]


def store(token: str, path: Path = TOKEN_FILE) -> None:
    """Replace the stored token, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with open(path, "x", encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600)) as file:
        file.write(token)


def _read(path: Path, missing: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        raise LoginFailed(missing) from None
