"""gunicorn.conf.py takes its numbers from the settings; SENTRY_DSN turns Sentry on with the redacting hook."""
import pytest

from tests.proof.production import production_env, run_python

pytestmark = pytest.mark.django_db

GUNICORN = """
import runpy, json
conf = runpy.run_path("gunicorn.conf.py")
print(json.dumps({k: conf[k] for k in ("bind", "workers", "threads", "timeout", "wsgi_app")}))
"""

SENTRY = """
import django, json
django.setup()
import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
client = sentry_sdk.get_client()
if not client.is_active():
    print(json.dumps({"active": False}))
    raise SystemExit(0)
print(json.dumps({"active": client.is_active(), "dsn": client.dsn,
                  "hook": getattr(client.options["before_send"], "__qualname__", None),
                  "django": any(isinstance(i, DjangoIntegration) for i in client.integrations.values()),
                  "pii": client.options["send_default_pii"]}))
"""


def test_gunicorn_conf_reads_workers_and_threads_from_the_settings(db):
    import json

    env = production_env("sqlite:////tmp/unused.sqlite3", GUNICORN_BIND="127.0.0.1:8123", GUNICORN_WORKERS="",
                         GUNICORN_THREADS="6")
    result = run_python(GUNICORN, env)
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout.strip().splitlines()[-1])
    assert conf["bind"] == "127.0.0.1:8123" and conf["threads"] == 6 and conf["workers"] >= 3
    assert conf["wsgi_app"] == "billing_console.wsgi:application"
    env["GUNICORN_WORKERS"] = "5"
    assert json.loads(run_python(GUNICORN, env).stdout.strip().splitlines()[-1])["workers"] == 5


def test_sentry_dsn_turns_on_sentry_with_the_django_integration_and_the_redacting_hook(db):
    import json

    env = production_env("sqlite:////tmp/unused.sqlite3", SENTRY_DSN="https://public@sentry.example.com/1")
    result = run_python(SENTRY, env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"active": True, "dsn": "https://public@sentry.example.com/1", "hook": "sentry_before_send",
                   "django": True, "pii": False}
    env.pop("SENTRY_DSN")
    assert json.loads(run_python(SENTRY, env).stdout.strip().splitlines()[-1])["active"] is False
