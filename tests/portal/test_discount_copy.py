"""The customer's coupon, named where they and support look (manage page, manage-link email, admin customer
page) and true in every state: each coupon kind's words, nothing once the discount no longer applies or the
subscription ended, and a "Next payment" that never shows a pre-discount price for a discounted renewal."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from billing_console.models import Customer
from billing_console.wording.discount import discount_words, discounted_amount
from billing_console.wording.subscription import day, subscription_copy
from tests.core.factories import SubscribedCustomerFactory
from tests.portal.test_subscription_copy import invoice, manage_email, page

pytestmark = pytest.mark.django_db
A = Customer.AccessState
IN_90_DAYS = int((datetime.now(tz=dt_timezone.utc) + timedelta(days=90)).timestamp())


def coupon(**fields) -> dict:
    """A kept discount (Customer.discount) as the receivers store it."""
    return {"discount": "di_test", "subscription": "sub_test", "coupon": "C1", "name": "", "percent_off": None,
            "amount_off": None, "currency": "", "duration": "forever", "duration_in_months": None,
            "start": int(timezone.now().timestamp()) - 86400, "end": None, **fields}


def in_90_days() -> str:
    return day(datetime.fromtimestamp(IN_90_DAYS, tz=dt_timezone.utc))


@pytest.mark.parametrize("fields, words", [
    ({"name": "Live 25", "percent_off": 25}, "Live 25: 25% off, forever"),
    ({"percent_off": 25, "duration": "once"}, "25% off once"),
    ({"percent_off": 12.5, "duration": "repeating", "duration_in_months": 6, "end": IN_90_DAYS},
     "12.5% off for 6 months (until {end})"),
    ({"amount_off": 500, "currency": "usd", "duration": "repeating", "duration_in_months": 3, "end": IN_90_DAYS},
     "$5.00 off for 3 months (until {end})"),
    ({"amount_off": 500, "currency": "usd", "duration": "repeating", "duration_in_months": 1, "end": IN_90_DAYS},
     "$5.00 off for 1 month (until {end})"),
    ({"name": "Welcome", "amount_off": 500, "currency": "usd", "duration": "once"}, "Welcome: $5.00 off once"),
    ({"name": "Loyal", "amount_off": 1000, "currency": "eur", "duration": "forever"}, "Loyal: €10.00 off, forever"),
    ({"name": "25% off", "percent_off": 25}, "25% off, forever"),  # Stripe's default name says nothing more
    ({"duration": ""}, "Coupon C1"),  # the coupon's details not read yet
], ids=["percent-forever", "percent-once", "percent-repeating", "amount-repeating", "one-month", "amount-once",
        "eur", "default-name", "id-only"])
def test_each_coupon_kind_has_its_words_on_the_manage_page_the_email_and_the_admin(client, manage_url, admin_client,
                                                                                   fields, words):
    words = words.format(end=in_90_days())
    assert discount_words(coupon(**fields)) == words
    customer = SubscribedCustomerFactory(discount=coupon(**fields))
    body = page(client, manage_url, customer)
    assert f"<dt>Discount</dt><dd>{words}</dd>" in body, body
    assert f"Discount: {words}" in manage_email(customer)
    admin = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    admin = admin.replace("&#x27;", "'")
    assert f"<dt>Discount</dt><dd>{words}</dd>" in admin
    assert "(coupon C1, di_test, subscription sub_test)" in admin  # what support looks up in Stripe


def test_a_discount_known_only_by_its_id_is_not_shown_to_the_customer(client, manage_url):
    customer = SubscribedCustomerFactory(discount={"discount": "di_only", "subscription": "sub_x", "coupon": ""})
    assert discount_words(customer.discount) == ""
    assert "Discount" not in page(client, manage_url, customer)


@pytest.mark.parametrize("fields", [
    {"subscription_status": "canceled", "access_state": A.CANCELED},
    {"subscription_status": "", "subscription_id": ""},
], ids=["canceled", "no-subscription"])
def test_no_discount_line_once_the_subscription_ended(client, manage_url, fields):
    customer = SubscribedCustomerFactory(discount=coupon(name="Live 25", percent_off=25), **fields)
    body = page(client, manage_url, customer)
    assert "Live 25" not in body and "Discount" not in body


@pytest.mark.parametrize("fields, state", [
    ({"subscription_status": "trialing"}, "trialing"),
    ({"cancel_at_period_end": True}, "ending"),
    ({"subscription_status": "past_due", "access_state": A.GRACE}, "past_due"),
    ({"subscription_status": "paused"}, "paused"),
])
def test_a_running_subscription_names_its_discount_in_every_state(fields, state):
    copy = subscription_copy(SubscribedCustomerFactory(discount=coupon(name="Live 25", percent_off=25), **fields),
                             invoices=[])
    assert copy.state == state and ("Discount", "Live 25: 25% off, forever") in copy.facts


def test_a_deleted_discount_says_nothing():
    copy = subscription_copy(SubscribedCustomerFactory(discount={}), invoices=[])
    assert [label for label, _ in copy.facts] == ["Next payment"]


def test_a_repeating_discount_past_its_end_is_not_shown():
    ended = int((timezone.now() - timedelta(days=1)).timestamp())
    customer = SubscribedCustomerFactory(discount=coupon(percent_off=25, duration="repeating", duration_in_months=3,
                                                         end=ended))
    assert "Discount" not in dict(subscription_copy(customer, invoices=[]).facts)


def discounted_invoice(customer, *, total=675, discount=225, discount_id="di_test", **fields):
    row = invoice(customer, status="paid", total=total, **fields)
    row.discount, row.subtotal = discount, total + discount
    row.data["total_discount_amounts"] = [{"amount": discount, "discount": discount_id}]
    row.save()
    return row


def test_a_once_discount_used_by_a_paid_invoice_is_not_shown_and_the_renewal_is_not_discounted():
    customer = SubscribedCustomerFactory(discount=coupon(percent_off=25, duration="once"))
    bill = discounted_invoice(customer, start=timezone.now() - timedelta(hours=1))
    copy = subscription_copy(customer, invoices=[bill])
    assert "Discount" not in dict(copy.facts)
    # The last bill ($6.75) had the discount the renewal will not have: no amount rather than a false one.
    assert dict(copy.facts)["Next payment"] == day(customer.current_period_end)


# --- Next payment -----------------------------------------------------------------------------------
def test_next_payment_is_the_last_discounted_bill_while_its_discount_lasts(client, manage_url):
    customer = SubscribedCustomerFactory(discount=coupon(name="Live 25", percent_off=25))
    discounted_invoice(customer)
    body = page(client, manage_url, customer)
    assert f"<dt>Next payment</dt><dd>$6.75 on {day(customer.current_period_end)}</dd>" in body, body


def test_next_payment_never_shows_the_pre_discount_bill_for_a_discount_added_since(client, manage_url):
    customer = SubscribedCustomerFactory(discount=coupon(name="Live 25", percent_off=25))
    invoice(customer, status="paid", total=900)  # paid before the coupon was applied
    body = page(client, manage_url, customer)
    assert "$9.00 on" not in body and f"<dt>Next payment</dt><dd>{day(customer.current_period_end)}</dd>" in body


def test_next_payment_after_a_replaced_discount_is_not_the_old_discounts_bill():
    customer = SubscribedCustomerFactory(discount=coupon(discount="di_new", amount_off=500, currency="usd"))
    bill = discounted_invoice(customer, discount_id="di_old")
    assert "$6.75" not in dict(subscription_copy(customer, invoices=[bill]).facts)["Next payment"]


@pytest.fixture
def mirrored_price():
    from djstripe.models import Price, Product

    product = Product.objects.create(id="prod_disc_test", name="Pro")
    Price.objects.create(id="price_disc_test", product=product, currency="usd", active=True,
                         stripe_data={"id": "price_disc_test", "object": "price", "unit_amount": 900, "currency": "usd",
                                      "recurring": {"interval": "month", "interval_count": 1}})
    return "price_disc_test"


@pytest.mark.parametrize("discount, amount", [
    ({"percent_off": 25}, "$6.75"),
    ({"amount_off": 500, "currency": "usd"}, "$4.00"),
    ({"amount_off": 500, "currency": "usd", "duration": "repeating", "end": IN_90_DAYS}, "$4.00"),
])
def test_a_trial_renews_at_the_discounted_price(client, manage_url, mirrored_price, discount, amount):
    customer = SubscribedCustomerFactory(subscription_status="trialing", price_id=mirrored_price,
                                         current_period_end=timezone.now() + timedelta(days=10),
                                         trial_end=timezone.now() + timedelta(days=10), discount=coupon(**discount))
    assert f"Then Pro renews at {amount} with the card on file." in page(client, manage_url, customer)


def test_a_repeating_discount_ending_before_the_renewal_leaves_the_full_price(mirrored_price):
    ends = int((timezone.now() + timedelta(days=2)).timestamp())
    customer = SubscribedCustomerFactory(price_id=mirrored_price, current_period_end=timezone.now() + timedelta(days=10),
                                         discount=coupon(percent_off=25, duration="repeating", end=ends))
    bill = discounted_invoice(customer)
    copy = subscription_copy(customer, invoices=[bill])
    assert dict(copy.facts)["Next payment"] == f"$9.00 on {day(customer.current_period_end)}"
    assert dict(copy.facts)["Discount"].startswith("25% off")  # still in force today


def test_an_amount_off_in_another_currency_gives_no_amount():
    assert discounted_amount(900, "usd", coupon(amount_off=500, currency="eur")) is None
    assert discounted_amount(900, "usd", coupon(percent_off=33.3)) == 600  # 299.7 off, rounded half up to 300
    assert discounted_amount(300, "usd", coupon(amount_off=500, currency="usd")) == 0


@pytest.mark.parametrize("bad", [
    {"percent_off": "lots", "amount_off": "x", "duration": 7, "name": 5},
    {"percent_off": True, "duration_in_months": "3", "end": "soon", "start": []},
    {"amount_off": -5, "currency": "usd"},
    {"percent_off": 250},
    [],
    None,
], ids=["strings", "wrong-types", "negative", "over-100", "list", "none"])
def test_a_malformed_kept_discount_never_breaks_the_page(client, manage_url, bad):
    fields = coupon(**bad) if isinstance(bad, dict) else bad
    customer = SubscribedCustomerFactory()
    Customer.objects.filter(pk=customer.pk).update(discount=fields if fields is not None else {})
    customer.refresh_from_db()
    body = page(client, manage_url, customer)
    assert "Pro is active" in body
    assert isinstance(discount_words(fields), str)

