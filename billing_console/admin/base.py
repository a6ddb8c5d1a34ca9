"""Base classes of the support console: read-only history pages and inlines, the site-wide policy, and
the one way an admin action runs a service over the selected rows."""
from typing import Callable, Iterable

from django.contrib import admin, messages

from billing_console.errors import ServiceError
from billing_console.services import actor_of
from billing_console.wording import counted

MAX_PROBLEMS_SHOWN = 20

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


def run_for_each(modeladmin: admin.ModelAdmin, request, rows: Iterable, service: Callable, *, noun: tuple[str, str],
                 done: str, label: Callable = str) -> int:
    """Every admin action that acts on the selected rows goes through here: call
    `service(row, actor_type, actor)` for each row, count what it did (an int result counts that many,
    anything else one), report each refusal (a ServiceError) with the row's label, then one summary
    line: "2 deployments paused." Returns the count."""
    actor_type, actor = actor_of(request.user)
    count, problems = 0, []
    for row in rows:
        try:
            result = service(row, actor_type, actor)
        except ServiceError as exc:
            problems.append(f"{label(row)}: {exc.message}")
            continue
        count += result if isinstance(result, int) and not isinstance(result, bool) else 1
    modeladmin.message_user(request, f"{counted(count, *noun)} {done}.", messages.SUCCESS if count else messages.WARNING)
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        modeladmin.message_user(request, problem, messages.ERROR)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        modeladmin.message_user(request, f"{counted(len(problems) - MAX_PROBLEMS_SHOWN, 'more refusal')} not shown.",
                                messages.ERROR)
    return count
