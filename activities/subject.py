"""Whom a run is about, as a keyed digest: a search attribute that finds a person's runs and names nobody.

For an access or erasure request, every run about one person must be found.
The identifier (a run input's field marked SUBJECT, e.g. an e-mail) may not be
a search attribute in clear: Temporal never encrypts those. Its HMAC with the
audit key is: whoever holds the key computes it from the identifier and
searches (`baton runs --subject`); nobody else can read or guess it. The key
lives with the worker and the auditors, never in a workflow: this runs as a
local activity.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.personal import NoAuditKey, audit_key, keyed_digest


def subject_key(identifier: str, key: bytes | None = None) -> str:
    """The keyed digest of an identifier, normalised (trimmed, lower-case) so a person is found however typed."""
    return keyed_digest(identifier.strip().lower(), key or audit_key())


def subject_digest_or_refuse(identifier: str) -> str:
    """The digest, or a non-retryable failure naming why not: a worker without the audit key cannot mark runs."""
    try:
        return subject_key(identifier)
    except NoAuditKey as err:
        raise ApplicationError(str(err), type="NoAuditKey", non_retryable=True) from None


@activity.defn(name="subject_digest")
def subject_digest(identifier: str) -> str:
    """Runs started before the baseline (workflows/patches.py SUBJECT_WITH_POLICY) ask for it on its own."""
    return subject_digest_or_refuse(identifier)
