from django.apps import AppConfig


class LicensingConfig(AppConfig):
    name = "licensing"
    verbose_name = "Licensing"

    def ready(self):
        from licensing import checks, webhooks  # noqa: F401  registers Stripe receivers and system checks
        # rebuild_from_stripe: new licences (flagged needs_reissue) for subscriptions that lost theirs.
        from billing_console.rebuild import register_rebuilder
        from licensing.rebuild import rebuild_license

        register_rebuilder(rebuild_license)
