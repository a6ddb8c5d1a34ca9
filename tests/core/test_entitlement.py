from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.models import Customer
from billing_console.selectors import Reason, customer_entitlement
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory

pytestmark = pytest.mark.django_db
A = Customer.AccessState


def test_active_subscription_is_valid_until_period_end_plus_grace(settings):
    customer = SubscribedCustomerFactory()
    ent = customer_entitlement(customer)
    assert ent.entitled and ent.reason == Reason.VALID
    assert ent.grace_ends_at == customer.current_period_end + timedelta(days=settings.PLANS["pro"]["offline_grace_days"])


def test_no_subscription():
    ent = customer_entitlement(CustomerFactory())
    assert not ent.entitled and ent.reason == Reason.NO_SUBSCRIPTION


@pytest.mark.parametrize("state,status,entitled,reason", [
    (A.GRACE, "past_due", True, Reason.PAST_DUE),
    (A.SOFT_LOCKED, "past_due", True, Reason.PAST_DUE_SOFT_LOCK),
    (A.HARD_LOCKED, "past_due", False, Reason.HARD_LOCKED),
    (A.CANCELED, "canceled", False, Reason.CANCELED),
    (A.ACTIVE, "canceled", False, Reason.CANCELED),
    (A.ACTIVE, "incomplete", False, Reason.INCOMPLETE),
])
def test_dunning_locks_and_cancellation(state, status, entitled, reason):
    ent = customer_entitlement(SubscribedCustomerFactory(access_state=state, subscription_status=status))
    assert (ent.entitled, ent.reason) == (entitled, reason)


def test_period_past_end_and_grace_without_renewal_is_expired():
    customer = SubscribedCustomerFactory(current_period_end=timezone.now() - timedelta(days=30))
    ent = customer_entitlement(customer)
    assert not ent.entitled and ent.reason == Reason.EXPIRED


def test_lock_property():
    assert customer_entitlement(SubscribedCustomerFactory(access_state=A.SOFT_LOCKED)).locked == "soft"
    assert customer_entitlement(SubscribedCustomerFactory(access_state=A.HARD_LOCKED)).locked == "hard"
