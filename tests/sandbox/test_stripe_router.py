"""The router, the store and the event log that every resource family is built on."""
import httpx
import pytest

from sandbox.stripe import StripeEmulator
from sandbox.stripe.errors import StripeError, allow
from sandbox.stripe.router import Router
from sandbox.stripe.store import Store


def test_router_matches_method_and_path_and_prefers_literal_segments():
    api = Router()
    api.add("GET", "/v1/things/{id}", "retrieve")
    api.add("GET", "/v1/things/search", "search")
    api.add("POST", "/v1/things/{id}/close", "close")
    assert api.match("GET", "/v1/things/search") == ("search", {})
    assert api.match("GET", "/v1/things/th_1/") == ("retrieve", {"id": "th_1"})
    assert api.match("POST", "/v1/things/th_1/close") == ("close", {"id": "th_1"})
    with pytest.raises(StripeError) as error:
        api.match("DELETE", "/v1/things/th_1")
    assert error.value.status == 404
    assert error.value.body["error"]["message"].startswith("Unrecognized request URL (DELETE: /v1/things/th_1)")


def test_unknown_parameters_are_refused_like_stripe():
    with pytest.raises(StripeError) as error:
        allow({"email": "a@b.co", "colour": "red"}, {"email"})
    assert error.value.status == 400
    assert error.value.body == {"error": {"type": "invalid_request_error", "param": "colour",
                                          "message": "Received unknown parameter: colour"}}


def test_store_pages_newest_first_and_refuses_unknown_cursors():
    store = Store()
    for n in range(5):
        store.put({"id": f"x_{n}", "object": "thing", "created": n})
    items = store.newest_first("thing")
    first = store.page(items, {"limit": "2"}, "/v1/things")
    assert [i["id"] for i in first["data"]] == ["x_4", "x_3"] and first["has_more"]
    last = store.page(items, {"limit": "2", "starting_after": "x_1"}, "/v1/things")
    assert [i["id"] for i in last["data"]] == ["x_0"] and not last["has_more"]
    back = store.page(items, {"limit": "2", "ending_before": "x_1"}, "/v1/things")
    assert [i["id"] for i in back["data"]] == ["x_3", "x_2"] and back["has_more"]
    with pytest.raises(StripeError):
        store.page(items, {"starting_after": "x_9"}, "/v1/things")
    with pytest.raises(StripeError):
        store.page(items, {"limit": "101"}, "/v1/things")
    with pytest.raises(StripeError) as error:
        store.get("thing", "x_9")
    assert error.value.body["error"]["message"] == "No such thing: 'x_9'"


def test_a_family_registered_on_the_router_gets_the_store_events_and_expand():
    def create(emu, params):
        allow(params, {"customer"})
        thing = emu.store.put({"id": "th_1", "object": "thing", "customer": params.get("customer")})
        emu.emit("thing.created", thing)
        return thing

    with StripeEmulator() as emu:
        emu.router.add("POST", "/v1/things", create)
        with emu.lock:
            customer = emu.store.put({"id": "cus_x", "object": "customer", "email": "a@b.co"})
        answer = httpx.post(f"{emu.url}/v1/things", data={"customer": "cus_x", "expand[]": "customer"},
                            auth=("sk_test_x", ""))
        assert answer.status_code == 200 and answer.json()["customer"] == customer
        assert emu.events[-1]["type"] == "thing.created"
        assert emu.events[-1]["data"]["object"]["customer"] == "cus_x"
        refused = httpx.post(f"{emu.url}/v1/things", data={"colour": "red"}, auth=("sk_test_x", ""))
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "colour"
