"""Command line: `python -m sandbox.stripe serve ...` and `python -m sandbox.stripe clock advance ...`."""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from .emulator import StripeEmulator

DEFAULT_URL = "http://127.0.0.1:12111"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.stripe", description="The Stripe sandbox.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the emulator until Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    serve.add_argument("--webhook-url", help="where to deliver signed events, e.g. the console's webhook")
    serve.add_argument("--webhook-secret", help="the whsec_... secret that signs them")
    serve.add_argument("--public-url", help="base URL browsers use for hosted pages, if not the listen address")

    clock = commands.add_parser("clock", help="read or advance a running emulator's clock")
    clock.add_argument("action", choices=["show", "advance"])
    clock.add_argument("--days", type=float, default=0)
    clock.add_argument("--hours", type=float, default=0)
    clock.add_argument("--seconds", type=float, default=0)
    clock.add_argument("--url", default=DEFAULT_URL, help=f"the emulator (default {DEFAULT_URL})")

    args = parser.parse_args(argv)
    if args.command == "serve":
        emulator = StripeEmulator(port=args.port, host=args.host, webhook_url=args.webhook_url,
                                  webhook_secret=args.webhook_secret, public_url=args.public_url)
        emulator.start()
        print(f"Stripe sandbox listening on {emulator.url} (set STRIPE_API_HOST={emulator.url})", flush=True)
        if args.webhook_url:
            print(f"Delivering signed webhooks to {args.webhook_url}", flush=True)
        try:
            emulator._thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            emulator.stop()
        return 0

    if args.action == "show":
        request = urllib.request.Request(args.url.rstrip("/") + "/_sandbox/clock")
    else:
        payload = {k: v for k, v in (("days", args.days), ("hours", args.hours), ("seconds", args.seconds)) if v}
        if not payload:
            parser.error("give --days, --hours or --seconds")
        request = urllib.request.Request(args.url.rstrip("/") + "/_sandbox/clock/advance", method="POST",
                                         data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"error: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the Stripe sandbox at {args.url}: {exc}", file=sys.stderr)
        return 1
    print(f"clock: {answer['iso']} (offset {answer['offset_seconds']} s)")
    for event_type in answer.get("events", []):
        print(f"  {event_type}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
