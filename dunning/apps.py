from django.apps import AppConfig


class DunningConfig(AppConfig):
    name = "dunning"
    verbose_name = "Dunning"

    def ready(self):
        from dunning import webhooks  # noqa: F401  registers the Stripe event receivers
