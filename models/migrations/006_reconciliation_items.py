"""Queue accounts that the online checks could not place for their utility.

A partial unique index allows at most one open item per account and case, so
that an applicant who asks twice gets the same item back. SQLite and
PostgreSQL both support it.
"""

import peewee as pw
from peewee_migrate import Migrator


def _fk(migrator, table, null=False, on_delete=None):
    return pw.ForeignKeyField(
        model=migrator.orm[table], field="id", null=null, on_delete=on_delete
    )


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class ReconciliationItem(pw.Model):
        id = pw.AutoField()
        utility = _fk(migrator, "utility")
        account_no = pw.CharField(max_length=64)
        source = pw.CharField(max_length=16)
        case = _fk(migrator, "case", null=True, on_delete="CASCADE")
        business = _fk(migrator, "business", null=True)
        unit = _fk(migrator, "unit", null=True)
        reasons = pw.TextField()
        candidates = pw.TextField(null=True)
        holder_name = pw.TextField(null=True)
        holder_id_numbers = pw.TextField(null=True)
        account_address = pw.TextField(null=True)
        status = pw.CharField(max_length=16, default="open")
        decision_note = pw.TextField(null=True)
        decided_by = _fk(migrator, "staff", null=True)
        decided_via = pw.CharField(max_length=16, null=True)
        transfer = _fk(migrator, "transfer", null=True)
        created_at = pw.DateTimeField(index=True)
        decided_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "reconciliation_item"
            indexes = [(("utility", "status"), False)]

    migrator.sql(
        "CREATE UNIQUE INDEX reconciliation_item_one_open ON reconciliation_item "
        "(utility_id, account_no, case_id) WHERE status = 'open'"
    )


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("reconciliation_item")
