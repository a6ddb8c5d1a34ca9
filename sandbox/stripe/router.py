"""Method + path pattern -> handler, and the clock hooks resource families register.

A resource module calls `api.add("GET", "/v1/things/{id}", handler)`; the handler is called as
`handler(emu, params, id=...)` with the emulator's lock held and `expand[]` already removed from
`params`. `api.on_clock(finder)` registers `finder(emu, until) -> [(moment, order, object_id, action)]`,
the work due by `until`; the emulator runs the earliest first, `action(emu, object_id)`.
`api.virtual(kind, field, build)` adds a field that only `expand[]` shows (`build(emu, obj)`).
"""
from __future__ import annotations

import re

from .errors import StripeError


class Router:
    def __init__(self):
        self.routes: list[tuple[str, re.Pattern, object]] = []
        self.clock_hooks: list = []
        self.virtual_fields: dict[tuple[str, str], object] = {}

    def add(self, method: str, pattern: str, handler):
        # `{name}` is one path segment; literal segments win over `{id}` because they are added first
        # or, when not, because `match` prefers the route with fewer placeholders.
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self.routes.append((method.upper(), re.compile(regex + "/?"), handler))

    def on_clock(self, finder):
        self.clock_hooks.append(finder)

    def virtual(self, kind: str, field: str, build):
        """A field Stripe includes only when expanded: `build(emu, obj)` makes it."""
        self.virtual_fields[(kind, field)] = build

    def match(self, method: str, path: str):
        """(handler, path parameters), or Stripe's 404 for an unknown URL."""
        found = []
        for route_method, regex, handler in self.routes:
            m = regex.fullmatch(path)
            if m and route_method == method:
                found.append((len(m.groupdict()), handler, m.groupdict()))
        if found:
            _, handler, groups = min(found, key=lambda f: f[0])
            return handler, groups
        raise StripeError(404, (
            f"Unrecognized request URL ({method}: {path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/. "
            "(The Stripe sandbox emulates only the calls listed in sandbox/stripe/README.md.)"))
