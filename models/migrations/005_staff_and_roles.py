"""Staff and their organisations, counter consent, the case audit trail, lookups.

Delegations now name the business, so that an owner can authorise an agency
before the case exists; cases opened at a registry window have no citizen.
"""

import peewee as pw
from peewee_migrate import Migrator


def _fk(migrator, table, null=False, on_delete=None):
    return pw.ForeignKeyField(
        model=migrator.orm[table], field="id", null=null, on_delete=on_delete
    )


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Organisation(pw.Model):
        id = pw.AutoField()
        kind = pw.CharField(max_length=16)
        name = pw.CharField(max_length=100, unique=True)
        credit_code = pw.CharField(max_length=18, null=True, unique=True)
        utility = _fk(migrator, "utility", null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "organisation"

    @migrator.create_model
    class Staff(pw.Model):
        id = pw.AutoField()
        username = pw.CharField(max_length=64, unique=True)
        password_hash = pw.CharField(max_length=255)
        role = pw.CharField(max_length=16)
        organisation = _fk(migrator, "organisation")
        display_name = pw.TextField()
        active = pw.BooleanField(default=True)
        failed_logins = pw.IntegerField(default=0)
        locked_until = pw.DateTimeField(null=True)
        must_change_password = pw.BooleanField(default=True)
        password_changed_at = pw.DateTimeField(null=True)
        last_login_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "staff"

    @migrator.create_model
    class CounterConsent(pw.Model):
        id = pw.AutoField()
        business = _fk(migrator, "business")
        case = _fk(migrator, "case", null=True)
        staff = _fk(migrator, "staff")
        organisation = _fk(migrator, "organisation")
        applicant_index = pw.CharField(max_length=64)
        method = pw.CharField(max_length=16)
        reference = pw.CharField(max_length=64, null=True)
        expires_at = pw.DateTimeField()
        recorded_at = pw.DateTimeField()

        class Meta:
            table_name = "counter_consent"

    @migrator.create_model
    class CaseAction(pw.Model):
        id = pw.AutoField()
        case = _fk(migrator, "case", on_delete="CASCADE")
        transfer = _fk(migrator, "transfer", null=True, on_delete="CASCADE")
        action = pw.CharField(max_length=24)
        actor_role = pw.CharField(max_length=16)
        citizen = _fk(migrator, "citizen", null=True)
        staff = _fk(migrator, "staff", null=True)
        delegation = _fk(migrator, "delegation", null=True)
        consent = _fk(migrator, "counter_consent", null=True)
        request_id = pw.CharField(max_length=64, null=True)
        detail = pw.TextField(null=True)
        occurred_at = pw.DateTimeField(index=True)

        class Meta:
            table_name = "case_action"

    @migrator.create_model
    class LookupRecord(pw.Model):
        id = pw.AutoField()
        staff = _fk(migrator, "staff")
        organisation = _fk(migrator, "organisation")
        criterion = pw.CharField(max_length=16)
        asked = pw.TextField()
        reason = pw.TextField()
        results = pw.IntegerField()
        request_id = pw.CharField(max_length=64, null=True)
        occurred_at = pw.DateTimeField(index=True)

        class Meta:
            table_name = "lookup_record"

    migrator.drop_not_null("case", "citizen")
    migrator.drop_not_null("refresh_token", "citizen")
    migrator.add_fields(
        "refresh_token", staff_id=pw.IntegerField(null=True, index=True)
    )
    migrator.add_fields(
        "transfer_event", actor_name=pw.CharField(max_length=100, null=True)
    )
    migrator.add_fields(
        "delegation",
        business=_fk(migrator, "business", null=True),
        revoked_by=_fk(migrator, "citizen", null=True),
    )
    migrator.sql(
        'UPDATE "delegation" SET "business_id" = (SELECT "business_id" FROM "case"'
        ' WHERE "case"."id" = "delegation"."case_id")'
    )
    # Queued operations share field objects, so the column is made NOT NULL
    # only after it has been added and filled.
    migrator.run(
        lambda: migrator.__migrator__.add_not_null("delegation", "business_id").run()
    )
    migrator.drop_not_null("delegation", "case")


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("delegation", "business", "revoked_by")
    migrator.remove_fields("transfer_event", "actor_name")
    migrator.remove_fields("refresh_token", "staff_id")
    for table in (
        "lookup_record",
        "case_action",
        "counter_consent",
        "staff",
        "organisation",
    ):
        migrator.remove_model(table)
