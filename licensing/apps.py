from django.apps import AppConfig


class LicensingConfig(AppConfig):
    name = "licensing"
    verbose_name = "Licensing"

    def ready(self):
        from licensing import checks, webhooks  # noqa: F401  registers Stripe receivers and system checks
        # rebuild_from_stripe: new licences (flagged needs_reissue) for subscriptions that lost theirs.
        from billing_console.ops.rebuild import register_rebuilder
        from licensing.rebuild import rebuild_license

        register_rebuilder(rebuild_license)

        # POST /api/billing/portal from the desktop app: a device access token proves the customer.
        from billing_console.stripe.api import register_portal_authenticator
        from licensing.portal import portal_device_token

        register_portal_authenticator(portal_device_token, via="device_token")

        # Support console (billing_console.admin.dashboard / .search): licence numbers on the front page, and
        # device ids, key prefixes and whole keys in the global search.
        from billing_console.admin.dashboard import register_dashboard_section
        from billing_console.admin.search import register_search_provider
        from licensing import console

        register_dashboard_section(console.dashboard_section)
        register_search_provider(console.search_hits)

        # The analytics page (billing_console.analytics): this app's charts.
        from billing_console.analytics.registry import register_analytics_section
        from licensing import analytics

        register_analytics_section(analytics.analytics_charts)

        # /metrics (billing_console.ops.metrics): this app's families, computed at scrape time.
        from billing_console.ops.metrics import register_metrics
        from licensing.metrics import license_metrics

        register_metrics(license_metrics)
