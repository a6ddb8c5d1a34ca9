"""Every lifecycle path driven through the Stripe sandbox's own API with the real stripe client: the
emulator runs in-process, each event it emits is delivered signed to /api/billing/webhook and processed
(the worker runs on commit), and each test reads what the console then holds, sends and shows."""
import pytest
import stripe
from django.conf import settings
from django.core import mail

from billing_console.manage_links import manage_link_make
from billing_console.models import Customer, WebhookEvent
from billing_console.selectors import Reason, customer_entitlement
from licensing.models import License
from tests.stripe.conftest import API_KEY

pytestmark = pytest.mark.django_db

APPLIED = {WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED}


class Live:
    """The sandbox and the console side by side: `run(fn)` calls the sandbox and delivers what it emitted."""

    def __init__(self, emu, post_event, client):
        self.emu, self.post_event, self.client = emu, post_event, client
        self.delivered: list[str] = []

    def sync(self):
        """Deliver every event emitted since the last sync, in order, each answered 200."""
        for evt in self.emu.events[len(self.delivered):]:
            response = self.post_event(evt)
            assert response.status_code == 200, (evt["type"], response.content)
            self.delivered.append(evt["id"])

    def run(self, fn, *args, **kwargs):
        result = fn(*args, api_key=API_KEY, **kwargs)
        self.sync()
        return result

    def advance(self, **delta):
        self.emu.advance(**delta)
        self.sync()

    def types(self) -> list[str]:
        return [e["type"] for e in self.emu.events]

    def assert_all_applied(self):
        rows = {r.stripe_id: r for r in WebhookEvent.objects.filter(stripe_id__in=self.delivered)}
        assert len(rows) == len(set(self.delivered))
        bad = [(r.event_type, r.status, r.last_error) for r in rows.values() if r.status not in APPLIED]
        assert not bad, bad

    def customer(self, email) -> Customer:
        return Customer.objects.get(email=email)

    def manage_page(self, customer) -> str:
        response = self.client.get(manage_link_make(customer).replace(settings.SITE_URL, ""))
        assert response.status_code == 200
        return " ".join(response.content.decode().split())


@pytest.fixture
def live(emulator, post_event, client):
    mail.outbox.clear()
    return Live(emulator, post_event, client)


def emails_to(address):
    return [m for m in mail.outbox if address in m.to]


def new_stripe_customer(live, email, card="pm_card_visa", **params):
    cus = live.run(stripe.Customer.create, email=email, name="Live Buyer", payment_method=card,
                   invoice_settings={"default_payment_method": card}, **params)
    return cus


def test_a_subscription_made_from_the_api_becomes_an_entitled_customer(live):
    cus = new_stripe_customer(live, "api@example.com")
    sub = live.run(stripe.Subscription.create, customer=cus.id, items=[{"price": "price_sandbox_pro"}])
    assert sub.status == "active"

    customer = live.customer("api@example.com")
    assert (customer.stripe_customer_id, customer.subscription_id, customer.subscription_status, customer.plan) == (
        cus.id, sub.id, "active", "pro")
    assert customer_entitlement(customer).reason == Reason.VALID
    assert License.objects.filter(customer=customer, subscription_id=sub.id).exists()
    assert any("account link" in m.subject for m in emails_to("api@example.com")), [m.subject for m in mail.outbox]
    page = live.manage_page(customer)
    assert "Next payment" in page and "$9.00" in page, page
    live.assert_all_applied()
