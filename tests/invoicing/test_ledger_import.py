import pytest
from django.core.management import CommandError, call_command

from billing_console.invoicing.ledger import LedgerImportError, ledger_import
from billing_console.models import AuditEvent, LedgerEntry
from tests.invoicing.factories import LedgerEntryFactory

pytestmark = pytest.mark.django_db

GOOD = "account,period,total,currency\ncus_a,2026-01,1999,usd\ncus_a,2026-02,1999,USD\ncus_b,2026-01,150000,jpy\n"


def test_rows_are_imported_and_upserted_on_account_period_currency():
    LedgerEntryFactory(account="cus_a", period="2026-01", total=1, currency="usd", source="old.csv")
    result = ledger_import(content=GOOD.encode(), source="legacy.csv", actor_type="system", actor="test")
    assert result == {"rows": 3, "created": 2, "updated": 1, "unchanged": 0}
    assert set(LedgerEntry.objects.values_list("account", "period", "total", "currency", "source")) == {
        ("cus_a", "2026-01", 1999, "usd", "legacy.csv"), ("cus_a", "2026-02", 1999, "usd", "legacy.csv"),
        ("cus_b", "2026-01", 150000, "jpy", "legacy.csv")}
    again = ledger_import(content=GOOD, source="legacy.csv", actor_type="system", actor="test")
    assert again["unchanged"] == 3 and LedgerEntry.objects.count() == 3
    assert AuditEvent.objects.filter(action="ledger.imported").count() == 2


def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_imported():
    content = ("account,period,total,currency\n"
               "cus_a,2026-01,1999,usd\n"
               "cus_a,2026-13,1999,usd\n"       # line 3: month 13
               "cus_b,2026-01,19.99,usd\n"      # line 4: decimal total
               "\n"
               "cus_c,2026-01,100,dollars\n"    # line 6: currency
               "cus_a,2026-01,5,usd\n"          # line 7: duplicate of line 2
               " ,2026-01,5,usd\n"              # line 8: no account
               "cus_d,2026-01\n")               # line 9: short row
    with pytest.raises(LedgerImportError) as caught:
        ledger_import(content=content.encode(), source="bad.csv", actor_type="system")
    errors = caught.value.errors
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 6", "line 7", "line 8", "line 9"]
    assert "no decimals" in errors[1] and "'19.99'" in errors[1] and "duplicate of line 2" in errors[3]
    assert not LedgerEntry.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"account,period,amount,currency\ncus_a,2026-01,1,usd\n", "header"),
    (b"account,period,total,currency\n", "no rows"),
    ("account,period,total,currency\ncus_a,2026-01,1,usd\n".encode("utf-16"), "UTF-8"),
])
def test_unreadable_files_are_refused(content, message):
    with pytest.raises(LedgerImportError, match=message):
        ledger_import(content=content, source="x.csv", actor_type="system")
    assert not LedgerEntry.objects.exists()


def test_columns_may_come_in_any_order_and_a_bom_is_ignored():
    ledger_import(content="\ufeffcurrency,total,period,account\nEUR,500,2026-03,cus_z\n".encode(), source="x.csv",
                  actor_type="system")
    assert LedgerEntry.objects.get().total == 500


def test_command_imports_a_file(tmp_path, capsys):
    path = tmp_path / "ledger.csv"
    path.write_text(GOOD)
    call_command("import_ledger", str(path))
    assert "Imported 3 rows" in capsys.readouterr().out and LedgerEntry.objects.count() == 3


def test_command_reports_bad_rows_and_imports_nothing(tmp_path, capsys):
    path = tmp_path / "ledger.csv"
    path.write_text("account,period,total,currency\ncus_a,2026-01,1999,usd\ncus_a,2026-02,12.5,usd\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_ledger", str(path))
    assert "line 3:" in capsys.readouterr().err and not LedgerEntry.objects.exists()


def test_command_refuses_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_ledger", str(tmp_path / "nope.csv"))
