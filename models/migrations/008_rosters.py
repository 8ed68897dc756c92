"""The registry's unit export, and roster jobs with their results."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class RegistryUnit(pw.Model):
        id = pw.AutoField()
        unit_code = pw.CharField(max_length=28, unique=True)
        certificate_no = pw.CharField(max_length=64, null=True)
        location = pw.TextField()
        usage = pw.CharField(max_length=32, null=True)
        building_area = pw.DecimalField(max_digits=12, decimal_places=2, null=True)
        inner_area = pw.DecimalField(max_digits=12, decimal_places=2, null=True)
        owners = pw.TextField()
        previous_owners = pw.TextField()
        imported_at = pw.DateTimeField()

        class Meta:
            table_name = "registry_unit"

    @migrator.create_model
    class RosterJob(pw.Model):
        id = pw.AutoField()
        utility = pw.ForeignKeyField(model=migrator.orm["utility"], field="id")
        status = pw.CharField(max_length=16, default="queued")
        filename = pw.CharField(max_length=255)
        encoding = pw.CharField(max_length=32)
        uploaded_by = pw.CharField(max_length=48)
        rows_read = pw.IntegerField(default=0)
        rows_done = pw.IntegerField(default=0)
        problems = pw.TextField()
        linked = pw.IntegerField(default=0)
        for_review = pw.IntegerField(default=0)
        unmatched = pw.IntegerField(default=0)
        pairs_compared = pw.IntegerField(default=0)
        changes = pw.TextField(null=True)
        error = pw.TextField(null=True)
        created_at = pw.DateTimeField()
        started_at = pw.DateTimeField(null=True)
        finished_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "roster_job"

    @migrator.create_model
    class RosterEntry(pw.Model):
        id = pw.AutoField()
        job = pw.ForeignKeyField(
            model=migrator.orm["roster_job"], field="id", on_delete="CASCADE"
        )
        line = pw.IntegerField()
        account_no = pw.CharField(max_length=64)
        unit_code = pw.CharField(max_length=28, null=True)
        certificate_no = pw.CharField(max_length=64, null=True)
        location = pw.TextField(null=True)
        match_result = pw.CharField(max_length=8)
        score = pw.FloatField()
        reasons = pw.TextField()

        class Meta:
            table_name = "roster_entry"
            indexes = ((("job", "account_no"), True),)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("roster_entry")
    migrator.remove_model("roster_job")
    migrator.remove_model("registry_unit")
