"""Command line for the Stripe sandbox: `python -m sandbox.stripe --help`."""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:12111"
CLI_KEY = "sk_test_sandbox_cli"  # the sandbox accepts any sk_test_ key

DESCRIPTION = """\
The Stripe sandbox: a stateful Stripe test-mode emulator on loopback.

`serve` runs it; every other command talks to a running sandbox over HTTP (--url, default
http://127.0.0.1:12111, which is where `make run` and `python -m sandbox run` start it)."""

EPILOG = """\
make a renewal fail (and recover):
  python -m sandbox.stripe customers                     # find the customer, e.g. cus_...
  python -m sandbox.stripe fail-payments cus_...         # its next charges decline
  python -m sandbox.stripe clock advance --days 31       # renewal: invoice.payment_failed, subscription past_due
  python -m sandbox.stripe invoices --customer cus_...   # the open invoice and its next attempt
  python -m sandbox.stripe succeed-payments cus_...      # charges succeed again
  python -m sandbox.stripe clock advance --days 3        # the retry pays: invoice paid, subscription active
Without a fix, the retries on days 3, 5 and 7 fail too and the subscription is canceled.

refund or dispute a payment:
  python -m sandbox.stripe charges --customer cus_...    # ch_... of each payment
  python -m sandbox.stripe refund in_... --amount 300    # part of a paid invoice back: charge.refunded, refund.created
  python -m sandbox.stripe dispute ch_...                # charge.dispute.created, charge.dispute.funds_withdrawn

Card numbers on the hosted pages: 4242 4242 4242 4242 pays, 4000 0000 0000 0341 declines,
4000 0000 0000 0259 pays then is disputed, 4000 0000 0000 5126 pays but its refunds fail.
Through the API use pm_card_visa, pm_card_chargeDeclined, pm_card_chargeCustomerFail,
pm_card_authenticationRequired (3D Secure: `authenticate pi_...` completes it), pm_card_createDispute,
pm_card_refundFail, or tokens such as tok_visa."""


class CliError(Exception):
    pass


def call(url: str, method: str, path: str, *, json_body=None, form=None, key: str | None = None):
    data, headers = None, {}
    if json_body is not None:
        data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url.rstrip("/") + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise CliError(f"{exc.code}: {message}") from None
    except OSError as exc:
        raise CliError(f"cannot reach the Stripe sandbox at {url}: {exc} (is it running?)") from None


def api_list(args, path: str, filters: dict) -> list[dict]:
    query = urllib.parse.urlencode({"limit": args.limit, **{k: v for k, v in filters.items() if v}})
    return call(args.url, "GET", f"{path}?{query}", key=CLI_KEY)["data"]


def day(timestamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(timestamp)) if timestamp else "-"


def money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}"


def print_rows(rows: list[list[str]], header: list[str]):
    if not rows:
        print("(none)")
        return
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def cmd_serve(args) -> int:
    from .emulator import StripeEmulator

    emulator = StripeEmulator(port=args.port, host=args.host, webhook_url=args.webhook_url,
                              webhook_secret=args.webhook_secret, public_url=args.public_url,
                              state_path=args.state or None, reset=args.reset)
    emulator.start()
    print(f"Stripe sandbox listening on {emulator.url} (set STRIPE_API_HOST={emulator.url})", flush=True)
    if args.state:
        print(f"State {'restored from' if emulator.restored else 'started empty, saved in'} {args.state}", flush=True)
    if args.webhook_url:
        print(f"Delivering signed webhooks to {args.webhook_url}", flush=True)
    try:
        emulator._thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def cmd_customers(args) -> int:
    rows = [[c["id"], c["email"] or "-", c["name"] or "-", day(c["created"])]
            for c in api_list(args, "/v1/customers", {"email": args.email})]
    print_rows(rows, ["id", "email", "name", "created"])
    return 0


def cmd_subscriptions(args) -> int:
    subs = api_list(args, "/v1/subscriptions", {"customer": args.customer, "status": args.status})
    rows = [[s["id"], s["customer"], s["status"], s["items"]["data"][0]["price"]["id"],
             day(s["current_period_end"]), "yes" if s["cancel_at_period_end"] else "no"] for s in subs]
    print_rows(rows, ["id", "customer", "status", "price", "period ends", "cancels at end"])
    return 0


def cmd_invoices(args) -> int:
    invoices = api_list(args, "/v1/invoices", {"customer": args.customer, "status": args.status})
    rows = [[i["id"], i["number"] or "-", i["customer"], i["status"], money(i["total"], i["currency"]),
             i["attempt_count"], day(i["next_payment_attempt"])] for i in invoices]
    print_rows(rows, ["id", "number", "customer", "status", "total", "attempts", "next attempt"])
    return 0


def cmd_payments(args) -> int:
    outcome = "decline" if args.command == "fail-payments" else "succeed"
    answer = call(args.url, "POST", f"/_sandbox/customers/{args.customer}/card", json_body={"outcome": outcome})
    print(f"{answer['customer']}: charges {'succeed' if answer['charges_succeed'] else 'fail'} from now on")
    return 0


def cmd_charges(args) -> int:
    rows = [[c["id"], c["customer"] or "-", c["status"], money(c["amount"], c["currency"]),
             money(c["amount_refunded"], c["currency"]), "yes" if c["disputed"] else "no", c["payment_intent"] or "-",
             day(c["created"])] for c in api_list(args, "/v1/charges", {"customer": args.customer})]
    print_rows(rows, ["id", "customer", "status", "amount", "refunded", "disputed", "payment intent", "created"])
    return 0


def cmd_refund(args) -> int:
    form = {"reason": args.reason} if args.reason else {}
    if args.amount is not None:
        form["amount"] = args.amount
    if args.target.startswith("in_"):
        payments = call(args.url, "GET", "/v1/invoice_payments?" + urllib.parse.urlencode(
            {"invoice": args.target, "status": "paid"}), key=CLI_KEY)["data"]
        if not payments:
            raise CliError(f"invoice {args.target} has no paid payment to refund")
        form["payment_intent"] = payments[0]["payment"]["payment_intent"]
    elif args.target.startswith(("ch_", "py_")):
        form["charge"] = args.target
    elif args.target.startswith("pi_"):
        form["payment_intent"] = args.target
    else:
        raise CliError("give a charge (ch_...), a PaymentIntent (pi_...) or an invoice (in_...)")
    refund = call(args.url, "POST", "/v1/refunds", form=form, key=CLI_KEY)
    print(f"{refund['id']}: {money(refund['amount'], refund['currency'])} of {refund['charge']} {refund['status']}")
    return 0


def cmd_dispute(args) -> int:
    dispute = call(args.url, "POST", f"/_sandbox/charges/{args.charge}/dispute", json_body={"reason": args.reason})
    print(f"{dispute['id']}: {money(dispute['amount'], dispute['currency'])} on {dispute['charge']} "
          f"{dispute['status']} ({dispute['reason']}); evidence due {day(dispute['evidence_details']['due_by'])}")
    return 0


def cmd_authenticate(args) -> int:
    family = "setup_intents" if args.intent.startswith("seti_") else "payment_intents"
    intent = call(args.url, "POST", f"/_sandbox/{family}/{args.intent}/authenticate",
                  json_body={"outcome": "fail" if args.fail else "complete"})
    print(f"{intent['id']}: {intent['status']}")
    return 0


def cmd_clock(args) -> int:
    if args.action == "list":
        answer = call(args.url, "GET", "/_sandbox/clock")
        rows = [["sandbox", "(global)", "ready", answer["iso"], "customers on no test clock"]]
        for clock in api_list(args, "/v1/test_helpers/test_clocks", {}):
            rows.append([clock["id"], clock["name"] or "-", clock["status"], day(clock["frozen_time"]),
                         f"deletes {day(clock['deletes_after'])}"])
        print_rows(rows, ["clock", "name", "status", "time", "note"])
        return 0
    seconds = args.days * 86400 + args.hours * 3600 + args.seconds
    if args.clock not in (None, "sandbox"):
        clock = call(args.url, "GET", f"/v1/test_helpers/test_clocks/{urllib.parse.quote(args.clock)}", key=CLI_KEY)
        if args.action == "advance":
            if not seconds:
                raise CliError("give --days, --hours or --seconds")
            before = call(args.url, "GET", "/v1/events?limit=1", key=CLI_KEY)["data"]
            clock = call(args.url, "POST", f"/v1/test_helpers/test_clocks/{clock['id']}/advance",
                         form={"frozen_time": clock["frozen_time"] + int(seconds)}, key=CLI_KEY)
            clock = call(args.url, "GET", f"/v1/test_helpers/test_clocks/{clock['id']}", key=CLI_KEY)
            query = {"limit": 100, **({"ending_before": before[0]["id"]} if before else {})}
            emitted = call(args.url, "GET", "/v1/events?" + urllib.parse.urlencode(query), key=CLI_KEY)["data"]
            print(f"{clock['id']}: {day(clock['frozen_time'])} ({clock['status']})")
            for event in reversed(emitted):
                print(f"  {event['type']}")
            return 0
        print(f"{clock['id']}: {day(clock['frozen_time'])} ({clock['status']})")
        return 0
    if args.action == "show":
        answer = call(args.url, "GET", "/_sandbox/clock")
    else:
        payload = {k: v for k, v in (("days", args.days), ("hours", args.hours), ("seconds", args.seconds)) if v}
        if not payload:
            raise CliError("give --days, --hours or --seconds")
        answer = call(args.url, "POST", "/_sandbox/clock/advance", json_body=payload)
    print(f"clock: {answer['iso']} (offset {answer['offset_seconds']} s)")
    for event_type in answer.get("events", []):
        print(f"  {event_type}")
    return 0


def cmd_state(args) -> int:
    answer = call(args.url, "GET", "/_sandbox/state")
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(answer["objects"].items()))
    if not answer["state_path"]:
        print(f"in memory only, not saved ({counts}; {answer['events']} events)")
    elif answer["restored"]:
        print(f"restored from {answer['state_path']} ({counts}; {answer['events']} events)")
    else:
        print(f"started empty; saved in {answer['state_path']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m sandbox.stripe", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=raw)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, description, handler):
        sub = commands.add_parser(name, help=help, description=description, formatter_class=raw)
        sub.set_defaults(handler=handler)
        if name != "serve":
            sub.add_argument("--url", default=DEFAULT_URL, help=f"the running sandbox (default {DEFAULT_URL})")
        return sub

    serve = command("serve", "run the emulator until Ctrl-C",
                    "Run the Stripe sandbox until Ctrl-C. Without --state it keeps everything in memory.",
                    cmd_serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    serve.add_argument("--webhook-url", help="where to deliver signed events, e.g. the console's webhook")
    serve.add_argument("--webhook-secret", help="the whsec_... secret that signs them")
    serve.add_argument("--public-url", help="base URL browsers use for hosted pages, if not the listen address")
    serve.add_argument("--state", metavar="PATH",
                       help="keep every object, the clock and the event log in this JSON file across restarts "
                            "(`python -m sandbox run` uses var/sandbox/stripe.json)")
    serve.add_argument("--reset", action="store_true", help="with --state: start empty, ignoring the saved state")

    for name, handler, what, filters in (
            ("customers", cmd_customers, "customers, newest first: id, email, name, created", ("email",)),
            ("subscriptions", cmd_subscriptions, "subscriptions, newest first: id, customer, status, price, "
                                                 "period end, cancel at period end (canceled ones only with "
                                                 "--status canceled or all)", ("customer", "status")),
            ("invoices", cmd_invoices, "invoices, newest first: id, number, customer, status (draft, open, "
                                       "paid, uncollectible), total, attempts, next retry", ("customer", "status"))):
        sub = command(name, f"list {what.split(',')[0]}", f"List the sandbox's {what}.", handler)
        for field in filters:
            sub.add_argument(f"--{field}", help=f"only those with this {field}")
        sub.add_argument("--limit", type=int, default=20, help="how many (1-100, default 20)")

    for name, verb in (("fail-payments", "fail (declined card) until succeed-payments"),
                       ("succeed-payments", "succeed again, on the customer's card")):
        sub = command(name, f"make a customer's next payments {verb.split(' ')[0]}",
                      f"Make every next charge for CUSTOMER {verb}: renewals, retries, invoice payments.",
                      cmd_payments)
        sub.add_argument("customer", metavar="CUSTOMER", help="a customer id, cus_...")

    charges = command("charges", "list charges", "List the sandbox's charges, newest first: id, customer, status, "
                                                  "amount, refunded, disputed, PaymentIntent.", cmd_charges)
    charges.add_argument("--customer", help="only this customer's")
    charges.add_argument("--limit", type=int, default=20, help="how many (1-100, default 20)")
    refund = command("refund", "refund a charge, a PaymentIntent or a paid invoice",
                     "Refund a charge (ch_...), a PaymentIntent (pi_...) or a paid invoice's payment (in_...): "
                     "POST /v1/refunds. Emits charge.refunded and refund.created. A charge made with "
                     "pm_card_refundFail (4000 0000 0000 5126) gets a refund that fails a minute later "
                     "(refund.updated, charge.refund.updated, refund.failed).", cmd_refund)
    refund.add_argument("target", metavar="CHARGE_OR_INVOICE")
    refund.add_argument("--amount", type=int, help="in minor units (cents); default what is left to refund")
    refund.add_argument("--reason", choices=["duplicate", "fraudulent", "requested_by_customer"])
    dispute = command("dispute", "open a dispute on a charge",
                      "Open a dispute on a succeeded charge, as the cardholder's bank would: "
                      "charge.dispute.created and charge.dispute.funds_withdrawn. Answer it through the API "
                      "(POST /v1/disputes/{id} with evidence[uncategorized_text]=winning_evidence or "
                      "losing_evidence and submit=true, or POST /v1/disputes/{id}/close). Charges made with "
                      "pm_card_createDispute (4000 0000 0000 0259) are disputed on their own.", cmd_dispute)
    dispute.add_argument("charge", metavar="CHARGE")
    dispute.add_argument("--reason", default="fraudulent",
                         choices=["fraudulent", "general", "duplicate", "product_not_received", "product_unacceptable",
                                  "subscription_canceled", "unrecognized", "credit_not_processed"])
    authenticate = command("authenticate", "complete (or fail) 3D Secure for a payment or setup",
                           "Play the customer's part in 3D Secure for a PaymentIntent (pi_...) or SetupIntent "
                           "(seti_...) in requires_action (cards pm_card_authenticationRequired, "
                           "pm_card_threeDSecure2Required). A completed payment of an invoice pays it.",
                           cmd_authenticate)
    authenticate.add_argument("intent", metavar="INTENT")
    authenticate.add_argument("--fail", action="store_true", help="fail the authentication instead")

    clock = command("clock", "list, show or advance a clock",
                    "List the clocks, show or advance one. `sandbox` (the default) is the global clock of every "
                    "customer on no test clock; `--clock clock_...` is a Stripe test clock "
                    "(/v1/test_helpers/test_clocks), which moves only its own customers. Advancing runs everything "
                    "due in time order: renewals, trial ends, payment retries, schedule phases, checkout expiries; "
                    "the emitted event types are printed.",
                    cmd_clock)
    clock.add_argument("action", choices=["list", "show", "advance"])
    clock.add_argument("--days", type=float, default=0)
    clock.add_argument("--hours", type=float, default=0)
    clock.add_argument("--seconds", type=float, default=0)
    clock.add_argument("--clock", metavar="ID", help="`sandbox` (the default) or a test clock id, clock_...")
    clock.add_argument("--limit", type=int, default=100, help=argparse.SUPPRESS)

    command("state", "say whether the sandbox restored saved state or started empty",
            "Say whether the running sandbox restored its saved state or started empty, and what it holds.",
            cmd_state)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.reset and not args.state:
        parser.error("--reset needs --state")
    try:
        return args.handler(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
