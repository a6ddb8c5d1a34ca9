"""What deployments add to the support console's front page and global search (registered in apps.py)."""
from __future__ import annotations

from django.urls import reverse

from billing_console.admin.dashboard import BAD, OK, WARN, Section, Stat, changelist_url
from billing_console.admin.search import MAX_HITS, Hit
from deployments.models import Deployment
from deployments.selectors import deployment_counts, rotation_counts
from billing_console.wording import counted


def dashboard_section(request) -> Section:
    counts = deployment_counts()
    rotation = rotation_counts()
    return Section("Deployments", [
        Stat("Active", counts["active"], tone=OK, url=changelist_url(request, "deployments", "deployment", status__exact=Deployment.Status.ACTIVE)),
        Stat("Paused", counts["paused"], tone=WARN if counts["paused"] else OK,
             url=changelist_url(request, "deployments", "deployment", status__exact=Deployment.Status.PAUSED)),
        Stat("Errored", counts["errored"], tone=BAD if counts["errored"] else OK,
             url=changelist_url(request, "deployments", "deployment", status__exact=Deployment.Status.ERRORED),
             note="last push failed: token, scope or account"),
        Stat("Token rotation pending", rotation["pending"],
             tone=(BAD if rotation["overdue"] else WARN) if rotation["pending"] else OK,
             url=changelist_url(request, "deployments", "deployment", push="rotation"),
             note=f"asked to rotate after notify_token_rotation; {rotation['overdue']} overdue (paused)"),
    ], order=50, note=f"{counted(counts['total'], 'deployment')} in all.")


def search_hits(term: str) -> list[Hit]:
    """A Worker script name (exact, then starting with the term) or a Cloudflare account id."""
    lowered = term.lower()
    rows = list(Deployment.objects.filter(script_name=lowered).values_list("pk", "customer_id", "script_name")[:MAX_HITS])
    if not rows:
        rows = list(Deployment.objects.filter(script_name__startswith=lowered)
                    .values_list("pk", "customer_id", "script_name")[:MAX_HITS])
    if not rows and len(lowered) == 32:
        rows = list(Deployment.objects.filter(account_id=lowered).values_list("pk", "customer_id", "script_name")[:MAX_HITS])
    return [Hit(cid, "deployment", name, url=reverse("admin:deployments_deployment_change", args=[pk]))
            for pk, cid, name in rows]
