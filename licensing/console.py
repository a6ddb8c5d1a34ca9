"""What licensing adds to the support console's front page and global search (registered in apps.py)."""
from __future__ import annotations

from django.db.models import Count, Q
from django.urls import reverse

from billing_console.admin.dashboard import BAD, OK, WARN, Section, Stat, changelist_url
from billing_console.admin.search import MAX_HITS, Hit
from licensing.keys import key_hash, key_normalize
from licensing.models import DeviceActivation, License


def dashboard_section(request) -> Section:
    counts = License.objects.aggregate(
        active=Count("id", filter=Q(status=License.Status.ACTIVE)),
        needs_reissue=Count("id", filter=Q(needs_reissue=True)),
        email_failed=Count("id", filter=Q(key_delivery=License.KeyDelivery.FAILED)))
    return Section("Licences", [
        Stat("Active", counts["active"], tone=OK, url=changelist_url(request, "licensing", "license", status__exact="active")),
        Stat("Need a reissue", counts["needs_reissue"], tone=WARN if counts["needs_reissue"] else OK,
             url=changelist_url(request, "licensing", "license", needs_reissue__exact="1")),
        Stat("Key email failed", counts["email_failed"], tone=BAD if counts["email_failed"] else OK,
             url=changelist_url(request, "licensing", "license", key_delivery__exact="failed")),
    ], order=70)


def search_hits(term: str) -> list[Hit]:
    """A device id, a licence key prefix (BCL-XXXXX) or a whole key (found by its hash, never stored)."""
    hits = []
    normalized = key_normalize(term)
    if normalized:
        for pk, cid, prefix in License.objects.filter(key_hash=key_hash(normalized)).values_list("pk", "customer_id", "key_prefix"):
            hits.append(Hit(cid, f"licence key {prefix}-…", url=reverse("admin:licensing_license_change", args=[pk])))
        return hits
    if term.upper().startswith("BCL-"):
        rows = License.objects.filter(key_prefix__iexact=term[:9]).values_list("pk", "customer_id", "key_prefix")[:MAX_HITS]
        hits += [Hit(cid, f"licence {prefix}", url=reverse("admin:licensing_license_change", args=[pk]))
                 for pk, cid, prefix in rows]
    rows = (DeviceActivation.objects.filter(device_id=term)
            .values_list("pk", "license__customer_id", "name", "deactivated_at")[:MAX_HITS])
    hits += [Hit(cid, "device id", f"{name or term} ({'deactivated' if off else 'active'})",
                 url=reverse("admin:licensing_deviceactivation_change", args=[pk])) for pk, cid, name, off in rows]
    return hits
