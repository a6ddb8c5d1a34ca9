from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "billing_console.analytics"
    label = "analytics"
    verbose_name = "Analytics"

    def ready(self):
        from billing_console.analytics import sections  # registers the core's charts
        from billing_console.admin.dashboard import register_dashboard_section

        register_dashboard_section(sections.dashboard_link)
