import copy

import pytest


@pytest.fixture(autouse=True)
def _plan_prices(settings):
    """The fixture history's prices map to the console's plan codes."""
    plans = copy.deepcopy(settings.PLANS)
    plans["pro"]["price_id"] = "price_pro"
    plans["team"]["price_id"] = "price_team"
    settings.PLANS = plans
