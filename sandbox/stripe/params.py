"""Stripe's form encoding: `metadata[plan]=pro`, `line_items[0][price]=...`, `expand[]=a`.

stripe-python sends arrays indexed (`expand[0]=a`), other clients send `expand[]=a`; both decode
to lists. Values stay strings, as Stripe receives them; the routes convert what they need.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl

_TOKEN = re.compile(r"\[([^\]]*)\]")


class ParamError(ValueError):
    """A parameter that cannot be decoded; answered as Stripe's invalid_request_error."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def decode_pairs(pairs) -> dict:
    root: dict = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        if not head:
            raise ParamError(f"Invalid parameter name: {key}", key)
        tokens = [head] + (_TOKEN.findall("[" + rest) if rest else [])
        node = root
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            if token == "":  # `a[]`: append to a list kept under a fresh index
                token = str(len(node))
            if last:
                node[token] = value
            else:
                child = node.get(token)
                if not isinstance(child, dict):
                    child = node[token] = {}
                node = child
    return _listify(root)


def _listify(node):
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def decode_body(body: bytes) -> dict:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamError("Request body is not valid UTF-8") from exc
    return decode_pairs(parse_qsl(text, keep_blank_values=True))


def decode_query(query: dict) -> dict:
    """Decode `sandbox._http.Request.query` (a dict whose repeated keys hold lists)."""
    pairs = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, item))
    return decode_pairs(pairs)


def as_bool(value, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "1"):
        return True
    if value in ("false", "False", "0"):
        return False
    raise ParamError(f"Invalid boolean: {value}", param)


def as_int(value, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ParamError(f"Invalid integer: {value}", param) from None


def as_list(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]
