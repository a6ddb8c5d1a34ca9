"""The licence API's status answer carries the manage page's words (one function decides them)."""
import pytest

from billing_console.models import Customer
from billing_console.wording.subscription import day
from tests.core.factories import SubscribedCustomerFactory
from tests.licensing.factories import LicenseFactory

pytestmark = pytest.mark.django_db
A = Customer.AccessState


def test_licence_api_status_carries_the_same_words(api):
    customer = SubscribedCustomerFactory(cancel_at_period_end=True)
    lic = LicenseFactory(customer=customer)
    answer = api.get("/api/license/status", {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=lic.key).json()
    assert answer["subscriptionState"] == "ending" and answer["licenseStatus"] == "Active until the subscription ends"
    assert answer["headline"] == f"Pro ends on {day(customer.current_period_end)}"
    assert "No further payment" in answer["message"]
    customer.subscription_status, customer.access_state = "canceled", A.CANCELED
    customer.save()
    answer = api.get("/api/license/status", {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=lic.key).json()
    assert answer["subscriptionState"] == "ended" and answer["licenseStatus"] == "Ended"
    assert answer["headline"].startswith("Subscription ended")
