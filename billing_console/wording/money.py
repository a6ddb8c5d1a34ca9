"""Money in words: one formatter for every page, email, PDF, admin column and chart.

Amounts are integers in the currency's minor unit as Stripe sends them; Stripe's own list decides how
many minor digits a currency has (it differs from ISO 4217 for a few), and Babel (CLDR) decides the
symbol, its position and the separators for the locale.
"""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import parse_pattern
from django.conf import settings
from django.utils import translation

# https://docs.stripe.com/currencies#zero-decimal and #three-decimal
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                "xaf", "xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}


def currency_exponent(currency: str) -> int:
    currency = (currency or "").lower()
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


@lru_cache(maxsize=64)
def _locale(name: str) -> Locale:
    try:
        return Locale.parse((name or "en_US").replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en_US")


def money_format(amount_minor: int, currency: str, locale: str | None = None) -> str:
    """900, "usd" -> "$9.00"; 900, "eur", "de" -> "9,00 €"; 900, "jpy" -> "¥900". Exact decimal maths."""
    loc = _locale(locale or translation.get_language() or settings.LANGUAGE_CODE)
    exponent = currency_exponent(currency)
    pattern = parse_pattern(loc.currency_formats["standard"].pattern)
    pattern.frac_prec = (exponent, exponent)
    value = Decimal(int(amount_minor)).scaleb(-exponent)
    return pattern.apply(value, loc, currency=(currency or "").upper(), currency_digits=False)
