"""Group refresh tokens by login, so that reuse revokes the whole family."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields(
        "refresh_token",
        family=pw.CharField(max_length=32, null=True, index=True),
        revoked_at=pw.DateTimeField(null=True),
    )


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("refresh_token", "family", "revoked_at")
