"""A licence key exists in clear only in the customer's email and, at a reissue, the admin's one-time
message: never in a table, a log line or an API answer other than by its prefix."""
import json
import logging

import pytest
from django.apps import apps
from django.core import mail
from django.db import connection

from billing_console.stripe.dispatch import dispatch
from licensing.keys import key_normalize
from licensing.models import License
from licensing.services import license_reissue_key
from tests.core.factories import SubscribedCustomerFactory
from tests.licensing import stripe_events

pytestmark = pytest.mark.django_db


def every_stored_value() -> str:
    chunks = []
    for model in apps.get_models():
        fields = [f.attname for f in model._meta.concrete_fields]
        for row in model.objects.values_list(*fields):
            chunks.append(repr(row))
    return "\n".join(chunks)


def test_no_key_is_stored_or_logged_in_clear(api, caplog, django_capture_on_commit_callbacks):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # log every SQL statement with its parameters too
    try:
        buyer = SubscribedCustomerFactory()
        with django_capture_on_commit_callbacks(execute=True):
            dispatch(stripe_events.event("checkout.session.completed",
                                         stripe_events.checkout_session(sub_id=buyer.subscription_id)))
        key = next(line.strip() for line in mail.outbox[0].body.splitlines() if line.strip().startswith("BCL-"))
        answers = [
            api.post("/api/license/activate", json.dumps({"key": key, "device_id": "mac-01"}), content_type="application/json"),
            api.get("/api/license/status", {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=key),
            api.get("/api/license/status", {"device_id": "mac-01", "key": key}),
            api.post("/api/license/activate", json.dumps({"key": key + "X", "device_id": "mac-01"}),
                     content_type="application/json"),
            api.post("/api/license/deactivate", json.dumps({"key": key, "device_id": "mac-01"}),
                     content_type="application/json"),
        ]
        with django_capture_on_commit_callbacks(execute=True):
            _, new_key = license_reissue_key(license=License.objects.get(), actor_type="admin", actor="support")
        answers.append(api.post("/api/license/activate", json.dumps({"key": new_key, "device_id": "mac-01"}),
                                content_type="application/json"))
    finally:
        connection.force_debug_cursor = False
    assert [a.status_code for a in answers] == [201, 200, 400, 404, 200, 201]
    assert new_key in mail.outbox[1].body
    secrets = {key, key_normalize(key), new_key, key_normalize(new_key)}
    stored, logged = every_stored_value(), caplog.text
    assert "license.key_reissued" in stored and "SELECT" in logged  # the scans did see data
    for secret in secrets:
        assert secret not in stored
        assert secret not in logged
        assert all(secret not in a.content.decode() for a in answers)
