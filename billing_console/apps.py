from django.apps import AppConfig


class BillingConsoleConfig(AppConfig):
    name = "billing_console"
    verbose_name = "Billing console"

    def ready(self):
        from billing_console import checks  # noqa: F401  registers the system checks
        from billing_console import webhooks  # noqa: F401  registers the core's Stripe receivers (first)
        from billing_console import invoicing_webhooks  # noqa: F401  registers the invoice.* receivers
        from billing_console.logging import connect_task_ids

        connect_task_ids()
