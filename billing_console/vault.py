"""The vault: AES-256-GCM for customers' cloud tokens and recovery emails.

Ciphertext is `v1.<key id>.<base64url(nonce || ciphertext+tag)>`. The key is SHA-256 of the master
key; the key id names which key sealed it so a keyring (current + previous keys) can decrypt while
`rotate_master_key` re-encrypts. The owning row and field are bound in as associated data, so a
ciphertext copied onto another row or field fails to decrypt.

Models use the `Secret` descriptor over a text column; the row's primary key must exist before a
value is set (models with secrets use UUID primary keys, known before the first save).
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

MIN_MASTER_KEY_LENGTH = 16
PREFIX = "v1"


class VaultError(Exception):
    """Raised for a missing/short master key or a value that cannot be decrypted. Never carries plaintext."""


@dataclass(frozen=True)
class VaultKey:
    kid: str
    key: bytes


def derive_key(master: str) -> VaultKey:
    if not master or len(master) < MIN_MASTER_KEY_LENGTH:
        raise VaultError(f"CLOUD_MASTER_KEY must be at least {MIN_MASTER_KEY_LENGTH} characters.")
    key = hashlib.sha256(master.encode()).digest()
    kid = hashlib.sha256(b"billing-console-vault-kid:" + key).hexdigest()[:8]
    return VaultKey(kid=kid, key=key)


class Keyring:
    def __init__(self, current: str, previous: list[str] | tuple[str, ...] = ()):
        self.current = derive_key(current)
        self.keys = {self.current.kid: self.current}
        for master in previous:
            if master:
                k = derive_key(master)
                self.keys.setdefault(k.kid, k)

    @classmethod
    def from_settings(cls) -> "Keyring":
        return cls(settings.CLOUD_MASTER_KEY, settings.CLOUD_MASTER_KEY_PREVIOUS)

    def encrypt(self, plaintext: str, aad: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.current.key).encrypt(nonce, plaintext.encode(), aad.encode())
        return f"{PREFIX}.{self.current.kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, aad: str) -> str:
        try:
            prefix, kid, body = token.split(".", 2)
            raw = base64.urlsafe_b64decode(body.encode())
        except (ValueError, TypeError) as exc:
            raise VaultError("Malformed ciphertext.") from exc
        if prefix != PREFIX:
            raise VaultError(f"Unknown ciphertext version {prefix!r}.")
        key = self.keys.get(kid)
        if key is None:
            raise VaultError(f"No key with id {kid} in the keyring (set CLOUD_MASTER_KEY_PREVIOUS?).")
        try:
            return AESGCM(key.key).decrypt(raw[:12], raw[12:], aad.encode()).decode()
        except InvalidTag as exc:
            raise VaultError("Ciphertext does not decrypt for this row and field (wrong key, row or tampering).") from exc

    def needs_rotation(self, token: str) -> bool:
        return bool(token) and not token.startswith(f"{PREFIX}.{self.current.kid}.")


def key_id_of(token: str) -> str:
    parts = token.split(".", 2)
    return parts[1] if len(parts) == 3 else ""


def aad_for(instance, column: str) -> str:
    return f"{instance._meta.label_lower}:{instance.pk}:{column}"


class Secret:
    """Descriptor: `token = Secret("token_encrypted")` reads and writes plaintext through the vault.

    Reading an empty column gives "". A value that cannot be decrypted raises VaultError.
    """

    registry: list[tuple[type, str]] = []

    def __init__(self, column: str):
        self.column = column

    def __set_name__(self, owner, name):
        self.name = name
        Secret.registry.append((owner, self.column))

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        token = getattr(instance, self.column)
        if not token:
            return ""
        return Keyring.from_settings().decrypt(token, aad_for(instance, self.column))

    def __set__(self, instance, value):
        if not value:
            setattr(instance, self.column, "")
            return
        if instance.pk is None:
            raise VaultError("The row needs a primary key before a secret is set on it.")
        setattr(instance, self.column, Keyring.from_settings().encrypt(value, aad_for(instance, self.column)))


def encrypted_columns() -> list[tuple[type, str]]:
    """Every (model, column) that holds vault ciphertext, for rotation and backups."""
    from django.apps import apps

    concrete = set(apps.get_models())
    return [(model, column) for model, column in Secret.registry if model in concrete]
