from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self):
        from billing_console.health import register_cloud_health
        from deployments import webhooks  # noqa: F401  (registers the Stripe receivers)
        from deployments.selectors import cloud_health_section

        register_cloud_health(cloud_health_section)
