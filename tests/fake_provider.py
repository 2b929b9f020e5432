"""A local model provider over real HTTP, for tests: scripted replies, recorded requests.

It speaks whatever the test scripts: the reply builders below produce the
response shapes OpenAI's Chat Completions and Anthropic's Messages document.
Besides answers it can misbehave on cue: an HTTP error with headers, a reset
connection, a reply slower than the client's timeout, a body that is not JSON.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: dict | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    reset: bool = False  # drop the connection without answering
    gzip: bool = False  # send the body gzip-compressed, as real providers do


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: dict
    at: float = field(default_factory=time.monotonic)  # when it arrived


class FakeProvider:
    """`with FakeProvider() as fake:` serves on 127.0.0.1; `fake.url` is its base URL."""

    def __init__(self, responder: Callable[[Recorded], Reply] | None = None) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._responder = responder
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        """Forget what was recorded and any reply still scripted (between tests sharing a server)."""
        with self._lock:
            self.requests.clear()
            self._script.clear()

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
        if self._responder:
            return self._responder(request)
        return Reply(500, {"error": {"message": "the fake provider has no scripted reply left"}})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waits for the client's
            # delayed ACK (40 ms on Linux) on a kept-alive connection. Real providers send at once.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                split = urlsplit(self.path)
                recorded = Recorded(
                    method="POST",
                    path=split.path,
                    query=dict(parse_qsl(split.query)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw or b"{}"),
                )
                reply = fake._next(recorded)
                time.sleep(reply.delay_s)
                if reply.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                    return
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = gzip.compress(payload.encode()) if reply.gzip else payload.encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                if reply.gzip:
                    self.send_header("content-encoding", "gzip")
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


# ----- documented response shapes --------------------------------------------------


def openai_answer(
    content: dict | str | None = None,
    *,
    model: str = "gpt-test",
    prompt_tokens: int = 120,
    completion_tokens: int = 30,
    cached_tokens: int | None = None,
    tool_calls: list[dict] | None = None,
) -> Reply:
    """A Chat Completions response: https://platform.openai.com/docs/api-reference/chat/object"""
    message: dict = {
        "role": "assistant",
        "content": json.dumps(content) if isinstance(content, dict) else content,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
            for c in tool_calls
        ]
    usage: dict = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    return Reply(200, {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{
            "index": 0, "message": message, "logprobs": None,
            "finish_reason": "tool_calls" if tool_calls else "stop",
        }],
        "usage": usage,
    })


def anthropic_answer(
    tool_name: str,
    tool_input: dict,
    *,
    model: str = "claude-test",
    input_tokens: int = 100,
    output_tokens: int = 40,
    cache_read: int = 0,
    cache_write: int = 0,
    tool_id: str = "toolu_01",
    text: str | None = None,
) -> Reply:
    """A Messages response ending in tool use: https://docs.anthropic.com/en/api/messages"""
    content: list[dict] = [{"type": "text", "text": text}] if text else []
    content.append({"type": "tool_use", "id": tool_id, "name": tool_name, "input": tool_input})
    return Reply(200, {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        },
    })


def error_reply(status: int, message: str, *, headers: dict[str, str] | None = None, kind: str = "error") -> Reply:
    """The error envelope both providers document: {"error": {"message": ..., "type": ...}}."""
    return Reply(status, {"type": "error", "error": {"type": kind, "message": message}}, headers or {})
