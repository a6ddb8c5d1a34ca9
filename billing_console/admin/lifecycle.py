"""Support's lists for the subscription lifecycle: subscriptions waiting to be linked to a customer, and
disputes."""
from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from billing_console.admin.base import ReadOnlyAdmin, run_for_each
from billing_console.invoicing.services import money_format
from billing_console.models import Dispute, UnlinkedSubscription
from billing_console.stripe.lifecycle import unlinked_subscription_link


class LinkByEmailForm(forms.Form):
    email = forms.EmailField(label="Customer email", help_text="An existing console customer, or a new one.")


@admin.register(UnlinkedSubscription)
class UnlinkedSubscriptionAdmin(ReadOnlyAdmin):
    """Subscriptions made outside Checkout whose Stripe customer has no email."""

    list_display = ("subscription_id", "stripe_customer_id", "status", "price_id", "created_at", "resolved",
                    "customer")
    list_filter = (("resolved_at", admin.EmptyFieldListFilter), "status")
    search_fields = ("=subscription_id", "=stripe_customer_id")
    list_select_related = ("customer",)
    show_full_result_count = False
    actions = ["link_by_email"]
    fields = ("subscription_id", "stripe_customer_id", "status", "price_id", "state_at", "customer", "resolved_at",
              "resolved_by", "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="Resolved", boolean=True)
    def resolved(self, obj):
        return obj.resolved_at is not None

    @admin.action(description="Link to a customer by email", permissions=["link"])
    def link_by_email(self, request, queryset):
        rows = list(queryset.filter(resolved_at=None))
        if not rows:
            self.message_user(request, "Every selected subscription is already linked.", messages.WARNING)
            return None
        form = LinkByEmailForm(request.POST if "email" in request.POST else None)
        if form.is_bound and form.is_valid():
            run_for_each(self, request, rows, lambda row, actor_type, actor: unlinked_subscription_link(
                unlinked=row, email=form.cleaned_data["email"], actor=actor or request.user.get_username()),
                noun=("subscription", "subscriptions"), done=f"linked to {form.cleaned_data['email']}",
                label=lambda row: row.subscription_id)
            return HttpResponseRedirect(request.get_full_path())
        return TemplateResponse(request, "admin/billing_console/unlinkedsubscription/link.html", {
            **self.admin_site.each_context(request), "title": "Link subscriptions to a customer", "rows": rows,
            "form": form, "opts": self.model._meta, "action": "link_by_email",
            "selected": [r.pk for r in rows]})

    def has_link_permission(self, request):
        return request.user.has_perm("billing_console.change_unlinkedsubscription")


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "customer", "amount_shown", "reason", "status", "outcome", "opened_at",
                    "evidence_due_by", "closed_at")
    list_filter = ("outcome", "status", "reason")
    search_fields = ("=stripe_id", "=charge_id", "customer__email")
    list_select_related = ("customer",)
    date_hierarchy = "opened_at"
    show_full_result_count = False

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, obj):
        return money_format(obj.amount, obj.currency or "usd")
