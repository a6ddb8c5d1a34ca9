"""The lines of `make run`'s banner that need the console: the admin login, and in sandbox mode the demo
values and a check that the sandbox knows this database's customers.

    .venv/bin/python scripts/run_banner.py [--sandbox-inbox URL]

The admin password is kept per database (var/admin-password.<key>.txt, key from the connection
settings): one file for every database printed the password of whichever was used first.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_console.settings")


def database_key(database: dict) -> str:
    """Short, stable id of the database a connection reaches (engine, host, port, name)."""
    ident = "|".join(str(database.get(part) or "") for part in ("ENGINE", "HOST", "PORT", "NAME"))
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def admin_login(var_dir: Path, database: dict) -> str:
    """ensure_admin's login line, with the password of this database (made when this database has none)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    shared = var_dir / "admin-password.txt"  # the file ensure_admin reads and writes
    own = var_dir / f"admin-password.{database_key(database)}.txt"
    if own.exists():
        shutil.copy2(own, shared)
    else:  # a database met for the first time here: ensure_admin sets a fresh password and writes it
        shared.unlink(missing_ok=True)
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    shutil.copy2(shared, own)
    own.chmod(0o600)
    user = get_user_model().objects.get(username="admin")
    if not user.check_password(shared.read_text().strip()):
        return ("Admin login: the admin's password was changed in this database; set one with "
                "`.venv/bin/python manage.py changepassword admin`")
    return out.getvalue().strip()


def unknown_to_sandbox(api_host: str, secret_key: str) -> tuple[int, str | None]:
    """(customers with a Stripe id, one of them the Stripe sandbox answers 404 for, else None)."""
    import httpx

    from billing_console.models import Customer

    with_ids = Customer.objects.exclude(stripe_customer_id=None).exclude(stripe_customer_id="")
    newest = with_ids.order_by("-pk").values_list("stripe_customer_id", flat=True).first()
    if newest is None:
        return 0, None
    answer = httpx.get(f"{api_host.rstrip('/')}/v1/customers/{newest}", timeout=5,
                       headers={"Authorization": f"Bearer {secret_key}"})
    return with_ids.count(), (newest if answer.status_code == 404 else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sandbox-inbox", default="", help="the sandbox's inbox URL (sandbox mode only)")
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.conf import settings

    site = settings.SITE_URL
    print(f" Pricing page: {site}/")
    print(f" {admin_login(settings.VAR_DIR, settings.DATABASES['default'])}")
    print(f" Health:       {site}/health")
    if not args.sandbox_inbox:
        return 0
    from sandbox.run import DEMO_ACCOUNT_ID, DEMO_TOKEN, DEMO_WORKER_NAME

    print(" Sandbox mode (no Stripe key configured): Stripe, Cloudflare, email and WhatsApp are local stand-ins.")
    print(f"   Inbox, email and WhatsApp: {args.sandbox_inbox}")
    print("   Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0341 is declined")
    print(f"   Deploy form: Cloudflare account id  {DEMO_ACCOUNT_ID}")
    print(f"                Worker name            {DEMO_WORKER_NAME}")
    print(f"                Cloudflare API token   {DEMO_TOKEN}")
    print(f"   Second terminal: manage.py reads {settings.SANDBOX_ENV_FILE} (same sandbox, same keys)")
    try:
        count, unknown = unknown_to_sandbox(settings.STRIPE_API_HOST, settings.STRIPE_SECRET_KEY)
    except Exception as exc:  # a check for people: report it, never stop the run for it
        print(f" ! Could not ask the Stripe sandbox about this database's customers: {exc}")
        return 0
    if unknown:
        print(f" ! This database has {count} customer(s) with Stripe ids, and the Stripe sandbox does not know")
        print(f"   {unknown}: the sandbox started without them (its state was lost or belongs to another")
        print("   database). Their portal, renewals and refunds will fail with \"No such customer\".")
        print("   To start over: Ctrl-C, move the database aside (SQLite: rm var/console.sqlite3*; PostgreSQL:")
        print("   a new DATABASE_URL), then make run again.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
