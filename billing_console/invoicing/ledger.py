"""The legacy ledger: import the old system's monthly totals (all rows or none), which reconciliation
compares against the console's invoices."""
from __future__ import annotations

import csv
import io
import logging
import re

from django.db import transaction

from billing_console.errors import ServiceError
from billing_console.models import LedgerEntry
from billing_console.services import audit_log
from billing_console.wording import counted

log = logging.getLogger("billing_console.reconciliation")

LEDGER_COLUMNS = ("account", "period", "total", "currency")
LEDGER_MAX_BYTES = 20 * 1024 * 1024
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_TOTAL = re.compile(r"^-?\d{1,18}$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_ACCOUNT = re.compile(r"^\S{1,255}$")


class LedgerImportError(ServiceError):
    """The file has bad rows; `errors` lists them as "line N: message". Nothing was imported."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid_ledger", f"{counted(len(errors), 'problem')}; nothing imported. " + "; ".join(errors[:5]))


def ledger_parse(content: bytes | str) -> list[dict]:
    """Validate every row of a ledger CSV (header account,period,total,currency). Raises LedgerImportError
    listing every bad row with its line number; returns the rows only when all are good."""
    if isinstance(content, bytes):
        if len(content) > LEDGER_MAX_BYTES:
            raise LedgerImportError([f"The file is larger than {LEDGER_MAX_BYTES // (1024 * 1024)} MB."])
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise LedgerImportError([f"The file is not UTF-8 text (byte {exc.start})."]) from None
    reader = csv.reader(io.StringIO(content))
    try:
        header = next(reader)
    except StopIteration:
        raise LedgerImportError(["line 1: the file is empty; expected the header account,period,total,currency."]) from None
    except csv.Error as exc:
        raise LedgerImportError([f"line 1: {exc}"]) from None
    columns = [h.strip().lower() for h in header]
    if sorted(columns) != sorted(LEDGER_COLUMNS):
        raise LedgerImportError([f"line 1: the header must be {','.join(LEDGER_COLUMNS)} (any order), got {','.join(header)!r}."])
    index = {name: columns.index(name) for name in LEDGER_COLUMNS}
    rows, errors, seen = [], [], {}
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(columns):
                errors.append(f"line {line}: expected {len(columns)} columns, got {len(values)}.")
                continue
            account, period, total, currency = (values[index[n]].strip() for n in LEDGER_COLUMNS)
            problems = []
            if not _ACCOUNT.match(account):
                problems.append("account is empty or contains spaces")
            if not _PERIOD.match(period):
                problems.append(f"period must be YYYY-MM, got {period!r}")
            if not _TOTAL.match(total):
                problems.append(f"total must be an integer in minor units (no decimals), got {total!r}")
            if not _CURRENCY.match(currency):
                problems.append(f"currency must be a 3-letter code, got {currency!r}")
            if problems:
                errors.append(f"line {line}: " + "; ".join(problems) + ".")
                continue
            key = (account, period, currency.lower())
            if key in seen:
                errors.append(f"line {line}: duplicate of line {seen[key]} ({account} {period} {currency.lower()}).")
                continue
            seen[key] = line
            rows.append({"account": account, "period": period, "total": int(total), "currency": currency.lower()})
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    if errors:
        raise LedgerImportError(errors)
    if not rows:
        raise LedgerImportError(["The file has a header but no rows."])
    return rows


def ledger_import(*, content: bytes | str, source: str, actor_type: str, actor: str = "") -> dict:
    """Import legacy totals: all rows or none (one transaction), upserting on (account, period, currency)."""
    rows = ledger_parse(content)
    source = (source or "")[:255]
    with transaction.atomic():
        accounts = sorted({r["account"] for r in rows})
        existing: dict[tuple, int] = {}
        for i in range(0, len(accounts), 5000):  # bounded IN lists, whatever the file's size
            existing.update(((a, p, c), t) for a, p, c, t in LedgerEntry.objects.select_for_update().filter(
                account__in=accounts[i:i + 5000]).values_list("account", "period", "currency", "total"))
        result = {"rows": len(rows), "created": 0, "updated": 0, "unchanged": 0}
        for r in rows:
            before = existing.get((r["account"], r["period"], r["currency"]))
            result["created" if before is None else "unchanged" if before == r["total"] else "updated"] += 1
        LedgerEntry.objects.bulk_create([LedgerEntry(source=source, **r) for r in rows], batch_size=2000,
                                        update_conflicts=True, unique_fields=["account", "period", "currency"],
                                        update_fields=["total", "source"])
        audit_log(actor_type=actor_type, actor=actor, action="ledger.imported", target_type="billing_console.ledgerentry", target_id=source or "upload",
                  data={"source": source, **result})
    log.info("ledger imported %s", result, extra={"event": "ledger_imported", "source": source, "counts": result})
    return result


