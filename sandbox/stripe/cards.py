"""Stripe's test cards, magic payment method ids and tokens that the sandbox knows.

Each card has a behaviour, which decides every payment made with it:
- `succeed`: charges succeed.
- `decline`: attaching it to a customer and every charge fail with its decline code.
- `customer_fail`: attaching succeeds, every charge then fails (4000 0000 0000 0341).
- `authenticate`: every payment and setup needs 3D Secure (`requires_action`).
- `dispute`: charges succeed, then a fraudulent dispute opens.
- `refund_fail`: charges succeed; refunds start `succeeded` and fail a minute later.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    brand: str
    behaviour: str = "succeed"
    decline_code: str | None = None
    funding: str = "credit"
    country: str = "US"


CARDS = {
    "4242424242424242": Card("visa"),
    "4000056655665556": Card("visa", funding="debit"),
    "5555555555554444": Card("mastercard"),
    "2223003122003222": Card("mastercard"),
    "378282246310005": Card("amex"),
    "4000000000000002": Card("visa", "decline", "generic_decline"),
    "4000000000009995": Card("visa", "decline", "insufficient_funds"),
    "4000000000009987": Card("visa", "decline", "lost_card"),
    "4000000000009979": Card("visa", "decline", "stolen_card"),
    "4000000000000069": Card("visa", "decline", "expired_card"),
    "4000000000000127": Card("visa", "decline", "incorrect_cvc"),
    "4000000000000341": Card("visa", "customer_fail", "generic_decline"),
    "4000002760003184": Card("visa", "authenticate"),
    "4000000000003220": Card("visa", "authenticate"),
    "4000000000000259": Card("visa", "dispute"),
    "4000000000005126": Card("visa", "refund_fail"),
}

# `pm_card_<name>` and `tok_<name>` resolve to these numbers.
MAGIC = {
    "visa": "4242424242424242",
    "visa_debit": "4000056655665556",
    "mastercard": "5555555555554444",
    "amex": "378282246310005",
    "chargeDeclined": "4000000000000002",
    "chargeDeclinedInsufficientFunds": "4000000000009995",
    "chargeDeclinedLostCard": "4000000000009987",
    "chargeDeclinedStolenCard": "4000000000009979",
    "chargeDeclinedExpiredCard": "4000000000000069",
    "chargeDeclinedIncorrectCvc": "4000000000000127",
    "chargeCustomerFail": "4000000000000341",
    "authenticationRequired": "4000002760003184",
    "threeDSecure2Required": "4000000000003220",
    "createDispute": "4000000000000259",
    "refundFail": "4000000000005126",
}

# number -> (an on-session payment succeeds?, decline code): what the hosted pages use, where the
# customer is present and completes 3D Secure.
TEST_CARDS = {number: (card.behaviour not in ("decline", "customer_fail"), card.decline_code)
              for number, card in CARDS.items()}

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}
# Stripe's error `code` for each decline code (the rest are `card_declined`).
ERROR_CODES = {"expired_card": "expired_card", "incorrect_cvc": "incorrect_cvc",
               "authentication_required": "authentication_required"}
NON_TEST_CARD = ("Your card was declined. Your request was in test mode, but used a non test card. "
                 "For a list of valid test cards, visit: https://stripe.com/docs/testing.")


def magic_number(value: str | None) -> str | None:
    """The card number behind `pm_card_visa` / `tok_visa`, else None."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"(?:pm_card|tok)_(\w+)", value)
    return MAGIC.get(match.group(1)) if match else None


def card_digits(card: str | None) -> str:
    return re.sub(r"[\s-]", "", card or "")


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, digit in enumerate(int(d) for d in reversed(number)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0
