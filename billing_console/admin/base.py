"""Base classes of the support console: read-only history pages and inlines, and the site-wide policy."""
from django.contrib import admin

# Bulk delete skips each model's own rules and the console's audit trail, and one click would take a
# customer's licences, deployments and history with it. A superuser can still delete one row from its
# page (a confirmation lists what goes with it, and Django's log records it).
admin.site.disable_action("delete_selected")


class ReadOnlyAdmin(admin.ModelAdmin):
    """History rows: visible to support, never edited or deleted through the console."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    """A history or child list shown on a page, changed only through the actions that own it."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
