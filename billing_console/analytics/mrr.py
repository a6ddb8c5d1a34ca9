"""MRR from invoice lines: a pure function of invoices and subscription endings (no ORM here).

The rules, in one place (the selectors' docstrings point here):

* Source: subscription lines of finalized invoices (status paid, open or uncollectible; drafts and
  voided invoices are not revenue). An open invoice still counts: a past_due subscription is in MRR
  until it ends, as in Stripe's Billing overview.
* A line's monthly value: its amount minus its `discount_amounts` (coupons applied, tax never
  included because line amounts are pre-tax), normalised to one month from the length of the period it
  bills: a period of about N calendar months (28+ days, rounded to whole months) is divided by N
  (quarterly /3, yearly /12); a period of N weeks is multiplied by 52/12/N (Stripe's weekly
  factor); other short periods by 365/12/days. Quantity is already in the line's amount. Rounded
  half up to the minor unit, per line.
* A proration line with a positive amount (mid-period upgrade, downgrade or quantity change) starts
  the item's new rate at the line's start: its amount scaled back to the full billing cycle
  (amount x cycle / remaining), where the cycle is the regular line of the same item that ends at
  the same moment (30 days when no such line is stored). When the next period bills the same price
  in full, its rate is used instead (Stripe rounds prorated amounts, so scaling back is only near). Negative proration lines (credit for unused time) only stop the old rate, which
  the new one supersedes. One-off invoice items are not recurring revenue and never count.
* A line's rate lasts from its period start until the next line of the same subscription item
  starts, the subscription ends (its `customer.subscription.deleted` event, or the customer row
  saying it ended), or, for the newest line of a subscription still running, until its period end
  plus RENEWAL_GRACE (Stripe finalizes the renewal invoice about an hour after the period ends).
* A customer's MRR at an instant is the sum of the rates covering it, per currency. A line whose
  amount before discounts is zero is a trial period: the customer is trialing, with no MRR.
* Refunds and credit notes do not change MRR (Stripe: MRR is what the subscription bills, not what
  was kept); the invoice stays paid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

COUNTED_STATUSES = ("paid", "open", "uncollectible")
UNPAID_STATUSES = ("open", "uncollectible")
RENEWAL_GRACE = 3 * 86400
DAY = 86400
INVOLUNTARY_REASONS = ("payment_failed", "payment_disputed")


def div_round(numerator: int, denominator: int) -> int:
    """Integer division rounded half away from zero (money stays integer)."""
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    n, d = abs(numerator), abs(denominator)
    return sign * ((2 * n + d) // (2 * d))


def monthly_amount(amount: int, seconds: int) -> int:
    """`amount` billed for a period `seconds` long, as a monthly amount (see the module's rules)."""
    days = round(seconds / DAY)
    if days <= 0:
        return 0
    if days >= 28:
        return div_round(amount, max(1, round(days / 30.436875)))
    if days % 7 == 0:
        return div_round(amount * 52, 12 * (days // 7))
    return div_round(amount * 365, 12 * days)


@dataclass
class Segment:
    """One rate of one subscription item over [start, end) in epoch seconds."""
    subscription: str
    item: str
    start: int
    end: int
    rate: int
    trial: bool
    plan: str
    created: int = 0


@dataclass
class Ending:
    at: int
    involuntary: bool


@dataclass
class CustomerHistory:
    key: str
    currency: str
    segments: list[Segment] = field(default_factory=list)
    # subscription id -> was its last invoice left unpaid (the fallback for the churn reason)
    unpaid_last: dict[str, bool] = field(default_factory=dict)
    endings: dict[str, Ending] = field(default_factory=dict)

    def covering(self, at: int) -> list[Segment]:
        return [s for s in self.segments if s.start <= at < s.end]

    def mrr_at(self, at: int) -> int:
        return sum(s.rate for s in self.covering(at))

    def trialing_at(self, at: int) -> bool:
        covering = self.covering(at)
        return bool(covering) and all(s.trial for s in covering)

    def plan_at(self, at: int) -> str:
        paying = [s for s in self.covering(at) if s.rate > 0]
        return max(paying, key=lambda s: s.rate).plan if paying else ""

    def paid_before(self, at: int) -> bool:
        return any(s.rate > 0 and s.start < at for s in self.segments)

    def churn_involuntary(self, paying_at: int) -> bool:
        """Were the subscriptions that paid at `paying_at` ended by failed payments?"""
        subs = {s.subscription for s in self.covering(paying_at) if s.rate > 0}
        for sub in subs:
            ending = self.endings.get(sub)
            if ending is not None:
                if ending.involuntary:
                    return True
            elif self.unpaid_last.get(sub):
                return True
        return False

    def first_paid_after_trial(self) -> int | None:
        """When a trial turned paid: the start of the first paying segment after a trial segment."""
        trial_seen = False
        for s in sorted(self.segments, key=lambda s: (s.start, s.created)):
            if s.trial:
                trial_seen = True
            elif s.rate > 0 and trial_seen:
                return s.start
        return None


# --- Reading lines ------------------------------------------------------------------------------
def _ts(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def line_fields(line: dict, invoice_subscription: str) -> dict | None:
    """What MRR needs from one invoice line (current and older API shapes), or None when the line is not
    a subscription's recurring charge."""
    if not isinstance(line, dict):
        return None
    parent = line.get("parent") if isinstance(line.get("parent"), dict) else {}
    sub_details = parent.get("subscription_item_details") if isinstance(parent.get("subscription_item_details"), dict) else {}
    item_details = parent.get("invoice_item_details") if isinstance(parent.get("invoice_item_details"), dict) else {}
    kind = parent.get("type")
    if kind == "subscription_item_details":
        proration = bool(sub_details.get("proration"))
        subscription = sub_details.get("subscription") or invoice_subscription
        item = sub_details.get("subscription_item") or ""
    elif kind == "invoice_item_details":
        # An invoice item is recurring revenue only as a proration of a subscription.
        if not item_details.get("proration") or not (item_details.get("subscription") or invoice_subscription):
            return None
        proration, subscription, item = True, item_details.get("subscription") or invoice_subscription, ""
    elif line.get("type") == "subscription":  # older API
        proration = bool(line.get("proration"))
        subscription = line.get("subscription") or invoice_subscription
        item = line.get("subscription_item") or ""
    elif line.get("type") == "invoiceitem" and line.get("proration") and (line.get("subscription") or invoice_subscription):
        proration, subscription, item = True, line.get("subscription") or invoice_subscription, ""
    else:
        return None
    period = line.get("period") or {}
    start, end = _ts(period.get("start")), _ts(period.get("end"))
    amount = line.get("amount")
    if start is None or end is None or end <= start or not isinstance(amount, int) or isinstance(amount, bool):
        return None
    discounts = sum(d.get("amount") or 0 for d in (line.get("discount_amounts") or []) if isinstance(d, dict))
    pricing = line.get("pricing") if isinstance(line.get("pricing"), dict) else {}
    details = pricing.get("price_details") if isinstance(pricing.get("price_details"), dict) else {}
    price = details.get("price") or ""
    for older in ("price", "plan"):  # older API: the price (or plan) object on the line
        if not price and isinstance(line.get(older), dict):
            price = line[older].get("id") or ""
    if isinstance(price, dict):
        price = price.get("id") or ""
    # Without a subscription item id (an invoice-item proration), the price stands in for the item.
    return {"subscription": subscription or "", "item": item or price or "item", "price": price or "",
            "proration": proration, "start": start, "end": end, "amount": amount, "net": amount - discounts}


@dataclass
class InvoiceRow:
    """The columns of one Invoice the engine reads."""
    customer_key: str
    currency: str
    subscription_id: str
    status: str
    created: int
    lines: list


def build_history(key: str, currency: str, invoices: list[InvoiceRow], *, endings: dict[str, Ending],
                  plan_for_price, ended_subscriptions: set[str] = frozenset()) -> CustomerHistory:
    """Every rate segment of one customer in one currency (see the module's rules)."""
    history = CustomerHistory(key=key, currency=currency)
    regular: list[tuple[int, dict]] = []
    prorations: list[tuple[int, dict]] = []
    last_invoice: dict[str, tuple[int, str]] = {}
    for inv in invoices:
        if inv.subscription_id:
            seen = last_invoice.get(inv.subscription_id)
            if seen is None or inv.created >= seen[0]:
                last_invoice[inv.subscription_id] = (inv.created, inv.status)
        if inv.status not in COUNTED_STATUSES:
            continue
        for line in inv.lines or []:
            fields = line_fields(line, inv.subscription_id)
            if fields is None:
                continue
            (prorations if fields["proration"] else regular).append((inv.created, fields))
    history.unpaid_last = {sub: status in UNPAID_STATUSES for sub, (_, status) in last_invoice.items()}

    raw: list[Segment] = []
    for created, f in regular:
        raw.append(Segment(subscription=f["subscription"], item=f["item"], start=f["start"], end=f["end"],
                           rate=monthly_amount(max(f["net"], 0), f["end"] - f["start"]), trial=f["amount"] == 0,
                           plan=plan_for_price(f["price"]), created=created))
    for created, f in prorations:
        if f["net"] <= 0:
            continue
        # The billing cycle this proration falls in: the regular line of the same item (else of the same
        # subscription) that ends when the proration ends.
        cycle = next((s for s in raw if s.subscription == f["subscription"] and s.end == f["end"]
                      and (s.item == f["item"] or f["item"] == "item" or not f["price"])), None)
        if cycle is None:
            cycle = next((s for s in raw if s.subscription == f["subscription"] and s.end == f["end"]), None)
        cycle_len = (cycle.end - cycle.start) if cycle else 30 * DAY
        full = div_round(f["net"] * cycle_len, f["end"] - f["start"])
        item = cycle.item if cycle is not None else f["item"]
        plan = plan_for_price(f["price"])
        rate = monthly_amount(full, cycle_len)
        # Stripe rounds the prorated amount, so scaling it back can be off by a few cents; when the next
        # period bills the same price in full, that is the rate.
        renewal = next((s for s in raw if s.subscription == f["subscription"] and s.item == item
                        and s.start == f["end"] and s.plan == plan and not s.trial), None)
        raw.append(Segment(subscription=f["subscription"], item=item, start=f["start"], end=f["end"],
                           rate=renewal.rate if renewal is not None else rate, trial=False, plan=plan,
                           created=created))

    history.endings = dict(endings)
    by_item: dict[tuple[str, str], list[Segment]] = {}
    for seg in raw:
        by_item.setdefault((seg.subscription, seg.item), []).append(seg)
    newest_end_per_sub: dict[str, int] = {}
    for seg in raw:
        newest_end_per_sub[seg.subscription] = max(newest_end_per_sub.get(seg.subscription, 0), seg.end)
    for (sub, _), segs in by_item.items():
        segs.sort(key=lambda s: (s.start, s.created))
        ending = history.endings.get(sub)
        for i, seg in enumerate(segs):
            end = seg.end
            if i + 1 < len(segs):
                end = min(end, segs[i + 1].start) if segs[i + 1].start > seg.start else seg.end
                if segs[i + 1].start == seg.start:
                    continue  # a newer line for the same start replaces this one
            elif ending is None and sub not in ended_subscriptions and seg.end == newest_end_per_sub[sub]:
                end = seg.end + RENEWAL_GRACE  # the renewal invoice may not be finalized yet
            if ending is not None:
                end = min(end, ending.at)
            if end > seg.start:
                history.segments.append(Segment(sub, seg.item, seg.start, end, seg.rate, seg.trial, seg.plan,
                                                seg.created))
    return history


# --- Months and movements -----------------------------------------------------------------------
def month_starts(last: datetime, count: int) -> list[datetime]:
    """The first instants (UTC) of `count` months ending with `last`'s month, oldest first."""
    y, m = last.year, last.month
    out = []
    for _ in range(count):
        out.append(datetime(y, m, 1, tzinfo=dt_timezone.utc))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1]


def next_month(moment: datetime) -> datetime:
    return datetime(moment.year + (moment.month == 12), moment.month % 12 + 1, 1, tzinfo=dt_timezone.utc)


MOVEMENTS = ("new", "expansion", "contraction", "churned", "reactivated")


def classify(prev: int, cur: int, paid_before: bool) -> str:
    """Baremetrics' and Stripe's movement names for one customer between two month ends."""
    if prev == 0 and cur > 0:
        return "reactivated" if paid_before else "new"
    if prev > 0 and cur == 0:
        return "churned"
    if cur > prev:
        return "expansion"
    if cur < prev:
        return "contraction"
    return ""


def instants(months: list[datetime], now: datetime) -> list[int]:
    """The instant each month is measured at: its last second (a period starting on the 1st belongs to the
    new month), or now for the month still running."""
    return [min(int(next_month(m).timestamp()) - 1, int(now.timestamp())) for m in months]

