import json
import uuid

import pytest
from django.core.management import call_command

from licensing.models import DeviceActivation
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

URL = "/api/license/status"


@pytest.fixture(params=["locmem", "database", "redis"])
def shared_cache(request, settings):
    """The limits must hold in the caches production uses (database, Redis), not just locmem."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS = 3600  # a window boundary inside a test would reset the counts
    if request.param == "database":
        request.getfixturevalue("db")
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                                       "LOCATION": "bc_cache_test", "KEY_PREFIX": prefix}}
        call_command("createcachetable", verbosity=0)
    elif request.param == "redis":
        request.getfixturevalue("db")
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5).ping()
        except redis.exceptions.ConnectionError:
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": "redis://127.0.0.1:6379/0", "KEY_PREFIX": prefix}}
    else:
        request.getfixturevalue("db")
    return request.param


def test_per_key_limit_answers_429_with_retry_after(api, settings, shared_cache):
    settings.LICENSE_RATE_LIMIT_PER_KEY = 3
    activation = DeviceActivationFactory(device_id="mac-01", license=LicenseFactory())
    answers = [api.get(URL, {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=activation.license.key) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert 1 <= int(limited["Retry-After"]) <= 3600
    assert limited.json()["code"] == "RATE_LIMITED"
    # Another licence from the same address is not held back by the first one's limit.
    other = DeviceActivationFactory(device_id="pc-02", license=LicenseFactory())
    assert api.get(URL, {"device_id": "pc-02"}, HTTP_X_LICENSE_KEY=other.license.key).status_code == 200


def test_per_address_limit_covers_unknown_keys(client, settings, signing_key, shared_cache):
    settings.LICENSE_RATE_LIMIT_PER_ADDRESS = 5
    codes = [client.get(URL, {"device_id": "d"}, HTTP_X_LICENSE_KEY=f"BCL-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAA{c}").status_code
             for c in "ABCDEFG"]
    assert codes == [404] * 5 + [429] * 2
    # Another client address is not affected.
    assert client.get(URL, {"device_id": "d"}, HTTP_X_LICENSE_KEY="BCL-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA",
                      REMOTE_ADDR="10.0.0.9").status_code == 404


@pytest.mark.django_db
def test_activation_is_limited_per_key_and_writes_nothing_when_limited(api, settings):
    settings.LICENSE_RATE_LIMIT_PER_KEY = 2
    settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS = 3600
    lic = LicenseFactory(max_devices=10)
    codes = [api.post("/api/license/activate", json.dumps({"key": lic.key, "device_id": f"d{i}"}),
                      content_type="application/json").status_code for i in range(3)]
    assert codes == [201, 201, 429]
    assert DeviceActivation.objects.count() == 2


@pytest.mark.django_db
def test_trusted_proxy_hops_take_the_client_from_x_forwarded_for(client, settings, signing_key):
    settings.LICENSE_RATE_LIMIT_PER_ADDRESS = 1
    settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS = 3600
    settings.TRUSTED_PROXY_HOPS = 1

    def get(xff):
        return client.get("/api/license/public-key", HTTP_X_FORWARDED_FOR=xff).status_code

    assert get("1.1.1.1") == 200
    assert get("1.1.1.1") == 429
    assert get("spoofed, 2.2.2.2") == 200  # the proxy's own entry counts, not what the client wrote


@pytest.mark.django_db
def test_unreachable_cache_fails_open(api, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    assert api.get("/api/license/public-key").status_code == 200


@pytest.mark.django_db
def test_seven_spellings_of_one_key_share_one_bucket(api, settings):
    settings.LICENSE_RATE_LIMIT_PER_KEY = 6
    settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS = 3600
    activation = DeviceActivationFactory(device_id="mac-01", license=LicenseFactory())
    key = activation.license.key  # BCL-XXXXX-...
    compact = key.replace("-", "")
    spellings = [key, key.lower(), compact, compact.lower(), key.replace("-", " "), f"  {key}  ",
                 "bcl-" + key[4:].title()]
    assert len(set(spellings)) == 7
    codes = [api.get(URL, {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=s).status_code for s in spellings]
    assert codes == [200] * 6 + [429]


@pytest.mark.django_db
def test_spellings_of_an_unknown_key_share_one_bucket_too(client, settings, signing_key):
    settings.LICENSE_RATE_LIMIT_PER_KEY = 2
    settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS = 3600
    key = "BCL-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"
    codes = [client.get(URL, {"device_id": "d"}, HTTP_X_LICENSE_KEY=s).status_code
             for s in (key, key.lower(), key.replace("-", ""))]
    assert codes == [404, 404, 429]
