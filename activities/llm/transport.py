"""HTTP for every provider: one pooled `httpx.AsyncClient` per worker, errors classified.

The classification is what Temporal's retry policy acts on: 408/409/429, 5xx,
connection errors, timeouts and garbled bodies are worth another try (with the
server's `Retry-After` as the next delay); other 4xx and context-length errors
are not. httpx never retries on its own here, so every attempt is one request
that Temporal counted. Keys are scrubbed from every message this module raises.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from datetime import timezone

import httpx
from pydantic import BaseModel, ConfigDict, Field

from activities.llm.catalog import ProviderSpec
from activities.llm.provider import ProviderRejected, ProviderUnavailable

RETRYABLE_STATUS = {408, 409, 425, 429}
MALFORMED_STATUS = {400, 422}  # the request's shape refused (FastAPI-style servers answer 422)
CONTEXT_TOO_LONG = ("context length", "context_length", "maximum context", "prompt is too long", "too many tokens")
MAX_ERROR_CHARS = 300
MAX_RESPONSE_BYTES = 1 << 20  # no model answer Baton asks for comes near a megabyte


class HttpSettings(BaseModel):
    """`[http]` in baton.toml: timeouts and pool limits shared by every provider."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0, description="read/write/pool timeout of one request")
    max_connections: int = Field(default=20, gt=0)
    max_keepalive: int = Field(default=10, ge=0)

    def client(self) -> httpx.AsyncClient:
        """The worker's pooled client; httpx's own request log is silenced below WARNING.

        httpx logs each request's full URL at INFO, query string included, and
        the worker logs at INFO: a URL must not carry a provider's parameters
        into a log. Errors are worded by this module, keys scrubbed.
        """
        logging.getLogger("httpx").setLevel(logging.WARNING)
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=self.max_connections, max_keepalive_connections=self.max_keepalive
            ),
            follow_redirects=False,
        )


class Endpoint:
    """One provider URL and its key: posts JSON, and words every error without the key."""

    def __init__(self, spec: ProviderSpec, client: httpx.AsyncClient, path: str) -> None:
        self.spec = spec
        self.key = spec.api_key()
        self.url = spec.base_url.rstrip("/") + path
        self._client = client

    async def post(self, headers: dict[str, str], body: dict) -> dict:
        return await post_json(
            self._client, self.url, headers=headers, params=self.spec.query, body=body, secret=self.key
        )

    def malformed(self, err: Exception, data: dict) -> ProviderUnavailable:
        """A 200 whose body lacks what the protocol promises."""
        body = redact(json.dumps(data), self.key)[:MAX_ERROR_CHARS]
        return ProviderUnavailable(f"malformed response body: missing {err}: {body}", billable=True)


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text


async def post_json(
    client: httpx.AsyncClient, url: str, *, headers: dict, params: dict, body: dict, secret: str | None
) -> dict:
    """One POST; returns the JSON body or raises ProviderUnavailable / ProviderRejected."""
    try:
        response, too_big = await _bounded_post(client, url, headers, params, body)
    except httpx.TimeoutException as err:  # a read timeout comes after the request went out: maybe billed
        raise ProviderUnavailable(redact(f"timed out ({type(err).__name__}) calling {url}", secret),
                                  billable=isinstance(err, httpx.ReadTimeout))
    except httpx.TransportError as err:
        raise ProviderUnavailable(redact(f"connection failed calling {url}: {type(err).__name__}: {err}", secret))
    if too_big:
        raise ProviderUnavailable(
            f"response body larger than {MAX_RESPONSE_BYTES} bytes (HTTP {response.status_code}); not read further",
            status=response.status_code, billable=response.status_code < 300,
        )
    if response.status_code >= 300:
        raise _http_error(response, secret)
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderUnavailable(
            f"malformed response body (not JSON): {redact(response.text, secret)[:MAX_ERROR_CHARS]!r}",
            status=response.status_code, billable=True,
        )
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"malformed response body: expected an object, got {type(data).__name__}",
                                  billable=True)
    return data


async def _bounded_post(
    client: httpx.AsyncClient, url: str, headers: dict, params: dict, body: dict
) -> tuple[httpx.Response, bool]:
    """POST and read at most MAX_RESPONSE_BYTES of the answer; says whether there was more.

    A provider's answer is untrusted: one of gigabytes must not fill the
    worker's memory, nor one of megabytes reach the step's result in history.
    """
    async with client.stream("POST", url, headers=headers, params=params, json=body) as response:
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                return response, True
            chunks.append(chunk)
    headers = response.headers.copy()
    headers.pop("content-encoding", None)  # the chunks were decoded already
    read = httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=response.request)
    return read, False


def _http_error(response: httpx.Response, secret: str | None) -> Exception:
    status = response.status_code
    message = f"HTTP {status}: {_provider_message(response, secret)}"
    if any(marker in message.lower() for marker in CONTEXT_TOO_LONG):
        return ProviderRejected(f"context too long: {message}", status=status)
    if status in RETRYABLE_STATUS or status >= 500:
        return ProviderUnavailable(message, status=status, retry_after=retry_after(response.headers))
    return ProviderRejected(message, status=status, malformed=status in MALFORMED_STATUS)


def _provider_message(response: httpx.Response, secret: str | None) -> str:
    """The provider's own words: `error.message` in both OpenAI's and Anthropic's shapes."""
    try:
        error = response.json().get("error")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("message"):
        return redact(str(error["message"]), secret)[:MAX_ERROR_CHARS]
    if isinstance(error, str):
        return redact(error, secret)[:MAX_ERROR_CHARS]
    return redact(response.text, secret)[:MAX_ERROR_CHARS] or response.reason_phrase


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms`, `Retry-After: <seconds>` or `Retry-After: <HTTP date>`."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            seconds = float(ms) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = time.time() if now is None else now
    return max(when.timestamp() - now, 0.0)
