"""The checkout switch in the support console: one row, closed or opened by actions (audited), and the
rollback's "expire every open Checkout session"."""
from django.conf import settings
from django.contrib import admin

from billing_console.admin.base import ReadOnlyAdmin, run_for_each
from billing_console.models import CheckoutSwitch
from billing_console.stripe.switch import (checkout_close, checkout_is_open, checkout_open, checkout_sessions_expire_open,
                                           checkout_switch_get)


@admin.register(CheckoutSwitch)
class CheckoutSwitchAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "sales_now", "reason", "changed_by", "changed_at")
    list_display_links = None
    actions = ["close_checkout", "open_checkout", "expire_open_sessions"]

    @admin.display(description="Sales now")
    def sales_now(self, obj):
        if not settings.CHECKOUT_ENABLED:
            return "Paused (CHECKOUT_ENABLED is false in the settings)"
        return "Open" if checkout_is_open() else "Paused"

    def has_toggle_permission(self, request):
        return request.user.has_perm("billing_console.change_checkoutswitch")

    def changelist_view(self, request, extra_context=None):
        checkout_switch_get()  # the one row always exists to act on
        return super().changelist_view(request, extra_context=extra_context)

    @admin.action(description="Close checkout (pause sales)", permissions=["toggle"])
    def close_checkout(self, request, queryset):
        run_for_each(self, request, queryset, lambda row, actor_type, actor: checkout_close(
            reason="closed by support in the admin", actor_type=actor_type, actor=actor),
            noun=("switch", "switches"), done="closed: the pricing page says sales are paused")

    @admin.action(description="Open checkout (resume sales)", permissions=["toggle"])
    def open_checkout(self, request, queryset):
        run_for_each(self, request, queryset, lambda row, actor_type, actor: checkout_open(
            actor_type=actor_type, actor=actor, reason="opened by support in the admin"),
            noun=("switch", "switches"), done="opened", label=lambda row: "not opened")

    @admin.action(description="Expire every open Checkout session at Stripe (rollback step 1)", permissions=["toggle"])
    def expire_open_sessions(self, request, queryset):
        def expire(row, actor_type, actor):
            result = checkout_sessions_expire_open(actor_type=actor_type, actor=actor)
            if result["errors"]:
                self.message_user(request, "Not expired: " + "; ".join(result["errors"][:10]), level="warning")
            return result["expired"]

        run_for_each(self, request, queryset[:1], expire, noun=("Checkout session", "Checkout sessions"), done="expired")
