#!/usr/bin/env bash
# `make bench`: every benchmark in bench/ (bench_*.py), one after the other, on PostgreSQL.
# Each prints one figure line (shown here, full output in var/bench/<name>.log) and writes JSON under
# var/bench/. Select some with BENCH=webhooks,admin; pass options with BENCH_ARGS (every selected bench)
# or BENCH_ARGS_<name> (that bench only, e.g. BENCH_ARGS_webhooks="--inbox-rows 0 --rss-events 0").
# BENCH_DATABASE_URL names the bench database (default bc_bench; created and migrated on first use).
set -uo pipefail
cd "$(dirname "$0")/.."
# Consoles started from here configure themselves; the sandbox settings `make run` leaves in var/ must not leak in.
export SANDBOX_ENV_FILE=
PY=.venv/bin/python
export BENCH_DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/bc_bench}"
mkdir -p var/bench
# Benches share the bc_bench database and the machine: a second `make bench` would corrupt both runs.
exec 9>var/bench/.lock
flock -n 9 || { echo "another make bench is running (var/bench/.lock): wait for it"; exit 1; }

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then  # the licence bench's rate-limit cache
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 || true
fi

echo "Preparing the bench database (the first run applies every migration: a minute or two) ..."
$PY -c "import sys; sys.path.insert(0, '.'); from bench.harness import ensure_database, bench_database_url; ensure_database(bench_database_url())" \
  || { echo "cannot prepare the bench database"; exit 1; }

summary=()
failed=0
for file in bench/bench_*.py; do
  name=$(basename "$file" .py); name=${name#bench_}
  if [ -n "${BENCH:-}" ] && [[ ",${BENCH}," != *",${name},"* ]]; then continue; fi
  echo "== $name"
  started=$(date +%s)
  # BENCH_ARGS_<name> (e.g. BENCH_ARGS_webhooks) goes to that bench only; BENCH_ARGS to every selected one.
  args_var="BENCH_ARGS_${name}"
  # shellcheck disable=SC2086
  $PY "$file" ${BENCH_ARGS:-} ${!args_var:-} > "var/bench/$name.log" 2>&1
  rc=$?
  line=$(grep -v '^\s*$' "var/bench/$name.log" | tail -n 1)
  if [ $rc -ne 0 ]; then
    line="FAILED (exit $rc; see var/bench/$name.log): $line"
    failed=1
  fi
  echo "   $line   [$(( $(date +%s) - started )) s]"
  summary+=("$name: $line")
done

echo
echo "== Summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -m | awk '/Mem:/{printf "%.0f", $2/1024}') GiB)"
printf '%s\n' "${summary[@]}"
exit $failed
