"""`baton codec-server`: Temporal's remote codec endpoints, so permitted people read encrypted payloads.

The Web UI and `temporal workflow show --codec-endpoint` send
`POST /decode` (and `/encode`) with `{"payloads": [...]}` (payloads in protobuf
JSON) and get the same shape back, decoded by Baton's codec (worker/codec.py).
Decoding hands out personal data, so every call needs a caller proven by the
identity provider that signs approvals (activities/identity.py `verify`, its
keys fetched as a worker fetches them, activities/oidc.py), optionally with a
role, in one of two ways:

- `Authorization: Bearer <token>`: the CLI's `--codec-auth`, or a Web UI with
  sign-in and "Pass the user access token" on;
- a signed-in browser: the dev server's Web UI has no sign-in and sends no
  token, so a person signs the browser in at `GET /login` with a token
  (`baton login`), and the UI, with "Include cross-origin credentials" on,
  sends the session cookie set then (Temporal's documented cross-origin
  credentials). The cookie holds a random session id, never the token: a
  cookie reaches every port of its host, and the token would also approve runs.
  The session ends when the token expires, or at `/logout`.

CORS answers only the Web UI's origins, and a request from any other origin is
refused, so another site cannot spend the person's cookie (SameSite=Strict
already keeps it from other sites; other ports of the same host are the same
site). Tokens are taken from a header or a form body, never from a URL.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from joserfc.jws import extract_compact
from temporalio.api.common.v1 import Payloads

from activities.identity import MAX_TOKEN_CHARS, IdentityRefused, TrustedIssuer, Verified, verify
from activities.oidc import IdentitySettings, IssuerKeys
from worker.codec import DecryptionError, EncryptionCodec, KeyRing

CODEC_PORT_OFFSET = 3000  # beside the dev server (7233 -> 10233), as its Web UI is at +1000 and the issuer at +2000
MAX_BODY = 4 * 1024 * 1024  # a page of the Web UI's payloads; a run's own are at most 512 KiB each
MAX_FORM = MAX_TOKEN_CHARS + 64  # the login form: one token
MAX_SESSIONS = 1024  # signed-in browsers at once; only holders of a verified token make one
COOKIE = "baton-codec-session"
# The login page runs no script, loads nothing, posts only to itself and is shown in no frame (clickjacking).
PAGE_POLICY = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


async def trusted_issuer(settings: IdentitySettings) -> TrustedIssuer:
    """The issuer's keys, fetched once at start: an unreachable issuer stops the server before it serves."""
    async with httpx.AsyncClient(timeout=10) as http:
        return await IssuerKeys(settings, http).trusted()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who proved it, and until when (their token's expiry)."""

    subject: str
    expires: datetime


class CodecServer:
    """Serves the codec endpoints on a thread; `url` is what the Web UI's codec endpoint is set to."""

    def __init__(self, keys: KeyRing, trusted: TrustedIssuer, *, origins: list[str], role: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, clock: Callable[[], datetime] = _utcnow) -> None:
        self.codec = EncryptionCodec(keys)
        self.trusted, self.origins, self.role = trusted, [o.rstrip("/") for o in origins], role
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.codec_server = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="baton-codec", daemon=True)

    @property
    def url(self) -> str:
        """Its address, named `localhost` on loopback as the Web UI's is: a browser keeps cookies per host name."""
        host, port = self._server.server_address[:2]
        return f"http://{'localhost' if host == '127.0.0.1' else host}:{port}"

    def __enter__(self) -> CodecServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def identify(self, token: str) -> Verified:
        """Who `token` proves, holding the role reading needs; IdentityRefused in one line otherwise."""
        who = verify(token, self.trusted, self.clock())
        if self.role and self.role not in who.roles:
            raise IdentityRefused(f"{who.subject} does not hold the role {self.role!r} that reading payloads needs")
        return who

    def allowed(self, authorization: str | None) -> str | None:
        """Why the caller may not decode, or None when its bearer token verifies (and carries the role)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "no bearer token: send Authorization: Bearer <token from the identity provider>"
        try:
            self.identify(token.strip())
        except IdentityRefused as err:
            return str(err)
        return None

    def sign_in(self, token: str) -> tuple[str, Session]:
        """A new session (its random id, and it) for the verified holder of `token`, ending when the token does."""
        who = self.identify(token)
        expires = datetime.fromtimestamp(json.loads(extract_compact(token.encode()).payload)["exp"], timezone.utc)
        session, now = Session(who.subject, expires), self.clock()
        if expires <= now:  # verify allows a minute's leeway past expiry; a session would be over already
            raise IdentityRefused(f"the token expired at {expires:%H:%M:%S} UTC: get a new one")
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            if len(self._sessions) >= MAX_SESSIONS:
                raise IdentityRefused(f"{MAX_SESSIONS} browsers are signed in already; try again when one signs out")
            sid = secrets.token_urlsafe(32)
            self._sessions[sid] = session
        return sid, session

    def session(self, sid: str) -> Session:
        """The live session `sid` names; IdentityRefused when there is none or it has expired (then it is dropped)."""
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= self.clock():
                del self._sessions[sid]
                raise IdentityRefused(f"this browser's session expired at {session.expires:%H:%M:%S} UTC "
                                      "with its token: sign in again")
        if session is None:
            raise IdentityRefused("this browser is not signed in (or signed out, or the codec server restarted)")
        return session

    def sign_out(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

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

    @property
    def _route(self) -> str:
        return urlsplit(self.path).path  # the UI posts /decode?preserveStorageRefs=true

    @property
    def _origin(self) -> str | None:
        origin = self.headers.get("Origin")
        return origin.rstrip("/") if origin is not None else None

    @property
    def _ui_origin(self) -> bool:
        return self._origin in self._codec.origins

    @property
    def _own_origin(self) -> bool:
        """The request comes from this server's own page (its login form), as the browser says."""
        return self._origin == f"http://{self.headers.get('Host', '')}"

    @property
    def _sid(self) -> str | None:
        try:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get(COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel else None

    def _cors(self) -> None:
        if self._ui_origin:
            self.send_header("Access-Control-Allow-Origin", self._origin)
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
        if not self._ui_origin:
            return self._answer(403, {"message": "only the Web UI's origin may call the codec server"})
        self.send_response(204)
        self._cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self._route == "/login":
            return self._page(200, self._status_line())
        return self._answer(404, {"message": "GET /login to sign this browser in; POST /encode or /decode"})

    def do_POST(self) -> None:
        route = self._route
        if route == "/login":
            return self._login()
        if route == "/logout":
            return self._logout()
        if route not in ("/encode", "/decode"):
            return self._answer(404, {"message": f"no endpoint {route[:100]}: POST /encode or /decode"})
        refused = self._refused()
        if refused:
            return self._answer(*refused)
        length = self._length()
        if length is None or length > MAX_BODY:
            return self._answer(413, {"message": f"the body is not a Content-Length of at most {MAX_BODY} bytes"})
        try:
            return self._answer(200, self._codec.convert(route, self.rfile.read(length)))
        except (ValueError, DecryptionError) as err:
            return self._answer(400, {"message": str(err)})

    def _length(self) -> int | None:
        """The body's declared length, or None for one that is not a length (a negative one would read to EOF)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return length if length >= 0 else None

    def _refused(self) -> tuple[int, dict] | None:
        """Why this call may not encode or decode (status, body), or None: bearer token, or a session from the UI."""
        if self._origin is not None and not self._ui_origin:
            return 403, {"message": f"calls from {self._origin[:100]!r} are refused: only the Web UI's origin may call"}
        if self.headers.get("Authorization"):
            refused = self._codec.allowed(self.headers.get("Authorization"))
            return (401, {"message": refused}) if refused else None
        if self._sid is None:
            return 401, {"message": "no credentials: send Authorization: Bearer <token>, or sign this browser in "
                                    f"at {self._codec.url}/login"}
        if self._origin is None:
            return 403, {"message": "a signed-in browser's call must come from the Web UI (it names no Origin)"}
        try:
            self._codec.session(self._sid)
        except IdentityRefused as err:
            return 401, {"message": str(err)}
        return None

    def _login(self) -> None:
        if not self._own_origin:
            return self._page(403, "Not signed in: sign in with this page's own form.")
        if urlsplit(self.path).query:
            return self._page(400, "Not signed in: a token never goes in a URL (URLs are logged and kept); "
                                   "paste it in the form.")
        length = self._length()
        if length is None or length > MAX_FORM:
            return self._page(413, "Not signed in: that is longer than any token.")
        form = parse_qs(self.rfile.read(length).decode("utf-8", errors="replace"), keep_blank_values=True)
        try:
            sid, session = self._codec.sign_in(form.get("token", [""])[0].strip())
        except IdentityRefused as err:
            return self._page(401, f"Not signed in: {err}")
        max_age = int((session.expires - self._codec.clock()).total_seconds())  # sign_in refused one already over
        self._redirect(f"{COOKIE}={sid}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict")

    def _logout(self) -> None:
        self._codec.sign_out(self._sid)
        self._redirect(f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict")

    def _redirect(self, cookie: str) -> None:
        """Back to the login page, which says whether this browser is signed in (post, redirect, get)."""
        self.send_response(303)
        self.send_header("Set-Cookie", cookie)
        self.send_header("Location", "/login")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _status_line(self) -> str:
        if self._sid is None:
            return "This browser is not signed in."
        try:
            session = self._codec.session(self._sid)
        except IdentityRefused as err:
            return f"Not signed in: {err}"
        return f"This browser is signed in as {session.subject} until {session.expires:%H:%M} UTC."

    def _page(self, status: int, line: str) -> None:
        """The login page with one status line; everything in it not written here is escaped."""
        data = LOGIN_PAGE.format(status=html.escape(line), ui=html.escape(", ".join(self._codec.origins))).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", PAGE_POLICY)
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")  # "no-referrer" would make its form post Origin: null
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Baton codec server: sign in</title></head>
<body>
<h1>Baton codec server</h1>
<p role="status">{status}</p>
<form method="post" action="/login">
<label for="token">Token</label> (<code>baton login NAME</code>, then <code>cat .baton/token</code>)
<input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>
<p>Then, in the Web UI ({ui}): Codec Server icon (top right), <em>Use my browser setting</em>, this
server's address as the endpoint, <em>Include cross-origin credentials</em> on, Apply.</p>
</body></html>
"""
