"""Give roster jobs a lease and attempt count, a cap on stored bad rows, and
an upload id that names their sealed file; record each entry's change."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields(
        "roster_job",
        heartbeat_at=pw.DateTimeField(null=True),
        attempts=pw.IntegerField(default=0),
        problems_left_out=pw.IntegerField(default=0),
        upload_id=pw.CharField(max_length=32, null=True),
    )
    migrator.add_fields("roster_entry", change=pw.CharField(max_length=16, null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("roster_entry", "change")
    migrator.remove_fields(
        "roster_job", "heartbeat_at", "attempts", "problems_left_out", "upload_id"
    )
