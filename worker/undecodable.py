"""A payload the worker cannot open is a marker, never a failed workflow task.

Anyone who can reach the namespace can signal any run, with any bytes: a
payload that claims Baton's encryption and opens to nothing, or a reference
into the payload store that names no stored payload. Temporal decodes a
run's whole activation before the run sees it, so one such signal made every
later workflow task of that run fail: a parked run could never be approved
again. The worker's converter therefore opens each payload on its own, and
one it cannot open becomes a `baton/undecodable` payload carrying the reason.
A signal's arguments are never converted (Baton drops every signal), so the
forged one is gone; a payload a run does need (an activity's result, an
update's argument) fails to convert, naming the reason, exactly as before;
and a store that was only unreachable a moment is asked again on the retry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter, EncodingPayloadConverter, ExternalStorage, PayloadCodec

from worker.codec import DecryptionError, EncryptionCodec

ENCODING = b"baton/undecodable"


def marker(reason: str) -> Payload:
    return Payload(metadata={"encoding": ENCODING}, data=reason[:500].encode(errors="replace"))


class UndecodableConverter(EncodingPayloadConverter):
    """Converts nothing to a marker; a marker to an error that names why it could not be opened."""

    @property
    def encoding(self) -> str:
        return ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise ValueError(f"a payload this worker cannot open: {payload.data.decode(errors='replace')}")


class ForgivingCodec(PayloadCodec):
    """Baton's encryption, decoding each payload on its own: one that fails authentication becomes a marker."""

    def __init__(self, codec: EncryptionCodec) -> None:
        self.codec = codec

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self.codec.encode(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(p) for p in payloads]

    def _open(self, payload: Payload) -> Payload:
        try:
            return self.codec.open(payload)
        except (DecryptionError, ValueError) as err:  # ValueError: bytes that parse as no payload at all
            return marker(str(err))


@dataclasses.dataclass(frozen=True)
class ForgivingStorage(ExternalStorage):
    """The payload store, reading each reference on its own when a batch fails: one it cannot read becomes a marker.

    Overrides two of temporalio's private methods (the SDK has no hook for a
    reference that cannot be read); tests/test_flood.py fails if they change.
    """

    async def _retrieve_payload(self, payload: Payload) -> Payload:
        try:
            return await super()._retrieve_payload(payload)
        except Exception as err:  # a forged reference, a missing or altered payload, an unknown driver, a store down
            return marker(f"stored payload not readable: {type(err).__name__}: {err}")

    async def _retrieve_payload_sequence(self, payloads: Sequence[Payload]) -> list[Payload]:
        try:
            return await super()._retrieve_payload_sequence(payloads)
        except Exception:
            return [await self._retrieve_payload(p) for p in payloads]


def forgiving(converter: DataConverter) -> DataConverter:
    """`converter`, as a worker must decode: a payload it cannot open is a marker (module docstring)."""
    codec, storage = converter.payload_codec, converter.external_storage
    return dataclasses.replace(
        converter,
        payload_codec=ForgivingCodec(codec) if isinstance(codec, EncryptionCodec) else codec,
        external_storage=(
            ForgivingStorage(**{f.name: getattr(storage, f.name) for f in dataclasses.fields(storage) if f.init})
            if storage is not None and not isinstance(storage, ForgivingStorage) else storage
        ),
    )


def forgiving_client(client: Client) -> Client:
    """`client` for a worker: its converter decodes as `forgiving` says."""
    config = client.config()
    config["data_converter"] = forgiving(config["data_converter"])
    return Client(**config)
