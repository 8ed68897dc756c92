"""Create the evidence log, its head row and the signing keys' public halves."""

import peewee as pw
from peewee_migrate import Migrator

GENESIS_HASH = "0" * 64


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class EvidenceEntry(pw.Model):
        id = pw.AutoField()
        seq = pw.IntegerField(unique=True)
        prev_hash = pw.CharField(max_length=64)
        case_prev_hash = pw.CharField(max_length=64)
        kind = pw.CharField(max_length=32)
        case_id = pw.IntegerField(null=True, index=True)
        transfer_id = pw.IntegerField(null=True)
        occurred_at = pw.CharField(max_length=32)
        payload_digest = pw.CharField(max_length=64)
        detail = pw.TextField()
        key_id = pw.CharField(max_length=64)
        entry_hash = pw.CharField(max_length=64, unique=True)
        signature = pw.CharField(max_length=128)

        class Meta:
            table_name = "evidence_entry"

    @migrator.create_model
    class EvidenceHead(pw.Model):
        id = pw.AutoField()
        seq = pw.IntegerField(default=0)
        entry_hash = pw.CharField(max_length=64, default=GENESIS_HASH)
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "evidence_head"

    @migrator.create_model
    class EvidenceKey(pw.Model):
        id = pw.AutoField()
        key_id = pw.CharField(max_length=64, unique=True)
        public_key = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "evidence_key"

    # Writers lock this one row to append, so it must exist before the first.
    migrator.sql(
        "INSERT INTO evidence_head (id, seq, entry_hash, updated_at) "
        f"VALUES (1, 0, '{GENESIS_HASH}', CURRENT_TIMESTAMP)"
    )


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("evidence_key")
    migrator.remove_model("evidence_head")
    migrator.remove_model("evidence_entry")
