"""Deployments' part of `rebuild_from_stripe` (registered from DeploymentsConfig.ready()).

`deployment_create` records the Cloudflare account id and script name on the Stripe subscription;
here they come back as a deployment shell with no token (tokens are never sent to Stripe), paused
until the customer enters a fresh token from the manage page the recovery email links to.
"""
from __future__ import annotations

from billing_console.models import AuditEvent, Customer
from billing_console.ops.rebuild import ACTOR, RebuildResult
from billing_console.selectors import plan_settings
from deployments.models import Deployment
from deployments.services import (ACCOUNT_ID_RE, SCRIPT_NAME_RE, STRIPE_ACCOUNT_KEY, STRIPE_SCRIPT_KEY,
                                  deployment_restore_shell)

TOKEN_ACTION = "Enter your Cloudflare API token again (Rotate Cloudflare token) so pushes can resume."


def _plan_of(customer: Customer | None, subscription: dict) -> str:
    return customer.plan if customer is not None else (subscription.get("metadata") or {}).get("plan", "")


def rebuild_deployment(*, customer: Customer | None, subscription: dict, dry_run: bool) -> RebuildResult:
    result = RebuildResult()
    metadata = subscription.get("metadata") or {}
    account_id = str(metadata.get(STRIPE_ACCOUNT_KEY) or "").strip().lower()
    script_name = str(metadata.get(STRIPE_SCRIPT_KEY) or "").strip()
    if not account_id and not script_name:
        if plan_settings(_plan_of(customer, subscription)).get("managed_deployment"):
            result.existing.append("no deployment recorded on the subscription (none was set up, or it predates this)")
        return result
    if not ACCOUNT_ID_RE.match(account_id) or not SCRIPT_NAME_RE.match(script_name):
        result.needs_person.append(f"deployment metadata on the subscription is not valid "
                                   f"({STRIPE_ACCOUNT_KEY}={account_id!r}, {STRIPE_SCRIPT_KEY}={script_name!r})")
        return result
    existing = Deployment.objects.filter(account_id=account_id, script_name=script_name).first()
    label = f"deployment {account_id[:8]}…/{script_name}"
    if existing is not None:
        result.existing.append(label)
        return result
    if dry_run:
        result.created.append(f"{label} (shell, paused until the customer enters a token)")
        result.customer_actions.append(TOKEN_ACTION)
        return result
    deployment, created = deployment_restore_shell(customer=customer, account_id=account_id, script_name=script_name,
                                                   actor_type=AuditEvent.ActorType.SYSTEM, actor=ACTOR)
    if created:
        result.created.append(f"{label} (shell, paused until the customer enters a token)")
        result.customer_actions.append(TOKEN_ACTION)
    else:
        result.existing.append(label)
    return result
