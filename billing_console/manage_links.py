"""Signed manage links: `/manage/<token>/` reaches one customer's page without a password.

The token is `<customer pk>:<timestamp>:<signature>` signed with SECRET_KEY and a salt that includes
the customer's `manage_salt`, so rotating that salt (admin "revoke manage links") invalidates every
link already sent. Links expire after MANAGE_LINK_MAX_AGE_DAYS.
"""
from __future__ import annotations

from django.conf import settings
from django.core import signing

from billing_console.models import Customer


class ManageLinkInvalid(Exception):
    """Unknown, tampered, expired or revoked link. Callers answer the same way for all of them."""


def _signer(customer: Customer) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=f"billing_console.manage_link:{customer.manage_salt}")


def manage_link_token(customer: Customer) -> str:
    return _signer(customer).sign(str(customer.pk))


def manage_link_make(customer: Customer) -> str:
    return f"{settings.SITE_URL}/manage/{manage_link_token(customer)}/"


def manage_link_read(token: str) -> Customer:
    pk, _, _ = (token or "").partition(":")
    if not (pk.isascii() and pk.isdigit()) or len(token) > 200:  # isdigit alone accepts "²"
        raise ManageLinkInvalid("Malformed link.")
    customer = Customer.objects.filter(pk=int(pk)).first()
    if customer is None:
        raise ManageLinkInvalid("Unknown link.")
    try:
        value = _signer(customer).unsign(token, max_age=settings.MANAGE_LINK_MAX_AGE_DAYS * 86400)
    except signing.SignatureExpired as exc:
        raise ManageLinkInvalid("This link has expired.") from exc
    except signing.BadSignature as exc:
        raise ManageLinkInvalid("This link is not valid (it may have been revoked).") from exc
    if value != str(customer.pk):
        raise ManageLinkInvalid("Unknown link.")
    return customer
