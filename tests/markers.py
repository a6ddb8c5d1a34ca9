"""Shared test markers."""
import pytest
from django.db import connection

# Tests of concurrent claims (threads taking row locks) need a server database. `make test` on a new
# machine runs on SQLite and skips them; CI runs everything on PostgreSQL (DATABASE_URL).
requires_postgres = pytest.mark.skipif(connection.vendor != "postgresql",
                                       reason="concurrent row locks need PostgreSQL (CI runs these)")
