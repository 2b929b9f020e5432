"""A history's payloads as Temporal stores them, and the same history opened with Baton's keys.

The suite runs encrypted (tests/conftest.py), so a test that greps a history
for something the run must not have written (an API key, a person's e-mail)
greps the decoded history: on the ciphertext the grep could not fail. A test
that checks what a reader without keys sees walks the payloads as stored.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec


def json_objects(node: Any) -> Iterator[dict]:
    """Every JSON object in `node` (as `json.loads` gives it), depth first: a history the CLI printed, walked."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from json_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from json_objects(value)


def payloads(message: Message) -> Iterator[Payload]:
    """Every payload in a proto tree: fields, repeated fields and map values (headers, memos, markers)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = value.values()
        elif isinstance(value, Message):
            items = [value]
        else:  # a repeated field
            items = value
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from payloads(item)


async def decoded(history: WorkflowHistory, codec: PayloadCodec) -> WorkflowHistory:
    """A copy of `history` with every payload opened by `codec` (what a codec server shows its reader)."""
    events = [copy.deepcopy(e) for e in history.events]
    for event in events:
        for payload in payloads(event):
            payload.CopyFrom((await codec.decode([payload]))[0])
    return WorkflowHistory(history.workflow_id, events)


async def stored_payloads(client, workflow_id: str, directory: Path) -> dict[str, bytes]:
    """The files of `directory` that `workflow_id`'s history refers to (External Storage references), by digest.

    Every reference must name a file there: a run whose payloads are not in the shared store fails the test.
    """
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    found: dict[str, bytes] = {}
    for event in history.events:
        for payload in payloads(event):
            if not payload.external_payloads:
                continue
            claim = json.loads(payload.data)["claimData"]
            digest = claim["sha256"]
            found[digest] = (directory / digest[:2] / digest).read_bytes()
    return found


def parsed(raw: bytes) -> Payload:
    payload = Payload()
    payload.ParseFromString(raw)
    return payload
