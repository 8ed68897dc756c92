"""Final meter readings, and a case change whenever one is stored or disputed.

The case view shows each transfer's reading, so the table gets the same
kind of trigger as the tables in migration 011.
"""

import peewee as pw
from peewee_migrate import Migrator

AFFECTED = 'SELECT case_id FROM "transfer" WHERE id = {row}.transfer_id'


def _sqlite_statements():
    statements = []
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        statements.append(
            f"CREATE TRIGGER case_change_meter_reading_{event.lower()} "
            f'AFTER {event} ON "meter_reading" BEGIN '
            "INSERT INTO case_change (case_id, changed_at) "
            f"SELECT case_id, CURRENT_TIMESTAMP FROM ({AFFECTED.format(row=row)}) "
            "AS affected; END"
        )
    return statements


def _postgresql_statements():
    inserts = {
        row: "INSERT INTO case_change (case_id, changed_at) "
        f"SELECT case_id, now() AT TIME ZONE 'UTC' FROM ({AFFECTED.format(row=row)}) "
        "AS affected;"
        for row in ("NEW", "OLD")
    }
    body = (
        f"BEGIN IF TG_OP = 'DELETE' THEN {inserts['OLD']} "
        f"ELSE {inserts['NEW']} END IF; RETURN NULL; END"
    )
    return [
        "CREATE OR REPLACE FUNCTION case_change_meter_reading() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ {body} $$",
        'DROP TRIGGER IF EXISTS case_change_meter_reading ON "meter_reading"',
        "CREATE TRIGGER case_change_meter_reading AFTER INSERT OR UPDATE OR DELETE "
        'ON "meter_reading" FOR EACH ROW EXECUTE FUNCTION case_change_meter_reading()',
    ]


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class MeterReading(pw.Model):
        id = pw.AutoField()
        transfer = pw.ForeignKeyField(
            model=migrator.orm["transfer"],
            field="id",
            unique=True,
            on_delete="CASCADE",
        )
        reading_id = pw.CharField(max_length=64)
        value = pw.CharField(max_length=64)
        unit = pw.CharField(max_length=16)
        read_at = pw.CharField(max_length=64)
        method = pw.CharField(max_length=32)
        received_at = pw.DateTimeField()
        disputed_at = pw.DateTimeField(null=True)
        dispute_note = pw.TextField(null=True)
        photo_sha256 = pw.CharField(max_length=64, null=True)
        photo_type = pw.CharField(max_length=16, null=True)

        class Meta:
            table_name = "meter_reading"

    if isinstance(database, pw.PostgresqlDatabase):
        statements = _postgresql_statements()
    else:
        statements = _sqlite_statements()
    for statement in statements:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql("DROP FUNCTION IF EXISTS case_change_meter_reading() CASCADE")
    migrator.remove_model("meter_reading")
