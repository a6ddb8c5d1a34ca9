"""The second half of the "database lost" drill: no usable backup, so the console is rebuilt from Stripe."""
import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from billing_console.manage_links import manage_link_read
from billing_console.models import Customer
from billing_console.selectors import customer_entitlement
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe.catch_up import stripe_events_catch_up
from deployments.models import Deployment
from deployments.services import deployment_create
from licensing.models import License
from tests.ops.drill import console_wipe

pytestmark = pytest.mark.django_db

CUSTOMER_FIELDS = ("email", "name", "stripe_customer_id", "subscription_id", "subscription_status", "plan", "price_id",
                   "current_period_end", "cancel_at_period_end", "access_state")
LICENSE_FIELDS = ("customer__email", "subscription_id", "plan", "max_devices", "offline_grace_days", "status")
ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "cfTokenForRebuildDrill0123456789"


def console_state():
    """What a rebuild must bring back: the customers with a live subscription, their licences and deployments."""
    live = Customer.objects.exclude(subscription_status="canceled")
    return {
        "customers": sorted(live.values_list(*CUSTOMER_FIELDS)),
        "licences": sorted(License.objects.filter(customer__in=live).values_list(*LICENSE_FIELDS)),
        "deployments": sorted(Deployment.objects.values_list("customer__email", "account_id", "script_name")),
    }


@pytest.fixture
def paying_customers(emulator, buy, cloudflare, django_capture_on_commit_callbacks):
    """Two paying customers (one with a managed deployment) and one who canceled, applied to the console."""
    buy("ada@example.com", "pro", name="Ada Lovelace")
    buy("grace@example.com", "team", name="Grace Hopper")
    _, gone = buy("gone@example.com", "pro")
    stripe_gateway.subscription_cancel(gone, idempotency_key="drill-cancel")
    stripe_events_catch_up()
    ada = Customer.objects.get(email="ada@example.com")
    cloudflare.add_token(TOKEN, ACCOUNT)
    with django_capture_on_commit_callbacks(execute=True):
        deployment_create(customer=ada, account_id=ACCOUNT, script_name="helm-ada", api_token=TOKEN,
                          actor_type="admin", actor="support")
    return ada


def test_creating_a_deployment_records_it_on_the_stripe_subscription(paying_customers, emulator):
    sub = emulator.get(paying_customers.subscription_id)
    assert sub["metadata"]["cf_account_id"] == ACCOUNT and sub["metadata"]["cf_script_name"] == "helm-ada"
    assert TOKEN not in str(sub)


def test_database_lost_drill_wipe_then_rebuild_restores_customers_licences_and_deployment_shells(
        paying_customers, django_capture_on_commit_callbacks, capsys):
    before = console_state()
    assert len(before["customers"]) == 2 and Customer.objects.filter(email="gone@example.com", access_state="canceled").exists()
    old_hashes = set(License.objects.values_list("key_hash", flat=True))
    console_wipe()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("rebuild_from_stripe")

    assert console_state() == before
    assert not Customer.objects.filter(email="gone@example.com").exists()  # ended: not rebuilt, counted
    for customer in Customer.objects.all():
        assert customer_entitlement(customer).entitled
    licences = License.objects.all()
    assert all(lic.needs_reissue for lic in licences) and not old_hashes & {lic.key_hash for lic in licences}
    shell = Deployment.objects.get()
    assert shell.api_token_encrypted == "" and shell.paused and shell.status == "paused"
    # Only the customer who must re-enter a token is emailed, once, with a working manage link; no key emails.
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    link = next(word for word in mail.outbox[0].body.split() if "/manage/" in word)
    assert manage_link_read(link.rsplit("/manage/", 1)[1].strip("/")).email == "ada@example.com"
    out = capsys.readouterr().out
    assert "ada@example.com" in out and "recovery email sent" in out and "Needs a person" in out
    assert "1 ended (not rebuilt)" in out
    assert "reissue the key" in out


def test_a_second_rebuild_creates_nothing_and_emails_nobody(paying_customers, django_capture_on_commit_callbacks, capsys):
    console_wipe()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("rebuild_from_stripe")
    state, sent = console_state(), len(mail.outbox)
    capsys.readouterr()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("rebuild_from_stripe")
    assert console_state() == state and len(mail.outbox) == sent
    assert "0 things created" in capsys.readouterr().out


def test_dry_run_writes_and_sends_nothing(paying_customers, django_capture_on_commit_callbacks, capsys):
    console_wipe()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("rebuild_from_stripe", dry_run=True)
    assert not Customer.objects.exists() and not License.objects.exists() and not Deployment.objects.exists()
    assert mail.outbox == []
    out = capsys.readouterr().out
    assert "ada@example.com" in out and "would create customer, licence" in out and "Dry run" in out


def test_stripe_unreachable_is_a_clear_error(stripe_settings):
    stripe_settings.STRIPE_API_HOST = "http://127.0.0.1:9"
    with pytest.raises(CommandError, match="Stripe: .*run the command again"):
        call_command("rebuild_from_stripe")
    assert not Customer.objects.exists()


def test_without_a_stripe_key_it_says_so(settings):
    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY is not set"):
        call_command("rebuild_from_stripe")
