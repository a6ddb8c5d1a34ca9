import pytest

from billing_console.invoicing.services import money_format as reexported
from billing_console.wording.money import money_format


@pytest.mark.parametrize("amount, currency, locale, text", [
    (1234, "usd", None, "$12.34"),
    (900, "usd", "en-us", "$9.00"),
    (5, "eur", None, "€0.05"),
    (123456789, "gbp", None, "£1,234,567.89"),
    (1000, "jpy", None, "¥1,000"),
    (1000, "JPY", None, "¥1,000"),
    (900, "jpy", None, "¥900"),
    (1500, "krw", None, "₩1,500"),
    (12345, "kwd", None, "KWD12.345"),
    (-250, "usd", None, "-$2.50"),
    (900, "eur", "de", "9,00\xa0€"),
    (123456, "eur", "de-de", "1.234,56\xa0€"),
    (900, "eur", "fr", "9,00\xa0€"),
    (900, "eur", "en-ie", "€9.00"),
    (900, "brl", "pt-br", "R$\xa09,00"),
    (900, "usd", "xx-nope", "$9.00"),  # an unknown locale falls back to en_US, never an error
])
def test_amounts_are_formatted_per_currency_and_locale_from_minor_units(amount, currency, locale, text):
    assert money_format(amount, currency, locale) == text


def test_the_invoicing_module_re_exports_the_one_formatter():
    assert reexported is money_format


def test_the_active_language_picks_the_separators():
    from django.utils import translation

    with translation.override("de"):
        assert money_format(900, "eur") == "9,00\xa0€"
    assert money_format(900, "eur") == "€9.00"
