import factory
from django.utils import timezone

from licensing.keys import key_generate, key_hash, key_normalize, key_prefix
from licensing.models import DeviceActivation, License
from tests.core.factories import SubscribedCustomerFactory


class LicenseFactory(factory.django.DjangoModelFactory):
    """A licence of an active Pro subscription. The clear key is kept on the instance as `.key`
    (never stored), because a test, like a customer, only learns it once."""

    class Meta:
        model = License

    customer = factory.SubFactory(SubscribedCustomerFactory)
    subscription_id = factory.LazyAttribute(lambda o: o.customer.subscription_id)
    key = factory.LazyFunction(key_generate)
    key_hash = factory.LazyAttribute(lambda o: key_hash(key_normalize(o.key)))
    key_prefix = factory.LazyAttribute(lambda o: key_prefix(key_normalize(o.key)))
    key_delivery = License.KeyDelivery.SENT
    plan = "pro"
    max_devices = 3
    offline_grace_days = 7

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        key = kwargs.pop("key")
        obj = super()._create(model_class, *args, **kwargs)
        obj.key = key
        return obj


class DeviceActivationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceActivation

    license = factory.SubFactory(LicenseFactory)
    device_id = factory.Sequence(lambda n: f"device-{n:04d}")
    name = factory.Sequence(lambda n: f"Laptop {n}")
    platform = "macos"
    activated_at = factory.LazyFunction(timezone.now)
    last_checked_at = factory.LazyFunction(timezone.now)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        obj = super()._create(model_class, *args, **kwargs)
        # As the services do: the licence's row carries its count of active devices.
        count = DeviceActivation.objects.filter(license_id=obj.license_id, deactivated_at__isnull=True).count()
        License.objects.filter(pk=obj.license_id).update(active_devices=count)
        obj.license.active_devices = count
        return obj
