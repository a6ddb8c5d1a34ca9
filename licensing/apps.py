from django.apps import AppConfig


class LicensingConfig(AppConfig):
    name = "licensing"
    verbose_name = "Licensing"

    def ready(self):
        from licensing import checks, webhooks  # noqa: F401  registers Stripe receivers and system checks
