"""Core admin: customers (one screen: identity, entitlement, subscription, checkouts, Stripe events,
audit), checkout attempts, the Stripe event inbox, audit and cron history. Nothing secret is shown."""
import json
from datetime import datetime, timezone as dt_timezone

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from billing_console.admin.base import ReadOnlyAdmin, counted, run_for_each
from billing_console.errors import ServiceError
from billing_console.manage_links import manage_link_delivery_request
from billing_console.models import Alert, AuditEvent, CheckoutAttempt, CronRun, Customer, ManageLinkDelivery, WebhookEvent
from billing_console.invoicing.services import money_format
from billing_console.ops.logging import redact
from billing_console.phones import customer_change_phone
from billing_console.selectors import Reason, customer_entitlement
from billing_console.services import actor_of, customer_change_email, customer_rotate_manage_salt
from billing_console.wording.discount import discount_words
from billing_console.stripe.inbox import webhook_events_replay
from billing_console.stripe.mirror import webhook_events_mirror_again
from billing_console.stripe.subscriptions import customer_resync

def customer_payments_html(customer: Customer):
    """Disputes (the console's record), then dj-stripe's mirror of payment methods, charges and refunds.
    dj-stripe 2.11 keeps most fields only in the Stripe object it stores (`stripe_data`), read here."""
    from djstripe.models import Charge, PaymentMethod, Refund

    parts = []
    disputes = list(customer.disputes.all()[:10])
    parts.append(format_html("<div><b>Disputes</b>: {}</div>", "none" if not disputes else ""))
    parts += [format_html("<div>{} {} {} {} {}{}</div>", d.opened_at.strftime("%Y-%m-%d"), d.stripe_id,
                          money_format(d.amount, d.currency or "usd"), d.reason or "-",
                          d.get_outcome_display() if d.outcome else f"open ({d.status})",
                          f" - evidence due {d.evidence_due_by:%Y-%m-%d}" if d.evidence_due_by and not d.outcome else "")
              for d in disputes]
    cus = customer.stripe_customer_id or ""
    if not cus:
        return format_html_join("", "{}", ((p,) for p in parts))
    methods = [m.stripe_data or {} for m in PaymentMethod.objects.filter(customer__id=cus).order_by("-created")[:5]]
    charges = [c.stripe_data or {} for c in Charge.objects.filter(customer__id=cus).order_by("-created")[:10]]
    refunds = [r.stripe_data or {} for r in Refund.objects.filter(charge__customer__id=cus).order_by("-created")[:10]]

    def card(pm: dict) -> str:
        details = pm.get("card") or {}
        return f"{details.get('brand') or pm.get('type') or 'method'} ...{details.get('last4') or ''}"

    def when(obj: dict) -> str:
        return datetime.fromtimestamp(int(obj.get("created") or 0), tz=dt_timezone.utc).strftime("%Y-%m-%d")

    parts.append(format_html("<div><b>Payment methods</b>: {}</div>", ", ".join(map(card, methods)) or "none mirrored"))
    parts.append(format_html("<div><b>Charges</b>: {}</div>", "none mirrored" if not charges else ""))
    parts += [format_html("<div>{} {} {} {}{}{}</div>", when(c), c.get("id"),
                          money_format(int(c.get("amount") or 0), c.get("currency") or "usd"), c.get("status") or "",
                          f", refunded {money_format(int(c['amount_refunded']), c.get('currency') or 'usd')}"
                          if c.get("amount_refunded") else "", ", disputed" if c.get("disputed") else "")
              for c in charges]
    parts.append(format_html("<div><b>Refunds</b>: {}</div>", "none mirrored" if not refunds else ""))
    parts += [format_html("<div>{} {} {} {} {}</div>", when(r), r.get("id"),
                          money_format(int(r.get("amount") or 0), r.get("currency") or "usd"), r.get("status") or "",
                          r.get("reason") or "") for r in refunds]
    return format_html_join("", "{}", ((p,) for p in parts))


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


class ChangeEmailForm(forms.Form):
    new_email = forms.EmailField(label="New email", max_length=254)


class ManageLinkDeliveryInline(admin.TabularInline):
    """Manage-link emails: whether each went out, after how many tries, and the last error."""
    model = ManageLinkDelivery
    extra = 0
    can_delete = False
    fields = ("created_at", "reason", "requested_by", "status", "attempts", "last_error", "next_attempt_at", "sent_at")
    readonly_fields = fields
    ordering = ("-created_at",)
    verbose_name_plural = "Manage link emails"

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-created_at")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    inlines = [CheckoutAttemptInline, ManageLinkDeliveryInline]
    list_display = ("email", "name", "plan", "subscription_status", "access_state", "current_period_end", "created_at")
    list_filter = ("access_state", "subscription_status", "plan", "cohort")
    search_fields = ("email", "name", "stripe_customer__id", "subscription_id", "phone")
    # The email is where /recover sends manage links: it changes only through "Change email" (customer_change_email).
    readonly_fields = ("email", "entitlement", "stripe_customer_id", "subscription_id", "subscription_status", "plan",
                       "price_id", "current_period_end", "cancel_at_period_end", "subscription_state_at",
                       "access_state", "access_state_changed_at", "created_at", "updated_at", "recent_stripe_events",
                       "recent_audit_events",
                       # Changed only through customer_change_phone ("Change phone"), which audits old and new.
                       "phone", "phone_invalid", "phone_consent_at", "trial_end", "collection_paused", "quantity",
                       "discount_shown", "dispute_open", "payments_mirrored", "usage")
    fieldsets = (
        ("Identity", {"fields": ("email", "name", "phone", "phone_invalid", "phone_consent_at", "cohort", "stripe_customer_id", "created_at",
                                 "updated_at")}),
        # Summarized by the cards at the top of the page (templates/admin/billing_console/customer/change_form.html).
        ("Entitlement", {"fields": ("entitlement", "access_state", "access_state_changed_at"), "classes": ("collapse",)}),
        ("Subscription (as Stripe last said)", {"classes": ("collapse",), "fields": (
            "subscription_id", "subscription_status", "plan", "price_id", "current_period_end",
            "cancel_at_period_end", "subscription_state_at", "trial_end", "collection_paused", "quantity",
            "discount_shown")}),
        ("Payments, refunds and disputes", {"fields": ("dispute_open", "payments_mirrored")}),
        ("Usage this period", {"fields": ("usage",)}),
        ("Recent Stripe events", {"fields": ("recent_stripe_events",)}),
        ("Recent audit events", {"fields": ("recent_audit_events",)}),
    )
    list_select_related = ()
    show_full_result_count = False
    actions = ["resync_from_stripe", "revoke_manage_links", "email_manage_link"]
    change_form_template = "admin/billing_console/customer/change_form.html"

    @admin.display(description="Stripe customer")
    def stripe_customer_id(self, obj):
        return obj.stripe_customer_id or "-"

    @admin.display(description="Discount")
    def discount_shown(self, obj):
        """The customer's words (wording.discount), then what support looks up in Stripe."""
        d = obj.discount or {}
        if not d:
            return "-"
        owner = f"subscription {d['subscription']}" if d.get("subscription") else "the customer's own"
        ids = ", ".join(x for x in (f"coupon {d['coupon']}" if d.get("coupon") else "", d.get("discount") or "",
                                    owner) if x)
        return f"{discount_words(d) or 'Coupon details not known yet'} ({ids})"

    @admin.display(description="From Stripe")
    def payments_mirrored(self, obj):
        """Disputes (the console's record), then dj-stripe's mirror of payment methods, charges and refunds:
        four queries whatever the customer has."""
        return customer_payments_html(obj)

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

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if obj is not None else tuple(f for f in fields if f != "email")  # a new customer needs one

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
            path("<int:pk>/change-email/", self.admin_site.admin_view(self.change_email_view),
                 name="billing_console_customer_change_email"),
            path("<int:pk>/email-link/", self.admin_site.admin_view(self.email_link_view),
                 name="billing_console_customer_email_link"),
            path("<int:pk>/phone/", self.admin_site.admin_view(self.phone_view), name="billing_console_customer_phone"),
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

    def change_email_view(self, request, pk):
        """A small form that calls customer_change_email (audited, links revoked, old address told)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=pk)
        form = ChangeEmailForm(request.POST or None)
        status = 200
        if request.method == "POST":
            if form.is_valid():
                actor_type, actor = actor_of(request.user)
                try:
                    customer_change_email(customer=customer, new_email=form.cleaned_data["new_email"],
                                          actor_type=actor_type, actor=actor)
                except ServiceError as exc:
                    form.add_error("new_email", exc.fields.get("new_email", exc.message))
                else:
                    self.message_user(request, "Email changed. Earlier manage links no longer open, and the old "
                                               "address was told.", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:billing_console_customer_change", args=[customer.pk]))
            status = 400
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "original": customer,
                   "form": form, "title": f"Change the email of {customer.email}"}
        return TemplateResponse(request, "admin/billing_console/customer/change_email.html", context, status=status)

    def email_link_view(self, request, pk):
        customer = self._one(request, pk)
        self.email_manage_link(request, Customer.objects.filter(pk=customer.pk))
        return HttpResponseRedirect(reverse("admin:billing_console_customer_change", args=[customer.pk]))

    @admin.action(description="Email a fresh manage link", permissions=["change"])
    def email_manage_link(self, request, queryset):
        run_for_each(self, request, queryset, lambda customer, actor_type, actor: manage_link_delivery_request(
            customer=customer, reason="support", actor_type=actor_type, actor=actor), noun=("customer", "customers"),
            done="will get a fresh manage link; the customer page shows whether it went out")

    def phone_view(self, request, pk):
        """Support's edit of the phone: through customer_change_phone (normalised, audited with old and new)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=pk)
        form = SupportPhoneForm(request.POST or None, initial={"phone": customer.phone or customer.phone_invalid})
        if request.method == "POST" and form.is_valid():
            actor_type, actor = actor_of(request.user)
            try:
                customer = customer_change_phone(customer=customer, phone=form.cleaned_data["phone"],
                                                 reason=form.cleaned_data["reason"], actor_type=actor_type, actor=actor)
            except ServiceError as exc:
                for field, error in (exc.fields or {None: exc.message}).items():
                    form.add_error(field if field in form.fields else None, error)
            else:
                self.message_user(request, f"Phone set to {customer.phone or '(none)'}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:billing_console_customer_change", args=[customer.pk]))
        context = {**self.admin_site.each_context(request), "title": f"Change phone of {customer.email}",
                   "form": form, "customer": customer, "opts": self.model._meta}
        return TemplateResponse(request, "admin/billing_console/customer/phone_form.html", context,
                                status=400 if form.errors else 200)

    @admin.action(description="Resync from Stripe", permissions=["change"])
    def resync_from_stripe(self, request, queryset):
        run_for_each(self, request, queryset, lambda customer, actor_type, actor: customer_resync(
            customer=customer, actor_type=actor_type, actor=actor), noun=("customer", "customers"),
            done="resynced from Stripe", label=lambda customer: f"not resynced - {customer.email}")

    @admin.action(description="Revoke manage links", permissions=["change"])
    def revoke_manage_links(self, request, queryset):
        run_for_each(self, request, queryset, lambda customer, actor_type, actor: customer_rotate_manage_salt(
            customer=customer, actor_type=actor_type, actor=actor), noun=("customer", "customers"),
            done="had their manage links revoked; earlier links no longer open")


class SupportPhoneForm(forms.Form):
    phone = forms.CharField(label="Phone (with country code; empty removes it)", max_length=64, required=False)
    reason = forms.CharField(label="Reason (kept in the audit log)", max_length=255)


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
        Reason.UNPAID: "No - Stripe's retries ran out; the subscription is unpaid until an invoice is paid.",
        Reason.PAUSED: ("Yes" if ent.entitled else "No") + " - the subscription is paused (PAUSED_SUBSCRIPTION_ENTITLED).",
        Reason.DISPUTED: "No - a payment is disputed and DISPUTE_LOCKS_ACCESS is on.",
    }
    return words.get(ent.reason, "Unknown - " + ent.reason.replace("_", " ").lower() + ".")


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
                    "mirror", "error_short")
    list_filter = ("status", "mirror", "type")
    search_fields = ("=stripe_id", "=object_id")
    date_hierarchy = "stripe_created"
    show_full_result_count = False
    actions = ["replay", "mirror_again"]
    fields = ("stripe_id", "type", "status", "object_id", "livemode", "api_version", "stripe_created", "received_at",
              "processed_at", "attempts", "deliveries", "next_attempt_at", "last_error", "mirror", "mirrored_at",
              "mirror_error", "payload_pretty")
    readonly_fields = fields

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        # The changelist never needs the (large) payload.
        return qs.defer("payload") if request.resolver_match and request.resolver_match.url_name.endswith("changelist") else qs

    @admin.display(description="Error")
    def error_short(self, obj):
        error = obj.last_error or obj.mirror_error
        return (error[:100] + ("..." if len(error) > 100 else "")) if error else ""

    @admin.display(description="Payload")
    def payload_pretty(self, obj):
        return format_html("<pre style='max-height: 40em; overflow: auto'>{}</pre>",
                           json.dumps(redacted_payload(obj.payload), indent=2, sort_keys=True))

    @admin.action(description="Replay (process again through the receivers)", permissions=["replay"])
    def replay(self, request, queryset):
        actor_type, actor = actor_of(request.user)
        counts = webhook_events_replay(events=list(queryset.defer("payload")), actor_type=actor_type, actor=actor)
        level = messages.WARNING if counts["failed"] else messages.SUCCESS
        self.message_user(request, f"{counted(counts['processed'], 'event')} processed, {counts['ignored']} ignored (no receiver), "
                                   f"{counts['failed']} failed again, {counts['skipped']} skipped.", level)

    @admin.action(description="Mirror into dj-stripe again", permissions=["replay"])
    def mirror_again(self, request, queryset):
        # One task for the whole selection: the mirror applies events in created order.
        n = webhook_events_mirror_again(events=list(queryset.only("pk")))
        self.message_user(request, f"{counted(n, 'event')} queued for the dj-stripe mirror.", messages.SUCCESS)

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


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("key", "title", "opened_at", "last_seen_at", "resolved_at", "runbook")
    list_filter = (("resolved_at", admin.EmptyFieldListFilter), "runbook")
    search_fields = ("key", "title")
    date_hierarchy = "opened_at"
