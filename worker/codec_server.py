"""`baton codec-server`: Temporal's remote codec endpoints, so permitted people read encrypted payloads.

The Web UI and `temporal workflow show --codec-endpoint` send
`POST /decode` (and `/encode`) with `{"payloads": [...]}` (payloads in protobuf
JSON) and get the same shape back, decoded by Baton's codec (client/codec.py).
Decoding hands out personal data, so every call needs
`Authorization: Bearer <token>` signed by the identity provider that signs
approvals (activities/identity.py `verify`, its keys fetched as a worker
fetches them, activities/oidc.py), optionally with a role; the Web UI passes
the signed-in user's token when "include credentials" is on, the CLI with
`--codec-auth`. CORS answers only the Web UI's own origin.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payloads

from activities.identity import IdentityRefused, TrustedIssuer, verify
from activities.oidc import IdentitySettings, IssuerKeys
from client.codec import DecryptionError, EncryptionCodec, KeyRing

CODEC_PORT_OFFSET = 3000  # beside the dev server (7233 -> 10233), as its Web UI is at +1000 and the issuer at +2000
MAX_BODY = 4 * 1024 * 1024  # a page of the Web UI's payloads; a run's own are at most 512 KiB each


async def trusted_issuer(settings: IdentitySettings) -> TrustedIssuer:
    """The issuer's keys, fetched once at start: an unreachable issuer stops the server before it serves."""
    async with httpx.AsyncClient(timeout=10) as http:
        return await IssuerKeys(settings, http).trusted()


class CodecServer:
    """Serves the codec endpoints on a thread; `url` is what the Web UI's codec endpoint is set to."""

    def __init__(self, keys: KeyRing, trusted: TrustedIssuer, *, origins: list[str], role: str | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.codec = EncryptionCodec(keys)
        self.trusted, self.origins, self.role = trusted, [o.rstrip("/") for o in origins], role
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.codec_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="baton-codec", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CodecServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def allowed(self, authorization: str | None) -> str | None:
        """Why the caller may not decode, or None when its bearer token verifies (and carries the role)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "no bearer token: send Authorization: Bearer <token from the identity provider>"
        try:
            who = verify(token.strip(), self.trusted, datetime.now(timezone.utc))
        except IdentityRefused as err:
            return str(err)
        if self.role and self.role not in who.roles:
            return f"{who.subject} does not hold the role {self.role!r} that reading payloads needs"
        return None

    def convert(self, path: str, body: bytes) -> dict:
        """The response body for `/encode` or `/decode`; ValueError for a request that is not one."""
        try:
            payloads = ParseDict(json.loads(body), Payloads()).payloads
        except (ValueError, ParseError) as err:
            raise ValueError(f"the body is not {{\"payloads\": [...]}}: {str(err).splitlines()[0][:200]}") from None
        done = [self.codec.seal(p) for p in payloads] if path == "/encode" else [self.codec.open(p) for p in payloads]
        return MessageToDict(Payloads(payloads=done))


class _Handler(BaseHTTPRequestHandler):
    server_version = "baton-codec"

    def log_message(self, *args: object) -> None:  # no request lines: paths and callers are not for the log
        pass

    @property
    def _codec(self) -> CodecServer:
        return self.server.codec_server  # type: ignore[attr-defined]

    def _cors(self) -> None:
        origin = self.headers.get("Origin", "").rstrip("/")
        if origin in self._codec.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
            self.send_header("Vary", "Origin")

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self) -> None:  # the browser's preflight: no credentials are sent with it
        self.send_response(204)
        self._cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if self.path not in ("/encode", "/decode"):
            return self._answer(404, {"message": f"no endpoint {self.path[:100]}: POST /encode or /decode"})
        refused = self._codec.allowed(self.headers.get("Authorization"))
        if refused:
            return self._answer(401, {"message": refused})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._answer(413, {"message": f"the body is more than {MAX_BODY} bytes"})
        try:
            return self._answer(200, self._codec.convert(self.path, self.rfile.read(length)))
        except (ValueError, DecryptionError) as err:
            return self._answer(400, {"message": str(err)})
