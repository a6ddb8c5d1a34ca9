"""Support console for licences and devices. Every action calls one service (audited there) and
reports counts. Neither a key nor its hash is ever shown: support sees and searches the prefix,
and can paste a whole key into the search box to find its licence by hash.
"""
from django.contrib import admin, messages

from billing_console.admin.base import ReadOnlyInline, run_for_each
from billing_console.admin.customers import register_customer_inline
from billing_console.selectors import customer_entitlement
from billing_console.wording import counted
from billing_console.wording.subscription import licence_status_words, subscription_copy
from licensing import services
from licensing.keys import key_hash, key_normalize
from licensing.models import DeviceActivation, License
from licensing.selectors import license_limit_words


class DeviceActivationInline(ReadOnlyInline):
    model = DeviceActivation
    fields = readonly_fields = ("device_id", "name", "platform", "activated_at", "last_checked_at", "deactivated_at")


class LicenseCustomerInline(ReadOnlyInline):
    """The customer page's licence section."""

    model = License
    fields = readonly_fields = ("key_prefix", "plan", "shown_status", "devices", "key_delivery",
                                "needs_reissue", "issued_at", "reissued_at")
    verbose_name_plural = "Licences"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("customer")

    @admin.display(description="Status")
    def shown_status(self, obj):
        return shown_licence_status(obj)

    @admin.display(description="Active devices")
    def devices(self, obj):
        return shown_devices(obj)


register_customer_inline(LicenseCustomerInline)


def shown_licence_status(obj: License) -> str:
    """The licence's status as the customer sees it: "Ended" once the subscription behind it ended."""
    copy = subscription_copy(obj.customer, invoices=[], price_lookup=False)
    words, _ = licence_status_words(obj, copy, current=obj.subscription_id == obj.customer.subscription_id)
    return words


def shown_devices(obj: License) -> str:
    """"3 of 1 device", with what the customer is told when a downgrade left more active than the limit."""
    shown = f"{obj.active_devices} of {counted(obj.max_devices, 'device')}"
    if not obj.devices_over_limit:
        return shown
    words = license_limit_words(obj, customer_entitlement(obj.customer))
    return f"{shown}. Customer told: {words}" if words else f"{shown} ({obj.devices_over_limit} over the limit)"


def _each(modeladmin, request, queryset, service, noun: tuple[str, str], done: str, **kwargs) -> None:
    """Run one service per selected row (the admin's `service_arg` names the row's argument)."""
    run_for_each(modeladmin, request, queryset, lambda obj, actor_type, actor: service(
        actor_type=actor_type, actor=actor, **{modeladmin.service_arg: obj}, **kwargs), noun=noun, done=done)


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    service_arg = "license"
    list_display = ("key_prefix", "customer_email", "plan", "shown_status", "active_devices", "max_devices", "key_delivery",
                    "needs_reissue", "issued_at")
    list_filter = ("status", "plan", "needs_reissue", "key_delivery")
    search_fields = ("key_prefix", "customer__email", "subscription_id", "activations__device_id")
    search_help_text = "Key prefix (BCL-XXXXX), a whole key, customer email, subscription id or device id."
    list_select_related = ("customer",)
    show_full_result_count = False
    fields = readonly_fields = ("customer", "subscription_id", "key_prefix", "plan", "max_devices", "devices",
                                "offline_grace_days", "status", "shown_status", "status_reason", "key_delivery", "key_generation", "needs_reissue",
                                "issued_at", "reissued_at", "updated_at")
    inlines = [DeviceActivationInline]
    actions = ["suspend", "unsuspend", "revoke", "reissue_key", "reset_activations"]

    def get_search_results(self, request, queryset, search_term):
        normalized = key_normalize(search_term)
        if normalized:  # a whole key pasted in: find it by its hash, never by storing or showing it
            return queryset.filter(key_hash=key_hash(normalized)), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False  # licences come from paid subscriptions

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Customer sees", ordering="status")
    def shown_status(self, obj):
        return shown_licence_status(obj)

    @admin.display(description="Customer", ordering="customer__email")
    def customer_email(self, obj):
        return obj.customer.email

    @admin.display(description="Active devices")
    def devices(self, obj):
        return shown_devices(obj)

    @admin.action(description="Suspend selected licences", permissions=["change"])
    def suspend(self, request, queryset):
        _each(self, request, queryset, services.license_suspend, ("licence", "licences"), "suspended", reason="support action")

    @admin.action(description="Unsuspend selected licences", permissions=["change"])
    def unsuspend(self, request, queryset):
        _each(self, request, queryset, services.license_unsuspend, ("licence", "licences"), "unsuspended", reason="support action")

    @admin.action(description="Revoke selected licences (permanent)", permissions=["change"])
    def revoke(self, request, queryset):
        _each(self, request, queryset, services.license_revoke, ("licence", "licences"), "revoked", reason="support action")

    @admin.action(description="Reset device activations", permissions=["change"])
    def reset_activations(self, request, queryset):
        _each(self, request, queryset, services.license_reset_activations, ("device", "devices"),
              "deactivated")

    @admin.action(description="Reissue key (old key stops working; new key emailed)", permissions=["change"])
    def reissue_key(self, request, queryset):
        def reissue(lic, actor_type, actor):
            lic, key = services.license_reissue_key(license=lic, actor_type=actor_type, actor=actor)
            # Shown once, here; it is emailed to the customer and never stored.
            self.message_user(request, f"New key for {lic.customer.email}: {key} (shown once; emailed to the customer)",
                              messages.WARNING)

        run_for_each(self, request, queryset.select_related("customer"), reissue, noun=("key", "keys"), done="reissued")


@admin.register(DeviceActivation)
class DeviceActivationAdmin(admin.ModelAdmin):
    service_arg = "activation"
    list_display = ("device_id", "name", "platform", "license_prefix", "customer_email", "is_active", "activated_at",
                    "last_checked_at", "deactivated_at")
    list_filter = (("deactivated_at", admin.EmptyFieldListFilter), "platform")
    search_fields = ("device_id", "name", "license__key_prefix", "license__customer__email")
    search_help_text = "Device id, device name, key prefix (BCL-XXXXX) or customer email."
    list_select_related = ("license__customer",)
    show_full_result_count = False
    fields = readonly_fields = ("license", "device_id", "name", "platform", "activated_at", "last_checked_at",
                                "deactivated_at")
    actions = ["revoke_device"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Licence", ordering="license__key_prefix")
    def license_prefix(self, obj):
        return obj.license.key_prefix

    @admin.display(description="Customer", ordering="license__customer__email")
    def customer_email(self, obj):
        return obj.license.customer.email

    @admin.display(description="Active", boolean=True)
    def is_active(self, obj):
        return obj.is_active

    @admin.action(description="Revoke selected devices (frees the seat)", permissions=["change"])
    def revoke_device(self, request, queryset):
        _each(self, request, queryset.filter(deactivated_at__isnull=True), services.device_activation_revoke,
              ("device", "devices"), "revoked")
