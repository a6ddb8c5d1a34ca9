import io
import json
import logging

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django_q.tasks import async_task

from billing_console.ops.logging import ContextFilter, JsonFormatter, RedactSecretsFilter, RequestIdMiddleware

STRIPE_KEY = "sk_test_" + "A1b2C3d4" * 4
OPS_SECRET = "ops-bearer-secret-value-42"


@pytest.fixture
def json_lines(settings):
    """Capture what the console's JSON handler writes, with the configured secrets set."""
    settings.STRIPE_SECRET_KEY = STRIPE_KEY
    settings.OPS_SECRET = OPS_SECRET
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("billing_console.ops_test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def log_from_a_task(note: str) -> None:
    logging.getLogger("billing_console.ops_test").info("task ran %s", note, extra={"event": "task_ran"})


def test_a_line_written_in_a_request_carries_its_request_id(json_lines):
    def view(request):
        logging.getLogger("billing_console.ops_test").info("checkout for %s", STRIPE_KEY,
                                                           extra={"event": "checkout", "auth": OPS_SECRET})
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-abc"))
    assert response["X-Request-ID"] == "req-abc"
    [line] = json_lines()
    assert line["request_id"] == "req-abc" and line["task_id"] == "-" and line["event"] == "checkout"
    raw = json.dumps(line)
    assert STRIPE_KEY not in raw and OPS_SECRET not in raw and "[redacted]" in raw


def test_a_line_written_in_a_django_q_task_carries_the_task_id(json_lines, db):
    task_id = async_task("tests.ops.test_logging.log_from_a_task", f"with {OPS_SECRET}", sync=True)
    lines = [line for line in json_lines() if line.get("event") == "task_ran"]
    assert len(lines) == 1
    assert lines[0]["task_id"] == task_id
    assert OPS_SECRET not in json.dumps(lines[0])


def test_the_task_id_is_cleared_when_the_task_ends(json_lines, db):
    async_task("tests.ops.test_logging.log_from_a_task", "first", sync=True)
    logging.getLogger("billing_console.ops_test").info("after the task")
    assert json_lines()[-1]["task_id"] == "-"


def test_ops_services_log_one_structured_event_line(json_lines, tmp_path, db, caplog):
    from billing_console.ops.backups import backup_export

    with caplog.at_level(logging.INFO, logger="billing_console.backups"):
        backup_export(out_path=tmp_path)
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "backup_exported"]
    assert record.rows == 0 and record.sha256


@pytest.fixture
def console_output():
    """What the console's configured handler (settings.LOGGING, filters included) writes."""
    from billing_console.ops.logging import ClientErrorTracebackFilter

    handlers = [h for h in logging.getLogger().handlers
                if any(isinstance(f, ClientErrorTracebackFilter) for f in h.filters)]
    assert handlers, "the console handler carries the 4xx traceback filter"
    stream = io.StringIO()
    previous = handlers[0].setStream(stream)
    yield stream
    handlers[0].setStream(previous)


def test_a_404_is_logged_once_without_a_traceback(admin_client, console_output):
    response = admin_client.get("/admin/billing_console/invoice/999999/pdf/")
    assert response.status_code == 404
    lines = [line for line in console_output.getvalue().splitlines() if "django.request" in line]
    assert len(lines) == 1 and "Not Found" in lines[0]
    assert "Traceback" not in console_output.getvalue()


def test_a_5xx_record_keeps_its_traceback(console_output):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("django.request").error("Internal Server Error: /x", exc_info=True,
                                                  extra={"status_code": 500})
        logging.getLogger("django.request").warning("Forbidden (Permission denied): /y", exc_info=True,
                                                    extra={"status_code": 403})
    text = console_output.getvalue()
    assert text.count("Traceback") == 1 and "RuntimeError: boom" in text
    assert "Forbidden (Permission denied): /y" in text
