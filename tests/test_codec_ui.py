"""The Web UI decodes through `baton codec-server` on the local stack: a signed-in browser, and nobody else.

The dev server's Web UI has no sign-in, so it cannot send a bearer token. A person
signs this browser in at the codec server's `/login` with a token from the local
issuer (`baton login`); the codec server keeps a session and sets an HttpOnly,
SameSite=Strict cookie holding only the session's random id, and the UI, with its
codec setting "Include cross-origin credentials" on, sends that cookie with each
`/decode`. Each attack on that path is a test here: another site posting with the
person's cookie, a token in a URL, a token that fails verification, a session past
its token's expiry, markup in what the login page is sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from playwright.async_api import Browser, BrowserContext, Page, expect
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from client.credentials import with_credentials
from client.sdk import Baton
from tests.conftest import REQUESTER, REVIEWERS, running_worker
from tests.test_integration import free_port
from tests.test_local_stack import CLEAR as CLEAR_EXAMPLE  # the example `baton run` starts: what completes_a_run runs
from tests.test_local_stack import baton as baton_cli
from tests.test_local_stack import completes_a_run, dev, env_without_temporal, procs  # noqa: F401 (procs: a fixture)
from tests.test_onboarding_routes import CLEAR
from tests.test_web_ui_browser import browser  # noqa: F401 (the fixture: Debian's chromium, as those tests drive it)
from worker.codec import EncryptionCodec, KeyRing
from worker.codec_server import COOKIE, CodecServer, trusted_issuer
from worker.converter import data_converter
from worker.devserver import DevServer
from worker.issuer import LocalIssuer

UI = "http://localhost:8233"
EVIL = "http://evil.example"
KEYS = KeyRing([("ui", secrets.token_bytes(32))])


class Clock:
    """The codec server's clock, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)  # a token's times are whole seconds

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def codec(issuer: LocalIssuer, clock: Clock) -> Iterator[CodecServer]:
    with CodecServer(KEYS, await trusted_issuer(issuer.settings()), origins=[UI], role="compliance",
                     clock=clock) as server:
        yield server


@pytest.fixture
async def sealed() -> dict:
    """A run's input as the Web UI posts it to /decode: CLEAR's personal data, encrypted."""
    payload = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(CLEAR).encode())
    return MessageToDict(Payloads(payloads=await EncryptionCodec(KEYS).encode([payload])))


def own_origin(codec: CodecServer) -> dict[str, str]:
    """The headers a browser sends with the login page's own form post."""
    return {"Origin": codec.url}


async def sign_in(http: httpx.AsyncClient, codec: CodecServer, token: str) -> httpx.Response:
    return await http.post("/login", data={"token": token}, headers=own_origin(codec))


def cookie_of(answer: httpx.Response) -> SimpleCookie:
    jar = SimpleCookie()
    for header in answer.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


def opened(answer: httpx.Response) -> str:
    """The decoded data of a /decode answer, as text."""
    assert answer.status_code == 200, answer.text
    return base64.b64decode(answer.json()["payloads"][0]["data"]).decode()


async def test_a_signed_in_browser_decodes_from_the_ui_origin_until_it_signs_out(codec, issuer, sealed, clock):
    token = issuer.mint(REVIEWERS[0], now=clock.now)
    async with httpx.AsyncClient(base_url=codec.url) as http:
        signed = await sign_in(http, codec, token)
        assert signed.status_code == 303 and signed.headers["location"] == "/login", signed.text
        cookie = cookie_of(signed)[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert int(cookie["max-age"]) == 3600  # the token's own lifetime (the local issuer's: an hour)
        assert token not in signed.headers["set-cookie"]  # the cookie holds a session id, never the token

        preflight = await http.options("/decode", headers={"Origin": UI, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == UI
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "X-Namespace" in preflight.headers["access-control-allow-headers"]

        ui_call = {"Origin": UI, "X-Namespace": "default"}
        decoded = await http.post("/decode?preserveStorageRefs=true", json=sealed, headers=ui_call)  # as the UI posts
        assert CLEAR["name"] in opened(decoded) and decoded.headers["access-control-allow-origin"] == UI
        assert decoded.headers["access-control-allow-credentials"] == "true"

        page = await http.get("/login")
        assert "signed in" in page.text and REVIEWERS[0] in page.text

        out = await http.post("/logout", headers=own_origin(codec))
        assert cookie_of(out)[COOKIE]["max-age"] == "0"
        http.cookies.set(COOKIE, cookie.value)  # the old cookie, kept by a careless browser or a thief
        replayed = await http.post("/decode", json=sealed, headers=ui_call)
        assert replayed.status_code == 401 and CLEAR["name"] not in replayed.text


async def test_another_site_posting_with_the_persons_cookie_gets_nothing(codec, issuer, sealed):
    async with httpx.AsyncClient(base_url=codec.url) as http:
        await sign_in(http, codec, issuer.mint(REVIEWERS[0]))
        assert COOKIE in http.cookies
        for headers in ({"Origin": EVIL}, {"Origin": "null"}, {}):  # another site, a sandboxed frame, no origin
            forged = await http.post("/decode", json=sealed, headers=headers)
            assert forged.status_code in (401, 403), (headers, forged.text)
            assert CLEAR["name"] not in forged.text and "access-control-allow-origin" not in forged.headers
        form = await http.post("/decode", content=json.dumps(sealed), headers={
            "Origin": EVIL, "Content-Type": "text/plain"})  # a form or no-cors post: no preflight
        assert form.status_code == 403 and CLEAR["name"] not in form.text
        preflight = await http.options("/decode", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
        # Nor with a bearer token sent from another site's page.
        bearer = await http.post("/decode", json=sealed, headers={
            "Origin": EVIL, "Authorization": f"Bearer {issuer.mint(REVIEWERS[0])}"})
        assert bearer.status_code == 403 and CLEAR["name"] not in bearer.text


async def test_another_site_cannot_sign_the_browser_in(codec, issuer):
    async with httpx.AsyncClient(base_url=codec.url) as http:
        for headers in ({"Origin": EVIL}, {"Origin": UI}, {}):  # login CSRF: only the login page's own form
            forced = await http.post("/login", data={"token": issuer.mint(REVIEWERS[0])}, headers=headers)
            assert forced.status_code == 403, (headers, forced.text)
            assert "set-cookie" not in forced.headers


async def test_a_token_in_a_url_is_never_taken(codec, issuer, sealed):
    token = issuer.mint(REVIEWERS[0])
    async with httpx.AsyncClient(base_url=codec.url) as http:
        for name in ("token", "access_token"):
            posted = await http.post(f"/login?{name}={token}", headers=own_origin(codec))
            assert posted.status_code == 400 and "URL" in posted.text and "set-cookie" not in posted.headers
            both = await http.post(f"/login?{name}={token}", data={"token": token}, headers=own_origin(codec))
            assert both.status_code == 400 and "set-cookie" not in both.headers
            got = await http.get(f"/login?{name}={token}")
            assert "set-cookie" not in got.headers and token not in got.text
            decode = await http.post(f"/decode?{name}={token}", json=sealed, headers={"Origin": UI})
            assert decode.status_code == 401 and CLEAR["name"] not in decode.text


async def test_a_token_that_fails_verification_gets_no_cookie(codec, issuer, sealed, clock):
    good = issuer.mint(REVIEWERS[0])
    refused = {
        "forged": good[:-4] + "AAAA",
        "without the role": issuer.mint(REQUESTER),
        "expired": issuer.mint(REVIEWERS[0], now=clock.now - timedelta(hours=2)),
        "expired, within the verifier's leeway": issuer.mint(REVIEWERS[0], now=clock.now - timedelta(minutes=60.5)),
        "not a token": "not-a-token",
        "empty": "",
    }
    async with httpx.AsyncClient(base_url=codec.url) as http:
        for why, token in refused.items():
            answer = await sign_in(http, codec, token)
            assert answer.status_code == 401, (why, answer.status_code)
            assert "set-cookie" not in answer.headers, why
        http.cookies.set(COOKIE, good)  # a token where the session id goes: a cookie holds sessions only
        raw = await http.post("/decode", json=sealed, headers={"Origin": UI})
        assert raw.status_code == 401 and CLEAR["name"] not in raw.text


async def test_a_session_ends_when_its_token_expires(codec, issuer, sealed, clock):
    async with httpx.AsyncClient(base_url=codec.url) as http:
        await sign_in(http, codec, issuer.mint(REVIEWERS[0], now=clock.now, ttl=timedelta(minutes=5)))
        assert CLEAR["name"] in opened(await http.post("/decode", json=sealed, headers={"Origin": UI}))
        clock.now += timedelta(minutes=5, seconds=1)
        late = await http.post("/decode", json=sealed, headers={"Origin": UI})
        assert late.status_code == 401 and "expired" in late.json()["message"] and CLEAR["name"] not in late.text


async def test_the_login_page_echoes_no_markup_and_cannot_be_framed(codec, issuer):
    markup = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    async with httpx.AsyncClient(base_url=codec.url) as http:
        for answer in (
            await http.get(f"/login?next={markup}"),
            await sign_in(http, codec, markup),
            await sign_in(http, codec, issuer.mint(REVIEWERS[0])[:-4] + markup),
        ):
            assert "<script>" not in answer.text and "<img" not in answer.text, answer.text
            assert answer.headers["content-type"].startswith("text/html")
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert "script-src" not in answer.headers["content-security-policy"]  # default-src 'none': no script


# ----- the acceptance test: the dev server's Web UI, read in Debian's chromium -----------------


@dataclass
class EncryptedUI:
    """A dev server whose Web UI decodes through a codec server, and a client encrypting as Baton's workers do."""

    client: Client
    codec: CodecServer
    address: str  # the Web UI's


@pytest.fixture(scope="module")
async def encrypted_ui(tmp_path_factory, issuer) -> AsyncIterator[EncryptedUI]:
    """As `baton dev` sets it up: the dev server started with `--ui-codec-endpoint`, payloads under KEYS."""
    ui_port = free_port()
    address = f"http://localhost:{ui_port}"
    with CodecServer(KEYS, await trusted_issuer(issuer.settings()), origins=[address], role="compliance") as codec:
        server = DevServer(tmp_path_factory.mktemp("codec-ui") / "temporal.db", port=free_port(), ui_port=ui_port,
                           codec_endpoint=codec.url)
        async with server:
            client = await Client.connect(server.target, data_converter=data_converter(KEYS))

            async def tokens(by: str | None) -> str:
                return issuer.mint(by or REQUESTER)

            yield EncryptedUI(with_credentials(client, tokens), codec, address)


@dataclass
class Steps:
    """What a person is told to do (`baton dev` prints it): where to sign in, and the codec dialog's choices."""

    login: str
    endpoint: str
    override: str = "Use my browser setting"
    credentials: str = "Include cross-origin credentials"


async def sign_in_browser(context: BrowserContext, login: str, token: str) -> None:
    """What a person does at the codec server: paste the token into its login page."""
    page = await context.new_page()
    await page.goto(login)
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("status")).to_contain_text("signed in as")
    await page.close()


async def include_credentials(page: Page, ui: str, steps: Steps) -> None:
    """What a person does in the Web UI's Codec Server dialog, by the words they were told."""
    await page.goto(f"{ui}/namespaces/default/workflows")
    await page.get_by_test_id("data-encoder-status-configured").click()  # the Codec Server icon, top right
    await page.get_by_label(steps.override).check()
    await page.get_by_label("Codec Server browser endpoint").fill(steps.endpoint)
    await page.get_by_text(steps.credentials).click()  # its label: the switch itself is drawn over
    await expect(page.get_by_role("switch", name=steps.credentials)).to_be_checked()
    await page.get_by_role("button", name="Apply").click()


async def input_shown(browser: Browser, ui: str, run_id: str, shot: Path, steps: Steps, *, token: str | None,
                      credentials: bool = True) -> tuple[str, bool, str]:
    """(the run's Input card, whether the UI says its codec server failed, the page's text) in a fresh browser."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1400})
    context.set_default_timeout(20_000)
    try:
        if token is not None:
            await sign_in_browser(context, steps.login, token)
        page = await context.new_page()
        if credentials:
            await include_credentials(page, ui, steps)
        await page.goto(f"{ui}/namespaces/default/workflows/{quote(run_id, safe='')}")
        card = page.get_by_test_id("input-and-result").get_by_role("heading", name="Input", exact=True).locator("..")
        failed = page.locator("main").get_by_text("Codec Server could not connect")  # the nav says it too
        await expect(card.get_by_text('"applicant_id"').or_(failed)).to_be_visible()  # decoded, or refused
        await page.screenshot(path=shot, full_page=True)
        return await card.inner_text(), await failed.is_visible(), await page.locator("main").inner_text()
    finally:
        await context.close()


@pytest.mark.integration
async def test_the_web_ui_shows_a_runs_decoded_input_to_a_signed_in_browser_only(
        browser, encrypted_ui, config, issuer, tmp_path):
    async with running_worker(encrypted_ui.client, config) as w:
        baton = Baton(encrypted_ui.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        await baton.result(run_id)
    history = await encrypted_ui.client.get_workflow_handle(run_id).fetch_history()  # as the server keeps it
    kept = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert kept.metadata["encoding"] == b"binary/encrypted"
    ciphertext = base64.b64encode(kept.data).decode()

    reviewer, ui = issuer.mint(REVIEWERS[0]), encrypted_ui.address
    steps = Steps(login=f"{encrypted_ui.codec.url}/login", endpoint=encrypted_ui.codec.url)
    signed = await input_shown(browser, ui, run_id, tmp_path / "signed-in.png", steps, token=reviewer)
    anonymous = await input_shown(browser, ui, run_id, tmp_path / "not-signed-in.png", steps, token=None)
    unset = await input_shown(browser, ui, run_id, tmp_path / "credentials-off.png", steps, token=reviewer,
                              credentials=False)

    card, failed, _ = signed
    assert not failed and CLEAR["name"] in card and CLEAR["email"] in card, (card, tmp_path)
    assert json.loads(card[card.index("{"):]) | {"budget": None} == CLEAR | {"budget": None}
    for card, failed, page in (anonymous, unset):  # refused: the UI says so and shows what the server keeps
        assert failed and ciphertext in card, (card, tmp_path)
        assert CLEAR["name"] not in page and CLEAR["email"] not in page, tmp_path


PRINTED = re.compile(
    r"^Codec server: (?P<url>http://\S+)\. To read decoded payloads in the Web UI:\n"
    r"  1\. `baton login NAME`, then sign this browser in at (?P<login>\S+) with the token in \.baton/token\n"
    r'  2\. in the Web UI, Codec Server \(top right\): "(?P<override>[^"]+)", endpoint (?P<endpoint>\S+), '
    r'"(?P<credentials>[^"]+)" on, Apply$', re.MULTILINE)


@pytest.mark.integration
async def test_baton_dev_prints_the_steps_that_let_a_person_read_decoded_payloads(browser, procs, tmp_path):
    """`baton dev` as a person runs it; its printed steps followed word for word, in chromium."""
    env = env_without_temporal(tmp_path)
    stack, _ = await dev(procs, tmp_path, free_port(), None, env)
    printed = stack.stdout()
    told = PRINTED.search(printed)
    assert told, printed
    steps = Steps(**{k: v for k, v in told.groupdict().items() if k != "url"})
    target = re.search(r"started at (127\.0\.0\.1:\d+)", printed)[1]
    ui = re.search(r"^Web UI: (http://[^/\s]+)/", printed, re.MULTILINE)[1]

    login = await baton_cli(procs, tmp_path, "login", "carol", env=env, cwd=tmp_path)
    assert await login.ended(60) == 0, str(login)
    run_id = await completes_a_run(target, tmp_path)  # encrypted with the key `baton dev` made there
    token = (tmp_path / ".baton" / "token").read_text()
    card, failed, _ = await input_shown(browser, ui, run_id, tmp_path / "dev.png", steps, token=token)
    assert not failed and CLEAR_EXAMPLE["name"] in card and CLEAR_EXAMPLE["email"] in card, (card, tmp_path)


async def test_a_body_length_that_is_not_one_is_refused_not_read_to_the_end(codec, issuer):
    """Content-Length: -1 would have the server read until the caller hangs up, holding a thread meanwhile."""
    host, port = codec.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    writer.write((f"POST /decode HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {issuer.mint(REVIEWERS[0])}"
                  "\r\nContent-Length: -1\r\n\r\n").encode())
    await writer.drain()
    try:
        status = await asyncio.wait_for(reader.readline(), timeout=10)  # the connection stays open meanwhile
    finally:
        writer.close()
    assert status.split()[1] == b"413", status
