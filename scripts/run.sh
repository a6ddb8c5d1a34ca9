#!/usr/bin/env bash
# `make run`: migrate, create an admin login, register the crons, and start the web server and the
# django-q2 cluster. With no Stripe key configured (environment or .env) it also starts the sandbox
# stand-ins (Stripe, Cloudflare, bundle host, WhatsApp, SMTP inbox) and points the console at them,
# so the whole flow works offline. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
mkdir -p var
pids=()

running() {  # pid: alive and not a zombie waiting to be reaped
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$state" != Z* ]]
}

cleanup() {
  trap - INT TERM EXIT
  echo
  echo "Stopping ..."
  # One TERM to each main pid (qcluster hangs if its whole process group gets it, or gets a second
  # signal while it shuts down); whatever is still up after 30 s is killed with its process group.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 300); do
    alive=0
    for pid in "${pids[@]}"; do running "$pid" && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if running "$pid"; then
      echo "pid $pid did not stop in 30 s: killed"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  echo "Stopped."
}
trap cleanup INT TERM EXIT

wait_for_port() {  # host port seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "Nothing answered on $1:$2 after $3 s" >&2
  return 1
}

has_stripe_key=$($PY manage.py shell -c "from django.conf import settings; print('yes' if settings.STRIPE_SECRET_KEY else 'no')" 2>/dev/null | tail -n 1)
if [ "$has_stripe_key" != "yes" ]; then
  # Demo values are made once and kept in var/ so encrypted rows stay readable across restarts.
  if [ ! -f var/sandbox.env ]; then
    $PY - <<'PYEOF'
import base64, secrets, string
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

alnum = string.ascii_letters + string.digits
rand = lambda n: "".join(secrets.choice(alnum) for _ in range(n))
raw = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                 serialization.NoEncryption())
lines = {
    "STRIPE_SECRET_KEY": "sk_test_sandbox" + rand(24),
    "STRIPE_WEBHOOK_SECRET": "whsec_sandbox" + rand(24),
    "CLOUD_MASTER_KEY": secrets.token_hex(32),
    "LICENSE_SIGNING_KEY": base64.b64encode(raw).decode(),
    "OPS_SECRET": secrets.token_urlsafe(24),
    "EVOLUTION_API_KEY": "evo_sandbox_" + rand(16),
}
with open("var/sandbox.env", "w") as fh:
    fh.writelines(f"{k}={v}\n" for k, v in lines.items())
PYEOF
    chmod 600 var/sandbox.env
  fi
  set -a
  # shellcheck disable=SC1091
  . var/sandbox.env
  STRIPE_API_HOST=http://127.0.0.1:12111
  STRIPE_PRICE_PRO=price_sandbox_pro
  STRIPE_PRICE_TEAM=price_sandbox_team
  CLOUDFLARE_API_BASE=http://127.0.0.1:12112/client/v4
  HELM_BUNDLE_MANIFEST_URL=http://127.0.0.1:12113/manifest.json
  DEPLOY_ALLOW_HTTP_BUNDLES=true
  EVOLUTION_API_URL=http://127.0.0.1:12114
  EMAIL_URL=smtp://127.0.0.1:1025
  SITE_URL="http://$HOST:$PORT"
  set +a
  echo "No Stripe key configured: starting the sandbox stand-ins (see sandbox/)."
  $PY -m sandbox run --data-dir var/sandbox \
    --webhook-url "http://$HOST:$PORT/api/billing/webhook" --webhook-secret "$STRIPE_WEBHOOK_SECRET" \
    --whatsapp-api-key "$EVOLUTION_API_KEY" &
  pids+=($!)
  wait_for_port 127.0.0.1 12111 30
  SANDBOX=1
fi

echo "Applying database migrations (a new database takes a minute or two: dj-stripe has many) ..."
$PY manage.py migrate --noinput
$PY manage.py createcachetable
$PY manage.py setup_schedules
# Record the webhook endpoint (SITE_URL/api/billing/webhook + its signing secret); skipped, with a note, when no secret is set.
$PY manage.py setup_webhook_endpoint || echo "Webhook endpoint not recorded: set STRIPE_WEBHOOK_SECRET (see README, Stripe)."

$PY manage.py runserver "$HOST:$PORT" --noreload &
pids+=($!)
# Its own session, so Ctrl-C (sent to the terminal's whole process group) does not reach it: cleanup
# signals it once. Two signals while django-q2 shuts down deadlock it (seen: stuck in Cluster.stop
# called again from the exit-time join of its children).
setsid $PY manage.py qcluster &
pids+=($!)
wait_for_port "$HOST" "$PORT" 60
sleep 2  # let the cluster print its start-up lines before the banner

echo
echo "================================================================"
echo " Billing Console is running"
$PY manage.py ensure_admin | sed 's/^/ /'
echo " Health:       http://$HOST:$PORT/health"
echo " Pricing page: http://$HOST:$PORT/"
if [ "${SANDBOX:-0}" = 1 ]; then
  echo " Sandbox mode: Stripe http://127.0.0.1:12111 (card 4242 4242 4242 4242 pays, 4000 0000 0000 0341 declines)"
  echo "               Mail inbox http://127.0.0.1:12115/"
fi
echo " Press Ctrl-C to stop."
echo "================================================================"
wait -n "${pids[@]}"
