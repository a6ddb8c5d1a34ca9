"""With DEBUG on (make run), a 403/404 line and its traceback are written once, not once per handler."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = """
import logging, os
import django
django.setup()
try:
    raise PermissionError("nope")
except PermissionError:
    logging.getLogger("django.request").warning("Forbidden (Permission denied): /admin/x", exc_info=True)
logging.getLogger("django.request").warning("Not Found: /nowhere")
"""


def test_django_request_lines_are_written_once_in_debug():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", "LOG_FORMAT", "LOG_LEVEL")}
    env.update(DEBUG="true", SANDBOX_ENV_FILE="", DJANGO_SETTINGS_MODULE="billing_console.settings")
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    logged = out.stdout + out.stderr
    assert logged.count("Forbidden (Permission denied): /admin/x") == 1
    assert logged.count("Traceback") == 1
    assert logged.count("Not Found: /nowhere") == 1
