"""The fake Evolution API over real HTTP: send text, connection state and every injected failure."""
import time

import httpx
import pytest

from sandbox.whatsapp import FakeEvolution

KEY = "evo-test-key"
NUMBER = "5511999999999"


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=5) as client:  # one client: building one loads the CA bundle (~0.3 s)
        yield client


@pytest.fixture
def evo():
    with FakeEvolution(api_key=KEY, instances=("billing", "support")) as server:
        yield server


def send(http, evo, instance="billing", number=NUMBER, text="Your payment failed", key=KEY, **kwargs):
    return http.post(f"{evo.url}/message/sendText/{instance}", json={"number": number, "text": text},
                     headers={"apikey": key}, **kwargs)


def test_send_text_answers_201_with_a_message_key_and_is_recorded(http, evo):
    response = send(http, evo)
    assert response.status_code == 201
    body = response.json()
    assert body["key"]["remoteJid"] == f"{NUMBER}@s.whatsapp.net" and body["key"]["fromMe"] is True
    assert body["message"] == {"conversation": "Your payment failed"}
    [message] = evo.messages
    assert message["id"] == body["key"]["id"]
    assert (message["instance"], message["number"], message["text"]) == ("billing", NUMBER, "Your payment failed")
    listed = http.get(f"{evo.url}/_sandbox/messages", params={"number": f"+{NUMBER}"}).json()["messages"]
    assert [m["id"] for m in listed] == [message["id"]]


def test_e164_number_with_plus_is_accepted(http, evo):
    assert send(http, evo, number=f"+{NUMBER}").status_code == 201
    assert evo.messages[0]["number"] == NUMBER


def test_wrong_apikey_is_unauthorized(http, evo):
    response = send(http, evo, key="wrong")
    assert response.status_code == 401
    assert response.json() == {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
    assert evo.messages == []


def test_unknown_instance_is_not_found(http, evo):
    response = send(http, evo, instance="nope")
    assert response.status_code == 404
    assert "does not exist" in response.json()["response"]["message"][0]


def test_disconnected_instance_answers_connection_closed_until_reconnected(http, evo):
    evo.disconnect("billing")
    response = send(http, evo)
    assert response.status_code == 500
    assert response.json()["response"]["message"] == "Connection Closed"
    state = http.get(f"{evo.url}/instance/connectionState/billing", headers={"apikey": KEY}).json()
    assert state == {"instance": {"instanceName": "billing", "state": "close"}}
    assert send(http, evo, instance="support").status_code == 201
    evo.connect("billing")
    assert send(http, evo).status_code == 201


@pytest.mark.parametrize("number", ["12345", "55 11 99999-9999", "abc"])
def test_invalid_number_is_a_bad_request_saying_it_does_not_exist(http, evo, number):
    response = send(http, evo, number=number)
    assert response.status_code == 400
    assert response.json()["response"]["message"][0]["exists"] is False


def test_number_not_on_whatsapp_is_a_bad_request(http, evo):
    evo.mark_not_on_whatsapp(NUMBER)
    response = send(http, evo)
    assert response.status_code == 400
    assert response.json()["response"]["message"] == [
        {"exists": False, "jid": f"{NUMBER}@s.whatsapp.net", "number": NUMBER}]


@pytest.mark.parametrize("body", [{"number": NUMBER}, {"text": "hi"}, {"number": NUMBER, "text": ""}, ["x"]])
def test_missing_fields_are_a_bad_request(http, evo, body):
    response = http.post(f"{evo.url}/message/sendText/billing", json=body, headers={"apikey": KEY})
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


def test_malformed_json_is_a_bad_request(http, evo):
    response = http.post(f"{evo.url}/message/sendText/billing", content=b"{nope",
                         headers={"apikey": KEY, "Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize("status, message", [(500, "Internal Server Error"), (400, "rejected")])
def test_injected_failures_answer_n_times_then_recover(http, evo, status, message):
    evo.fail_next(status, count=2)
    for _ in range(2):
        response = send(http, evo)
        assert response.status_code == status
        assert message in str(response.json()["response"]["message"])
    assert send(http, evo).status_code == 201
    assert len(evo.messages) == 1


def test_injected_drop_closes_the_connection(http, evo):
    evo.fail_next("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        send(http, evo)
    assert evo.messages == []


def test_injected_timeout(http, evo):
    evo.fail_next("drop", delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        send(http, evo, timeout=0.1)


def test_fault_for_one_instance_leaves_others_alone(http, evo):
    evo.fail_next(500, instance="billing")
    assert send(http, evo, instance="support").status_code == 201
    assert send(http, evo).status_code == 500


def test_per_instance_rate_limit_answers_429_with_retry_after(http, evo):
    evo.set_rate_limit("billing", max_messages=2, per_seconds=60)
    assert [send(http, evo).status_code for _ in range(3)] == [201, 201, 429]
    limited = send(http, evo)
    assert limited.json()["error"] == "Too Many Requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert send(http, evo, instance="support").status_code == 201


def test_rate_limit_window_slides(http, evo):
    # A window wide enough that a loaded machine still sends the first two inside it.
    evo.set_rate_limit("billing", max_messages=1, per_seconds=1.5)
    assert send(http, evo).status_code == 201
    assert send(http, evo).status_code == 429
    time.sleep(1.6)
    assert send(http, evo).status_code == 201


def test_control_endpoints(http, evo):
    base = f"{evo.url}/_sandbox"
    assert http.post(f"{base}/faults", json={"status": 500, "instance": "billing"}).status_code == 200
    assert send(http, evo).status_code == 500
    assert http.post(f"{base}/instances", json={"instance": "billing", "state": "close"}).status_code == 200
    assert send(http, evo).status_code == 500
    assert http.post(f"{base}/instances", json={"instance": "billing", "state": "open"}).status_code == 200
    assert http.post(f"{base}/instances", json={"instance": "sales"}).status_code == 200
    assert send(http, evo, instance="sales").status_code == 201
    assert http.post(f"{base}/rate_limit", json={"instance": "sales", "max_messages": 0}).status_code == 200
    assert send(http, evo, instance="sales").status_code == 429
    assert http.post(f"{base}/instances", json={"instance": "x", "state": "weird"}).status_code == 400
    assert http.post(f"{base}/reset").status_code == 200
    assert http.get(f"{base}/messages").json() == {"messages": []}
    assert send(http, evo, instance="sales").status_code == 404


def test_liveness_and_connect_endpoints(http, evo):
    assert http.get(f"{evo.url}/").json()["status"] == 200
    connect = f"{evo.url}/instance/connect/billing"
    assert http.get(connect, headers={"apikey": KEY}).json()["instance"]["state"] == "open"
    evo.disconnect("billing")
    assert "code" in http.get(connect, headers={"apikey": KEY}).json()
    assert http.get(connect).status_code == 401
