"""Give utilities a service time, transfers a due time, and overdue alerts."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields("utility", service_days=pw.IntegerField(null=True))
    migrator.add_fields(
        "transfer",
        delivered_at=pw.DateTimeField(null=True),
        due_at=pw.DateTimeField(null=True, index=True),
        overdue_at=pw.DateTimeField(null=True),
    )

    @migrator.create_model
    class OverdueAlert(pw.Model):
        id = pw.AutoField()
        transfer = pw.ForeignKeyField(
            model=migrator.orm["transfer"],
            field="id",
            unique=True,
            on_delete="CASCADE",
        )
        utility = pw.ForeignKeyField(model=migrator.orm["utility"], field="id")
        due_at = pw.DateTimeField()
        raised_at = pw.DateTimeField(index=True)

        class Meta:
            table_name = "overdue_alert"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("overdue_alert")
    migrator.remove_fields("transfer", "delivered_at", "due_at", "overdue_at")
    migrator.remove_fields("utility", "service_days")
