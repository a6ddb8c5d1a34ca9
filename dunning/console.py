"""What dunning adds to the support console's front page and global search (registered in apps.py)."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from billing_console.admin.dashboard import BAD, OK, WARN, Section, Stat, changelist_url
from billing_console.admin.search import MAX_HITS, Hit
from billing_console.models import Customer
from dunning.models import DunningCase, DunningStepLog


def dashboard_section(request) -> Section:
    cases = DunningCase.objects.aggregate(open=Count("id", filter=Q(status=DunningCase.Status.OPEN)),
                                          exhausted=Count("id", filter=Q(status=DunningCase.Status.EXHAUSTED)))
    failed = DunningStepLog.objects.filter(status=DunningStepLog.Status.FAILED,
                                           updated_at__gte=timezone.now() - timedelta(days=1)).count()
    locked = Customer.objects.filter(access_state__in=[Customer.AccessState.SOFT_LOCKED, Customer.AccessState.HARD_LOCKED]).count()
    return Section("Dunning", [
        Stat("Open cases", cases["open"], tone=WARN if cases["open"] else OK,
             url=changelist_url(request, "dunning", "dunningcase", status__exact=DunningCase.Status.OPEN)),
        Stat("Exhausted, unpaid", cases["exhausted"], tone=BAD if cases["exhausted"] else OK,
             url=changelist_url(request, "dunning", "dunningcase", status__exact=DunningCase.Status.EXHAUSTED)),
        Stat("Reminders failed (24 h)", failed, tone=BAD if failed else OK,
             url=changelist_url(request, "dunning", "dunningsteplog", status__exact=DunningStepLog.Status.FAILED)),
        Stat("Customers locked", locked, tone=WARN if locked else OK,
             url=changelist_url(request, "billing_console", "customer", access_state__in="soft_locked,hard_locked")),
    ], order=55)


def search_hits(term: str) -> list[Hit]:
    """A failed invoice's id (in_...) finds its dunning case even when the invoice is not mirrored locally."""
    if not term.lower().startswith("in_"):
        return []
    rows = DunningCase.objects.filter(invoice_id=term).values_list("pk", "customer_id", "status")[:MAX_HITS]
    return [Hit(cid, "dunning case", f"{term} ({status})", url=reverse("admin:dunning_dunningcase_change", args=[pk]))
            for pk, cid, status in rows]
