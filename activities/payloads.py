"""`[payloads]`: where large payloads go, and the read side of the store older runs wrote.

Payloads above `inline_max_bytes` (an agent tool's pages of text, the model
inputs that carry them, anything else) are kept out of workflow history by
Temporal's External Storage in the data converter (worker/payload_store.py),
in a store every worker reads: a shared directory, or an S3 bucket. History
holds a reference; the stored bytes are the codec's ciphertext.

Runs started before that kept an agent's large tool outputs in a SQLite file
local to the worker that wrote them, and their histories hold `sha256:` refs
into it. `LegacyPayloads` still reads that file, so such a run can finish on the
worker that has it and its recorded history still replays.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class S3Settings(BaseModel):
    """`[payloads.s3]`: a bucket (it must exist); credentials from AWS's own environment and profiles."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(min_length=3, max_length=63)
    endpoint_url: str | None = Field(default=None, description="an S3-compatible server instead of AWS (MinIO, ...)")
    region: str | None = None


class PayloadSettings(BaseModel):
    """`[payloads]` in baton.toml."""

    model_config = ConfigDict(extra="forbid")

    store: Literal["directory", "s3"] = "directory"
    directory: Path = Field(default=Path(".baton/payloads"), description="store = directory: shared by every worker")
    s3: S3Settings | None = None
    inline_max_bytes: int = Field(
        default=16384, ge=256, le=2 * 1024 * 1024, description="larger payloads are stored outside history"
    )
    db: Path = Field(default=Path(".baton/payloads.db"), description="read only: the store of runs from before")

    @model_validator(mode="after")
    def _s3_named(self) -> PayloadSettings:
        if self.store == "s3" and self.s3 is None:
            raise ValueError("store = \"s3\" needs a [payloads.s3] table with its bucket")
        return self


class LegacyPayloads:
    """Read-only: the worker-local SQLite store older runs' `sha256:` refs point into."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, ref: str) -> str:
        row = None
        if self.path.exists():
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                row = conn.execute("SELECT body FROM payloads WHERE ref = ?", (ref,)).fetchone()
            finally:
                conn.close()
        if row is None:
            raise KeyError(f"payload {ref} is not in {self.path} (it was kept by the worker that wrote it)")
        return row[0]
