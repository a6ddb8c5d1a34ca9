import pytest
from django.core import mail
from django.urls import reverse

from billing_console.models import AuditEvent
from licensing.keys import key_hash, key_normalize
from licensing.models import DeviceActivation, License
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:licensing_license_changelist")
DEVICES = reverse("admin:licensing_deviceactivation_changelist")


def act(client, url, action, objs):
    return client.post(url, {"action": action, "_selected_action": [o.pk for o in objs]}, follow=True)


def audits(action):
    return list(AuditEvent.objects.filter(action=action).values_list("actor_type", "actor", "target_id"))


def test_changelist_searches_by_prefix_email_device_and_whole_key(admin_client):
    lic = LicenseFactory(customer__email="ana@example.com")
    DeviceActivationFactory(license=lic, device_id="mac-ana-01")
    other = LicenseFactory()
    for term in (lic.key_prefix, "ana@example.com", "mac-ana-01", lic.key.lower()):
        page = admin_client.get(CHANGELIST, {"q": term}).content.decode()
        assert "ana@example.com" in page and other.customer.email not in page, term


def test_no_key_or_hash_on_any_licence_page(admin_client):
    lic = LicenseFactory()
    DeviceActivationFactory(license=lic)
    pages = [admin_client.get(CHANGELIST), admin_client.get(reverse("admin:licensing_license_change", args=[lic.pk])),
             admin_client.get(DEVICES), admin_client.get(reverse("admin:billing_console_customer_change",
                                                                  args=[lic.customer_id]))]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert lic.key not in html and lic.key_hash not in html and key_normalize(lic.key) not in html
    assert lic.key_prefix in pages[3].content.decode()  # the licence inline on the customer page


def test_suspend_and_unsuspend_are_audited(admin_client, admin_user):
    lic = LicenseFactory()
    act(admin_client, CHANGELIST, "suspend", [lic])
    lic.refresh_from_db()
    assert lic.status == "suspended"
    act(admin_client, CHANGELIST, "unsuspend", [lic])
    lic.refresh_from_db()
    assert lic.status == "active"
    assert audits("license.suspended") == audits("license.unsuspended") == [("admin", admin_user.username, str(lic.pk))]


def test_revoke_is_audited_and_a_revoked_licence_cannot_be_reissued(admin_client):
    lic = LicenseFactory()
    act(admin_client, CHANGELIST, "revoke", [lic])
    page = act(admin_client, CHANGELIST, "reissue_key", [lic]).content.decode()
    lic.refresh_from_db()
    assert lic.status == "revoked" and len(audits("license.revoked")) == 1
    assert "cannot be reissued" in page and not audits("license.key_reissued")


def test_reissue_shows_the_new_key_once_emails_it_and_retires_the_old_one(admin_client, signing_key,
                                                                          django_capture_on_commit_callbacks):
    lic = LicenseFactory(needs_reissue=True)
    with django_capture_on_commit_callbacks(execute=True):
        page = act(admin_client, CHANGELIST, "reissue_key", [lic]).content.decode()
    new_key = mail.outbox[0].body.split("    ")[1].split()[0]
    assert new_key in page and "shown once" in page
    assert new_key not in admin_client.get(CHANGELIST).content.decode()  # not on the next page
    fresh = License.objects.get()
    assert fresh.key_hash == key_hash(key_normalize(new_key)) and not fresh.needs_reissue and fresh.key_generation == 2
    assert len(audits("license.key_reissued")) == 1
    old = admin_client.get("/api/license/status", {"device_id": "d"}, HTTP_X_LICENSE_KEY=lic.key)
    assert old.status_code == 404


def test_reset_activations_frees_every_seat(admin_client):
    lic = LicenseFactory()
    DeviceActivationFactory.create_batch(3, license=lic)
    page = act(admin_client, CHANGELIST, "reset_activations", [lic]).content.decode()
    assert "3 devices deactivated" in page
    assert not DeviceActivation.objects.filter(deactivated_at__isnull=True).exists()
    assert len(audits("license.activations_reset")) == 1


def test_revoke_device_is_audited(admin_client, admin_user):
    keep, revoke = DeviceActivationFactory.create_batch(2, license=LicenseFactory())
    page = act(admin_client, DEVICES, "revoke_device", [revoke]).content.decode()
    assert "1 device revoked" in page
    revoke.refresh_from_db(), keep.refresh_from_db()
    assert revoke.deactivated_at is not None and keep.deactivated_at is None
    assert audits("device_activation.revoked") == [("admin", admin_user.username, str(revoke.pk))]


def test_devices_changelist_searches_by_device_email_and_prefix(admin_client):
    device = DeviceActivationFactory(device_id="pc-zed-9", license=LicenseFactory(customer__email="zed@example.com"))
    DeviceActivationFactory()
    for term in ("pc-zed-9", "zed@example.com", device.license.key_prefix):
        page = admin_client.get(DEVICES, {"q": term}).content.decode()
        assert "pc-zed-9" in page and page.count("device-0") == 0, term


@pytest.mark.parametrize("url", [CHANGELIST, DEVICES])
def test_changelists_use_a_fixed_number_of_queries(admin_client, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    DeviceActivationFactory()
    one = count()
    for _ in range(20):
        DeviceActivationFactory()
    assert count() == one
