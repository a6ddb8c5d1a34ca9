import pytest
from django.core import mail

from billing_console.models import AuditEvent
from billing_console.stripe.dispatch import dispatch
from licensing.keys import key_hash, key_normalize
from licensing.models import License
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory
from tests.licensing import stripe_events

pytestmark = pytest.mark.django_db


def customer(**kwargs):
    """A customer as the core receiver leaves it after the event (subscription fields current)."""
    kwargs.setdefault("stripe_customer_id", "cus_QXg1o8vcGmoR32")
    return SubscribedCustomerFactory(**kwargs)


def completed(sub_id, **kwargs):
    return stripe_events.event("checkout.session.completed", stripe_events.checkout_session(sub_id=sub_id, **kwargs))


def emailed_key(message) -> str:
    return next(line.strip() for line in message.body.splitlines() if line.strip().startswith("BCL-"))


def test_checkout_completed_issues_one_licence_and_emails_the_key_once(django_capture_on_commit_callbacks):
    buyer = customer()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(completed(buyer.subscription_id))
    lic = License.objects.get()
    assert (lic.customer, lic.subscription_id, lic.plan, lic.max_devices, lic.offline_grace_days) == (
        buyer, buyer.subscription_id, "pro", 3, 7)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [buyer.email]
    key = emailed_key(mail.outbox[0])
    assert lic.key_hash == key_hash(key_normalize(key)) and key.startswith(lic.key_prefix)
    assert lic.key_delivery == "sent"
    assert AuditEvent.objects.filter(action="license.issued", actor_type="stripe", customer=buyer).count() == 1


def test_duplicate_and_related_events_do_not_issue_a_second_licence(django_capture_on_commit_callbacks):
    buyer = customer()
    event = completed(buyer.subscription_id)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(event)
        dispatch(event)
        dispatch(stripe_events.event("customer.subscription.created",
                                     stripe_events.subscription(sub_id=buyer.subscription_id)))
        dispatch(stripe_events.event("customer.subscription.updated",
                                     stripe_events.subscription(sub_id=buyer.subscription_id)))
    assert License.objects.count() == 1 and len(mail.outbox) == 1


def test_customer_found_by_stripe_customer_id_when_the_session_has_no_subscription_id_match(
        django_capture_on_commit_callbacks):
    buyer = customer(stripe_customer_id="cus_lookup1")
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(stripe_events.event("customer.subscription.created",
                                     stripe_events.subscription(sub_id="sub_other", customer="cus_lookup1")))
    # The licence is for the customer's current subscription, as the core receiver recorded it.
    assert License.objects.get().subscription_id == buyer.subscription_id


def test_plan_change_follows_the_plan_settings(settings, django_capture_on_commit_callbacks):
    settings.PLANS = {code: {**plan, "price_id": f"price_sandbox_{code}"} for code, plan in settings.PLANS.items()}
    buyer = customer()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(completed(buyer.subscription_id))
    # The core receiver runs first and moves the customer to the Team plan; ours follows it.
    dispatch(stripe_events.event("customer.subscription.updated",
                                 stripe_events.subscription(sub_id=buyer.subscription_id, price="price_sandbox_team")))
    buyer.refresh_from_db()
    lic = License.objects.get()
    assert buyer.plan == "team"
    assert (lic.plan, lic.max_devices, lic.offline_grace_days) == ("team", 10, 14)
    assert AuditEvent.objects.filter(action="license.plan_changed").count() == 1
    assert len(mail.outbox) == 1


def test_subscription_created_before_checkout_completed_issues_the_licence(django_capture_on_commit_callbacks):
    """Events come in any order: whichever arrives first for a known, paid customer provisions."""
    buyer = customer()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(stripe_events.event("customer.subscription.created",
                                     stripe_events.subscription(sub_id=buyer.subscription_id)))
        dispatch(completed(buyer.subscription_id))
    assert License.objects.count() == 1 and len(mail.outbox) == 1


@pytest.mark.parametrize("status", ["incomplete", "canceled"])
def test_no_licence_for_a_subscription_that_entitles_nothing(status):
    buyer = customer(subscription_status=status)
    dispatch(stripe_events.event("customer.subscription.created",
                                 stripe_events.subscription(sub_id=buyer.subscription_id, status=status)))
    assert not License.objects.exists()


def test_event_for_an_unknown_customer_changes_nothing():
    from billing_console.stripe.gateway import StripeGatewayError

    CustomerFactory()
    # The core receiver runs first: for an unknown buyer it must read the subscription from Stripe,
    # which is not configured here, so the event fails (and would be retried) before licensing runs.
    with pytest.raises(StripeGatewayError):
        dispatch(completed("sub_nobody", customer="cus_nobody"))
    assert not License.objects.exists()


def test_payment_mode_checkout_is_ignored():
    buyer = customer()
    dispatch(completed(buyer.subscription_id, mode="payment"))
    assert not License.objects.exists()


def test_unconfigured_plan_issues_no_licence():
    buyer = customer(plan="enterprise")
    dispatch(completed(buyer.subscription_id))
    assert not License.objects.exists()


def test_failed_key_email_is_recorded(django_capture_on_commit_callbacks, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1
    buyer = customer()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(completed(buyer.subscription_id))
    assert License.objects.get().key_delivery == "failed"


def test_a_failing_later_receiver_rolls_back_the_licence_and_sends_nothing(django_capture_on_commit_callbacks):
    """The worker runs dispatch in one transaction: a failure leaves no licence and no email."""
    from django.db import transaction

    from billing_console.stripe import dispatch as events

    def boom(event):
        raise RuntimeError("later receiver failed")

    buyer = customer()
    events.registry.add("checkout.session.completed", boom, stage=events.Stage.DUNNING)
    try:
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
            with transaction.atomic():
                dispatch(completed(buyer.subscription_id))
    finally:
        events.registry.remove("checkout.session.completed", boom)
    assert not License.objects.exists() and mail.outbox == []
