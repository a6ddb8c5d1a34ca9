"""Every licensing write. Each function owns its transaction, locks before deciding, returns early
when the work is done, audits in the same transaction and sends email only after commit.

A licence key exists in clear only in memory between its generation and the email (and the admin
message at a reissue): it is never stored, logged, or handed to the task queue (whose table would
keep it).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer
from billing_console.selectors import customer_entitlement, plan_settings
from billing_console.services import audit_log
from billing_console.wording import counted, device_limit_words
from licensing.keys import key_generate, key_hash, key_normalize, key_prefix
from licensing.models import DeviceActivation, License
from licensing.selectors import active_device_count, license_entitlement_reason

log = logging.getLogger("licensing")
# A device's check-in time is written at most this often (status is the hot path).
CHECKIN_WRITE_INTERVAL = timedelta(seconds=60)
API = AuditEvent.ActorType.API


class LicenseError(ServiceError):
    """A licence write refused; the licence API answers with its code."""

    code = "LICENSE_ERROR"


class TooManyDevices(LicenseError):
    code = "TOO_MANY_DEVICES"

    def __init__(self, *, count: int, max_devices: int):
        # Past the limit after a downgrade, one deactivation is not enough: say how many.
        super().__init__(None, device_limit_words(count, max_devices) or
                         f"This licence is active on {count} of {counted(max_devices, 'device')}; deactivate one first.")
        self.count, self.max_devices = count, max_devices


class DeviceNotFound(LicenseError):
    code = "NOT_FOUND"


def _new_key() -> tuple[str, str, str]:
    key = key_generate()
    normalized = key_normalize(key)
    return key, key_hash(normalized), key_prefix(normalized)


# --- Provisioning ---------------------------------------------------------------------------
def license_ensure(*, customer: Customer, actor_type: str, actor: str = "", rebuilt: bool = False) -> License | None:
    """One licence per entitled subscription, with the plan's device limit and offline grace.

    Idempotent: a second call (a duplicate or later event) finds the licence and only follows a
    plan change. Returns None when the customer's current subscription entitles nothing yet.
    `rebuilt` (rebuild_from_stripe): the new key is not emailed and the licence is flagged
    needs_reissue, so support reissues it once the customer has been told.
    """
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if not customer.subscription_id:
            return None
        entitlement = customer_entitlement(customer)
        plan = settings.PLANS.get(entitlement.plan)
        lic = License.objects.select_for_update().filter(subscription_id=customer.subscription_id).first()
        if plan is None:
            if lic is None:
                log.warning("no licence for subscription %s: plan %r is not configured", customer.subscription_id,
                            entitlement.plan, extra={"event": "license_plan_unknown", "customer": customer.pk})
            return lic
        # The plan's devices per unit of quantity. A lower limit never deactivates a device already active:
        # those keep working, and a new one is refused until the count is under the limit.
        values = {"plan": entitlement.plan, "max_devices": plan["max_devices"] * max(customer.quantity, 1),
                  "offline_grace_days": plan["offline_grace_days"]}
        if lic is None:
            if not entitlement.entitled:
                return None
            key, digest, prefix = _new_key()
            lic = License.objects.create(customer=customer, subscription_id=customer.subscription_id,
                                         key_hash=digest, key_prefix=prefix, needs_reissue=rebuilt, **values)
            audit_log(actor_type=actor_type, actor=actor, action="license.issued", target=lic, customer=customer,
                      data={"key_prefix": prefix, "rebuilt": rebuilt, **values})
            if not rebuilt:
                _email_key_on_commit(lic, key, reissued=False)
            return lic
        changed = {name: value for name, value in values.items() if getattr(lic, name) != value}
        if not changed:
            return lic
        before = {name: getattr(lic, name) for name in changed}
        for name, value in changed.items():
            setattr(lic, name, value)
        lic.save(update_fields=[*changed, "updated_at"])
        data = {"from": before, "to": changed}
        if "max_devices" in changed:
            data["active_devices"] = _devices_recount(lic)
            data["over_limit_kept"] = lic.devices_over_limit
        audit_log(actor_type=actor_type, actor=actor, action="license.plan_changed", target=lic, customer=customer,
                  data=data)
        return lic


def _email_key_on_commit(lic: License, key: str, *, reissued: bool) -> None:
    transaction.on_commit(lambda: _email_key(lic.pk, key, reissued=reissued))


def _email_key(license_id: int, key: str, *, reissued: bool) -> None:
    """Runs after commit, in process: the key must not travel through the task queue's table."""
    lic = License.objects.select_related("customer").get(pk=license_id)
    context = {"license": lic, "key": key, "reissued": reissued, "plan": plan_settings(lic.plan),
               "site_url": settings.SITE_URL}
    subject = "Your new licence key" if reissued else "Your licence key"
    message = EmailMultiAlternatives(subject, render_to_string("licensing/email/license_key.txt", context),
                                     to=[lic.customer.email],
                                     reply_to=[settings.SUPPORT_EMAIL] if settings.SUPPORT_EMAIL else None)
    message.attach_alternative(render_to_string("licensing/email/license_key.html", context), "text/html")
    try:
        message.send()
    except Exception as exc:  # the send is recorded as failed; support reissues to send a fresh key
        License.objects.filter(pk=license_id).update(key_delivery=License.KeyDelivery.FAILED)
        log.warning("licence key email failed for licence %s: %s", license_id, type(exc).__name__,
                    extra={"event": "license_key_email_failed", "license": license_id})
        return
    License.objects.filter(pk=license_id).update(key_delivery=License.KeyDelivery.SENT)
    log.info("licence key emailed for licence %s", license_id, extra={"event": "license_key_emailed", "license": license_id})


# --- Devices --------------------------------------------------------------------------------
def _devices_recount(lic: License) -> int:
    """Write the licence's active_devices from its activation rows. The caller holds the licence's row lock,
    which every write of an activation takes first, so the count is exact when the transaction commits."""
    count = active_device_count(lic)
    if lic.active_devices != count:
        lic.active_devices = count
        lic.save(update_fields=["active_devices"])
    return count


def license_activate_device(*, license: License, device_id: str, name: str = "", platform: str = "",
                            actor_type: str = API, actor: str = "") -> tuple[DeviceActivation, bool]:
    """See _license_activate_device; a deadlock with a webhook applying the same customer's events at the
    same moment is retried (the first attempt was rolled back whole)."""
    from billing_console.db import retry_on_deadlock

    return retry_on_deadlock(lambda: _license_activate_device(
        license=license, device_id=device_id, name=name, platform=platform, actor_type=actor_type, actor=actor))


def _license_activate_device(*, license: License, device_id: str, name: str = "", platform: str = "",
                             actor_type: str = API, actor: str = "") -> tuple[DeviceActivation, bool]:
    """Activate a device within the licence's limit. Re-activating an active device changes nothing.

    Returns (activation, created). Raises LicenseError when the licence is not usable and
    TooManyDevices past the limit. The licence row lock serialises concurrent activations, so
    the limit holds under any number of workers.
    """
    with transaction.atomic():
        lic = License.objects.select_for_update(of=("self",)).select_related("customer").get(pk=license.pk)
        active, reason = license_entitlement_reason(lic, customer_entitlement(lic.customer))
        if not active:
            raise LicenseError(reason, "This licence cannot activate devices now.")
        activation = DeviceActivation.objects.filter(license=lic, device_id=device_id).first()
        if activation is not None:
            activation.license = lic
            if activation.is_active:
                return activation, False
        count = active_device_count(lic)
        if count >= lic.max_devices:
            raise TooManyDevices(count=count, max_devices=lic.max_devices)
        now = timezone.now()
        if activation is None:
            activation = DeviceActivation.objects.create(license=lic, device_id=device_id, name=name,
                                                         platform=platform, activated_at=now, last_checked_at=now)
        else:
            activation.name, activation.platform = name or activation.name, platform or activation.platform
            activation.activated_at, activation.last_checked_at, activation.deactivated_at = now, now, None
            activation.save()
        lic.active_devices = count + 1
        lic.save(update_fields=["active_devices"])
        audit_log(actor_type=actor_type, actor=actor or f"device:{device_id}", action="device_activation.activated",
                  target=activation, customer=lic.customer,
                  data={"license": lic.pk, "device_id": device_id, "name": name, "platform": platform,
                        "active_devices": count + 1, "max_devices": lic.max_devices})
        return activation, True


def device_activation_deactivate(*, activation: DeviceActivation, actor_type: str, actor: str = "",
                                 action: str = "device_activation.deactivated") -> DeviceActivation:
    """Free the device's seat. Idempotent; its tokens are refused online from now on. Like an activation it
    locks the licence first (its active_devices changes), so a deadlock with a webhook applying the same
    customer's plan change is run again."""
    from billing_console.db import retry_on_deadlock

    return retry_on_deadlock(lambda: _device_activation_deactivate(
        activation=activation, actor_type=actor_type, actor=actor, action=action))


def _device_activation_deactivate(*, activation: DeviceActivation, actor_type: str, actor: str,
                                  action: str) -> DeviceActivation:
    with transaction.atomic():
        lic = License.objects.select_for_update(of=("self",)).select_related("customer").get(pk=activation.license_id)
        activation = DeviceActivation.objects.select_for_update().get(pk=activation.pk)
        activation.license = lic
        if not activation.is_active:
            return activation
        activation.deactivated_at = timezone.now()
        activation.save(update_fields=["deactivated_at"])
        count = _devices_recount(lic)
        audit_log(actor_type=actor_type, actor=actor or f"device:{activation.device_id}", action=action,
                  target=activation, customer=lic.customer,
                  data={"license": lic.pk, "device_id": activation.device_id, "active_devices": count,
                        "max_devices": lic.max_devices})
        return activation


def license_deactivate_device(*, license: License, device_id: str, actor_type: str = API,
                              actor: str = "") -> DeviceActivation:
    """The API's deactivate: raises DeviceNotFound when the device was never activated on this licence."""
    activation = DeviceActivation.objects.filter(license=license, device_id=device_id).first()
    if activation is None:
        raise DeviceNotFound(None, "Unknown licence key or device.")
    return device_activation_deactivate(activation=activation, actor_type=actor_type, actor=actor)


def device_activation_revoke(*, activation: DeviceActivation, actor_type: str, actor: str = "") -> DeviceActivation:
    """Support's "revoke device": the same as a deactivation, audited as support's act."""
    return device_activation_deactivate(activation=activation, actor_type=actor_type, actor=actor,
                                        action="device_activation.revoked")


def device_activation_touch(*, activation: DeviceActivation, now=None) -> bool:
    """Record a check-in, at most once a minute per device (no lock, no audit: it is a heartbeat)."""
    now = now or timezone.now()
    if activation.last_checked_at and now - activation.last_checked_at < CHECKIN_WRITE_INTERVAL:
        return False
    DeviceActivation.objects.filter(pk=activation.pk).update(last_checked_at=now)
    activation.last_checked_at = now
    return True


def license_reset_activations(*, license: License, actor_type: str, actor: str = "") -> int:
    """Deactivate every device of the licence; returns how many were active."""
    with transaction.atomic():
        lic = License.objects.select_for_update(of=("self",)).select_related("customer").get(pk=license.pk)
        now = timezone.now()
        devices = list(lic.activations.filter(deactivated_at__isnull=True).values_list("device_id", flat=True))
        if not devices:
            return 0
        lic.activations.filter(deactivated_at__isnull=True).update(deactivated_at=now)
        _devices_recount(lic)
        audit_log(actor_type=actor_type, actor=actor, action="license.activations_reset", target=lic,
                  customer=lic.customer, data={"devices": devices})
        return len(devices)


# --- Licence status (support's switches) ----------------------------------------------------
def _set_status(*, license: License, status: str, allowed_from: set[str], action: str, actor_type: str, actor: str,
                reason: str) -> License:
    with transaction.atomic():
        lic = License.objects.select_for_update(of=("self",)).select_related("customer").get(pk=license.pk)
        if lic.status == status:
            return lic
        if lic.status not in allowed_from:
            raise LicenseError("INVALID_STATE",
                               f"A {lic.get_status_display().lower()} licence cannot be {action.split('.')[1]}.")
        previous = lic.status
        lic.status, lic.status_reason = status, reason[:255]
        lic.save(update_fields=["status", "status_reason", "updated_at"])
        audit_log(actor_type=actor_type, actor=actor, action=action, target=lic, customer=lic.customer,
                  data={"from": previous, "to": status, "reason": reason})
        return lic


def license_suspend(*, license: License, actor_type: str, actor: str = "", reason: str = "") -> License:
    return _set_status(license=license, status=License.Status.SUSPENDED, allowed_from={License.Status.ACTIVE}, action="license.suspended",
                       actor_type=actor_type, actor=actor, reason=reason)


def license_unsuspend(*, license: License, actor_type: str, actor: str = "", reason: str = "") -> License:
    return _set_status(license=license, status=License.Status.ACTIVE, allowed_from={License.Status.SUSPENDED}, action="license.unsuspended",
                       actor_type=actor_type, actor=actor, reason=reason)


def license_revoke(*, license: License, actor_type: str, actor: str = "", reason: str = "") -> License:
    """Permanent: a revoked licence never works again (a new subscription gets a new licence)."""
    return _set_status(license=license, status=License.Status.REVOKED, allowed_from={License.Status.ACTIVE, License.Status.SUSPENDED},
                       action="license.revoked", actor_type=actor_type, actor=actor, reason=reason)


def license_reissue_key(*, license: License, actor_type: str, actor: str = "") -> tuple[License, str]:
    """Replace the key: the old one stops working at once and device tokens minted under it are refused
    online (devices re-activate with the new key without using another seat). Returns the new key,
    to be shown once; it is also emailed to the customer after commit."""
    with transaction.atomic():
        lic = License.objects.select_for_update(of=("self",)).select_related("customer").get(pk=license.pk)
        if lic.status == License.Status.REVOKED:
            raise LicenseError("INVALID_STATE", "A revoked licence cannot be reissued.")
        old_prefix = lic.key_prefix
        key, lic.key_hash, lic.key_prefix = _new_key()
        lic.key_generation += 1
        lic.reissued_at = timezone.now()
        lic.needs_reissue = False
        lic.key_delivery = License.KeyDelivery.PENDING
        lic.save(update_fields=["key_hash", "key_prefix", "key_generation", "reissued_at", "needs_reissue",
                                "key_delivery", "updated_at"])
        audit_log(actor_type=actor_type, actor=actor, action="license.key_reissued", target=lic, customer=lic.customer,
                  data={"old_prefix": old_prefix, "new_prefix": lic.key_prefix, "generation": lic.key_generation})
        _email_key_on_commit(lic, key, reissued=True)
        return lic, key
