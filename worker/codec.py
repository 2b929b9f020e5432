"""Payload encryption: what Temporal stores of a run's data is ciphertext, readable only with Baton's keys.

Anyone who can reach the namespace or its Web UI reads every payload in a
history: an applicant's name, e-mail and document number in the start input,
prompts, model answers. Every client and worker Baton builds therefore encodes
payloads with `EncryptionCodec` (worker/converter.py `data_converter`):
AES-256-GCM from `cryptography`, authenticated, so a payload altered in the
history fails to decode instead of decoding into something else.

Keys rotate: each payload carries the id of the key that sealed it in its
metadata. The first key of the ring seals new payloads; every key of the ring
opens old ones. To rotate, put the new key first and keep the old ones after it
until no run that needs them is kept (`BATON_KEYS=new:...,old:...`).

Keys come from the worker's environment, never from baton.toml:
`BATON_KEYS` (`id:base64-key,...`, newest first), else the file `BATON_KEY_FILE`
names (one `id:base64-key` a line, newest first, owner-only), else the local
stack's key in `.baton/keys` that `baton dev` / `baton demo` create on first use.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"  # the encoding Temporal's samples and codec servers use for encrypted payloads
KEY_ID = "encryption-key-id"
SHOWN = "baton-shown"  # set by Baton's converter on what the Web UI shows everyone; never sealed
NONCE_BYTES = 12
KEY_BYTES = 32  # AES-256
KEY_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LOCAL_KEY_FILE = Path(".baton/keys")


class KeyRingError(ValueError):
    """A key ring that cannot be used: bad syntax, a short key, a file others can read."""


class DecryptionError(ValueError):
    """A payload that cannot be opened: its key is not in the ring, or it was altered."""


class KeyRing:
    """Named AES-256 keys, newest first: the first seals, all open."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyRingError("an encryption key ring needs at least one key")
        for key_id, key in keys:
            if not KEY_NAME.match(key_id):
                raise KeyRingError(f"key id {key_id[:70]!r} is not 1-64 letters, digits, '.', '_' or '-'")
            if len(key) != KEY_BYTES:
                raise KeyRingError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        self.ids = [key_id for key_id, _ in keys]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def newest(self) -> str:
        return self.ids[0]

    def cipher(self, key_id: str) -> AESGCM:
        found = self._ciphers.get(key_id)
        if found is None:
            raise DecryptionError(
                f"payload encrypted under key id {key_id[:70]!r}, which this process does not have "
                f"(it has {', '.join(self.ids)}): add that key to BATON_KEYS or BATON_KEY_FILE")
        return found

    @classmethod
    def parse(cls, text: str, where: str) -> KeyRing:
        """`id:base64-key` entries separated by commas or lines; blank lines and `#` comments skipped."""
        keys = []
        uncommented = ",".join(line.split("#", 1)[0] for line in text.splitlines())
        for entry in uncommented.split(","):
            entry = entry.strip()
            if not entry:
                continue
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                raise KeyRingError(f"{where}: an entry is not `id:base64-key`")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeyRingError(f"{where}: key {key_id.strip()!r} is not base64") from None
            keys.append((key_id.strip(), key))
        if not keys:
            raise KeyRingError(f"{where} holds no key")
        try:
            return cls(keys)
        except KeyRingError as err:
            raise KeyRingError(f"{where}: {err}") from None


def new_key_line(key_id: str) -> str:
    """A fresh random key as one `id:base64-key` line."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def read_key_file(path: Path) -> KeyRing:
    """A key file; refused when group or others may read it (a key readable by anyone protects nothing)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise KeyRingError(f"cannot read key file {path}: {err.strerror}") from None
    if mode & 0o077:
        raise KeyRingError(f"key file {path} is readable by others (mode {mode & 0o777:o}): chmod 600 {path}")
    return KeyRing.parse(text, str(path))


def configured_keys(env: Mapping[str, str] | None = None, local: Path = LOCAL_KEY_FILE) -> KeyRing | None:
    """The key ring the environment names: BATON_KEYS, else BATON_KEY_FILE, else none when
    BATON_ENCRYPTION=off says so, else the local stack's file here, else none."""
    env = os.environ if env is None else env
    if env.get("BATON_KEYS"):
        return KeyRing.parse(env["BATON_KEYS"], "BATON_KEYS")
    if env.get("BATON_KEY_FILE"):
        return read_key_file(Path(env["BATON_KEY_FILE"]))
    if env.get("BATON_ENCRYPTION") == "off":
        return None
    return read_key_file(local) if local.exists() else None


def ensure_local_key(path: Path = LOCAL_KEY_FILE) -> Path:
    """The local stack's key file, made on first use with one random key, owner-only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("# Baton's local stack key (baton dev): newest first, id:base64 AES-256 key\n")
            out.write(new_key_line(f"local-{secrets.token_hex(4)}") + "\n")
    return path


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload: data = nonce + ciphertext of the whole serialized payload; key id in metadata.

    The key id is also the cipher's associated data, so moving ciphertext under
    another key's id fails authentication. Payloads that are not encrypted
    (histories recorded before encryption) decode as they are.
    """

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(p) for p in payloads]

    def seal(self, payload: Payload) -> Payload:
        if payload.metadata.get(SHOWN) == b"1":  # a summary or current details: shown to everyone
            shown = Payload()
            shown.CopyFrom(payload)
            del shown.metadata[SHOWN]  # the mark is for this codec only: a plain json/plain payload reads as text
            return shown
        key_id = self.keys.newest
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self.keys.cipher(key_id).encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        if not key_id:
            raise DecryptionError("encrypted payload without an encryption-key-id: it was not sealed by Baton")
        try:
            plain = self.keys.cipher(key_id).decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:],
                                                     key_id.encode())
        except InvalidTag:
            raise DecryptionError(f"payload under key id {key_id!r} fails authentication: "
                                  "it was altered, or sealed by another key of that name") from None
        return Payload.FromString(plain)
