"""Allow at most one payable order per transfer.

A partial unique index makes two concurrent requests unable to leave two
payable QR codes for the same debt. SQLite and PostgreSQL both support it.
"""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql(
        "CREATE UNIQUE INDEX payment_one_open_per_transfer ON payment (transfer_id) "
        "WHERE status IN ('creating', 'pending')"
    )


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql("DROP INDEX payment_one_open_per_transfer")
