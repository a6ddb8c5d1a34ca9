"""dj-stripe's mirror of Stripe's billing objects, built from the stored event payloads.

The console never reads its own decisions from the mirror; it is for support pages, the pricing page
and dj-stripe-based tooling. So it runs off the applied path:

    worker applies an event -> same UPDATE sets mirror="due" (when its object type is mirrored)
                            -> on commit, one kick (a cache flag) enqueues webhook_events_mirror
    webhook_events_mirror: due events, oldest Stripe time first, each object once per batch at its
                           newest payload -> Model.sync_from_stripe_data(object)
                           -> mirror="done" (mirrored_at) or "failed" (mirror_error; a warning only);
                           ends within 30 s (django-q2's timeout) and kicks the next run
    cron stripe_events_mirror: the same batch every minute, for a lost kick.

Each object is synced from the payload, never re-read per event; created order means a customer is
mirrored before its subscription, so dj-stripe finds the related row instead of asking the API. A
sync costs more than applying the event (dj-stripe's ORM work), so a burst of updates to one object
is synced once: otherwise the mirror falls behind under a sustained load and never catches up.
Nothing here holds a console row lock: a sync that does call the API (a related object never seen
in an event) only touches dj-stripe's tables.
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from billing_console.models import WebhookEvent
from billing_console.ops.logging import redact

log = logging.getLogger("billing_console.stripe")

KICK_KEY = "bc:stripe-mirror-kick"
RUNNING_KEY = "bc:stripe-mirror-running"
DEFERRED_KEY = "bc:stripe-mirror-deferred"  # a run gave way to a backlog: the drain kicks it once the queue is empty
MIRROR_TASK = "billing_console.stripe.tasks.webhook_events_mirror"

# Stripe object type -> dj-stripe model name. Objects of other types are not mirrored.
MIRRORED_OBJECTS = {
    "customer": "Customer", "subscription": "Subscription", "invoice": "Invoice", "invoiceitem": "InvoiceItem",
    "price": "Price", "product": "Product", "payment_method": "PaymentMethod", "charge": "Charge",
    "refund": "Refund", "dispute": "Dispute", "coupon": "Coupon",
}
# A *.deleted event's object is a stub ({"id", "deleted": true}) for these; the mirror row is removed.
DELETED_REMOVES = {"customer", "invoice", "invoiceitem", "price", "product", "coupon"}
# Every Stripe event type (API 2026 "dahlia") whose object is one the mirror keeps, by that object. The
# webhook endpoint subscribes to those STRIPE_DJSTRIPE_SYNC selects, so dj-stripe sees what the console
# does not handle (charge.succeeded, payment_method.attached...). Left out: invoice.upcoming (its object
# has no id), plan.* (a plan is a price seen through the old API: price.* carries it), and the customer's
# discount, source and tax_id events (objects dj-stripe's mirror does not keep).
MIRROR_EVENT_TYPES = {
    "customer": ("customer.created", "customer.updated", "customer.deleted"),
    "subscription": tuple(f"customer.subscription.{verb}" for verb in (
        "created", "updated", "deleted", "paused", "resumed", "trial_will_end", "pending_update_applied",
        "pending_update_expired")),
    "invoice": tuple(f"invoice.{verb}" for verb in (
        "created", "deleted", "finalization_failed", "finalized", "marked_uncollectible", "overdue", "overpaid",
        "paid", "payment_action_required", "payment_attempt_required", "payment_failed", "payment_succeeded",
        "sent", "updated", "voided", "will_be_due")),
    "invoiceitem": ("invoiceitem.created", "invoiceitem.deleted"),
    "price": ("price.created", "price.updated", "price.deleted"),
    "product": ("product.created", "product.updated", "product.deleted"),
    "payment_method": ("payment_method.attached", "payment_method.automatically_updated", "payment_method.detached",
                       "payment_method.updated"),
    "charge": tuple(f"charge.{verb}" for verb in (
        "captured", "expired", "failed", "pending", "refunded", "succeeded", "updated")),
    "refund": ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"),
    "dispute": tuple(f"charge.dispute.{verb}" for verb in (
        "created", "updated", "closed", "funds_withdrawn", "funds_reinstated")),
    "coupon": ("coupon.created", "coupon.updated", "coupon.deleted"),
}


def mirror_wanted(event_type: str) -> bool:
    """STRIPE_DJSTRIPE_SYNC names the mirrored event types by prefix: "price" takes price.created, price.updated..."""
    return any(p == "*" or event_type == p or event_type.startswith(p.rstrip(".") + ".")
               for p in settings.STRIPE_DJSTRIPE_SYNC)


def mirror_event_types() -> list[str]:
    """The event types the mirror needs Stripe to send, as STRIPE_DJSTRIPE_SYNC selects them (all of them
    for "all": never "*", which would also bring every type the mirror cannot use); sorted."""
    return sorted({t for types in MIRROR_EVENT_TYPES.values() for t in types if mirror_wanted(t)})


def mirror_due(event: dict) -> bool:
    """Whether this event will be mirrored: its type is configured and its object is one dj-stripe keeps."""
    obj = (event.get("data") or {}).get("object")
    return (isinstance(obj, dict) and obj.get("object") in MIRRORED_OBJECTS and isinstance(obj.get("id"), str)
            and mirror_wanted(str(event.get("type") or "")))


def mirror_kick(*, force: bool = False) -> None:
    """Enqueue one mirror batch unless one is already waiting (a burst of events makes one task).
    `force`: the drain found its queue empty after a backlog, during which a deferring run kept the flag."""
    if force:
        cache.delete_many([KICK_KEY, DEFERRED_KEY])
    if not cache.add(KICK_KEY, 1, timeout=300):
        return
    from django_q.tasks import async_task

    try:
        async_task(MIRROR_TASK, save=False)
    except Exception:  # the cron picks the events up
        cache.delete(KICK_KEY)
        log.warning("could not enqueue the dj-stripe mirror", exc_info=True)


def event_mirror(event: dict) -> None:
    """Mirror one event's object into dj-stripe's tables from the payload. Raises what dj-stripe raises."""
    from djstripe import models as djstripe_models

    obj = event["data"]["object"]
    kind = obj["object"]
    model = getattr(djstripe_models, MIRRORED_OBJECTS[kind])
    if str(event.get("type", "")).endswith(".deleted") and (kind in DELETED_REMOVES or obj.get("deleted")):
        model.objects.filter(id=obj["id"]).delete()
        return
    # dj-stripe reads lists with auto_paging_iter and nested objects by attribute: give it what the
    # Stripe library would have returned for the same JSON, without asking Stripe again.
    from stripe._util import convert_to_stripe_object

    model.sync_from_stripe_data(convert_to_stripe_object(obj, api_key=settings.STRIPE_SECRET_KEY or None))


# The mirror yields to the applied path: on two cores a dj-stripe sync beside the drain cut the applied
# rate by a third. A queue this deep means the drain is behind (a burst), not a trickle of arrivals.
BACKLOG_DEFERS_AT = 50


def mirror_resume_after_backlog() -> None:
    """Called by the drain when its queue is empty: kick the mirror if a run gave way to the backlog."""
    if cache.get(DEFERRED_KEY):
        mirror_kick(force=True)


def apply_backlog() -> bool:
    """Whether received events are waiting for the drain in a number that means a burst."""
    waiting = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).values_list("pk", flat=True)
    return len(waiting[:BACKLOG_DEFERS_AT]) >= BACKLOG_DEFERS_AT


def _object_key(payload: dict) -> tuple[str, str]:
    obj = (payload.get("data") or {}).get("object") or {}
    return str(obj.get("object")), str(obj.get("id"))


def webhook_events_mirror(*, limit: int = 500) -> dict:
    """Mirror every due event, oldest Stripe time first, until none is left or the run's time is up (then
    the next run is kicked). One run at a time; a failure is recorded on the event and logged as a warning,
    and never touches the console's state.

    Within a batch each object is synced once, from its newest payload (the mirror keeps an object's
    latest state, so the older snapshots would only be overwritten), at the place the object first
    appears: a customer still comes before its subscription. The superseded events are marked with the
    outcome of that one sync. A burst of updates to one object costs one sync, not one per event."""
    if apply_backlog():  # the console's own state first; the drain kicks this again when its queue is empty
        cache.set(DEFERRED_KEY, 1, timeout=3600)  # the kick flag stays set: no more kicks during the burst
        return {"done": 0, "failed": 0, "skipped": 0, "synced": 0, "deferred": 1}
    cache.delete(KICK_KEY)  # events applied from now on kick the next run
    budget = min(30.0, settings.Q_CLUSTER.get("timeout", 300) / 2)  # well inside django-q2's task timeout
    if not cache.add(RUNNING_KEY, 1, timeout=int(budget * 2) + 60):  # a killed run blocks no longer than that
        return {"done": 0, "failed": 0, "skipped": 1}
    counts = {"done": 0, "failed": 0, "skipped": 0, "synced": 0}
    started = time.monotonic()
    try:
        while time.monotonic() - started < budget:
            batch = list(WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.DUE)
                         .order_by("stripe_created", "pk").values_list("pk", "payload")[:limit])
            groups: dict[tuple[str, str], tuple[dict, list[int]]] = {}
            for pk, payload in batch:  # dicts keep first-insertion order; the payload is the newest seen
                key = _object_key(payload)
                pks = groups[key][1] if key in groups else []
                pks.append(pk)
                groups[key] = (payload, pks)
            done: list[int] = []
            for payload, pks in groups.values():
                try:
                    event_mirror(payload)
                except Exception as exc:
                    error = redact(f"{type(exc).__name__}: {exc}")[:2000]
                    WebhookEvent.objects.filter(pk__in=pks).update(mirror=WebhookEvent.Mirror.FAILED,
                                                                   mirror_error=error, mirrored_at=timezone.now())
                    log.warning("dj-stripe could not mirror %s %s: %s", payload.get("type"), payload.get("id"),
                                error, extra={"event": "djstripe_mirror_failed", "stripe_event": payload.get("id")})
                    counts["failed"] += len(pks)
                else:
                    done += pks
                counts["synced"] += 1
            if done:
                WebhookEvent.objects.filter(pk__in=done).update(mirror=WebhookEvent.Mirror.DONE, mirror_error="",
                                                                mirrored_at=timezone.now())
                counts["done"] += len(done)
            if len(batch) < limit:
                break
            if apply_backlog():
                cache.set(DEFERRED_KEY, 1, timeout=3600)
                counts["deferred"] = 1
                return counts  # the drain's kick brings the rest (finally: the run flag is cleared)
    finally:
        cache.delete(RUNNING_KEY)
    # An event applied after the last read kicked a run that found this one running, or the time ran out: go again.
    if WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.DUE).exists():
        mirror_kick()
    return counts


def webhook_events_mirror_again(*, events) -> int:
    """Mark these events due again (admin action after a mirror failure); the next run mirrors them."""
    pks = [e.pk for e in events]
    n = WebhookEvent.objects.filter(pk__in=pks).exclude(mirror="").update(mirror=WebhookEvent.Mirror.DUE,
                                                                         mirror_error="")
    if n:
        mirror_kick()
    return n


def mirror_lag_seconds(*, since=None) -> dict:
    """Lag between an event being applied and mirrored (for the benchmark and the ops summary)."""
    qs = WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.DONE, processed_at__isnull=False)
    if since is not None:
        qs = qs.filter(received_at__gte=since)
    lags = sorted((m - p).total_seconds() for m, p in qs.values_list("mirrored_at", "processed_at"))
    if not lags:
        return {"count": 0}
    pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]  # noqa: E731
    return {"count": len(lags), "p50": pick(0.5), "p95": pick(0.95), "max": lags[-1],
            "due": WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.DUE).count()}


def catalog_sync() -> dict:
    """Mirror every product and price Stripe has into dj-stripe's tables (a fresh install, or after
    editing the catalogue in the Dashboard with the webhook down): the pricing page reads the prices.
    Products first, so a price finds its product. Raises StripeGatewayError when Stripe cannot list."""
    from djstripe.models import Price, Product
    from stripe._util import convert_to_stripe_object

    from billing_console.stripe import gateway

    counts = {"products": 0, "prices": 0, "failed": 0}
    key = settings.STRIPE_SECRET_KEY or None
    for label, listing, model in (("products", gateway.products_list, Product), ("prices", gateway.prices_list, Price)):
        for obj in listing({"limit": 100}):
            try:
                model.sync_from_stripe_data(convert_to_stripe_object(obj, api_key=key))
            except Exception as exc:
                counts["failed"] += 1
                log.warning("dj-stripe could not mirror %s %s: %s", label[:-1], obj.get("id"), type(exc).__name__)
            else:
                counts[label] += 1
    return counts
