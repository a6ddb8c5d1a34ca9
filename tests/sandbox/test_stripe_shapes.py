"""Every object the Stripe sandbox holds, and every event it emits, has the shape of Stripe's own example
of its resource (fixtures3.json): no field missing, no field of another JSON type.

Driven by the store: a resource family added later is checked as soon as the scenario below (or its own
family test, through `assert_stripe_shape`) creates its objects; a type with no fixture fails."""
import stripe

from sandbox.stripe import StripeEmulator, shapes

API_KEY = "sk_test_shapes"


def json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", dict: "object", list: "array"}.get(type(value), type(value).__name__)


# Maps whose keys are the user's or the change's, not Stripe's fields: only their type is compared.
FREE_FORM = {"metadata", "previous_attributes"}


def shape_errors(ours, example, path: str) -> list[str]:
    """Missing fields and JSON type differences; null on either side is allowed (nullable fields)."""
    if ours is None or example is None:
        return []
    if json_type(ours) != json_type(example):
        return [f"{path}: {json_type(ours)}, Stripe has {json_type(example)}"]
    errors = []
    if isinstance(example, dict) and path.rsplit(".", 1)[-1] not in FREE_FORM:
        if "object" in example and isinstance(ours.get("object"), str) and ours["object"] != example["object"]:
            return errors  # a polymorphic field (an expanded object of another type): checked on its own
        for key, value in example.items():
            if key not in ours:
                errors.append(f"{path}.{key}: missing")
            else:
                errors += shape_errors(ours[key], value, f"{path}.{key}")
    elif isinstance(example, list) and example and all(isinstance(x, dict) for x in example):
        for index, item in enumerate(ours):
            errors += shape_errors(item, example[0], f"{path}[{index}]")
    return errors


def fixture_for(obj: dict) -> dict:
    kind = obj["object"]
    name = f"deleted_{kind}" if obj.get("deleted") else kind
    assert name in shapes.RESOURCES, f"{name} has no example in fixtures3.json: add one or map it here"
    return shapes.RESOURCES[name]


def assert_stripe_shape(obj: dict, where: str = ""):
    errors = shape_errors(obj, fixture_for(obj), f"{where}{obj['object']} {obj['id']}")
    assert not errors, "\n".join(errors)


def every_object_and_event(emu: StripeEmulator):
    with emu.lock:
        objects = [o for ids in emu.store.ids.values() for o in (emu.store.objects[i] for i in ids)]
        events = list(emu.eventlog.events)
    return objects, events


def test_every_stored_object_and_every_event_matches_its_fixtures3_shape():
    with StripeEmulator() as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        product = api.v1.products.create(params={"name": "Shapes", "metadata": {"k": "v"}})
        api.v1.prices.create(params={"product": product.id, "unit_amount": 500, "currency": "usd",
                                     "recurring": {"interval": "month"}})
        api.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]})
        paid = api.v1.checkout.sessions.create(params={
            "mode": "subscription", "line_items": [{"price": "price_sandbox_pro", "quantity": 2}],
            "customer_email": "ada@example.com", "success_url": "https://console.test/ok"})
        result = emu.pay_checkout(paid.id, name="Ada")
        api.v1.checkout.sessions.create(params={
            "mode": "subscription", "line_items": [{"price": "price_sandbox_team"}],
            "customer": result["customer"], "success_url": "https://console.test/ok"})
        api.v1.billing_portal.sessions.create(params={"customer": result["customer"]})
        emu.set_card(result["customer"], "decline")
        emu.advance(days=40)  # a failed renewal, a retry, an expired session
        charge = next(c for c in emu.list_objects("charge") if c["status"] == "succeeded")
        api.v1.refunds.create(params={"charge": charge["id"], "amount": 100})
        emu.open_dispute(charge["id"])
        api.v1.setup_intents.create(params={"payment_method": "pm_card_visa", "confirm": True})
        gone = api.v1.customers.create(params={"email": "gone@example.com"})
        api.v1.customers.delete(gone.id)

        objects, events = every_object_and_event(emu)
        kinds = {o["object"] for o in objects}
        assert kinds >= {"account", "product", "price", "customer", "payment_method", "checkout.session",
                         "billing_portal.session", "subscription", "invoice", "webhook_endpoint",
                         "payment_intent", "charge", "refund", "dispute", "setup_intent", "balance_transaction",
                         "invoice_payment"}
        for obj in objects:
            assert_stripe_shape(obj)
        assert {e["type"] for e in events} >= {"invoice.payment_failed", "checkout.session.expired",
                                               "customer.deleted", "customer.subscription.updated"}
        for event in events:
            assert_stripe_shape(event)
            assert_stripe_shape(event["data"]["object"], f"{event['type']}: ")

        # Objects as the API answers them, expanded, are the same shapes.
        sub = api.v1.subscriptions.retrieve(result["subscription"], params={"expand": ["latest_invoice",
                                                                                       "customer"]})
        assert_stripe_shape(sub.latest_invoice.to_dict())
        assert_stripe_shape(sub.customer.to_dict())


def test_the_shape_check_catches_a_missing_field_and_a_wrong_type():
    with StripeEmulator() as emu:
        price = emu.get("price_sandbox_pro")
    assert_stripe_shape(price)
    del price["currency"]
    price["unit_amount"] = "900"
    errors = shape_errors(price, fixture_for(price), "price")
    assert sorted(errors) == ["price.currency: missing", "price.unit_amount: string, Stripe has number"]


def test_subscription_family_objects_and_events_match_their_fixtures3_shape(settings, monkeypatch):
    from .test_stripe_djstripe import subscription_family_scenario

    with StripeEmulator() as emu:
        subscription_family_scenario(emu)
        objects, events = every_object_and_event(emu)
        kinds = {o["object"] for o in objects}
        assert kinds >= {"subscription", "subscription_schedule", "test_helpers.test_clock", "invoiceitem",
                         "billing_portal.configuration", "billing_portal.session", "checkout.session",
                         "setup_intent", "payment_intent"}
        for obj in objects:
            assert_stripe_shape(obj)
        for event in events:
            assert_stripe_shape(event)
            assert_stripe_shape(event["data"]["object"], f"{event['type']}: ")
