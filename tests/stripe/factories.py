import factory

from billing_console.models import CheckoutAttempt, WebhookEvent
from tests.stripe_events import stripe_event


class CheckoutAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CheckoutAttempt
        skip_postgeneration_save = True

    plan = "pro"
    price_id = "price_sandbox_pro"
    email_hint = "b***@example.com"

    @factory.post_generation
    def email(self, create, extracted, **kwargs):
        self.recovery_email = extracted or "buyer@example.com"
        if create:
            self.save(update_fields=["recovery_email_encrypted"])


class WebhookEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookEvent

    stripe_id = factory.Sequence(lambda n: f"evt_test{n:08d}")
    type = "customer.updated"
    stripe_created = factory.Faker("date_time_this_year", tzinfo=__import__("datetime").timezone.utc)
    payload = factory.LazyAttribute(lambda o: stripe_event(o.type, obj={"id": "cus_x", "object": "customer"},
                                                           event_id=o.stripe_id,
                                                           created=int(o.stripe_created.timestamp())))
