"""The "support" group: what support staff need for the runbook's actions, and nothing more.

View every console model; change only the rows support acts on (customers, events to replay,
invoices to resend, drift to resolve, licences, devices, deployments, publishes, dunning cases).
No add or delete, nothing of auth (users, groups), dj-stripe (its API keys) or the task queue; outside the
console's apps only a look at the staff login lockouts (django-axes), which a superuser lifts.
The group is the console's: `support_group_ensure()` sets exactly these permissions at every
migrate (a data migration creates it, a post_migrate hook follows new models). Extra powers belong
in a group of their own.
"""
from __future__ import annotations

import logging

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

log = logging.getLogger("billing_console")

SUPPORT_GROUP = "support"
CONSOLE_APPS = ("billing_console", "licensing", "deployments", "dunning", "analytics")
# Models whose rows support changes through the admin's actions (every other console model: view only).
SUPPORT_CHANGES = {
    "billing_console": ("customer", "webhookevent", "invoice", "driftitem", "unlinkedsubscription"),
    "licensing": ("license", "deviceactivation"),
    "deployments": ("deployment", "publishversion"),
    "dunning": ("dunningcase", "customerdunning", "dunningsteplog"),
}


# Outside the console's apps, support only looks: the staff login lockouts (django-axes).
SUPPORT_VIEWS = {"axes": ("accessattempt",)}


def support_permissions(using: str = "default"):
    wanted = Q(content_type__app_label__in=CONSOLE_APPS, codename__startswith="view_")
    for app_label, models in SUPPORT_VIEWS.items():
        wanted |= Q(content_type__app_label=app_label, codename__in=[f"view_{m}" for m in models])
    for app_label, models in SUPPORT_CHANGES.items():
        wanted |= Q(content_type__app_label=app_label, codename__in=[f"change_{m}" for m in models])
    return Permission.objects.using(using).filter(wanted)


def support_group_ensure(*, using: str = "default") -> Group:
    """Create the group if missing and give it exactly the support permissions. Idempotent."""
    for label in (*CONSOLE_APPS, *SUPPORT_VIEWS):
        try:
            config = global_apps.get_app_config(label)  # by label: an app's name may differ (billing_console.analytics)
        except LookupError:
            continue
        # On a new database the permissions are only made after every migration; make them now.
        create_permissions(config, verbosity=0, using=using)
    with transaction.atomic(using=using):
        group, created = Group.objects.using(using).select_for_update().get_or_create(name=SUPPORT_GROUP)
        wanted = set(support_permissions(using).values_list("pk", flat=True))
        current = set(group.permissions.values_list("pk", flat=True))
        if created or wanted != current:
            group.permissions.set(wanted)
            log.info("support group permissions set (%d)", len(wanted),
                     extra={"event": "support_group_ensured", "added": len(wanted - current),
                            "removed": len(current - wanted)})
    return group


def support_group_on_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate: new console models (an app that landed later) reach the group without a new migration."""
    support_group_ensure(using=using)
