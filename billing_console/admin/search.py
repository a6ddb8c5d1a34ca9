"""Support's one search box: a customer by email, Stripe id (cus_, sub_, in_, cs_), device id, licence
key prefix or deployment script name.

The core answers for its own tables; apps add theirs without the core importing them:
`register_search_provider(fn)` from their AppConfig.ready(), where fn(term) returns `Hit`s. Each
provider runs a bounded number of queries (indexed lookups, LIMIT), so a search stays fast at any size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from django.db.models import Q

from billing_console.models import CheckoutAttempt, Customer, Invoice

log = logging.getLogger("billing_console")

MAX_HITS = 50
MIN_TERM = 3


@dataclass(frozen=True)
class Hit:
    customer_id: int | None
    matched: str  # what matched, in support's words: "email", "device id", "licence BCL-ABCDE"
    detail: str = ""
    url: str = ""  # the matched object's own admin page, when it has one


SearchProvider = Callable[[str], list[Hit]]
_providers: list[SearchProvider] = []


def register_search_provider(fn: SearchProvider) -> SearchProvider:
    if fn not in _providers:
        _providers.append(fn)
    return fn


def unregister_search_provider(fn: SearchProvider) -> None:
    if fn in _providers:
        _providers.remove(fn)


def normalize_term(raw) -> str:
    return " ".join(str(raw or "").split())[:200]


def core_hits(term: str) -> list[Hit]:
    hits: list[Hit] = []
    lowered = term.lower()
    if lowered.startswith(("cus_", "sub_")):
        field, label = (("stripe_customer_id", "Stripe customer id") if lowered.startswith("cus_")
                        else ("subscription_id", "Stripe subscription id"))
        for pk in Customer.objects.filter(**{field: term}).values_list("pk", flat=True)[:MAX_HITS]:
            hits.append(Hit(pk, label, term))
    elif lowered.startswith("in_"):
        for pk, cid in Invoice.objects.filter(stripe_id=term).values_list("pk", "customer_id")[:MAX_HITS]:
            hits.append(Hit(cid, "Stripe invoice id", term))
    elif lowered.startswith("cs_"):
        for cid, status in CheckoutAttempt.objects.filter(stripe_session_id=term).values_list("customer_id", "status")[:MAX_HITS]:
            hits.append(Hit(cid, "Checkout session", f"{term} ({status})"))
    else:
        if "@" in term:
            exact = Q(email__iexact=term)
            match = Customer.objects.filter(exact)
            if not match.exists():
                match = Customer.objects.filter(email__icontains=term)
        else:
            match = Customer.objects.filter(Q(email__icontains=term) | Q(name__icontains=term) | Q(phone=term))
        for pk, email in match.values_list("pk", "email")[:MAX_HITS]:
            hits.append(Hit(pk, "email or name", email))
    return hits


def search(raw_term) -> tuple[str, list[Hit]]:
    """(normalized term, hits). A term shorter than MIN_TERM finds nothing (it would match everyone)."""
    term = normalize_term(raw_term)
    if len(term) < MIN_TERM:
        return term, []
    hits = core_hits(term)
    for provider in _providers:
        try:
            hits.extend(provider(term))
        except Exception:  # a broken provider must not hide what the others found
            log.exception("search provider %s failed", getattr(provider, "__name__", provider))
    return term, hits[: MAX_HITS * 2]


def matching_customer_ids(raw_term) -> list[int]:
    """Customer ids any provider found, for the customer list's own search box."""
    _, hits = search(raw_term)
    seen: dict[int, None] = {}
    for hit in hits:
        if hit.customer_id is not None:
            seen.setdefault(hit.customer_id, None)
    return list(seen)
