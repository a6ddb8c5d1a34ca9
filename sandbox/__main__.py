"""python -m sandbox run [options]: start every stand-in until SIGINT/SIGTERM (see `run --help`)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .run import DEMO_EVOLUTION_KEY, DEMO_WEBHOOK_SECRET, Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox",
                                     description="Local stand-ins for the console's outside systems.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start Stripe, Cloudflare, the bundle host, WhatsApp and SMTP stand-ins")
    for name, default in (("stripe", 12111), ("cloudflare", 12112), ("bundles", 12113), ("whatsapp", 12114),
                          ("smtp", 1025), ("mail-http", 12115)):
        run.add_argument(f"--{name}-port", type=int, default=default, metavar="PORT", help=f"default {default}")
    run.add_argument("--webhook-url", default="http://127.0.0.1:8000/api/billing/webhook",
                     help="where the Stripe emulator delivers events ('' to deliver none)")
    run.add_argument("--webhook-secret", default=DEMO_WEBHOOK_SECRET, help="signing secret for those events")
    run.add_argument("--whatsapp-api-key", default=DEMO_EVOLUTION_KEY, help="the apikey the Evolution stand-in accepts")
    run.add_argument("--data-dir", default="var/sandbox",
                     help="bundle releases, sandbox.env and the Stripe state (stripe.json) live here")
    run.add_argument("--reset", action="store_true",
                     help="start the Stripe sandbox empty (forget its saved customers, subscriptions, clock, events)")
    run.add_argument("--env", action="store_true",
                     help="print the console's environment lines on stdout (the service lines go to stderr)")
    args = parser.parse_args(argv)

    sandbox = Sandbox(args.data_dir, stripe_port=args.stripe_port, cloudflare_port=args.cloudflare_port,
                      bundles_port=args.bundles_port, whatsapp_port=args.whatsapp_port, smtp_port=args.smtp_port,
                      mail_http_port=args.mail_http_port, webhook_url=args.webhook_url or None,
                      webhook_secret=args.webhook_secret, evolution_api_key=args.whatsapp_api_key,
                      reset=args.reset)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"sandbox: cannot start: {exc} (is another sandbox running? pick other ports)", file=sys.stderr)
        return 1
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    env_lines = [f"{key}={value}" for key, value in sandbox.env().items()]
    env_file = Path(args.data_dir) / "sandbox.env"
    env_file.write_text("\n".join(env_lines) + "\n")  # written last: its presence means every service is up
    info = sys.stderr if args.env else sys.stdout
    for line in sandbox.describe():
        print(line, file=info)
    print(f"env         {env_file}  (Ctrl-C stops everything)", file=info, flush=True)
    if args.env:
        print("\n".join(env_lines), flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        env_file.unlink(missing_ok=True)
        sandbox.stop()
        print("sandbox: stopped", file=info, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
