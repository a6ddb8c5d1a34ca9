"""Whatever a client sends to the write paths, the answer is a 4xx with a message, never a 500, and
nothing is written."""
import json

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from billing_console.models import AuditEvent
from licensing.keys import key_generate
from licensing.models import DeviceActivation

pytestmark = pytest.mark.django_db
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
bodies = st.dictionaries(st.sampled_from(["key", "device_id", "name", "platform", "other"]), json_values, max_size=5)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["activate", "deactivate"]))
def test_random_json_bodies_never_break_the_write_paths(api, body, path):
    api.raise_request_exception = True
    response = api.post(f"/api/license/{path}", json.dumps(body), content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.json()["error"]
    assert not DeviceActivation.objects.exists() and not AuditEvent.objects.exists()


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200), device_id=st.text(max_size=50), header=st.text(max_size=120))
def test_random_bytes_and_headers_never_break_the_api(api, raw, device_id, header):
    key = key_generate()  # well shaped, exists nowhere
    responses = [
        api.post("/api/license/activate", raw, content_type="application/json"),
        api.get("/api/license/status", {"device_id": device_id}, HTTP_X_LICENSE_KEY=key),
        api.get("/api/license/status", HTTP_AUTHORIZATION=f"Bearer {header}"),
    ]
    if header.isprintable() and header.isascii():
        responses.append(api.get("/api/license/status", {"device_id": "d"}, HTTP_X_LICENSE_KEY=header))
    for response in responses:
        assert 400 <= response.status_code < 500, response.content
    assert not DeviceActivation.objects.exists()
