"""Admin for invoices, reconciliation and the legacy ledger. Support reads here, resends invoices,
runs a reconciliation, resolves drift and imports ledger files; every action goes through a service."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from billing_console.admin.base import ReadOnlyAdmin, ReadOnlyInline, counted, run_for_each
from billing_console.admin.customers import register_customer_inline
from billing_console.invoicing.ledger import LEDGER_MAX_BYTES, LedgerImportError, ledger_import
from billing_console.invoicing.cohorts import cohort_gate
from billing_console.invoicing.reconciliation import drift_item_explain, drift_item_resync
from billing_console.invoicing.services import invoice_resend, invoice_resync, money_format
from billing_console.models import DriftItem, Invoice, InvoiceEvent, LedgerEntry, ReconciliationRun
from billing_console.services import actor_of


# --- Invoices ---------------------------------------------------------------------------------
class InvoiceEventInline(ReadOnlyInline):
    model = InvoiceEvent
    fields = ("at", "kind", "data")
    readonly_fields = fields
    show_change_link = False


class CustomerInvoiceInline(ReadOnlyInline):
    """Invoices on the customer page."""

    model = Invoice
    fields = ("number", "status", "total_display", "delivery_status", "emailed_at", "stripe_created")
    readonly_fields = fields
    ordering = ("-stripe_created",)
    verbose_name_plural = "Invoices"

    @admin.display(description="Total")
    def total_display(self, obj):
        return money_format(obj.total, obj.currency)


register_customer_inline(CustomerInvoiceInline)


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "customer", "status", "total_display", "delivery_status", "delivery_attempts",
                    "emailed_at", "stripe_created")
    list_filter = ("status", "delivery_status", "currency")
    search_fields = ("stripe_id", "number", "stripe_customer_id", "subscription_id", "customer__email")
    list_select_related = ("customer",)
    show_full_result_count = False
    date_hierarchy = "stripe_created"
    inlines = [InvoiceEventInline]
    actions = ["resend_invoice", "sync_from_stripe"]
    fieldsets = (
        (None, {"fields": ("stripe_id", "number", "customer", "stripe_customer_id", "subscription_id", "status",
                           "hosted_invoice_url", "stripe_created", "state_at")}),
        ("Amounts (minor units)", {"fields": ("total_display", "currency", "subtotal", "tax", "total", "amount_due", "amount_paid",
                                              "period_start", "period_end")}),
        ("Delivery", {"fields": ("delivery_status", "delivery_attempts", "delivery_error", "next_delivery_at",
                                 "emailed_at", "pdf_link")}),
    )
    readonly_fields = [f for fs in fieldsets for f in fs[1]["fields"]]

    @admin.display(description="Total", ordering="total")
    def total_display(self, obj):
        return money_format(obj.total, obj.currency)

    @admin.display(description="PDF")
    def pdf_link(self, obj):
        if not obj.pdf_path:
            return "-"
        return format_html('<a href="{}">Download {}</a>', reverse("admin:billing_console_invoice_pdf", args=[obj.pk]),
                           obj.pdf_path)

    def has_resend_permission(self, request):
        return request.user.has_perm("billing_console.change_invoice")

    @admin.action(description="Resend invoice (email it again, with the PDF)", permissions=["resend"])
    def resend_invoice(self, request, queryset):
        run_for_each(self, request, queryset, lambda invoice, actor_type, actor: invoice_resend(
            invoice=invoice, actor_type=actor_type, actor=actor), noun=("invoice", "invoices"),
            done="queued for resending", label=lambda invoice: invoice.number or invoice.stripe_id)

    @admin.action(description="Sync from Stripe (status, amounts; email it if finalized and never sent)",
                  permissions=["resend"])
    def sync_from_stripe(self, request, queryset):
        run_for_each(self, request, queryset, lambda invoice, actor_type, actor: invoice_resync(
            stripe_id=invoice.stripe_id, actor_type=actor_type, actor=actor), noun=("invoice", "invoices"),
            done="synced from Stripe", label=lambda invoice: invoice.number or invoice.stripe_id)

    def get_urls(self):
        return [path("<int:pk>/pdf/", self.admin_site.admin_view(self.pdf_view), name="billing_console_invoice_pdf"),
                *super().get_urls()]

    def pdf_view(self, request, pk):
        invoice = Invoice.objects.filter(pk=pk).first()
        if invoice is None or not invoice.pdf_path or not default_storage.exists(invoice.pdf_path):
            raise Http404("No PDF stored for this invoice.")
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        return FileResponse(default_storage.open(invoice.pdf_path, "rb"), content_type="application/pdf",
                            filename=f"{invoice.number or invoice.stripe_id}.pdf")


@admin.register(InvoiceEvent)
class InvoiceEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "invoice", "kind", "data")
    list_filter = ("kind",)
    search_fields = ("invoice__stripe_id", "invoice__number", "invoice__customer__email")
    list_select_related = ("invoice",)
    date_hierarchy = "at"
    show_full_result_count = False


# --- Reconciliation ---------------------------------------------------------------------------
CHECKED_LABELS = (("customers", "Customers"), ("invoices", "Invoices"), ("subscriptions", "Subscriptions"),
                  ("ledger_periods", "Ledger periods"))


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    change_list_template = "invoices/admin/reconciliationrun_change_list.html"
    list_display = ("pk", "started_at", "finished_at", "status", "drift_count", "items_link", "scope_words", "triggered_by")
    list_filter = ("status",)
    fields = readonly_fields = ("status", "started_at", "finished_at", "triggered_by", "scope_words", "checked_table",
                                "drift_count", "items_link", "error")

    @admin.display(description="Drift items")
    def items_link(self, obj):
        if not obj.drift_count:
            return "-"
        url = reverse("admin:billing_console_driftitem_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, counted(obj.drift_count, "item"))

    @admin.display(description="Scope")
    def scope_words(self, obj):
        scope = obj.scope or {}
        who = f"customer {scope['customer']}" if scope.get("customer") else "every customer"
        return who + (f", invoices since {scope['since']}" if scope.get("since") else "")

    @admin.display(description="Checked")
    def checked_table(self, obj):
        """What the run compared, as a table: counts per kind, then drift per kind and per cohort."""
        checked = obj.checked or {}
        rows = [(label, checked[key]) for key, label in CHECKED_LABELS if key in checked]
        rows += [(f"Drift: {kind.replace('_', ' ')}", n) for kind, n in sorted((checked.get("by_kind") or {}).items())]
        cohorts = checked.get("cohorts") or {}
        drift = checked.get("cohort_drift") or {}
        rows += [(f"Cohort {cohort}", f"{counted(n, 'invoice')}, {counted(drift.get(cohort, 0), 'drift item')}")
                 for cohort, n in sorted(cohorts.items())]
        if "full" in checked:
            rows.append(("Full run (counts for the cohort gate)", "yes" if checked["full"] else "no"))
        if not rows:
            return "-"
        return format_html('<table class="console-table"><tbody>{}</tbody></table>',
                           format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    def has_run_permission(self, request):
        return request.user.has_perm("billing_console.add_reconciliationrun")

    def get_urls(self):
        return [path("run/", self.admin_site.admin_view(require_POST(self.run_view)),
                     name="billing_console_reconciliationrun_run"), *super().get_urls()]

    def run_view(self, request):
        from django_q.tasks import async_task

        if not self.has_run_permission(request):
            raise PermissionDenied
        _, actor = actor_of(request.user)
        async_task("billing_console.invoicing.tasks.reconcile_on_demand", f"admin:{actor}")
        self.message_user(request, "Reconciliation started; its run appears here when it finishes.")
        return HttpResponseRedirect(reverse("admin:billing_console_reconciliationrun_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "cohort_gate": cohort_gate(),
                         "can_run": self.has_run_permission(request)}
        return super().changelist_view(request, extra_context=extra_context)


class ExplainForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=2000,
                           help_text="Why this difference is expected (kept with the item and in the audit log).")


@admin.register(DriftItem)
class DriftItemAdmin(ReadOnlyAdmin):
    list_display = ("run", "kind", "customer", "stripe_id", "expected", "actual", "delta", "currency", "resolution")
    list_filter = ("resolution", "kind", "run")
    search_fields = ("stripe_id", "customer__email", "note")
    list_select_related = ("customer", "run")
    show_full_result_count = False
    actions = ["resync_from_stripe", "mark_explained"]
    readonly_fields = ("run", "kind", "customer", "stripe_id", "expected", "actual", "delta", "currency",
                       "resolution", "note", "resolved_by", "resolved_at")

    def has_resolve_permission(self, request):
        return request.user.has_perm("billing_console.change_driftitem")

    @admin.action(description="Resync from Stripe (re-read the invoice and the customer)", permissions=["resolve"])
    def resync_from_stripe(self, request, queryset):
        run_for_each(self, request, queryset.filter(resolution=DriftItem.Resolution.OPEN).select_related("customer"),
                     lambda item, actor_type, actor: drift_item_resync(item=item, actor_type=actor_type, actor=actor),
                     noun=("drift item", "drift items"),
                     done="resynced from Stripe; the next reconciliation confirms the fix",
                     label=lambda item: f"{item.get_kind_display()} {item.stripe_id}")

    @admin.action(description="Mark explained (with a note)", permissions=["resolve"])
    def mark_explained(self, request, queryset):
        form = ExplainForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            open_items = queryset.filter(resolution=DriftItem.Resolution.OPEN)
            skipped = queryset.count() - open_items.count()
            run_for_each(self, request, open_items, lambda item, actor_type, actor: drift_item_explain(
                item=item, note=form.cleaned_data["note"], actor_type=actor_type, actor=actor),
                noun=("drift item", "drift items"), done="marked explained",
                label=lambda item: f"{item.get_kind_display()} {item.stripe_id}")
            if skipped:
                self.message_user(request, f"{counted(skipped, 'drift item')} already resolved, left as they were.")
            return None
        return TemplateResponse(request, "invoices/admin/drift_explain.html", {
            **self.admin_site.each_context(request), "title": "Mark drift items explained", "form": form,
            "items": queryset, "action": "mark_explained", "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        })


# --- Legacy ledger ----------------------------------------------------------------------------
class LedgerImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with the header account,period,total,currency; total in minor units.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > LEDGER_MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {LEDGER_MAX_BYTES // (1024 * 1024)} MB.")
        return upload


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    change_list_template = "invoices/admin/ledgerentry_change_list.html"
    list_display = ("account", "period", "total_display", "currency", "source", "imported_at")
    list_filter = ("currency", "period")
    search_fields = ("account", "source")
    show_full_result_count = False

    @admin.display(description="Total", ordering="total")
    def total_display(self, obj):
        return money_format(obj.total, obj.currency)

    def has_import_permission(self, request):
        return request.user.has_perm("billing_console.add_ledgerentry")

    def get_urls(self):
        return [path("import/", self.admin_site.admin_view(self.import_view), name="billing_console_ledgerentry_import"),
                *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "cohort_gate": cohort_gate(),
                         "can_import": self.has_import_permission(request)}
        return super().changelist_view(request, extra_context=extra_context)

    def import_view(self, request):
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = LedgerImportForm(request.POST, request.FILES) if request.method == "POST" else LedgerImportForm()
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            actor_type, actor = actor_of(request.user)
            try:
                result = ledger_import(content=upload.read(), source=upload.name, actor_type=actor_type, actor=actor)
            except LedgerImportError as exc:
                errors = exc.errors
            else:
                self.message_user(request, f"Imported {counted(result['rows'], 'row')} from {upload.name}: {result['created']} "
                                           f"created, {result['updated']} updated, {result['unchanged']} unchanged.")
                return HttpResponseRedirect(reverse("admin:billing_console_ledgerentry_changelist"))
        status = 400 if request.method == "POST" else 200
        return TemplateResponse(request, "invoices/admin/ledger_import.html", {
            **self.admin_site.each_context(request), "title": "Import legacy ledger", "form": form,
            "errors": errors, "opts": self.model._meta,
        }, status=status)


# --- Dashboard --------------------------------------------------------------------------------
def invoices_dashboard_section(request):
    """Invoice delivery on the support console's front page (three counts, two queries)."""
    from datetime import timedelta

    from django.db.models import Count, Q
    from django.utils import timezone

    from billing_console.admin.dashboard import BAD, IDLE, OK, WARN, Section, Stat, changelist_url

    counts = Invoice.objects.aggregate(
        failed=Count("pk", filter=Q(delivery_status=Invoice.Delivery.FAILED)),
        retrying=Count("pk", filter=Q(delivery_status__in=[Invoice.Delivery.PENDING, Invoice.Delivery.RENDERED], delivery_attempts__gt=0,
                                      emailed_at__isnull=True)))
    since = timezone.now() - timedelta(hours=24)
    emailed = InvoiceEvent.objects.filter(kind="email_sent", at__gte=since).count()
    return Section("Invoices", [
        Stat("Emailed, last 24 h", emailed, tone=OK if emailed else IDLE,
             url=changelist_url(request, "billing_console", "invoiceevent", kind="email_sent")),
        Stat("Retrying", counts["retrying"], tone=WARN if counts["retrying"] else OK,
             url=changelist_url(request, "billing_console", "invoice", delivery_attempts__gt=0,
                                delivery_status__in="pending,rendered")),
        Stat("Delivery failed", counts["failed"], tone=BAD if counts["failed"] else OK,
             url=changelist_url(request, "billing_console", "invoice", delivery_status__exact=Invoice.Delivery.FAILED)),
    ], order=65)


def _register_dashboard_section():
    from billing_console.admin.dashboard import register_dashboard_section

    register_dashboard_section(invoices_dashboard_section)


_register_dashboard_section()
