"""Baton's data converter: pydantic JSON, and a run's bad input fails the run, not its workflow task.

Anyone who can reach the namespace can start a run, signal or update it with
any payload (`temporal workflow start --input ...`), past `baton run`'s checks.
With temporalio's pydantic converter, a payload that fails its model (a bad
e-mail, JSON nested past pydantic's recursion limit) raises a ValidationError
while the worker decodes it; the SDK wraps that as "Failed decoding arguments"
and fails the workflow *task*, again on every retry: the run never ends and,
having run no code, never gets Baton's search attributes. The SDK fails the
*workflow* instead when decoding raises a `FailureError`
(worker/_workflow_instance.py `_convert_payloads`, `workflow_is_failure_exception`);
an update whose argument raises one is refused to its caller.

So, decoding inside a workflow (temporalio's `WorkflowSerializationContext`:
the run's input, update and query arguments, child results), a payload larger
than MAX_PAYLOAD_BYTES or one that fails its model raises a non-retryable
ApplicationError of type INVALID_INPUT that names each failing field and what
is wrong with it, never the value: a failure message is not encrypted by a
codec and anyone reading the Web UI sees it. Activity payloads keep pydantic's
own errors (the activity code catches them), and so does this converter's
context-free form, which Baton's own tools use to read histories.

temporalio also has `converter.create_payload_validation_error`, but its message
is a fixed "Payload validation failed" (meant for Nexus handlers): a person in
the Web UI would see no field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ValidationError
from pydantic_core import to_json
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    EncodingPayloadConverter,
    ExternalStorage,
    PayloadCodec,
    SerializationContext,
    WorkflowSerializationContext,
)
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.exceptions import ApplicationError

from worker.undecodable import ENCODING as UNDECODABLE
from worker.undecodable import UndecodableConverter
from worker.codec import SHOWN, EncryptionCodec, KeyRing
from workflows.visibility import Shown

MAX_PAYLOAD_BYTES = 512 * 1024  # Temporal warns from 512 KB; Baton's own run payloads are a few KB
INVALID_INPUT = "InvalidInput"  # the failure type of a run (or update) refused for its input
SHOWN_ERRORS = 10


def invalid_input(what: str, problem: str) -> ApplicationError:
    """The failure for a payload a run cannot take: non-retryable, so the run (or update) ends at once."""
    return ApplicationError(f"invalid {what}: {problem}", type=INVALID_INPUT, non_retryable=True)


def problems(err: ValidationError) -> str:
    """`field: what is wrong` for each error, without the input values pydantic keeps beside them."""
    found = [f"{'.'.join(str(p) for p in e['loc']) or '(whole input)'}: {e['msg'][:200]}" for e in err.errors()]
    more = f"; and {len(found) - SHOWN_ERRORS} more" if len(found) > SHOWN_ERRORS else ""
    return "; ".join(found[:SHOWN_ERRORS]) + more


class _RunInputJSON(EncodingPayloadConverter):
    """Pydantic JSON as a run decodes it: what would crash its task fails it instead (see the module)."""

    def __init__(self, inner: PydanticJSONPlainPayloadConverter) -> None:
        self._inner = inner  # shares its cache of type adapters

    @property
    def encoding(self) -> str:
        return self._inner.encoding

    def to_payload(self, value: Any) -> Payload | None:
        return self._inner.to_payload(value)

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        what = getattr(type_hint, "__name__", "input")
        if len(payload.data) > MAX_PAYLOAD_BYTES:
            raise invalid_input(what, f"the payload is {len(payload.data):,} bytes, more than the "
                                      f"{MAX_PAYLOAD_BYTES:,} a run takes")
        try:
            return self._inner.from_payload(payload, type_hint)
        except ValidationError as err:
            raise invalid_input(what, problems(err)) from None  # its cause would carry the values


class _ShownInClear(EncodingPayloadConverter):
    """What the Web UI shows everyone, marked SHOWN so the codec leaves it in clear (workflows/visibility.py).

    Summaries Baton writes are `Shown`; a run's current details travel in the
    answer to Temporal's metadata query, a WorkflowMetadata. Both are encoded by
    the converters after this one, then marked; it decodes nothing itself.
    """

    def __init__(self, converters: dict[bytes, EncodingPayloadConverter]) -> None:
        self._json, self._proto = converters[b"json/plain"], converters[b"json/protobuf"]

    @property
    def encoding(self) -> str:
        return "baton/shown"  # never a payload's encoding: the payloads it makes keep their converter's

    def to_payload(self, value: Any) -> Payload | None:
        if isinstance(value, Shown):
            payload = _json_text(str(value))
        elif isinstance(value, WorkflowMetadata):
            payload = self._proto.to_payload(value)
        else:
            return None
        if payload is not None:
            payload.metadata[SHOWN] = b"1"
        return payload

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise RuntimeError("no payload is encoded baton/shown")


def _json_text(text: str) -> Payload:
    """`text` as the JSON converter writes it, its metadata set key by key.

    A summary is converted inside the workflow sandbox when its step is
    scheduled. `Payload(metadata={...})` fills the map through
    MutableMapping.update, whose isinstance check the sandbox routes through its
    own hook: half the CPU of a model step's workflow task went there.
    """
    payload = Payload(data=to_json(text))
    payload.metadata["encoding"] = b"json/plain"
    return payload


class BatonPayloadConverter(PydanticPayloadConverter):
    """temporalio's pydantic payload converter; inside a workflow, bad input fails the run (see the module).

    The SDK makes a payload converter per run (per data converter it builds for
    one), and temporalio's pydantic converter caches a TypeAdapter per type in
    its instance: each run built its own for every type it decoded, ~8 KB of
    every cached run's memory and the CPU to build them. The converters are
    stateless but for that cache, so they are built once per process and shared.
    """

    _parts: ClassVar[tuple[dict[bytes, EncodingPayloadConverter], CompositePayloadConverter] | None] = None

    def __init__(self) -> None:
        if BatonPayloadConverter._parts is None:
            super().__init__()
            converters = {
                b"baton/shown": _ShownInClear(dict(self.converters)),
                UNDECODABLE: UndecodableConverter(),  # a payload the worker could not open (worker/undecodable.py)
                **self.converters,
            }
            in_run = CompositePayloadConverter(*(
                _RunInputJSON(c) if isinstance(c, PydanticJSONPlainPayloadConverter) else c for c in converters.values()
            ))
            BatonPayloadConverter._parts = (converters, in_run)
        self.converters, self._in_run = BatonPayloadConverter._parts

    def with_context(self, context: SerializationContext) -> CompositePayloadConverter:
        return self._in_run if isinstance(context, WorkflowSerializationContext) else self


def data_converter(keys: KeyRing | None, storage: ExternalStorage | None = None) -> DataConverter:
    """Baton's converter, encrypting every payload with `keys` (worker/codec.py); without keys, in clear.

    With `storage` (worker/payload_store.py), payloads above its threshold are
    stored outside history after they are encrypted: the store holds ciphertext.
    """
    return DataConverter(
        payload_converter_class=BatonPayloadConverter,
        payload_codec=EncryptionCodec(keys) if keys is not None else None,
        external_storage=storage,
    )


class OpenedPayloads(PayloadCodec):
    """`converter`'s inbound path as a codec: a stored payload fetched, then decrypted.

    For tools that read a history outside a worker (`baton audit`): the SDK
    applies this path itself only to what it hands a workflow or an activity.
    """

    def __init__(self, converter: DataConverter) -> None:
        self._converter = converter

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        raise NotImplementedError("OpenedPayloads only reads")

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        wrapped = Payloads(payloads=payloads)
        await self._converter._transform_inbound_payloads(wrapped)  # the SDK's own order: storage, then codec
        return list(wrapped.payloads)


DATA_CONVERTER = data_converter(None)  # in clear: the tests' own servers, and histories already decoded
