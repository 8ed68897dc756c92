"""Flag payments that disagree with their order, poll them, record refunds."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields(
        "payment",
        flag=pw.TextField(null=True),
        checked_at=pw.DateTimeField(null=True),
    )

    @migrator.create_model
    class Refund(pw.Model):
        id = pw.AutoField()
        payment = pw.ForeignKeyField(
            column_name="payment_id", field="id", model=migrator.orm["payment"]
        )
        out_refund_no = pw.CharField(max_length=64, unique=True)
        amount_fen = pw.IntegerField()
        reason = pw.CharField(max_length=80)
        status = pw.CharField(default="pending", max_length=16)
        provider_refund_id = pw.CharField(max_length=64, null=True)
        created_at = pw.DateTimeField()
        done_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "refund"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("refund")
    migrator.remove_fields("payment", "flag", "checked_at")
