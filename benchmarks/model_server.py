"""A local OpenAI-compatible server for benchmarks/model_path.py, in a process of its own.

tests/fake_provider.py's server, answering every Chat Completions request at once
with a valid `Note` ({"text": "ok"}): no model time, so what is measured is the path.
Its own process, so its threads take no CPU from the worker being measured.
Prints its base URL on one line, then serves until killed.

    python -m benchmarks.model_server
"""

from __future__ import annotations

import sys
import threading

from tests.fake_provider import FakeProvider, Recorded, Reply, openai_answer

ANSWER = {"text": "ok"}
MODEL = "bench-model"


def answer(_: Recorded) -> Reply:
    return openai_answer(ANSWER, model=MODEL, prompt_tokens=40, completion_tokens=5)


def main() -> None:
    with FakeProvider(answer) as server:
        print(server.url, flush=True)
        server.requests = _Forgetful()  # a benchmark sends many thousands: keep none of them
        threading.Event().wait()


class _Forgetful(list):
    def append(self, _: object) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
