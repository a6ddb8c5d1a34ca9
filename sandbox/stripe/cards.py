"""Stripe's test cards that the sandbox knows."""
from __future__ import annotations

import re

# number -> (charge succeeds?, decline code). 4000 0000 0000 0341 attaches to a customer but every
# charge on it fails.
TEST_CARDS = {
    "4242424242424242": (True, None),
    "5555555555554444": (True, None),
    "4000000000000341": (False, "generic_decline"),
    "4000000000000002": (False, "generic_decline"),
    "4000000000009995": (False, "insufficient_funds"),
}
DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}
NON_TEST_CARD = ("Your card was declined. Your request was in test mode, but used a non test card. "
                 "For a list of valid test cards, visit: https://stripe.com/docs/testing.")


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
