"""Licensing's part of `rebuild_from_stripe` (registered from LicensingConfig.ready()).

After a lost database the old keys' hashes are gone: each entitled subscription gets a licence with
a new key that nobody has seen, flagged needs_reissue; support reissues it (admin action "reissue
key", filter "needs reissue") to email the customer a key they can use.
"""
from __future__ import annotations

from billing_console.models import AuditEvent, Customer
from billing_console.ops.rebuild import ACTOR, RebuildResult
from billing_console.stripe.statuses import ENDED
from licensing.models import License
from licensing.services import license_ensure


def rebuild_license(*, customer: Customer | None, subscription: dict, dry_run: bool) -> RebuildResult:
    result = RebuildResult()
    existing = License.objects.filter(subscription_id=subscription.get("id") or "").first()
    if existing is not None:
        result.existing.append(f"licence {existing.key_prefix}…")
        return result
    if dry_run:
        if (subscription.get("status") or "") not in ENDED:
            result.created.append("licence (new key, needs reissue)")
        return result
    lic = license_ensure(customer=customer, actor_type=AuditEvent.ActorType.SYSTEM, actor=ACTOR, rebuilt=True)
    if lic is None:
        result.needs_person.append(f"no licence: subscription {subscription.get('status')} entitles nothing now")
        return result
    result.created.append(f"licence {lic.key_prefix}… (new key)")
    result.needs_person.append(f"licence {lic.key_prefix}…: reissue the key from the admin to email it")
    return result
