"""Customers and their subscription, as Stripe says they are.

The Stripe receivers, "resync from Stripe" and later rebuild/reconcile all apply Stripe's objects
through these functions, so there is one rule for what may change:
- a customer is found by `customer_for_stripe_object` (subscription id, then Stripe customer id,
  then the checkout token the console put in the metadata, then email);
- a subscription state is applied only if it is not older than the customer's watermark
  (`subscription_state_at`, the Stripe time of the newest state applied); a canceled subscription
  never comes back for the same id, and at equal times a period end never moves backwards;
- cancellation moves access to canceled through `customer_set_access_state`; a return from
  past_due to active does not unlock anything (dunning does that on invoice.paid).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, CheckoutAttempt, Customer
from billing_console.selectors import customer_by_stripe_keys, customer_for_stripe_object, plan_for_price
from billing_console.phones import customer_apply_stripe_phone, phone_e164
from billing_console.stripe.statuses import ENDED as ENDED_STATUSES
from billing_console.services import audit_log, customer_set_access_state
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe import objects as so
from billing_console.stripe.discounts import EXPAND as DISCOUNTS_EXPANDED
from billing_console.stripe.discounts import subscription_discount_stamp, subscription_discount_wanted
from billing_console.stripe.statuses import ENDED, SubscriptionStatus

log = logging.getLogger("billing_console.stripe")

STRIPE = AuditEvent.ActorType.STRIPE
SUBSCRIPTION_FIELDS = ("subscription_id", "subscription_status", "plan", "price_id", "current_period_end",
                       "cancel_at_period_end", "collection_paused", "trial_end", "quantity", "discount")


# --- Finding and linking customers ------------------------------------------------------------------
def customer_link_stripe(*, stripe_customer_id: str, email: str, name: str = "", subscription_id: str = "",
                         actor_type: str = STRIPE, actor: str = "") -> Customer:
    """The console customer for a Stripe customer: found by the subscription it already holds, its cus_
    id, else by email (and linked), else created. Safe under concurrent calls for the same email."""
    email = (email or "").strip().lower()
    with transaction.atomic():
        customer = customer_by_stripe_keys(subscription_id=subscription_id, stripe_customer_id=stripe_customer_id,
                                           email=email, queryset=Customer.objects.select_for_update())
        if customer is None:
            if not email:
                raise ServiceError("no_email", "A customer needs an email: Stripe sent none and none is known for this checkout.")
            try:
                with transaction.atomic():
                    customer = Customer.objects.create(email=email, name=name[:200],
                                                       stripe_customer_id=stripe_customer_id or None)
            except IntegrityError:
                # Another worker created the same email a moment ago: link that row instead.
                customer = Customer.objects.select_for_update().get(email__iexact=email)
            else:
                audit_log(actor_type=actor_type, actor=actor, action="customer.created", target=customer,
                          data={"stripe_customer": stripe_customer_id})
                return customer
        changed = []
        if stripe_customer_id and customer.stripe_customer_id != stripe_customer_id:
            if customer.stripe_customer_id:
                # A second Stripe customer for the same person (e.g. a new checkout): follow the newest.
                log.info("customer %s moves from %s to %s", customer.pk, customer.stripe_customer_id, stripe_customer_id)
            customer.stripe_customer_id = stripe_customer_id
            changed.append("stripe_customer")
        if name and not customer.name:
            customer.name = name[:200]
            changed.append("name")
        if changed:
            customer.save(update_fields=[*changed, "updated_at"])
            audit_log(actor_type=actor_type, actor=actor, action="customer.linked_to_stripe", target=customer,
                      data={"stripe_customer": stripe_customer_id, "fields": changed})
    return customer


def subscription_customer_ensure(subscription: dict) -> Customer | None:
    """The console customer a Stripe subscription belongs to (customer_for_stripe_object), linked to the
    subscription's Stripe customer when found through its checkout token; created from the checkout
    attempt named in its metadata when none exists yet (a subscription event may arrive before its
    checkout event)."""
    sub_id = subscription.get("id") or ""
    stripe_customer_id = so.subscription_customer_id(subscription)
    customer = customer_for_stripe_object(subscription)
    if customer is not None:
        if customer.subscription_id != sub_id and stripe_customer_id and customer.stripe_customer_id != stripe_customer_id:
            # Found by the checkout token only: link it to this Stripe customer.
            return customer_link_stripe(stripe_customer_id=stripe_customer_id, email=customer.email)
        return customer
    token = so.checkout_token(subscription)
    attempt = CheckoutAttempt.objects.filter(token=token).first() if token else None
    if attempt is None:
        # Not from the console's checkout and no customer known: checkout.session.completed (or a
        # resync / rebuild) creates the customer; this event has nothing to attach to yet.
        log.info("subscription %s: no console customer for %s yet", sub_id, stripe_customer_id)
        return None
    return customer_link_stripe(stripe_customer_id=stripe_customer_id, email=attempt.recovery_email)


# --- Applying a subscription state ------------------------------------------------------------------
def _state_is_newer(customer: Customer, subscription: dict, state_at: datetime | None) -> tuple[bool, str]:
    """(apply?, why not). state_at None means a fresh re-read from Stripe: always current."""
    incoming_status = subscription.get("status") or ""
    watermark = customer.subscription_state_at
    if customer.subscription_id and customer.subscription_id != subscription.get("id"):
        # One subscription per customer: another one takes over only once the current one has ended
        # (a second live subscription would otherwise flip the customer back and forth).
        if customer.subscription_status not in ENDED:
            return False, "the customer's current subscription is still live"
        if incoming_status not in ENDED:
            return True, ""
    if state_at is None or watermark is None:
        return True, ""
    if state_at < watermark:
        return False, "older than the state already applied"
    if customer.subscription_id == subscription.get("id"):
        if customer.subscription_status in ENDED and incoming_status not in ENDED:
            return False, "a canceled subscription does not come back"
        period_end = so.subscription_period_end(subscription)
        if state_at == watermark and period_end and customer.current_period_end and period_end < customer.current_period_end:
            return False, "same moment, earlier period"
    return True, ""


def customer_apply_subscription(*, customer: Customer, subscription: dict, state_at: datetime | None,
                                actor_type: str = STRIPE, actor: str = "", force: bool = False) -> tuple[Customer, bool]:
    """Make the customer's subscription fields match `subscription` (a Stripe object as of `state_at`;
    None = just re-read). Returns (customer, applied). Older states are ignored unless `force`."""
    # No savepoint inside the webhook worker's transaction (two round trips per event): an error here
    # fails the whole event anyway.
    with transaction.atomic(savepoint=False):
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if not force:
            newer, why = _state_is_newer(customer, subscription, state_at)
            if not newer:
                log.info("subscription %s state at %s ignored for customer %s: %s", subscription.get("id"),
                         state_at, customer.pk, why)
                return customer, False
        status = subscription.get("status") or ""
        price_id = so.subscription_price_id(subscription)
        replaced = customer.subscription_id and customer.subscription_id != subscription.get("id")
        wanted = {
            "subscription_id": subscription.get("id") or "",
            "subscription_status": status,
            "price_id": price_id or customer.price_id,
            "plan": plan_for_price(price_id) or so.metadata(subscription).get(so.PLAN_KEY, "") or customer.plan,
            "current_period_end": so.subscription_period_end(subscription),
            "cancel_at_period_end": so.subscription_cancel_at_period_end(subscription),
            "collection_paused": bool(subscription.get("pause_collection")),
            "trial_end": so.to_datetime(subscription.get("trial_end")) if status == SubscriptionStatus.TRIALING else None,
            "quantity": so.subscription_quantity(subscription),
        }
        # The discount has its own watermark and rules (discounts.py): None leaves the one kept.
        discount = subscription_discount_wanted(customer, subscription, state_at)
        if discount is not None:
            wanted["discount"] = discount
            subscription_discount_stamp(customer, state_at)
        changes = {k: [str(getattr(customer, k) or ""), str(v or "")] for k, v in wanted.items() if getattr(customer, k) != v}
        for key, value in wanted.items():
            setattr(customer, key, value)
        if state_at and (customer.subscription_state_at is None or state_at > customer.subscription_state_at):
            customer.subscription_state_at = state_at
        elif state_at is None and customer.subscription_state_at is None:
            customer.subscription_state_at = so.subscription_state_time(subscription)
        customer.save(update_fields=[*SUBSCRIPTION_FIELDS, "subscription_state_at", "discount_state_at", "updated_at"])
        if changes:
            audit_log(actor_type=actor_type, actor=actor, action="customer.subscription_changed", target=customer,
                      data={"subscription": wanted["subscription_id"], "changes": changes})
        if status in ENDED:
            customer_set_access_state(customer=customer, state=Customer.AccessState.CANCELED, actor_type=actor_type,
                                      actor=actor, reason=f"subscription {status}")
        elif customer.access_state == Customer.AccessState.CANCELED and (replaced or "subscription_status" in changes):
            # A new (or revived) paid subscription gives access back; dunning locks are not touched here.
            customer_set_access_state(customer=customer, state=Customer.AccessState.ACTIVE, actor_type=actor_type,
                                      actor=actor, reason=f"subscription {status}")
        customer.refresh_from_db()
    return customer, True


def subscription_event_apply(*, subscription: dict, state_at: datetime | None) -> Customer | None:
    """customer.subscription.* : find (or create) the customer, then apply with the watermark."""
    customer = subscription_customer_ensure(subscription)
    if customer is None:
        return None
    customer, _ = customer_apply_subscription(customer=customer, subscription=subscription, state_at=state_at,
                                              actor="webhook")
    return customer


# A re-read is stamped with the console's clock, events with Stripe's: closer than this, their order is
# not known, and a differing snapshot makes the worker ask Stripe instead of guessing.
CUSTOMER_CLOCK_SKEW = timedelta(seconds=5)


def _needs_reread(customer: Customer, stripe_customer: dict, state_at: datetime | None) -> bool:
    watermark = customer.stripe_customer_state_at
    return (state_at is not None and watermark is not None
            and watermark - CUSTOMER_CLOCK_SKEW <= state_at <= watermark + CUSTOMER_CLOCK_SKEW
            and not _same_contact(customer, stripe_customer))


def customer_stripe_update_reread(*, stripe_customer: dict, state_at: datetime | None) -> dict | None:
    """The Stripe customer as it is now, when a customer.updated snapshot cannot be ordered against the
    watermark (see customer_stripe_update_apply); else None. A network call: make it before any
    transaction (the webhook worker runs it as the event's preparer)."""
    customer = Customer.objects.filter(stripe_customer_id=stripe_customer.get("id") or "").first()
    if customer is None or stripe_customer.get("deleted") or not _needs_reread(customer, stripe_customer, state_at):
        return None
    return stripe_gateway.customer_retrieve(stripe_customer["id"])


def customer_stripe_update_apply(*, stripe_customer: dict, state_at: datetime | None, current: dict | None = None,
                                 may_read_stripe: bool = True) -> Customer | None:
    """customer.updated: keep email and name as Stripe has them. The event's object is a snapshot as of
    `state_at`, compared with the customer's watermark (the time of the newest snapshot or re-read
    applied): clearly older is ignored, clearly newer is applied as is, and a differing snapshot
    within CUSTOMER_CLOCK_SKEW of it is settled by the customer as Stripe has it now: `current`
    (read before the transaction by customer_stripe_update_reread), else read here when
    `may_read_stripe` (a direct call, outside any transaction)."""
    customer = Customer.objects.filter(stripe_customer_id=stripe_customer.get("id") or "").first()
    if customer is None or stripe_customer.get("deleted"):
        return customer
    watermark = customer.stripe_customer_state_at
    if state_at is not None and watermark is not None and state_at < watermark - CUSTOMER_CLOCK_SKEW:
        log.info("customer %s: Stripe customer at %s ignored, older than %s", customer.pk, state_at, watermark)
        return customer
    if _needs_reread(customer, stripe_customer, state_at):
        if current is None and may_read_stripe:
            current = stripe_gateway.customer_retrieve(stripe_customer["id"])
        if current is None:
            # The watermark moved since the worker's read: retried, read again before the transaction.
            raise ServiceError("retry", f"Stripe customer {stripe_customer.get('id')} needs a fresh read first.")
        return customer_apply_stripe_customer(customer=customer, stripe_customer=current, state_at=None)
    return customer_apply_stripe_customer(customer=customer, stripe_customer=stripe_customer, state_at=state_at)


def _contact(stripe_customer: dict) -> tuple[str, str]:
    return (stripe_customer.get("email") or "").strip().lower(), (stripe_customer.get("name") or "").strip()[:200]


def _same_contact(customer: Customer, stripe_customer: dict) -> bool:
    email, name = _contact(stripe_customer)
    phone = (stripe_customer.get("phone") or "").strip() if isinstance(stripe_customer.get("phone"), str) else ""
    same_phone = not phone or phone_e164(phone) == customer.phone or phone[:64] == customer.phone_invalid
    return (not email or email == customer.email) and (not name or name == customer.name) and same_phone


def customer_apply_stripe_customer(*, customer: Customer, stripe_customer: dict, state_at: datetime | None = None,
                                   actor_type: str = STRIPE, actor: str = "") -> Customer:
    """Take email, name and phone from a Stripe customer object (as of `state_at`; None = just re-read, so as of
    now) and move the watermark forward. An email another console customer holds is kept, and the
    conflict audited."""
    email, name = _contact(stripe_customer)
    with transaction.atomic(savepoint=False):  # as in customer_apply_subscription
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        watermark = customer.stripe_customer_state_at
        if state_at is not None and watermark is not None and state_at < watermark:
            return customer  # a newer snapshot landed while this one waited for the lock
        # A re-read is current as of now: no event from before it may overwrite it.
        state_at = state_at or timezone.now()
        changes = {}
        if email and email != customer.email:
            if Customer.objects.filter(email__iexact=email).exclude(pk=customer.pk).exists():
                log.warning("customer %s: Stripe email belongs to another customer; email kept", customer.pk)
                audit_log(actor_type=actor_type, actor=actor, action="customer.email_conflict", target=customer,
                          data={"stripe_customer": stripe_customer.get("id")})
            else:
                changes["email"] = [customer.email, email]
                customer.email = email
        if name and name != customer.name:
            changes["name"] = [customer.name, name]
            customer.name = name
        fields = ["email", "name"] if changes else []
        # Stripe's phone (normalised to E.164; an invalid one is recorded, never a failed event).
        fields += customer_apply_stripe_phone(customer=customer, raw=stripe_customer.get("phone"),
                                              actor=actor or "webhook", source="stripe_customer")
        if watermark is None or state_at > watermark:
            customer.stripe_customer_state_at = state_at
            fields.append("stripe_customer_state_at")
        if fields:
            customer.save(update_fields=[*fields, "updated_at"])
        if changes:
            audit_log(actor_type=actor_type, actor=actor, action="customer.updated_from_stripe", target=customer,
                      data={"changes": changes})
    return customer


# --- Resync ---------------------------------------------------------------------------------------
def customer_resync(*, customer: Customer, actor_type: str, actor: str = "") -> Customer:
    """Re-read the customer and their subscription from Stripe and apply them as current (support's
    "resync from Stripe"; reconciliation's fix). Raises StripeGatewayError when Stripe cannot answer."""
    subscription = None
    if customer.subscription_id:
        subscription = stripe_gateway.subscription_retrieve(customer.subscription_id, expand=DISCOUNTS_EXPANDED)
    if customer.stripe_customer_id:
        stripe_customer = stripe_gateway.customer_retrieve(customer.stripe_customer_id)
        if not stripe_customer.get("deleted"):
            customer = customer_apply_stripe_customer(customer=customer, stripe_customer=stripe_customer,
                                                      actor_type=actor_type, actor=actor)
        if subscription is None or subscription.get("status") in ENDED:
            # The newest live subscription of this Stripe customer, if there is one.
            expand = [f"data.{path}" for path in DISCOUNTS_EXPANDED]
            live = next(iter(stripe_gateway.subscriptions_list({"customer": customer.stripe_customer_id,
                                                                "expand": expand})), None)
            subscription = live or subscription
    if subscription is not None:
        customer, _ = customer_apply_subscription(customer=customer, subscription=subscription, state_at=None,
                                                  actor_type=actor_type, actor=actor, force=True)
    with transaction.atomic():
        audit_log(actor_type=actor_type, actor=actor, action="customer.resynced", target=customer,
                  data={"subscription": customer.subscription_id, "status": customer.subscription_status,
                        "at": timezone.now().isoformat()})
    return customer
