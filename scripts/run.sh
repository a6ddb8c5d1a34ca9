#!/usr/bin/env bash
# `make run`: migrate, create an admin login, register the crons, and start the web server and the
# django-q2 cluster. With no Stripe key configured (environment or .env) it also starts the sandbox
# stand-ins (Stripe, Cloudflare, bundle host, WhatsApp, SMTP inbox) and writes their settings to
# var/sandbox.env, which every manage.py command in the checkout reads (see README, "Sandbox mode").
# Ctrl-C stops everything and exits 0.
#
# Ports: PORT (console, 8000), HOST (127.0.0.1); in sandbox mode SANDBOX_PORT (12111: Stripe, then
# Cloudflare, bundle host, WhatsApp and the inbox page on the next four) and SMTP_PORT (1025).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
SANDBOX_PORT="${SANDBOX_PORT:-12111}"
SMTP_PORT="${SMTP_PORT:-1025}"
ENV_FILE=var/sandbox.env
mkdir -p var
pids=()
SECONDS=0

stage() { printf '[%3d s] %s\n' "$SECONDS" "$*"; }

running() {  # pid: alive and not a zombie waiting to be reaped
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$state" != Z* ]]
}

cleanup() {
  trap - INT TERM EXIT
  [ "${#pids[@]}" = 0 ] && return 0
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
# Ctrl-C is how a person stops it: clean up and exit 0, so make does not report "Error 130".
on_signal() { cleanup; exit 0; }
trap on_signal INT TERM
trap cleanup EXIT

wait_for_port() {  # host port seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "Nothing answered on $1:$2 after $3 s" >&2
  return 1
}

# Sandbox mode unless a Stripe key is configured; the sandbox's own file does not count (SANDBOX_ENV_FILE=).
has_stripe_key=$(SANDBOX_ENV_FILE= $PY -c "import billing_console.settings as s; print('yes' if s.STRIPE_SECRET_KEY else 'no')")
if [ "$has_stripe_key" != "yes" ]; then
  stage "No Stripe key configured: starting the sandbox stand-ins (see sandbox/) ..."
  $PY -m sandbox run --data-dir var/sandbox --env-file "$ENV_FILE" --site-url "http://$HOST:$PORT" \
    --webhook-url "http://$HOST:$PORT/api/billing/webhook" \
    --stripe-port "$SANDBOX_PORT" --cloudflare-port $((SANDBOX_PORT + 1)) --bundles-port $((SANDBOX_PORT + 2)) \
    --whatsapp-port $((SANDBOX_PORT + 3)) --mail-http-port $((SANDBOX_PORT + 4)) --smtp-port "$SMTP_PORT" &
  sandbox_pid=$!
  pids+=("$sandbox_pid")
  # The sandbox writes its settings (secrets kept from earlier runs) once every stand-in is up.
  for _ in $(seq 1 300); do
    grep -qx "# written by sandbox pid $sandbox_pid" "$ENV_FILE" 2>/dev/null && break
    running "$sandbox_pid" || { echo "The sandbox did not start (see above)." >&2; exit 1; }
    sleep 0.1
  done
  grep -qx "# written by sandbox pid $sandbox_pid" "$ENV_FILE" || { echo "The sandbox did not start in 30 s." >&2; exit 1; }
  SANDBOX=1
  export SANDBOX_ENV_FILE="$ENV_FILE"  # the processes started below read the file just written, whatever .env says
fi

stage "Applying database migrations (a new database takes a minute or two: dj-stripe has many) ..."
# App log lines (INFO) from post-migrate hooks stay out of migrate's own progress lines.
LOG_LEVEL=WARNING $PY manage.py migrate --noinput
stage "Preparing the cache table, the crons, the webhook endpoint and the price list ..."
# One process for the four commands (each start of Django costs seconds). The webhook endpoint
# (SITE_URL/api/billing/webhook, the handled event types) is registered with Stripe (the sandbox's here);
# when Stripe cannot be reached it is skipped with a note.
LOG_LEVEL=WARNING $PY manage.py shell -c "
from django.core.management import CommandError, call_command
call_command('createcachetable')
call_command('setup_schedules')
try:
    call_command('setup_webhook_endpoint')
except CommandError as exc:
    print(f'Webhook endpoint not registered ({exc}): run manage.py setup_webhook_endpoint (see README, Stripe).')
try:
    call_command('sync_catalog')
except CommandError as exc:
    print(f'Products and prices not mirrored ({exc}): the pricing page shows no amounts until they are.')
try:
    call_command('setup_meters')
except CommandError as exc:
    print(f'Usage meters not ready ({exc}): see README, Usage billing.')
"

stage "Starting the web server and the task cluster ..."
$PY manage.py runserver "$HOST:$PORT" --noreload &
pids+=($!)
# Its own session, so Ctrl-C (sent to the terminal's whole process group) does not reach it: cleanup
# signals it once. Two signals while django-q2 shuts down deadlock it (seen: stuck in Cluster.stop
# called again from the exit-time join of its children).
setsid $PY manage.py qcluster &
pids+=($!)
wait_for_port "$HOST" "$PORT" 60
sleep 2  # let the cluster print its start-up lines before the banner

banner_args=()
[ "${SANDBOX:-0}" = 1 ] && banner_args=(--sandbox-inbox "http://127.0.0.1:$((SANDBOX_PORT + 4))/")
echo
echo "================================================================"
echo " Billing Console is running (ready in $SECONDS s)"
$PY scripts/run_banner.py "${banner_args[@]}"
# Whether the Stripe sandbox restored its saved state (a sandbox without that command prints nothing).
if [ "${SANDBOX:-0}" = 1 ] && state=$($PY -m sandbox.stripe state --url "http://127.0.0.1:$SANDBOX_PORT" 2>/dev/null); then
  echo "   Stripe state: $state (python -m sandbox run --reset empties it)"
fi
echo " Walkthrough: README.md, \"Try the whole flow offline\". Press Ctrl-C to stop."
echo "================================================================"
wait -n "${pids[@]}"
