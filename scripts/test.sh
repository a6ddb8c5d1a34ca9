#!/usr/bin/env bash
# Runs the whole test suite. Uses DATABASE_URL when set (CI points it at PostgreSQL), SQLite otherwise.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/licensing -x`.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when it collects nothing (e.g. a filter that matches no test): not a failure of the code.
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$rc"
