"""Support console for deployments. Every action calls one service (which audits) and reports counts.
The token is never rendered: support sees its last four characters and when it was set."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from billing_console.admin.base import ReadOnlyInline, run_for_each
from billing_console.admin.customers import register_customer_inline
from billing_console.errors import ServiceError
from billing_console.services import actor_of
from deployments import services
from deployments.models import BundleRelease, Deployment, PublishVersion
from deployments.selectors import deployment_updates_words, deployments_behind, latest_release


def token_display(obj: Deployment) -> str:
    if not obj.token_last4:
        return "(none)"
    when = f", set {obj.token_set_at:%Y-%m-%d %H:%M} UTC" if obj.token_set_at else ""
    return f"…{obj.token_last4}{when}"


class PushStateFilter(admin.SimpleListFilter):
    title = "push state"
    parameter_name = "push"

    def lookups(self, request, model_admin):
        return [("errored", "Errored"), ("paused", "Paused"), ("behind", "Behind latest release"),
                ("token_stop", "Stopped: token rejected"), ("rotation", "Token rotation pending")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "errored":
            return queryset.filter(status=Deployment.Status.ERRORED)
        if value == "paused":
            return queryset.filter(paused=True)
        if value == "token_stop":
            return queryset.filter(paused=True, paused_by=Deployment.PausedBy.AUTH_FAILURES)
        if value == "rotation":
            return queryset.filter(rotation_due_at__isnull=False)
        if value == "behind":
            release = latest_release()
            return deployments_behind(queryset, release.version if release else "")
        return queryset


class PublishVersionInline(ReadOnlyInline):
    model = PublishVersion
    fields = ("number", "version", "status", "trigger", "actor", "error_code", "error_message", "created_at",
              "started_at", "completed_at")
    readonly_fields = fields
    ordering = ("-number",)
    show_change_link = False


class RollbackForm(forms.Form):
    target = forms.ChoiceField(label="Roll back to")

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = choices


def _rollback_choices(queryset) -> list[tuple[str, str]]:
    """One deployment: its own publishes by number. Several: the releases seen, by version."""
    deployments = list(queryset[:2])
    if len(deployments) == 1:
        publishes = deployments[0].publishes.exclude(status__in=PublishVersion.IN_FLIGHT).order_by("-number")[:50]
        return [(f"n:{p.number}", f"#{p.number} {p.version} ({p.get_status_display().lower()}, "
                                  f"{p.created_at:%Y-%m-%d %H:%M})") for p in publishes]
    return [(f"v:{r.version}", r.version) for r in BundleRelease.objects.order_by("-last_seen_at", "-seen_at")[:50]]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("script_name", "customer_email", "account", "status", "current_version", "pinned_version",
                    "last_error_code", "consecutive_failures", "paused_by", "last_push_at")
    list_select_related = ("customer",)
    list_filter = (PushStateFilter, "status", "paused_by", "last_error_code")
    search_fields = ("script_name", "account_id", "customer__email", "=id")
    show_full_result_count = False
    ordering = ("-created_at",)
    fields = ("customer", "slot", "account_id", "script_name", "token", "rotation_due_at", "status", "updates", "paused",
              "paused_by", "paused_reason", "paused_at", "pinned_version", "current_version", "last_error_code",
              "last_error_message", "last_error_at", "consecutive_failures", "consecutive_auth_failures", "next_attempt_at",
              "last_push_at", "created_at", "updated_at")
    readonly_fields = fields
    inlines = [PublishVersionInline]
    actions = ["pause", "resume", "push_now", "requeue_failed", "rollback", "follow_latest", "verify_token",
               "replace_account", "delete_audited"]

    def has_add_permission(self, request):
        return False  # provisioning verifies the token with Cloudflare: deployment_create, from checkout or the manage page

    def has_delete_permission(self, request, obj=None):
        # Only through "Delete deployment (audited)" (support's change permission), which records who, why and what.
        return False

    @admin.display(description="customer", ordering="customer__email")
    def customer_email(self, obj):
        return obj.customer.email

    @admin.display(description="account", ordering="account_id")
    def account(self, obj):
        return obj.account_id[:8] + "…"

    @admin.display(description="API token")
    def token(self, obj):
        return token_display(obj)

    @admin.display(description="updates")
    def updates(self, obj):
        return deployment_updates_words(obj)

    # -- actions --------------------------------------------------------------------------------------
    def _each(self, request, queryset, call, done: str) -> None:
        run_for_each(self, request, queryset.select_related("customer"), call, noun=("deployment", "deployments"),
                     done=done)

    @admin.action(description="Pause pushes", permissions=["change"])
    def pause(self, request, queryset):
        self._each(request, queryset, lambda d, t, a: services.deployment_pause(
            deployment=d, actor_type=t, actor=a, reason="Paused by support"), "paused")

    @admin.action(description="Resume pushes", permissions=["change"])
    def resume(self, request, queryset):
        self._each(request, queryset, lambda d, t, a: services.deployment_resume(deployment=d, actor_type=t, actor=a),
                   "resumed")

    @admin.action(description="Push now", permissions=["change"])
    def push_now(self, request, queryset):
        self._each(request, queryset, lambda d, t, a: services.deployment_push_now(deployment=d, actor_type=t, actor=a),
                   "queued for a push")

    @admin.action(description="Requeue the failed publish", permissions=["change"])
    def requeue_failed(self, request, queryset):
        def requeue(d, t, a):
            latest = d.publishes.order_by("-number").first()
            if latest is None or latest.status != PublishVersion.Status.FAILED:
                raise ServiceError("invalid_state", "its latest publish did not fail.")
            services.publish_requeue(publish=latest, actor_type=t, actor=a)

        self._each(request, queryset, requeue, "requeued")

    @admin.action(description="Follow the latest release (unpin)", permissions=["change"])
    def follow_latest(self, request, queryset):
        self._each(request, queryset, lambda d, t, a: services.deployment_pin(deployment=d, version="", actor_type=t, actor=a),
                   "set to follow the latest release")

    @admin.action(description="Verify the token with Cloudflare", permissions=["change"])
    def verify_token(self, request, queryset):
        def verify(deployment, actor_type, actor):
            deployment, error = services.deployment_verify_token(deployment=deployment, actor_type=actor_type, actor=actor)
            if error is not None:
                raise ServiceError(error.code, f"token rejected: {error.message}")

        run_for_each(self, request, queryset.select_related("customer"), verify, noun=("token", "tokens"),
                     done="valid")

    @admin.action(description="Roll back to a version…", permissions=["change"])
    def rollback(self, request, queryset):
        choices = _rollback_choices(queryset)
        if not choices:
            self.message_user(request, "Nothing to roll back to: no finished publish or known release.", messages.WARNING)
            return None
        form = RollbackForm(request.POST if "apply" in request.POST else None, choices=choices)
        if form.is_valid():
            kind, value = form.cleaned_data["target"].split(":", 1)
            target = {"number": int(value)} if kind == "n" else {"version": value}
            self._each(request, queryset, lambda d, t, a: services.deployment_rollback(
                deployment=d, actor_type=t, actor=a, **target), f"rolled back to {value if kind == 'v' else '#' + value}")
            return None
        context = {**self.admin_site.each_context(request), "title": "Roll back deployments", "form": form,
                   "deployments": queryset, "opts": self.model._meta, "action_checkbox_name": ACTION_CHECKBOX_NAME,
                   "action": "rollback"}
        return TemplateResponse(request, "deployments/admin/rollback.html", context)


    @admin.action(description="Replace account id (mistyped)…", permissions=["change"])
    def replace_account(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one deployment to move to another account.", messages.WARNING)
            return None
        deployment = queryset.select_related("customer").get()
        form = ReplaceAccountForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            actor_type, actor = actor_of(request.user)
            try:
                services.deployment_replace_account(deployment=deployment, actor_type=actor_type, actor=actor,
                                                    **form.cleaned_data)
            except ServiceError as exc:
                _add_errors(form, exc)
            else:
                self.message_user(request, f"{deployment.script_name} now deploys to account "
                                           f"{form.cleaned_data['account_id'][:8]}…; the next run pushes it.",
                                  messages.SUCCESS)
                return None
        return self._action_page(request, queryset, form, "replace_account", "Replace the Cloudflare account id",
                                 "The new account's token is checked with Cloudflare before anything is saved. "
                                 "The Worker in the old account is left as it is.", "Replace")

    @admin.action(description="Delete deployment (audited)…", permissions=["change"])
    def delete_audited(self, request, queryset):
        form = DeleteDeploymentForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._each(request, queryset, lambda d, t, a: services.deployment_delete(
                deployment=d, actor_type=t, actor=a, reason=form.cleaned_data["reason"]), "deleted")
            return None
        return self._action_page(request, queryset, form, "delete_audited", "Delete deployments",
                                 "The console stops pushing to these Workers and forgets their tokens; the Workers "
                                 "in Cloudflare keep running. The customer can connect a deployment again.", "Delete")

    def _action_page(self, request, queryset, form, action, title, explanation, submit):
        context = {**self.admin_site.each_context(request), "title": title, "form": form, "deployments": queryset,
                   "opts": self.model._meta, "action_checkbox_name": ACTION_CHECKBOX_NAME, "action": action,
                   "explanation": explanation, "submit": submit}
        return TemplateResponse(request, "deployments/admin/action_form.html", context)


class ReplaceAccountForm(forms.Form):
    account_id = forms.CharField(label="Correct Cloudflare account id", max_length=64, strip=True)
    api_token = forms.CharField(label="Cloudflare API token for that account", max_length=200, strip=True,
                                widget=forms.PasswordInput(attrs={"autocomplete": "off"}))
    reason = forms.CharField(label="Reason (kept in the audit log)", max_length=255, required=False)


class DeleteDeploymentForm(forms.Form):
    reason = forms.CharField(label="Reason (kept in the audit log)", max_length=255)


def _add_errors(form: forms.Form, exc: ServiceError) -> None:
    for name, error in (exc.fields or {None: exc.message}).items():
        form.add_error(name if name in form.fields else None, error)


@admin.register(PublishVersion)
class PublishVersionAdmin(admin.ModelAdmin):
    list_display = ("deployment", "number", "version", "status", "trigger", "error_code", "created_at", "completed_at")
    list_select_related = ("deployment",)
    list_filter = ("status", "trigger", "error_code")
    search_fields = ("deployment__script_name", "deployment__account_id", "version")
    show_full_result_count = False
    readonly_fields = ("deployment", "number", "version", "status", "trigger", "actor", "error_code", "error_message",
                       "created_at", "started_at", "completed_at")
    fields = readonly_fields
    actions = ["requeue"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Requeue (failed publishes only)", permissions=["change"])
    def requeue(self, request, queryset):
        run_for_each(self, request, queryset, lambda publish, actor_type, actor: services.publish_requeue(
            publish=publish, actor_type=actor_type, actor=actor), noun=("publish", "publishes"), done="requeued")


@admin.register(BundleRelease)
class BundleReleaseAdmin(admin.ModelAdmin):
    list_display = ("version", "sha256_short", "size", "seen_at", "last_seen_at")
    readonly_fields = ("version", "bundle_url", "sha256", "size", "seen_at", "last_seen_at")
    fields = readonly_fields
    search_fields = ("version",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="sha256")
    def sha256_short(self, obj):
        return obj.sha256[:12] + "…"


class DeploymentInline(admin.TabularInline):
    """The customer's deployments on the customer page (one query, whatever their number)."""

    model = Deployment
    fields = ("link", "account_id", "status", "updates", "current_version", "pinned_version", "last_error_code", "paused_by",
              "token", "last_push_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer")  # the updates column reads the customer

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="deployment")
    def link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:deployments_deployment_change", args=[obj.pk]),
                           obj.script_name)

    @admin.display(description="API token")
    def token(self, obj):
        return token_display(obj)

    @admin.display(description="updates")
    def updates(self, obj):
        return deployment_updates_words(obj)


register_customer_inline(DeploymentInline)
