"""Stripe objects built from Stripe's own examples (fixtures3.json), filled from the emulator's state.

Each builder deep-copies the resource's example, then sets what the emulator knows and clears
the example's placeholder values (sample shipping costs, coupons, transfer data...) to what a
fresh test-mode object has. Fields stay where the current API (dahlia) puts them; a few that
dj-stripe 2.11 still reads from older shapes are also kept (noted where set).
"""
from __future__ import annotations

import calendar
import copy
import hashlib
import datetime as dt
import json
import secrets
import string
from pathlib import Path

FIXTURES_PATH = Path(__file__).with_name("fixtures3.json")
_ALPHABET = string.ascii_letters + string.digits

with FIXTURES_PATH.open(encoding="utf-8") as _fh:
    RESOURCES = json.load(_fh)["resources"]


def example(resource: str) -> dict:
    return copy.deepcopy(RESOURCES[resource])


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def add_months(timestamp: int, months: int) -> int:
    """`timestamp` moved by calendar months, the day clamped to the month's end (as Stripe bills)."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def add_interval(timestamp: int, interval: str, count: int) -> int:
    if interval == "month":
        return add_months(timestamp, count)
    if interval == "year":
        return add_months(timestamp, 12 * count)
    return timestamp + {"day": 86400, "week": 7 * 86400}[interval] * count


def empty_list(url: str) -> dict:
    return {"object": "list", "data": [], "has_more": False, "url": url}


# -- account, products, prices ---------------------------------------------------------------
def account(*, account_id: str, name: str, email: str, created: int) -> dict:
    obj = example("account")
    obj.update(id=account_id, email=email, created=created, charges_enabled=True,
               details_submitted=True, payouts_enabled=True, business_type="company")
    obj["business_profile"].update(name=name, support_email=email)
    obj["settings"]["dashboard"]["display_name"] = name
    obj["external_accounts"]["url"] = f"/v1/accounts/{account_id}/external_accounts"
    for key in ("currently_due", "eventually_due", "past_due", "pending_verification"):
        obj["requirements"][key] = []
    obj["requirements"]["disabled_reason"] = None
    return obj


def product(*, product_id: str, name: str, created: int, description=None, metadata=None,
            active: bool = True) -> dict:
    obj = example("product")
    obj.update(id=product_id, name=name, description=description, metadata=metadata or {},
               active=active, created=created, updated=created, default_price=None,
               package_dimensions=None, type="service", images=[])
    return obj


def price(*, price_id: str, product_id: str, unit_amount: int, currency: str, created: int,
          interval: str | None = "month", interval_count: int = 1, nickname=None, lookup_key=None,
          metadata=None, active: bool = True) -> dict:
    obj = example("price")
    obj.update(id=price_id, product=product_id, unit_amount=unit_amount,
               unit_amount_decimal=str(unit_amount), currency=currency, created=created,
               nickname=nickname, lookup_key=lookup_key, metadata=metadata or {}, active=active,
               custom_unit_amount=None, transform_quantity=None)
    if interval:
        obj["type"] = "recurring"
        obj["recurring"].update(interval=interval, interval_count=interval_count)
    else:
        obj.update(type="one_time", recurring=None)
    return obj


def plan_from_price(price_obj: dict) -> dict:
    """The legacy `plan` Stripe still renders next to `price` on subscription items."""
    obj = example("plan")
    recurring = price_obj.get("recurring") or {}
    obj.update(id=price_obj["id"], amount=price_obj["unit_amount"],
               amount_decimal=price_obj["unit_amount_decimal"], currency=price_obj["currency"],
               created=price_obj["created"], interval=recurring.get("interval"),
               interval_count=recurring.get("interval_count"), metadata=price_obj["metadata"],
               nickname=price_obj["nickname"], product=price_obj["product"],
               active=price_obj["active"], transform_usage=None,
               billing_scheme=price_obj.get("billing_scheme", "per_unit"), tiers_mode=price_obj.get("tiers_mode"),
               meter=recurring.get("meter"), usage_type=recurring.get("usage_type", "licensed"))
    return obj


# -- customers and payment methods -----------------------------------------------------------
def customer(*, customer_id: str, created: int, email=None, name=None, phone=None,
             description=None, metadata=None) -> dict:
    obj = example("customer")
    obj.update(id=customer_id, created=created, email=email, name=name, phone=phone,
               description=description, metadata=metadata or {}, address=None, shipping=None,
               currency=None,
               # dj-stripe 2.11 cannot parse the current discount shape (see DESIGN.md).
               discount=None,
               invoice_prefix="".join(secrets.choice("0123456789ABCDEF") for _ in range(8)))
    return obj


CARD_BRANDS = {"4": ("visa", "Visa"), "5": ("mastercard", "Mastercard"), "3": ("amex", "American Express")}


def payment_method(*, pm_id: str, number: str, created: int, customer_id=None, email=None,
                   name=None, exp_month: int = 12, exp_year: int = 2034) -> dict:
    obj = example("payment_method")
    brand = CARD_BRANDS.get(number[:1], ("unknown", "Unknown"))[0]
    obj.update(id=pm_id, created=created, customer=customer_id, metadata={},
               allow_redisplay="always")
    obj["billing_details"] = {
        "address": {"city": None, "country": None, "line1": None, "line2": None,
                    "postal_code": None, "state": None},
        "email": email, "name": name, "phone": None, "tax_id": None,
    }
    card = obj["card"]
    card.update(brand=brand, display_brand=brand, last4=number[-4:], exp_month=exp_month,
                exp_year=exp_year, fingerprint=hashlib.sha256(number.encode()).hexdigest()[:16],
                generated_from=None, wallet=None)
    card["networks"] = {"available": [brand], "preferred": None}
    return obj


# -- checkout ---------------------------------------------------------------------------------
def checkout_line_item(*, item_id: str, price_obj: dict, product_name: str, quantity: int) -> dict:
    obj = example("item")
    metered = (price_obj.get("recurring") or {}).get("usage_type") == "metered"
    amount = 0 if metered else (price_obj["unit_amount"] or 0) * quantity  # usage is billed in arrears
    obj.update(id=item_id, price=copy.deepcopy(price_obj), quantity=quantity,
               description=product_name, currency=price_obj["currency"], amount_subtotal=amount,
               amount_total=amount, amount_discount=0, amount_tax=0, metadata={},
               adjustable_quantity=None)
    return obj


def checkout_session(*, session_id: str, created: int, expires_at: int, url: str, mode: str,
                     currency: str, amount: int, success_url, cancel_url, customer_id=None,
                     customer_email=None, client_reference_id=None, metadata=None,
                     locale=None) -> dict:
    obj = example("checkout.session")
    obj.update(
        id=session_id, created=created, expires_at=expires_at, url=url, mode=mode,
        currency=currency, amount_subtotal=amount, amount_total=amount, success_url=success_url,
        cancel_url=cancel_url, customer=customer_id, customer_email=customer_email,
        client_reference_id=client_reference_id, metadata=metadata or {}, locale=locale,
        status="open", payment_status="unpaid", payment_intent=None, subscription=None,
        invoice=None, customer_details=None, customer_creation=None, after_expiration=None,
        invoice_creation=None, shipping_address_collection=None, shipping_cost=None,
        shipping_options=[], payment_method_configuration_details=None,
        collected_information=None, permissions=None, currency_conversion=None,
        adaptive_pricing=None, wallet_options=None, discounts=[], payment_method_collection="always",
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
    )
    obj["custom_text"] = {"after_submit": None, "shipping_address": None, "submit": None,
                          "terms_of_service_acceptance": None}
    obj["consent_collection"] = None
    obj["automatic_tax"] = {"enabled": False, "liability": None, "status": None, "provider": None}
    obj["managed_payments"] = {"enabled": False}
    return obj


def customer_details(customer_obj: dict) -> dict:
    return {"address": None, "email": customer_obj["email"], "name": customer_obj["name"],
            "phone": customer_obj["phone"], "tax_exempt": "none", "tax_ids": [],
            "business_name": None, "individual_name": None}


def portal_session(*, session_id: str, created: int, customer_id: str, return_url, url: str) -> dict:
    obj = example("billing_portal.session")
    obj.update(id=session_id, created=created, customer=customer_id, return_url=return_url,
               url=url, livemode=False, flow=None, configuration="bpc_sandbox_default")
    return obj


# -- subscriptions -----------------------------------------------------------------------------
def subscription_item(*, item_id: str, subscription_id: str, price_obj: dict, quantity: int,
                      created: int, period_start: int, period_end: int) -> dict:
    obj = example("subscription_item")
    obj.update(id=item_id, subscription=subscription_id, price=copy.deepcopy(price_obj),
               plan=plan_from_price(price_obj), quantity=quantity, created=created,
               current_period_start=period_start, current_period_end=period_end,
               billing_thresholds=None, metadata={})
    return obj


def subscription(*, subscription_id: str, customer_id: str, items: list[dict], created: int,
                 period_start: int, period_end: int, currency: str, metadata=None,
                 default_payment_method=None) -> dict:
    obj = example("subscription")
    obj.update(
        id=subscription_id, customer=customer_id, created=created, start_date=created,
        billing_cycle_anchor=period_start, currency=currency, metadata=metadata or {},
        default_payment_method=default_payment_method, status="active",
        cancel_at=None, canceled_at=None, ended_at=None, cancel_at_period_end=False,
        trial_start=None, trial_end=None, next_pending_invoice_item_invoice=None,
        pause_collection=None, pending_invoice_item_interval=None, pending_update=None,
        transfer_data=None, billing_cycle_anchor_config=None, billing_thresholds=None,
        latest_invoice=None, billing_schedules=[], description=None,
        # The current API keeps the period on the items; dj-stripe 2.11 reads it here.
        current_period_start=period_start, current_period_end=period_end,
    )
    obj["cancellation_details"] = {"comment": None, "feedback": None, "reason": None}
    obj["automatic_tax"] = {"enabled": False, "liability": None, "disabled_reason": None}
    obj["managed_payments"] = {"enabled": False}
    obj["payment_settings"] = {"payment_method_options": None, "payment_method_types": None,
                               "save_default_payment_method": "on_subscription"}
    obj["items"] = {"object": "list", "data": items, "has_more": False, "total_count": len(items),
                    "url": f"/v1/subscription_items?subscription={subscription_id}"}
    return obj


# -- webhook endpoints ---------------------------------------------------------------------------
def webhook_endpoint(*, endpoint_id: str, url: str, enabled_events: list[str], created: int, api_version,
                     description=None, metadata=None) -> dict:
    obj = example("webhook_endpoint")
    obj.update(id=endpoint_id, url=url, enabled_events=enabled_events, created=created, api_version=api_version,
               description=description, metadata=metadata or {}, status="enabled", livemode=False)
    return obj


# -- events ------------------------------------------------------------------------------------
def event(*, event_id: str, event_type: str, obj: dict, created: int, api_version: str,
          previous_attributes=None, request_id=None, idempotency_key=None) -> dict:
    evt = example("event")
    evt.update(id=event_id, type=event_type, created=created, api_version=api_version,
               livemode=False, pending_webhooks=0,
               request={"id": request_id, "idempotency_key": idempotency_key})
    evt["data"] = {"object": obj}
    if previous_attributes:
        evt["data"]["previous_attributes"] = previous_attributes
    return evt
