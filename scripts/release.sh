#!/usr/bin/env bash
# The release steps, run once per deploy before the new processes start (and safe to run again):
# migrations, the cache table (database cache only: a no-op with REDIS_URL), static files (hashed and
# compressed for WhiteNoise), the crons, the Stripe webhook endpoint, then preflight.
# SKIP_WEBHOOK_ENDPOINT=1 skips the Stripe call (e.g. a staging copy that must not touch Stripe).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

step() { echo "== $*"; }
step "migrate"
"$PY" manage.py migrate --noinput
step "createcachetable"
"$PY" manage.py createcachetable
step "collectstatic"
"$PY" manage.py collectstatic --noinput --verbosity 0
step "setup_schedules"
"$PY" manage.py setup_schedules
if [ "${SKIP_WEBHOOK_ENDPOINT:-0}" != 1 ]; then
  step "setup_webhook_endpoint"
  "$PY" manage.py setup_webhook_endpoint
fi
step "preflight"
"$PY" manage.py preflight || echo "preflight: NO_GO (see above); the release steps are done" >&2
