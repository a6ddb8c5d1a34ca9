import pytest

from billing_console.admin.search import (Hit, matching_customer_ids, register_search_provider, search,
                                          unregister_search_provider)
from billing_console.models import CheckoutAttempt, Invoice
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory

pytestmark = pytest.mark.django_db


def test_finds_a_customer_by_email_case_insensitively():
    customer = CustomerFactory(email="alice@example.com")
    CustomerFactory(email="bob@example.com")
    assert matching_customer_ids("ALICE@example.com") == [customer.pk]


def test_finds_by_stripe_customer_and_subscription_ids():
    customer = SubscribedCustomerFactory(subscription_id="sub_abc123")
    customer.stripe_customer_id = "cus_xyz789"
    customer.save()
    assert matching_customer_ids("cus_xyz789") == [customer.pk]
    assert matching_customer_ids("sub_abc123") == [customer.pk]


def test_finds_by_invoice_id_and_checkout_session_id():
    customer = CustomerFactory()
    Invoice.objects.create(stripe_id="in_123456", customer=customer, stripe_customer_id="cus_1", currency="usd")
    CheckoutAttempt.objects.create(plan="pro", price_id="price_x", stripe_session_id="cs_test_777", customer=customer)
    assert matching_customer_ids("in_123456") == [customer.pk]
    assert matching_customer_ids("cs_test_777") == [customer.pk]


def test_a_term_too_short_finds_nothing():
    CustomerFactory(email="ab@example.com")
    assert search("ab") == ("ab", [])
    assert search(None) == ("", [])


def test_registered_providers_add_hits_and_a_failing_one_is_skipped():
    customer = CustomerFactory()

    def devices(term):
        return [Hit(customer.pk, "device id", term)] if term == "dev-42x" else []

    def broken(term):
        raise RuntimeError("down")

    register_search_provider(devices)
    register_search_provider(broken)
    try:
        assert matching_customer_ids("dev-42x") == [customer.pk]
    finally:
        unregister_search_provider(devices)
        unregister_search_provider(broken)


def test_search_page_goes_straight_to_a_single_customer(support_client):
    customer = CustomerFactory(email="carol@example.com")
    response = support_client.get("/admin/search/", {"q": "carol@example.com"})
    assert response.status_code == 302
    assert response["Location"] == f"/admin/billing_console/customer/{customer.pk}/change/"


def test_search_page_lists_several_customers(support_client):
    CustomerFactory(email="dave1@example.com")
    CustomerFactory(email="dave2@example.com")
    response = support_client.get("/admin/search/", {"q": "dave"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "dave1@example.com" in body and "dave2@example.com" in body


def test_search_page_says_when_nothing_matches(support_client):
    response = support_client.get("/admin/search/", {"q": "nobody-here"})
    assert response.status_code == 200
    assert "Nothing matches" in response.content.decode()


def test_search_page_needs_a_staff_login(client):
    response = client.get("/admin/search/", {"q": "x@example.com"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_header_has_the_search_box(support_client):
    assert 'action="/admin/search/"' in support_client.get("/admin/").content.decode()


def test_apps_providers_find_devices_keys_scripts_and_dunning_invoices():
    from tests.deployments.factories import DeploymentFactory
    from tests.dunning.factories import DunningCaseFactory
    from tests.licensing.factories import DeviceActivationFactory

    activation = DeviceActivationFactory(device_id="dev-zz-1")
    customer = activation.license.customer
    DeploymentFactory(customer=customer, script_name="zz-worker")
    case = DunningCaseFactory(invoice_id="in_zz_failed")
    assert matching_customer_ids("dev-zz-1") == [customer.pk]
    assert matching_customer_ids(activation.license.key_prefix) == [customer.pk]
    assert matching_customer_ids(activation.license.key) == [customer.pk]  # a whole key, found by its hash
    assert matching_customer_ids("zz-worker") == [customer.pk]
    assert matching_customer_ids("in_zz_failed") == [case.customer_id]
