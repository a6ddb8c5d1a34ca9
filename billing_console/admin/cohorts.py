"""Migration cohorts in the support console: the cohorts (start, review flag) with their invoice-email
switch, each cohort's pre-cohort checklist page, and the per-account review sign-off (an action on the
customer list, shown on the customer page). Every change goes through a service and is audited."""
from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing_console.admin.base import ReadOnlyAdmin, ReadOnlyInline, run_for_each
from billing_console.admin.customers import CustomerAdmin, register_customer_inline
from billing_console.errors import ServiceError
from billing_console.invoicing.cohorts import (cohort_account_sign_off, cohort_checklist, cohort_gate, cohort_save,
                                               cohort_set_invoice_emails)
from billing_console.models import Cohort, CohortAccountReview
from billing_console.services import actor_of


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ("name", "started_at", "console_emails_invoices", "requires_account_review", "checklist_link")
    fields = ("name", "started_at", "requires_account_review", "note", "console_emails_invoices")
    readonly_fields = ("console_emails_invoices",)  # switched by the actions below (audited)
    actions = ["emails_on", "emails_off"]
    change_list_template = "invoices/admin/cohort_change_list.html"

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Pre-cohort checklist")
    def checklist_link(self, obj):
        return format_html('<a href="{}">Checklist</a>', reverse("admin:billing_console_cohort_checklist", args=[obj.pk]))

    def save_model(self, request, obj, form, change):
        actor_type, actor = actor_of(request.user)
        try:
            cohort_save(cohort=obj, changed=list(form.changed_data), actor_type=actor_type, actor=actor)
        except ServiceError as exc:  # the form's own validation catches these first; never a half-saved row
            raise PermissionDenied(exc.message) from None

    def has_switch_permission(self, request):
        return request.user.has_perm("billing_console.change_cohort")

    @admin.action(description="Console emails these cohorts' invoices", permissions=["switch"])
    def emails_on(self, request, queryset):
        run_for_each(self, request, queryset, lambda cohort, actor_type, actor: cohort_set_invoice_emails(
            cohort=cohort, enabled=True, actor_type=actor_type, actor=actor), noun=("cohort", "cohorts"),
            done="now have their invoices emailed by the console")

    @admin.action(description="Roll back: the legacy system emails these cohorts' invoices", permissions=["switch"])
    def emails_off(self, request, queryset):
        run_for_each(self, request, queryset, lambda cohort, actor_type, actor: cohort_set_invoice_emails(
            cohort=cohort, enabled=False, actor_type=actor_type, actor=actor), noun=("cohort", "cohorts"),
            done="sent back to the legacy system for invoice emails")

    def get_urls(self):
        return [path("<int:pk>/checklist/", self.admin_site.admin_view(self.checklist_view),
                     name="billing_console_cohort_checklist"), *super().get_urls()]

    def checklist_view(self, request, pk):
        if not self.has_view_permission(request):
            raise PermissionDenied
        cohort = get_object_or_404(Cohort, pk=pk)
        gate = next((row for row in cohort_gate() if row["cohort"] == cohort.name), None)
        return TemplateResponse(request, "invoices/admin/cohort_checklist.html", {
            **self.admin_site.each_context(request), "title": f"Pre-cohort checklist: {cohort.name}", "cohort": cohort,
            "items": cohort_checklist(cohort), "gate": gate, "opts": self.model._meta})

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "cohort_gate": cohort_gate()}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(CohortAccountReview)
class CohortAccountReviewAdmin(ReadOnlyAdmin):
    list_display = ("customer", "cohort", "signed_off_by", "signed_off_at", "note")
    list_filter = ("cohort",)
    search_fields = ("customer__email", "signed_off_by")
    list_select_related = ("customer",)


class CohortReviewInline(ReadOnlyInline):
    """The account's review sign-off on the customer page: who and when."""

    model = CohortAccountReview
    fields = ("cohort", "signed_off_by", "signed_off_at", "note")
    readonly_fields = fields
    show_change_link = False
    verbose_name = verbose_name_plural = "Cohort review sign-off"


register_customer_inline(CohortReviewInline)


@admin.action(description="Sign off the cohort review of these accounts", permissions=["change"])
def sign_off_cohort_review(modeladmin, request, queryset):
    run_for_each(modeladmin, request, queryset, lambda customer, actor_type, actor: cohort_account_sign_off(
        customer=customer, actor_type=actor_type, actor=actor), noun=("account", "accounts"),
        done="signed off for their cohort", label=lambda customer: customer.email)


if sign_off_cohort_review not in CustomerAdmin.actions:
    CustomerAdmin.actions = [*CustomerAdmin.actions, sign_off_cohort_review]
