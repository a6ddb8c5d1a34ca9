"""The staff login: a second factor (django-otp TOTP with recovery codes) and lockouts (django-axes).

STAFF_2FA decides: "required" sends staff without a confirmed authenticator to the enrolment page before
anything else in the admin; "optional" asks for a code only from staff who enrolled; "off" asks nobody.
The admin's login form takes the code in the same step as the password (checked only once the password is
right), and a wrong code counts as a failed login for django-axes like a wrong password.
"""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import logout
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import mark_safe

from billing_console.models import AuditEvent
from billing_console.services import audit_log

RECOVERY_CODES = 10


def axes_client_ip(request) -> str | None:
    """django-axes' client address: the rate limiter's (TRUSTED_PROXY_HOPS honoured), when it is an IP at all."""
    import ipaddress

    from billing_console.ratelimit import client_address

    address = client_address(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _mode() -> str:
    return settings.STAFF_2FA


def _has_device(user) -> bool:
    from django_otp import user_has_device

    return user_has_device(user, confirmed=True)


# --- Login ----------------------------------------------------------------------------------------
class StaffLoginForm(AdminAuthenticationForm):
    otp_token = forms.CharField(
        label="Two-factor code", required=False, max_length=32, strip=True,
        help_text="From your authenticator app, or one of your recovery codes. Leave empty if you have not set up "
                  "two-factor yet.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "spellcheck": "false"}))

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "otp_required": "Enter the code from your authenticator app (or a recovery code).",
        "otp_invalid": "That two-factor code is not valid. Try the current code from your app, or a recovery code.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if _mode() == "off":
            del self.fields["otp_token"]

    def clean(self):
        cleaned = super().clean()  # the password first (through axes), then "is this a staff account"
        user = self.user_cache
        if user is None or _mode() == "off" or not _has_device(user):
            return cleaned
        from django_otp import match_token

        token = "".join((cleaned.get("otp_token") or "").split())
        device = match_token(user, token) if token else None
        if device is None:
            # Counted by axes as a failed login, so codes cannot be guessed behind a known password.
            user_login_failed.send(sender=__name__, credentials={"username": user.get_username()},
                                   request=self.request)
            code = "otp_invalid" if token else "otp_required"
            raise ValidationError(self.error_messages[code], code=code)
        user.otp_device = device  # django_otp marks the session verified when the login completes
        return cleaned


class StaffTwoFactorMiddleware:
    """In the admin: a session of a staff user who has a device must have been verified with it (else back to
    the login), and with STAFF_2FA=required a staff user without one enrols before anything else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self._gate(request) or self.get_response(request)

    def _gate(self, request):
        if _mode() == "off" or not request.path.startswith(reverse("admin:index")):
            return None
        user = request.user
        if not (user.is_authenticated and user.is_staff) or user.is_verified():
            return None
        if request.path in (reverse("admin:login"), reverse("admin:logout"), reverse("console-2fa")):
            return None
        if _has_device(user):
            logout(request)
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if _mode() == "required":
            return HttpResponseRedirect(reverse("console-2fa"))
        return None


# --- Enrolment --------------------------------------------------------------------------------------
class EnrolForm(forms.Form):
    code = forms.RegexField(label="Code from the app", regex=r"^\s*\d{6}\s*$", max_length=12,
                            error_messages={"invalid": "Enter the 6-digit code your app shows."},
                            widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}))


def staff_two_factor_enrol(*, user, device, code: str) -> list[str]:
    """Confirm the user's new authenticator with a code from it, and replace their recovery codes. Returns the
    recovery codes (shown once, never again). Raises ValidationError for a wrong code."""
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
    from django_otp.plugins.otp_totp.models import TOTPDevice

    # Verified in a transaction of its own: a wrong code's throttling must stay recorded.
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=user)
        ok = not device.confirmed and device.verify_token(code.strip())
    if not ok:
        raise ValidationError({"code": "That code did not match. Check the app's clock and enter the current code."})
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=user)
        if device.confirmed:
            raise ValidationError({"code": "Two-factor is already on for this account."})
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        StaticDevice.objects.filter(user=user).delete()
        static = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create([StaticToken(device=static, token=c) for c in codes])
        audit_log(actor_type=AuditEvent.ActorType.ADMIN, actor=user.get_username(), action="staff.2fa_enrolled",
                  target=user, data={"device": device.name, "recovery_codes": len(codes)})
    return codes


def _qr_svg(url: str) -> str:
    import qrcode
    import qrcode.image.svg

    return qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8).to_string(encoding="unicode")


def two_factor_view(request):
    """/admin/2fa/: enrol an authenticator app (QR code and secret, shown until confirmed), then the recovery
    codes once; afterwards, the state of the account's two-factor."""
    from base64 import b32encode

    from django_otp import login as otp_login
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = request.user
    context = {"title": "Two-factor authentication", "mode": _mode(), "site_title": settings.SITE_NAME}
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        return TemplateResponse(request, "admin/two_factor.html", {**context, "enrolled": True})
    device = (TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
              or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False))
    form = EnrolForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                codes = staff_two_factor_enrol(user=user, device=device, code=form.cleaned_data["code"])
            except ValidationError as exc:
                form.add_error("code", exc.message_dict.get("code", exc.messages))
            else:
                device.refresh_from_db()
                otp_login(request, device)
                return TemplateResponse(request, "admin/two_factor.html", {**context, "codes": codes})
        status = 400
    context.update(form=form, qr=mark_safe(_qr_svg(device.config_url)),
                   secret=b32encode(device.bin_key).decode().rstrip("="))
    return TemplateResponse(request, "admin/two_factor.html", context, status=status)


# --- Lockouts -----------------------------------------------------------------------------------------
def staff_login_unlock(*, attempts, actor: str) -> int:
    """Lift lockouts (django-axes' failed-login rows), audited one by one."""
    from axes.models import AccessAttempt

    n = 0
    with transaction.atomic():
        for attempt in AccessAttempt.objects.select_for_update().filter(pk__in=[a.pk for a in attempts]):
            audit_log(actor_type=AuditEvent.ActorType.ADMIN, actor=actor, action="staff.login_unlocked",
                      target=attempt, data={"username": attempt.username, "ip_address": attempt.ip_address,
                                            "failures": attempt.failures_since_start})
            attempt.delete()
            n += 1
    return n
