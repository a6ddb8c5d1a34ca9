"""django-q2 entry points for invoices, reconciliation and the daily health report: take ids, call a service."""
from billing_console.services import cron_guard


def deliver_invoice(invoice_id: int) -> None:
    from billing_console.invoicing.services import invoice_deliver

    invoice_deliver(invoice_id=invoice_id)


def invoice_delivery_retry() -> None:
    from billing_console.invoicing.services import invoice_deliver_due

    with cron_guard("invoice_delivery_retry") as run:
        if run is not None:
            # Invoices that ran out of attempts ("failed") make the run show "errors" on the cron list.
            run.counts = invoice_deliver_due()


def reconcile() -> None:
    from billing_console.invoicing.reconciliation import reconciliation_run

    with cron_guard("reconcile") as run:
        if run is not None:
            result = reconciliation_run(triggered_by="cron")
            run.counts = {"drift": result.drift_count, **{k: v for k, v in result.checked.items()
                                                          if isinstance(v, int) and not isinstance(v, bool)}}
            if result.status == result.Status.FAILED:
                run.counts["errors"] = 1


def daily_health_report() -> None:
    from billing_console.ops.summary import ops_daily_report

    with cron_guard("daily_health_report") as run:
        if run is not None:
            report = ops_daily_report()
            run.counts = {"problems": len(report["problems"]), "emailed": int(report["emailed"])}


def reconcile_on_demand(triggered_by: str) -> None:
    """The admin's "Run reconciliation now" (its own run; the daily cron is not blocked by it)."""
    from billing_console.invoicing.reconciliation import reconciliation_run

    reconciliation_run(triggered_by=triggered_by)
