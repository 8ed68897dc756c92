"""Keep the answer to each write sent with an Idempotency-Key."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class IdempotencyRecord(pw.Model):
        id = pw.AutoField()
        owner = pw.CharField(max_length=48)
        key = pw.CharField(max_length=128)
        method = pw.CharField(max_length=8)
        path = pw.CharField(max_length=255)
        body_digest = pw.CharField(max_length=64)
        state = pw.CharField(max_length=16, default="in_flight")
        status_code = pw.IntegerField(null=True)
        content_type = pw.CharField(max_length=100, null=True)
        response_body = pw.TextField(null=True)
        created_at = pw.DateTimeField(index=True)
        completed_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "idempotency_record"
            indexes = ((("owner", "key"), True),)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("idempotency_record")
