import pytest
from django.db import transaction

from billing_console.stripe import dispatch as events


@pytest.fixture
def deliver_events(django_capture_on_commit_callbacks):
    """Apply Stripe events the way the Stripe worker does: one transaction per event, receivers via
    dispatch, then the on-commit side effects (the delivery task runs inline: Q_CLUSTER sync)."""

    def apply(*evts):
        for evt in evts:
            with django_capture_on_commit_callbacks(execute=True):
                with transaction.atomic():
                    events.dispatch(evt)

    return apply


@pytest.fixture
def invoice_settings(settings):
    settings.BILLING_BCC_ADDRESS = "books@bcc.example.com"
    settings.DEFAULT_FROM_EMAIL = "Billing <billing@example.com>"
    settings.INVOICE_DELIVERY_MAX_ATTEMPTS = 3
    settings.INVOICE_DELIVERY_RETRY_BASE_SECONDS = 60
    return settings
