"""`make run`'s banner: the admin password it prints logs in to the database in use, whichever it is."""
import importlib.util
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("run_banner", ROOT / "scripts" / "run_banner.py")
run_banner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_banner)

SQLITE_A = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/w/var/console.sqlite3"}
POSTGRES_B = {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "PORT": "5432", "NAME": "bc"}


def printed_password(line: str) -> str:
    return re.search(r"password: (\S+)$", line, re.M).group(1)


def test_database_key_tells_databases_apart():
    assert run_banner.database_key(SQLITE_A) == run_banner.database_key(dict(SQLITE_A))
    assert run_banner.database_key(SQLITE_A) != run_banner.database_key(POSTGRES_B)
    assert run_banner.database_key(POSTGRES_B) != run_banner.database_key({**POSTGRES_B, "NAME": "bc2"})


@pytest.mark.django_db
def test_printed_password_logs_in_after_switching_databases(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    admin = lambda: get_user_model().objects.get(username="admin")  # noqa: E731

    first = printed_password(run_banner.admin_login(tmp_path, SQLITE_A))
    assert admin().check_password(first)
    assert printed_password(run_banner.admin_login(tmp_path, SQLITE_A)) == first  # a restart keeps it

    # Another database (here the same test database under another key, as a database met for the first
    # time): its own password is made and set, the first database's file is left alone.
    other = printed_password(run_banner.admin_login(tmp_path, POSTGRES_B))
    assert other != first and admin().check_password(other)
    key_a, key_b = run_banner.database_key(SQLITE_A), run_banner.database_key(POSTGRES_B)
    assert (tmp_path / f"admin-password.{key_a}.txt").read_text().strip() == first
    assert (tmp_path / f"admin-password.{key_b}.txt").read_text().strip() == other
    assert (tmp_path / f"admin-password.{key_b}.txt").stat().st_mode & 0o077 == 0


@pytest.mark.django_db
def test_a_password_changed_by_hand_is_not_printed_wrong(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    run_banner.admin_login(tmp_path, SQLITE_A)
    user = get_user_model().objects.get(username="admin")
    user.set_password("chosen-by-the-developer-0")
    user.save()
    line = run_banner.admin_login(tmp_path, SQLITE_A)
    assert "password was changed" in line and "changepassword admin" in line
    assert get_user_model().objects.get(username="admin").check_password("chosen-by-the-developer-0")


@pytest.mark.django_db
def test_a_database_the_stripe_sandbox_does_not_know_is_found():
    import httpx

    from billing_console.models import Customer
    from sandbox.stripe import StripeEmulator

    emulator = StripeEmulator(port=0)
    emulator.start()
    try:
        key = "sk_test_sandbox" + "0" * 24
        assert run_banner.unknown_to_sandbox(emulator.url, key) == (0, None)
        Customer.objects.create(email="ghost@example.com", stripe_customer_id="cus_ForgottenByTheSandbox")
        assert run_banner.unknown_to_sandbox(emulator.url, key) == (1, "cus_ForgottenByTheSandbox")
        known = httpx.post(f"{emulator.url}/v1/customers", data={"email": "erin@example.com"},
                           auth=(key, ""), timeout=5).json()["id"]
        Customer.objects.create(email="erin@example.com", stripe_customer_id=known)
        assert run_banner.unknown_to_sandbox(emulator.url, key) == (2, None)  # asks about the newest only
    finally:
        emulator.stop()
