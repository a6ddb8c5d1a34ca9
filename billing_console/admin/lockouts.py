"""Staff lockouts (django-axes): support sees failed logins and lockouts; a superuser unlocks."""
from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages

from billing_console.admin.base import counted
from billing_console.admin.staff_auth import staff_login_unlock
from billing_console.services import actor_of

admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class LockoutAdmin(AccessAttemptAdmin):
    """Failed staff logins and lockouts: support sees them; a superuser (delete permission) unlocks."""

    actions = ["unlock"]

    @admin.action(description="Unlock (forget these failed logins)", permissions=["delete"])
    def unlock(self, request, queryset):
        # One audited transaction for the whole selection: there is no per-row refusal to report.
        n = staff_login_unlock(attempts=list(queryset), actor=actor_of(request.user)[1])
        self.message_user(request, f"{counted(n, 'lockout')} lifted.", messages.SUCCESS)
