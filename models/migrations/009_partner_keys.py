"""Partners' signing keys in the database, for rotation without a restart."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class PartnerKey(pw.Model):
        id = pw.AutoField()
        partner = pw.CharField(max_length=32, index=True)
        secret = pw.TextField()
        created_at = pw.DateTimeField()
        retired_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "partner_key"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("partner_key")
