"""Migration cohorts (reference 002): customers move from the legacy billing system to the console one
cohort at a time, one full billing cycle each, with zero-drift reconciliation as the gate.

- The gate: every account of the cohort had an invoice finalized since the cohort's start, a full
  reconciliation ran after the last of them, and no full run since the start found drift for the
  cohort (plus, for a reviewed cohort, every account signed off).
- The invoice-email switch: off, the console records the cohort's invoices but does not email them
  (the legacy system does): the rollback.
- Per-account review sign-off for cohorts of custom arrangements.
- The pre-cohort checklist, each item's state computed where the console can know it.
"""
from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from billing_console.wording import counted
from billing_console.errors import ServiceError
from billing_console.models import (Cohort, CohortAccountReview, Customer, Invoice, InvoiceEvent, LedgerEntry,
                                    ReconciliationRun, WebhookEvent)
from billing_console.services import audit_log
from billing_console.stripe.statuses import ENTITLED, INVOICE_FINALIZED as FINALIZED
WAITING_SHOWN = 5


class CohortError(ServiceError):
    pass


# --- The invoice-email switch -----------------------------------------------------------------
def cohort_emails_invoices(customer_id: int | None) -> bool:
    """Does the console email this customer's invoices? False only for a cohort sent back to legacy."""
    if customer_id is None:
        return True
    name = Customer.objects.filter(pk=customer_id).values_list("cohort", flat=True).first()
    if not name:
        return True
    flag = Cohort.objects.filter(name=name).values_list("console_emails_invoices", flat=True).first()
    return flag is None or flag


def cohort_set_invoice_emails(*, cohort: Cohort, enabled: bool, actor_type: str, actor: str = "") -> Cohort:
    """Switch who emails the cohort's invoices: the console (on) or the legacy system (off, the rollback).
    Invoices already emailed stay so; from now on the cohort's new invoices follow the switch. Audited."""
    with transaction.atomic():
        cohort = Cohort.objects.select_for_update().get(pk=cohort.pk)
        if cohort.console_emails_invoices == enabled:
            return cohort
        cohort.console_emails_invoices = enabled
        cohort.save(update_fields=["console_emails_invoices", "updated_at"])
        audit_log(actor_type=actor_type, actor=actor,
                  action="cohort.invoice_emails_on" if enabled else "cohort.invoice_emails_off", target=cohort,
                  data={"cohort": cohort.name, "accounts": Customer.objects.filter(cohort=cohort.name).count()})
    return cohort


def cohort_save(*, cohort: Cohort, changed: list[str], actor_type: str, actor: str = "") -> Cohort:
    """Create or edit a cohort (name, start, review flag, note). Audited with the fields changed."""
    name = (cohort.name or "").strip()
    if not name:
        raise CohortError("invalid", fields={"name": "Give the cohort's name, as in the customers' Cohort field."})
    if cohort.started_at is None:
        raise CohortError("invalid", fields={"started_at": "Give the start of the cohort's first cycle under Stripe."})
    cohort.name = name
    created = cohort.pk is None
    with transaction.atomic():
        cohort.save()
        audit_log(actor_type=actor_type, actor=actor, action="cohort.created" if created else "cohort.changed",
                  target=cohort, data={"changed": sorted(changed), "started_at": cohort.started_at.isoformat(),
                                       "requires_account_review": cohort.requires_account_review})
    return cohort


# --- Per-account review -----------------------------------------------------------------------
def cohort_account_sign_off(*, customer: Customer, actor_type: str, actor: str = "", note: str = "") -> CohortAccountReview:
    """Record that support reviewed this account of a reviewed cohort (who and when). Idempotent; audited."""
    if not customer.cohort:
        raise CohortError("no_cohort", f"{customer.email} is in no migration cohort.")
    cohort = Cohort.objects.filter(name=customer.cohort).first()
    if cohort is None or not cohort.requires_account_review:
        raise CohortError("no_review", f"Cohort {customer.cohort} does not ask for a per-account review.")
    if not actor:
        raise CohortError("invalid", "A sign-off needs the name of who reviewed.")
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()
        existing = CohortAccountReview.objects.filter(customer=customer).first()
        if existing is not None and existing.cohort == customer.cohort:
            return existing
        review, _ = CohortAccountReview.objects.update_or_create(customer=customer, defaults={
            "cohort": customer.cohort, "signed_off_by": actor[:255], "signed_off_at": timezone.now(),
            "note": (note or "")[:2000]})
        audit_log(actor_type=actor_type, actor=actor, action="cohort.account_signed_off", target=review,
                  customer=customer, data={"cohort": customer.cohort})
    return review


# --- The gate ---------------------------------------------------------------------------------
def cohort_gate() -> list[dict]:
    """Per cohort: may the next cohort migrate? One full billing cycle with zero drift since its start.
    A fixed number of queries whatever the number of cohorts and accounts (the admin lists show it)."""
    cohorts = {c.name: c for c in Cohort.objects.all()}
    accounts: dict[str, list[tuple[int, str]]] = {}
    for pk, email, name in Customer.objects.exclude(cohort="").order_by("pk").values_list("pk", "email", "cohort"):
        accounts.setdefault(name, []).append((pk, email))
    started = [c for c in cohorts.values() if c.name in accounts]
    first_invoice: dict[str, dict[int, object]] = {}
    runs: list[ReconciliationRun] = []
    reviewed: dict[str, int] = {}
    if started:
        since_start = Q()
        for c in started:
            since_start |= Q(customer__cohort=c.name, stripe_created__gte=c.started_at)
        for pk, name, first in (Invoice.objects.filter(since_start, status__in=FINALIZED)
                                .values_list("customer_id", "customer__cohort").annotate(first=Min("created_at"))
                                .order_by()):
            first_invoice.setdefault(name, {})[pk] = first
        runs = [r for r in ReconciliationRun.objects.filter(
            started_at__gte=min(c.started_at for c in started),
            status__in=[ReconciliationRun.Status.CLEAN, ReconciliationRun.Status.DRIFT]).order_by("started_at")
            .only("pk", "started_at", "status", "checked") if (r.checked or {}).get("full")]
        reviewed = dict(CohortAccountReview.objects.filter(customer__cohort=F("cohort")).values_list("cohort")
                        .annotate(n=Count("pk")).order_by())
    return [_gate_row(name, cohorts.get(name), accounts.get(name, []), first_invoice.get(name, {}), runs,
                      reviewed.get(name, 0)) for name in sorted(set(cohorts) | set(accounts))]


def _gate_row(name: str, cohort: Cohort | None, accounts: list, first_invoice: dict, all_runs: list,
              reviewed: int) -> dict:
    row = {"cohort": name, "start": cohort.started_at if cohort else None, "accounts": len(accounts), "invoiced": 0,
           "runs": 0, "drift": None, "run": None, "waiting": [], "reviewed": None, "clean": False,
           "emails": cohort.console_emails_invoices if cohort else True}
    if cohort is None:
        row["reason"] = "No start date: add the cohort (admin > Cohorts) with the start of its first cycle."
        return row
    row["invoiced"] = len(first_invoice)
    row["waiting"] = [email for pk, email in accounts if pk not in first_invoice][:WAITING_SHOWN]
    runs = [r for r in all_runs if r.started_at >= cohort.started_at]
    row["runs"] = len(runs)
    row["drift"] = sum(int(((r.checked or {}).get("cohort_drift") or {}).get(name, 0) or 0) for r in runs)
    last_invoice_at = max(first_invoice.values()) if first_invoice else None
    covering = [r for r in runs if name in ((r.checked or {}).get("cohorts") or {})
                and last_invoice_at is not None and r.started_at >= last_invoice_at]
    row["run"] = covering[-1] if covering else (runs[-1] if runs else None)
    if cohort.requires_account_review:
        row["reviewed"] = reviewed
    if not accounts:
        row["reason"] = "No customer is in this cohort."
    elif row["invoiced"] < len(accounts):
        row["reason"] = f"{counted(len(accounts) - row['invoiced'], 'account')} without an invoice finalized since the start yet."
    elif row["drift"]:
        row["reason"] = f"Full runs since the start found {counted(row['drift'], 'drift item')} for this cohort: investigate."
    elif not covering:
        row["reason"] = "No full reconciliation has run since the last of these invoices."
    elif row["reviewed"] is not None and row["reviewed"] < len(accounts):
        row["reason"] = f"{counted(len(accounts) - row['reviewed'], 'account')} waiting for a review sign-off."
    else:
        row["clean"] = True
        row["reason"] = "One full cycle reconciled with zero drift: the next cohort may migrate."
    return row


# --- The pre-cohort checklist -----------------------------------------------------------------
OK, FAIL, UNKNOWN, MANUAL = "ok", "fail", "unknown", "manual"


def _flat_price_check(accounts: list[Customer]) -> tuple[str, str]:
    """The Stripe price each account pays (dj-stripe's price mirror) against its latest legacy ledger total."""
    from djstripe.models import Price

    prices = {pid: ((data or {}).get("unit_amount"), (currency or "").lower()) for pid, data, currency in
              Price.objects.filter(id__in={c.price_id for c in accounts if c.price_id}).values_list(
                  "id", "stripe_data", "currency")}
    ledger: dict[str, tuple[int, str]] = {}
    for account, total, currency in (LedgerEntry.objects.filter(account__in=[c.stripe_customer_id for c in accounts])
                                     .order_by("account", "period").values_list("account", "total", "currency")):
        ledger[account] = (total, currency)  # the latest period wins
    mismatched, unknown = [], []
    for c in accounts:
        price, rate = prices.get(c.price_id), ledger.get(c.stripe_customer_id or "")
        if price is None or price[0] is None or rate is None:
            unknown.append(c.email)
        elif price != rate:
            mismatched.append(f"{c.email} (Stripe {price[0]} {price[1]}, ledger {rate[0]} {rate[1]})")
    if mismatched:
        return FAIL, "Differs: " + "; ".join(mismatched[:WAITING_SHOWN])
    if unknown or not accounts:
        return UNKNOWN, (f"No Stripe price or no ledger rate for {counted(len(unknown), 'account')} (import the ledger; "
                         "prices come from dj-stripe's mirror): " + ", ".join(unknown[:WAITING_SHOWN])) if unknown \
            else "No account in the cohort."
    return OK, f"All {len(accounts)} accounts pay their ledger rate."


def cohort_checklist(cohort: Cohort) -> list[dict]:
    """Reference 002's pre-cohort checklist, each item with a state (ok, fail, unknown, manual) and why."""
    accounts = list(Customer.objects.filter(cohort=cohort.name).only(
        "pk", "email", "stripe_customer", "subscription_id", "subscription_status", "price_id"))
    ids = [c.pk for c in accounts]
    no_sub = [c.email for c in accounts if not c.subscription_id or c.subscription_status not in ENTITLED]
    finalized = WebhookEvent.objects.filter(type="invoice.finalized", livemode=False,
                                            status=WebhookEvent.Status.PROCESSED).count()
    rendered = InvoiceEvent.objects.filter(kind="pdf_rendered")
    cohort_pdfs = rendered.filter(invoice__customer_id__in=ids).count()
    test_pdfs = rendered.filter(invoice__data__livemode=False).count()
    bcc_sent = InvoiceEvent.objects.filter(kind="email_sent", data__bcc=True).exists()
    with_history = Invoice.objects.filter(customer_id__in=ids).values("customer_id").distinct().count()
    price_state, price_detail = _flat_price_check(accounts)
    items = [
        ("Stripe subscription created for each customer in the cohort", (FAIL, f"No active subscription: "
         f"{', '.join(no_sub[:WAITING_SHOWN])}") if no_sub else (OK, f"{len(accounts)} accounts subscribed")
         if accounts else (UNKNOWN, "No account in the cohort.")),
        ("Flat price matches the legacy ledger rate", (price_state, price_detail)),
        ("Metered prices match the legacy usage tiers", (MANUAL, "Compare the tiers in Stripe with the legacy system.")),
        ("Metering signal tested for each account", (MANUAL, "Report usage for each account; check it in Stripe.")),
        ("Test-mode invoice.finalized received and processed",
         (OK, f"{finalized} processed") if finalized else (FAIL, "None yet: finalize a test-mode invoice.")),
        ("A test PDF was rendered", (OK, f"{cohort_pdfs} for this cohort, {test_pdfs} from test mode")
         if cohort_pdfs or test_pdfs else (FAIL, "No PDF rendered for this cohort or in test mode yet.")),
        ("Invoice email BCC is set (bookkeeping copy)",
         (OK, f"BILLING_BCC_ADDRESS is set{'; an invoice email went out with it' if bcc_sent else ''}")
         if settings.BILLING_BCC_ADDRESS else (FAIL, "BILLING_BCC_ADDRESS is not set.")),
        ("Accounting picks up test-mode Stripe events", (MANUAL, "Confirm with the accounting integration.")),
        ("Historical invoices exported/accessible (14-year retention)",
         (MANUAL, f"{with_history} of {len(accounts)} accounts have invoices in the console; "
                  "backfill with import_invoices_from_stripe; retention in docs/runbook.md.")),
        ("Rollback plan: the cohort can go back to the legacy system",
         (OK, "The console emails this cohort's invoices; switch it off to send the cohort back.")
         if cohort.console_emails_invoices else (OK, "Rolled back: the legacy system emails this cohort's invoices.")),
    ]
    return [{"label": label, "state": state, "detail": detail} for label, (state, detail) in items]
