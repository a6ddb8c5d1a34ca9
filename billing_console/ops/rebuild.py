"""Rebuild the console from Stripe after the database is lost (and no backup is good enough).

Stripe still holds every customer and subscription, plus the metadata the console wrote on them
(the checkout token and plan at checkout; apps add their own keys through `remember_on_stripe`).
`stripe_rebuild` walks every subscription (paginated through the gateway), finds or creates the
customer and applies the subscription as Stripe has it now, then hands the pair to every rebuilder
the apps registered from their AppConfig.ready():

    from billing_console.ops.rebuild import RebuildResult, register_rebuilder

    def rebuild_licence(*, customer, subscription, dry_run) -> RebuildResult: ...
    register_rebuilder(rebuild_licence)

so the core never imports licensing or deployments. Each customer is rebuilt in one transaction;
customers who must act (re-enter a cloud token) get one email with a fresh manage link after it
commits. A second run finds everything in place and creates nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

from django.db import transaction

from billing_console.models import AuditEvent, Customer
from billing_console.selectors import customer_for_stripe_object
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe import objects as so
from billing_console.stripe.statuses import ENDED
from billing_console.stripe.subscriptions import customer_apply_subscription, customer_link_stripe

log = logging.getLogger("billing_console.rebuild")

ACTOR = "rebuild_from_stripe"
NOTICE_TEMPLATE = "ops_account_restored"


@dataclass
class RebuildResult:
    """What one rebuilder did for one customer (or would do, in a dry run)."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    needs_person: list[str] = field(default_factory=list)
    # Things the customer must do themselves; any entry gets them the recovery email.
    customer_actions: list[str] = field(default_factory=list)


class Rebuilder(Protocol):
    def __call__(self, *, customer: Customer | None, subscription: dict, dry_run: bool) -> RebuildResult: ...


_rebuilders: list[Rebuilder] = []


def register_rebuilder(fn: Rebuilder) -> Rebuilder:
    """Called by an app's ready(): fn(customer=..., subscription=..., dry_run=...) -> RebuildResult.
    customer is None only in a dry run for a customer that does not exist yet. Must be idempotent."""
    if fn not in _rebuilders:
        _rebuilders.append(fn)
    return fn


@dataclass
class CustomerRebuild:
    email: str
    subscription_id: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    needs_person: list[str] = field(default_factory=list)
    customer_actions: list[str] = field(default_factory=list)
    notice: str = ""  # "sent", "failed", "skipped", "" (none needed or dry run)


@dataclass
class RebuildReport:
    dry_run: bool
    subscriptions: int = 0
    ended_skipped: int = 0
    customers: list[CustomerRebuild] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"subscriptions": self.subscriptions, "ended_skipped": self.ended_skipped,
                "customers": len(self.customers), "created": sum(len(c.created) for c in self.customers),
                "needs_person": sum(len(c.needs_person) for c in self.customers) + len(self.errors),
                "notices_sent": sum(c.notice == "sent" for c in self.customers)}


def remember_on_stripe(*, customer: Customer, values: dict[str, str]) -> None:
    """Write `values` into the metadata of the customer's Stripe subscription after the current
    transaction commits, so a rebuild can find them again (apps call this, e.g. a new deployment).
    Best effort: a failure is logged, never raised into the caller's work."""
    subscription_id = customer.subscription_id
    if not subscription_id or not stripe_gateway.configured():
        return

    def write():
        try:
            stripe_gateway.subscription_update(
                subscription_id, params={"metadata": values},
                idempotency_key=f"bc-remember-{subscription_id}-{'-'.join(f'{k}={v}' for k, v in sorted(values.items()))}"[:255])
        except stripe_gateway.StripeGatewayError as exc:
            log.warning("could not record %s on subscription %s: %s", sorted(values), subscription_id, exc,
                        extra={"event": "stripe_metadata_failed", "subscription": subscription_id})

    transaction.on_commit(write)


def _latest_live_per_customer(subscriptions: list[dict]) -> tuple[list[dict], int]:
    """The newest live subscription of each Stripe customer; ended ones are not rebuilt."""
    live: dict[str, dict] = {}
    ended = 0
    for sub in subscriptions:
        if (sub.get("status") or "") in ENDED:
            ended += 1
            continue
        key = so.subscription_customer_id(sub) or sub.get("id")
        if key not in live or (sub.get("created") or 0) > (live[key].get("created") or 0):
            live[key] = sub
    return sorted(live.values(), key=lambda s: (s.get("created") or 0, s.get("id"))), ended


def _stripe_customer_of(subscription: dict) -> dict:
    stripe_customer_id = so.subscription_customer_id(subscription)
    return stripe_gateway.customer_retrieve(stripe_customer_id) if stripe_customer_id else {}


def _rebuild_one(subscription: dict, *, stripe_customer: dict, dry_run: bool) -> tuple[CustomerRebuild, Customer | None]:
    """`stripe_customer`: the subscription's Stripe customer, read before this transaction ({} when the
    console already knows the customer)."""
    sub_id = subscription.get("id") or ""
    customer = customer_for_stripe_object(subscription)
    line = CustomerRebuild(email=customer.email if customer else "", subscription_id=sub_id)
    if customer is None:
        email = (stripe_customer.get("email") or "").strip().lower()
        if not email or stripe_customer.get("deleted"):
            line.email = "(no email in Stripe)"
            line.needs_person.append(f"Stripe customer {so.subscription_customer_id(subscription) or '-'} has no email: "
                                     "add one in Stripe, then run the rebuild again")
            return line, None
        line.email = email
        line.created.append("customer")
        if not dry_run:
            # Found by cus_ id, else by email (the rebuild may have made it for another subscription), else created.
            customer = customer_link_stripe(stripe_customer_id=stripe_customer["id"], email=email,
                                            name=stripe_customer.get("name") or "",
                                            actor_type=AuditEvent.ActorType.SYSTEM, actor=ACTOR)
    else:
        line.existing.append("customer")
    if not dry_run:
        customer, applied = customer_apply_subscription(customer=customer, subscription=subscription, state_at=None,
                                                        actor_type=AuditEvent.ActorType.SYSTEM, actor=ACTOR, force=True)
    line.existing.append(f"subscription {sub_id} ({subscription.get('status')})")
    for rebuilder in _rebuilders:
        result = rebuilder(customer=customer, subscription=subscription, dry_run=dry_run)
        line.created += result.created
        line.existing += result.existing
        line.needs_person += result.needs_person
        line.customer_actions += result.customer_actions
    return line, customer


def stripe_rebuild(*, dry_run: bool = False) -> RebuildReport:
    """Reconstruct customers, subscription fields and whatever the apps rebuild from Stripe.
    With dry_run nothing is written and nobody is emailed."""
    from billing_console.ops.notices import customer_notice_send

    subscriptions, ended = _latest_live_per_customer(list(stripe_gateway.subscriptions_list({"status": "all"})))
    report = RebuildReport(dry_run=dry_run, subscriptions=len(subscriptions) + ended, ended_skipped=ended)
    for subscription in subscriptions:
        try:
            # Stripe is read before the transaction, never while it holds the customer's row.
            known = customer_for_stripe_object(subscription) is not None
            stripe_customer = {} if known else _stripe_customer_of(subscription)
            with transaction.atomic():
                line, customer = _rebuild_one(subscription, stripe_customer=stripe_customer, dry_run=dry_run)
        except stripe_gateway.StripeGatewayError:
            raise  # Stripe unreachable: stop, a rerun resumes (everything done so far is committed)
        except Exception as exc:  # one customer's bad data must not stop the others; nothing of it was kept
            log.exception("rebuild of subscription %s failed", subscription.get("id"))
            report.errors.append(f"subscription {subscription.get('id')}: {type(exc).__name__}: {exc}")
            continue
        if line.customer_actions and customer is not None and not dry_run:
            line.notice = customer_notice_send(customer=customer, template=NOTICE_TEMPLATE, campaign="rebuild",
                                               actor=ACTOR, context={"actions": line.customer_actions})
            if line.notice == "failed":
                line.needs_person.append("recovery email failed: send a manage link from the admin")
        report.customers.append(line)
    log.info("rebuild from Stripe%s: %s", " (dry run)" if dry_run else "", report.counts(),
             extra={"event": "stripe_rebuild", "dry_run": dry_run, "counts": report.counts()})
    return report
