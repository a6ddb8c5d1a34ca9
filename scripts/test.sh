#!/usr/bin/env bash
# Runs the whole test suite. Uses DATABASE_URL when set (CI points it at PostgreSQL), SQLite otherwise.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/licensing -x`.
set -uo pipefail
cd "$(dirname "$0")/.."
# Consoles started from here configure themselves; the sandbox settings `make run` leaves in var/ must not leak in.
export SANDBOX_ENV_FILE=
# Two workers (the machine has two cores); each gets its own test database. Tests of one file stay
# on one worker so the stand-in servers a file starts are shared. PYTEST_WORKERS=0 runs serially.
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
# pytest exits 5 when it collects nothing (e.g. a filter that matches no test): not a failure of the code.
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$rc"
