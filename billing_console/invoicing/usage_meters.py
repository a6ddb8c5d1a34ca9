"""Stripe billing meters for USAGE_METERS: created or checked at setup (`manage.py setup_meters`, run by
`make run`), and their ids for reading Stripe's meter event summaries."""
from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from billing_console.stripe import gateway as stripe_gateway

# Stripe payload keys of the meters the console creates (the report run sends these).
CUSTOMER_KEY = "stripe_customer_id"
VALUE_KEY = "value"


def usage_meters_setup(*, dry_run: bool = False) -> list[dict]:
    """Create the meters of USAGE_METERS that Stripe lacks; check the ones it has (active, summing, the
    payload keys the console sends). Returns one {key, event_name, meter_id, status, problem} per meter."""
    existing = {m["event_name"]: m for m in stripe_gateway.meters_list()}
    results = []
    for key, spec in settings.USAGE_METERS.items():
        meter = existing.get(spec["event_name"])
        result = {"key": key, "event_name": spec["event_name"], "meter_id": meter["id"] if meter else "",
                  "status": "ok", "problem": ""}
        if meter is None:
            if dry_run:
                result["status"] = "missing"
            else:
                meter = stripe_gateway.meter_create(params={
                    "display_name": spec["display_name"], "event_name": spec["event_name"],
                    "default_aggregation": {"formula": "sum"},
                    "customer_mapping": {"type": "by_id", "event_payload_key": CUSTOMER_KEY},
                    "value_settings": {"event_payload_key": VALUE_KEY}}, idempotency_key=f"bc-meter-{spec['event_name']}")
                result.update(meter_id=meter["id"], status="created")
        else:
            problems = []
            if meter.get("status") != "active":
                problems.append("the meter is inactive in Stripe")
            if (meter.get("default_aggregation") or {}).get("formula") != "sum":
                problems.append("its aggregation is not sum (the console sends totals)")
            if (meter.get("customer_mapping") or {}).get("event_payload_key") != CUSTOMER_KEY:
                problems.append(f"its customer payload key is not {CUSTOMER_KEY}")
            if (meter.get("value_settings") or {}).get("event_payload_key") != VALUE_KEY:
                problems.append(f"its value payload key is not {VALUE_KEY}")
            if problems:
                result.update(status="mismatch", problem="; ".join(problems))
        results.append(result)
    cache.set("bc:usage:meter_ids", {r["key"]: r["meter_id"] for r in results if r["meter_id"]}, 3600)
    return results


def usage_meter_ids() -> dict[str, str]:
    """USAGE_METERS key -> Stripe meter id (one list call, cached for an hour)."""
    ids = cache.get("bc:usage:meter_ids")
    if ids is None:
        by_name = {m["event_name"]: m["id"] for m in stripe_gateway.meters_list()}
        ids = {key: by_name[spec["event_name"]] for key, spec in settings.USAGE_METERS.items()
               if spec["event_name"] in by_name}
        cache.set("bc:usage:meter_ids", ids, 3600)
    return ids
