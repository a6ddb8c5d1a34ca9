from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing_console.models import Customer, WebhookEvent
from billing_console.selectors import customer_entitlement
from billing_console.stripe import dispatch as event_bus
from billing_console.stripe.catch_up import stripe_events_catch_up
from licensing.models import License

pytestmark = pytest.mark.django_db


def test_events_whose_delivery_failed_are_applied_in_created_order_like_live_webhooks(emulator, buy, capsys):
    _, sub_id = buy("ada@example.com")
    emitted = [e["id"] for e in emulator.events]
    assert not Customer.objects.exists()  # the endpoint was down: nothing arrived

    call_command("catch_up_events")

    out = capsys.readouterr().out
    applied = WebhookEvent.objects.filter(status="processed").count()
    assert applied and f"listed {len(emitted)}, new {len(emitted)}, already processed 0, processed now {applied}, " \
                       f"ignored (no receiver) {len(emitted) - applied}, failed 0" in out
    customer = Customer.objects.get(email="ada@example.com")
    assert customer.subscription_id == sub_id and customer_entitlement(customer).entitled
    assert License.objects.filter(subscription_id=sub_id).exists()
    rows = WebhookEvent.objects.order_by("processed_at")
    assert [r.stripe_id for r in rows] == emitted and {r.status for r in rows} <= {"processed", "ignored"}


def test_running_it_again_changes_nothing(emulator, buy, capsys):
    buy("ada@example.com")
    call_command("catch_up_events")
    before = list(WebhookEvent.objects.values_list("stripe_id", "status", "attempts", "deliveries", "processed_at"))
    capsys.readouterr()

    call_command("catch_up_events")

    n = len(before)
    assert f"listed {n}, new 0, already processed {n}, processed now 0" in capsys.readouterr().out
    assert list(WebhookEvent.objects.values_list("stripe_id", "status", "attempts", "deliveries", "processed_at")) == before
    assert Customer.objects.count() == 1 and License.objects.count() == 1


def test_since_takes_every_event_in_the_window_including_delivered_ones(emulator, buy):
    buy("ada@example.com")
    first = stripe_events_catch_up(since=timezone.now() - timedelta(days=1))
    assert first.listed == len(emulator.events) and first.processed + first.ignored == first.listed and first.failed == 0
    again = stripe_events_catch_up(since=timezone.now() - timedelta(days=1))
    assert again.already_processed == again.listed and again.new == 0


def test_days_is_a_window_ending_now(emulator, buy, capsys):
    buy("ada@example.com")
    call_command("catch_up_events", days=2)
    assert "Events since" in capsys.readouterr().out and Customer.objects.count() == 1


def test_a_failing_event_is_reported_then_applied_by_a_later_run(emulator, buy, capsys):
    buy("ada@example.com")
    calls = {"n": 0}

    @event_bus.receiver("invoice.paid", stage=event_bus.Stage.DUNNING)
    def broken(event):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("receiver bug")

    try:
        with pytest.raises(CommandError, match="1 event"):
            call_command("catch_up_events")
        failed = WebhookEvent.objects.get(type="invoice.paid")
        assert failed.status == "failed" and "receiver bug" in failed.last_error
        assert "failed: " + failed.stripe_id in capsys.readouterr().out

        # The failed event waits for its backoff, but an operator's catch-up applies it now.
        report = stripe_events_catch_up()
        assert report.processed == 1 and report.failed == 0
        failed.refresh_from_db()
        assert failed.status == "processed"
    finally:
        event_bus.registry.remove("invoice.paid", broken)


@pytest.mark.parametrize("options, message", [
    ({"since": (timezone.now() - timedelta(days=31)).isoformat()}, "keeps events for 30 days"),
    ({"days": 31}, "keeps events for 30 days"),
    ({"days": 0}, "at least 1"),
    ({"since": "last tuesday"}, "not an ISO date"),
    ({"since": (timezone.now() + timedelta(days=1)).isoformat()}, "in the future"),
])
def test_bad_windows_are_refused_before_stripe_is_called(stripe_settings, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("catch_up_events", **options)


def test_since_and_days_together_are_refused(stripe_settings):
    with pytest.raises(CommandError, match="not allowed with"):
        call_command("catch_up_events", "--since", "2026-01-01", "--days", "3")


def test_stripe_unreachable_is_a_clear_error_and_writes_nothing(stripe_settings):
    stripe_settings.STRIPE_API_HOST = "http://127.0.0.1:9"
    with pytest.raises(CommandError):
        call_command("catch_up_events")
    assert not WebhookEvent.objects.exists()


def test_without_a_stripe_key_it_says_so(settings):
    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY is not set"):
        call_command("catch_up_events")
