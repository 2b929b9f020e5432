"""Who the caller is: a token from the identity provider, for starting runs and deciding.

A run takes no name typed by a caller as identity: it verifies a signed token
(workflows/decisions.py, workflows/engine.py). The CLI finds its token as `gh`
and `gcloud` do: `BATON_TOKEN` in the environment, else the one `baton login`
stored under `.baton/` (client/login.py). The SDK takes any TokenProvider;
`Credentials` puts the starter's token on every start a client makes, in a
Temporal header the worker hands to the run (worker/run_input.py).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client, Interceptor, OutboundInterceptor, StartWorkflowInput, WorkflowHandle
from temporalio.converter import default as default_converter

from activities.identity import STARTER_HEADER

# A token for the person `by` names (None: the caller's own). One that speaks for one person ignores the name:
# the run checks a `by` given against the token's subject.
TokenProvider = Callable[[str | None], Awaitable[str | None]]
TOKEN_ENV = "BATON_TOKEN"
TOKEN_FILE = Path(".baton/token")


class NoCredential(ValueError):
    """The caller has no token to prove who they are: nothing was sent."""


async def cli_token(by: str | None = None) -> str | None:
    """`BATON_TOKEN`, else the token `baton login` stored; None when there is neither."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    try:
        return TOKEN_FILE.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


async def required(tokens: TokenProvider, by: str | None) -> str:
    """The token a decision carries; NoCredential when the provider has none."""
    token = await tokens(by)
    if not token:
        raise NoCredential(f"no credential: set {TOKEN_ENV} or run `baton login NAME` (a decision needs a token "
                           "from the identity provider; --by names nobody by itself)")
    return token


def claimed_subject(token: str | None) -> str | None:
    """The subject a token names, unverified: only to recognise a decision already taken, never as identity."""
    try:
        body = (token or "").split(".")[1]
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))).get("sub")
    except (IndexError, ValueError, AttributeError):
        return None


class Credentials(Interceptor):
    """Puts the starter's token on every workflow start the client makes."""

    def __init__(self, tokens: TokenProvider) -> None:
        self.tokens = tokens

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _StartWithToken(next, self.tokens)


class _StartWithToken(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, tokens: TokenProvider) -> None:
        super().__init__(next)
        self._tokens = tokens

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        token = await self._tokens(None)
        if token:
            header = default_converter().payload_converter.to_payload(token)
            input.headers = {**input.headers, STARTER_HEADER: header}
        return await super().start_workflow(input)


def credentials_of(client: Client) -> Credentials | None:
    """The credentials a client was given, if any."""
    found: Sequence[Any] = [i for i in client.config()["interceptors"] if isinstance(i, Credentials)]
    return found[-1] if found else None


def with_credentials(client: Client, tokens: TokenProvider) -> Client:
    """`client`, its starts carrying the token `tokens` gives (replacing credentials it had)."""
    config = client.config()
    config["interceptors"] = [*(i for i in config["interceptors"] if not isinstance(i, Credentials)), Credentials(tokens)]
    return Client(**config)
