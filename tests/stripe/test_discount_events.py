"""customer.discount.* and the discounts a subscription names by id, through the real webhook view (signed),
the inbox, the preparers and the receivers: the coupon's details read before the event's transaction and
only when missing, any order of arrival, a deleted discount never back, an unknown customer or a malformed
payload never a failed event."""
import time

import pytest

from billing_console.models import AuditEvent, Customer, WebhookEvent
from billing_console.stripe import gateway
from billing_console.stripe.endpoint import webhook_event_types
from conftest import open_transactions
from tests.core.factories import SubscribedCustomerFactory
from tests.stripe.stripe_events import event, stripe_object, subscription

pytestmark = pytest.mark.django_db
APPLIED = {WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED}
NOW = int(time.time())
LIVE25 = stripe_object("coupon", id="LIVE25", name="Live 25", percent_off=25, amount_off=None, currency=None,
                       duration="forever", duration_in_months=None)
FIVE3 = stripe_object("coupon", id="FIVE3", name=None, percent_off=None, amount_off=500, currency="usd",
                      duration="repeating", duration_in_months=3)


@pytest.fixture
def customer(stripe_settings):
    return SubscribedCustomerFactory(stripe_customer_id="cus_disc", subscription_id="sub_disc", email="disc@example.com")


class Reads(list):
    """The Stripe reads made, in order; `subscriptions` answers subscription reads by id."""

    def __init__(self):
        super().__init__()
        self.subscriptions: dict[str, dict] = {}


@pytest.fixture
def reads(monkeypatch):
    """Stripe reads of coupons and subscriptions, each with the transactions open when it was made (the
    worker's own must not be one of them)."""
    made = Reads()
    coupons = {"LIVE25": LIVE25, "FIVE3": FIVE3}

    def coupon_retrieve(coupon_id):
        made.append(("coupon", coupon_id, len(open_transactions())))
        if coupon_id not in coupons:
            raise gateway.StripeGatewayError("No such coupon", code="resource_missing", http_status=404)
        return coupons[coupon_id]

    def subscription_retrieve(sub_id, expand=None):
        made.append(("subscription", sub_id, len(open_transactions()), tuple(expand or ())))
        return made.subscriptions[sub_id]

    monkeypatch.setattr(gateway, "coupon_retrieve", coupon_retrieve)
    monkeypatch.setattr(gateway, "subscription_retrieve", subscription_retrieve)
    monkeypatch.setattr(gateway, "customer_retrieve",
                        lambda cid: {"id": cid, "object": "customer", "email": "newbuyer@example.com", "name": ""})
    return made


def discount(did="di_one", *, coupon="LIVE25", sub="sub_disc", cus="cus_disc", start=NOW - 100, end=None):
    return stripe_object("discount", id=did, customer=cus, subscription=sub, start=start, end=end,
                         source={"type": "coupon", "coupon": coupon})


def kept(customer) -> dict:
    customer.refresh_from_db()
    return customer.discount


# --- Coupon details ------------------------------------------------------------------------------------
def test_a_discount_event_naming_its_coupon_by_id_reads_the_coupon_before_the_transaction(customer, send, reads):
    row = send(event("customer.discount.created", discount(), created=NOW))
    assert row.status == WebhookEvent.Status.PROCESSED
    assert reads == [("coupon", "LIVE25", 0)]
    assert kept(customer) == {"discount": "di_one", "subscription": "sub_disc", "coupon": "LIVE25", "name": "Live 25",
                              "percent_off": 25, "amount_off": None, "currency": "", "duration": "forever",
                              "duration_in_months": None, "start": NOW - 100, "end": None}
    assert AuditEvent.objects.filter(customer=customer, action="customer.discount_changed").count() == 1
    send(event("customer.discount.updated", discount(), created=NOW + 1))  # the same coupon: not read again
    assert len(reads) == 1


def test_an_expanded_coupon_needs_no_read_and_an_unreadable_one_keeps_its_id(customer, send, reads):
    send(event("customer.discount.created", discount(coupon=FIVE3, end=NOW + 90 * 86400), created=NOW))
    assert reads == [] and kept(customer)["amount_off"] == 500 and kept(customer)["duration_in_months"] == 3
    row = send(event("customer.discount.updated", discount("di_two", coupon="GONE"), created=NOW + 5))
    assert row.status == WebhookEvent.Status.PROCESSED and reads == [("coupon", "GONE", 0)]
    assert (kept(customer)["discount"], kept(customer)["coupon"], kept(customer).get("name")) == ("di_two", "GONE", None)


def test_stripe_unreachable_fails_the_discount_event_for_a_retry(customer, stripe_settings, monkeypatch):
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store

    def down(coupon_id):
        raise gateway.StripeGatewayError("Stripe is unreachable", retryable=True)

    monkeypatch.setattr(gateway, "coupon_retrieve", down)
    row, _ = webhook_event_store(event=event("customer.discount.created", discount()), enqueue=False)
    assert webhook_event_process(webhook_event_id=row.pk) == "failed"
    row.refresh_from_db()
    assert row.next_attempt_at is not None and kept(customer) == {}


def test_a_subscription_naming_its_discount_by_id_reads_it_expanded_once(customer, send, reads):
    reads.subscriptions["sub_disc"] = subscription(id="sub_disc", customer="cus_disc",
                                                   discounts=[discount(coupon=LIVE25)])
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=["di_one"]),
               created=NOW))
    assert reads == [("subscription", "sub_disc", 0, ("discounts.source.coupon",))]
    assert (kept(customer)["discount"], kept(customer)["name"], kept(customer)["percent_off"]) == ("di_one", "Live 25", 25)
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=["di_one"]),
               created=NOW + 10))
    assert len(reads) == 1  # the console holds the coupon now


def test_a_discount_event_before_its_customer_exists_is_skipped_and_the_subscription_brings_it(stripe_settings, send,
                                                                                            reads):
    row = send(event("customer.discount.created", discount(sub="sub_new", cus="cus_new"), created=NOW))
    assert row.status in APPLIED and not Customer.objects.exists() and reads == []  # nothing read for nobody
    reads.subscriptions["sub_new"] = subscription(id="sub_new", customer="cus_new",
                                                  discounts=[discount(sub="sub_new", cus="cus_new", coupon=LIVE25)])
    send(event("customer.subscription.created", subscription(id="sub_new", customer="cus_new", discounts=["di_one"]),
               created=NOW))
    customer = Customer.objects.get(email="newbuyer@example.com")
    assert (customer.discount["coupon"], customer.discount["name"]) == ("LIVE25", "Live 25")
    send(event("customer.discount.created", discount(sub="sub_new", cus="cus_new"), created=NOW))  # redelivered late
    assert kept(customer)["name"] == "Live 25"


# --- Order ------------------------------------------------------------------------------------------
def test_a_deleted_discount_is_cleared_and_a_late_created_never_brings_it_back(customer, send, reads):
    send(event("customer.discount.created", discount(coupon=LIVE25), created=NOW))
    send(event("customer.discount.deleted", discount(coupon=LIVE25), created=NOW + 60))
    assert kept(customer) == {} and customer.discounts_deleted == ["di_one"]
    send(event("customer.discount.created", discount(coupon=LIVE25), created=NOW + 60))  # same second, redelivered
    send(event("customer.discount.updated", discount(coupon=LIVE25), created=NOW + 120))  # even a later one
    assert kept(customer) == {}
    # A late subscription snapshot that still names it brings nothing back either.
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=["di_one"]),
               created=NOW + 200))
    assert kept(customer) == {} and reads == []


def test_deleted_before_created_ends_with_no_discount(customer, send, reads):
    send(event("customer.discount.deleted", discount(coupon=LIVE25), created=NOW + 60))
    send(event("customer.discount.created", discount(coupon=LIVE25), created=NOW))
    assert kept(customer) == {}


def test_an_older_discount_event_never_replaces_a_newer_discount(customer, send, reads):
    send(event("customer.discount.updated", discount("di_new", coupon=FIVE3, start=NOW), created=NOW + 60))
    send(event("customer.discount.created", discount("di_old", coupon=LIVE25, start=NOW - 500), created=NOW))
    assert kept(customer)["discount"] == "di_new"


def test_at_the_same_second_the_replacing_discount_wins_whatever_the_arrival(customer, send, reads):
    # One API call replaced di_a by di_b: created (di_a) and updated (di_b) carry the same second.
    send(event("customer.discount.updated", discount("di_b", coupon=FIVE3, start=NOW), created=NOW))
    send(event("customer.discount.created", discount("di_a", coupon=LIVE25, start=NOW), created=NOW))
    assert kept(customer)["discount"] == "di_b"
    other = SubscribedCustomerFactory(stripe_customer_id="cus_two", subscription_id="sub_two", email="two@example.com")
    send(event("customer.discount.created", discount("di_c", coupon=LIVE25, sub="sub_two", cus="cus_two", start=NOW),
               created=NOW))
    send(event("customer.discount.updated", discount("di_d", coupon=FIVE3, sub="sub_two", cus="cus_two", start=NOW),
               created=NOW))
    assert kept(other)["discount"] == "di_d"


def test_a_subscription_snapshot_of_the_same_second_does_not_undo_a_discount_event(customer, send, reads):
    send(event("customer.discount.created", discount(coupon=LIVE25), created=NOW))
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=[]),
               created=NOW))
    assert kept(customer)["discount"] == "di_one"
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=[]),
               created=NOW + 1))  # later: the subscription lost it
    assert kept(customer) == {}


def test_an_older_subscription_snapshot_never_brings_back_a_removed_discount(customer, send, reads):
    send(event("customer.discount.created", discount(coupon=LIVE25), created=NOW))
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=[]),
               created=NOW + 100))
    assert kept(customer) == {}
    reads.subscriptions["sub_disc"] = subscription(id="sub_disc", customer="cus_disc", discounts=[])
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=["di_one"]),
               created=NOW + 50))
    assert kept(customer) == {}


# --- Whose discount ------------------------------------------------------------------------------------
def test_the_customers_own_coupon_stays_when_the_subscription_has_none(customer, send, reads):
    send(event("customer.discount.created", discount("di_own", coupon=LIVE25, sub=None), created=NOW))
    send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc", discounts=[]),
               created=NOW + 10))
    assert (kept(customer)["discount"], kept(customer)["subscription"]) == ("di_own", "")
    # The subscription's own discount goes first on its invoices, and the customer's does not replace it.
    send(event("customer.discount.created", discount("di_sub", coupon=FIVE3), created=NOW + 20))
    send(event("customer.discount.updated", discount("di_own2", coupon=LIVE25, sub=None), created=NOW + 30))
    assert kept(customer)["discount"] == "di_sub"
    send(event("customer.discount.deleted", discount("di_own2", coupon=LIVE25, sub=None), created=NOW + 40))
    assert kept(customer)["discount"] == "di_sub"  # deleting another discount leaves this one


def test_a_discount_of_another_subscription_is_not_the_customers(customer, send, reads):
    row = send(event("customer.discount.created", discount(coupon=LIVE25, sub="sub_elsewhere"), created=NOW))
    assert row.status in APPLIED and kept(customer) == {} and reads == []


# --- Bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("event_type", ["customer.discount.created", "customer.discount.updated",
                                        "customer.discount.deleted"])
@pytest.mark.parametrize("obj", [
    {},
    {"object": "discount", "id": 5, "customer": "cus_disc"},
    {"object": "discount", "id": "di_bad", "customer": "cus_disc", "source": "oops", "coupon": 7},
    {"object": "discount", "id": "di_bad", "customer": "cus_disc", "subscription": 42, "start": "yesterday", "end": [],
     "source": {"coupon": {"id": "ODD", "percent_off": "lots", "amount_off": "x", "duration": 7, "name": 5,
                           "duration_in_months": "3", "currency": 9}}},
    {"object": "discount", "id": "di_bad", "customer": {"id": None}, "source": {"coupon": ["x"]}},
    {"object": "discount", "id": "di_bad", "customer": "cus_disc", "metadata": "not-a-map"},
], ids=["empty", "id-not-a-string", "source-not-a-map", "wrong-types", "nothing-usable", "bad-metadata"])
def test_a_malformed_discount_event_is_processed_or_ignored_never_failed(customer, send, reads, event_type, obj):
    row = send(event(event_type, obj))
    assert row.status in APPLIED, (row.status, row.last_error)
    discount_kept = kept(customer)
    # Only what has Stripe's type is kept: no string where a number goes, no number where a string goes.
    assert all(discount_kept.get(key) is None for key in ("percent_off", "amount_off", "duration_in_months",
                                                          "start", "end"))
    assert all(isinstance(discount_kept.get(key, ""), str) for key in ("discount", "coupon", "name", "duration",
                                                                      "currency", "subscription"))
    if event_type != "customer.discount.deleted" and discount_kept:
        assert discount_kept["discount"] == "di_bad" and reads in ([], [("coupon", "ODD", 0)])


@pytest.mark.parametrize("discounts", [["", None, 5, {"id": 7}], "di_not_a_list", [{"source": "oops"}], [["di_x"]]],
                         ids=["junk-entries", "a-string", "bad-expanded", "nested-list"])
def test_a_subscription_with_malformed_discounts_is_processed_never_failed(customer, send, reads, discounts):
    row = send(event("customer.subscription.updated", subscription(id="sub_disc", customer="cus_disc",
                                                                   discounts=discounts)))
    assert row.status in APPLIED, (row.status, row.last_error)
    customer.refresh_from_db()
    assert customer.subscription_status == "active"


def test_the_webhook_endpoint_subscribes_to_the_discount_events(stripe_settings):
    assert {"customer.discount.created", "customer.discount.updated",
            "customer.discount.deleted"} <= set(webhook_event_types())
