"""What a customer is told about their subscription, decided in one place for every state.

`subscription_copy` is the single answer the manage page, the emails, the support console's customer
page and the licence API read, so no screen can say "Next payment" beside "Subscription ended". It is
built from the customer row (the entitlement selector's inputs) and the customer's invoices (what is
owed now, what was paid); it never re-decides entitlement, only words it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.utils import timezone

from billing_console.models import Customer, Dispute, Invoice
from billing_console.wording.discount import (discount_in_force, discount_used_since_start, discount_words,
                                              discounted_amount)
from billing_console.wording.money import money_format
from billing_console.stripe.statuses import ENDED as ENDED_STATUSES
from billing_console.stripe.statuses import SubscriptionStatus
from billing_console.selectors import Entitlement, Reason, customer_entitlement, plan_settings


class State:
    NONE = "none"
    TRIALING = SubscriptionStatus.TRIALING.value
    ACTIVE = "active"
    ENDING = "ending"  # active, set to cancel at the period end
    PAST_DUE = SubscriptionStatus.PAST_DUE.value
    UNPAID = SubscriptionStatus.UNPAID.value
    LOCKED = "locked"  # dunning hard lock
    DISPUTED = "disputed"  # a payment is disputed and DISPUTE_LOCKS_ACCESS is on
    PAUSED = SubscriptionStatus.PAUSED.value
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"  # period and offline grace ran out with no renewal we know of
    ENDED = "ended"


# Licence wording per state: a licence row may still say "active" in the database while the subscription
# behind it has ended; the customer and support see the subscription's truth.
LICENCE_WORDS = {
    State.NONE: ("No subscription", "ended"),
    State.TRIALING: ("Active (trial)", "active"),
    State.ACTIVE: ("Active", "active"),
    State.ENDING: ("Active until the subscription ends", "active"),
    State.PAST_DUE: ("Active (payment overdue)", "warn"),
    State.UNPAID: ("Suspended (unpaid)", "suspended"),
    State.LOCKED: ("Suspended (payment overdue)", "suspended"),
    State.DISPUTED: ("Paused (payment disputed)", "suspended"),
    State.PAUSED: ("Paused", "suspended"),
    State.INCOMPLETE: ("Not started (first payment missing)", "suspended"),
    State.EXPIRED: ("Expired", "ended"),
    State.ENDED: ("Ended", "ended"),
}


@dataclass(frozen=True)
class SubscriptionCopy:
    state: str
    headline: str
    lines: tuple[str, ...]
    tone: str  # ok | warn | bad | idle
    facts: tuple[tuple[str, str], ...] = ()  # (label, value) pairs, e.g. ("Next payment", "$9.00 on 27 February 2027")
    amounts: dict = field(default_factory=dict)  # owed / next_payment / paid_until as display strings
    pay_url: str = ""  # Stripe's hosted page of the oldest invoice still owed
    actions: frozenset = frozenset()  # pay | portal | resubscribe | cancel_undo
    entitled: bool = False

    @property
    def detail(self) -> str:
        return " ".join(self.lines)

    def _licence(self) -> tuple[str, str]:
        words, tone = LICENCE_WORDS[self.state]
        # The licence never reads differently from what the licence API answers: the entitlement decides.
        if self.entitled and tone in ("suspended", "ended"):
            return f"Active ({self.state.replace('_', ' ')})", "warn"
        if not self.entitled and tone in ("active", "warn"):
            return "Suspended", "suspended"
        return words, tone

    @property
    def licence_status(self) -> str:
        return self._licence()[0]

    @property
    def licence_tone(self) -> str:
        return self._licence()[1]

    def can(self, action: str) -> bool:
        return action in self.actions


def licence_status_words(licence, copy: SubscriptionCopy, *, current: bool = True) -> tuple[str, str]:
    """(words, tone) for a licence row: a licence support revoked or suspended says so; otherwise the
    subscription's state decides, so a canceled subscription's licence reads "Ended", never "Active"."""
    if licence.status != "active":
        return licence.get_status_display(), "ended" if licence.status == "revoked" else "suspended"
    if not current:
        return "Ended (an earlier subscription)", "ended"
    return copy.licence_status, copy.licence_tone


def day(dt: datetime | None) -> str:
    return timezone.localtime(dt).strftime("%-d %B %Y") if dt else ""


def invoice_amount_remaining(invoice: Invoice) -> int:
    """What is still owed on an invoice: Stripe's `amount_remaining`, else amount due minus paid."""
    if invoice.status in ("paid", "void", "uncollectible", "draft", ""):
        return 0
    remaining = (invoice.data or {}).get("amount_remaining")
    if isinstance(remaining, int) and not isinstance(remaining, bool):
        return max(remaining, 0)
    return max(invoice.amount_due - invoice.amount_paid, 0)


def invoice_service_period(invoice: Invoice) -> tuple[datetime | None, datetime | None]:
    """The period the invoice pays for, from its lines (Stripe sets a first invoice's own period_start and
    period_end to its creation instant). Falls back to the invoice's fields only when no line has a period."""
    starts, ends = [], []
    for line in (((invoice.data or {}).get("lines") or {}).get("data") or []):
        period = line.get("period") or {} if isinstance(line, dict) else {}
        start, end = period.get("start"), period.get("end")
        if isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool):
            starts.append(start)
            ends.append(end)
    if starts:
        return (datetime.fromtimestamp(min(starts), tz=dt_timezone.utc),
                datetime.fromtimestamp(max(ends), tz=dt_timezone.utc))
    if invoice.period_start and invoice.period_end and invoice.period_end > invoice.period_start:
        return invoice.period_start, invoice.period_end
    return None, None


def customer_paid_until(customer: Customer, invoices: list[Invoice] | None = None) -> datetime | None:
    """The end of the last period actually paid: the latest line period end over the paid invoices of the
    customer's current subscription (a paid $0 trial invoice counts: the trial was granted)."""
    if invoices is None:
        invoices = list(Invoice.objects.filter(customer=customer, status="paid").only("data", "period_start", "period_end",
                                                                                     "status", "subscription_id"))
    ends = []
    for invoice in invoices:
        if invoice.status != "paid":
            continue
        if customer.subscription_id and invoice.subscription_id and invoice.subscription_id != customer.subscription_id:
            continue
        end = invoice_service_period(invoice)[1]
        if end:
            ends.append(end)
    return max(ends) if ends else None


def _owed(invoices: list[Invoice]) -> tuple[int, str, str, Invoice | None]:
    """(total owed, currency, pay url of the oldest owed invoice, that invoice)."""
    owed = [i for i in invoices if invoice_amount_remaining(i) > 0]
    if not owed:
        return 0, "", "", None
    owed.sort(key=lambda i: i.stripe_created or timezone.now())
    currency = owed[0].currency
    total = sum(invoice_amount_remaining(i) for i in owed if i.currency == currency)
    first = next((i for i in owed if i.hosted_invoice_url), None)
    return total, currency, first.hosted_invoice_url if first else "", owed[0]


def price_unit_amount(price_id: str) -> tuple[int, str] | None:
    """(unit amount in minor units, currency) of a price in dj-stripe's mirror; None when it is not there."""
    if not price_id:
        return None
    try:
        from djstripe.models import Price

        # dj-stripe 2.11 keeps a price's amount only in the Stripe object it stores.
        row = Price.objects.filter(id=price_id).values_list("currency", "stripe_data").first()
    except Exception:  # the mirror is optional: the words stand without the amount
        return None
    amount = ((row[1] or {}).get("unit_amount") if row else None)
    if not isinstance(amount, int) or isinstance(amount, bool):
        return None
    return amount, row[0]


def price_amount(price_id: str, quantity: int = 1) -> str:
    """A price times a quantity, formatted, from dj-stripe's mirror when it has the price; "" otherwise."""
    found = price_unit_amount(price_id)
    return money_format(found[0] * max(int(quantity or 1), 1), found[1]) if found else ""


def _price(customer: Customer) -> tuple[int, str] | None:
    """(amount, currency): the subscription price times its seats, from dj-stripe's mirror when it has the price."""
    found = price_unit_amount(customer.price_id)
    return (found[0] * max(int(getattr(customer, "quantity", 1) or 1), 1), found[1]) if found else None


def _discount_applies(customer: Customer, invoices: list[Invoice], at: datetime) -> bool:
    discount = customer.discount if isinstance(getattr(customer, "discount", None), dict) else {}
    used = (discount.get("duration") == "once"
            and discount_used_since_start(discount, invoices, customer.subscription_id))
    return discount_in_force(discount, at=at, used=used)


def _paid_with(invoice: Invoice, discount: dict) -> bool:
    """Whether the invoice was reduced by this discount (by none when `discount` is {})."""
    if not discount:
        return invoice.discount <= 0
    if invoice.discount <= 0:
        return False
    ids = set()
    for item in (invoice.data or {}).get("total_discount_amounts") or []:
        named = item.get("discount") if isinstance(item, dict) else None
        named = named.get("id") if isinstance(named, dict) else named
        if isinstance(named, str) and named:
            ids.add(named)
    # Not named on either side (older shapes): the discount is taken to be the same.
    return not discount.get("discount") or not ids or discount["discount"] in ids


def _next_amount(customer: Customer, invoices: list[Invoice], *, price_lookup: bool, renews_at: datetime | None) -> str:
    """The next renewal's amount when known: the last paid, non-zero invoice of this subscription when the
    discount (or none) it had still applies at the renewal, else the price (a trial has no paid invoice yet),
    less the discount that will apply. Never a pre-discount price for a discounted renewal: when the
    discount's amount is not known, no amount."""
    applies = _discount_applies(customer, invoices, renews_at or timezone.now())
    for invoice in sorted(invoices, key=lambda i: i.stripe_created or timezone.now(), reverse=True):
        if (invoice.status == "paid" and invoice.total > 0
                and (not customer.subscription_id or invoice.subscription_id in ("", customer.subscription_id))):
            if _paid_with(invoice, customer.discount if applies else {}):
                return money_format(invoice.total, invoice.currency)  # its total already has the discount taken off
            break
    price = _price(customer) if price_lookup else None
    if price is None:
        return ""
    amount, currency = price
    if applies:
        amount = discounted_amount(amount, currency, customer.discount)
        if amount is None:
            return ""
    return money_format(amount, currency)


def _discount_facts(customer: Customer, invoices: list[Invoice], now: datetime) -> list[tuple[str, str]]:
    """("Discount", words) while the customer's discount still takes something off."""
    words = discount_words(getattr(customer, "discount", None))
    return [("Discount", words)] if words and _discount_applies(customer, invoices, now) else []


def _pricing_url() -> str:
    return settings.PRICING_URL


def subscription_state(customer: Customer, ent: Entitlement) -> str:
    status = customer.subscription_status
    if ent.reason == Reason.NO_SUBSCRIPTION:
        return State.NONE
    if ent.reason == Reason.CANCELED or status in ENDED_STATUSES:
        return State.ENDED
    if ent.reason == Reason.HARD_LOCKED:
        return State.LOCKED
    if ent.reason == Reason.DISPUTED:
        return State.DISPUTED
    if ent.reason == Reason.INCOMPLETE:
        return State.INCOMPLETE
    if status == SubscriptionStatus.UNPAID:
        return State.UNPAID
    if status == SubscriptionStatus.PAUSED or getattr(customer, "collection_paused", False):
        return State.PAUSED
    if ent.reason in (Reason.PAST_DUE, Reason.PAST_DUE_SOFT_LOCK) or status == SubscriptionStatus.PAST_DUE:
        return State.PAST_DUE  # an unpaid renewal is what to say, even once the offline grace ran out
    if ent.reason == Reason.EXPIRED:
        return State.EXPIRED
    if status == SubscriptionStatus.TRIALING:
        return State.TRIALING
    if customer.cancel_at_period_end:
        return State.ENDING
    return State.ACTIVE


def subscription_copy(customer: Customer, *, invoices: list[Invoice] | None = None, ent: Entitlement | None = None,
                      now: datetime | None = None, price_lookup: bool = True) -> SubscriptionCopy:
    """The words for the customer's subscription state, with what is owed, the pay link and what they may do.

    `invoices`: the customer's recent invoices (read here when None; [] words it without amounts owed).
    `price_lookup=False` reads nothing more: no price, no disputed payment (the licence API's hot path)."""
    ent = ent or customer_entitlement(customer, now=now)
    if invoices is None:
        invoices = list(Invoice.objects.filter(customer=customer).order_by("-stripe_created")[:24]) if customer.pk else []
    state = subscription_state(customer, ent)
    plan = plan_settings(customer.plan)["name"]
    end = day(ent.current_period_end)
    owed, currency, pay_url, oldest = _owed(invoices)
    owed_text = money_format(owed, currency) if owed else ""
    portal = frozenset({"portal"}) if customer.stripe_customer_id else frozenset()
    pay = frozenset({"pay"}) if pay_url else frozenset()
    amounts = {"owed": owed_text} if owed_text else {}
    entitled = ent.entitled

    # The discount is said while the subscription runs (an ended one takes nothing off anything).
    discount_facts = ([] if state in (State.NONE, State.ENDED)
                      else _discount_facts(customer, invoices, now or timezone.now()))

    def make(headline, lines, tone, facts=(), actions=frozenset(), **extra_amounts):
        return SubscriptionCopy(state, headline, tuple(line for line in lines if line), tone,
                                (*facts, *discount_facts),
                                {**amounts, **{k: v for k, v in extra_amounts.items() if v}},
                                pay_url if "pay" in actions else "", frozenset(actions), entitled)

    owed_facts = [("Amount due now", owed_text)] if owed_text else []
    pay_line = ("Pay it from the link below" if pay_url else "Pay it from the billing portal") + (
        " to keep your access." if entitled else "; access is restored within minutes.")

    if state == State.NONE:
        return make("No subscription yet", ["Choose a plan on the pricing page."], "idle", actions={"resubscribe"})
    if state == State.ENDED:
        ended_on = ent.current_period_end
        if customer.access_state == Customer.AccessState.CANCELED and customer.access_state_changed_at:
            ended_on = min(filter(None, [ended_on, customer.access_state_changed_at]))
        if ended_on and ended_on > (now or timezone.now()):
            ended_on = now or timezone.now()
        return make(f"Subscription ended on {day(ended_on)}" if ended_on else "Subscription ended",
                    ["Your licence no longer activates devices and your deployment gets no more updates.",
                     f"To come back, choose a plan on the pricing page ({_pricing_url()}): "
                     "your account, licence key and deployment settings are kept."],
                    "bad", facts=[("Ended on", day(ended_on))] if ended_on else [], actions={"resubscribe"} | portal)
    if state == State.INCOMPLETE:
        return make("First payment not completed",
                    [f"{owed_text} is due to start your {plan} subscription." if owed_text else
                     f"The first payment of your {plan} subscription has not gone through.",
                     "Finish the payment to start; Stripe cancels the attempt after 23 hours."],
                    "warn", facts=owed_facts, actions=pay | portal)
    if state == State.LOCKED:
        return make("Locked for non-payment",
                    [f"{owed_text} is overdue." if owed_text else "An invoice is overdue.",
                     "Licences and deployment updates are stopped until it is paid.", pay_line],
                    "bad", facts=owed_facts, actions=pay | portal)
    if state == State.DISPUTED:
        return _disputed(make, customer, invoices, portal, read=price_lookup)
    if state == State.UNPAID:
        return make("Subscription unpaid",
                    [f"{owed_text} is still owed and Stripe has stopped retrying the card." if owed_text else
                     "Stripe has stopped retrying the card.", pay_line],
                    "bad", facts=owed_facts, actions=pay | portal)
    if state == State.PAST_DUE:
        period = ""
        if oldest is not None:
            start, stop = invoice_service_period(oldest)
            period = f" for {day(start)} to {day(stop)}" if start and stop else ""
        soft = ent.reason == Reason.PAST_DUE_SOFT_LOCK
        return make("Payment overdue: access is limited" if soft else "Payment failed: please pay the open invoice",
                    [f"The payment of {owed_text}{period} did not go through." if owed_text else
                     "The last payment did not go through.",
                     ("Access is stopped until it is paid." if not entitled else
                      "Your apps keep working but show a reminder." if soft else "Everything keeps working for now."),
                     "Pay it from the link below or update your card in the billing portal." if pay_url else
                     "Update your card in the billing portal and the invoice is retried."],
                    "warn", facts=owed_facts, actions=pay | portal)
    if state == State.PAUSED:
        access = "You keep access while it is paused." if entitled else "Access is stopped while it is paused."
        if customer.subscription_status == SubscriptionStatus.PAUSED:
            lines = ["Your trial ended without a payment method, so the subscription is paused and no invoice is taken.",
                     access, "Add a card in the billing portal to resume it."]
        else:
            lines = ["Billing is paused: no payment is taken while it is.", access,
                     "Contact support to resume billing."]
        return make(f"{plan} is paused", lines, "warn", facts=owed_facts, actions=pay | portal)
    if state == State.EXPIRED:
        grace = day(ent.grace_ends_at)
        return make("Access expired",
                    [f"The paid period ended on {end}" + (f" and the offline grace on {grace}." if grace else "."),
                     "Renew from the billing portal to get access back."],
                    "bad", actions=portal | {"resubscribe"})
    renews_at = ((getattr(customer, "trial_end", None) if state == State.TRIALING else None)
                 or ent.current_period_end)
    next_amount = _next_amount(customer, invoices, price_lookup=price_lookup, renews_at=renews_at)
    if state == State.TRIALING:
        trial_end = getattr(customer, "trial_end", None) or ent.current_period_end
        if customer.cancel_at_period_end:
            return make(f"Trial ends on {day(trial_end)}",
                        ["The subscription is set to end with the trial: no payment will be taken.",
                         "Keep it from the billing portal before then."],
                        "warn", facts=[("Trial ends on", day(trial_end)), ("Ends on", day(trial_end))], actions=portal)
        then = (f"Then {plan} renews at {next_amount} with the card on file." if next_amount else
                f"Then {plan} renews with the card on file.")
        return make(f"Trial ends on {day(trial_end)}",
                    [then, "Cancel from the billing portal before then and you pay nothing."],
                    "ok", facts=[("Trial ends on", day(trial_end))], actions=portal)
    if state == State.ENDING:
        return make(f"{plan} ends on {end}",
                    ["You keep full access until then. No further payment will be taken.",
                     "Renew from the billing portal to keep your subscription."],
                    "warn", facts=[("Ends on", end)], actions=portal | {"cancel_undo"})
    next_fact = f"{next_amount} on {end}" if next_amount else end
    return make(f"{plan} is active", [f"Renews on {end}." if end else "Your subscription is active."], "ok",
                facts=[("Next payment", next_fact)] if end else [], actions=portal, next_payment=next_fact)


def _disputed(make, customer: Customer, invoices: list[Invoice], portal: frozenset, *, read: bool) -> SubscriptionCopy:
    """DISPUTE_LOCKS_ACCESS is on and a payment is disputed: which one (when `read` allows the query), that
    access is paused until the dispute closes, and who to talk to."""
    dispute = (Dispute.objects.filter(customer=customer, outcome=Dispute.Outcome.OPEN).order_by("-opened_at").first()
               if read and customer.pk else None)
    payment, paid_on = "", ""
    if dispute is not None and dispute.amount > 0 and dispute.currency:
        payment = money_format(dispute.amount, dispute.currency)
        # The invoice it paid, when the dispute is linked to one (a dispute opened before its invoice was
        # recorded is not): the date is said only when known.
        invoice = next((i for i in invoices if i.stripe_id == dispute.invoice_id), None) if dispute.invoice_id else None
        if invoice is None and dispute.invoice_id:
            invoice = Invoice.objects.filter(stripe_id=dispute.invoice_id).first()
        paid_at = ((invoice.data or {}).get("status_transitions") or {}).get("paid_at") if invoice else None
        if isinstance(paid_at, int) and not isinstance(paid_at, bool):
            paid_on = day(datetime.fromtimestamp(paid_at, tz=dt_timezone.utc))
        elif invoice is not None and invoice.stripe_created:
            paid_on = day(invoice.stripe_created)
    what = f"A payment of {payment}" + (f" on {paid_on}" if paid_on else "") if payment else "A payment"
    support = f"contact support at {settings.SUPPORT_EMAIL}" if settings.SUPPORT_EMAIL else "contact support"
    return make("Access paused: a payment is disputed",
                [f"{what} is disputed with your bank.",
                 "Access is paused until the dispute is resolved; it comes back by itself when the dispute is closed.",
                 f"If you did not mean to dispute it, {support}."],
                "bad", facts=[("Disputed payment", f"{payment} on {paid_on}" if paid_on else payment)] if payment else [],
                actions=portal)
