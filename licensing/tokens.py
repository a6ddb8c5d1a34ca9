"""Signed device tokens and licence blobs: Ed25519 over a compact JWS (``header.payload.signature``).

The header carries ``alg`` (EdDSA), ``kid`` (which public key verifies it) and ``typ`` (device token
or licence blob, so one cannot stand in for the other). The signing key is LICENSE_SIGNING_KEY;
LICENSE_VERIFY_KEYS_PREVIOUS keeps earlier public keys published and accepted while tokens signed
before a rotation are still out there. Every token carries ``exp``: none is permanent.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

log = logging.getLogger("licensing")

DEVICE = "BC-DEVICE"
LICENSE = "BC-LICENSE"
_TYPES = {DEVICE, LICENSE}
MAX_TOKEN_LENGTH = 4096


class SigningUnavailable(Exception):
    """No usable signing key: the API answers 503 with this message (never the value)."""


class TokenInvalid(Exception):
    """Rejected token; `reason` is for tests and logs, callers show one generic message."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifyKey:
    kid: str
    public_key: Ed25519PublicKey
    raw: bytes
    current: bool = False

    def as_jwk(self) -> dict:
        return {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
                "x": b64url(self.raw), "publicKeyBase64": base64.b64encode(self.raw).decode(),
                "current": self.current}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64any(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (operators paste either)."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def kid_for(public_raw: bytes) -> str:
    """A key id derived from the public key, so the same key always has the same id."""
    return "ed25519-" + hashlib.sha256(public_raw).hexdigest()[:16]


def _public_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@lru_cache(maxsize=4)
def _load_signing_key(value: str) -> tuple[Ed25519PrivateKey, VerifyKey]:
    value = value.strip()
    try:
        if value.startswith("-----BEGIN"):
            private = serialization.load_pem_private_key(value.encode(), password=None)
        else:
            raw = _b64any(value)
            if len(raw) != 32:
                raise ValueError("not 32 bytes")
            private = Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SigningUnavailable("LICENSE_SIGNING_KEY is not an Ed25519 private key "
                                 "(PEM, or base64 of the raw 32 bytes).") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningUnavailable("LICENSE_SIGNING_KEY is not an Ed25519 key.")
    raw_public = _public_raw(private.public_key())
    return private, VerifyKey(kid_for(raw_public), private.public_key(), raw_public, current=True)


def signing_key() -> tuple[Ed25519PrivateKey, VerifyKey]:
    if not settings.LICENSE_SIGNING_KEY:
        raise SigningUnavailable("Licence signing is not configured on this server (LICENSE_SIGNING_KEY is not set).")
    return _load_signing_key(settings.LICENSE_SIGNING_KEY)


@lru_cache(maxsize=4)
def previous_keys_load(entries: tuple[str, ...]) -> tuple[VerifyKey, ...]:
    keys = []
    for entry in entries:
        entry = entry.strip()
        kid, _, b64 = entry.rpartition(":")
        try:
            raw = _b64any(b64)
            public = Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, TypeError, binascii.Error):
            log.warning("LICENSE_VERIFY_KEYS_PREVIOUS has an entry that is not an Ed25519 public key; ignored",
                        extra={"event": "license_verify_key_invalid"})
            continue
        keys.append(VerifyKey(kid or kid_for(raw), public, raw))
    return tuple(keys)


def verify_keys() -> dict[str, VerifyKey]:
    """Every key a token may be signed with: the current one first, then the previous ones."""
    keys: dict[str, VerifyKey] = {}
    try:
        current = signing_key()[1]
        keys[current.kid] = current
    except SigningUnavailable:
        pass
    for key in previous_keys_load(tuple(settings.LICENSE_VERIFY_KEYS_PREVIOUS)):
        keys.setdefault(key.kid, key)
    return keys


def _dumps(data: dict) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def token_sign(claims: dict, *, typ: str, expires_at: datetime) -> str:
    """Sign `claims` plus iat/exp/expiresAt; raises SigningUnavailable without a key."""
    private, key = signing_key()
    now = timezone.now()
    payload = {**claims, "iat": int(now.timestamp()), "exp": int(expires_at.timestamp()), "expiresAt": iso(expires_at)}
    signing_input = b64url(_dumps({"alg": "EdDSA", "kid": key.kid, "typ": typ})) + "." + b64url(_dumps(payload))
    return signing_input + "." + b64url(private.sign(signing_input.encode()))


def token_verify(token: str, *, device_id: str | None = None, typ: str = DEVICE, now: datetime | None = None) -> dict:
    """The claims of a valid token; raises TokenInvalid for anything else.

    Checks shape, type, key id (current or previous key), signature, expiry and, when given, that
    the token belongs to `device_id`.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenInvalid("malformed")
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(b64url_decode(header_b64))
        signature = b64url_decode(signature_b64)
    except (ValueError, binascii.Error):
        raise TokenInvalid("malformed") from None
    # Every header field a verifier reads must be a string: a crafted list or dict is malformed, not a 500.
    if not isinstance(header, dict) or not all(isinstance(header.get(f), str) for f in ("alg", "kid", "typ")):
        raise TokenInvalid("malformed")
    if header["alg"] != "EdDSA" or header["typ"] not in _TYPES:
        raise TokenInvalid("malformed")
    if header["typ"] != typ:
        raise TokenInvalid("wrong_type")
    key = verify_keys().get(header.get("kid"))
    if key is None:
        raise TokenInvalid("unknown_key")
    try:
        key.public_key.verify(signature, f"{header_b64}.{payload_b64}".encode())
    except InvalidSignature:
        raise TokenInvalid("bad_signature") from None
    try:
        claims = json.loads(b64url_decode(payload_b64))
    except (ValueError, binascii.Error):
        raise TokenInvalid("malformed") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        raise TokenInvalid("malformed")
    if (now or timezone.now()).timestamp() >= claims["exp"]:
        raise TokenInvalid("expired")
    if device_id is not None and claims.get("device") != device_id:
        raise TokenInvalid("wrong_device")
    return claims


# Device tokens already verified by this process: a signature over the same bytes with the same public
# key verifies the same way every time, so only expiry, the device and the key still being accepted are
# checked again. Bounded; the oldest entry goes first.
_VERIFIED: dict[str, tuple[dict, str, bytes]] = {}
VERIFIED_MAX = 10_000


def token_verify_device(token: str, *, device_id: str | None = None, now: datetime | None = None) -> dict:
    """token_verify for device tokens, remembering each valid signature (the status call's hot path)."""
    hit = _VERIFIED.get(token) if isinstance(token, str) else None
    if hit is None:
        claims = token_verify(token, device_id=device_id, now=now)
        kid = json.loads(b64url_decode(token.partition(".")[0]))["kid"]
        remember(_VERIFIED, token, (claims, kid, verify_keys()[kid].raw), maximum=VERIFIED_MAX)
        return claims
    claims, kid, raw = hit
    key = verify_keys().get(kid)
    if key is None or key.raw != raw:
        raise TokenInvalid("unknown_key")
    if (now or timezone.now()).timestamp() >= claims["exp"]:
        raise TokenInvalid("expired")
    if device_id is not None and claims.get("device") != device_id:
        raise TokenInvalid("wrong_device")
    return claims


def remember(memo: dict, key, value, *, maximum: int) -> None:
    """Store in a bounded per-process memo, dropping the oldest entry when full (thread-safe enough:
    another thread's insert between the two steps only makes the drop miss once)."""
    if len(memo) >= maximum:
        try:
            memo.pop(next(iter(memo)), None)
        except (StopIteration, RuntimeError):
            pass
    memo[key] = value
