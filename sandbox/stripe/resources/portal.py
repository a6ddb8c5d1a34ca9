"""Billing portal configurations and sessions (the hosted portal page lives in pages.py)."""
from __future__ import annotations

import copy

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_bool
from ..store import created_filter

DEFAULT_CONFIGURATION = "bpc_sandbox_default"
CONFIGURATION_FIELDS = {"business_profile", "features", "default_return_url", "login_page", "metadata", "name"}
FEATURES = {"customer_update": {"allowed_updates", "enabled"}, "invoice_history": {"enabled"},
            "payment_method_update": {"enabled", "payment_method_configuration"},
            "subscription_cancel": {"cancellation_reason", "enabled", "mode", "proration_behavior"},
            "subscription_update": {"default_allowed_updates", "enabled", "products", "proration_behavior",
                                    "schedule_at_period_end", "trial_update_behavior", "billing_cycle_anchor"}}


def configuration_object(*, configuration_id: str, created: int, is_default: bool) -> dict:
    obj = shapes.example("billing_portal.configuration")
    obj.update(id=configuration_id, created=created, updated=created, is_default=is_default, livemode=False,
               metadata={}, name=None, default_return_url=None, application=None)
    obj["business_profile"] = {"headline": None, "privacy_policy_url": None, "terms_of_service_url": None}
    obj["login_page"] = {"enabled": False, "url": None}
    features = obj["features"]
    features["customer_update"] = {"allowed_updates": ["email", "address", "phone"], "enabled": True}
    features["invoice_history"] = {"enabled": True}
    features["payment_method_update"] = {"enabled": True, "payment_method_configuration": None}
    features["subscription_cancel"] = {"cancellation_reason": {"enabled": False, "options": []},
                                       "enabled": True, "mode": "at_period_end", "proration_behavior": "none"}
    features["subscription_update"] = {"default_allowed_updates": [], "enabled": False, "products": [],
                                       "proration_behavior": "none",
                                       "schedule_at_period_end": {"conditions": []},
                                       "trial_update_behavior": "end_trial", "billing_cycle_anchor": None}
    return obj


def default_configuration(emu) -> dict:
    """The account's default configuration (what the hosted portal offers when none is named)."""
    found = emu.store.objects.get(DEFAULT_CONFIGURATION)
    if found is None:
        found = emu.store.put(configuration_object(configuration_id=DEFAULT_CONFIGURATION, created=emu.now(),
                                                   is_default=True))
    return found


def _apply(conf: dict, params: dict) -> dict:
    """Apply create/update parameters; returns the previous values of what changed."""
    previous = {}
    for field in ("default_return_url", "name"):
        if field in params and conf[field] != (params[field] or None):
            previous[field] = conf[field]
            conf[field] = params[field] or None
    profile = params.get("business_profile")
    if profile not in (None, ""):
        if not isinstance(profile, dict):
            raise StripeError(400, "Invalid object", param="business_profile")
        allow({f"business_profile[{k}]": v for k, v in profile.items()},
              {f"business_profile[{k}]" for k in ("headline", "privacy_policy_url", "terms_of_service_url")})
        old = copy.deepcopy(conf["business_profile"])
        conf["business_profile"].update({k: v or None for k, v in profile.items()})
        if old != conf["business_profile"]:
            previous["business_profile"] = old
    features = params.get("features")
    if features not in (None, ""):
        if not isinstance(features, dict):
            raise StripeError(400, "Invalid object", param="features")
        old = copy.deepcopy(conf["features"])
        for name, value in features.items():
            if name not in FEATURES:
                raise StripeError(400, f"Received unknown parameter: features[{name}]", param=f"features[{name}]")
            if not isinstance(value, dict):
                raise StripeError(400, "Invalid object", param=f"features[{name}]")
            for key, item in value.items():
                if key not in FEATURES[name]:
                    raise StripeError(400, f"Received unknown parameter: features[{name}][{key}]",
                                      param=f"features[{name}][{key}]")
                if key == "enabled":
                    item = as_bool(item, f"features[{name}][enabled]")
                elif key in ("allowed_updates", "default_allowed_updates", "products"):
                    item = [] if item == "" else list(item.values()) if isinstance(item, dict) else list(item)
                conf["features"][name][key] = item
        if old != conf["features"]:
            previous["features"] = old
    login = params.get("login_page")
    if isinstance(login, dict) and "enabled" in login:
        enabled = as_bool(login["enabled"], "login_page[enabled]")
        if enabled != conf["login_page"]["enabled"]:
            previous["login_page"] = copy.deepcopy(conf["login_page"])
            conf["login_page"] = {"enabled": enabled,
                                  "url": f"https://billing.stripe.com/p/login/test_{conf['id'][-12:]}" if enabled
                                  else None}
    if "metadata" in params:
        metadata = merge_metadata(conf["metadata"] or {}, params["metadata"])
        if metadata != conf["metadata"]:
            previous["metadata"] = conf["metadata"]
            conf["metadata"] = metadata
    return previous


def configuration_create(emu, params):
    allow(params, CONFIGURATION_FIELDS)
    required(params, "features")
    default_configuration(emu)
    conf = configuration_object(configuration_id=shapes.new_id("bpc_"), created=emu.now(), is_default=False)
    _apply(conf, params)
    emu.store.put(conf)
    emu.emit("billing_portal.configuration.created", conf)
    return conf


def configuration_update(emu, params, id):
    allow(params, CONFIGURATION_FIELDS | {"active"})
    conf = emu.store.get("billing_portal.configuration", id)
    previous = _apply(conf, params)
    if "active" in params:
        active = as_bool(params["active"], "active")
        if not active and conf["is_default"]:
            raise StripeError(400, "You cannot deactivate the default configuration.", param="active")
        if active != conf["active"]:
            previous["active"] = conf["active"]
            conf["active"] = active
    if previous:
        conf["updated"] = emu.now()
        emu.emit("billing_portal.configuration.updated", conf, previous)
    return conf


def configuration_retrieve(emu, params, id):
    default_configuration(emu)
    return emu.store.get("billing_portal.configuration", id)


def configuration_list(emu, params):
    default_configuration(emu)
    items = emu.store.newest_first("billing_portal.configuration")
    for key in ("active", "is_default"):
        if key in params:
            wanted = as_bool(params.pop(key), key)
            items = [c for c in items if c[key] == wanted]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/billing_portal/configurations")


def portal_session_create(emu, params):
    allow(params, {"customer", "return_url", "configuration", "flow_data", "locale", "on_behalf_of"})
    if not params.get("customer"):
        raise StripeError(400, "Missing required param: customer.", code="parameter_missing", param="customer")
    customer = emu.store.get("customer", params["customer"], "customer")
    if params.get("configuration"):
        conf = emu.store.get("billing_portal.configuration", params["configuration"], "configuration")
        if not conf["active"]:
            raise StripeError(400, "The configuration is not active.", param="configuration")
    else:
        conf = default_configuration(emu)
    session_id = shapes.new_id("bps_")
    session = shapes.portal_session(session_id=session_id, created=emu.now(), customer_id=customer["id"],
                                    return_url=params.get("return_url") or conf["default_return_url"],
                                    url=f"{emu.base_url}/portal/{session_id}")
    session["configuration"] = conf["id"]
    session["locale"] = params.get("locale") or None
    emu.store.put(session)
    emu.emit("billing_portal.session.created", session)
    return session


def register(api):
    api.add("POST", "/v1/billing_portal/sessions", portal_session_create)
    api.add("POST", "/v1/billing_portal/configurations", configuration_create)
    api.add("GET", "/v1/billing_portal/configurations", configuration_list)
    api.add("GET", "/v1/billing_portal/configurations/{id}", configuration_retrieve)
    api.add("POST", "/v1/billing_portal/configurations/{id}", configuration_update)
