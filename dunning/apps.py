from django.apps import AppConfig


class DunningConfig(AppConfig):
    name = "dunning"
    verbose_name = "Dunning"

    def ready(self):
        from billing_console.ops.summary import register_ops_section
        from dunning import webhooks  # noqa: F401  registers the Stripe event receivers
        from dunning.selectors import dunning_ops_section

        register_ops_section("dunning", dunning_ops_section)

        # Checkout asks for a phone, and the manage page offers WhatsApp reminders, only while a step uses WhatsApp.
        from billing_console.phones import register_whatsapp_in_use
        from dunning.selectors import whatsapp_steps_exist

        register_whatsapp_in_use(whatsapp_steps_exist)

        # Support console (billing_console.admin.dashboard / .search): cases and locks on the front page, and
        # failed invoice ids in the global search.
        from billing_console.admin.dashboard import register_dashboard_section
        from billing_console.admin.search import register_search_provider
        from dunning import console

        register_dashboard_section(console.dashboard_section)
        register_search_provider(console.search_hits)

        # The analytics page (billing_console.analytics): this app's charts.
        from billing_console.analytics.registry import register_analytics_section, register_monthly_figures
        from dunning import analytics

        register_monthly_figures(analytics.dunning_recovery_figures)
        register_analytics_section(analytics.analytics_charts)

        # /metrics (billing_console.ops.metrics): this app's families, computed at scrape time.
        from billing_console.ops.metrics import register_metrics
        from dunning.metrics import dunning_metrics

        register_metrics(dunning_metrics)

        # alert_check (billing_console.ops.alerts): this app's problems.
        from billing_console.ops.alerts import register_alert_provider
        from dunning.alerts import dunning_failure_problems, whatsapp_problems

        register_alert_provider(dunning_failure_problems)
        register_alert_provider(whatsapp_problems)
