"""Production settings: `check --deploy` is clean, security headers are sent, cookies are Secure.

Each check runs in a subprocess with DJANGO_ENV=production and every secret set (settings are read
once at import), against the test database so real requests (login) work.
"""
import json

import pytest
from django.db import connection

from tests.proof.production import SECRETS, production_env, run_python

pytestmark = pytest.mark.django_db


def _test_database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def prod_env():
    if connection.vendor != "postgresql":
        pytest.skip("runs the production settings against the PostgreSQL test database")
    return production_env(_test_database_url())


def test_check_deploy_is_clean_with_production_settings(prod_env):
    result = run_python("", prod_env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    for value in SECRETS.values():
        assert value not in result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret(prod_env):
    env = {k: v for k, v in prod_env.items() if k != "STRIPE_WEBHOOK_SECRET"}
    result = run_python("", env, "manage.py", "check")
    assert result.returncode != 0
    assert "STRIPE_WEBHOOK_SECRET" in result.stderr


PROBE = r"""
import json, django
django.setup()
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

HTTPS = {"HTTP_X_FORWARDED_PROTO": "https"}
out = {}
c = Client(HTTP_HOST="console.example.com")
r = c.get("/health", **HTTPS)
out["health"] = {"status": r.status_code, "headers": dict(r.headers)}
r = c.get("/admin/login/")
out["plain_admin"] = {"status": r.status_code, "location": r.headers.get("Location", "")}
r = c.get("/health")
out["plain_health"] = r.status_code
r = c.get("/admin/login/", **HTTPS)
out["login_page"] = {"status": r.status_code, "headers": dict(r.headers)}
out["csrf_cookie"] = {k: r.cookies["csrftoken"][k] for k in ("secure", "httponly", "samesite")}


class Rollback(Exception):
    pass


try:
    with transaction.atomic():
        User.objects.create_superuser("proof-deploy-admin", "a@example.com", "pw-0123456789-proof")
        r = c.post("/admin/login/?next=/admin/", {"username": "proof-deploy-admin", "password": "pw-0123456789-proof"}, **HTTPS)
        out["login"] = r.status_code
        out["session_cookie"] = {k: r.cookies["sessionid"][k] for k in ("secure", "httponly", "samesite")}
        raise Rollback
except Rollback:
    pass
print(json.dumps(out))
"""


_probe_cache: dict = {}


@pytest.fixture
def probe(prod_env):
    """One subprocess answers every header/cookie question (settings load once per process)."""
    if "answer" not in _probe_cache:
        result = run_python(PROBE, prod_env)
        assert result.returncode == 0, result.stderr
        _probe_cache["answer"] = json.loads(result.stdout.strip().splitlines()[-1])
    return _probe_cache["answer"]


@pytest.mark.parametrize("page", ["health", "login_page"])
def test_security_headers_are_sent(probe, page):
    headers = probe[page]["headers"]
    assert probe[page]["status"] == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "includeSubDomains" in headers["Strict-Transport-Security"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"


def test_plain_http_redirects_to_https_except_the_health_probe(probe):
    assert probe["plain_admin"]["status"] == 301
    assert probe["plain_admin"]["location"].startswith("https://console.example.com/")
    assert probe["plain_health"] == 200


def test_session_and_csrf_cookies_are_secure_in_production(probe):
    assert probe["login"] == 302
    assert probe["session_cookie"]["secure"] is True
    assert probe["session_cookie"]["httponly"] is True
    assert probe["csrf_cookie"]["secure"] is True
