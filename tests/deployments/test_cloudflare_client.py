import httpx
import pytest

from deployments.cloudflare import CloudflareClient, CloudflareError, classify, prepare_upload
from deployments.models import ErrorCode
from sandbox._faults import DROP

TOKEN = "clientToken_" + "C" * 28
ACCOUNT = "c" * 32


@pytest.fixture
def client(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    with CloudflareClient() as c:
        yield c


def upload(client, **overrides):
    args = {"account_id": ACCOUNT, "script_name": "helm", "token": TOKEN, "upload": prepare_upload(b"export default {}")}
    return client.upload_script(**{**args, **overrides})


def test_upload_sends_a_module_worker_as_cloudflare_expects(client, cloudflare):
    result = upload(client)
    [recorded] = cloudflare.uploads
    assert (recorded.main_module, recorded.size, recorded.account_id) == ("worker.mjs", 17, ACCOUNT)
    assert result.etag == recorded.sha256 and result.script_name == "helm"


@pytest.mark.parametrize("fault, code", [(401, ErrorCode.TOKEN_INVALID), (403, ErrorCode.TOKEN_SCOPE),
                                         (500, ErrorCode.UPSTREAM_ERROR), (503, ErrorCode.UPSTREAM_ERROR),
                                         (504, ErrorCode.UPSTREAM_ERROR), (DROP, ErrorCode.NETWORK)])
def test_failures_map_to_error_codes(client, cloudflare, fault, code):
    cloudflare.fail_next(fault)
    with pytest.raises(CloudflareError) as info:
        upload(client)
    assert info.value.code == code and TOKEN not in info.value.message


def test_rate_limit_carries_retry_after(client, cloudflare):
    cloudflare.fail_next(429, retry_after=42)
    with pytest.raises(CloudflareError) as info:
        upload(client)
    assert info.value.code == ErrorCode.RATE_LIMITED and info.value.retry_after == 42


def test_suspended_account_is_told_apart_from_a_scope_problem(client, cloudflare):
    cloudflare.suspend_account(ACCOUNT)
    with pytest.raises(CloudflareError) as info:
        upload(client)
    assert info.value.code == ErrorCode.ACCOUNT_SUSPENDED


def test_a_rejected_upload_is_request_rejected(client):
    with pytest.raises(CloudflareError) as info:
        upload(client, script_name="bad%20name")
    assert info.value.code == ErrorCode.REQUEST_REJECTED


def test_timeouts_and_refused_connections_are_network_errors(cloudflare):
    cloudflare.fail_next(DROP, delay=2)
    with CloudflareClient(timeout=0.3) as slow:
        with pytest.raises(CloudflareError) as info:
            slow.verify_token(account_id=ACCOUNT, token=TOKEN)
    assert info.value.code == ErrorCode.NETWORK
    with CloudflareClient(base_url="http://127.0.0.1:9/client/v4", timeout=1) as nowhere:
        with pytest.raises(CloudflareError) as info:
            nowhere.verify_token(account_id=ACCOUNT, token=TOKEN)
    assert info.value.code == ErrorCode.NETWORK


def test_verify_accepts_an_active_token_and_rejects_others(client, cloudflare):
    client.verify_token(account_id=ACCOUNT, token=TOKEN)
    with pytest.raises(CloudflareError) as info:
        client.verify_token(account_id=ACCOUNT, token="unknownToken_" + "D" * 27)
    assert info.value.code == ErrorCode.TOKEN_INVALID


def test_a_success_false_answer_is_an_upstream_error():
    response = httpx.Response(200, json={"success": False, "errors": [{"code": 1, "message": "odd"}]})
    assert classify(response).code == ErrorCode.UPSTREAM_ERROR


def test_a_connection_closed_while_idle_is_replaced_and_the_upload_goes_through(client, cloudflare):
    import socket

    upload(client)
    client._local.conn.sock.shutdown(socket.SHUT_RDWR)  # as if Cloudflare closed the keep-alive connection
    assert upload(client, script_name="helm2").script_name == "helm2"
    assert [u.script_name for u in cloudflare.uploads] == ["helm", "helm2"]


def test_a_base_url_that_is_not_http_is_refused(settings):
    settings.CLOUDFLARE_API_BASE = "ftp://api.example"
    with pytest.raises(ValueError, match="http"):
        CloudflareClient()
