"""Every changelist of the console and the customer page cost the same number of queries with 1 row
as with 50 (no query per row)."""
from itertools import count

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing_console.models import (Alert, AuditEvent, CheckoutSwitch, Cohort, CohortAccountReview, CronRun, Dispute,
                                    DriftItem, InvoiceEvent, ReconciliationRun, UnlinkedSubscription, UsageReport)
from tests.stripe.factories import CheckoutAttemptFactory, WebhookEventFactory
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory
from tests.deployments.factories import BundleReleaseFactory, DeploymentFactory, PublishVersionFactory
from tests.dunning.factories import DunningCaseFactory, DunningPolicyFactory, DunningStepLogFactory
from tests.invoicing.factories import InvoiceFactory, LedgerEntryFactory
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db
_seq = count()


def _audit():
    customer = CustomerFactory()
    return AuditEvent.objects.create(actor_type="admin", actor="sam", action="customer.touched",
                                     target_type="billing_console.customer", target_id=str(customer.pk), customer=customer)


def _drift():
    run = ReconciliationRun.objects.create(status="drift")
    return DriftItem.objects.create(run=run, kind=DriftItem.Kind.REVENUE_LEAK, customer=CustomerFactory())


MAKERS = {
    "billing_console.customer": SubscribedCustomerFactory,
    "billing_console.auditevent": _audit,
    "billing_console.cronrun": lambda: CronRun.objects.create(name=f"cron{next(_seq)}", status="ok",
                                                              finished_at=timezone.now()),
    "billing_console.checkoutattempt": lambda: CheckoutAttemptFactory(customer=CustomerFactory()),
    "billing_console.webhookevent": WebhookEventFactory,
    "billing_console.invoice": lambda: InvoiceFactory(customer=CustomerFactory()),
    "billing_console.invoiceevent": lambda: InvoiceEvent.objects.create(invoice=InvoiceFactory(customer=CustomerFactory()),
                                                                        kind="pdf_rendered"),
    "billing_console.reconciliationrun": lambda: ReconciliationRun.objects.create(status="clean"),
    "billing_console.driftitem": _drift,
    "billing_console.ledgerentry": lambda: LedgerEntryFactory(account=f"cus_{next(_seq):08d}"),
    "billing_console.unlinkedsubscription": lambda: UnlinkedSubscription.objects.create(
        subscription_id=f"sub_u{next(_seq)}", stripe_customer_id="cus_u", status="active"),
    "billing_console.dispute": lambda: Dispute.objects.create(stripe_id=f"dp_{next(_seq)}", customer=CustomerFactory(),
                                                              amount=900, currency="usd", opened_at=timezone.now()),
    "billing_console.alert": lambda: Alert.objects.create(key=f"cron_late:c{next(_seq)}", title="Cron c is late.",
                                                          last_seen_at=timezone.now(), runbook="Cron late"),
    "billing_console.checkoutswitch": lambda: CheckoutSwitch.objects.get_or_create(pk=CheckoutSwitch.SINGLETON)[0],
    "billing_console.cohort": lambda: Cohort.objects.create(name=f"cohort-{next(_seq)}", started_at=timezone.now()),
    "billing_console.cohortaccountreview": lambda: CohortAccountReview.objects.create(
        customer=CustomerFactory(cohort="c3"), cohort="c3", signed_off_by="sam", signed_off_at=timezone.now()),
    "billing_console.usagereport": lambda: UsageReport.objects.create(
        customer=CustomerFactory(), meter="api_calls", window_start=0, event_timestamp=timezone.now(), quantity=1,
        identifier=f"bcu_{next(_seq)}", claimed_at=timezone.now()),
    "licensing.license": LicenseFactory,
    "licensing.deviceactivation": DeviceActivationFactory,
    "deployments.deployment": DeploymentFactory,
    "deployments.publishversion": PublishVersionFactory,
    "deployments.bundlerelease": BundleReleaseFactory,
    "dunning.dunningpolicy": DunningPolicyFactory,
    "dunning.dunningcase": DunningCaseFactory,
    "dunning.dunningsteplog": DunningStepLogFactory,
}


def _changelist_queries(client, label) -> int:
    app, model = label.split(".")
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/admin/{app}/{model}/")
    assert response.status_code == 200, label
    return len(ctx)


@pytest.mark.parametrize("label", sorted(MAKERS))
def test_changelist_queries_do_not_grow_with_rows(admin_client, label, django_assert_num_queries):
    make = MAKERS[label]
    make()
    _changelist_queries(admin_client, label)  # warm per-process caches (content types)
    one = _changelist_queries(admin_client, label)
    for _ in range(49):
        make()
    app, model = label.split(".")
    with django_assert_num_queries(one):
        assert admin_client.get(f"/admin/{app}/{model}/").status_code == 200


def test_every_console_changelist_is_covered():
    from django.contrib import admin

    registered = {m._meta.label_lower for m in admin.site._registry
                  if m._meta.app_label in ("billing_console", "licensing", "deployments", "dunning")}
    assert registered <= set(MAKERS), registered - set(MAKERS)


def _customer_with(n: int):
    customer = SubscribedCustomerFactory()
    lic = LicenseFactory(customer=customer)
    for i in range(n):
        DeviceActivationFactory(license=lic)
        deployment = DeploymentFactory(customer=customer)
        PublishVersionFactory(deployment=deployment)
        InvoiceFactory(customer=customer)
        CheckoutAttemptFactory(customer=customer)
        AuditEvent.objects.create(actor_type="admin", actor="sam", action=f"thing.{i}", target_type="x",
                                  target_id=str(i), customer=customer)
        DunningStepLogFactory(case=DunningCaseFactory(customer=customer))
        Dispute.objects.create(stripe_id=f"dp_{next(_seq)}", customer=customer, amount=900, currency="usd",
                               opened_at=timezone.now())
    return customer


def test_customer_page_queries_do_not_grow_with_rows(admin_client, django_assert_num_queries):
    small, big = _customer_with(1), _customer_with(50)
    admin_client.get(f"/admin/billing_console/customer/{small.pk}/change/")  # warm per-process caches (content types)
    with CaptureQueriesContext(connection) as ctx:
        assert admin_client.get(f"/admin/billing_console/customer/{small.pk}/change/").status_code == 200
    with django_assert_num_queries(len(ctx)):
        assert admin_client.get(f"/admin/billing_console/customer/{big.pk}/change/").status_code == 200


def test_manage_page_queries_do_not_grow_with_rows(client, manage_url, django_assert_num_queries):
    small, big = _customer_with(1), _customer_with(50)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(manage_url(small)).status_code == 200
    with django_assert_num_queries(len(ctx)):
        assert client.get(manage_url(big)).status_code == 200
