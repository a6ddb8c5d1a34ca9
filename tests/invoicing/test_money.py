import pytest

from billing_console.invoicing.services import money_format


@pytest.mark.parametrize("amount, currency, text", [
    (1234, "usd", "$12.34"),
    (5, "eur", "€0.05"),
    (123456789, "gbp", "£1,234,567.89"),
    (1000, "jpy", "¥1,000"),
    (1000, "JPY", "¥1,000"),
    (1500, "krw", "1,500 KRW"),
    (12345, "kwd", "12.345 KWD"),
    (-250, "usd", "-$2.50"),
    (0, "chf", "0.00 CHF"),
])
def test_amounts_are_formatted_per_currency_from_minor_units(amount, currency, text):
    assert money_format(amount, currency) == text
