"""Backups of the console's own tables: one gzip file per export, restorable into an empty database.

The file is gzip-compressed JSON lines. Line 1 is the header:
    {"format": "billing-console-backup", "version": 1, "created_at": ISO, "schema": {app: latest
     applied migration}, "models": [labels in restore order], "counts": {label: rows},
     "payload_sha256": hex, "payload_bytes": n, "vault_key_ids": [...]}
Every further line is one row in Django's serializer shape ({"model", "pk", "fields"}); the sha256
covers exactly those bytes. Vault columns are plain text columns, so ciphertexts travel as stored and
are never decrypted; primary keys are kept, so they still decrypt after a restore (the row id is in
the associated data).

The models come from the app registry (every model of BACKUP_APPS), so a model an app adds later is
backed up without touching this module. dj-stripe's mirror is not included: it is rebuilt from Stripe.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, time as dt_time, timezone as dt_timezone
from pathlib import Path
from typing import IO, Iterator

from django.apps import apps
from django.conf import settings
from django.core import serializers
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.management.color import no_style
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.models import Model

from billing_console.errors import ServiceError
from billing_console.vault import Keyring, VaultError, encrypted_columns, key_id_of

log = logging.getLogger("billing_console.backups")

FORMAT = "billing-console-backup"
FORMAT_VERSION = 1
BACKUP_APPS = ("billing_console", "licensing", "deployments", "dunning")
STORAGE_DIR = "backups"
FILE_PREFIX = "console-backup-"
FILE_SUFFIX = ".jsonl.gz"
_CHUNK = 2000


class BackupError(ServiceError):
    """A backup that cannot be written or restored; the message says what to do."""


@dataclass
class ExportResult:
    location: str
    counts: dict[str, int]
    sha256: str
    size: int
    pruned: list[str] = field(default_factory=list)


@dataclass
class RestoreResult:
    counts: dict[str, int]
    wiped: dict[str, int]
    notes: list[str]


# --- Models and schema ----------------------------------------------------------------------------
def backup_models() -> list[type[Model]]:
    """Every concrete model of the console's apps, parents before the rows that point at them."""
    found = [m for label in BACKUP_APPS for m in apps.get_app_config(label).get_models()
             if not m._meta.proxy and m._meta.managed]
    members = set(found)

    def deps(model) -> set:
        targets = {f.related_model for f in model._meta.concrete_fields if f.is_relation}
        targets |= {f.related_model for f in model._meta.local_many_to_many}
        return {t for t in targets if t in members and t is not model}

    ordered, placed, pending = [], set(), list(found)
    while pending:
        ready = [m for m in pending if deps(m) <= placed]
        # A cycle (none today) would leave nothing ready: take the next one; FKs are checked at commit.
        for model in ready or pending[:1]:
            ordered.append(model)
            placed.add(model)
            pending.remove(model)
    return ordered


def _by_label() -> dict[str, type[Model]]:
    return {m._meta.label_lower: m for m in backup_models()}


def current_schema(using: str = DEFAULT_DB_ALIAS) -> dict[str, str | None]:
    """The latest applied migration per console app (None: the app has none applied)."""
    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    applied = set(loader.applied_migrations)
    schema: dict[str, str | None] = {}
    for label in BACKUP_APPS:
        leaves = [n for n in loader.graph.leaf_nodes() if n[0] == label]
        plan = [n for leaf in leaves for n in loader.graph.forwards_plan(leaf)]
        done = [name for app, name in plan if app == label and (app, name) in applied]
        schema[label] = done[-1] if done else None
    return schema


def _applied(using: str) -> set[tuple[str, str]]:
    return set(MigrationLoader(connections[using], ignore_no_migrations=True).applied_migrations)


# --- Export ---------------------------------------------------------------------------------------
class _ExactEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder cuts datetimes to milliseconds (ECMA-262); a backup keeps every microsecond."""

    def default(self, o):
        if isinstance(o, (datetime, dt_time)):
            return o.isoformat()
        return super().default(o)


class _HashingWriter:
    def __init__(self, raw: IO[bytes]):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def write_line(self, obj: dict) -> None:
        data = (json.dumps(obj, cls=_ExactEncoder, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self.sha.update(data)
        self.size += len(data)
        self.raw.write(data)


def _write_payload(writer: _HashingWriter, using: str) -> tuple[dict[str, int], list[str]]:
    counts: dict[str, int] = {}
    for model in backup_models():
        n = 0
        rows = model._base_manager.using(using).order_by("pk").iterator(chunk_size=_CHUNK)
        while True:
            chunk = [row for _, row in zip(range(_CHUNK), rows)]
            if not chunk:
                break
            for obj in serializers.serialize("python", chunk):
                writer.write_line(obj)
            n += len(chunk)
        counts[model._meta.label_lower] = n
    key_ids = set()
    for model, column in encrypted_columns():
        for token in model._base_manager.using(using).exclude(**{column: ""}).values_list(column, flat=True).iterator():
            key_ids.add(key_id_of(token))
    return counts, sorted(key_ids)


def backup_filename(now: datetime | None = None) -> str:
    now = now or datetime.now(dt_timezone.utc)
    return f"{FILE_PREFIX}{now:%Y%m%dT%H%M%S%fZ}{FILE_SUFFIX}"


def backup_export(*, out_path: str | os.PathLike | None = None, retention: int | None = None,
                  using: str = DEFAULT_DB_ALIAS) -> ExportResult:
    """Write every console row to one gzip file: at `out_path` (a file or a folder), else through
    Django's storage under backups/, keeping the newest `retention` files there (BACKUP_RETENTION)."""
    created = datetime.now(dt_timezone.utc)
    with tempfile.TemporaryFile() as payload:
        writer = _HashingWriter(payload)
        conn = connections[using]
        outermost = not conn.in_atomic_block
        with transaction.atomic(using=using):
            if conn.vendor == "postgresql" and outermost:
                # One snapshot for every table, so a row never points at a parent read earlier.
                conn.cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            counts, key_ids = _write_payload(writer, using)
        header = {
            "format": FORMAT, "version": FORMAT_VERSION, "created_at": created.isoformat(),
            "schema": current_schema(using), "models": list(counts), "counts": counts,
            "payload_sha256": writer.sha.hexdigest(), "payload_bytes": writer.size, "vault_key_ids": key_ids,
        }
        payload.seek(0)
        with tempfile.NamedTemporaryFile(suffix=FILE_SUFFIX, delete=False) as packed:
            with gzip.GzipFile(fileobj=packed, mode="wb", mtime=int(created.timestamp())) as gz:
                gz.write((json.dumps(header, separators=(",", ":")) + "\n").encode())
                while block := payload.read(1 << 20):
                    gz.write(block)
            packed_path = Path(packed.name)
    try:
        size = packed_path.stat().st_size
        pruned: list[str] = []
        if out_path is not None:
            target = Path(out_path)
            if target.is_dir():
                target = target / backup_filename(created)
            if not target.parent.is_dir():
                raise BackupError("backup_failed", f"Folder {target.parent} does not exist.")
            tmp_target = target.with_name(target.name + ".part")
            with open(packed_path, "rb") as src, open(tmp_target, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            os.replace(tmp_target, target)  # never a half-written file under the final name
            location = str(target)
        else:
            with open(packed_path, "rb") as src:
                location = default_storage.save(f"{STORAGE_DIR}/{backup_filename(created)}", File(src))
            pruned = backup_prune(keep=settings.BACKUP_RETENTION if retention is None else retention)
    finally:
        packed_path.unlink(missing_ok=True)
    log.info("backup exported to %s (%d rows)", location, sum(counts.values()),
             extra={"event": "backup_exported", "location": location, "rows": sum(counts.values()),
                    "bytes": size, "sha256": header["payload_sha256"]})
    return ExportResult(location=location, counts=counts, sha256=header["payload_sha256"], size=size, pruned=pruned)


def backup_prune(*, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups in storage (names sort by time). Returns what went."""
    if keep < 1:
        raise BackupError("backup_failed", "BACKUP_RETENTION must be at least 1.")
    try:
        _, files = default_storage.listdir(STORAGE_DIR)
    except FileNotFoundError:
        return []
    ours = sorted(f for f in files if f.startswith(FILE_PREFIX) and f.endswith(FILE_SUFFIX))
    gone = ours[:-keep]
    for name in gone:
        default_storage.delete(f"{STORAGE_DIR}/{name}")
    return gone


def backup_export_cron() -> None:
    """django-q2 entry point of the daily "backup_export" schedule."""
    from billing_console.services import cron_guard

    with cron_guard("backup_export") as run:
        if run is None:
            return
        result = backup_export()
        run.counts = {"rows": sum(result.counts.values()), "bytes": result.size, "pruned": len(result.pruned)}


# --- Restore --------------------------------------------------------------------------------------
class _Backup:
    """An open backup file: header read and checked, payload lines streamed on demand."""

    def __init__(self, source: str):
        self.source = source
        if Path(source).is_file():
            self._open = lambda: open(source, "rb")
        elif not os.path.isabs(source) and default_storage.exists(source):
            self._open = lambda: default_storage.open(source, "rb")
        else:
            raise BackupError("backup_failed", f"No backup file at {source} (neither a file nor a name in the storage).")
        self.header = self._read_header()

    def _stream(self):
        raw = self._open()
        try:
            gz = gzip.GzipFile(fileobj=raw, mode="rb")
            first = gz.readline()
            return raw, gz, first
        except Exception:
            raw.close()
            raise

    def _read_header(self) -> dict:
        raw, gz, first = None, None, b""
        try:
            raw, gz, first = self._stream()
        except (OSError, EOFError) as exc:
            raise BackupError("backup_failed", f"{self.source} is not a gzip backup file ({exc}).") from exc
        finally:
            if raw is not None:
                raw.close()
        try:
            header = json.loads(first)
        except ValueError as exc:
            raise BackupError("backup_failed", f"{self.source} has no backup header; it is not a console backup.") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BackupError("backup_failed", f"{self.source} is not a console backup (format {header.get('format')!r}).")
        version = header.get("version")
        if not isinstance(version, int) or version < 1:
            raise BackupError("backup_failed", f"{self.source} has an invalid format version {version!r}.")
        if version > FORMAT_VERSION:
            raise BackupError("backup_failed", f"{self.source} was written in backup format {version}; this console reads "
                              f"format {FORMAT_VERSION}. Restore it with the console version that made it.")
        for key in ("counts", "models", "payload_sha256", "schema"):
            if key not in header:
                raise BackupError("backup_failed", f"{self.source} header lacks {key!r}; the file is damaged.")
        return header

    def payload(self) -> Iterator[bytes]:
        raw, gz, _ = self._stream()
        try:
            yield from gz
        except (OSError, EOFError) as exc:
            raise BackupError("backup_failed", f"{self.source} is truncated or damaged ({exc}).") from exc
        finally:
            raw.close()

    def verify(self) -> None:
        sha, size = hashlib.sha256(), 0
        for line in self.payload():
            sha.update(line)
            size += len(line)
        if sha.hexdigest() != self.header["payload_sha256"] or size != self.header.get("payload_bytes", size):
            raise BackupError("backup_failed", f"{self.source} fails its checksum: the file is damaged or was edited. Nothing restored.")



def _blocking_rows(backup: _Backup, models: dict[str, type[Model]], using: str) -> dict[str, int]:
    """Rows the restore would not replace, per model. Customers always count; elsewhere a row whose
    primary key the backup also holds is one a data migration seeded (e.g. the default dunning
    policy) and is replaced, so a freshly migrated database counts as empty."""
    present = {label: n for label, model in models.items() if (n := model._base_manager.using(using).count())}
    customer_label = "billing_console.customer"
    blockers = {customer_label: present.pop(customer_label)} if customer_label in present else {}
    if present:
        in_backup: dict[str, set[str]] = {label: set() for label in present}
        for line in backup.payload():
            row = json.loads(line)
            if row["model"] in in_backup:
                in_backup[row["model"]].add(str(row["pk"]))
        for label in present:
            pks = models[label]._base_manager.using(using).values_list("pk", flat=True).iterator()
            extra = sum(1 for pk in pks if str(pk) not in in_backup[label])
            if extra:
                blockers[label] = extra
    return blockers


def _wipe(models: dict[str, type[Model]], using: str) -> dict[str, int]:
    wiped = {}
    for label, model in reversed(list(models.items())):
        # A plain DELETE per table, children first: no cascade collection, no signals.
        wiped[label] = model._base_manager.using(using).all()._raw_delete(using)
    return wiped


def _load(backup: _Backup, models: dict[str, type[Model]], using: str, ignore_unknown_fields: bool) -> dict[str, int]:
    counts = {label: 0 for label in models}
    m2m: list[tuple[Model, dict]] = []
    batch: list[dict] = []

    def flush():
        if not batch:
            return
        model = models[batch[0]["model"]]
        objs = list(serializers.deserialize("python", batch, using=using, ignorenonexistent=ignore_unknown_fields))
        fields = model._meta.local_concrete_fields
        size = max(1, connections[using].ops.bulk_batch_size(fields, objs) or len(objs))
        for i in range(0, len(objs), size):
            # raw=True keeps stored values as they are: auto_now timestamps, ciphertexts, primary keys.
            model._base_manager.using(using)._insert([o.object for o in objs[i:i + size]], fields=fields,
                                                    raw=True, using=using)
        m2m.extend((o.object, o.m2m_data) for o in objs if o.m2m_data)
        counts[model._meta.label_lower] += len(objs)
        batch.clear()

    for line in backup.payload():
        row = json.loads(line)
        if row.get("model") not in models:
            raise BackupError("backup_failed", f"The backup holds a row of {row.get('model')!r}, which this console does not have.")
        if batch and batch[0]["model"] != row["model"] or len(batch) >= _CHUNK:
            flush()
        batch.append(row)
    flush()
    for obj, relations in m2m:
        for name, values in relations.items():
            getattr(obj, name).set(values)
    return counts


def _reset_sequences(models: dict[str, type[Model]], using: str) -> None:
    conn = connections[using]
    statements = conn.ops.sequence_reset_sql(no_style(), list(models.values()))
    if statements:
        with conn.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)


def backup_restore(*, source: str, force: bool = False, using: str = DEFAULT_DB_ALIAS) -> RestoreResult:
    """Restore a backup into an empty database, keeping primary keys, in one transaction.

    Refuses a database that already holds console data unless `force`, which deletes every console
    row first, in the same transaction: a failure at any point leaves the database as it was.
    """
    from billing_console.models import AuditEvent
    from billing_console.services import audit_log

    backup = _Backup(source)
    header = backup.header
    models = _by_label()
    unknown = [label for label in header["models"] if label not in models]
    if unknown:
        raise BackupError("backup_failed", f"The backup holds rows of {', '.join(unknown)}, which this console does not have. "
                          "Restore it with the console version that made it.")
    notes: list[str] = []
    applied, here = _applied(using), current_schema(using)
    for app, name in header["schema"].items():
        if name and (app, name) not in applied:
            raise BackupError("backup_failed", f"The backup was made at migration {app}.{name}, which this database has not applied. "
                              "Run `python manage.py migrate` with the console version that made the backup first.")
        if here.get(app) != name:
            notes.append(f"{app}: backup made at migration {name}, database at {here.get(app)}; "
                         "fields added since take their defaults.")
    backup.verify()
    try:
        known = Keyring.from_settings().keys
    except VaultError:
        known = {}
    missing_keys = [kid for kid in header.get("vault_key_ids", []) if kid not in known]
    if missing_keys:
        notes.append(f"Vault values are sealed with key {'id' if len(missing_keys) == 1 else 'ids'} {', '.join(missing_keys)}, which the keyring lacks: "
                     "set CLOUD_MASTER_KEY (or CLOUD_MASTER_KEY_PREVIOUS) to the key in use when the backup was made.")
    try:
        with transaction.atomic(using=using):
            blockers = {} if force else _blocking_rows(backup, models, using)
            if blockers:
                listed = ", ".join(f"{label} ({n})" for label, n in blockers.items())
                raise BackupError("backup_failed", f"The database already holds console data: {listed}. restore_backup fills an empty "
                                  "database only; run it with --force to delete every console row first "
                                  "(in the same transaction as the restore).")
            wiped = {label: n for label, n in _wipe(models, using).items() if n}
            counts = _load(backup, models, using, ignore_unknown_fields=bool(notes))
            expected = {label: header["counts"].get(label, 0) for label in models}
            if counts != expected:
                differ = [label for label in models if counts[label] != expected[label]]
                raise BackupError("backup_failed", f"Row counts do not match the header for {', '.join(differ)}; nothing restored.")
            _reset_sequences(models, using)
            audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="restore_backup", action="backup.restored",
                      target_type="billing_console.backup", target_id=Path(source).name,
                      data={"created_at": header.get("created_at"), "rows": sum(counts.values()), "forced": force,
                            "wiped": sum(wiped.values())})
    except IntegrityError as exc:
        raise BackupError("backup_failed", f"The database refused the restored rows ({exc}); nothing restored.") from exc
    log.info("backup restored from %s (%d rows)", Path(source).name, sum(counts.values()),
             extra={"event": "backup_restored", "rows": sum(counts.values()), "forced": force,
                    "wiped": sum(wiped.values())})
    return RestoreResult(counts=counts, wiped=wiped, notes=notes)
