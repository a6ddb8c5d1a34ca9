"""Support's dunning console: policies (steps inline), cases (step logs inline), step logs, and the
dunning section of the customer page. Actions are thin: parse, call one service, report counts."""
from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.utils import timezone

from billing_console.admin.base import ReadOnlyInline, run_for_each
from billing_console.admin.customers import register_customer_inline
from billing_console.services import actor_of
from dunning import sending, services
from dunning.clock import dunning_now
from dunning.models import CustomerDunning, DunningCase, DunningPolicy, DunningStep, DunningStepLog
from dunning.selectors import dunning_cases_for_admin

LOG_FIELDS = ("step_code", "channel", "status", "reason", "detail", "attempts", "due_at", "last_attempt_at", "sent_at",
              "next_retry_at", "provider_message_id", "provider_response", "manual")


# --- Policies ---------------------------------------------------------------------------------
class DunningStepInline(admin.TabularInline):
    model = DunningStep
    extra = 0
    fields = ("code", "offset_days", "channel", "template")
    ordering = ("offset_days", "id")


@admin.register(DunningPolicy)
class DunningPolicyAdmin(admin.ModelAdmin):
    inlines = [DunningStepInline]
    list_display = ("name", "is_default", "grace_days", "hard_lock_days", "cancel_after_days", "updated_at")
    fields = ("name", "is_default", "grace_days", "hard_lock_days", "cancel_after_days")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        actor_type, actor = actor_of(request.user)
        services.audit_log(actor_type=actor_type, actor=actor, action="dunning.policy_saved", target=obj,
                           data={"changed": form.changed_data})

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.has_changed():
            actor_type, actor = actor_of(request.user)
            services.audit_log(actor_type=actor_type, actor=actor, action="dunning.policy_steps_saved",
                               target=form.instance, data={"steps": list(form.instance.steps.values_list("code", flat=True))})


class ServiceOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: viewable, never added, edited or deleted by hand. Change permission
    is what the actions (which call services) require."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


# --- Cases ------------------------------------------------------------------------------------
class DaysPastDueFilter(admin.SimpleListFilter):
    title = "days past due"
    parameter_name = "past_due"
    RANGES = {"0-3": (0, 3), "4-14": (4, 14), "15+": (15, None)}

    def lookups(self, request, model_admin):
        return [(key, f"{key} days") for key in self.RANGES]

    def queryset(self, request, queryset):
        if self.value() not in self.RANGES:
            return queryset
        low, high = self.RANGES[self.value()]
        now = timezone.now()
        queryset = queryset.filter(status__in=DunningCase.ACTIVE, opened_at__lte=now - timedelta(days=low))
        if high is not None:
            queryset = queryset.filter(opened_at__gt=now - timedelta(days=high + 1))
        return queryset


class DunningStepLogInline(ReadOnlyInline):
    model = DunningStepLog
    fields = readonly_fields = LOG_FIELDS


class DunningActionForm(helpers.ActionForm):
    step_code = forms.CharField(required=False, max_length=40, label="Step code",
                                help_text="For “send step now”, e.g. SOFT_D+3.")


@admin.register(DunningCase)
class DunningCaseAdmin(ServiceOnlyAdmin):
    inlines = [DunningStepLogInline]
    action_form = DunningActionForm
    list_display = ("invoice_id", "customer", "status", "payment_problem", "opened_at", "days_past_due",
                    "next_step_at", "steps_sent", "steps_failed", "policy", "customer_access")
    list_filter = ("status", DaysPastDueFilter, "policy")
    search_fields = ("invoice_id", "subscription_id", "stripe_customer_id", "customer__email")
    date_hierarchy = "opened_at"
    show_full_result_count = False
    actions = ["send_step_now", "close_case", "sync_from_stripe", "enforce_policies_now"]

    def get_queryset(self, request):
        return dunning_cases_for_admin()

    @admin.display(description="problem")
    def payment_problem(self, obj):
        return "Action required (3-D Secure)" if obj.action_required_at else "Declined"

    @admin.display(description="days past due")
    def days_past_due(self, obj):
        return obj.days_past_due(dunning_now())

    @admin.display(description="sent", ordering="steps_sent")
    def steps_sent(self, obj):
        return obj.steps_sent

    @admin.display(description="failed", ordering="steps_failed")
    def steps_failed(self, obj):
        return obj.steps_failed

    @admin.display(description="access")
    def customer_access(self, obj):
        return obj.customer.get_access_state_display()

    def _run(self, request, queryset, verb, call):
        run_for_each(self, request, queryset, call, noun=("case", "cases"), done=verb,
                     label=lambda case: case.invoice_id)

    @admin.action(description="Send step now (give the step code below)", permissions=["change"])
    def send_step_now(self, request, queryset):
        code = (request.POST.get("step_code") or "").strip()
        if not code:
            self.message_user(request, "Give the step code to send (e.g. SOFT_D+3).", messages.ERROR)
            return

        def send(case, actor_type, actor):
            row = sending.dunning_step_send_now(case=case, step_code=code, actor_type=actor_type, actor=actor)
            if row.status != DunningStepLog.Status.SENT:
                raise services.DunningError(row.reason or row.status,
                                            f"{row.step_code} {row.status}: {row.reason} {row.detail}".strip())

        self._run(request, queryset, f"sent {code.upper()}", send)

    @admin.action(description="Close case (stop reminders, lift the lock)", permissions=["change"])
    def close_case(self, request, queryset):
        self._run(request, queryset.filter(status__in=DunningCase.ACTIVE), "closed", lambda case, actor_type, actor:
                  services.dunning_case_close(case=case, status=DunningCase.Status.CANCELED, reason="closed_by_support",
                                              actor_type=actor_type, actor=actor))

    @admin.action(description="Sync subscription and invoice from Stripe (closes the case if paid)",
                  permissions=["change"])
    def sync_from_stripe(self, request, queryset):
        self._run(request, queryset, "synced from Stripe", lambda case, actor_type, actor:
                  services.dunning_case_sync_from_stripe(case=case, actor_type=actor_type, actor=actor))

    @admin.action(description="Enforce access policies now (all customers)", permissions=["change"])
    def enforce_policies_now(self, request, queryset):
        actor_type, actor = actor_of(request.user)
        counts = services.dunning_enforce_access_policies(actor_type=actor_type, actor=actor)
        self.message_user(request, "Policies enforced: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


# --- Step logs ------------------------------------------------------------------------------
@admin.register(DunningStepLog)
class DunningStepLogAdmin(ServiceOnlyAdmin):
    list_display = ("step_code", "case", "channel", "status", "reason", "attempts", "due_at", "sent_at", "next_retry_at")
    list_filter = ("status", "channel", "reason", "step_code")
    search_fields = ("case__invoice_id", "case__subscription_id", "case__customer__email", "provider_message_id")
    list_select_related = ("case",)
    fields = ("case",) + LOG_FIELDS + ("created_at", "updated_at")
    show_full_result_count = False
    actions = ["retry_step"]

    @admin.action(description="Retry failed step now", permissions=["change"])
    def retry_step(self, request, queryset):
        def retry(row, actor_type, actor):
            row = sending.dunning_step_retry(step_log=row, actor_type=actor_type, actor=actor)
            if row.status != DunningStepLog.Status.SENT:
                raise services.DunningError(row.reason or row.status,
                                            f"{row.step_code} {row.status} ({row.reason}) {row.detail}".strip())

        run_for_each(self, request, queryset, retry, noun=("step", "steps"), done="sent",
                     label=lambda row: f"#{row.pk}")


# --- The customer page ------------------------------------------------------------------------
class CustomerDunningInline(admin.StackedInline):
    """Policy assignment / exclusion, saved through the audited service."""

    model = CustomerDunning
    fields = ("policy", "excluded", "note")
    max_num = 1
    can_delete = False
    verbose_name = verbose_name_plural = "dunning settings"

    def get_formset(self, request, obj=None, **kwargs):
        formset_class = super().get_formset(request, obj, **kwargs)
        actor_type, actor = actor_of(request.user)

        class AuditedFormSet(formset_class):
            def save(self, commit=True):
                saved = []
                for form in self.forms:
                    if form.has_changed() and form.is_valid():
                        data = form.cleaned_data
                        saved.append(services.customer_dunning_update(
                            customer=self.instance, policy=data.get("policy"), excluded=data.get("excluded", False),
                            note=data.get("note", ""), actor_type=actor_type, actor=actor))
                self.new_objects, self.changed_objects, self.deleted_objects = saved, [], []
                return saved

        return AuditedFormSet


class CustomerDunningCaseInline(admin.TabularInline):
    """The customer's dunning cases and where each stands, read-only."""

    model = DunningCase
    fields = readonly_fields = ("invoice_id", "status", "opened_at", "days_past_due", "policy", "steps", "closed_at",
                                "close_reason")
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "dunning cases"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("policy").prefetch_related("step_logs")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="problem")
    def payment_problem(self, obj):
        return "Action required (3-D Secure)" if obj.action_required_at else "Declined"

    @admin.display(description="days past due")
    def days_past_due(self, obj):
        return obj.days_past_due(dunning_now())

    @admin.display(description="steps")
    def steps(self, obj):
        return ", ".join(f"{row.step_code}: {row.status}" for row in obj.step_logs.all()) or "-"


register_customer_inline(CustomerDunningInline)
register_customer_inline(CustomerDunningCaseInline)
