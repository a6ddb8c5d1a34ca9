"""Core admin: customers (one screen: identity, entitlement, subscription, checkouts, Stripe events,
audit), checkout attempts, the Stripe event inbox, audit and cron history. Nothing secret is shown."""
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from billing_console.admin.base import ReadOnlyAdmin
from billing_console.models import AuditEvent, CheckoutAttempt, CronRun, Customer, WebhookEvent
from billing_console.ops.logging import redact
from billing_console.selectors import Reason, customer_entitlement
from billing_console.services import actor_of, customer_rotate_manage_salt
from billing_console.stripe.gateway import StripeGatewayError
from billing_console.stripe.inbox import webhook_events_replay
from billing_console.stripe.subscriptions import customer_resync

def register_customer_inline(inline_class):
    """Apps add their section to the customer page (licences, deployments, dunning) without the core
    importing them: `register_customer_inline(LicenseInline)` in the app's admin.py."""
    if inline_class not in CustomerAdmin.inlines:
        CustomerAdmin.inlines = [*CustomerAdmin.inlines, inline_class]
    return inline_class


class CheckoutAttemptInline(admin.TabularInline):
    model = CheckoutAttempt
    fk_name = "customer"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("created_at", "plan", "status", "follow_up_status", "email_hint", "stripe_session_id", "completed_at")
    readonly_fields = fields
    ordering = ("-created_at",)
    verbose_name_plural = "Checkout attempts"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    inlines = [CheckoutAttemptInline]
    list_display = ("email", "name", "plan", "subscription_status", "access_state", "current_period_end", "created_at")
    list_filter = ("access_state", "subscription_status", "plan", "cohort")
    search_fields = ("email", "name", "stripe_customer__id", "subscription_id", "phone")
    readonly_fields = ("entitlement", "stripe_customer_id", "subscription_id", "subscription_status", "plan",
                       "price_id", "current_period_end", "cancel_at_period_end", "subscription_state_at",
                       "access_state", "access_state_changed_at", "created_at", "updated_at", "recent_stripe_events",
                       "recent_audit_events", "usage")
    fieldsets = (
        ("Identity", {"fields": ("email", "name", "phone", "cohort", "stripe_customer_id", "created_at",
                                 "updated_at")}),
        # Summarized by the cards at the top of the page (templates/admin/billing_console/customer/change_form.html).
        ("Entitlement", {"fields": ("entitlement", "access_state", "access_state_changed_at"), "classes": ("collapse",)}),
        ("Subscription (as Stripe last said)", {"classes": ("collapse",), "fields": (
            "subscription_id", "subscription_status", "plan", "price_id", "current_period_end",
            "cancel_at_period_end", "subscription_state_at")}),
        ("Usage this period", {"fields": ("usage",)}),
        ("Recent Stripe events", {"fields": ("recent_stripe_events",)}),
        ("Recent audit events", {"fields": ("recent_audit_events",)}),
    )
    list_select_related = ()
    show_full_result_count = False
    actions = ["resync_from_stripe", "revoke_manage_links"]
    change_form_template = "admin/billing_console/customer/change_form.html"

    @admin.display(description="Stripe customer")
    def stripe_customer_id(self, obj):
        return obj.stripe_customer_id or "-"

    @admin.display(description="May use the product now?")
    def entitlement(self, obj):
        return entitlement_in_words(customer_entitlement(obj))

    @admin.display(description="Usage and reporting")
    def usage(self, obj):
        from billing_console.admin.usage import customer_usage_html

        return customer_usage_html(obj)

    @admin.display(description="Stripe events")
    def recent_stripe_events(self, obj):
        rows = customer_recent_webhook_events(obj, limit=15)
        if not rows:
            return "No Stripe event names this customer yet."
        return format_html_join(
            "", '<div><a href="{}">{}</a> {} <b>{}</b> {}</div>',
            ((reverse("admin:billing_console_webhookevent_change", args=[e.pk]), e.stripe_id,
              e.stripe_created.strftime("%Y-%m-%d %H:%M:%S"), e.type, e.get_status_display()
              + (f" - {e.last_error[:120]}" if e.status == WebhookEvent.Status.FAILED else ""))
             for e in rows))

    @admin.display(description="Audit events")
    def recent_audit_events(self, obj):
        rows = list(obj.audit_events.order_by("-at")[:20])
        if not rows:
            return "Nothing recorded yet."
        return format_html_join("", "<div>{} {}:{} <b>{}</b> {}</div>", (
            (a.at.strftime("%Y-%m-%d %H:%M:%S"), a.actor_type, a.actor, a.action, a.target_type) for a in rows))

    def get_search_results(self, request, queryset, search_term):
        """Besides the fields above, whatever the global search finds (device ids, licence key prefixes,
        script names, in_/cs_ ids: billing_console.admin.search and the apps' providers)."""
        from billing_console.admin.search import matching_customer_ids

        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        ids = matching_customer_ids(search_term) if search_term else []
        if ids:
            found = found | queryset.filter(pk__in=ids)
        return found, may_have_duplicates

    def get_urls(self):
        urls = super().get_urls()
        extra = [
            path("<int:pk>/resync/", self.admin_site.admin_view(self.resync_view), name="billing_console_customer_resync"),
            path("<int:pk>/revoke-links/", self.admin_site.admin_view(self.revoke_links_view),
                 name="billing_console_customer_revoke_links"),
        ]
        return extra + urls

    def _one(self, request, pk):
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        return get_object_or_404(Customer, pk=pk)

    def resync_view(self, request, pk):
        customer = self._one(request, pk)
        self.resync_from_stripe(request, Customer.objects.filter(pk=customer.pk))
        return HttpResponseRedirect(reverse("admin:billing_console_customer_change", args=[customer.pk]))

    def revoke_links_view(self, request, pk):
        customer = self._one(request, pk)
        self.revoke_manage_links(request, Customer.objects.filter(pk=customer.pk))
        return HttpResponseRedirect(reverse("admin:billing_console_customer_change", args=[customer.pk]))

    @admin.action(description="Resync from Stripe", permissions=["change"])
    def resync_from_stripe(self, request, queryset):
        actor_type, actor = actor_of(request.user)
        done, failed = 0, []
        for customer in queryset:
            try:
                customer_resync(customer=customer, actor_type=actor_type, actor=actor)
                done += 1
            except StripeGatewayError as exc:
                failed.append(f"{customer.email}: {exc.message}")
        if done:
            self.message_user(request, f"{done} customer(s) resynced from Stripe.", messages.SUCCESS)
        for line in failed:
            self.message_user(request, f"Not resynced - {line}", messages.ERROR)

    @admin.action(description="Revoke manage links", permissions=["change"])
    def revoke_manage_links(self, request, queryset):
        actor_type, actor = actor_of(request.user)
        n = 0
        for customer in queryset:
            customer_rotate_manage_salt(customer=customer, actor_type=actor_type, actor=actor)
            n += 1
        self.message_user(request, f"Manage links revoked for {n} customer(s); earlier links no longer open.")


def entitlement_in_words(ent) -> str:
    until = ent.current_period_end.strftime("%Y-%m-%d %H:%M UTC") if ent.current_period_end else "-"
    grace = ent.grace_ends_at.strftime("%Y-%m-%d %H:%M UTC") if ent.grace_ends_at else "-"
    words = {
        Reason.VALID: f"Yes - subscription active, paid until {until}.",
        Reason.PAST_DUE: f"Yes, for now - last payment failed; the customer is inside the grace days (paid until {until}).",
        Reason.PAST_DUE_SOFT_LOCK: "Yes, but soft locked - payment is overdue past the grace days; the customer is told to pay.",
        Reason.HARD_LOCKED: "No - hard locked for non-payment.",
        Reason.CANCELED: "No - the subscription is canceled.",
        Reason.EXPIRED: f"No - the paid period and offline grace ended ({grace}) without a renewal we know of.",
        Reason.INCOMPLETE: "No - the first payment was never completed.",
        Reason.NO_SUBSCRIPTION: "No - there is no subscription.",
    }
    return f"{words.get(ent.reason, ent.reason)} [{ent.reason}]"


def customer_recent_webhook_events(customer: Customer, *, limit: int = 15) -> list[WebhookEvent]:
    """Events whose object is this customer, their subscription, one of their checkout sessions or invoices."""
    ids = [i for i in (customer.stripe_customer_id, customer.subscription_id) if i]
    ids += [i for i in customer.checkout_attempts.exclude(stripe_session_id=None)
            .values_list("stripe_session_id", flat=True)[:20]]
    ids += list(customer.invoices.order_by("-stripe_created").values_list("stripe_id", flat=True)[:20])
    if not ids:
        return []
    return list(WebhookEvent.objects.filter(object_id__in=ids).defer("payload").order_by("-stripe_created")[:limit])


@admin.register(CheckoutAttempt)
class CheckoutAttemptAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "email_hint", "plan", "status", "follow_up_status", "customer", "completed_at")
    list_filter = ("status", "follow_up_status", "plan")
    search_fields = ("email_hint", "stripe_session_id", "token", "customer__email")
    list_select_related = ("customer",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ("id", "status", "plan", "price_id", "device_id", "email_hint", "customer", "stripe_session_id",
              "token", "follow_up_status", "follow_up_sent_at", "created_at", "completed_at")
    readonly_fields = fields


SECRET_KEYS = {"client_secret", "secret", "api_key", "password", "token"}


def redacted_payload(value):
    """A Stripe payload for display: secrets in it (e.g. a checkout session's client_secret) masked."""
    if isinstance(value, dict):
        return {k: ("[hidden]" if k in SECRET_KEYS and value[k] else redacted_payload(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted_payload(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("stripe_id", "type", "status", "attempts", "deliveries", "stripe_created", "received_at",
                    "error_short")
    list_filter = ("status", "type")
    search_fields = ("=stripe_id", "=object_id")
    date_hierarchy = "stripe_created"
    show_full_result_count = False
    actions = ["replay"]
    fields = ("stripe_id", "type", "status", "object_id", "livemode", "api_version", "stripe_created", "received_at",
              "processed_at", "attempts", "deliveries", "next_attempt_at", "last_error", "payload_pretty")
    readonly_fields = fields

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        # The changelist never needs the (large) payload.
        return qs.defer("payload") if request.resolver_match and request.resolver_match.url_name.endswith("changelist") else qs

    @admin.display(description="Error")
    def error_short(self, obj):
        return (obj.last_error[:100] + ("..." if len(obj.last_error) > 100 else "")) if obj.last_error else ""

    @admin.display(description="Payload")
    def payload_pretty(self, obj):
        return format_html("<pre style='max-height: 40em; overflow: auto'>{}</pre>",
                           json.dumps(redacted_payload(obj.payload), indent=2, sort_keys=True))

    @admin.action(description="Replay (process again through the receivers)", permissions=["replay"])
    def replay(self, request, queryset):
        actor_type, actor = actor_of(request.user)
        counts = webhook_events_replay(events=list(queryset.defer("payload")), actor_type=actor_type, actor=actor)
        level = messages.WARNING if counts["failed"] else messages.SUCCESS
        self.message_user(request, f"{counts['processed']} event(s) processed, {counts['failed']} failed again, "
                                   f"{counts['skipped']} skipped.", level)

    def has_replay_permission(self, request):
        return request.user.has_perm("billing_console.change_webhookevent") or request.user.is_superuser


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
