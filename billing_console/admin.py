"""Core admin: customers, audit and cron history. History is read-only; nothing secret is shown."""
from django.contrib import admin

from billing_console.models import AuditEvent, CronRun, Customer


class ReadOnlyAdmin(admin.ModelAdmin):
    """History rows: visible to support, never edited or deleted through the console."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def register_customer_inline(inline_class):
    """Apps add their section to the customer page (licences, deployments, dunning) without the core
    importing them: `register_customer_inline(LicenseInline)` in the app's admin.py."""
    if inline_class not in CustomerAdmin.inlines:
        CustomerAdmin.inlines = [*CustomerAdmin.inlines, inline_class]
    return inline_class


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    inlines = []
    list_display = ("email", "name", "plan", "subscription_status", "access_state", "current_period_end", "created_at")
    list_filter = ("access_state", "subscription_status", "plan", "cohort")
    search_fields = ("email", "name", "stripe_customer__id", "subscription_id", "phone")
    readonly_fields = ("stripe_customer", "subscription_id", "subscription_status", "plan", "price_id",
                       "current_period_end", "cancel_at_period_end", "subscription_state_at", "access_state",
                       "access_state_changed_at", "created_at", "updated_at")
    fields = ("email", "name", "phone", "cohort") + readonly_fields
    list_select_related = ()
    show_full_result_count = False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_type", "actor", "action", "target_type", "target_id", "customer")
    list_filter = ("actor_type", "action")
    search_fields = ("actor", "action", "target_id", "customer__email")
    list_select_related = ("customer",)
    date_hierarchy = "at"
    show_full_result_count = False


@admin.register(CronRun)
class CronRunAdmin(ReadOnlyAdmin):
    list_display = ("name", "started_at", "finished_at", "status", "counts", "error_summary")
    list_filter = ("status", "name")
    search_fields = ("name",)
    date_hierarchy = "started_at"
from billing_console import admin_invoicing  # noqa: E402,F401  invoices, reconciliation, ledger (issue 7)
