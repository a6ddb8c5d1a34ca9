"""The dispatcher's order is the stages', stated in dispatch.py, not the order apps were imported in."""
import pytest

from billing_console.models import Customer
from billing_console.stripe import dispatch as event_bus
from billing_console.stripe.dispatch import ReceiverRegistry, Stage, dispatch, handled_event_types, receivers_for
from licensing.models import License
from tests.licensing import stripe_events


def names(fns) -> list[str]:
    return [f"{fn.__module__}.{fn.__name__}" for fn in fns]


def test_receivers_run_core_then_licensing_then_deployments_then_dunning():
    assert names(receivers_for("customer.subscription.updated")) == [
        "billing_console.stripe.webhooks.subscription_changed",
        "licensing.webhooks.provision_license",
        "deployments.webhooks.sync_deployment_pauses",
        "dunning.webhooks.subscription_changed",
    ]
    assert names(receivers_for("invoice.paid")) == [
        "billing_console.invoicing.webhooks.apply_invoice_event",
        "deployments.webhooks.sync_deployment_pauses",
        "dunning.webhooks.invoice_paid",
    ]
    assert names(receivers_for("checkout.session.completed")) == [
        "billing_console.stripe.webhooks.checkout_completed",
        "licensing.webhooks.provision_license",
    ]


def test_registering_in_reverse_app_order_gives_the_same_run_order():
    registrations = event_bus.registry.registrations()
    reversed_apps = ReceiverRegistry()
    for entry in reversed(registrations):
        reversed_apps.add(entry.event_type, entry.fn, stage=entry.stage)
    assert reversed_apps.event_types() == handled_event_types()
    for event_type in handled_event_types():
        assert reversed_apps.receivers_for(event_type) == receivers_for(event_type), event_type


def test_a_receiver_needs_a_stage():
    with pytest.raises(TypeError):
        event_bus.receiver("invoice.paid")(lambda event: None)


@pytest.mark.django_db
def test_licensing_sees_the_customer_the_core_created_from_the_same_event(stripe_settings,
                                                                          django_capture_on_commit_callbacks):
    subscription = stripe_events.subscription(sub_id="sub_order_1", customer="cus_order_1")
    session = stripe_events.checkout_session(sub_id="sub_order_1", customer="cus_order_1", email="new@example.com")
    session["subscription"] = subscription  # expanded, as Stripe sends it with expand[]=subscription
    assert not Customer.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(stripe_events.event("checkout.session.completed", session))
    customer = Customer.objects.get()
    assert (customer.email, customer.subscription_id) == ("new@example.com", "sub_order_1")
    assert License.objects.get().customer == customer


def test_handled_event_types_lists_every_type_with_a_receiver():
    types = handled_event_types()
    assert {"checkout.session.completed", "customer.subscription.updated", "invoice.payment_failed",
            "invoice.paid", "customer.updated"} <= set(types)
    assert all(receivers_for(t) for t in types) and Stage.CORE < Stage.LICENSING < Stage.DEPLOYMENTS < Stage.DUNNING
