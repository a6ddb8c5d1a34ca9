"""Soak with faults: thousands of Stripe events through the sandbox to a running console (gunicorn
2x4 + 2 qclusters on PostgreSQL) while things break, then the console's state is compared with what
the events imply.

    python -m tests.proof.soak [--customers 150] [--short] [--pg-restart] [--database-url URL]
                               [--redis-port 6391 [--redis-restart]] [--web-nodes 2]

With --redis-port the console runs as on several machines: a private redis-server on that port is the
django-q2 broker and the cache (REDIS_URL), --web-nodes gunicorn servers share the work (checkouts
alternate between them; Stripe's webhooks go to the first, then to the second from the renewals on),
and --redis-restart restarts that Redis mid-run (no persistence: every queued task is lost, and the
retry cron must find the events whose task vanished).

Faults, in order: the sandbox Stripe answers 500s then times out; the fake Cloudflare rate-limits
the pushes; a qcluster is killed (SIGKILL, main pid and its workers) mid-task and another started;
PostgreSQL restarted (only with --pg-restart: the server is shared, so never in CI).
Phases: checkouts paid (4242) -> deployments pushed -> some cards set to decline -> clock +31 days
(renewals paid or failed) -> pushes again. The scheduler's crons (stripe_events_retry, dunning_send,
push) are enqueued every few seconds instead of every minute/hour, so a few minutes are enough.

Checks: every event the sandbox sent is stored once and processed; one customer, one paid checkout
and one licence per subscription; subscription status and period end equal to the sandbox's;
entitlement as the status implies; each dunning step sent at most once (step logs and mailbox);
each (deployment, version) uploaded to Cloudflare at most once and live. Prints the counts; exits 1
on any mismatch.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone as dt_timezone
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.harness import PY, Gunicorn, ensure_database, stop, wait_port  # noqa: E402

API_KEY = "sk_test_soak" + "S0akTest0123456789abcdefgh"
SECRET = "whsec_soak" + "S0akWebhookSecret0123456789"
MASTER_KEY = "soak-master-key-0123456789abcdef"
OUT = ROOT / "var" / "soak"


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Cluster:
    """One `manage.py qcluster`; kill() is a crash (SIGKILL to the main pid and its workers)."""

    def __init__(self, env: dict, n: int):
        # Its own process group: the workers are grandchildren, and a crash must take them down too.
        self.proc = subprocess.Popen([PY, "manage.py", "qcluster"], cwd=ROOT, env=env, start_new_session=True,
                                     stdout=(OUT / f"qcluster{n}.log").open("ab"), stderr=subprocess.STDOUT)

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self._kill_group()
        self.proc.wait(10)

    def stop(self) -> None:
        stop(self.proc)  # TERM to the main pid only: qcluster hangs if its whole group gets TERM
        self._kill_group()  # then whatever worker is left (none, after a clean stop)


class PrivateRedis:
    """A redis-server of the soak's own (never the shared one): restarting it disturbs nobody else."""

    def __init__(self, port: int):
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=(OUT / "redis.log").open("ab"),
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)

    def restart(self) -> float:
        started = time.monotonic()
        self.proc.kill()  # a crash: what was queued in it is gone
        self.proc.wait(10)
        time.sleep(1.0)
        self.start()
        return time.monotonic() - started


def pg_restart() -> float:
    started = time.monotonic()
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=60)
    for _ in range(60):
        if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def console_env(database_url: str, sandbox_env: dict, *, short: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DJANGO_", "Q_"))}
    env.update(sandbox_env)
    env.update(
        DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="billing_console.settings", DEBUG="false",
        LOG_LEVEL="WARNING", ALLOWED_HOSTS="127.0.0.1,localhost", STRIPE_SECRET_KEY=API_KEY,
        STRIPE_WEBHOOK_SECRET=SECRET, CLOUD_MASTER_KEY=MASTER_KEY, STRIPE_MAX_RETRIES="2", STRIPE_TIMEOUT_SECONDS="3",
        # A crashed worker's claim and task come back within seconds, not minutes, so the soak ends in minutes.
        STRIPE_EVENT_PROCESSING_LEASE_SECONDS="8", STRIPE_EVENT_ENQUEUE_GRACE_SECONDS="5",
        Q_WORKERS="2", Q_TIMEOUT="20", Q_RETRY="25", DEPLOY_RETRY_AFTER_MAX_SECONDS="2", DB_CONN_MAX_AGE="0",
        CRON_STALE_AFTER_MINUTES="1",  # a cron killed with its cluster must not block the next for hours
        # Every checkout comes from this one address: the flood limit (20 an hour) is for the internet.
        CHECKOUT_RATE_LIMIT_PER_CLIENT="100000",
        # django-q2's SYNC off; the retry backoff of a failed event kept short for the run.
        Q_SYNC="false",
    )
    return env


def checkout(port: int, emu, email: str, card: str) -> dict | None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/billing/checkout", json.dumps({"email": email, "plan": "pro"}),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read() or b"{}")
    conn.close()
    if response.status != 200:
        return {"error": response.status, "body": body}
    session_id = body["url"].rstrip("/").split("/")[-1]
    # Checkout asks for a phone when WhatsApp dunning is configured (the sandbox env configures it).
    return emu.pay_checkout(session_id, card=card, phone="+15555550123")


def run(args) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url
    if not args.no_migrate:
        ensure_database(database_url)
    from sandbox.run import DEMO_ACCOUNT_ID, DEMO_TOKEN, Sandbox

    sandbox = Sandbox(OUT / "sandbox", stripe_port=0, cloudflare_port=0, bundles_port=0, whatsapp_port=0,
                      smtp_port=0, mail_http_port=0, webhook_secret=SECRET).start()
    emu, cf = sandbox.stripe, sandbox.cloudflare
    emu.set_faults(reset=True)
    env = console_env(database_url, sandbox.env(), short=args.short)
    env.update(STRIPE_SECRET_KEY=API_KEY, STRIPE_WEBHOOK_SECRET=SECRET)
    redis_server = None
    if args.redis_port:
        redis_server = PrivateRedis(args.redis_port).start()
        env.update(REDIS_URL=redis_server.url)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    if not args.keep_data:
        with connection.cursor() as cur:
            cur.execute("TRUNCATE billing_console_customer, billing_console_webhookevent, billing_console_checkoutattempt, "
                        "billing_console_invoice, billing_console_auditevent, billing_console_cronrun, django_q_ormq, "
                        "django_q_task RESTART IDENTITY CASCADE")
    subprocess.run([PY, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True, capture_output=True)
    from dunning.services import dunning_policy_ensure_default

    dunning_policy_ensure_default()  # what the data migration does (a test database has no migrations)
    clusters: list[Cluster] = []
    report: dict = {"faults": [], "layout": {"web_nodes": args.web_nodes, "qclusters": 2,
                                             "broker": "redis" if redis_server else "orm"}}
    nodes = [Gunicorn(env, log=OUT / f"gunicorn{n}.log") for n in range(args.web_nodes)]
    for node in nodes:
        node.__enter__()
    web = nodes[0]
    try:
        emu.configure_webhook(f"http://127.0.0.1:{web.port}/api/billing/webhook", SECRET)
        clusters = [Cluster(env, 0), Cluster(env, 1)]
        stop_crons = threading.Event()
        cron_thread = threading.Thread(target=crons, args=(stop_crons, 3.0), daemon=True)
        cron_thread.start()
        try:
            phase_checkouts(args, [n.port for n in nodes], emu, report)
            # Stripe API faults while the workers re-read objects and the pages open sessions.
            emu.set_faults(api_500=15, api_timeout=3, timeout_seconds=1.5)
            report["faults"].append("stripe api: 15 x 500, 3 x timeout")
            settle(emu, 60 if args.short else 180)  # every paid customer known before deployments are made
            phase_deployments(args, emu, cf, DEMO_ACCOUNT_ID, DEMO_TOKEN, report)
            log("killing qcluster 0 mid-task")
            while not busy():
                time.sleep(0.05)
            clusters[0].kill()
            clusters[0] = Cluster(env, 2)
            report["faults"].append("qcluster killed (SIGKILL main + workers) mid-task, another started")
            if args.pg_restart:
                log("restarting PostgreSQL")
                report["faults"].append(f"postgresql restarted ({pg_restart():.1f} s)")
            if len(nodes) > 1:  # the renewals' webhooks reach the other web node
                emu.configure_webhook(f"http://127.0.0.1:{nodes[1].port}/api/billing/webhook", SECRET)
            if redis_server and args.redis_restart:
                threading.Thread(target=_redis_restart_soon, args=(redis_server, report), daemon=True).start()
            phase_renewals(args, emu, report)
            wait_for_events(emu, 90 if args.short else 300)
            enqueue("deployments.tasks.push_deployments")
            settle(emu, 150 if args.short else 300)
        finally:
            stop_crons.set()
            cron_thread.join(10)
            for c in clusters:
                c.stop()
    finally:
        for node in nodes:
            node.__exit__(None, None, None)
    try:
        return verify(emu, cf, sandbox.mail, report)
    finally:
        sandbox.stop()
        if redis_server:
            redis_server.stop()


def _redis_restart_soon(redis_server: "PrivateRedis", report: dict) -> None:
    """Mid-renewals, while events are arriving and tasks are queued: Redis crashes and comes back empty."""
    time.sleep(2.0)
    log("killing and restarting Redis (broker + cache)")
    report["faults"].append(f"redis killed and restarted empty ({redis_server.restart():.1f} s)")


def enqueue(path: str) -> None:
    from django.db import connection
    from django_q.tasks import async_task

    try:
        async_task(path)
    except Exception as exc:  # PostgreSQL restarting: the next tick enqueues again
        log(f"enqueue {path} failed: {type(exc).__name__}")
        connection.close()


def crons(stop_event: threading.Event, every: float) -> None:
    """The schedule, compressed: what the scheduler would enqueue each minute/hour, every few seconds."""
    from django.db import connection

    while not stop_event.wait(every):
        for task in ("billing_console.stripe.tasks.stripe_events_retry", "dunning.tasks.dunning_send"):
            enqueue(task)
        connection.close()


def busy() -> bool:
    from django.db import connection

    from billing_console.models import WebhookEvent

    try:
        return WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSING).exists()
    finally:
        connection.close()


def phase_checkouts(args, ports: list[int], emu, report: dict) -> None:
    n = args.customers
    log(f"{n} checkouts through the console and the sandbox's hosted page")
    results = []
    lock = threading.Lock()
    todo = iter(range(n))

    def worker():
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            result = checkout(ports[i % len(ports)], emu, f"soak{i:05d}@example.com", "4242424242424242")
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r and r.get("ok")]
    report["checkouts"] = {"started": n, "paid": len(ok), "errors": [r for r in results if not (r and r.get("ok"))][:3]}
    report["customers"] = [r["customer"] for r in ok]


def phase_deployments(args, emu, cf, account_id: str, token: str, report: dict) -> None:
    """A deployment for every paying customer, then a push while Cloudflare rate-limits."""
    from django.db import connection

    from billing_console.models import AuditEvent, Customer
    from deployments.services import deployment_create

    made = 0
    for customer in Customer.objects.exclude(subscription_id="").filter(deployments__isnull=True):
        deployment_create(customer=customer, account_id=account_id, script_name=f"soak-{customer.pk}",
                          api_token=token, actor_type=AuditEvent.ActorType.SYSTEM, actor="soak")
        made += 1
    connection.close()
    cf.fail_next(429, count=25, retry_after=1)
    report["faults"].append("cloudflare: 25 x 429 (Retry-After 1)")
    report["deployments_created"] = made
    log(f"{made} deployments; pushing while Cloudflare rate-limits")
    enqueue("deployments.tasks.push_deployments")


def phase_renewals(args, emu, report: dict) -> None:
    customers = report["customers"]
    declined = customers[::5]
    for cus in declined:
        emu.set_card(cus, "decline")
    report["declined_cards"] = len(declined)
    log(f"clock +31 days: {len(customers) - len(declined)} renewals paid, {len(declined)} fail")
    emu.advance(days=31)
    emu.set_faults(api_500=10)
    report["faults"].append("stripe api: 10 x 500 during renewals")


def wait_for_events(emu, timeout: float) -> None:
    emu.wait_idle(timeout)


def settle(emu, timeout: float) -> None:
    """Until every delivered event is processed and no publish is in flight (or the time is up)."""
    from django.db import connection
    from django.db.models import Count

    from billing_console.models import WebhookEvent
    from deployments.models import PublishVersion
    from dunning.models import DunningStepLog

    deadline = time.monotonic() + timeout
    left: dict = {}
    emu.wait_idle(timeout)
    while time.monotonic() < deadline:
        try:
            pending = WebhookEvent.objects.exclude(status__in=[WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]).count()
            queued = PublishVersion.objects.filter(status__in=["queued", "building", "deploying"]).count()
            # Reminders due by Stripe's clock (the sandbox's, a month ahead after the renewals) go out
            # in tasks queued behind the events: wait for them too.
            reminders = DunningStepLog.objects.filter(status__in=DunningStepLog.PENDING, case__status="open",
                                                      due_at__lte=datetime.fromtimestamp(emu.now(), tz=dt_timezone.utc)
                                                      ).count()
            left = {"events": dict(WebhookEvent.objects.exclude(status__in=[WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED])
                                   .values_list("status").annotate(n=Count("pk"))),
                    "publishes": queued, "reminders": reminders}
            queued += reminders
        except Exception:
            connection.close()
            time.sleep(1)
            continue
        finally:
            connection.close()
        if pending == 0 and queued == 0:
            return
        time.sleep(1)
    log(f"settle: time is up with work left: {left}")


def verify(emu, cf, mailbox, report: dict) -> int:
    from django.db.models import Count

    from billing_console.models import CheckoutAttempt, Customer, WebhookEvent
    from billing_console.selectors import customer_entitlement
    from deployments.models import PublishVersion
    from dunning.models import DunningStepLog
    from licensing.models import License

    problems: list[str] = []
    sent = {e["id"] for e in emu.events}
    stored = dict(WebhookEvent.objects.values_list("stripe_id", "status"))
    missing = sent - set(stored)
    applied = (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED)  # ignored: no receiver, by design
    unprocessed = {k: v for k, v in stored.items() if v not in applied}
    counts = {"events_sent": len(sent), "events_stored": len(stored), "events_missing": len(missing),
              "events_unprocessed": len(unprocessed),
              "deliveries": len(emu.deliveries),
              # Per web node (the webhook URL's port), to show both nodes took Stripe's traffic.
              "deliveries_by_node": dict(Counter(str(d.get("url", "")).split("/")[2] for d in emu.deliveries)),
              "redeliveries": sum(WebhookEvent.objects.values_list("deliveries", flat=True)) - len(stored)}
    if missing:
        problems.append(f"{len(missing)} event(s) never stored, e.g. {sorted(missing)[:3]}")
    if unprocessed:
        problems.append(f"{len(unprocessed)} event(s) not processed: {Counter(unprocessed.values())}")

    subs = {s["id"]: s for s in emu.list_objects("subscription")}
    customers = list(Customer.objects.exclude(subscription_id=""))
    counts["subscriptions"] = len(subs)
    counts["customers_with_subscription"] = len(customers)
    dup_customers = [e for e, n in Counter(c.email for c in Customer.objects.all()).items() if n > 1]
    paid = CheckoutAttempt.objects.filter(status=CheckoutAttempt.Status.PAID).count()
    counts["checkouts_paid"] = paid
    if dup_customers:
        problems.append(f"duplicate customers: {dup_customers[:3]}")
    if paid != report["checkouts"]["paid"]:
        problems.append(f"{paid} checkout attempts paid, sandbox paid {report['checkouts']['paid']}")
    licences = Counter(License.objects.values_list("subscription_id", flat=True))
    counts["licences"] = sum(licences.values())
    if any(n > 1 for n in licences.values()):
        problems.append(f"more than one licence for {[s for s, n in licences.items() if n > 1][:3]}")
    wrong_state, wrong_entitlement = [], []
    statuses = Counter()
    for c in customers:
        sub = subs.get(c.subscription_id)
        if sub is None:
            wrong_state.append((c.email, "no such subscription"))
            continue
        statuses[sub["status"]] += 1
        item_end = ((sub.get("items") or {}).get("data") or [{}])[0].get("current_period_end")
        if c.subscription_status != sub["status"] or (item_end and int(c.current_period_end.timestamp()) != item_end):
            wrong_state.append((c.email, c.subscription_status, sub["status"]))
        entitled = customer_entitlement(c).entitled
        expected = sub["status"] in ("active", "trialing", "past_due")
        if c.access_state == Customer.AccessState.HARD_LOCKED:
            expected = False
        if entitled != expected:
            wrong_entitlement.append((c.email, sub["status"], c.access_state))
    counts["subscription_statuses"] = dict(statuses)
    counts["customers_state_wrong"] = len(wrong_state)
    counts["customers_entitlement_wrong"] = len(wrong_entitlement)
    if wrong_state:
        problems.append(f"{len(wrong_state)} customer(s) differ from Stripe, e.g. {wrong_state[:3]}")
    if wrong_entitlement:
        problems.append(f"{len(wrong_entitlement)} entitlement(s) wrong, e.g. {wrong_entitlement[:3]}")

    logs = DunningStepLog.objects.values("case_id", "step_code").annotate(n=Count("pk")).filter(n__gt=1)
    sent_steps = DunningStepLog.objects.filter(status="sent").count()
    mails = Counter((tuple(m.recipients), m.subject) for m in mailbox.messages)
    due_by_stripe = datetime.fromtimestamp(emu.now(), tz=dt_timezone.utc)
    unsent = DunningStepLog.objects.filter(status__in=DunningStepLog.PENDING, due_at__lte=due_by_stripe,
                                           case__status="open").count()
    counts["dunning_steps_sent"] = sent_steps
    counts["dunning_steps_due_unsent"] = unsent
    if unsent:
        problems.append(f"{unsent} dunning step(s) due and never sent")
    counts["dunning_steps_duplicated"] = logs.count()
    if logs.exists():
        problems.append(f"dunning steps logged twice: {list(logs[:3])}")
    counts["emails"] = sum(mails.values())
    # Dunning emails name their step; the same step to the same customer twice is a double send.
    counts["dunning_emails_repeated"] = sum(1 for (to, subject), n in mails.items() if n > 1 and "payment" in subject.lower())

    uploads = Counter((u.account_id, u.script_name, u.sha256) for u in cf.uploads)
    repeated = [k for k, n in uploads.items() if n > 1]
    live = Counter(PublishVersion.objects.filter(status="live").values_list("deployment_id", "version"))
    counts["uploads"] = sum(uploads.values())
    counts["uploads_repeated"] = len(repeated)
    counts["publishes_live"] = sum(live.values())
    counts["publishes_by_status"] = dict(Counter(PublishVersion.objects.values_list("status", flat=True)))
    if repeated:
        problems.append(f"{len(repeated)} push(es) repeated, e.g. {repeated[:2]}")
    if any(n > 1 for n in live.values()):
        problems.append("a (deployment, version) is live twice")

    report["counts"] = counts
    report["problems"] = problems
    report.pop("customers", None)
    (OUT / "report.json").write_text(json.dumps(report, indent=2, default=str))
    for key, value in counts.items():
        print(f"  {key}: {value}")
    for fault in report["faults"]:
        print(f"  fault: {fault}")
    if problems:
        print("SOAK FAILED:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"soak: {counts['events_sent']} events, 0 lost, 0 applied twice, "
          f"{counts['customers_with_subscription']} customers right, {counts['uploads']} pushes, none repeated")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=150)
    parser.add_argument("--short", action="store_true", help="the CI version (~60-90 s)")
    parser.add_argument("--pg-restart", action="store_true", help="restart PostgreSQL mid-run (shared server!)")
    parser.add_argument("--database-url", default=os.environ.get("SOAK_DATABASE_URL")
                        or "postgres://postgres@127.0.0.1:5432/bc_soak")
    parser.add_argument("--no-migrate", action="store_true", help="the database already has the tables")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--redis-port", type=int, default=0, help="run a private redis-server there: broker + cache")
    parser.add_argument("--redis-restart", action="store_true", help="kill and restart that Redis mid-run")
    parser.add_argument("--web-nodes", type=int, default=1, help="gunicorn servers (web nodes)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rc = run(args)
    print(f"  wall: {time.monotonic() - started:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
