"""System check (tag "billing"): the licence signing key must parse, not just be present."""
from django.conf import settings
from django.core.checks import Error, Warning, register

from licensing.tokens import SigningUnavailable, previous_keys_load, signing_key


@register("billing")
def license_keys_check(app_configs, **kwargs):
    problems = []
    if settings.LICENSE_SIGNING_KEY:
        try:
            signing_key()
        except SigningUnavailable as exc:
            problems.append(Error(str(exc), id="licensing.E001"))
    previous = [entry for entry in settings.LICENSE_VERIFY_KEYS_PREVIOUS if entry.strip()]
    if len(previous_keys_load(tuple(previous))) != len(previous):
        problems.append(Warning("An entry of LICENSE_VERIFY_KEYS_PREVIOUS is not an Ed25519 public key "
                                "(\"kid:base64\"); it is ignored.", id="licensing.W001"))
    return problems
