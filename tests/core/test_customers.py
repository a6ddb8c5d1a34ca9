import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer
from billing_console.services import customer_rotate_manage_salt, customer_set_access_state
from tests.core.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_email_is_unique_whatever_its_case():
    CustomerFactory(email="Jane@Example.com")
    with pytest.raises(IntegrityError):
        Customer.objects.create(email="jane@example.COM")


def test_email_is_stored_lowercase():
    assert CustomerFactory(email="  Mixed@Case.COM ").email == "mixed@case.com"


@pytest.mark.parametrize("phone", ["11999999999", "+0123456789", "+55 11 99999", "abc"])
def test_phone_must_be_e164(phone):
    with pytest.raises(ValidationError):
        CustomerFactory.build(phone=phone).full_clean()


def test_access_state_change_is_audited_once():
    customer = CustomerFactory()
    customer_set_access_state(customer=customer, state="soft_locked", actor_type="cron", actor="enforce", reason="D+4")
    customer_set_access_state(customer=customer, state="soft_locked", actor_type="cron", actor="enforce")
    customer.refresh_from_db()
    assert customer.access_state == "soft_locked" and customer.access_state_changed_at
    events = AuditEvent.objects.filter(action="customer.access_state_changed", customer=customer)
    assert events.count() == 1
    assert events.get().data == {"from": "active", "to": "soft_locked", "reason": "D+4"}


def test_unknown_access_state_is_refused():
    with pytest.raises(ServiceError):
        customer_set_access_state(customer=CustomerFactory(), state="frozen", actor_type="admin")


def test_rotating_the_salt_changes_it_and_audits():
    customer = CustomerFactory()
    old = customer.manage_salt
    customer = customer_rotate_manage_salt(customer=customer, actor_type="admin", actor="support")
    assert customer.manage_salt != old
    assert AuditEvent.objects.filter(action="customer.manage_links_revoked", target_id=str(customer.pk)).exists()


def test_admin_pages_render_for_superuser(admin_client):
    customer = CustomerFactory()
    for url in ("/admin/", "/admin/billing_console/customer/", f"/admin/billing_console/customer/{customer.pk}/change/",
                "/admin/billing_console/auditevent/", "/admin/billing_console/cronrun/"):
        assert admin_client.get(url).status_code == 200, url
