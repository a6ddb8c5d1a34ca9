"""Why a deployment gets no updates because of the subscription, in words the manage page, the deploy page and
the support console share.

The hourly push skips every customer the entitlement selector does not entitle, whether or not their
deployment row is marked paused (only hard locks and ended subscriptions pause it), so the deployment's own
state cannot say "Live" for those: the subscription's state decides the words, and each says what brings
updates back. Built only from the SubscriptionCopy and the Entitlement already read (no query).
"""
from __future__ import annotations

from billing_console.selectors import Entitlement
from billing_console.wording.subscription import State, SubscriptionCopy, day

KEEPS_RUNNING = "Your Worker keeps running the version it has."
PAY = "Pay the open invoice and updates resume within the hour."


def deployment_updates_stopped(copy: SubscriptionCopy, ent: Entitlement) -> str:
    """"" while the customer is entitled (the hourly push serves them); otherwise why updates are stopped
    for this subscription state and what brings them back."""
    if copy.entitled:
        return ""
    state = copy.state
    if state == State.ENDED:
        ended_on = dict(copy.facts).get("Ended on", "")
        why = f"Updates stopped: the subscription ended on {ended_on}." if ended_on else \
            "Updates stopped: the subscription ended."
        return f"{why} {KEEPS_RUNNING} Subscribe again and updates resume by themselves within the hour."
    if state == State.UNPAID:
        return f"Updates stopped: the subscription is unpaid. {PAY} {KEEPS_RUNNING}"
    if state == State.LOCKED:
        return f"Updates stopped: an invoice is overdue and access is locked. {PAY} {KEEPS_RUNNING}"
    if state == State.PAST_DUE:
        return f"Updates stopped: a payment is overdue. {PAY} {KEEPS_RUNNING}"
    if state == State.PAUSED:
        return ("Updates stopped while billing is paused. Updates resume within the hour once the subscription "
                f"resumes. {KEEPS_RUNNING}")
    if state == State.DISPUTED:
        return ("Updates stopped while a payment is disputed. Updates resume within the hour once the dispute is "
                f"closed. {KEEPS_RUNNING}")
    if state == State.EXPIRED:
        until = day(ent.grace_ends_at or ent.current_period_end)
        return (f"Updates stopped: access expired{f' on {until}' if until else ''}. Renew from the billing portal and "
                f"updates resume within the hour. {KEEPS_RUNNING}")
    if state == State.INCOMPLETE:
        return f"Updates wait for the first payment. Finish it and updates start within the hour. {KEEPS_RUNNING}"
    if state == State.NONE:
        return f"Updates stopped: there is no subscription. Choose a plan to get updates again. {KEEPS_RUNNING}"
    return f"Updates stopped: the subscription does not give access right now. {KEEPS_RUNNING}"
