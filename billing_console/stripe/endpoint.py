"""The console's webhook endpoint in Stripe: registered through the API, checked by preflight.

    webhook_endpoint_sync()      create or update ours (SITE_URL/api/billing/webhook) so that Stripe sends
                                 exactly the event types the console needs, in the pinned API version
    webhook_endpoint_problems()  what preflight blocks on: ours missing, disabled, elsewhere, short of a
                                 handled type; short of a mirror-only type is a warning (BC056)

The event types are those the receivers handle (billing_console.stripe.dispatch), so a new receiver
needs no list edited, plus every type whose object dj-stripe's mirror keeps, as STRIPE_DJSTRIPE_SYNC
selects them (billing_console.stripe.mirror.MIRROR_EVENT_TYPES): charge.succeeded,
payment_method.attached... have no receiver, are stored and ignored by the console, and are mirrored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from billing_console.stripe import dispatch, gateway

# Set on the endpoint we create: finds it again after SITE_URL changes (we update its URL instead of
# leaving Stripe calling the old host).
MARK_KEY = "billing_console"
MARK_VALUE = "webhook"


def webhook_endpoint_url() -> str:
    return f"{settings.SITE_URL}/api/billing/webhook"


def webhook_event_types() -> list[str]:
    """Every type a receiver is registered for, and every type dj-stripe's mirror is set to take; sorted."""
    from billing_console.stripe.mirror import mirror_event_types

    return sorted(set(dispatch.handled_event_types()) | set(mirror_event_types()))


def _ours(endpoints: list[dict]) -> dict | None:
    url = webhook_endpoint_url()
    at_url = [e for e in endpoints if e.get("url") == url]
    if at_url:  # an enabled one first: a disabled twin at the same URL does not hide the live one
        return sorted(at_url, key=lambda e: e.get("status") != "enabled")[0]
    marked = [e for e in endpoints if (e.get("metadata") or {}).get(MARK_KEY) == MARK_VALUE]
    return marked[0] if marked else None


@dataclass
class EndpointSync:
    outcome: str  # created | updated | unchanged
    endpoint: dict
    secret: str = ""  # only on create: Stripe shows it once
    changed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def webhook_endpoint_sync(*, actor: str = "setup_webhook_endpoint") -> EndpointSync:
    """Create or update the console's endpoint in Stripe. Idempotent; raises StripeGatewayError."""
    url, events = webhook_endpoint_url(), webhook_event_types()
    endpoint = _ours(gateway.webhook_endpoints_list())
    if endpoint is None:
        created = gateway.webhook_endpoint_create(params={
            "url": url, "enabled_events": events, "api_version": settings.STRIPE_API_VERSION,
            "description": f"{settings.SITE_NAME} (managed by manage.py setup_webhook_endpoint)",
            "metadata": {MARK_KEY: MARK_VALUE},
        }, idempotency_key=gateway.new_idempotency_key("webhook-endpoint"))
        secret = created.pop("secret", "") or ""
        result = EndpointSync("created", created, secret=secret, changed=["url", "enabled_events", "api_version"])
    else:
        params: dict = {}
        if endpoint.get("url") != url:
            params["url"] = url
        if sorted(endpoint.get("enabled_events") or []) != events:
            params["enabled_events"] = events
        if endpoint.get("status") != "enabled":
            params["disabled"] = False
        if (endpoint.get("metadata") or {}).get(MARK_KEY) != MARK_VALUE:
            params["metadata"] = {MARK_KEY: MARK_VALUE}
        if params:
            endpoint = gateway.webhook_endpoint_update(endpoint["id"], params=params,
                                                       idempotency_key=gateway.new_idempotency_key("webhook-endpoint"))
        result = EndpointSync("updated" if params else "unchanged", endpoint,
                              changed=sorted("status" if k == "disabled" else k for k in params))
    version = result.endpoint.get("api_version")
    if version and version != settings.STRIPE_API_VERSION:
        result.warnings.append(
            f"The endpoint sends events in API version {version}, the console is pinned to "
            f"{settings.STRIPE_API_VERSION}. Stripe cannot change an endpoint's version: delete the endpoint "
            "in Stripe's dashboard and run this command again (it prints the new signing secret).")
    if result.outcome != "unchanged":
        _audit(result, actor)
    return result


def _audit(result: EndpointSync, actor: str) -> None:
    from billing_console.models import AuditEvent

    with transaction.atomic():
        # The endpoint is Stripe's object, not a row of ours: the audit names it by its Stripe id.
        AuditEvent.objects.create(actor_type=AuditEvent.ActorType.SYSTEM, actor=actor,
                                  action=f"webhook_endpoint.{result.outcome}", target_type="stripe.webhook_endpoint",
                                  target_id=result.endpoint.get("id", ""),
                                  data={"url": result.endpoint.get("url"), "changed": result.changed})


def webhook_endpoint_problems(*, warnings: list | None = None) -> list[tuple[str, str]]:
    """Preflight's view of Stripe's endpoints: [(id, message)] of blockers; [] when ours is right.

    A type only the mirror needs is not a blocker: without it the console applies every event it acts on
    and only dj-stripe's tables (support's view, the pricing page's amounts) go stale, so it is appended
    to `warnings` (BC056) instead."""
    try:
        endpoints = gateway.webhook_endpoints_list()
    except gateway.StripeGatewayError as exc:
        return [("BC050", f"Stripe's webhook endpoints cannot be read: {exc.message}")]
    url = webhook_endpoint_url()
    endpoint = _ours(endpoints)
    fix = "run manage.py setup_webhook_endpoint"
    if endpoint is None:
        return [("BC051", f"Stripe has no webhook endpoint at {url} ({fix}).")]
    problems = []
    if endpoint.get("url") != url:
        problems.append(("BC053", f"The console's webhook endpoint in Stripe ({endpoint.get('id')}) points at "
                                  f"{endpoint.get('url')}, not {url} ({fix})."))
    if endpoint.get("status") != "enabled":
        problems.append(("BC052", f"The webhook endpoint {endpoint.get('id')} is disabled in Stripe ({fix})."))
    enabled = set(endpoint.get("enabled_events") or [])
    missing = [t for t in webhook_event_types() if t not in enabled and "*" not in enabled]
    handled = set(dispatch.handled_event_types())
    if blocking := [t for t in missing if t in handled]:
        problems.append(("BC054", f"The webhook endpoint {endpoint.get('id')} does not send "
                                  f"{', '.join(blocking)} ({fix})."))
    if (mirror_only := [t for t in missing if t not in handled]) and warnings is not None:
        warnings.append(("BC056", f"The webhook endpoint {endpoint.get('id')} does not send "
                                  f"{', '.join(mirror_only)}: dj-stripe's mirror misses those objects ({fix})."))
    version = endpoint.get("api_version")
    if version and version != settings.STRIPE_API_VERSION:
        problems.append(("BC055", f"The webhook endpoint {endpoint.get('id')} sends API version {version}, the "
                                  f"console reads {settings.STRIPE_API_VERSION} (delete it in Stripe, then {fix})."))
    return problems
