"""Keep each utility's latest answer on whether an account can transfer."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields(
        "transfer",
        check_result=pw.TextField(null=True),
        checked_at=pw.DateTimeField(null=True),
    )


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("transfer", "check_result", "checked_at")
