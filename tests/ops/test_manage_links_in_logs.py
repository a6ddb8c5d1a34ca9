"""A working manage link never reaches a log line: Django's WARNING for every 4xx carries the path, so
/manage/<token>/ is redacted by the console's handler in both formats, in tracebacks too, and in the
access log of the documented gunicorn setup. GET and HEAD both work on the pages (mail scanners send HEAD)."""
import io
import logging
import logging.config

import pytest
from django.conf import settings as django_settings

from billing_console.manage_links import manage_link_token
from tests.core.factories import SubscribedCustomerFactory

pytestmark = pytest.mark.django_db


def console_handler(fmt: str, stream) -> logging.Handler:
    """The console's own handler (formatter and filters as settings.LOGGING configures them)."""
    configurator = logging.config.DictConfigurator(django_settings.LOGGING)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configurator.configure_formatter(dict(django_settings.LOGGING["formatters"][fmt])))
    for name in django_settings.LOGGING["handlers"]["console"]["filters"]:
        handler.addFilter(configurator.configure_filter(dict(django_settings.LOGGING["filters"][name])))
    return handler


@pytest.fixture(params=["text", "json"])
def log_text(request):
    stream = io.StringIO()
    handler = console_handler(request.param, stream)
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream.getvalue
    root.removeHandler(handler)


def test_no_manage_token_in_any_log_line_of_a_4xx_answer(client, log_text):
    customer = SubscribedCustomerFactory(email="logs@example.com")
    token = manage_link_token(customer)
    tampered = token[:-3] + ("abc" if not token.endswith("abc") else "xyz")
    answers = [
        client.post(f"/manage/{token}/"),  # 405: the page is GET only
        client.get(f"/manage/{token}/portal"),  # 405: POST only
        client.post(f"/manage/{token}/devices/999999/deactivate"),  # 404: not this customer's device
        client.get(f"/manage/{tampered}/"),  # 403: the invalid-link page
        client.put(f"/manage/{token}/deploy/"),  # 405
    ]
    assert [a.status_code for a in answers] == [405, 405, 404, 403, 405]
    text = log_text()
    assert text.count("/manage/[redacted]") >= len(answers)
    secret_part = token.split(":", 1)[1]
    assert secret_part not in text and tampered.split(":", 1)[1] not in text


def test_a_traceback_is_redacted_in_the_text_format_too(log_text):
    token = "12:1vAbCd:Zm9vYmFyYmF6cXV4cXV1eA"
    try:
        raise ValueError(f"failed for https://console.example/manage/{token}/deploy/")
    except ValueError:
        logging.getLogger("billing_console.pages").exception("manage page failed")
    text = log_text()
    assert "ValueError" in text and "Traceback" in text
    assert token not in text and "/manage/[redacted]/deploy/" in text


@pytest.mark.parametrize("path", ["/", "/recover", "/checkout/success", "/checkout/cancel"])
def test_head_is_answered_like_get_on_the_public_pages(client, path):
    assert client.head(path).status_code == 200


def test_head_on_a_manage_page_is_not_405(client):
    customer = SubscribedCustomerFactory(email="head@example.com")
    token = manage_link_token(customer)
    assert client.head(f"/manage/{token}/").status_code == 200
    assert client.head(f"/manage/{token}/deploy/").status_code == 200


def test_the_documented_gunicorn_access_log_redacts_manage_links():
    from gunicorn.config import Config

    from billing_console.ops.access_log import RedactingGunicornLogger

    token = "12:1vAbCd:Zm9vYmFyYmF6cXV4cXV1eA"
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s "%(f)s" %(U)s')
    logger = RedactingGunicornLogger(cfg)
    stream = io.StringIO()
    for h in logger.access_log.handlers:
        h.setStream(stream)

    class Resp:
        status, sent, headers, response_length = "405 Method Not Allowed", 0, [], 0

    class Req:
        headers = [("REFERER", f"https://console.example/manage/{token}/")]

    environ = {"REQUEST_METHOD": "HEAD", "RAW_URI": f"/manage/{token}/", "PATH_INFO": f"/manage/{token}/",
               "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.1",
               "HTTP_REFERER": f"https://console.example/manage/{token}/"}
    import datetime
    logger.access(Resp(), Req(), environ, datetime.timedelta(seconds=0.01))
    line = stream.getvalue()
    assert "HEAD /manage/[redacted]/ HTTP/1.1" in line and token not in line


def test_every_handler_on_djangos_loggers_is_the_redacting_one():
    """Django's own defaults (a console handler while DEBUG, runserver's access lines) would print paths as is."""
    from billing_console.ops.logging import RedactSecretsFilter

    for name in ("django", "django.request", "django.server", ""):
        for handler in logging.getLogger(name).handlers:
            if type(handler).__module__.startswith("_pytest"):
                continue  # pytest's own capture
            assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters), (name or "root", handler)
