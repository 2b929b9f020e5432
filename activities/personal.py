"""The marks a contract puts on fields that hold personal data (workflows/personal.py reads them), and the audit key.

Here, below both workflows and activities, so the systems' contracts (activities/tools/records.py)
and the processes' contracts mark their fields the same way.
"""

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

PERSONAL: dict[str, Any] = {"personal": True}
SUBJECT: dict[str, Any] = {"personal": True, "subject": True}  # personal, and names whom the run is about


AUDIT_KEY_ENV = "BATON_AUDIT_KEY"  # hex, at least 32 bytes; or a file holding it:
AUDIT_KEY_FILE_ENV = "BATON_AUDIT_KEY_FILE"
_MIN_KEY_BYTES = 32
LOCAL_AUDIT_KEY = Path(".baton/audit.key")  # the local stack's, made on first use (`ensure_local_audit_key`)


class NoAuditKey(Exception):
    """No usable audit key: digests would be unkeyed, which a dictionary reverses."""


def audit_key() -> bytes:
    """The audit key: from the environment, the key file it names, or the local stack's (never baton.toml, never a workflow)."""
    text = os.environ.get(AUDIT_KEY_ENV)
    if text is None and os.environ.get(AUDIT_KEY_FILE_ENV):
        path = Path(os.environ[AUDIT_KEY_FILE_ENV])
        try:
            text = path.read_text().strip()
        except OSError as err:
            raise NoAuditKey(f"{AUDIT_KEY_FILE_ENV}: cannot read {path}: {err.strerror}") from None
    if text is None and LOCAL_AUDIT_KEY.is_file():
        text = LOCAL_AUDIT_KEY.read_text().strip()
    if text is None:
        raise NoAuditKey(f"no audit key: set {AUDIT_KEY_ENV} (hex, {_MIN_KEY_BYTES}+ bytes) or {AUDIT_KEY_FILE_ENV}"
                         f" (`baton dev` makes {LOCAL_AUDIT_KEY} for the local stack)")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise NoAuditKey(f"{AUDIT_KEY_ENV}: not hex") from None
    if len(key) < _MIN_KEY_BYTES:
        raise NoAuditKey(f"{AUDIT_KEY_ENV}: {len(key)} bytes, at least {_MIN_KEY_BYTES} needed")
    return key


def ensure_local_audit_key(path: Path = LOCAL_AUDIT_KEY) -> Path:
    """The local stack's audit key, made on first use: 32 random bytes in hex, readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600)) as file:
            file.write(secrets.token_hex(_MIN_KEY_BYTES))
    return path


def keyed_digest(value: object, key: bytes) -> str:
    """HMAC-SHA256 of canonical JSON (sorted keys, no spaces): comparable by who holds the key, reversible by nobody else."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "hmac-sha256:" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
