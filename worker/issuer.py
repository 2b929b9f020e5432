"""A small local OpenID Connect issuer, so `baton dev`, `baton demo` and the CLI need no external provider.

It publishes what a run verifies decisions against (discovery at
`/.well-known/openid-configuration`, its keys at `/jwks`) and issues tokens at
`/token` (the OAuth password grant, no password: this is a development issuer;
the client secret under `.baton/issuer/` is what keeps other local users out).
Its people and their roles are the `[roles]` tables of baton.toml: a token for
a person lists every role whose `people` name them. Its signing key is made on
first use and kept under `.baton/issuer/` (owner-only), so tokens and the keys
runs took with their policies stay good across restarts.

It listens on loopback only. An organisation's own issuer replaces it by
`[identity]` in baton.toml; then none is started.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from activities.oidc import IdentitySettings

AUDIENCE = "baton"
TOKEN_TTL = timedelta(hours=1)
ISSUER_PORT_OFFSET = 2000  # beside the dev server's gRPC port (7233 -> 9233), as its Web UI is at +1000
CLIENT_ID = "baton-cli"
DIRECTORY = Path(".baton/issuer")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_BODY = 4096


class IssuerError(Exception):
    pass


def remember_url(issuer: LocalIssuer) -> None:
    """Where the running issuer is, for `baton login` (client/login.py) in another shell."""
    (issuer.directory / "url").write_text(issuer.url + "\n", encoding="utf-8")


class LocalIssuer:
    """The issuer: `start()` serves it on a thread, `mint()` signs a token directly (tests, the demo)."""

    def __init__(self, roles: dict[str, list[str]], *, directory: Path = DIRECTORY, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.roles = roles
        self.directory = directory
        self._key = _signing_key(directory)
        self.client_secret = _client_secret(directory)
        self._server = _Server((host, port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="baton-issuer", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def kid(self) -> str:
        return self._key.kid

    def settings(self) -> IdentitySettings:
        """`[identity]` pointing at this issuer."""
        return IdentitySettings(issuer=self.url, audience=AUDIENCE)

    def roles_of(self, person: str) -> list[str]:
        return [role for role, people in self.roles.items() if person in people]

    def mint(self, person: str, now: datetime | None = None, ttl: timedelta = TOKEN_TTL) -> str:
        """A token for `person`, issued at `now` (default: the clock; a test passes its server's clock)."""
        if not NAME.match(person):
            raise IssuerError(f"{person!r} is not a name the local issuer issues tokens for")
        issued = int((now or datetime.now(timezone.utc)).timestamp())
        claims = {
            "iss": self.url, "aud": AUDIENCE, "sub": person, "iat": issued, "nbf": issued,
            "exp": issued + int(ttl.total_seconds()), "jti": uuid.uuid4().hex, "roles": self.roles_of(person),
        }
        return jwt.encode({"alg": "RS256", "kid": self.kid, "typ": "JWT"}, claims, self._key)

    def discovery(self) -> dict:
        return {
            "issuer": self.url, "jwks_uri": f"{self.url}/jwks", "token_endpoint": f"{self.url}/token",
            "grant_types_supported": ["password"], "response_types_supported": ["token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["sub", "roles"],
        }

    def jwks(self) -> dict:
        return KeySet([self._key]).as_dict(private=False)

    def start(self) -> LocalIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        try:
            super().__init__(address, handler)
        except OSError as err:
            raise IssuerError(f"the local issuer cannot listen on {address[0]}:{address[1]}: {err.strerror}") from None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        issuer = self.server.issuer
        if self.path == "/.well-known/openid-configuration":
            self._json(200, issuer.discovery())
        elif self.path == "/jwks":
            self._json(200, issuer.jwks())
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/token":
            self._json(404, {"error": "not_found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(413, {"error": "invalid_request"})
            return
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
        issuer = self.server.issuer
        client, secret = _client_auth(self.headers.get("Authorization"), form)
        if client != CLIENT_ID or not secrets.compare_digest(secret.encode(), issuer.client_secret.encode()):
            self._json(401, {"error": "invalid_client"})
            return
        person = form.get("username", "")
        if form.get("grant_type") != "password" or not NAME.match(person):
            self._json(400, {"error": "invalid_grant", "error_description": "grant_type=password and a username"})
            return
        token = issuer.mint(person)
        self._json(200, {"access_token": token, "id_token": token, "token_type": "Bearer",
                         "expires_in": int(TOKEN_TTL.total_seconds())})

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the stack's output is the worker's, and a request line is no one's business."""


def _client_auth(header: str | None, form: dict[str, str]) -> tuple[str, str]:
    """(client_id, client_secret) from HTTP Basic or the form (RFC 6749 2.3.1)."""
    if header and header.startswith("Basic "):
        try:
            client, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client, secret
        except ValueError:
            return "", ""
    return form.get("client_id", ""), form.get("client_secret", "")


def _signing_key(directory: Path) -> RSAKey:
    """The issuer's RSA key, made on first use and kept owner-only; its kid is its RFC 7638 thumbprint."""
    path = directory / "signing-key.json"
    if path.exists():
        return RSAKey.import_key(json.loads(path.read_text()))
    key = RSAKey.generate_key(2048, private=True)
    key = RSAKey.import_key(key.as_dict(private=True), parameters={"kid": key.thumbprint(), "use": "sig", "alg": "RS256"})
    _write_private(path, json.dumps(key.as_dict(private=True)))
    return key


def _client_secret(directory: Path) -> str:
    path = directory / "client-secret"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    _write_private(path, secret)
    return secret


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "x", encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600)) as file:
        file.write(text)
