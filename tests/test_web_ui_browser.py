"""What a person reads in the Web UI: Temporal's dev server with its UI, read in Debian's chromium.

A run's summary and current details are markdown that the UI renders (on the run's "User
Metadata" tab, in sandboxed frames). The text Baton sends says little about what a person
sees: this UI reads `$…$` as math, `_x_` as emphasis, and renders links and HTML. So these
tests open each run's page in a real headless browser, read the rendered text, check which
elements the renderer made of it, and run the commands the page tells a person to run.

Chromium comes from Debian (`make test` installs it); the browser is driven by the
`playwright` package with that binary, never a browser download.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import Browser, async_playwright, expect
from temporalio.client import Client

from client.credentials import with_credentials
from client.sdk import Baton
from tests.conftest import REQUESTER, REVIEWERS, running_worker
from tests.test_integration import BATON, TEMPORAL, cli_env, free_port, run_cli
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from worker.connection import configured_converter, header_behavior
from worker.devserver import DevServer
from workflows.outcome import RunState
from workflows.status import RunStatus

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags the closed network here refuses the browser its connections.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TAGS = "main => [...main.querySelectorAll('*')].map(e => e.tagName.toLowerCase())"
# The UI's typographer curls straight quotes; a person reads the same quote either way.
QUOTES = str.maketrans("‘’“”", "''\"\"")
RENDERED = re.compile(r"\S · \S")  # both the summary and the details' first line read "x · y"
MONEY = re.compile(r"\$(\d+\.\d{6}) of \$(\d+(?:\.\d+)?)")

# A caller controls an applicant's id (the run's business key: its summary and workflow id);
# the register, a system of record, controls the name the approval asks about.
HOSTILE_ID = "A-9 $1 of $2 *b* _i_ `c` <b>x</b> [l](x) ';echo 0wned #"
HOSTILE_NAME = (
    'Eve $x$ **bold** <img src=x onerror=alert(1)> <a href="http://evil.example">click</a> '
    "[link](http://evil.example) https://evil.example/x www.evil.example\n\n# Heading\n- item "
    "1/2 (c) -- ... \u202eevil"
)
HOSTILE = dict(applicant_id=HOSTILE_ID, name=HOSTILE_NAME, email="eve@example.com", document_number="P9999999")


@dataclass
class Seen:
    """What the run's User Metadata tab shows: rendered text and the elements it was rendered into."""

    summary: str
    details: str
    summary_tags: list[str]
    details_tags: list[str]
    codes: list[str]  # the details' code spans: ids and commands, each copied as one piece
    shot: Path


@pytest.fixture(scope="module")
async def ui(tmp_path_factory, issuer) -> AsyncIterator[tuple[Client, str, str]]:
    """Temporal's dev server with its Web UI on free ports: (client, gRPC target, UI address).

    The client starts runs as the tests' requester, with a token from the local issuer.
    """
    server = DevServer(tmp_path_factory.mktemp("webui") / "temporal.db", port=free_port(), ui_port=free_port())

    async def tokens(by: str | None) -> str:
        return issuer.mint(by or REQUESTER)

    async with server:
        converter = configured_converter()  # the session's keys (tests/conftest.py), as the CLIs it runs have
        client = await Client.connect(server.target, data_converter=converter,
                                      header_codec_behavior=header_behavior(converter))
        yield with_credentials(client, tokens), server.target, f"http://localhost:{server.ui_port}"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the Web UI tests read pages in Debian's chromium; "
            "install it with `apt-get update && apt-get install -y chromium` (`make test` does)"
        )
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        await chromium.close()


async def user_metadata(browser: Browser, ui: str, run_id: str, shot: Path) -> Seen:
    """Open the run's page, click its User Metadata tab, and read what is rendered there."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(20_000)
    try:
        await page.goto(f"{ui}/namespaces/default/workflows/{quote(run_id, safe='')}")
        await page.get_by_role("tab", name="User Metadata").click()
        summary = page.frame_locator("#user-metadata-summary").locator("main")
        details = page.frame_locator("#user-metadata-current-details").locator("main")
        for frame in (summary, details):  # each frame renders its markdown after it appears
            await expect(frame).to_contain_text(RENDERED, timeout=20_000)
        seen = Seen(
            summary=await summary.inner_text(), details=await details.inner_text(),
            summary_tags=await summary.evaluate(TAGS), details_tags=await details.evaluate(TAGS),
            codes=await details.locator("code").all_inner_texts(), shot=shot,
        )
        await page.screenshot(path=shot, full_page=True)
        return seen
    finally:
        await page.close()


def read(text: str) -> str:
    """Text as a person reads it: words and quotes, not how lines were wrapped."""
    return " ".join(text.translate(QUOTES).split())


def assert_money(seen: Seen, status: RunStatus) -> None:
    """The details show what the run spent of its cost cap, as dollars, and the numbers are the run's."""
    found = MONEY.search(seen.details)
    assert found, f"no '$spent of $cap' in what a person reads: {seen.details!r} (screenshot {seen.shot})"
    assert (float(found[1]), float(found[2])) == (status.cost_usd, status.budget.max_cost_usd), seen.details


def shown_command(seen: Seen, program: str, run_id: str) -> list[str]:
    """The command the page shows for `program`, split as a shell would split it when pasted."""
    commands = [c for c in seen.codes if c.startswith(f"{program} ")]
    assert len(commands) == 1, f"the page shows {commands!r} for {program!r} (screenshot {seen.shot})"
    argv = shlex.split(commands[0])
    assert run_id in argv, f"{commands[0]!r} does not name the run {run_id!r} (screenshot {seen.shot})"
    return argv


async def test_a_person_reads_the_money_the_summary_and_how_to_answer(browser, ui, config, tmp_path, issuer):
    client, target, address = ui
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        done = await baton.start("onboarding", CLEAR)
        await baton.result(done)
        parked = await baton.start("onboarding", PEP)
        await wait_for_state(baton, parked, RunState.AWAITING_APPROVAL)
        seen_done = await user_metadata(browser, address, done, tmp_path / "completed.png")
        seen_parked = await user_metadata(browser, address, parked, tmp_path / "parked.png")
        status_done, status_parked = await baton.status(done), await baton.status(parked)

        argv = shown_command(seen_parked, "baton approve", parked)
        assert "--by" not in argv  # the command names no one: the token says who decides
        approved = await run_cli(BATON, *argv[1:], env=cli_env(target, w.task_queue, issuer.mint(REVIEWERS[0])))
        outcome = await baton.result(parked)

    assert status_done.cost_usd > 0
    for seen, status, key in ((seen_done, status_done, CLEAR), (seen_parked, status_parked, PEP)):
        assert read(seen.summary) == f"onboarding · {key['applicant_id']}", seen.shot
        assert_money(seen, status)
    assert read(status_done.reason) in read(seen_done.details), seen_done.shot
    assert read(status_parked.open_requests[0].ask) in read(seen_parked.details), seen_parked.shot
    assert f"Waiting for approval {status_parked.open_requests[0].id}" in read(seen_parked.details)
    assert approved.rc == 0, str(approved)
    assert outcome.state is RunState.COMPLETED and outcome.result["reviewed_by"] == REVIEWERS[0]


async def test_what_callers_and_systems_send_is_shown_as_text(browser, ui, config, tmp_path, issuer):
    """Markup in an applicant's id and name stays text: no link, image, emphasis or heading a reader would trust."""
    seed = tmp_path / "register.json"
    seed.write_text(json.dumps({"applicants": [{
        "applicant_id": HOSTILE_ID, "name": HOSTILE_NAME, "document_number": HOSTILE["document_number"],
        "country": "GB", "pep": True, "credit": {"score": 700, "open_defaults": 0},
    }]}))
    config.systems.seed = seed
    client, target, address = ui
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        run_id = await baton.start("onboarding", HOSTILE)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        seen = await user_metadata(browser, address, run_id, tmp_path / "hostile.png")
        status = await baton.status(run_id)

        argv = shown_command(seen, "temporal workflow signal", run_id)
        payload = json.loads(argv[argv.index("--input") + 1])
        assert payload == {"request_id": "compliance_review", "token": "TOKEN"}  # the decider's token goes here
        argv[argv.index("--input") + 1] = json.dumps({**payload, "token": issuer.mint(REVIEWERS[1])})
        signalled = await run_cli(TEMPORAL, *argv[1:], env=cli_env(target, w.task_queue))
        outcome = await baton.result(run_id)

    assert read(seen.summary) == f"onboarding · {read(HOSTILE_ID)}", seen.shot
    assert set(seen.summary_tags) <= {"p"}, (seen.summary_tags, seen.shot)
    assert read(status.open_requests[0].ask.replace("\u202e", "")) in read(seen.details), seen.shot
    assert "\u202e" not in seen.details  # a bidi override would reorder what the reader sees
    assert_money(seen, status)
    assert set(seen.details_tags) <= {"p", "strong", "h3", "code", "br"}, (seen.details_tags, seen.shot)
    assert (seen.details_tags.count("strong"), seen.details_tags.count("h3")) == (1, 1), seen.details_tags
    assert len(seen.codes) == 4, seen.codes  # the request id and the three ways to answer
    assert signalled.rc == 0, str(signalled)
    assert outcome.state is RunState.COMPLETED and outcome.result["reviewed_by"] == REVIEWERS[1]
