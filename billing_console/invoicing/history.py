"""Invoice history: backfill the console's invoices and their PDFs from Stripe's invoice list.

Paginated (one page of Stripe's list in memory), resumable (the last id of each page done is stored in a
StripeImportCursor, so a crash or a Ctrl-C resumes at the next page), and never a second copy (an
invoice the console already holds is skipped: `Invoice.stripe_id` is unique). Imported invoices are
recorded and their PDF rendered and stored, never emailed: they are history, already billed.
"""
from __future__ import annotations

import json
import logging
from datetime import date, datetime, time as dt_time, timezone as dt_timezone

from django.db import transaction
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.invoicing.services import (FINALIZED_STATUSES, IMPORT, DeliveryError, InvoiceShapeError,
                                                invoice_apply_stripe, invoice_pdf_store)
from billing_console.models import Invoice, StripeImportCursor
from billing_console.services import audit_log, cron_guard
from billing_console.stripe.statuses import InvoiceStatus

log = logging.getLogger("billing_console.invoicing")

CURSOR = "invoices"
PAGE_SIZE = 100


class InvoiceImportError(ServiceError):
    """Bad --since, or an import already running."""


def import_since_parse(value: str | None) -> date | None:
    if not value:
        return None
    try:
        since = date.fromisoformat(value.strip())
    except ValueError:
        raise InvoiceImportError("invalid", f"--since must be a date like 2026-01-31, got {value!r}.") from None
    if since > timezone.now().date():
        raise InvoiceImportError("invalid", "--since is in the future.")
    return since


def _cursor(since: date | None, restart: bool) -> StripeImportCursor:
    """The stored cursor; a finished one, another --since, or --restart starts again from the newest."""
    with transaction.atomic():
        cursor, _ = StripeImportCursor.objects.select_for_update().get_or_create(name=CURSOR)
        if restart or cursor.finished_at is not None or cursor.since != since or not cursor.started_at:
            cursor.since, cursor.starting_after, cursor.pages, cursor.finished_at = since, "", 0, None
            cursor.counts, cursor.started_at = {}, timezone.now()
            cursor.save()
    return cursor


def _import_one(obj: dict, counts: dict) -> None:
    stripe_id = obj.get("id", "")
    if obj.get("status") not in FINALIZED_STATUSES | {InvoiceStatus.VOID}:
        counts["skipped_draft"] += 1  # a draft can still change; its events bring it when it is finalized
        return
    invoice = Invoice.objects.filter(stripe_id=stripe_id).first()
    if invoice is not None:
        counts["existing"] += 1
        # Only an earlier import whose PDF failed: anything else belongs to delivery (queued, sent, legacy).
        if (invoice.pdf_path or invoice.status not in FINALIZED_STATUSES or invoice.emailed_at is not None
                or invoice.next_delivery_at is not None or invoice.delivery_status != Invoice.Delivery.PENDING):
            return
    else:
        try:
            created = datetime.fromtimestamp(int(obj["created"]), tz=dt_timezone.utc)
            invoice = invoice_apply_stripe(obj=obj, at=created, event_type=IMPORT)
        except (InvoiceShapeError, KeyError, TypeError, ValueError) as exc:
            counts["unreadable"] += 1
            log.warning("invoice import skipped %s: %s", stripe_id, exc, extra={"event": "invoice_import_skipped"})
            return
        counts["imported"] += 1
        if invoice.status not in FINALIZED_STATUSES:
            return
    try:
        invoice_pdf_store(invoice)
    except DeliveryError:
        counts["pdf_failed"] += 1  # recorded on the invoice (pdf_render_failed); the next run tries again
    else:
        counts["pdfs"] += 1


def invoices_import(*, since: date | None = None, restart: bool = False, actor_type: str, actor: str = "",
                    page_size: int = PAGE_SIZE, max_pages: int | None = None) -> dict:
    """Backfill invoices (and PDFs) from Stripe's invoice list, newest first, from where the last run
    stopped. Stripe is read outside any transaction, one page at a time. Returns the counts."""
    from billing_console.stripe import gateway as stripe_gateway

    with cron_guard("import_invoices_from_stripe") as run:
        if run is None:
            raise InvoiceImportError("running", "An import is already running; it resumes where it stops, so wait for it.")
        cursor = _cursor(since, restart)
        counts = {k: 0 for k in ("imported", "existing", "pdfs", "pdf_failed", "skipped_draft", "unreadable")}
        counts.update({k: v for k, v in (cursor.counts or {}).items() if k in counts})
        params: dict = {"limit": page_size}
        if since:
            params["created"] = {"gte": int(datetime.combine(since, dt_time.min, tzinfo=dt_timezone.utc).timestamp())}
        pages = 0
        while max_pages is None or pages < max_pages:
            page_params = {**params, **({"starting_after": cursor.starting_after} if cursor.starting_after else {})}
            # Plain JSON like an event's (stripe-python hands *_decimal fields back as Decimal).
            page = json.loads(json.dumps(stripe_gateway.list_page("invoices", page_params), default=str))
            data = page.get("data") or []
            for obj in data:
                _import_one(obj, counts)
            pages += 1
            done = not page.get("has_more") or not data
            cursor.starting_after = data[-1]["id"] if data else cursor.starting_after
            cursor.pages += 1
            cursor.counts = counts
            cursor.finished_at = timezone.now() if done else None
            cursor.save(update_fields=["starting_after", "pages", "counts", "finished_at", "updated_at"])
            if done:
                break
        with transaction.atomic():
            audit_log(actor_type=actor_type, actor=actor, action="invoices.imported",
                      target_type="billing_console.stripeimportcursor", target_id=str(cursor.pk),
                      data={**counts, "since": since.isoformat() if since else None, "pages": pages,
                            "finished": cursor.finished_at is not None})
        run.counts = {**counts, "pages": pages}
    log.info("invoices imported %s", counts, extra={"event": "invoices_imported", "counts": counts})
    return {**counts, "pages": pages, "finished": cursor.finished_at is not None, "cursor": cursor.starting_after}
