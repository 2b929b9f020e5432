"""Who someone is, proven: a token from the organisation's OpenID Connect issuer, verified.

Pure and deterministic, so a workflow can run it (imported pass-through): the
keys come with the run's policy (activities/oidc.py fetched them, the policy
local activity recorded them in history) and "now" is the caller's, never the
library's own clock. Replaying a run verifies the same token against the same
keys at the same instant, with the same answer. A caller whose clock replay may
not agree with (a workflow task can run on the previous task's clock) passes no
"now": the token's times are then judged elsewhere (activities/token_times.py).

joserfc does the JOSE work: it takes the time to check claims against as an
argument (JWTClaimsRegistry(now=...)) and needs an explicit algorithm list.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import datetime

from joserfc import jwt
from joserfc.errors import InvalidClaimError, JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field

# Asymmetric signatures only: no `none`, and no HS*, which would take the issuer's public key as a shared secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
STARTER_HEADER = "baton-starter-token"  # the Temporal header a start carries its starter's token in
MAX_TOKEN_CHARS = 8192  # a token is a few hundred bytes to a few KB; anything larger is not one


class IdentityRefused(ValueError):
    """A token that proves nobody: the message says why in one line and never holds the token."""


class TrustedIssuer(BaseModel):
    """What a run trusts to say who decided: the issuer, its audience, and its published keys."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    audience: str
    roles_claim: str = "roles"
    leeway_s: int = Field(default=60, ge=0, le=300)
    jwks: dict = Field(description="the issuer's public keys (a JWK set, each with a kid), as fetched with the run's policy")


class Verified(BaseModel):
    """Who a verified token names: the only identity a run takes."""

    subject: str
    issuer: str
    kid: str
    roles: list[str] = []


def verify(token: object, trusted: TrustedIssuer, now: datetime | None) -> Verified:
    """The identity `token` proves at `now`, or IdentityRefused naming what is wrong with it.

    `now` None: everything but the token's times (exp, nbf, iat are still required to be
    dates), for a caller that judged them, or has them judged, on a clock it trusts.
    """
    if not isinstance(token, str) or not token:
        raise IdentityRefused("no token: a decision needs a signed token from the identity provider")
    if len(token) > MAX_TOKEN_CHARS:
        raise IdentityRefused(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    try:
        decoded = jwt.decode(token, _keys(trusted), algorithms=list(ALGORITHMS))
    except JoseError as err:
        raise IdentityRefused(f"the token's signature does not verify ({_why(err)})") from None
    except (ValueError, TypeError, KeyError) as err:  # not a JWS at all, or a header joserfc cannot read
        raise IdentityRefused(f"the token cannot be read ({type(err).__name__})") from None
    _check_claims(decoded.claims, trusted, now)
    return Verified(
        subject=decoded.claims["sub"], issuer=decoded.claims["iss"], kid=_kid(decoded.header, trusted),
        roles=_roles(decoded.claims, trusted.roles_claim),
    )


def _kid(header: dict, trusted: TrustedIssuer) -> str:
    """The key that signed: the token's kid, or the issuer's only key when it names none (a JWS may omit it)."""
    kid = header.get("kid")
    if isinstance(kid, str):
        return kid
    keys = trusted.jwks["keys"]
    if len(keys) != 1:
        raise IdentityRefused("the token names no signing key (kid) and the issuer publishes several")
    return keys[0]["kid"]


def _keys(trusted: TrustedIssuer) -> KeySet:
    """The issuer's keys; a token must name its key (kid), so the audit can say which one signed."""
    return _imported(json.dumps(trusted.jwks, sort_keys=True))


@functools.lru_cache(maxsize=16)
def _imported(jwks: str) -> KeySet:
    """Importing a key set builds its key objects: once per set of keys a worker sees, not per decision
    (a third of a verification's CPU). Keyed by the set's canonical JSON, so a rotated set is imported anew."""
    return KeySet.import_key_set(json.loads(jwks))


class _Untimed(jwt.JWTClaimsRegistry):
    """The claims registry with no clock: a time claim must be a date, and is not compared with any "now"."""

    def validate_exp(self, value: object) -> None:
        _a_date("exp", value)

    def validate_nbf(self, value: object) -> None:
        _a_date("nbf", value)

    def validate_iat(self, value: object) -> None:
        _a_date("iat", value)


def _a_date(claim: str, value: object) -> None:
    """A NumericDate, as joserfc asks it (NaN would never expire, so no non-finite float is one)."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))):
        raise InvalidClaimError(claim, f"Claim '{claim}' must be a NumericDate value")


def _check_claims(claims: dict, trusted: TrustedIssuer, now: datetime | None) -> None:
    kind, clock = (_Untimed, {}) if now is None else (jwt.JWTClaimsRegistry, {"now": int(now.timestamp())})
    registry = kind(
        **clock, leeway=trusted.leeway_s,
        iss={"essential": True, "value": trusted.issuer},
        aud={"essential": True, "value": trusted.audience},
        sub={"essential": True},
        exp={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as err:
        raise IdentityRefused(f"the token is not valid here: {_why(err)}") from None


def _roles(claims: dict, claim: str) -> list[str]:
    """The roles the issuer says the person holds; anything but a list of names holds none."""
    value = claims.get(claim, [])
    if isinstance(value, str):
        value = value.split()
    return [r for r in value if isinstance(r, str)] if isinstance(value, list) else []


def _why(err: JoseError) -> str:
    """The library's reason, in one bounded line (its messages name claims and keys, never the token)."""
    text = (err.description or err.error or type(err).__name__).splitlines()[0]
    return text[:160]
