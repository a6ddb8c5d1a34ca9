"""Licence keys: generated with 150 bits of entropy, typed by people, stored only as a hash.

Shape: ``BCL-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`` in an alphabet without 0/O/1/I so it can be read
aloud. A plain SHA-256 is enough for a key this random (no guessing, so no slow hash needed) and,
unlike an HMAC under SECRET_KEY, keeps working when the Django secret is rotated.
"""
from __future__ import annotations

import hashlib
import secrets

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PREFIX = "BCL"
GROUPS = 6
GROUP_LEN = 5
_BODY_LEN = GROUPS * GROUP_LEN
_ALLOWED = frozenset(ALPHABET)


def key_generate() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(_BODY_LEN))
    return "-".join([PREFIX] + [body[i:i + GROUP_LEN] for i in range(0, _BODY_LEN, GROUP_LEN)])


def key_normalize(raw: str) -> str | None:
    """The canonical form (upper case, no dashes or spaces), or None when it is not shaped like a key."""
    if not isinstance(raw, str) or len(raw) > 80:
        return None
    compact = "".join(raw.split()).replace("-", "").upper()
    body = compact[len(PREFIX):]
    if not compact.startswith(PREFIX) or len(body) != _BODY_LEN or not set(body) <= _ALLOWED:
        return None
    return compact


def key_hash(normalized: str) -> str:
    return hashlib.sha256(f"bc-license-key:v1:{normalized}".encode()).hexdigest()


def key_prefix(normalized: str) -> str:
    """What support sees and searches by: the first group (25 of the 150 bits)."""
    return f"{PREFIX}-{normalized[len(PREFIX):len(PREFIX) + GROUP_LEN]}"
