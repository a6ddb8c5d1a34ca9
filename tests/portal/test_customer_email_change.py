"""A customer's email changes only through customer_change_email: audited old and new, every manage link
revoked, the old address told; the admin field is read-only and the admin's "Change email" form calls
the service, with bad input answered on the form."""
import pytest
from django.core import mail
from billing_console.errors import ServiceError

from billing_console.manage_links import ManageLinkInvalid, manage_link_read, manage_link_token
from billing_console.models import AuditEvent, Customer
from billing_console.services import customer_change_email
from tests.core.factories import SubscribedCustomerFactory

pytestmark = pytest.mark.django_db


def url(customer):
    return f"/admin/billing_console/customer/{customer.pk}/change-email/"


def test_the_service_audits_revokes_links_and_tells_the_old_address(django_capture_on_commit_callbacks):
    customer = SubscribedCustomerFactory(email="old@example.com")
    old_link = manage_link_token(customer)
    with django_capture_on_commit_callbacks(execute=True):
        customer = customer_change_email(customer=customer, new_email=" New@Example.com ",
                                         actor_type=AuditEvent.ActorType.ADMIN, actor="sam")
    assert Customer.objects.get(pk=customer.pk).email == "new@example.com"
    with pytest.raises(ManageLinkInvalid):
        manage_link_read(old_link)
    event = AuditEvent.objects.get(action="customer.email_changed")
    assert (event.actor, event.data["from"], event.data["to"]) == ("sam", "old@example.com", "new@example.com")
    assert event.customer_id == customer.pk
    [notice] = mail.outbox
    assert notice.to == ["old@example.com"] and "new@example.com" not in notice.body
    assert "/manage/" not in notice.body and "changed" in notice.subject.lower()


@pytest.mark.parametrize("new_email, message", [("not-an-email", "valid email"), ("", "valid email"),
                                                ("taken@example.com", "already")])
def test_the_service_refuses_bad_input_and_changes_nothing(new_email, message):
    SubscribedCustomerFactory(email="taken@example.com")
    customer = SubscribedCustomerFactory(email="mine@example.com")
    salt = customer.manage_salt
    with pytest.raises(ServiceError, match=message):
        customer_change_email(customer=customer, new_email=new_email.upper() if "@" in new_email else new_email,
                              actor_type=AuditEvent.ActorType.ADMIN, actor="sam")
    customer.refresh_from_db()
    assert (customer.email, customer.manage_salt) == ("mine@example.com", salt)
    assert not AuditEvent.objects.filter(action="customer.email_changed").exists() and not mail.outbox


def test_the_same_email_is_no_change():
    customer = SubscribedCustomerFactory(email="same@example.com")
    salt = customer.manage_salt
    customer_change_email(customer=customer, new_email="SAME@example.com", actor_type="admin", actor="sam")
    customer.refresh_from_db()
    assert customer.manage_salt == salt and not AuditEvent.objects.filter(action="customer.email_changed").exists()


def test_the_admin_field_is_read_only(support_client):
    customer = SubscribedCustomerFactory(email="ro@example.com")
    page = f"/admin/billing_console/customer/{customer.pk}/change/"
    body = support_client.get(page).content.decode()
    assert 'name="email"' not in body and url(customer) in body
    support_client.post(page, {"email": "hijack@example.com", "name": customer.name, "phone": "", "cohort": ""})
    customer.refresh_from_db()
    assert customer.email == "ro@example.com"


def test_support_changes_the_email_through_the_admin_form(support_client, django_capture_on_commit_callbacks):
    customer = SubscribedCustomerFactory(email="before@example.com")
    assert support_client.get(url(customer)).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = support_client.post(url(customer), {"new_email": "after@example.com"})
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.email == "after@example.com"
    assert AuditEvent.objects.get(action="customer.email_changed").actor == "sam"
    assert [m.to for m in mail.outbox] == [["before@example.com"]]


@pytest.mark.parametrize("new_email, message", [("nope", "Enter a valid email address."),
                                                ("taken@example.com", "already")])
def test_the_admin_form_shows_bad_input(support_client, new_email, message):
    SubscribedCustomerFactory(email="taken@example.com")
    customer = SubscribedCustomerFactory(email="keep@example.com")
    response = support_client.post(url(customer), {"new_email": new_email})
    assert response.status_code == 400 and message in response.content.decode()
    customer.refresh_from_db()
    assert customer.email == "keep@example.com" and not mail.outbox


def test_a_viewer_without_change_permission_cannot_change_the_email(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", "v@example.com", "pw-x-0123456789", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_customer", content_type__app_label="billing_console"))
    client.force_login(viewer)
    customer = SubscribedCustomerFactory(email="keep@example.com")
    assert client.get(url(customer)).status_code == 403
    assert client.post(url(customer), {"new_email": "x@example.com"}).status_code == 403
    customer.refresh_from_db()
    assert customer.email == "keep@example.com"


def test_a_new_customer_added_by_a_superuser_still_gets_an_email(admin_client):
    assert 'name="email"' in admin_client.get("/admin/billing_console/customer/add/").content.decode()
