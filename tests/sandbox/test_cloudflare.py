"""The fake Cloudflare API over real HTTP: token verify, Worker upload, and every injected fault."""
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sandbox.cloudflare import (CODE_ACCOUNT_SUSPENDED, CODE_AUTH_ERROR, CODE_INVALID_TOKEN, CODE_RATE_LIMITED,
                                CODE_SCRIPT_INVALID, CODE_UNKNOWN, FakeCloudflare)

ACCOUNT = "a" * 32
OTHER_ACCOUNT = "b" * 32
TOKEN = "tok_live_worker_edit"
MODULE = b"export default { fetch() { return new Response('hi'); } };\n"


@pytest.fixture
def cf():
    with FakeCloudflare() as server:
        server.add_token(TOKEN, ACCOUNT)
        yield server


def client(cf, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # verify=False: plain HTTP on loopback, and skipping the CA bundle saves ~0.3 s per client.
    return httpx.Client(base_url=f"{cf.url}/client/v4", headers=headers, verify=False, **kwargs)


def upload(cf, token=TOKEN, account=ACCOUNT, script="acme-worker", module=MODULE, metadata=None, files=None, **kwargs):
    metadata = {"main_module": "worker.mjs", "compatibility_date": "2025-01-01"} if metadata is None else metadata
    if files is None:
        files = [("metadata", (None, json.dumps(metadata), "application/json")),
                 ("worker.mjs", ("worker.mjs", module, "application/javascript+module"))]
    with client(cf, token, **kwargs) as http:
        return http.put(f"/accounts/{account}/workers/scripts/{script}", files=files)


def error_code(response):
    body = response.json()
    assert body["success"] is False
    return body["errors"][0]["code"]


@pytest.mark.parametrize("path", ["/user/tokens/verify", f"/accounts/{ACCOUNT}/tokens/verify"])
def test_active_token_verifies(cf, path):
    with client(cf) as http:
        response = http.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["errors"] == []
    assert body["result"]["status"] == "active" and body["result"]["id"]


@pytest.mark.parametrize("status", ["expired", "revoked"])
def test_expired_or_revoked_token_is_invalid(cf, status):
    cf.add_token("tok_old", ACCOUNT, status=status)
    with client(cf, "tok_old") as http:
        response = http.get("/user/tokens/verify")
    assert response.status_code == 401
    assert error_code(response) == CODE_INVALID_TOKEN
    assert response.json()["errors"][0]["message"] == "Invalid API Token"


def test_unknown_token_is_invalid(cf):
    with client(cf, "tok_nobody_issued") as http:
        assert http.get("/user/tokens/verify").status_code == 401


def test_token_revoked_after_issue_stops_verifying(cf):
    cf.set_token_status(TOKEN, "revoked")
    with client(cf) as http:
        assert http.get("/user/tokens/verify").status_code == 401


def test_missing_authorization_is_a_bad_request(cf):
    with client(cf, token=None) as http:
        response = http.get("/user/tokens/verify")
    assert response.status_code == 400 and error_code(response) == 9106


def test_account_verify_rejects_token_of_another_account(cf):
    with client(cf) as http:
        assert http.get(f"/accounts/{OTHER_ACCOUNT}/tokens/verify").status_code == 401


def test_upload_is_recorded_with_hash_size_and_token(cf):
    response = upload(cf)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["id"] == "acme-worker"
    assert result["etag"] == hashlib.sha256(MODULE).hexdigest()
    [recorded] = cf.uploads
    assert (recorded.account_id, recorded.script_name) == (ACCOUNT, "acme-worker")
    assert recorded.sha256 == hashlib.sha256(MODULE).hexdigest() and recorded.size == len(MODULE)
    assert recorded.token == TOKEN and recorded.main_module == "worker.mjs"
    assert recorded.compatibility_date == "2025-01-01"


def test_binary_module_bytes_survive_multipart_intact(cf):
    module = bytes(range(256)) * 4 + b"\r\n--boundary-lookalike\r\n"
    assert upload(cf, module=module).status_code == 200
    assert cf.uploads[0].sha256 == hashlib.sha256(module).hexdigest()


def test_reupload_keeps_created_on_and_appends_a_record(cf):
    first = upload(cf).json()["result"]
    second = upload(cf, module=MODULE + b"// v2\n").json()["result"]
    assert first["created_on"] == second["created_on"]
    assert [u.size for u in cf.uploads_for(ACCOUNT, "acme-worker")] == [len(MODULE), len(MODULE) + 6]


def test_token_without_workers_scripts_edit_is_forbidden(cf):
    cf.add_token("tok_read_only", ACCOUNT, scopes=("account_settings:read",))
    response = upload(cf, token="tok_read_only")
    assert response.status_code == 403 and error_code(response) == CODE_AUTH_ERROR
    assert cf.uploads == []


def test_token_of_another_account_is_forbidden(cf):
    response = upload(cf, account=OTHER_ACCOUNT)
    assert response.status_code == 403 and error_code(response) == CODE_AUTH_ERROR


def test_suspended_account_is_refused_until_reinstated(cf):
    cf.suspend_account(ACCOUNT)
    response = upload(cf)
    assert response.status_code == 403 and error_code(response) == CODE_ACCOUNT_SUSPENDED
    assert "suspended" in response.json()["errors"][0]["message"]
    cf.suspend_account(ACCOUNT, suspended=False)
    assert upload(cf).status_code == 200


@pytest.mark.parametrize("files, message", [
    ([("worker.mjs", ("worker.mjs", MODULE, "application/javascript+module"))], "metadata"),
    ([("metadata", (None, "{not json", "application/json")),
      ("worker.mjs", ("worker.mjs", MODULE, "application/javascript+module"))], "JSON"),
    ([("metadata", (None, json.dumps({"compatibility_date": "2025-01-01"}), "application/json")),
      ("worker.mjs", ("worker.mjs", MODULE, "application/javascript+module"))], "main_module"),
    ([("metadata", (None, json.dumps({"main_module": "worker.mjs"}), "application/json")),
      ("other.mjs", ("other.mjs", MODULE, "application/javascript+module"))], "No such module"),
    ([("metadata", (None, json.dumps({"main_module": "worker.mjs"}), "application/json")),
      ("worker.mjs", ("worker.mjs", MODULE, "application/javascript"))], "javascript+module"),
    ([("metadata", (None, json.dumps({"main_module": "worker.mjs", "compatibility_date": "tomorrow"}),
                    "application/json")),
      ("worker.mjs", ("worker.mjs", MODULE, "application/javascript+module"))], "compatibility_date"),
])
def test_invalid_multipart_upload_is_rejected(cf, files, message):
    response = upload(cf, files=files)
    assert response.status_code == 400
    assert error_code(response) == CODE_SCRIPT_INVALID
    assert message in response.json()["errors"][0]["message"]
    assert cf.uploads == []


def test_plain_body_upload_is_rejected(cf):
    with client(cf) as http:
        response = http.put(f"/accounts/{ACCOUNT}/workers/scripts/acme-worker", content=MODULE,
                            headers={"Content-Type": "application/javascript"})
    assert response.status_code == 400 and error_code(response) == CODE_SCRIPT_INVALID


def test_unknown_route_answers_cloudflare_404(cf):
    with client(cf) as http:
        response = http.get(f"/accounts/{ACCOUNT}/nothing/here")
    assert response.status_code == 404 and error_code(response) == 7003


@pytest.mark.parametrize("status, code", [(401, CODE_INVALID_TOKEN), (403, CODE_AUTH_ERROR),
                                          (429, CODE_RATE_LIMITED), (500, CODE_UNKNOWN)])
def test_injected_json_failures_then_recovery(cf, status, code):
    cf.fail_next(status, count=2, retry_after=7)
    for _ in range(2):
        response = upload(cf)
        assert response.status_code == status and error_code(response) == code
    if status == 429:
        assert response.headers["Retry-After"] == "7"
    assert upload(cf).status_code == 200
    assert len(cf.uploads) == 1


def test_injected_502_is_an_html_edge_page(cf):
    cf.fail_next(502)
    response = upload(cf)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Bad gateway" in response.text


def test_injected_drop_closes_the_connection(cf):
    cf.fail_next("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        upload(cf)
    assert upload(cf).status_code == 200


def test_injected_hang_times_the_client_out(cf):
    cf.fail_next("drop", delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        upload(cf, timeout=0.1)


def test_fault_for_one_account_leaves_others_alone(cf):
    cf.add_token("tok_other", OTHER_ACCOUNT)
    cf.fail_next(429, account_id=ACCOUNT)
    assert upload(cf, token="tok_other", account=OTHER_ACCOUNT).status_code == 200
    assert upload(cf).status_code == 429
    assert upload(cf).status_code == 200


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=5) as client:
        yield client


def test_faults_through_the_control_endpoint(cf, http):
    answer = http.post(f"{cf.url}/_sandbox/faults", json={"status": 500, "count": 1, "account_id": ACCOUNT,
                                                            "latency": 0.01})
    assert answer.status_code == 200
    assert answer.json()["faults"][0]["status"] == 500 and answer.json()["latency"] == 0.01
    assert upload(cf).status_code == 500
    assert upload(cf).status_code == 200
    assert http.post(f"{cf.url}/_sandbox/faults", json={"status": 200}).status_code == 400
    assert http.post(f"{cf.url}/_sandbox/faults", json={"clear": True}).json() == {"latency": 0.0, "faults": []}


def test_tokens_accounts_and_uploads_through_control_endpoints(cf, http):
    base = f"{cf.url}/_sandbox"
    assert http.post(f"{base}/tokens", json={"token": "tok_new", "account_id": OTHER_ACCOUNT}).status_code == 201
    assert upload(cf, token="tok_new", account=OTHER_ACCOUNT, script="w2").status_code == 200
    assert http.post(f"{base}/accounts/{OTHER_ACCOUNT}/suspend", json={}).status_code == 200
    assert upload(cf, token="tok_new", account=OTHER_ACCOUNT, script="w2").status_code == 403
    assert http.post(f"{base}/tokens/status", json={"token": "tok_new", "status": "expired"}).status_code == 200
    assert upload(cf, token="tok_new", account=OTHER_ACCOUNT, script="w2").status_code == 401
    assert http.post(f"{base}/tokens/status", json={"token": "nope", "status": "expired"}).status_code == 400
    uploads = http.get(f"{base}/uploads", params={"account_id": OTHER_ACCOUNT}).json()["uploads"]
    assert [(u["script_name"], u["sha256"]) for u in uploads] == [("w2", hashlib.sha256(MODULE).hexdigest())]
    assert http.post(f"{base}/reset").status_code == 200
    assert cf.uploads == [] and http.get(f"{base}/uploads").json() == {"uploads": []}


def test_latency_applies_to_every_call(cf):
    cf.set_latency(0.05)
    started = time.monotonic()
    with client(cf) as http:
        http.get("/user/tokens/verify")
    assert time.monotonic() - started >= 0.05


def test_serves_32_concurrent_uploads_with_latency_in_parallel(cf):
    """The push benchmark runs 32 workers against latency: calls must overlap, not queue.

    Not a speed test (bench/ measures speed): serial handling would take calls x latency = 6.4 s,
    so finishing in under half of that can only mean the server handled calls side by side."""
    cf.set_latency(0.1)
    calls, workers = 64, 32
    with client(cf, limits=httpx.Limits(max_connections=workers)) as http:
        files = [("metadata", (None, json.dumps({"main_module": "worker.mjs"}), "application/json")),
                 ("worker.mjs", ("worker.mjs", MODULE, "application/javascript+module"))]

        def push(i):
            return http.put(f"/accounts/{ACCOUNT}/workers/scripts/w{i}", files=files).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(workers) as pool:
            statuses = list(pool.map(push, range(calls)))
        elapsed = time.monotonic() - started
    assert statuses == [200] * calls
    assert elapsed < calls * 0.1 / 2, f"{calls} calls took {elapsed:.2f}s: not handled concurrently"
    assert len(cf.uploads) == calls


def test_listing_worker_scripts_needs_a_token_of_that_account_with_workers_scope(cf):
    from sandbox.cloudflare import WORKERS_SCRIPTS_READ

    assert upload(cf).status_code == 200
    with client(cf) as http:
        own = http.get(f"/accounts/{ACCOUNT}/workers/scripts")
        other = http.get(f"/accounts/{OTHER_ACCOUNT}/workers/scripts")
    assert own.status_code == 200 and [s["id"] for s in own.json()["result"]] == ["acme-worker"]
    # Real Cloudflare: a valid token without access to the account, or without a Workers permission, is a 403.
    assert other.status_code == 403 and error_code(other) == 10000
    cf.add_token("tok_no_scope", ACCOUNT, scopes=())
    cf.add_token("tok_read_only", ACCOUNT, scopes=(WORKERS_SCRIPTS_READ,))
    with client(cf, "tok_no_scope") as http:
        assert http.get(f"/accounts/{ACCOUNT}/workers/scripts").status_code == 403
    with client(cf, "tok_read_only") as http:
        assert http.get(f"/accounts/{ACCOUNT}/workers/scripts").status_code == 200
        pass
    assert upload(cf, token="tok_read_only").status_code == 403  # reading is not editing
    with client(cf, "tok_nobody_issued") as http:
        assert http.get(f"/accounts/{ACCOUNT}/workers/scripts").status_code == 401
    assert (ACCOUNT, TOKEN) in cf.script_listings
