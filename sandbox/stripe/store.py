"""The shared object store: every Stripe object by id, ids by type in creation order, side tables.

Side tables (`store.table(name)`) hold what is not part of any Stripe object (card numbers behind a
payment method, a session's line items...). Objects and tables are plain JSON, so `state()` and
`load()` persist them as they are.
"""
from __future__ import annotations

import copy
import re
from collections import defaultdict

from .errors import StripeError, missing
from .params import as_int

_CLAUSE = re.compile(r"\s*(-?)(metadata\[['\"]([^'\"]+)['\"]\]|[a-z_]+)\s*(:|~)\s*['\"]([^'\"]*)['\"]\s*")


class Store:
    def __init__(self, virtual_fields: dict | None = None):
        self.objects: dict[str, dict] = {}
        self.ids: dict[str, list[str]] = defaultdict(list)  # object type -> ids, oldest first
        self.tables: dict[str, dict] = defaultdict(dict)
        self.virtual_fields = virtual_fields if virtual_fields is not None else {}

    # -- objects ---------------------------------------------------------------------------
    def put(self, obj: dict) -> dict:
        if obj["id"] not in self.objects:
            self.ids[obj["object"]].append(obj["id"])
        self.objects[obj["id"]] = obj
        return obj

    def get(self, kind: str, object_id, param: str = "id") -> dict:
        """The live object (mutate it in place), or Stripe's 404 `No such <kind>`."""
        obj = self.objects.get(object_id) if isinstance(object_id, str) else None
        if obj is None or obj.get("object") != kind or obj.get("deleted"):
            raise missing(kind, str(object_id), param)
        return obj

    def remove(self, object_id: str):
        obj = self.objects.pop(object_id, None)
        if obj is not None and object_id in self.ids[obj["object"]]:
            self.ids[obj["object"]].remove(object_id)

    def all(self, kind: str) -> list[dict]:
        """Every object of a type, oldest first (deleted stubs included)."""
        return [self.objects[i] for i in self.ids[kind]]

    def newest_first(self, kind: str) -> list[dict]:
        return [self.objects[i] for i in reversed(self.ids[kind]) if not self.objects[i].get("deleted")]

    def table(self, name: str) -> dict:
        return self.tables[name]

    # -- persistence -----------------------------------------------------------------------
    def state(self) -> dict:
        return {"objects": self.objects, "ids": dict(self.ids), "tables": dict(self.tables)}

    def load(self, state: dict):
        self.objects = state["objects"]
        self.ids = defaultdict(list, state["ids"])
        self.tables = defaultdict(dict, state["tables"])

    # -- lists, expansion, search -------------------------------------------------------------
    def page(self, items: list[dict], params: dict, url: str) -> dict:
        """Stripe's list envelope over `items` (newest first): limit, starting_after, ending_before."""
        limit = as_int(params.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise StripeError(400, "Invalid integer: limit must be between 1 and 100", param="limit")
        ids = [item["id"] for item in items]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after:
            if after not in ids:
                raise StripeError(400, f"No such object: '{after}'", code="resource_missing", param="starting_after")
            rest = items[ids.index(after) + 1:]
            data, has_more = rest[:limit], len(rest) > limit
        elif before:
            if before not in ids:
                raise StripeError(400, f"No such object: '{before}'", code="resource_missing", param="ending_before")
            rest = items[:ids.index(before)]
            data, has_more = rest[-limit:], len(rest) > limit
        else:
            data, has_more = items[:limit], len(items) > limit
        return {"object": "list", "data": copy.deepcopy(data), "has_more": has_more, "url": url}

    def expand(self, emu, result: dict, paths: list[str]) -> dict:
        result = copy.deepcopy(result)
        for path in paths:
            parts = path.split(".")
            if result.get("object") == "list":
                if parts[0] != "data":
                    continue
                parts = parts[1:]
            self._expand_path(emu, result, parts)
        return result

    def _expand_path(self, emu, node, parts: list[str]):
        if not parts or node is None:
            return
        if isinstance(node, list):
            for item in node:
                self._expand_path(emu, item, parts)
            return
        if not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if node.get("object") == "list" and head == "data":
            self._expand_path(emu, node["data"], rest)
            return
        if head not in node:
            build = self.virtual_fields.get((node.get("object"), head))
            if build is None and head == "breakdown" and {"amount_discount", "amount_tax"} <= set(node):
                build = lambda emu, obj: {"discounts": [], "taxes": []}  # noqa: E731
            if build is None:
                return
            node[head] = build(emu, node)
        value = node[head]
        if isinstance(value, str) and value in self.objects:
            node[head] = value = copy.deepcopy(self.objects[value])
        elif isinstance(value, list):  # a list of ids (`discounts`, `default_tax_rates`...)
            node[head] = value = [copy.deepcopy(self.objects[v]) if isinstance(v, str) and v in self.objects else v
                                  for v in value]
        self._expand_path(emu, value, rest)

    def search(self, kind: str, params: dict, fields: set[str], url: str) -> dict:
        """Stripe's search: `field:'value'`, `field~'part'`, `metadata['key']:'value'`, `-` negates,
        clauses joined by AND or by OR (not both). Pages are offsets in `page`."""
        query = params.get("query")
        if not query:
            raise StripeError(400, "Missing required param: query.", code="parameter_missing", param="query")
        joiner = " OR " if " OR " in query else " AND "
        if joiner == " OR " and " AND " in query:
            raise StripeError(400, "Queries cannot mix AND and OR.", param="query")
        tests = []
        for clause in query.split(joiner):
            match = _CLAUSE.fullmatch(clause)
            if not match or (not match.group(3) and match.group(2) not in fields):
                raise StripeError(400, f"Invalid search query near '{clause.strip()}'. The sandbox supports "
                                       f"{', '.join(sorted(fields))} and metadata['key'].", param="query")
            negate, field, meta_key, op, value = match.groups()

            def test(obj, field=field, meta_key=meta_key, op=op, value=value, negate=negate):
                actual = (obj.get("metadata") or {}).get(meta_key) if meta_key else obj.get(field)
                actual = "" if actual is None else str(actual)
                hit = value.lower() in actual.lower() if op == "~" else actual == value
                return hit != bool(negate)
            tests.append(test)
        combine = any if joiner == " OR " else all
        items = [o for o in self.newest_first(kind) if combine(t(o) for t in tests)]
        limit = as_int(params.get("limit", 10), "limit")
        offset = as_int(params.get("page") or 0, "page")
        data = items[offset:offset + limit]
        more = offset + limit < len(items)
        return {"object": "search_result", "data": copy.deepcopy(data), "has_more": more,
                "next_page": str(offset + limit) if more else None, "url": url}


def created_filter(items: list[dict], created) -> list[dict]:
    """`created=N` or `created[gt|gte|lt|lte]=N`."""
    if created in (None, ""):
        return items
    if not isinstance(created, dict):
        value = as_int(created, "created")
        return [i for i in items if i["created"] == value]
    checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
              "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
    for op, value in created.items():
        if op not in checks:
            raise StripeError(400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
        bound = as_int(value, f"created[{op}]")
        items = [i for i in items if checks[op](i["created"], bound)]
    return items


def filter_equal(items: list[dict], params: dict, keys) -> list[dict]:
    """Pop each of `keys` present in `params` and keep the items whose field equals it."""
    for key in keys:
        if key in params:
            value = params.pop(key)
            items = [i for i in items if i.get(key) == value]
    return items
