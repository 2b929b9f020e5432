"""Where payloads above `[payloads] inline_max_bytes` go: Temporal's External Storage, shared by every worker.

The data converter (worker/converter.py) hands a payload larger than the
threshold to a storage driver and writes only the driver's claim into history;
any worker, client or `baton audit` with the same driver reads it back. The SDK
encodes first and stores after (temporalio.converter.DataConverter.encode:
codec, then external storage), so what a driver writes is the codec's
ciphertext: the store holds nothing a reader of it can use without the keys.

Two drivers:
- `DirectoryDriver` (store = "directory", the local stack's default,
  `.baton/payloads/`): one file per payload, named by the SHA-256 of its bytes,
  written to a temporary name and renamed, so a reader never sees half a file
  and a retried write is harmless. Any directory every worker mounts will do.
- the SDK's `S3StorageDriver` (store = "s3") with its aioboto3 client, for AWS
  or any S3-compatible server (`endpoint_url`).

A claim comes from history, which anyone who can reach the namespace can write
into (a start's input can be a reference): the directory driver takes only a
64-hex digest as a claim, so no claim names a path of its choosing, and checks
the bytes it reads against it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from activities.payloads import PayloadSettings, S3Settings

DIGEST = re.compile(r"^[0-9a-f]{64}$")


class StoredPayloadMissing(RuntimeError):
    """A reference in history whose payload this process cannot find: not the store the run wrote to."""


class DirectoryDriver(StorageDriver):
    """Payloads as files under `root`, content addressed: `root/ab/abcd...` holds the payload whose SHA-256 is abcd..."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def name(self) -> str:
        return "baton.directory"

    def type(self) -> str:
        return "baton.directory"

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        return await asyncio.to_thread(lambda: [self._put(p.SerializeToString()) for p in payloads])

    async def retrieve(self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        return await asyncio.to_thread(lambda: [self._get(c) for c in claims])

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def _put(self, data: bytes) -> StorageDriverClaim:
        """Write once, atomically: a temporary file of our own, flushed, then renamed over the final name."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{digest}.{uuid.uuid4().hex}.tmp")
            try:
                with open(tmp, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return StorageDriverClaim(claim_data={"sha256": digest})

    def _get(self, claim: StorageDriverClaim) -> Payload:
        digest = claim.claim_data.get("sha256", "")
        if not DIGEST.match(digest):
            raise ValueError(f"a stored-payload reference with no valid sha256 digest: {digest[:80]!r}")
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise StoredPayloadMissing(
                f"payload sha256:{digest} is not in {self.root}: [payloads] directory must be one store "
                "every worker and client shares") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"payload sha256:{digest} in {self.root} was altered: its bytes do not match its name")
        payload = Payload()
        payload.ParseFromString(data)
        return payload


class _S3Client(S3StorageDriverClient):
    """The SDK's aioboto3 adapter on a client opened on first use, one per event loop, for the process's life.

    The converter is built before any loop runs (a client, a worker, the CLI),
    and an aiobotocore client belongs to the loop it was opened in.
    """

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._open: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, S3StorageDriverClient] = weakref.WeakKeyDictionary()

    async def _client(self) -> S3StorageDriverClient:
        loop = asyncio.get_running_loop()
        if loop not in self._open:
            import aioboto3  # only a worker that stores in S3 needs it (pip install 'baton[s3]')
            from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

            opening = aioboto3.Session().client(
                "s3", endpoint_url=self.settings.endpoint_url, region_name=self.settings.region)
            self._open[loop] = new_aioboto3_client(await opening.__aenter__())
        return self._open[loop]

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await (await self._client()).put_object(bucket=bucket, key=key, data=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        return await (await self._client()).object_exists(bucket=bucket, key=key)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        return await (await self._client()).get_object(bucket=bucket, key=key)


def payload_storage(settings: PayloadSettings) -> ExternalStorage:
    """The External Storage `settings` describe: its one driver, and the size above which a payload goes there."""
    if settings.store == "s3":
        assert settings.s3 is not None  # PayloadSettings refuses store = "s3" without it
        driver: StorageDriver = S3StorageDriver(client=_S3Client(settings.s3), bucket=settings.s3.bucket)
    else:
        driver = DirectoryDriver(settings.directory)
    return ExternalStorage(drivers=[driver], payload_size_threshold=settings.inline_max_bytes + 1)
