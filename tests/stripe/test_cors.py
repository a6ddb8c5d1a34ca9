"""CORS for a separate front end: only ALLOWED_ORIGINS, only on the checkout and portal APIs; the JSON-only
checkout API still answers a browser's preflight for its application/json POST."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing_console.models import CheckoutAttempt
from tests.stripe.conftest import emulator, stripe_settings  # noqa: F401  fixtures

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
FRONT = "https://www.example.com"
ACAO = "Access-Control-Allow-Origin"


@pytest.fixture(autouse=True)
def origins(settings):
    settings.CORS_ALLOWED_ORIGINS = [FRONT, "http://localhost:5173"]
    return settings


def preflight(client, path, origin, headers="content-type"):
    return client.options(path, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                          HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers)


@pytest.mark.parametrize("path", ["/api/billing/checkout", "/api/billing/portal"])
def test_preflight_from_a_listed_origin_is_answered(client, path):
    response = preflight(client, path, FRONT, "content-type,authorization")
    assert response.status_code == 200
    assert response[ACAO] == FRONT
    assert "POST" in response["Access-Control-Allow-Methods"]
    allowed = response["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed and "authorization" in allowed
    assert "Access-Control-Allow-Credentials" not in response


@pytest.mark.parametrize("origin", ["https://evil.example.net", "https://www.example.com.evil.net", "null",
                                    "http://www.example.com"])
def test_other_origins_get_no_cors_headers(client, origin):
    response = preflight(client, "/api/billing/checkout", origin)
    assert ACAO not in response and "Access-Control-Allow-Methods" not in response
    post = client.post("/api/billing/portal", {"token": "x"}, content_type="application/json", HTTP_ORIGIN=origin)
    assert post.status_code == 401 and ACAO not in post


@pytest.mark.parametrize("path", ["/api/billing/webhook", "/api/license/status", "/", "/health"])
def test_other_paths_never_answer_cors_even_for_a_listed_origin(client, path):
    response = preflight(client, path, FRONT)
    assert ACAO not in response


def test_the_json_post_from_a_listed_origin_carries_the_header(client, emulator):  # noqa: F811
    response = client.post("/api/billing/checkout", {"email": "ada@example.com", "plan": "pro"},
                           content_type="application/json", HTTP_ORIGIN=FRONT)
    assert response.status_code == 200 and response[ACAO] == FRONT
    assert CheckoutAttempt.objects.count() == 1
    # A "simple" cross-site form post is still refused (415) whatever its origin says.
    form = client.post("/api/billing/checkout", "email=ada%40example.com&plan=pro",
                       content_type="application/x-www-form-urlencoded", HTTP_ORIGIN=FRONT)
    assert form.status_code == 415 and CheckoutAttempt.objects.count() == 1


def test_error_answers_carry_the_header_so_the_front_end_can_read_them(client, settings):
    settings.CHECKOUT_ENABLED = False
    response = client.post("/api/billing/checkout", {"email": "ada@example.com", "plan": "pro"},
                           content_type="application/json", HTTP_ORIGIN=FRONT)
    assert response.status_code == 503 and response[ACAO] == FRONT
    assert response.json()["error"]["code"] == "CHECKOUT_CLOSED"


def _allowed(value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALLOWED_ORIGINS": value}
    return subprocess.run([sys.executable, "-c", "import billing_console.settings as s; print(s.CORS_ALLOWED_ORIGINS)"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_allowed_origins_is_read_as_a_comma_list():
    out = _allowed("https://www.example.com/, http://localhost:5173")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['https://www.example.com', 'http://localhost:5173']"


@pytest.mark.parametrize("bad", ["*", "www.example.com", "https://www.example.com/app", "ftp://x.example.com"])
def test_a_malformed_origin_stops_the_start(bad):
    out = _allowed(bad)
    assert out.returncode != 0 and "ALLOWED_ORIGINS" in out.stderr
