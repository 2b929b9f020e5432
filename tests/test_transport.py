"""How `post_json` and the providers classify what comes back over real HTTP.

Proves: 408/409/425/429 and 5xx (including Anthropic's 529) are retryable
`ProviderUnavailable` carrying the status and the server's Retry-After (seconds,
HTTP date or `retry-after-ms`); other 4xx are non-retryable `ProviderRejected`
carrying the provider's own `error.message`; context-length errors are
non-retryable whatever their status; resets, refused connections, timeouts and
malformed 200 bodies are retryable; httpx never retries on its own (one
failure, one request); and a key the server echoes back never reaches an
exception or a log record.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from activities.llm.anthropic_messages import AnthropicMessages
from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from activities.llm.conversation import Conversation, Message
from activities.llm.openai_chat import OpenAIChat
from activities.llm.provider import ProviderRejected, ProviderUnavailable
from activities.llm.transport import MAX_RESPONSE_BYTES, Endpoint, HttpSettings, post_json, retry_after
from tests.fake_provider import FakeProvider, Reply, error_reply, openai_answer

KEY = "sk-live-SECRET-9f8e7d6c5b4a"
MODEL = ModelSpec(provider="p", name="m", price=Price(input=1, output=1))
CONVERSATION = Conversation(
    messages=[Message(role="user", content="hi")],
    output_name="Answer",
    output_schema={"type": "object", "properties": {"x": {"type": "string"}}},
)


async def post(client: httpx.AsyncClient, fake: FakeProvider, secret: str | None = None) -> dict:
    return await post_json(
        client, fake.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret or 'k'}"},
        params={}, body={"model": "m"}, secret=secret,
    )


def openai(fake: FakeProvider, client: httpx.AsyncClient, monkeypatch) -> OpenAIChat:
    monkeypatch.setenv("TEST_TRANSPORT_KEY", KEY)
    return OpenAIChat(
        ProviderSpec(protocol="openai", base_url=fake.url, api_key_env="TEST_TRANSPORT_KEY"), client
    )


# ----- retryable statuses and Retry-After ------------------------------------------


async def test_429_with_retry_after_seconds_is_unavailable_with_the_delay(fake, client) -> None:
    fake.script(error_reply(429, "Rate limit reached for requests", headers={"Retry-After": "7"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await post(client, fake)
    assert caught.value.status == 429
    assert caught.value.retry_after == pytest.approx(7)
    assert "Rate limit reached for requests" in str(caught.value)
    assert len(fake.requests) == 1


async def test_retry_after_as_http_date(fake, client) -> None:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=40)
    fake.script(error_reply(503, "overloaded", headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}))
    with pytest.raises(ProviderUnavailable) as caught:
        await post(client, fake)
    assert caught.value.status == 503
    assert caught.value.retry_after == pytest.approx(when.timestamp() - time.time(), abs=1.5)
    assert 37 < caught.value.retry_after <= 40


async def test_retry_after_ms_wins_over_retry_after(fake, client) -> None:
    fake.script(error_reply(429, "slow down", headers={"retry-after-ms": "1500", "Retry-After": "9"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await post(client, fake)
    assert caught.value.retry_after == pytest.approx(1.5)


def test_retry_after_parses_each_form_against_a_fixed_clock() -> None:
    now = 1_700_000_000.0
    date = email.utils.format_datetime(datetime.fromtimestamp(now + 120, timezone.utc), usegmt=True)
    assert retry_after(httpx.Headers({"Retry-After": date}), now=now) == pytest.approx(120)
    assert retry_after(httpx.Headers({"Retry-After": "3.5"}), now=now) == pytest.approx(3.5)
    assert retry_after(httpx.Headers({"retry-after-ms": "250"}), now=now) == pytest.approx(0.25)
    past = email.utils.format_datetime(datetime.fromtimestamp(now - 60, timezone.utc), usegmt=True)
    assert retry_after(httpx.Headers({"Retry-After": past}), now=now) == 0.0
    assert retry_after(httpx.Headers({"Retry-After": "soon"}), now=now) is None
    assert retry_after(httpx.Headers({}), now=now) is None


@pytest.mark.parametrize("status", [408, 409, 425, 500, 502, 503, 529])
async def test_transient_statuses_are_retryable(fake, client, status) -> None:
    fake.script(error_reply(status, f"transient trouble {status}"))
    with pytest.raises(ProviderUnavailable) as caught:
        await post(client, fake)
    assert caught.value.status == status
    assert caught.value.retry_after is None
    assert f"transient trouble {status}" in str(caught.value)


# ----- non-retryable --------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_rejected_with_the_providers_message(fake, client, status) -> None:
    message = f"The model `gpt-nope` does not exist (case {status})"
    fake.script(error_reply(status, message, kind="invalid_request_error"))
    with pytest.raises(ProviderRejected) as caught:
        await post(client, fake)
    assert caught.value.status == status
    assert message in str(caught.value)
    assert str(status) in str(caught.value)


async def test_a_plain_text_error_body_is_quoted(fake, client) -> None:
    fake.script(Reply(404, "no route for /v1/chat/completions"))
    with pytest.raises(ProviderRejected) as caught:
        await post(client, fake)
    assert "no route for /v1/chat/completions" in str(caught.value)


async def test_context_length_400_is_rejected_and_says_so(fake, client) -> None:
    fake.script(error_reply(
        400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 "
        "tokens.", kind="invalid_request_error",
    ))
    with pytest.raises(ProviderRejected) as caught:
        await post(client, fake)
    assert caught.value.status == 400
    assert "context too long" in str(caught.value)
    assert "130512" in str(caught.value)


async def test_context_length_message_on_a_5xx_is_still_rejected(fake, client) -> None:
    fake.script(error_reply(500, "maximum context length exceeded for this deployment"))
    with pytest.raises(ProviderRejected) as caught:
        await post(client, fake)
    assert caught.value.status == 500
    assert "context too long" in str(caught.value)


# ----- the connection itself ---------------------------------------------------------


async def test_reset_connection_is_retryable_and_sent_only_once(fake, client) -> None:
    fake.script(Reply(reset=True), openai_answer({"x": "never reached"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await post(client, fake)
    assert "connection failed" in str(caught.value)
    assert caught.value.status is None
    assert len(fake.requests) == 1  # httpx did not quietly try again


async def test_reply_slower_than_the_timeout_is_retryable(fake) -> None:
    fake.script(Reply(200, {"choices": []}, delay_s=1.5))
    async with HttpSettings(timeout_s=0.3).client() as quick:
        started = time.perf_counter()
        with pytest.raises(ProviderUnavailable) as caught:
            await post(quick, fake)
        took = time.perf_counter() - started
    assert "timed out" in str(caught.value)
    assert took < 1.2
    assert len(fake.requests) == 1


async def test_refused_connection_is_retryable_and_not_retried(client) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable, match="connection failed"):
        await post_json(client, f"http://127.0.0.1:{port}/v1/messages", headers={}, params={}, body={}, secret=None)
    # a refused local connect fails at once; httpx's connect retries would back off 0.5 s, 1 s, ...
    assert time.perf_counter() - started < 0.4


# ----- malformed 200s --------------------------------------------------------------


async def test_200_that_is_not_json_is_retryable_malformed(fake, client) -> None:
    fake.script(Reply(200, "<html>oops</html>"))
    with pytest.raises(ProviderUnavailable) as caught:
        await post(client, fake)
    assert "malformed" in str(caught.value)
    assert "<html>oops</html>" in str(caught.value)
    assert caught.value.status == 200


async def test_200_json_that_is_not_an_object_is_retryable_malformed(fake, client) -> None:
    fake.script(Reply(200, "[1, 2]"))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await post(client, fake)


async def test_openai_200_without_choices_is_retryable_malformed(fake, client, monkeypatch) -> None:
    fake.script(Reply(200, {"id": "chatcmpl-x", "object": "chat.completion", "usage": {}}))
    with pytest.raises(ProviderUnavailable) as caught:
        await openai(fake, client, monkeypatch).complete(CONVERSATION, MODEL)
    assert "malformed" in str(caught.value)
    assert "choices" in str(caught.value)


async def test_anthropic_200_without_content_is_retryable_malformed(fake, client) -> None:
    fake.script(Reply(200, {"id": "msg_x", "type": "message", "usage": {"input_tokens": 1}}))
    messages = AnthropicMessages(ProviderSpec(protocol="anthropic", base_url=fake.url), client)
    with pytest.raises(ProviderUnavailable, match="malformed"):
        await messages.complete(CONVERSATION, MODEL)


# ----- the key never leaks -----------------------------------------------------------


def assert_no_key(err: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    assert KEY not in str(err)
    assert KEY not in repr(err)
    assert KEY not in repr(err.args)
    assert "[redacted]" in str(err)
    assert caplog.records, "expected httpx to log the request at DEBUG/INFO"
    for record in caplog.records:
        assert KEY not in record.getMessage(), record.name
        assert KEY not in repr(record.args), record.name


@pytest.mark.parametrize(
    ("status", "kind"), [(401, ProviderRejected), (403, ProviderRejected), (500, ProviderUnavailable)]
)
async def test_key_echoed_in_an_error_never_leaks(fake, client, monkeypatch, caplog, status, kind) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    fake.script(error_reply(status, f"Incorrect API key provided: {KEY}. You can find your API key at ..."))
    with pytest.raises(kind) as caught:
        await openai(fake, client, monkeypatch).complete(CONVERSATION, MODEL)
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was really sent
    assert "Incorrect API key provided: [redacted]" in str(caught.value)
    assert_no_key(caught.value, caplog)


async def test_key_echoed_in_a_non_json_body_never_leaks(fake, client, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script(Reply(200, f"<html>bad gateway for key {KEY}</html>"))
    with pytest.raises(ProviderUnavailable) as caught:
        await openai(fake, client, monkeypatch).complete(CONVERSATION, MODEL)
    assert_no_key(caught.value, caplog)


async def test_key_echoed_in_a_200_without_choices_never_leaks(fake, client, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script(Reply(200, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    with pytest.raises(ProviderUnavailable) as caught:
        await openai(fake, client, monkeypatch).complete(CONVERSATION, MODEL)
    assert "malformed" in str(caught.value)
    assert_no_key(caught.value, caplog)


@pytest.mark.parametrize("body", ["json", "text"])
async def test_key_cut_by_truncation_leaks_no_prefix_either(fake, client, monkeypatch, body) -> None:
    """A long message is cut to a few hundred characters; the cut must not fall inside the key."""
    echoed = "x" * 280 + f" {KEY} trailing"  # the 300-character cut falls inside the key
    if body == "json":
        fake.script(error_reply(401, echoed))
    else:
        fake.script(Reply(200, "<html>" + echoed + "</html>"))
    with pytest.raises((ProviderRejected, ProviderUnavailable)) as caught:
        await openai(fake, client, monkeypatch).complete(CONVERSATION, MODEL)
    assert KEY[:12] not in str(caught.value)
    assert KEY[:12] not in repr(caught.value)


async def test_anthropic_key_echoed_in_a_200_without_content_never_leaks(fake, client, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_TRANSPORT_KEY", KEY)
    messages = AnthropicMessages(
        ProviderSpec(protocol="anthropic", base_url=fake.url, api_key_env="TEST_TRANSPORT_KEY"), client
    )
    fake.script(Reply(200, {"type": "error", "error": {"message": f"invalid x-api-key {KEY}"}}))
    with pytest.raises(ProviderUnavailable) as caught:
        await messages.complete(CONVERSATION, MODEL)
    assert fake.requests[0].headers["x-api-key"] == KEY
    assert "malformed" in str(caught.value)
    assert_no_key(caught.value, caplog)


@pytest.mark.parametrize("value", ["nan", "inf", "soon", ""])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(value: str) -> None:
    assert retry_after(httpx.Headers({"retry-after": value})) is None
    assert retry_after(httpx.Headers({"retry-after-ms": value})) is None


def test_a_repair_answers_every_tool_use_of_the_answer() -> None:
    """Anthropic refuses a turn that leaves any tool_use without its tool_result."""
    from activities.llm.conversation import ToolUse

    asked = Conversation(messages=[Message(role="user", content="go")], output_name="A", output_schema={})
    answer = Message(role="assistant", tool_uses=[ToolUse(id="t1", name="A", arguments={}),
                                                  ToolUse(id="t2", name="A", arguments={})])
    replies = asked.answered(answer, "fix it").messages[2:]
    assert [(m.role, m.tool_use_id, m.is_error) for m in replies] == [("tool", "t1", True), ("tool", "t2", True)]


async def test_the_worker_client_logs_no_request_url_nor_header(fake, client, monkeypatch, caplog) -> None:
    """httpx logs every request's URL at INFO: a query string (Azure's api-version, or worse) must not reach a log."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_TRANSPORT_KEY", KEY)
    spec = ProviderSpec(
        protocol="openai", base_url=fake.url + "/v1", api_key_env="TEST_TRANSPORT_KEY", query={"api-version": "q-7f3e"}
    )
    fake.script(Reply(200, {"ok": True}))
    answer = await Endpoint(spec, client, "/chat/completions").post({"authorization": f"Bearer {KEY}"}, {"m": 1})
    assert answer == {"ok": True} and fake.requests[0].query == {"api-version": "q-7f3e"}  # it was really sent
    assert caplog.records, "expected the HTTP stack to log at DEBUG"
    for record in caplog.records:
        message = record.getMessage()
        assert "q-7f3e" not in message and "/chat/completions" not in message and KEY not in message, message


async def test_an_answer_over_a_megabyte_is_not_read_and_is_billable(fake, client) -> None:
    huge = {"choices": [{"message": {"content": "x" * (3 << 20)}}]}  # 3 MB of well-formed JSON
    fake.script(Reply(200, huge))
    with pytest.raises(ProviderUnavailable, match=f"larger than {MAX_RESPONSE_BYTES} bytes") as caught:
        await post(client, fake)
    assert caught.value.billable and caught.value.status == 200


async def test_an_error_body_over_a_megabyte_is_not_read_nor_billed(fake, client) -> None:
    fake.script(Reply(500, "e" * (2 << 20)))
    with pytest.raises(ProviderUnavailable, match="larger than") as caught:
        await post(client, fake)
    assert not caught.value.billable and caught.value.status == 500


async def test_an_answer_just_under_the_limit_is_read(fake, client) -> None:
    body = {"pad": "y" * (MAX_RESPONSE_BYTES - 100)}
    fake.script(Reply(200, body))
    assert (await post(client, fake)) == body


async def test_a_compressed_answer_is_read_decoded(fake, client) -> None:
    fake.script(Reply(200, {"ok": True}, gzip=True))
    assert (await post(client, fake)) == {"ok": True}


async def test_a_compression_bomb_is_stopped_at_the_decoded_limit(fake, client) -> None:
    bomb = '{"pad": "' + "0" * (50 << 20) + '"}'  # 50 MB that gzip sends in about 50 KB
    fake.script(Reply(200, bomb, gzip=True))
    with pytest.raises(ProviderUnavailable, match="larger than"):
        await post(client, fake)
