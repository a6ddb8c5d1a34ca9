"""Resync customers from Stripe (the admin's "resync from Stripe" for the command line)."""
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from billing_console.models import AuditEvent, Customer
from billing_console.stripe.gateway import StripeGatewayError
from billing_console.stripe.subscriptions import customer_resync


class Command(BaseCommand):
    help = "Re-read customers' subscription and details from Stripe: sync_customer EMAIL|cus_...|sub_... [...] or --all."

    def add_arguments(self, parser):
        parser.add_argument("who", nargs="*", help="Email, Stripe customer id (cus_...) or subscription id (sub_...).")
        parser.add_argument("--all", action="store_true", help="Every customer linked to Stripe.")

    def handle(self, *args, who, all, **options):
        if all:
            customers = list(Customer.objects.exclude(stripe_customer=None).order_by("pk"))
        elif who:
            customers = []
            for key in who:
                found = Customer.objects.filter(Q(email__iexact=key) | Q(stripe_customer_id=key) | Q(subscription_id=key)).first()
                if found is None:
                    raise CommandError(f"No customer matches {key!r}.")
                customers.append(found)
        else:
            raise CommandError("Give an email, cus_/sub_ id, or --all.")
        failed = 0
        for customer in customers:
            try:
                customer = customer_resync(customer=customer, actor_type=AuditEvent.ActorType.SYSTEM, actor="sync_customer")
            except StripeGatewayError as exc:
                failed += 1
                self.stderr.write(f"{customer.email}: {exc.message}")
                continue
            self.stdout.write(f"{customer.email}: {customer.subscription_status or 'no subscription'} "
                              f"({customer.plan or '-'}), access {customer.access_state}")
        self.stdout.write(f"{len(customers) - failed} resynced, {failed} failed")
        if failed:
            raise CommandError("Some customers could not be resynced.")
