"""The sandbox's settings file (SANDBOX_ENV_FILE, written by `make run`) as a second terminal meets it:
settings are read once, at import, so each case imports them in a fresh process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from billing_console.settings.base import _sandbox_values

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_LINES = {
    "STRIPE_SECRET_KEY": "sk_test_sandboxAAAAAAAAAAAAAAAAAAAAAAAA",
    "STRIPE_API_HOST": "http://127.0.0.1:12111",
    "HELM_BUNDLE_MANIFEST_URL": "http://127.0.0.1:12113/manifest.json",
    "SITE_URL": "http://127.0.0.1:8765",
}
# What the child must not inherit from this process: pytest's marker and anything the file sets.
CLEARED = {"PYTEST_VERSION", "SANDBOX_ENV_FILE", "DJANGO_ENV", *SANDBOX_LINES}


def settings_seen(tmp_path, **environment) -> dict:
    env_file = tmp_path / "sandbox.env"
    env_file.write_text("# a comment line\n" + "".join(f"{k}={v}\n" for k, v in SANDBOX_LINES.items()))
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["SANDBOX_ENV_FILE"] = str(env_file)
    env.update(environment)
    code = ("import json, billing_console.settings as s; print(json.dumps({'loaded': s.SANDBOX_ENV_LOADED, "
            "'key': s.STRIPE_SECRET_KEY, 'host': getattr(s, 'STRIPE_API_HOST', ''), "
            "'manifest': s.HELM_BUNDLE_MANIFEST_URL, 'site': s.SITE_URL}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_terminal_reads_the_sandbox_file(tmp_path):
    seen = settings_seen(tmp_path)
    assert seen == {"loaded": True, "key": SANDBOX_LINES["STRIPE_SECRET_KEY"], "host": "http://127.0.0.1:12111",
                    "manifest": "http://127.0.0.1:12113/manifest.json", "site": "http://127.0.0.1:8765"}


def test_the_environment_wins_over_the_file_value_by_value(tmp_path):
    seen = settings_seen(tmp_path, SITE_URL="https://console.example.com", HELM_BUNDLE_MANIFEST_URL="")
    assert seen["site"] == "https://console.example.com"
    assert seen["manifest"] == "http://127.0.0.1:12113/manifest.json"  # empty counts as unset
    assert seen["loaded"] is True


def test_a_real_stripe_key_ignores_the_whole_file(tmp_path):
    seen = settings_seen(tmp_path, STRIPE_SECRET_KEY="sk_test_realrealrealrealrealreal")
    assert seen == {"loaded": False, "key": "sk_test_realrealrealrealrealreal", "host": "", "manifest": "",
                    "site": "http://127.0.0.1:8000"}


@pytest.mark.parametrize("environment", [{"PYTEST_VERSION": "9"}, {"SANDBOX_ENV_FILE": ""}])
def test_tests_and_an_empty_setting_never_read_it(tmp_path, environment):
    seen = settings_seen(tmp_path, **environment)
    assert seen["loaded"] is False
    assert seen["key"] == "" and seen["manifest"] == ""


def test_this_test_run_did_not_read_it():
    assert settings.SANDBOX_ENV_LOADED is False


def test_a_key_in_dotenv_means_real_services_and_empty_values_count_as_unset():
    sandbox = {"STRIPE_SECRET_KEY": "sk_test_sandboxX", "EMAIL_URL": "smtp://127.0.0.1:1025", "SITE_URL": "http://a"}
    assert _sandbox_values(sandbox, {}, {"STRIPE_SECRET_KEY": "sk_live_real"}) == {}
    assert _sandbox_values(sandbox, {"STRIPE_SECRET_KEY": "sk_test_env"}, {}) == {}
    # .env copied from .env.example (EMAIL_URL=consolemail://) does not turn the sandbox inbox off.
    assert _sandbox_values(sandbox, {"SITE_URL": "http://b", "EMAIL_URL": ""}, {"EMAIL_URL": "consolemail://"}) == {
        "STRIPE_SECRET_KEY": "sk_test_sandboxX", "EMAIL_URL": "smtp://127.0.0.1:1025"}
