"""Charges, their balance transactions, refunds and disputes.

Charges are made only by PaymentIntents (payment_intents.py); here they are read, updated,
refunded and disputed. The card behind the charge decides what follows: `pm_card_createDispute`
opens a fraudulent dispute right after the charge, `pm_card_refundFail` refunds fail a minute later.
"""
from __future__ import annotations

import copy

from .. import shapes
from ..cards import DECLINE_MESSAGES
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_bool, as_int
from ..store import created_filter, filter_equal
from . import payment_methods

DAY = 86400
REFUND_FAILS_AFTER = 60  # seconds between a pm_card_refundFail refund and its failure
REFUND_FAILURES = "refund.fails_at"  # store table: refund id -> when it fails
DISPUTE_FEE = 1500
DISPUTE_REASONS = ("fraudulent", "general", "duplicate", "product_not_received", "product_unacceptable",
                   "subscription_canceled", "unrecognized", "credit_not_processed")


def fee_for(amount: int) -> int:
    """Stripe's US card fee: 2.9% + 30 cents."""
    return round(amount * 0.029) + 30 if amount > 0 else 0


def balance_transaction(emu, *, amount: int, currency: str, source: str, kind: str, description=None,
                        fee: int = 0, fee_description="Stripe processing fees") -> dict:
    txn = shapes.example("balance_transaction")
    now = emu.now()
    txn.update(id=shapes.new_id("txn_"), amount=amount, currency=currency, created=now,
               available_on=now + 2 * DAY, description=description, exchange_rate=None, fee=fee,
               fee_details=[{"amount": fee, "application": None, "currency": currency,
                             "description": fee_description, "type": "stripe_fee"}] if fee else [],
               net=amount - fee, reporting_category={"charge": "charge", "refund": "refund",
                                                      "adjustment": "dispute"}.get(kind, kind),
               source=source, status="pending", type=kind, balance_type="payments")
    return emu.store.put(txn)


def card_details(emu, pm_id: str) -> dict:
    """`payment_method_details` of a charge on `pm_id` (a payment method or a source card)."""
    obj = emu.store.objects.get(pm_id) or {}
    card = (obj.get("card") if obj.get("object") == "payment_method" else obj) or {}
    details = shapes.example("charge")["payment_method_details"]
    brand = (card.get("brand") or "visa").lower().replace("american express", "amex")
    details["card"].update(brand=brand, network=brand, last4=card.get("last4"), exp_month=card.get("exp_month"),
                           exp_year=card.get("exp_year"), fingerprint=card.get("fingerprint"),
                           funding=card.get("funding", "credit"), country=card.get("country", "US"),
                           wallet=None, installments=None, mandate=None, amount_authorized=None,
                           network_token={"used": False}, regulated_status="unregulated",
                           network_transaction_id=shapes.new_id("", 15), authorization_code=None)
    details["card"]["overcapture"] = {"maximum_amount_capturable": None, "status": "unavailable"}
    return details


def create_charge(emu, pi: dict, pm_id: str, *, ok: bool, decline_code=None, captured=True,
                  billing_details=None, authenticated=False) -> dict:
    """A charge for the PaymentIntent: succeeded (captured or only authorized) or failed."""
    charge = shapes.example("charge")
    charge_id = shapes.new_id("ch_")
    charge.update(
        id=charge_id, amount=pi["amount"], amount_captured=pi["amount"] if ok and captured else 0,
        amount_refunded=0, captured=ok and captured, created=emu.now(), currency=pi["currency"],
        customer=pi["customer"], description=pi["description"], disputed=False, metadata=copy.deepcopy(
            pi["metadata"]), paid=ok, payment_intent=pi["id"], payment_method=pm_id,
        payment_method_details=card_details(emu, pm_id), receipt_email=pi["receipt_email"],
        receipt_url=f"{emu.base_url}/receipts/{charge_id}", refunded=False, review=None, shipping=None,
        source=None, source_transfer=None, statement_descriptor=None, statement_descriptor_suffix=None,
        status="succeeded" if ok else "failed", transfer_data=None, transfer_group=None,
        failure_balance_transaction=None, application_fee_amount=None, fraud_details={},
        calculated_statement_descriptor="SANDBOX", balance_transaction=None, receipt_number=None,
        failure_code=None if ok else ("card_declined" if decline_code != "expired_card" else "expired_card"),
        failure_message=None if ok else DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
    )
    charge["billing_details"] = copy.deepcopy(billing_details) if billing_details else {
        "address": {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None},
        "email": None, "name": None, "phone": None, "tax_id": None}
    if ok:
        charge["outcome"] = {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                             "network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                             "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized"}
    else:
        charge["outcome"] = {"advice_code": "try_again_later", "network_advice_code": None,
                             "network_decline_code": None, "network_status": "declined_by_network",
                             "reason": decline_code, "risk_level": "normal", "risk_score": 32,
                             "seller_message": "The bank did not return any further details with this decline.",
                             "type": "issuer_declined"}
    # 3D Secure shows on the charge only when the customer went through it.
    charge["payment_method_details"]["card"]["three_d_secure"] = {
        "authentication_flow": "challenge", "electronic_commerce_indicator": "05", "exemption_indicator": None,
        "result": "authenticated", "result_reason": None, "transaction_id": shapes.new_id("", 36),
        "version": "2.2.0"} if authenticated else None
    charge["refunds"] = {"object": "list", "data": [], "has_more": False, "total_count": 0,
                         "url": f"/v1/charges/{charge_id}/refunds"}
    if ok and captured:
        charge["balance_transaction"] = balance_transaction(
            emu, amount=charge["amount"], currency=charge["currency"], source=charge_id, kind="charge",
            description=charge["description"], fee=fee_for(charge["amount"]))["id"]
    return emu.store.put(charge)


def capture_charge(emu, charge: dict, amount: int):
    """Capture `amount` of an authorized charge; the rest is released (shown as refunded)."""
    previous = {k: charge[k] for k in ("amount_captured", "captured", "balance_transaction",
                                       "amount_refunded")}
    charge.update(captured=True, amount_captured=amount, amount_refunded=charge["amount"] - amount)
    charge["balance_transaction"] = balance_transaction(
        emu, amount=amount, currency=charge["currency"], source=charge["id"], kind="charge",
        description=charge["description"], fee=fee_for(amount))["id"]
    emu.emit("charge.captured", charge, previous)


def release_charge(emu, charge: dict):
    """An authorized charge whose PaymentIntent is canceled: the whole amount goes back."""
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge.update(amount_refunded=charge["amount"], refunded=True)
    emu.emit("charge.refunded", charge, previous)


# -- charges API -----------------------------------------------------------------------------------
def charge_list(emu, params):
    items = filter_equal(emu.store.newest_first("charge"), params, ("customer", "payment_intent",
                                                                     "transfer_group"))
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/charges")


def charge_search(emu, params):
    return emu.store.search("charge", params, {"customer", "status", "amount", "currency", "payment_intent",
                                               "refunded", "disputed", "created"}, "/v1/charges/search")


def charge_retrieve(emu, params, id):
    return emu.store.get("charge", id)


def charge_update(emu, params, id):
    allow(params, {"description", "metadata", "receipt_email", "fraud_details", "shipping", "customer",
                   "transfer_group"})
    charge = emu.store.get("charge", id)
    before = copy.deepcopy(charge)
    for key in ("description", "receipt_email", "transfer_group"):
        if key in params:
            charge[key] = params[key] or None
    if "metadata" in params:
        charge["metadata"] = merge_metadata(charge["metadata"], params["metadata"])
    if isinstance(params.get("fraud_details"), dict):
        allow(params["fraud_details"], {"user_report"})
        charge["fraud_details"] = {"user_report": params["fraud_details"].get("user_report")}
    if params.get("customer"):
        if charge["customer"]:
            raise StripeError(400, "This charge already has a customer.", param="customer")
        charge["customer"] = emu.store.get("customer", params["customer"], "customer")["id"]
    previous = {k: before[k] for k in before if before[k] != charge[k]}
    if previous:
        emu.emit("charge.updated", charge, previous)
    return charge


def charge_capture(emu, params, id):
    from . import payment_intents  # payment_intents imports this module

    allow(params, {"amount", "amount_to_capture", "receipt_email", "statement_descriptor",
                   "statement_descriptor_suffix", "application_fee_amount", "transfer_data", "transfer_group"})
    payment_intents._no_connect(params)
    charge = emu.store.get("charge", id)
    if charge["captured"]:
        raise StripeError(400, f"Charge {id} has already been captured.", code="charge_already_captured")
    pi = emu.store.objects[charge["payment_intent"]]
    amount = params.get("amount_to_capture", params.get("amount"))
    payment_intents.capture(emu, pi, None if amount is None else as_int(amount, "amount"))
    return charge


def balance_transaction_list(emu, params):
    items = filter_equal(emu.store.newest_first("balance_transaction"), params, ("source", "type", "currency"))
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/balance_transactions")


def balance_transaction_retrieve(emu, params, id):
    return emu.store.get("balance_transaction", id)


# -- refunds -------------------------------------------------------------------------------------
def refund_object(emu, charge: dict, amount: int, reason, metadata) -> dict:
    refund = shapes.example("refund")
    refund_id = shapes.new_id("re_")
    refund.update(id=refund_id, amount=amount, charge=charge["id"], created=emu.now(), currency=charge["currency"],
                  metadata=metadata, payment_intent=charge["payment_intent"], reason=reason, receipt_number=None,
                  source_transfer_reversal=None, status="succeeded", transfer_reversal=None,
                  customer=charge["customer"], customer_account=None, payment_method=charge["payment_method"])
    refund["destination_details"] = {"card": {"reference": shapes.new_id("", 23).upper(), "reference_status":
                                              "pending", "reference_type": "acquirer_reference_number",
                                              "type": "refund"}, "type": "card"}
    refund["balance_transaction"] = balance_transaction(
        emu, amount=-amount, currency=charge["currency"], source=refund_id, kind="refund",
        description="REFUND FOR CHARGE" + (f" ({charge['description']})" if charge["description"] else ""))["id"]
    return emu.store.put(refund)


def refund_charge(emu, charge: dict, amount: int | None = None, *, reason=None, metadata=None) -> dict:
    """Refund `amount` (default: what is left) of a succeeded charge."""
    if not charge["paid"] or charge["status"] != "succeeded":
        raise StripeError(400, f"Charge {charge['id']} has not been paid; it cannot be refunded.",
                          code="charge_not_refundable", param="charge")
    dispute = next((d for d in emu.store.all("dispute") if d["charge"] == charge["id"]), None)
    if dispute is not None and not dispute["is_charge_refundable"]:
        raise StripeError(400, f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                          code="charge_disputed", param="charge")
    left = (charge["amount_captured"] if charge["captured"] else charge["amount"]) - charge["amount_refunded"]
    if left <= 0:
        raise StripeError(400, f"Charge {charge['id']} has already been refunded.",
                          code="charge_already_refunded", param="charge")
    amount = left if amount is None else amount
    if amount <= 0:
        raise StripeError(400, "Invalid positive integer", param="amount")
    if amount > left:
        raise StripeError(400, f"Refund amount ({_money(amount, charge['currency'])}) is greater than unrefunded "
                               f"amount on charge ({_money(left, charge['currency'])})", param="amount")
    refund = refund_object(emu, charge, amount, reason, metadata or {})
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"],
                "refunds": copy.deepcopy(charge["refunds"])}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
    charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
    charge["refunds"]["total_count"] += 1
    _, card = payment_methods.card_of(emu, charge["payment_method"])
    if card and card.behaviour == "refund_fail":
        emu.store.table(REFUND_FAILURES)[refund["id"]] = emu.now() + REFUND_FAILS_AFTER
    emu.emit("charge.refunded", charge, previous)
    emu.emit("refund.created", refund)
    return refund


def _money(amount: int, currency: str) -> str:
    return f"${amount / 100:.2f}" if currency == "usd" else f"{amount / 100:.2f} {currency.upper()}"


def _sync_refund_on_charge(charge: dict, refund: dict):
    charge["refunds"]["data"] = [copy.deepcopy(refund) if r["id"] == refund["id"] else r
                                 for r in charge["refunds"]["data"]]


def fail_refund(emu, refund_id: str):
    """A pm_card_refundFail refund fails: the money is back on the charge."""
    emu.store.table(REFUND_FAILURES).pop(refund_id, None)
    refund = emu.store.objects[refund_id]
    if refund["status"] != "succeeded":
        return
    charge = emu.store.objects[refund["charge"]]
    refund.update(status="failed", failure_reason="expired_or_canceled_card")
    refund["failure_balance_transaction"] = balance_transaction(
        emu, amount=refund["amount"], currency=refund["currency"], source=refund_id, kind="refund_failure",
        description="REFUND FAILURE")["id"]
    refund["destination_details"]["card"]["reference_status"] = "unavailable"
    previous_charge = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] -= refund["amount"]
    charge["refunded"] = False
    _sync_refund_on_charge(charge, refund)
    emu.emit("refund.updated", refund, {"status": "succeeded", "failure_reason": None})
    emu.emit("charge.refund.updated", refund, {"status": "succeeded", "failure_reason": None})
    emu.emit("refund.failed", refund)
    emu.emit("charge.updated", charge, previous_charge)


REFUND_FIELDS = {"charge", "payment_intent", "amount", "reason", "metadata", "refund_application_fee",
                 "reverse_transfer", "instructions_email", "origin", "customer", "currency"}


def refund_create(emu, params):
    allow(params, REFUND_FIELDS)
    if params.get("charge") and params.get("payment_intent"):
        raise StripeError(400, "You cannot specify both charge and payment_intent.", param="payment_intent")
    if params.get("charge"):
        charge = emu.store.get("charge", params["charge"], "charge")
    elif params.get("payment_intent"):
        pi = emu.store.get("payment_intent", params["payment_intent"], "payment_intent")
        if pi["status"] != "succeeded" or not pi["latest_charge"]:
            raise StripeError(400, f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                              code="charge_not_refundable", param="payment_intent")
        charge = emu.store.objects[pi["latest_charge"]]
    else:
        raise StripeError(400, "One of the following params should be provided for this request: charge or "
                               "payment_intent.", code="parameter_missing")
    reason = params.get("reason") or None
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
        raise StripeError(400, "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                          param="reason")
    amount = as_int(params["amount"], "amount") if params.get("amount") not in (None, "") else None
    return refund_charge(emu, charge, amount, reason=reason, metadata=merge_metadata({}, params.get("metadata")))


def refund_list(emu, params):
    items = filter_equal(emu.store.newest_first("refund"), params, ("charge", "payment_intent"))
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/refunds")


def refund_retrieve(emu, params, id):
    return emu.store.get("refund", id)


def refund_update(emu, params, id):
    allow(params, {"metadata"})
    refund = emu.store.get("refund", id)
    metadata = merge_metadata(refund["metadata"], params.get("metadata"))
    if metadata != refund["metadata"]:
        previous = {"metadata": refund["metadata"]}
        refund["metadata"] = metadata
        _sync_refund_on_charge(emu.store.objects[refund["charge"]], refund)
        emu.emit("refund.updated", refund, previous)
        emu.emit("charge.refund.updated", refund, previous)
    return refund


def refund_cancel(emu, params, id):
    allow(params, set())
    refund = emu.store.get("refund", id)
    raise StripeError(400, f"Refund {id} cannot be canceled because it has a status of {refund['status']}. Only a "
                           "refund with a status of `requires_action` can be canceled.",
                      code="refund_unexpected_state" if refund["status"] != "requires_action" else None)


def refunds_due(emu, until):
    return [(at, 3, refund_id, fail_refund) for refund_id, at in emu.store.table(REFUND_FAILURES).items()
            if at <= until]


# -- disputes --------------------------------------------------------------------------------------
def open_dispute(emu, charge: dict, reason: str = "fraudulent") -> dict:
    """A dispute on a succeeded charge (the dispute test card, or the sandbox's CLI): the amount and a
    fee are withdrawn."""
    if reason not in DISPUTE_REASONS:
        raise StripeError(400, f"Invalid reason: must be one of {', '.join(DISPUTE_REASONS)}", param="reason")
    if charge["status"] != "succeeded" or not charge["captured"]:
        raise StripeError(400, f"Charge {charge['id']} was not captured; it cannot be disputed.", param="charge")
    if charge["disputed"]:
        raise StripeError(400, f"Charge {charge['id']} is already disputed.", param="charge")
    dispute = shapes.example("dispute")
    now = emu.now()
    dispute_id = shapes.new_id("dp_")
    amount = charge["amount_captured"] - charge["amount_refunded"]
    txn = balance_transaction(emu, amount=-amount, currency=charge["currency"], source=dispute_id,
                              kind="adjustment", description=f"Chargeback withdrawal for {charge['id']}",
                              fee=DISPUTE_FEE, fee_description="Dispute fee")
    dispute.update(id=dispute_id, amount=amount, charge=charge["id"], created=now, currency=charge["currency"],
                   balance_transactions=[copy.deepcopy(txn)], is_charge_refundable=False, metadata={},
                   payment_intent=charge["payment_intent"], reason=reason, status="needs_response",
                   enhanced_eligibility_types=[])
    for key in dispute["evidence"]:
        dispute["evidence"][key] = None
    dispute["evidence"]["enhanced_evidence"] = {}
    dispute["evidence_details"] = {"due_by": now + 7 * DAY, "has_evidence": False, "past_due": False,
                                   "submission_count": 0, "enhanced_eligibility": {}}
    dispute["payment_method_details"] = {"card": {"brand": charge["payment_method_details"]["card"]["brand"],
                                                  "case_type": "chargeback", "network_reason_code": "10.4",
                                                  "network": charge["payment_method_details"]["card"]["network"]},
                                         "type": "card"}
    emu.store.put(dispute)
    previous = {"disputed": False}
    charge["disputed"] = True
    emu.emit("charge.dispute.created", dispute)
    emu.emit("charge.dispute.funds_withdrawn", dispute)
    emu.emit("charge.updated", charge, previous)
    return dispute


def close_dispute(emu, dispute: dict, status: str):
    """Close as `won` (funds reinstated) or `lost`."""
    previous = {"status": dispute["status"]}
    dispute["status"] = status
    if status == "won":
        txn = balance_transaction(emu, amount=dispute["amount"] + DISPUTE_FEE, currency=dispute["currency"],
                                  source=dispute["id"], kind="adjustment",
                                  description=f"Chargeback reversal for {dispute['charge']}")
        dispute["balance_transactions"].append(copy.deepcopy(txn))
    emu.emit("charge.dispute.closed", dispute, previous)
    if status == "won":
        emu.emit("charge.dispute.funds_reinstated", dispute)


DISPUTE_EVIDENCE = set(shapes.example("dispute")["evidence"])


def dispute_list(emu, params):
    items = filter_equal(emu.store.newest_first("dispute"), params, ("charge", "payment_intent"))
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/disputes")


def dispute_retrieve(emu, params, id):
    return emu.store.get("dispute", id)


def dispute_update(emu, params, id):
    """Evidence, metadata, `submit`. Submitted evidence with `uncategorized_text` `winning_evidence`
    wins the dispute, `losing_evidence` loses it (Stripe's test values); other evidence leaves it
    under review."""
    allow(params, {"evidence", "metadata", "submit", "intended_submission_method"})
    dispute = emu.store.get("dispute", id)
    if dispute["status"] in ("won", "lost", "warning_closed"):
        raise StripeError(400, f"This dispute is already closed ({dispute['status']}); it cannot be updated.",
                          param="evidence")
    before = copy.deepcopy(dispute)
    evidence = params.get("evidence")
    if evidence not in (None, ""):
        if not isinstance(evidence, dict):
            raise StripeError(400, "Invalid object", param="evidence")
        for key in evidence:
            if key not in DISPUTE_EVIDENCE:
                raise StripeError(400, f"Received unknown parameter: evidence[{key}]", param=f"evidence[{key}]")
        for key, value in evidence.items():
            dispute["evidence"][key] = value or None
        dispute["evidence_details"]["has_evidence"] = True
    if "metadata" in params:
        dispute["metadata"] = merge_metadata(dispute["metadata"], params["metadata"])
    submit = as_bool(params.get("submit", "true" if evidence else "false"), "submit")
    if submit and dispute["status"] in ("needs_response", "warning_needs_response"):
        dispute["status"] = "under_review" if dispute["status"] == "needs_response" else "warning_under_review"
        dispute["evidence_details"]["submission_count"] += 1
    previous = {k: before[k] for k in before if before[k] != dispute[k]}
    if previous:
        emu.emit("charge.dispute.updated", dispute, previous)
    text = dispute["evidence"].get("uncategorized_text")
    if submit and dispute["status"] == "under_review" and text in ("winning_evidence", "losing_evidence"):
        close_dispute(emu, dispute, "won" if text == "winning_evidence" else "lost")
    return dispute


def dispute_close(emu, params, id):
    allow(params, set())
    dispute = emu.store.get("dispute", id)
    if dispute["status"] not in ("needs_response", "warning_needs_response", "under_review",
                                 "warning_under_review"):
        raise StripeError(400, f"This dispute is already closed ({dispute['status']}).")
    close_dispute(emu, dispute, "lost" if not dispute["status"].startswith("warning") else "warning_closed")
    return dispute


def register(api):
    api.add("GET", "/v1/charges", charge_list)
    api.add("GET", "/v1/charges/search", charge_search)
    api.add("GET", "/v1/charges/{id}", charge_retrieve)
    api.add("POST", "/v1/charges/{id}", charge_update)
    api.add("POST", "/v1/charges/{id}/capture", charge_capture)
    api.add("GET", "/v1/balance_transactions", balance_transaction_list)
    api.add("GET", "/v1/balance_transactions/{id}", balance_transaction_retrieve)
    api.add("POST", "/v1/refunds", refund_create)
    api.add("GET", "/v1/refunds", refund_list)
    api.add("GET", "/v1/refunds/{id}", refund_retrieve)
    api.add("POST", "/v1/refunds/{id}", refund_update)
    api.add("POST", "/v1/refunds/{id}/cancel", refund_cancel)
    api.add("GET", "/v1/disputes", dispute_list)
    api.add("GET", "/v1/disputes/{id}", dispute_retrieve)
    api.add("POST", "/v1/disputes/{id}", dispute_update)
    api.add("POST", "/v1/disputes/{id}/close", dispute_close)
    api.on_clock(refunds_due)
