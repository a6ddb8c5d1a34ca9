"""The staff login: django-axes locks a username and a client address out after AXES_FAILURE_LIMIT failures
for AXES_COOLOFF_MINUTES (support sees the lockouts, a superuser unlocks), and django-otp asks staff with a
device for a TOTP or recovery code; STAFF_2FA=required sends staff without one to enrol first."""
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from billing_console.models import AuditEvent
from billing_console.ops.support import support_group_ensure

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/"
PASSWORD = "pw-staff-0123456789"
ENROL = "/admin/2fa/"


@pytest.fixture
def axes_on(settings):
    """The real lockout (the test settings turn axes off so tests may log in as often as they like)."""
    settings.AXES_ENABLED = True
    return settings


@pytest.fixture
def staff():
    user = User.objects.create_user("sam", "sam@example.com", PASSWORD, is_staff=True)
    user.groups.add(support_group_ensure())
    return user


def login(client, username="sam", password=PASSWORD, code="", **extra):
    return client.post(f"{LOGIN}?next=/admin/", {"username": username, "password": password, "otp_token": code,
                                                 "next": "/admin/"}, **extra)


def logged_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def totp_device(user, confirmed=True) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=confirmed)


def wait_out_throttling(device: TOTPDevice) -> None:
    """django-otp makes the next try wait after a wrong code (1 s, doubling): the clock moves on."""
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)


def code_for(device: TOTPDevice) -> str:
    device.refresh_from_db()
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():0{device.digits}d}"


# --- Lockout (django-axes) ---------------------------------------------------------------------
def test_twelve_wrong_passwords_then_the_right_one_do_not_log_in(client, staff, axes_on):
    codes = [login(client, password=f"wrong-{n}").status_code for n in range(12)]
    assert codes[:4] == [200] * 4 and set(codes[5:]) == {429}  # the form again, then locked
    response = login(client)
    assert response.status_code == 429 and "locked" in response.content.decode().lower()
    assert not logged_in(client)


def test_the_lockout_is_per_username_from_any_address(client, staff, axes_on):
    for n in range(5):
        login(client, password="wrong", REMOTE_ADDR=f"10.0.0.{n}")
    assert login(client, REMOTE_ADDR="10.9.9.9").status_code == 429


def test_the_lockout_is_per_address_across_usernames(client, staff, axes_on):
    User.objects.create_user("other", "o@example.com", PASSWORD, is_staff=True)
    for n in range(5):
        login(client, username=f"guess{n}", password="wrong")
    assert login(client, username="other").status_code == 429
    assert login(client, username="other", REMOTE_ADDR="10.7.7.7").status_code == 302  # another address


def test_the_limit_and_cooloff_come_from_settings_and_the_lock_lifts_after_it(client, staff, axes_on):
    from axes.models import AccessAttempt
    from django.db.models import F

    assert axes_on.AXES_FAILURE_LIMIT == 5 and axes_on.AXES_COOLOFF_TIME == timedelta(minutes=15)
    for _ in range(5):
        login(client, password="wrong")
    assert login(client).status_code == 429
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))  # the clock moves on
    assert login(client).status_code == 302 and logged_in(client)


def test_support_sees_the_lockouts_and_only_a_superuser_unlocks(client, staff, axes_on):
    from axes.models import AccessAttempt

    for _ in range(5):
        login(client, password="wrong")
    changelist = reverse("admin:axes_accessattempt_changelist")
    viewer = User.objects.create_user("sue", "sue@example.com", PASSWORD, is_staff=True)
    viewer.groups.add(support_group_ensure())
    client.force_login(viewer)
    page = client.get(changelist)
    assert page.status_code == 200 and "sam" in page.content.decode()
    attempt = AccessAttempt.objects.get(username="sam")
    client.post(changelist, {"action": "unlock", "_selected_action": [attempt.pk]})
    assert AccessAttempt.objects.filter(username="sam").exists()  # support may look, not unlock

    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    client.force_login(root)
    response = client.post(changelist, {"action": "unlock", "_selected_action": [attempt.pk]})
    assert response.status_code == 302 and not AccessAttempt.objects.filter(username="sam").exists()
    event = AuditEvent.objects.get(action="staff.login_unlocked")
    assert event.actor == "root" and event.data["username"] == "sam"
    client.logout()
    assert login(client).status_code == 302


# --- Two-factor (django-otp) -------------------------------------------------------------------
def test_optional_mode_lets_staff_without_a_device_in_with_the_password(client, staff, settings):
    settings.STAFF_2FA = "optional"
    assert 'name="otp_token"' in client.get(LOGIN).content.decode()
    assert login(client).status_code == 302 and logged_in(client)


def test_a_staff_user_with_a_device_must_give_its_code(client, staff, settings, axes_on):
    settings.STAFF_2FA = "optional"
    device = totp_device(staff)
    missing = login(client)
    assert missing.status_code == 200 and "code" in missing.content.decode().lower() and not logged_in(client)
    assert login(client, code="000000" if code_for(device) != "000000" else "111111").status_code == 200
    assert not logged_in(client)
    wait_out_throttling(device)
    response = login(client, code=code_for(device))
    assert response.status_code == 302 and logged_in(client)


def test_wrong_codes_count_towards_the_lockout(client, staff, settings, axes_on):
    settings.STAFF_2FA = "optional"
    device = totp_device(staff)
    wrong = "000000" if code_for(device) != "000000" else "111111"
    for _ in range(5):
        login(client, code=wrong)
    assert login(client, code=code_for(device)).status_code == 429 and not logged_in(client)


def test_a_recovery_code_works_once(client, staff, settings):
    settings.STAFF_2FA = "required"
    totp_device(staff)
    static = StaticDevice.objects.create(user=staff, name="Recovery codes", confirmed=True)
    static.token_set.create(token="abcd2345")
    assert login(client, code="abcd2345").status_code == 302 and logged_in(client)
    client.logout()
    assert login(client, code="abcd2345").status_code == 200 and not logged_in(client)


def test_a_session_with_a_device_but_no_code_is_sent_back_to_the_login(client, staff, settings):
    settings.STAFF_2FA = "optional"
    totp_device(staff)
    client.force_login(staff)  # e.g. a session from before the device was added
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)


def test_required_mode_sends_staff_without_a_device_to_enrol_first(client, staff, settings):
    settings.STAFF_2FA = "required"
    assert login(client).status_code == 302
    response = client.get("/admin/billing_console/customer/")
    assert response.status_code == 302 and response["Location"] == ENROL

    page = client.get(ENROL)
    body = page.content.decode()
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    secret = re.search(r'data-secret="([A-Z2-7]+)"', body).group(1)
    assert page.status_code == 200 and "<svg" in body and len(secret) >= 32
    assert client.post(ENROL, {"code": "12345"}).status_code == 400
    wrong = "000000" if code_for(device) != "000000" else "111111"
    assert client.post(ENROL, {"code": wrong}).status_code == 400
    wait_out_throttling(device)

    done = client.post(ENROL, {"code": code_for(device)})
    assert done.status_code == 200
    codes = re.findall(r'<li class="recovery-code">([a-z0-9]+)</li>', done.content.decode())
    assert len(codes) == 10
    device.refresh_from_db()
    assert device.confirmed
    assert sorted(t.token for t in StaticDevice.objects.get(user=staff).token_set.all()) == sorted(codes)
    assert AuditEvent.objects.filter(action="staff.2fa_enrolled", actor="sam").exists()
    assert logged_in(client)  # the enrolment verified this session
    # The secret is shown once: the page now says two-factor is on, without it.
    again = client.get(ENROL).content.decode()
    assert secret not in again and "is on" in again


def test_off_mode_neither_asks_nor_enrols(client, staff, settings):
    settings.STAFF_2FA = "off"
    totp_device(staff)
    assert 'name="otp_token"' not in client.get(LOGIN).content.decode()
    assert login(client).status_code == 302 and logged_in(client)


def test_production_defaults_to_required_and_development_to_optional():
    import subprocess
    import sys

    from django.conf import settings as django_settings

    script = "import billing_console.settings as s; print(s.STAFF_2FA)"
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    dev = subprocess.run([sys.executable, "-c", script], env={**base, "DJANGO_ENV": "development"},
                         capture_output=True, text=True, cwd=django_settings.BASE_DIR)
    assert dev.stdout.strip() == "optional", dev.stderr
    bad = subprocess.run([sys.executable, "-c", script], env={**base, "STAFF_2FA": "sometimes"},
                         capture_output=True, text=True, cwd=django_settings.BASE_DIR)
    assert bad.returncode != 0 and "STAFF_2FA" in bad.stderr
    from tests.proof.production import production_env

    prod = subprocess.run([sys.executable, "-c", script], env={**base, **production_env("sqlite:///:memory:")},
                          capture_output=True, text=True, cwd=django_settings.BASE_DIR)
    assert prod.stdout.strip() == "required", prod.stderr


@pytest.mark.parametrize("mode, words", [("required", "sends every staff user"), ("optional", "turn it on"),
                                         ("off", "is off")])
def test_ensure_admin_explains_enrolment(settings, tmp_path, capsys, mode, words):
    from django.core.management import call_command

    settings.VAR_DIR, settings.STAFF_2FA = tmp_path, mode
    call_command("ensure_admin")
    out = capsys.readouterr().out
    assert "Admin login:" in out and words in out
    if mode != "off":
        assert "/admin/2fa/" in out
