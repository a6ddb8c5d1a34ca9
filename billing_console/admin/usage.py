"""Usage in the support console: the reports sent (or not) to Stripe's meters, with a retry for failed
ones, and the usage section of the customer page."""
from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing_console.wording import counted
from billing_console.admin.base import run_for_each
from billing_console.admin.base import ReadOnlyAdmin
from billing_console.invoicing.usage import usage_report_retry
from billing_console.invoicing.usage_selectors import customer_usage_summary
from billing_console.invoicing.services import money_format
from billing_console.models import UsageReport


@admin.register(UsageReport)
class UsageReportAdmin(ReadOnlyAdmin):
    list_display = ("id", "customer", "meter", "quantity", "event_count", "event_timestamp", "state", "attempts",
                    "error_code", "sent_at")
    list_filter = ("state", "meter", "error_code")
    search_fields = ("customer__email", "customer__stripe_customer__id", "identifier")
    list_select_related = ("customer",)
    show_full_result_count = False
    actions = ["retry"]
    readonly_fields = ("customer", "meter", "window_start", "event_timestamp", "quantity", "event_count",
                       "identifier", "state", "attempts", "next_attempt_at", "error_code", "error", "claimed_at",
                       "sent_at")

    def has_retry_permission(self, request):
        return request.user.has_perm("billing_console.change_usagereport") or request.user.is_superuser

    @admin.action(description="Send failed reports again (same identifier: Stripe counts each once)",
                  permissions=["retry"])
    def retry(self, request, queryset):
        run_for_each(self, request, queryset.filter(state=UsageReport.State.FAILED),
                     lambda report, actor_type, actor: usage_report_retry(report=report, actor_type=actor_type,
                                                                          actor=actor),
                     noun=("failed report", "failed reports"), done="queued for the next report_usage run")


def customer_usage_html(customer):
    """The customer page's usage section: this period per meter, the estimate, the reporting state.
    No query when usage billing is off; three when it is on, whatever the number of events."""
    if not settings.USAGE_METERS:
        return "Usage billing is off (USAGE_METERS is empty)."
    summary = customer_usage_summary(customer)
    reports_url = reverse("admin:billing_console_usagereport_changelist") + f"?customer__id__exact={customer.pk}"
    rows = []
    for m in summary["meters"]:
        estimate = money_format(m["estimate"], m["currency"]) if m["estimate"] is not None else "no metered price"
        state = f"{counted(m['unreported_events'], 'event')} not yet reported, {counted(m['reports_pending'], 'report')} waiting"
        if m["reports_failed"]:
            state += f", {m['reports_failed']} FAILED"
        last = m["last_sent_at"].strftime("%Y-%m-%d %H:%M") if m["last_sent_at"] else "never"
        rows.append((m["name"], m["quantity_text"],
                     m["events"], estimate, state, last))
    return format_html(
        "<div>Period {} to {}</div>{}<div><a href=\"{}\">All usage reports</a></div>",
        summary["period_start"].strftime("%Y-%m-%d"), summary["period_end"].strftime("%Y-%m-%d"),
        format_html_join("", "<div><b>{}</b>: {} ({} events); estimate {}; {}; last sent {}</div>", rows),
        reports_url)
