"""The checkout switch: whether the console sells right now.

Sales are open when `CHECKOUT_ENABLED` (settings) is true and the switch row (support's toggle in the
admin) is open. In live mode a NO_GO preflight closes the switch by itself (the `preflight` command
and the `checkout_preflight_guard` cron), and reopening it is refused until preflight says GO: reference
001's "do not expose checkout publicly until deployability is no longer NO_GO". Closing never reopens
by itself; a person opens sales again.

The rollback's first step ("disable public checkout links first") is `checkout_close` followed by
`checkout_sessions_expire_open`, which expires every Checkout Session still open at Stripe.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, CheckoutAttempt, CheckoutSwitch
from billing_console.services import audit_log

log = logging.getLogger("billing_console.checkout")

CLOSED_MESSAGE = "Sales are paused at the moment. Please try again later."
MAX_REASON = 255


class CheckoutClosed(ServiceError):
    code = "CHECKOUT_CLOSED"

    def __init__(self, message: str = CLOSED_MESSAGE):
        super().__init__("CHECKOUT_CLOSED", message)


def checkout_switch_get() -> CheckoutSwitch:
    switch, _ = CheckoutSwitch.objects.get_or_create(pk=CheckoutSwitch.SINGLETON)
    return switch


def checkout_is_open() -> bool:
    if not settings.CHECKOUT_ENABLED:
        return False
    row = CheckoutSwitch.objects.filter(pk=CheckoutSwitch.SINGLETON).values_list("is_open", flat=True).first()
    return row is None or row


def checkout_ensure_open() -> None:
    """Raise CheckoutClosed when sales are paused (the API answers 503, the pricing page says so)."""
    if not checkout_is_open():
        raise CheckoutClosed()


def _set(*, is_open: bool, reason: str, actor_type: str, actor: str) -> CheckoutSwitch:
    with transaction.atomic():
        checkout_switch_get()
        switch = CheckoutSwitch.objects.select_for_update().get(pk=CheckoutSwitch.SINGLETON)
        if switch.is_open == is_open:
            return switch
        switch.is_open, switch.reason = is_open, reason[:MAX_REASON]
        switch.changed_by, switch.changed_at = f"{actor_type}:{actor}"[:255], timezone.now()
        switch.save()
        audit_log(actor_type=actor_type, actor=actor, action="checkout.opened" if is_open else "checkout.closed",
                  target=switch, data={"reason": switch.reason, "checkout_enabled_setting": settings.CHECKOUT_ENABLED})
    log.warning("checkout %s by %s:%s: %s", "opened" if is_open else "closed", actor_type, actor, reason,
                extra={"event": "checkout_opened" if is_open else "checkout_closed", "reason": reason})
    return switch


def checkout_close(*, reason: str, actor_type: str, actor: str = "") -> CheckoutSwitch:
    """Pause sales. Audited; no-op when already closed."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("invalid", "Say why checkout is being closed (it is shown to support and kept in the audit log).")
    return _set(is_open=False, reason=reason, actor_type=actor_type, actor=actor)


def checkout_open(*, actor_type: str, actor: str = "", reason: str = "") -> CheckoutSwitch:
    """Reopen sales. Refused while CHECKOUT_ENABLED is false, and in live mode while preflight is NO_GO."""
    from billing_console.ops.checks import preflight_problems

    if not settings.CHECKOUT_ENABLED:
        raise ServiceError("disabled_by_setting", "CHECKOUT_ENABLED is false in the settings: opening the switch "
                                                  "would not reopen sales. Change the setting first.")
    if settings.STRIPE_LIVE_MODE:
        problems = preflight_problems("live")
        if problems:
            raise ServiceError("preflight_no_go", f"Preflight is NO_GO in live mode ({_ids(problems)}); run "
                                                  "manage.py preflight and fix the blockers first.")
    return _set(is_open=True, reason=(reason or "").strip() or "opened", actor_type=actor_type, actor=actor)


def _ids(problems) -> str:
    return ", ".join(pid for pid, _ in problems)


def checkout_close_on_no_go(*, problems: list[tuple[str, str]], actor_type: str, actor: str) -> CheckoutSwitch | None:
    """Live mode with preflight blockers: close sales. Returns the switch when it closed it now."""
    if not settings.STRIPE_LIVE_MODE or not problems or not checkout_is_open():
        return None
    return checkout_close(reason=f"preflight NO_GO in live mode: {_ids(problems)}"[:MAX_REASON],
                          actor_type=actor_type, actor=actor)


def checkout_preflight_guard_cron() -> None:
    """django-q2 entry point of the "checkout_preflight_guard" schedule (live mode only does anything)."""
    from billing_console.ops.checks import preflight_problems
    from billing_console.services import cron_guard

    with cron_guard("checkout_preflight_guard") as run:
        if run is None:
            return
        problems = preflight_problems("live") if settings.STRIPE_LIVE_MODE else []
        closed = checkout_close_on_no_go(problems=problems, actor_type=AuditEvent.ActorType.CRON,
                                         actor="checkout_preflight_guard")
        run.counts = {"blockers": len(problems), "closed": int(closed is not None), "open": int(checkout_is_open())}


def checkout_sessions_expire_open(*, actor_type: str, actor: str = "") -> dict:
    """Expire every Checkout Session still open at Stripe (outside any transaction), so no link already
    handed out can still take a payment. Their attempts get no "complete your purchase" email."""
    from billing_console.stripe import gateway as stripe_gateway

    session_ids: list[str] = []
    params: dict = {"status": "open", "limit": 100}
    while True:  # every id first: an expired session leaves the "open" list, which would break the paging
        page = stripe_gateway.list_page("checkout_sessions", params)
        data = page.get("data") or []
        session_ids += [s["id"] for s in data if s.get("status") == "open"]
        if not page.get("has_more") or not data:
            break
        params = {**params, "starting_after": data[-1]["id"]}
    with transaction.atomic():
        CheckoutAttempt.objects.filter(stripe_session_id__in=session_ids, status=CheckoutAttempt.Status.PENDING,
                                       follow_up_status=CheckoutAttempt.FollowUp.NONE).update(
            follow_up_status=CheckoutAttempt.FollowUp.SKIPPED)
    counts = {"open": len(session_ids), "expired": 0, "failed": 0}
    errors: list[str] = []
    for session_id in session_ids:
        try:
            stripe_gateway.checkout_session_expire(session_id, idempotency_key=f"bc-expire-{session_id}")
        except stripe_gateway.StripeGatewayError as exc:  # paid or expired meanwhile, or Stripe failed: reported
            counts["failed"] += 1
            errors.append(f"{session_id}: {exc.message}")
            continue
        counts["expired"] += 1
    with transaction.atomic():
        audit_log(actor_type=actor_type, actor=actor, action="checkout.sessions_expired",
                  target_type="billing_console.checkoutswitch", target_id=str(CheckoutSwitch.SINGLETON),
                  data={**counts, "errors": errors[:20]})
    counts["errors"] = errors
    return counts
