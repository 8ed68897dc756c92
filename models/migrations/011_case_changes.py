"""Record every change to what a case's view shows, by database triggers.

Each source table gets a trigger that inserts a `case_change` row for every
case whose view the changed row feeds. A server compares the count and the
highest id of a case's rows with those it saw when it rendered the view.

The triggers are written out per table here, not generated from the models,
so that this migration stays as it was when later code changes.
"""

import peewee as pw
from peewee_migrate import Migrator

# Source table -> a SELECT of the affected case ids, with R standing for the
# changed row (NEW after an insert or update, OLD after a delete).
SOURCES = {
    "case": "SELECT R.id AS case_id",
    "transfer": "SELECT R.case_id AS case_id",
    "reconciliation_item": "SELECT R.case_id AS case_id WHERE R.case_id IS NOT NULL",
    "business": 'SELECT id AS case_id FROM "case" WHERE business_id = R.id',
    "party": 'SELECT id AS case_id FROM "case" WHERE business_id = R.business_id',
    "delegation": 'SELECT id AS case_id FROM "case" WHERE business_id = R.business_id',
    "counter_consent": (
        'SELECT id AS case_id FROM "case" WHERE business_id = R.business_id'
    ),
    "unit": (
        'SELECT c.id AS case_id FROM "case" c JOIN business b '
        "ON b.id = c.business_id WHERE b.unit_id = R.id"
    ),
    "account_link": "SELECT case_id FROM transfer WHERE account_id = R.id",
    "utility": "SELECT DISTINCT case_id FROM transfer WHERE utility_id = R.id",
}

# Tables with many rows no view reads, or columns no view shows, fire only when
# a shown column changes: a roster re-link or a delivery back-off then adds no
# rows for cases that look the same.
SHOWN_COLUMNS = {
    "account_link": ("holder_name", "holder_id_numbers", "account_address"),
    "utility": ("service_org", "kind", "connection"),
}


def _rows(table, row):
    return SOURCES[table].replace("R.", f"{row}.")


def _changed(columns, distinct):
    return " OR ".join(f"OLD.{column} {distinct} NEW.{column}" for column in columns)


def sqlite_statements(table):
    statements = []
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        condition = ""
        if event == "UPDATE" and table in SHOWN_COLUMNS:
            condition = f" WHEN {_changed(SHOWN_COLUMNS[table], 'IS NOT')}"
        statements.append(
            f"CREATE TRIGGER case_change_{table}_{event.lower()} "
            f'AFTER {event} ON "{table}"{condition} BEGIN '
            "INSERT INTO case_change (case_id, changed_at) "
            f"SELECT case_id, CURRENT_TIMESTAMP FROM ({_rows(table, row)}) "
            "AS affected; END"
        )
    return statements


def postgresql_statements(table):
    function = f"case_change_{table}"
    inserts = {
        row: "INSERT INTO case_change (case_id, changed_at) "
        f"SELECT case_id, now() AT TIME ZONE 'UTC' FROM ({_rows(table, row)}) "
        "AS affected;"
        for row in ("NEW", "OLD")
    }
    body = (
        f"BEGIN IF TG_OP = 'DELETE' THEN {inserts['OLD']} "
        f"ELSE {inserts['NEW']} END IF; RETURN NULL; END"
    )
    statements = [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ {body} $$",
    ]
    # A trigger's WHEN may not read OLD on insert, so an update that must
    # show a change gets a trigger of its own.
    if table in SHOWN_COLUMNS:
        changed = _changed(SHOWN_COLUMNS[table], "IS DISTINCT FROM")
        triggers = {
            f"{function}_write": ("INSERT OR DELETE", ""),
            f"{function}_update": ("UPDATE", f" WHEN ({changed})"),
        }
    else:
        triggers = {function: ("INSERT OR UPDATE OR DELETE", "")}
    for name, (events, when) in triggers.items():
        statements.append(f'DROP TRIGGER IF EXISTS {name} ON "{table}"')
        statements.append(
            f'CREATE TRIGGER {name} AFTER {events} ON "{table}" '
            f"FOR EACH ROW{when} EXECUTE FUNCTION {function}()"
        )
    return statements


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class CaseChange(pw.Model):
        id = pw.BigAutoField()
        case_id = pw.IntegerField()
        changed_at = pw.DateTimeField()

        class Meta:
            table_name = "case_change"
            indexes = ((("case_id", "id"), False),)

    postgresql = isinstance(database, pw.PostgresqlDatabase)
    for table in SOURCES:
        if postgresql:
            statements = postgresql_statements(table)
        else:
            statements = sqlite_statements(table)
        for statement in statements:
            migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    postgresql = isinstance(database, pw.PostgresqlDatabase)
    for table in SOURCES:
        if postgresql:
            migrator.sql(f"DROP FUNCTION IF EXISTS case_change_{table}() CASCADE")
        else:
            for event in ("insert", "update", "delete"):
                migrator.sql(f"DROP TRIGGER IF EXISTS case_change_{table}_{event}")
    migrator.remove_model("case_change")
