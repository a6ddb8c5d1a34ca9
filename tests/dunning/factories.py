"""Factories for dunning rows, and Stripe events built from Stripe's own example objects."""
import copy
import json
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import factory
from django.conf import settings
from django.utils import timezone

from dunning.services import dunning_policy_ensure_default
from dunning.models import Channel, CustomerDunning, DunningCase, DunningPolicy, DunningStep, DunningStepLog
from tests.core.factories import SubscribedCustomerFactory

# Stripe's own example objects, as the sandbox keeps them.
_FIXTURES = Path(settings.BASE_DIR) / "sandbox" / "stripe" / "fixtures3.json"


@lru_cache(maxsize=1)
def _resources() -> dict:
    return json.loads(_FIXTURES.read_text())["resources"]


def stripe_object(kind: str) -> dict:
    return copy.deepcopy(_resources()[kind])


def ts(at: datetime) -> int:
    return int(at.timestamp())


def invoice_object(*, customer, invoice_id=None, status="open", amount_due=900, currency="usd", attempt_count=1,
                   paid_at: datetime | None = None, hosted_invoice_url="https://invoice.stripe.test/i/abc",
                   billing_reason="subscription_cycle") -> dict:
    """An invoice of the customer's subscription, in the pinned API version's shape."""
    invoice = stripe_object("invoice")
    invoice.update({
        "id": invoice_id or f"in_{secrets.token_hex(8)}",
        "customer": customer.stripe_customer_id or "cus_unknown",
        "subscription": None,
        "status": status,
        "amount_due": amount_due,
        "amount_remaining": 0 if status == "paid" else amount_due,
        "amount_paid": amount_due if status == "paid" else 0,
        "total": amount_due,
        "currency": currency,
        "attempt_count": attempt_count,
        "attempted": True,
        "billing_reason": billing_reason,
        "hosted_invoice_url": hosted_invoice_url,
    })
    invoice["parent"] = {"quote_details": None, "type": "subscription_details",
                         "subscription_details": {"metadata": {}, "subscription": customer.subscription_id}}
    invoice["status_transitions"]["paid_at"] = ts(paid_at) if paid_at else None
    return invoice


def subscription_object(*, customer, status="active") -> dict:
    sub = stripe_object("subscription")
    sub.update({"id": customer.subscription_id, "customer": customer.stripe_customer_id or "cus_unknown",
                "status": status})
    return sub


def event(event_type: str, obj: dict, *, at: datetime | None = None, event_id: str | None = None) -> dict:
    evt = stripe_object("event")
    evt.update({"id": event_id or f"evt_{secrets.token_hex(12)}", "type": event_type,
                "created": ts(at or timezone.now()), "api_version": "2026-05-27.dahlia",
                "data": {"object": obj, "previous_attributes": {}}})
    return evt


class DunningCustomerFactory(SubscribedCustomerFactory):
    phone = "+5511987654321"
    # The Stripe customer id without a dj-stripe row (the link has no DB constraint).
    stripe_customer_id = factory.LazyAttribute(lambda o: f"cus_{o.subscription_id[4:]}")


class DunningPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DunningPolicy

    name = factory.Sequence(lambda n: f"policy {n}")
    grace_days = 3
    hard_lock_days = 14


class DunningStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DunningStep

    policy = factory.SubFactory(DunningPolicyFactory)
    code = factory.Sequence(lambda n: f"STEP_{n}")
    offset_days = 0
    channel = Channel.EMAIL
    template = "reminder"


class CustomerDunningFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerDunning

    customer = factory.SubFactory(DunningCustomerFactory)


class DunningCaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DunningCase

    customer = factory.SubFactory(DunningCustomerFactory)
    policy = factory.LazyFunction(dunning_policy_ensure_default)
    invoice_id = factory.Sequence(lambda n: f"in_case{n:06d}")
    subscription_id = factory.LazyAttribute(lambda o: o.customer.subscription_id)
    stripe_customer_id = factory.LazyAttribute(lambda o: o.customer.stripe_customer_id or "")
    amount_due = 900
    currency = "usd"
    opened_at = factory.LazyFunction(timezone.now)
    last_failure_at = factory.LazyAttribute(lambda o: o.opened_at)
    next_step_at = factory.LazyAttribute(lambda o: o.opened_at + timedelta(days=1))


class DunningStepLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DunningStepLog

    case = factory.SubFactory(DunningCaseFactory)
    step_code = "SOFT_D+1"
    channel = Channel.EMAIL
    template = "reminder"
    due_at = factory.LazyAttribute(lambda o: o.case.opened_at)
