#!/usr/bin/env bash
# `make soak`: the soak with faults (tests/proof/soak.py), bounded to a few minutes, stops by itself.
# Full run: 150 customers and a PostgreSQL restart mid-run (the server is restarted for a few seconds:
# do not run it while others use the same server). SOAK_SHORT=1: the CI version (~60-90 s, no restart).
# SOAK_DATABASE_URL names its database (default bc_soak; created and migrated on first use).
set -uo pipefail
cd "$(dirname "$0")/.."
# Consoles started from here configure themselves; the sandbox settings `make run` leaves in var/ must not leak in.
export SANDBOX_ENV_FILE=
# SOAK_REDIS=1: the multi-machine layout (2 web nodes, 2 qclusters, a private Redis killed mid-run); no
# PostgreSQL restart. The Redis is the soak's own (SOAK_REDIS_PORT), never the shared one.
if [ "${SOAK_REDIS:-0}" = 1 ]; then
  exec timeout 1200 .venv/bin/python -m tests.proof.soak --customers "${SOAK_CUSTOMERS:-150}" \
    --redis-port "${SOAK_REDIS_PORT:-6391}" --redis-restart --web-nodes 2 "$@"
fi
if [ "${SOAK_SHORT:-0}" = 1 ]; then
  exec timeout 600 .venv/bin/python -m tests.proof.soak --short --customers "${SOAK_CUSTOMERS:-40}" "$@"
fi
exec timeout 1200 .venv/bin/python -m tests.proof.soak --customers "${SOAK_CUSTOMERS:-150}" --pg-restart "$@"
