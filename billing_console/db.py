"""Database helpers shared by the apps' batch writers."""
from __future__ import annotations

from django.db import connection


def update_rows(model, rows: list, fields: list[str]) -> None:
    """Write each row's own values of `fields` in one statement. On PostgreSQL an UPDATE ... FROM (VALUES ...):
    Django's bulk_update builds a CASE WHEN per row and field, whose Python cost dominated a batch."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(rows, fields)
        return
    qn = connection.ops.quote_name
    meta_fields = [model._meta.pk] + [model._meta.get_field(name) for name in fields]
    row_sql = "(" + ", ".join(f"%s::{f.db_type(connection)}" for f in meta_fields) + ")"
    params = []
    for row in rows:
        params.extend(f.get_db_prep_save(getattr(row, f.attname), connection) for f in meta_fields)
    columns = [qn(f.column) for f in meta_fields]
    sql = (f"UPDATE {qn(model._meta.db_table)} AS t SET "
           + ", ".join(f"{c} = v.{c}" for c in columns[1:])
           + f" FROM (VALUES {', '.join([row_sql] * len(rows))}) AS v({', '.join(columns)})"
           + f" WHERE t.{columns[0]} = v.{columns[0]}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def retry_on_deadlock(fn, *, attempts: int = 3):
    """Run `fn()` (which owns its whole transaction) again when PostgreSQL picked it as a deadlock's
    victim: the database rolled all of it back, so a second run starts clean. Other errors pass."""
    from django.db import OperationalError

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except OperationalError as exc:
            cause = exc.__cause__
            if attempt == attempts or type(cause).__name__ != "DeadlockDetected":
                raise
