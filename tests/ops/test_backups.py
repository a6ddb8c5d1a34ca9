import gzip
import hashlib
import json
from pathlib import Path

import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from billing_console.models import AuditEvent, CheckoutAttempt, CronRun, Customer, LedgerEntry
from billing_console.ops import backups
from billing_console.ops.backups import BackupError, backup_export, backup_models, backup_restore
from tests.core.factories import CustomerFactory
from tests.ops.drill import console_snapshot, console_wipe, populate_console, populate_core

pytestmark = pytest.mark.django_db
DRILLED_APPS = {"billing_console", "licensing", "deployments", "dunning"}


def read_backup(path) -> tuple[dict, list[bytes]]:
    with gzip.open(path, "rb") as gz:
        lines = gz.readlines()
    return json.loads(lines[0]), lines[1:]


def write_backup(path, header: dict, payload: list[bytes]) -> None:
    with gzip.open(path, "wb") as gz:
        gz.write((json.dumps(header) + "\n").encode())
        gz.writelines(payload)


def without_restore_audit(snapshot: dict) -> dict:
    rows = [r for r in snapshot["billing_console.auditevent"] if r["fields"]["action"] != "backup.restored"]
    return {**snapshot, "billing_console.auditevent": rows}


def test_database_lost_drill_export_wipe_restore_loses_nothing(tmp_path):
    made = populate_console()
    before = console_snapshot()
    # Every model the drill knows how to fill has rows (a model added later still round-trips, empty).
    assert not [label for label, rows in before.items() if not rows and label.split(".")[0] in DRILLED_APPS]
    result = backup_export(out_path=tmp_path)

    console_wipe()
    assert Customer.objects.count() == 0
    restored = backup_restore(source=result.location)

    assert without_restore_audit(console_snapshot()) == before
    assert sum(restored.counts.values()) == sum(len(rows) for rows in before.values())
    # Ciphertexts came back as stored, on the same primary keys, so they still decrypt.
    assert CheckoutAttempt.objects.get(pk=made["attempt"].pk).recovery_email == "buyer@example.com"
    assert type(made["deployment"]).objects.get(pk=made["deployment"].pk).api_token == "cfTokDrill" + "Z" * 30
    # Sequences were reset: a new row does not collide with a restored primary key.
    assert CustomerFactory().pk > max(r["pk"] for r in before["billing_console.customer"])
    assert AuditEvent.objects.filter(action="backup.restored").count() == 1


def test_every_console_model_is_backed_up_parents_before_children():
    ordered = backup_models()
    expected = {m for label in backups.BACKUP_APPS for m in apps.get_app_config(label).get_models()}
    assert set(ordered) == expected
    position = {m: i for i, m in enumerate(ordered)}
    for model in ordered:
        for f in model._meta.concrete_fields:
            if f.is_relation and f.related_model in position and f.related_model is not model:
                assert position[f.related_model] < position[model], (model, f.name)


def test_the_file_is_gzip_with_a_versioned_header_and_a_payload_checksum(tmp_path):
    populate_core()
    result = backup_export(out_path=tmp_path / "b.jsonl.gz")
    header, payload = read_backup(result.location)
    assert header["format"] == "billing-console-backup" and header["version"] == 1
    assert header["payload_sha256"] == hashlib.sha256(b"".join(payload)).hexdigest() == result.sha256
    assert header["counts"]["billing_console.customer"] == 2
    assert set(header["schema"]) == set(backups.BACKUP_APPS)
    assert header["models"][0] == "billing_console.customer"
    assert header["vault_key_ids"] and len(payload) == sum(header["counts"].values())
    # Never decrypted: the plaintext recovery address is nowhere in the file.
    assert b"buyer@example.com" not in b"".join(payload)


def test_export_to_storage_keeps_only_the_newest_backups(settings):
    settings.BACKUP_RETENTION = 2
    for old in ("20200101T000000000000Z", "20200102T000000000000Z"):
        default_storage.save(f"backups/console-backup-{old}.jsonl.gz", __import__("io").BytesIO(b"old"))
    default_storage.save("backups/notes.txt", __import__("io").BytesIO(b"not ours"))
    result = backup_export()
    assert result.location.startswith("backups/console-backup-")
    assert result.pruned == ["console-backup-20200101T000000000000Z.jsonl.gz"]
    _, files = default_storage.listdir("backups")
    assert sorted(files) == sorted(["console-backup-20200102T000000000000Z.jsonl.gz", Path(result.location).name,
                                    "notes.txt"])


def test_restore_reads_a_backup_by_its_storage_name():
    populate_core()
    result = backup_export()
    console_wipe()
    assert sum(backup_restore(source=result.location).counts.values()) > 0


def test_daily_cron_exports_and_records_a_cron_run():
    populate_core()
    backups.backup_export_cron()
    run = CronRun.objects.filter(name="backup_export").get()
    assert run.status == "ok" and run.counts["rows"] > 0 and run.counts["pruned"] == 0
    assert len(default_storage.listdir("backups")[1]) == 1


def test_export_into_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_backup", out=str(tmp_path / "nope" / "b.jsonl.gz"))


def test_missing_file_is_refused():
    with pytest.raises(CommandError, match="No backup file at /no/such/backup.jsonl.gz"):
        call_command("restore_backup", "/no/such/backup.jsonl.gz")


def test_a_file_that_is_not_a_backup_is_refused(tmp_path):
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"plain text, not gzip")
    with pytest.raises(BackupError, match="not a gzip backup"):
        backup_restore(source=str(junk))
    other = tmp_path / "other.gz"
    with gzip.open(other, "wb") as gz:
        gz.write(b'{"format": "something-else"}\n')
    with pytest.raises(BackupError, match="not a console backup"):
        backup_restore(source=str(other))


def test_a_damaged_payload_fails_the_checksum_and_nothing_is_written(tmp_path):
    populate_core()
    path = backup_export(out_path=tmp_path / "b.jsonl.gz").location
    header, payload = read_backup(path)
    payload[0] = payload[0].replace(b"customer", b"custumer", 1)
    write_backup(path, header, payload)
    console_wipe()
    with pytest.raises(CommandError, match="fails its checksum"):
        call_command("restore_backup", path)
    assert Customer.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_a_newer_format_version_is_refused(tmp_path):
    path = backup_export(out_path=tmp_path / "b.jsonl.gz").location
    header, payload = read_backup(path)
    write_backup(path, {**header, "version": 99}, payload)
    with pytest.raises(CommandError, match="backup format 99; this console reads format 1"):
        call_command("restore_backup", path)


def test_a_backup_from_a_newer_schema_is_refused(tmp_path):
    path = backup_export(out_path=tmp_path / "b.jsonl.gz").location
    header, payload = read_backup(path)
    write_backup(path, {**header, "schema": {**header["schema"], "billing_console": "0099_future"}}, payload)
    console_wipe()
    with pytest.raises(BackupError, match="billing_console.0099_future, which this database has not applied"):
        backup_restore(source=path)


def test_a_database_with_console_data_is_refused_without_force(tmp_path):
    populate_core()
    path = backup_export(out_path=tmp_path / "b.jsonl.gz").location
    before = console_snapshot()
    CustomerFactory(email="new-since-backup@example.com")
    with pytest.raises(CommandError, match=r"already holds console data: billing_console.customer \(3\).*--force"):
        call_command("restore_backup", path)
    assert Customer.objects.filter(email="new-since-backup@example.com").exists()

    call_command("restore_backup", path, force=True)
    assert not Customer.objects.filter(email="new-since-backup@example.com").exists()
    assert without_restore_audit(console_snapshot()) == before


def test_rows_a_migration_seeded_with_the_same_keys_do_not_block_a_restore(tmp_path):
    seeded = LedgerEntry.objects.create(account="cus_seed", period="2026-01", total=1, currency="usd")
    path = backup_export(out_path=tmp_path / "b.jsonl.gz").location
    backup_restore(source=path)  # the seeded row is in the backup under the same key: replaced
    assert LedgerEntry.objects.get().pk == seeded.pk
    LedgerEntry.objects.create(account="cus_other", period="2026-01", total=1, currency="usd")
    with pytest.raises(BackupError, match=r"billing_console.ledgerentry \(1\)"):
        backup_restore(source=path)


def test_values_sealed_under_an_unknown_key_are_reported(tmp_path, settings):
    populate_core()
    path = backup_export(out_path=tmp_path / "b.jsonl.gz").location
    console_wipe()
    settings.CLOUD_MASTER_KEY = "another-master-key-0000000000"
    result = backup_restore(source=path)
    assert any("keyring lacks" in note for note in result.notes)


def test_commands_print_counts_per_model(tmp_path, capsys):
    populate_core()
    call_command("export_backup", out=str(tmp_path))
    out = capsys.readouterr().out
    assert "billing_console.customer: 2" in out and "written to" in out
    path = next(tmp_path.glob("console-backup-*.jsonl.gz"))
    console_wipe()
    call_command("restore_backup", str(path))
    out = capsys.readouterr().out
    assert "billing_console.customer: 2" in out and "Restored" in out


def test_a_freshly_migrated_database_with_the_default_dunning_policy_counts_as_empty(tmp_path):
    from dunning.models import DunningPolicy, DunningStep
    from dunning.services import dunning_policy_ensure_default

    console_wipe()
    dunning_policy_ensure_default()  # what the data migration seeded when this database was made
    populate_console()
    before = console_snapshot()
    path = backup_export(out_path=tmp_path / "b.jsonl.gz").location
    console_wipe()
    dunning_policy_ensure_default()  # `migrate` on the new database seeds it again, same keys

    backup_restore(source=path)

    assert without_restore_audit(console_snapshot()) == before
    assert DunningPolicy.objects.count() == len(before["dunning.dunningpolicy"])
    assert DunningStep.objects.count() == len(before["dunning.dunningstep"])
