from datetime import timedelta

import factory
from django.utils import timezone

from billing_console.models import Customer


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Faker("name")


class SubscribedCustomerFactory(CustomerFactory):
    """A customer with an active Pro subscription twenty days before its renewal."""

    subscription_id = factory.Sequence(lambda n: f"sub_test{n:06d}")
    subscription_status = "active"
    plan = "pro"
    price_id = "price_sandbox_pro"
    current_period_end = factory.LazyFunction(lambda: timezone.now() + timedelta(days=20))
