from django.core.management.base import BaseCommand, CommandError

from billing_console.invoicing.reconciliation import ReconcileScopeError, reconcile_scope, reconciliation_run
from billing_console.wording import counted


class Command(BaseCommand):
    help = "Compare Stripe's view with the console's (subscriptions, invoices, entitlements, cohort ledgers)."

    def add_arguments(self, parser):
        parser.add_argument("--customer", default="", help="Only this customer: email or Stripe id (cus_...).")
        parser.add_argument("--since", default="", help="Only invoices created on or after this date (YYYY-MM-DD).")

    def handle(self, *args, customer="", since="", **options):
        try:
            scope = reconcile_scope(customer=customer, since=since)
        except ReconcileScopeError as exc:
            raise CommandError(str(exc)) from None
        run = reconciliation_run(scope=scope, triggered_by="command")
        checked = ", ".join(f"{k} {v}" for k, v in run.checked.items() if isinstance(v, int) and not isinstance(v, bool))
        if run.status == run.Status.FAILED:
            raise CommandError(f"Reconciliation run #{run.pk} failed: {run.error}")
        if run.status == run.Status.DRIFT:
            self.stdout.write(self.style.WARNING(f"Run #{run.pk}: DRIFT, {counted(run.drift_count, 'item')}; checked {checked}"))
            for kind, n in sorted((run.checked.get("by_kind") or {}).items()):
                self.stdout.write(f"  {kind}: {n}")
            raise SystemExit(2)
        self.stdout.write(self.style.SUCCESS(f"Run #{run.pk}: CLEAN; checked {checked}"))
