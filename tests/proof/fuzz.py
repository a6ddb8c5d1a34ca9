"""Hypothesis strategies and assertions shared by the bad-input tests of the public JSON endpoints.

A public endpoint given bad input answers 4xx with a readable message (never a 500), and writes
nothing: the row count of every console table is the same before and after.
"""
from __future__ import annotations

import json

from django.apps import apps
from django.db import connection
from hypothesis import HealthCheck, settings as hsettings
from hypothesis import strategies as st

CONSOLE_APPS = ("billing_console", "licensing", "deployments", "dunning")

# Bounded so the whole project suite stays fast; each endpoint runs several of these.
FUZZ = hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

# Text a naive parser or database trips on: NUL, lone surrogates, RTL marks, emoji, very long words.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "\ud800", "a\x00b", "\u202etxt.exe", "😀" * 50, "' OR 1=1 --", "<script>", "%s%n",
                     "x" * 5000, " ", "\n", "null", "{}", "NaN", "-1", "1e309", "BCL-" + "A" * 200]),
)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                        st.floats(allow_nan=False, allow_infinity=False), nasty_text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                          max_leaves=10)
# Not a JSON object: garbage bytes, truncated JSON, JSON of the wrong top-level type.
not_an_object = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b'{"a":', b"[]", b"null", b"1", b'"text"', b"\xff\xfe{}", b'{"a": NaN}',
                     b'{"a": 1e999999}', b"[" * 3000 + b"]" * 3000]),
    json_value.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
)


def wrong_types(fields: dict[str, object]):
    """Objects with the endpoint's field names, each missing or of a wrong type (never all valid)."""
    wrong = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.lists(json_scalar, max_size=3),
                      st.dictionaries(st.text(max_size=5), json_scalar, max_size=3))
    return st.fixed_dictionaries({}, optional={name: wrong for name in fields}).map(
        lambda d: json.dumps(d).encode())


def unicode_laden(fields: dict[str, object]):
    """Objects with the endpoint's field names and nasty strings as values."""
    return st.fixed_dictionaries({name: nasty_text for name in fields}).map(
        lambda d: json.dumps(d).encode())


def row_counts() -> dict[str, int]:
    """Rows per console table, in one round trip (called before and after every example)."""
    tables = sorted({model._meta.db_table for label in CONSOLE_APPS if apps.is_installed(label)
                     for model in apps.get_app_config(label).get_models() if model._meta.managed})
    sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {connection.ops.quote_name(t)})" for t in tables)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return dict(zip(tables, cursor.fetchone()))


def error_message(response) -> str:
    """The human message of an error answer, in either of the console's two error shapes:
    {"code", "error": "..."} (licence API) or {"error": {"code", "message"}} (billing API)."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    error = body.get("error")
    if isinstance(error, dict):
        return error.get("message") or ""
    return error or body.get("detail") or ""


def assert_rejected(response, before: dict[str, int], *, allow: tuple[int, ...] = ()) -> None:
    """4xx with a message and no row written. `allow` lists non-4xx answers that are right for this
    input (e.g. 503 when the endpoint is not configured)."""
    assert response.status_code < 500 or response.status_code in allow, (response.status_code, response.content[:500])
    if response.status_code in allow:
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    message = error_message(response)
    assert isinstance(message, str) and len(message) >= 5, response.content[:500]
    assert row_counts() == before
