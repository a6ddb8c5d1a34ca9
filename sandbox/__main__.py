"""python -m sandbox run [options]: start every stand-in until SIGINT/SIGTERM (see `run --help`)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from .run import DEMO_EVOLUTION_KEY, DEMO_WEBHOOK_SECRET, Sandbox, sandbox_secrets, write_env_file


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
    run.add_argument("--webhook-secret", default=None,
                     help=f"signing secret for those events (default: the env file's, else {DEMO_WEBHOOK_SECRET})")
    run.add_argument("--whatsapp-api-key", default=None,
                     help=f"the apikey the Evolution stand-in accepts (default: the env file's, else {DEMO_EVOLUTION_KEY})")
    run.add_argument("--data-dir", default="var/sandbox", help="bundle releases, sandbox.env and the Stripe state (stripe.json) live here")
    run.add_argument("--env-file", default=None, metavar="PATH",
                     help="write every setting the console needs for sandbox mode here, secrets included "
                          "(made once, kept from an existing file), and keep the file after exit")
    run.add_argument("--site-url", default="", help="the console's SITE_URL, written to --env-file")
    run.add_argument("--reset", action="store_true",
                     help="start the Stripe sandbox empty (forget its saved customers, subscriptions, clock, events)")
    run.add_argument("--env", action="store_true",
                     help="print the console's environment lines on stdout (the service lines go to stderr)")
    args = parser.parse_args(argv)
    kept = sandbox_secrets(args.env_file) if args.env_file else {}
    args.webhook_secret = args.webhook_secret or kept.get("STRIPE_WEBHOOK_SECRET") or DEMO_WEBHOOK_SECRET
    args.whatsapp_api_key = args.whatsapp_api_key or kept.get("EVOLUTION_API_KEY") or DEMO_EVOLUTION_KEY

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

    values = sandbox.env()
    if args.env_file:
        # One file for every process of the checkout (settings read it), kept across restarts for its secrets.
        values = {**kept, **values, "STRIPE_WEBHOOK_SECRET": args.webhook_secret,
                  "EVOLUTION_API_KEY": args.whatsapp_api_key}
        if sandbox.stripe is not None:
            values["STRIPE_SECRET_KEY"] = kept["STRIPE_SECRET_KEY"]
        else:  # no Stripe stand-in: a key without STRIPE_API_HOST would reach the real Stripe
            del values["STRIPE_SECRET_KEY"], values["STRIPE_WEBHOOK_SECRET"]
        if args.site_url:
            values["SITE_URL"] = args.site_url.rstrip("/")
        env_file = Path(args.env_file)
        # The pid line tells a waiting launcher that this run's values are in (written after every service is up).
        write_env_file(env_file, values, note=f"written by sandbox pid {os.getpid()}")
    else:
        env_file = Path(args.data_dir) / "sandbox.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))  # written last: every service is up
    env_lines = [f"{key}={value}" for key, value in values.items()]
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
        if not args.env_file:
            env_file.unlink(missing_ok=True)
        sandbox.stop()
        print("sandbox: stopped", file=info, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
