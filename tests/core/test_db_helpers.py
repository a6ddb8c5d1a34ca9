"""The shared database helpers (billing_console/db.py)."""
import pytest


def test_a_deadlock_victim_is_run_again_and_other_errors_pass():
    import psycopg
    from django.db import OperationalError

    from billing_console.db import retry_on_deadlock

    calls = []

    def victim_once():
        calls.append(1)
        if len(calls) == 1:
            try:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            except psycopg.errors.DeadlockDetected as cause:
                raise OperationalError("deadlock detected") from cause
        return "done"

    assert retry_on_deadlock(victim_once) == "done" and len(calls) == 2

    def other():
        raise OperationalError("connection refused")

    with pytest.raises(OperationalError):
        retry_on_deadlock(other)
