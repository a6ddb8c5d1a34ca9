import factory
from django.db.models import Max

from deployments.models import BundleRelease, Deployment, PublishVersion
from tests.core.factories import SubscribedCustomerFactory


class DeploymentFactory(factory.django.DjangoModelFactory):
    """A deployment whose token is set through the vault (`api_token` is plaintext only in the factory call)."""

    class Meta:
        model = Deployment

    customer = factory.SubFactory(SubscribedCustomerFactory)
    # The next free slot, so a test may give one customer several deployments (services enforce the plan's count).
    slot = factory.LazyAttribute(lambda o: (Deployment.objects.filter(customer=o.customer).aggregate(m=Max("slot"))["m"] or 0) + 1)
    account_id = factory.Sequence(lambda n: f"{n:032x}")
    script_name = factory.Sequence(lambda n: f"helm-{n}")
    api_token = factory.Sequence(lambda n: f"cfTok{n:06d}" + "Q" * 29)

    @classmethod
    def _create(cls, model_class, *args, api_token="", **kwargs):
        deployment = model_class(**kwargs)
        if api_token:
            deployment.api_token = api_token
            deployment.token_last4 = api_token[-4:]
        deployment.save()
        return deployment


class BundleReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BundleRelease

    version = factory.Sequence(lambda n: f"v0.{n}.0")
    bundle_url = factory.LazyAttribute(lambda o: f"https://bundles.example.com/{o.version}/worker.mjs")
    sha256 = "0" * 64
    size = 10


class PublishVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PublishVersion

    deployment = factory.SubFactory(DeploymentFactory)
    number = factory.Sequence(lambda n: n + 1)
    version = "v0.1.0"
