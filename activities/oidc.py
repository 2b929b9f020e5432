"""The identity provider's published keys, fetched by the worker for its runs' policies.

OpenID Connect discovery: `{issuer}/.well-known/openid-configuration` names the
issuer and its `jwks_uri`; the JWK set there holds the keys tokens are signed
with. The worker fetches both at start (an issuer it cannot reach, or one whose
document names another issuer, stops it in one line) and again when a run
loads its policy and the keys are older than REFRESH_S, so a rotated key is
picked up; if the issuer is unreachable then, the last keys it published stay.
Only public asymmetric signing keys are kept: a run verifies nothing else. A key
published without a key id gets its RFC 7638 thumbprint as one, so the audit
can always name the key that signed.
"""

from __future__ import annotations

import time

import httpx
from pydantic import BaseModel, ConfigDict, Field

from joserfc.errors import JoseError
from joserfc.jwk import import_key

from activities.identity import TrustedIssuer

REFRESH_S = 300.0
MAX_DOCUMENT_BYTES = 256 * 1024
PUBLIC_MEMBERS = {"RSA": ("kty", "kid", "use", "alg", "n", "e"), "EC": ("kty", "kid", "use", "alg", "crv", "x", "y"),
                  "OKP": ("kty", "kid", "use", "alg", "crv", "x")}


class IdentitySettings(BaseModel):
    """`[identity]` in baton.toml: the organisation's OpenID Connect issuer, trusted for who decides."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(pattern=r"^https?://\S+$", description="the issuer URL, exactly as its tokens' `iss`")
    audience: str = Field(min_length=1, description="the `aud` Baton's tokens carry (the client id Baton is known by)")
    roles_claim: str = Field(default="roles", min_length=1, description="the claim listing the person's roles")
    leeway_s: int = Field(default=60, ge=0, le=300, description="clock skew allowed on exp / nbf / iat")


class IssuerUnreachable(Exception):
    """The issuer's discovery document or keys could not be had, or are not what they must be."""


class IssuerKeys:
    """The issuer's keys as a run's policy carries them; refreshed at most every REFRESH_S."""

    def __init__(self, settings: IdentitySettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self._http = http
        self._trusted: TrustedIssuer | None = None
        self._fetched = 0.0

    async def trusted(self) -> TrustedIssuer:
        """The keys to verify with; fetched on first use, refreshed when stale (the last good ones on failure)."""
        if self._trusted is None or time.monotonic() - self._fetched > REFRESH_S:
            try:
                self._trusted = await self._fetch()
                self._fetched = time.monotonic()
            except IssuerUnreachable:
                if self._trusted is None:
                    raise
        return self._trusted

    async def _fetch(self) -> TrustedIssuer:
        issuer = self.settings.issuer.rstrip("/")
        document = await self._json(f"{issuer}/.well-known/openid-configuration")
        if document.get("issuer", "").rstrip("/") != issuer:
            raise IssuerUnreachable(f"the discovery document of {issuer} names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise IssuerUnreachable(f"the discovery document of {issuer} has no jwks_uri")
        keys = _public_keys(await self._json(jwks_uri))
        if not keys:
            raise IssuerUnreachable(f"{jwks_uri} publishes no public signing key")
        return TrustedIssuer(
            issuer=document["issuer"], audience=self.settings.audience, roles_claim=self.settings.roles_claim,
            leeway_s=self.settings.leeway_s, jwks={"keys": keys},
        )

    async def _json(self, url: str) -> dict:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as err:
            raise IssuerUnreachable(f"cannot reach {url}: {type(err).__name__}") from None
        if response.status_code != 200:
            raise IssuerUnreachable(f"{url} answered HTTP {response.status_code}")
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise IssuerUnreachable(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            data = response.json()
        except ValueError:
            raise IssuerUnreachable(f"{url} did not answer JSON") from None
        if not isinstance(data, dict):
            raise IssuerUnreachable(f"{url} did not answer a JSON object")
        return data


def _public_keys(jwks: dict) -> list[dict]:
    """Signing keys only, public members only: a private member published by mistake never reaches history."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return []
    found = []
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in PUBLIC_MEMBERS or key.get("use", "sig") != "sig":
            continue
        public = {m: key[m] for m in PUBLIC_MEMBERS[key["kty"]] if m in key}
        try:
            public.setdefault("kid", import_key(public).thumbprint())
        except (JoseError, ValueError, TypeError):
            continue  # not a key joserfc can read: it could verify nothing
        if isinstance(public["kid"], str):
            found.append(public)
    return found
