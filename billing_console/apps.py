from django.apps import AppConfig


class BillingConsoleConfig(AppConfig):
    name = "billing_console"
    verbose_name = "Billing console"

    def ready(self):
        from django.db.models.signals import post_migrate

        from billing_console.ops import checks  # noqa: F401  registers the system checks
        from billing_console.stripe import webhooks  # noqa: F401  registers the core's Stripe receivers (first)
        from billing_console.invoicing import webhooks as invoicing_webhooks  # noqa: F401  registers the invoice.* receivers
        from billing_console.ops.logging import connect_task_ids
        from billing_console.ops.support import support_group_on_migrate

        from billing_console.invoicing.usage_selectors import usage_ops_section
        from billing_console.ops.summary import register_ops_section

        register_ops_section("usage", usage_ops_section)
        connect_task_ids()
        post_migrate.connect(support_group_on_migrate, sender=self, dispatch_uid="billing_console.support_group")
