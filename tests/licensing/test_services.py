import threading

import pytest
from django.db import connection

from billing_console.models import AuditEvent
from licensing.models import DeviceActivation, License
from licensing.services import (
    LicenseError, TooManyDevices, license_activate_device, license_ensure, license_reissue_key, license_revoke,
    license_suspend, license_unsuspend,
)
from tests.core.factories import SubscribedCustomerFactory
from tests.licensing.factories import LicenseFactory


@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_never_exceed_the_limit():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    lic = LicenseFactory(max_devices=3)
    start, results = threading.Barrier(8), []

    def activate(n):
        try:
            start.wait()
            license_activate_device(license=lic, device_id=f"racer-{n}")
            results.append("ok")
        except TooManyDevices:
            results.append("full")
        finally:
            connection.close()

    threads = [threading.Thread(target=activate, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["full"] * 5 + ["ok"] * 3
    assert DeviceActivation.objects.filter(license=lic, deactivated_at__isnull=True).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_provisioning_makes_one_licence(django_capture_on_commit_callbacks):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    customer = SubscribedCustomerFactory()
    start = threading.Barrier(4)

    def ensure():
        try:
            start.wait()
            license_ensure(customer=customer, actor_type="stripe", actor="evt_race")
        finally:
            connection.close()

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert License.objects.count() == 1
    assert AuditEvent.objects.filter(action="license.issued").count() == 1


@pytest.mark.django_db
def test_status_switches_are_idempotent_and_refuse_impossible_moves():
    lic = LicenseFactory()
    license_suspend(license=lic, actor_type="admin", actor="a")
    license_suspend(license=lic, actor_type="admin", actor="a")
    assert AuditEvent.objects.filter(action="license.suspended").count() == 1
    active = LicenseFactory()
    license_unsuspend(license=active, actor_type="admin", actor="a")  # already active: nothing to do
    assert not AuditEvent.objects.filter(action="license.unsuspended").exists()
    license_revoke(license=lic, actor_type="admin", actor="a")
    with pytest.raises(LicenseError):
        license_unsuspend(license=lic, actor_type="admin", actor="a")
    with pytest.raises(LicenseError):
        license_reissue_key(license=lic, actor_type="admin", actor="a")
    lic.refresh_from_db()
    assert lic.status == License.Status.REVOKED
