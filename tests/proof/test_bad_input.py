"""Every public JSON endpoint, fed malformed, oversized, wrongly typed and unicode-laden input, answers
4xx with a clear message, never a 500, and writes nothing."""
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.licensing.conftest import new_signing_key
from tests.licensing.factories import DeviceActivationFactory
from tests.proof.fuzz import FUZZ, assert_rejected, not_an_object, row_counts, unicode_laden, wrong_types

pytestmark = pytest.mark.django_db
OPS_SECRET = "ops-secret-for-the-bad-input-tests-0123"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    fields: tuple[str, ...]

    def __str__(self):
        return self.name


POST_ENDPOINTS = [
    Endpoint("license-activate", "/api/license/activate", ("key", "device_id", "name", "platform")),
    Endpoint("license-deactivate", "/api/license/deactivate", ("key", "device_id")),
    Endpoint("checkout", "/api/billing/checkout", ("email", "plan", "price", "device_id")),
    Endpoint("portal", "/api/billing/portal", ("token",)),
]


@pytest.fixture(autouse=True)
def _configured(stripe_settings):
    """Configured as in production, with rate limits out of reach (a 429 would hide the parser)."""
    settings = stripe_settings
    settings.OPS_SECRET = OPS_SECRET
    settings.LICENSE_SIGNING_KEY = new_signing_key()[0]
    settings.LICENSE_RATE_LIMIT_PER_ADDRESS = 10 ** 9
    settings.LICENSE_RATE_LIMIT_PER_KEY = 10 ** 9


@pytest.fixture
def existing():
    """A real licence with a device, so bad input has something it could wrongly change."""
    return DeviceActivationFactory()


def post(client, endpoint: Endpoint, body: bytes, content_type: str = "application/json", **headers):
    return client.post(endpoint.path, body, content_type=content_type, **headers)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=str)
@FUZZ
@given(body=not_an_object)
def test_body_that_is_not_a_json_object_is_rejected(client, existing, endpoint, body):
    before = row_counts()
    assert_rejected(post(client, endpoint, body), before)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=str)
@FUZZ
@given(data=st.data())
def test_fields_missing_or_of_the_wrong_type_are_rejected(client, existing, endpoint, data):
    before = row_counts()
    assert_rejected(post(client, endpoint, data.draw(wrong_types(dict.fromkeys(endpoint.fields)))), before)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=str)
@FUZZ
@given(data=st.data())
def test_unicode_laden_fields_are_rejected(client, existing, endpoint, data):
    before = row_counts()
    assert_rejected(post(client, endpoint, data.draw(unicode_laden(dict.fromkeys(endpoint.fields)))), before)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=str)
def test_oversized_body_is_rejected(client, existing, endpoint):
    before = row_counts()
    body = b'{"key": "' + b"A" * (2 * 1024 * 1024) + b'"}'
    response = post(client, endpoint, body)
    assert response.status_code in (400, 413)
    assert_rejected(response, before)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=str)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_is_rejected(client, existing, endpoint, content_type):
    before = row_counts()
    assert_rejected(post(client, endpoint, b"key=a&device_id=b", content_type=content_type), before)


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=str)
def test_wrong_method_is_405_naming_the_allowed_one(client, endpoint):
    before = row_counts()
    response = client.get(endpoint.path)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert row_counts() == before


latin1 = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120)


@FUZZ
@given(device_id=st.one_of(st.none(), latin1), key=st.one_of(st.none(), latin1),
       authorization=st.one_of(st.none(), latin1, latin1.map(lambda t: f"Bearer {t}")),
       key_in_query=st.booleans())
def test_licence_status_with_bad_credentials_is_rejected(client, existing, device_id, key, authorization, key_in_query):
    before = row_counts()
    params = {} if device_id is None else {"device_id": device_id}
    if key_in_query:
        params["key"] = key or "x"
    headers = {}
    if key is not None:
        headers["HTTP_X_LICENSE_KEY"] = key
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    assert_rejected(client.get("/api/license/status", params, **headers), before)


@FUZZ
@given(authorization=st.one_of(latin1, latin1.map(lambda t: f"Bearer {t}"), st.just(f"Basic {OPS_SECRET}"),
                               st.just(f"Bearer {OPS_SECRET[:-1]}"), st.just(f"bearer  {OPS_SECRET}x")))
def test_ops_summary_with_a_wrong_bearer_is_401(client, authorization):
    before = row_counts()
    response = client.get("/api/ops/summary", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert_rejected(response, before)
