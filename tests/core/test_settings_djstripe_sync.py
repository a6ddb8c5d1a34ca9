"""STRIPE_DJSTRIPE_SYNC as an operator writes it in the environment (settings are read once, at import)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ["customer", "invoice", "invoiceitem", "price", "product", "payment_method", "charge", "refund", "coupon"]


def mirrored(value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_DJSTRIPE_SYNC"}
    if value is not None:
        env["STRIPE_DJSTRIPE_SYNC"] = value
    out = subprocess.run([sys.executable, "-c", "import json, billing_console.settings as s; "
                                                "print(json.dumps(s.STRIPE_DJSTRIPE_SYNC))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value, expected", [
    (None, DEFAULT),  # unset: every billing type the console receives
    ("", DEFAULT),  # empty counts as unset, as for every setting
    ("all", ["*"]),
    ("true", ["*"]),
    ("none", []),
    ("false", []),
    ("price, customer.subscription ", ["price", "customer.subscription"]),
])
def test_the_mirrored_types_are_read_from_the_environment(value, expected):
    assert mirrored(value) == expected
