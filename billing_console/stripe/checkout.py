"""Checkout: a pending attempt before Stripe is called, then paid or abandoned from Stripe's events.

The attempt's token travels in the session's metadata, its `client_reference_id` and the
subscription's metadata, so every later event (and `rebuild_from_stripe`) finds it again.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing_console import ratelimit
from billing_console.errors import ServiceError
from billing_console.manage_links import manage_link_delivery_request
from billing_console.models import AuditEvent, CheckoutAttempt, Customer
from billing_console.phones import customer_apply_stripe_phone, whatsapp_configured
from billing_console.services import audit_log
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe import objects as so
from billing_console.stripe.discounts import EXPAND as DISCOUNTS_EXPANDED
from billing_console.stripe.subscriptions import customer_apply_subscription, customer_link_stripe

log = logging.getLogger("billing_console.checkout")

STRIPE = AuditEvent.ActorType.STRIPE
DEVICE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class CheckoutInputError(ServiceError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("INVALID_INPUT", "; ".join(f"{k}: {v}" for k, v in errors.items()), fields=errors)
        self.errors = errors


class PlanNotAvailable(ServiceError):
    """The plan exists but has no Stripe price configured yet: "coming soon"."""

    def __init__(self, plan: str):
        super().__init__("PLAN_NOT_AVAILABLE", f"The {settings.PLANS[plan]['name']} plan is coming soon.")
        self.plan = plan


class CheckoutStripeFailed(ServiceError):
    def __init__(self, attempt: CheckoutAttempt, message: str):
        super().__init__("STRIPE_ERROR", message)
        self.attempt = attempt


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def checkout_rate_limit(*, client: str, email) -> int:
    """Count one checkout request (before validation) per client address and, when the request names one, per
    email; returns seconds to wait (0: allowed). Each checkout opens a Stripe session and may email the address."""
    limits = [(ratelimit.bucket("checkout-client", client), settings.CHECKOUT_RATE_LIMIT_PER_CLIENT)]
    if isinstance(email, str) and email.strip():
        limits.append((ratelimit.bucket("checkout-email", email.strip().lower()), settings.CHECKOUT_RATE_LIMIT_PER_EMAIL))
    return ratelimit.hit(limits, window=settings.CHECKOUT_RATE_LIMIT_WINDOW_SECONDS)


def checkout_input_clean(data) -> dict:
    """Validate the checkout request body. Raises CheckoutInputError (field -> message) or PlanNotAvailable."""
    if not isinstance(data, dict):
        raise CheckoutInputError({"body": "Send a JSON object with email and plan (or price)."})
    errors: dict[str, str] = {}

    def text(name: str, max_length: int) -> str:
        value = data.get(name, "")
        if value is None:
            return ""
        if not isinstance(value, str):
            errors[name] = "Must be a string."
            return ""
        value = value.strip()
        if len(value) > max_length:
            errors[name] = f"At most {max_length} characters."
        return value

    email = text("email", 254).lower()
    plan = text("plan", 32)
    price = text("price", 255)
    device_id = text("device_id", 128) or text("deviceId", 128)
    if "email" not in errors:
        if not email:
            errors["email"] = "Enter your email address."
        else:
            try:
                validate_email(email)
            except ValidationError:
                errors["email"] = "Enter a valid email address."
    if device_id and "device_id" not in errors and not DEVICE_ID.match(device_id):
        errors["device_id"] = "Letters, digits and . _ : - only."
    price_id = ""
    if not errors.get("plan") and not errors.get("price"):
        if plan and plan not in settings.PLANS:
            errors["plan"] = f"Unknown plan. Choose one of: {', '.join(settings.PLANS)}."
        elif price:
            by_price = {p["price_id"]: code for code, p in settings.PLANS.items() if p["price_id"]}
            if price not in by_price:
                errors["price"] = "This price is not sold here."
            elif plan and by_price[price] != plan:
                errors["price"] = "This price belongs to another plan."
            else:
                plan, price_id = by_price[price], price
        elif not plan:
            errors["plan"] = "Choose a plan."
    if errors:
        raise CheckoutInputError(errors)
    price_id = price_id or settings.PLANS[plan]["price_id"]
    if not price_id:
        raise PlanNotAvailable(plan)
    return {"email": email, "plan": plan, "price_id": price_id, "device_id": device_id}


def checkout_line_items(plan: str, price_id: str) -> list[dict]:
    """The flat price, and the plan's metered price beside it (no quantity: usage decides the amount)."""
    items = [{"price": price_id, "quantity": 1}]
    usage_price_id = settings.PLANS.get(plan, {}).get("usage_price_id")
    if usage_price_id:
        items.append({"price": usage_price_id})
    return items


def checkout_start(*, email: str, plan: str, price_id: str, device_id: str = "") -> tuple[CheckoutAttempt, str]:
    """Create the pending attempt (committed before Stripe is called), then the Checkout Session.
    Returns (attempt, checkout URL). Raises CheckoutStripeFailed (the attempt stays, for support)."""
    with transaction.atomic():
        attempt = CheckoutAttempt(plan=plan, price_id=price_id, device_id=device_id, email_hint=mask_email(email))
        attempt.recovery_email = email
        attempt.save(force_insert=True)
        audit_log(actor_type=AuditEvent.ActorType.API, actor="checkout", action="checkout.started", target=attempt,
                  data={"plan": plan, "price": price_id, "email_hint": attempt.email_hint})

    known = Customer.objects.filter(email__iexact=email).exclude(stripe_customer=None).first()
    token_data = {so.CHECKOUT_TOKEN_KEY: attempt.token, so.PLAN_KEY: plan}
    if device_id:
        token_data["device_id"] = device_id
    params = {
        "mode": "subscription",
        "line_items": checkout_line_items(plan, price_id),
        "client_reference_id": attempt.token,
        "metadata": token_data,
        "subscription_data": {"metadata": token_data},
        "success_url": settings.BILLING_SUCCESS_URL,
        "cancel_url": settings.BILLING_CANCEL_URL,
    }
    if whatsapp_configured():
        # Two of the default dunning steps are WhatsApp: ask for the number while the customer is here.
        params["phone_number_collection"] = {"enabled": True}
    if known:
        params["customer"] = known.stripe_customer_id
    else:
        params["customer_email"] = email
    try:
        # The attempt id makes the key: a retried request can never open a second session.
        session = stripe_gateway.checkout_session_create(params=params, idempotency_key=f"bc-checkout-{attempt.pk}")
    except stripe_gateway.StripeGatewayError as exc:
        with transaction.atomic():
            audit_log(actor_type=AuditEvent.ActorType.API, actor="checkout", action="checkout.stripe_failed",
                      target=attempt, data={"error": exc.message, "code": exc.code})
        raise CheckoutStripeFailed(attempt, exc.message) from None
    CheckoutAttempt.objects.filter(pk=attempt.pk).update(stripe_session_id=session["id"])
    attempt.stripe_session_id = session["id"]
    return attempt, session["url"]


def _attempt_for_session(session: dict) -> CheckoutAttempt | None:
    token = so.checkout_token(session)
    query = CheckoutAttempt.objects.select_for_update()
    attempt = query.filter(token=token).first() if token else None
    if attempt is None and session.get("id"):
        attempt = query.filter(stripe_session_id=session["id"]).first()
    return attempt


def checkout_session_subscription(session: dict) -> dict | None:
    """The subscription a completed session needs applied, read from Stripe when the event only names it
    and no customer holds it yet. Call outside any transaction (it is a network call)."""
    subscription = session.get("subscription")
    if isinstance(subscription, dict) or session.get("mode") not in (None, "subscription"):
        return subscription if isinstance(subscription, dict) else None
    sub_id = so.obj_id(subscription)
    if not sub_id or Customer.objects.filter(subscription_id=sub_id).exists():
        return None
    return stripe_gateway.subscription_retrieve(sub_id, expand=DISCOUNTS_EXPANDED)  # with its discounts' coupons


def checkout_session_complete(*, session: dict, event_created: datetime | None,
                              subscription: dict | None = None) -> Customer | None:
    """checkout.session.completed: attempt paid, customer created or linked, subscription applied,
    manage link emailed (once, when the attempt turns paid). `subscription` is the session's
    subscription as read before the transaction; when not given it is read here, before any lock."""
    if session.get("mode") not in (None, "subscription"):
        return None
    if subscription is None:
        subscription = checkout_session_subscription(session)
    with transaction.atomic():
        attempt = _attempt_for_session(session)
        email = so.session_email(session) or (attempt.recovery_email if attempt else "")
        stripe_customer_id = so.obj_id(session.get("customer"))
        sub_id = so.obj_id(session.get("subscription"))
        known = (bool(stripe_customer_id) and Customer.objects.filter(stripe_customer_id=stripe_customer_id).exists()) \
            or (bool(sub_id) and Customer.objects.filter(subscription_id=sub_id).exists())
        if not email and not known:
            # Nothing names a customer (no email, no known ids): nothing to link; a later subscription
            # event (or support, from the unlinked list) attaches it.
            log.warning("checkout session %s completed without an email or a known customer: not linked",
                        session.get("id"), extra={"event": "checkout_unlinkable"})
            return None
        customer = customer_link_stripe(stripe_customer_id=stripe_customer_id, email=email, subscription_id=sub_id,
                                        name=so.session_name(session), actor="webhook")
        phone_fields = customer_apply_stripe_phone(customer=customer, raw=so.session_phone(session), actor="webhook",
                                                   source="checkout")
        if phone_fields:
            customer.save(update_fields=[*phone_fields, "updated_at"])
        newly_paid = False
        if attempt is not None and attempt.status != CheckoutAttempt.Status.PAID:
            previous = attempt.status
            attempt.status = CheckoutAttempt.Status.PAID
            attempt.customer = customer
            attempt.completed_at = timezone.now()
            attempt.stripe_session_id = attempt.stripe_session_id or session.get("id")
            attempt.save(update_fields=["status", "customer", "completed_at", "stripe_session_id"])
            audit_log(actor_type=STRIPE, actor="webhook", action="checkout.paid", target=attempt, customer=customer,
                      data={"from": previous, "session": session.get("id")})
            newly_paid = True

        newly_linked = bool(sub_id) and customer.subscription_id != sub_id
        if newly_linked:
            if subscription is None:
                # Another console customer took this subscription id after the read: retried later, read again.
                raise ServiceError("retry", f"Subscription {sub_id} was not read from Stripe before the transaction.")
            customer, _ = customer_apply_subscription(customer=customer, subscription=subscription,
                                                      state_at=event_created, actor="webhook")
        if newly_paid or (attempt is None and newly_linked):
            # Tracked and retried with backoff; the row commits with the payment, the send runs after.
            manage_link_delivery_request(customer=customer, reason="checkout", actor_type=STRIPE, actor="webhook")
    return customer


def checkout_session_expire_apply(*, session: dict) -> CheckoutAttempt | None:
    """checkout.session.expired: attempt abandoned, one follow-up email queued to the recovery address."""
    with transaction.atomic():
        attempt = _attempt_for_session(session)
        if attempt is None or attempt.status != CheckoutAttempt.Status.PENDING:
            return attempt
        attempt.status = CheckoutAttempt.Status.ABANDONED
        attempt.completed_at = timezone.now()
        if attempt.follow_up_status == CheckoutAttempt.FollowUp.NONE:
            attempt.follow_up_status = (CheckoutAttempt.FollowUp.QUEUED if attempt.recovery_email_encrypted
                                        else CheckoutAttempt.FollowUp.SKIPPED)
        attempt.save(update_fields=["status", "completed_at", "follow_up_status"])
        audit_log(actor_type=STRIPE, actor="webhook", action="checkout.abandoned", target=attempt,
                  data={"session": session.get("id"), "follow_up": attempt.follow_up_status})
        if attempt.follow_up_status == CheckoutAttempt.FollowUp.QUEUED:
            attempt_id = attempt.pk
            transaction.on_commit(lambda: _enqueue("billing_console.stripe.tasks.checkout_follow_up_send", str(attempt_id)))
    return attempt


def checkout_follow_up_send(*, attempt_id) -> str:
    """Send the abandoned-checkout email at most once: the queued -> sent claim happens before the send."""
    claimed = CheckoutAttempt.objects.filter(pk=attempt_id, follow_up_status=CheckoutAttempt.FollowUp.QUEUED).update(
        follow_up_status=CheckoutAttempt.FollowUp.SENT, follow_up_sent_at=timezone.now())
    if not claimed:
        return "skipped"
    attempt = CheckoutAttempt.objects.get(pk=attempt_id)
    from billing_console.stripe.switch import checkout_is_open

    if not checkout_is_open():  # the email invites the buyer back to a pricing page that sells nothing now
        CheckoutAttempt.objects.filter(pk=attempt_id).update(follow_up_status=CheckoutAttempt.FollowUp.SKIPPED,
                                                             follow_up_sent_at=None)
        with transaction.atomic():
            audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action="checkout.follow_up_skipped",
                      target=attempt, data={"reason": "checkout_closed", "to": attempt.email_hint})
        return "skipped"
    if not _follow_up_address_claim(attempt.recovery_email):
        CheckoutAttempt.objects.filter(pk=attempt_id).update(follow_up_status=CheckoutAttempt.FollowUp.SKIPPED,
                                                             follow_up_sent_at=None)
        with transaction.atomic():
            audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action="checkout.follow_up_skipped",
                      target=attempt, data={"reason": "one_per_address_per_day", "to": attempt.email_hint})
        return "skipped"
    context = {"plan_name": settings.PLANS.get(attempt.plan, {}).get("name", attempt.plan),
               "pricing_url": settings.PRICING_URL}
    try:
        _send("checkout_follow_up", attempt.recovery_email, context)
    except Exception as exc:
        CheckoutAttempt.objects.filter(pk=attempt_id).update(follow_up_status=CheckoutAttempt.FollowUp.FAILED)
        with transaction.atomic():
            audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action="checkout.follow_up_failed",
                      target=attempt, data={"error": type(exc).__name__})
        log.warning("follow-up email for checkout %s failed: %s", attempt.pk, type(exc).__name__)
        return "failed"
    with transaction.atomic():
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action="checkout.follow_up_sent",
                  target=attempt, data={"to": attempt.email_hint})
    return "sent"


def _follow_up_address_claim(email: str) -> bool:
    """One abandoned-checkout email per address per day, whatever the number of attempts: the first claim of
    the day wins (an atomic add in the shared cache, keyed by a hash of the address)."""
    from django.core.cache import cache

    try:
        return cache.add(f"bc:follow-up:{ratelimit.bucket('email', email.strip().lower())}", 1, timeout=24 * 3600)
    except Exception as exc:  # the cache is down: the follow-up still goes, as the rate limits fail open
        log.warning("follow-up address claim unavailable: %s", type(exc).__name__)
        return True


def customer_email_changed_notice_send(*, customer_id: int, old_email: str) -> str:
    """Tell the old address that the account's email was changed (it may not have been its owner's doing).
    The new address is not named and no link is included: the notice must not help whoever made the change."""
    customer = Customer.objects.get(pk=customer_id)
    _send("customer_email_changed", old_email, {"customer": customer, "site_name": settings.SITE_NAME})
    with transaction.atomic():
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action="customer.email_change_notice_sent",
                  target=customer, data={"to": mask_email(old_email)})
    return "sent"


def _send(template: str, to: str, context: dict) -> None:
    subject = render_to_string(f"emails/{template}_subject.txt", context).strip()
    text = render_to_string(f"emails/{template}.txt", context)
    html = render_to_string(f"emails/{template}.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to],
                                     reply_to=[settings.SUPPORT_EMAIL] if settings.SUPPORT_EMAIL else None)
    message.attach_alternative(html, "text/html")
    message.send()


def _enqueue(func: str, *args) -> None:
    from django_q.tasks import async_task

    async_task(func, *args)
