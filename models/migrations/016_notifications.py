"""Add notices, channel choices, release notices and the parties' phone numbers."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    # Sealed like the other personal data; empty where the registry gave none.
    migrator.add_fields("party", phone=pw.TextField(null=True))

    @migrator.create_model
    class SubscribeChoice(pw.Model):
        id = pw.AutoField()
        citizen = pw.ForeignKeyField(
            migrator.orm["citizen"], column_name="citizen_id", on_delete="CASCADE"
        )
        template = pw.CharField(max_length=32)
        decision = pw.CharField(max_length=16)
        remaining = pw.IntegerField(default=0)
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "subscribe_choice"
            indexes = ((("citizen", "template"), True),)

    @migrator.create_model
    class SmsSetting(pw.Model):
        id = pw.AutoField()
        subject = pw.CharField(max_length=80, unique=True)
        opted_in = pw.BooleanField(null=True)
        phone = pw.TextField(null=True)
        opt_out_token = pw.CharField(max_length=32, null=True, unique=True)
        decided_by = pw.CharField(max_length=16, null=True)
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "sms_setting"

    @migrator.create_model
    class Notice(pw.Model):
        id = pw.AutoField()
        case = pw.ForeignKeyField(
            migrator.orm["case"], column_name="case_id", on_delete="CASCADE"
        )
        event = pw.CharField(max_length=64)
        recipient = pw.CharField(max_length=80)
        role = pw.CharField(max_length=16)
        channel = pw.CharField(max_length=16)
        template = pw.CharField(max_length=32)
        params = pw.TextField()
        state = pw.CharField(max_length=16, default="pending")
        detail = pw.CharField(max_length=64, null=True)
        partner_ref = pw.CharField(max_length=64, null=True)
        created_at = pw.DateTimeField()
        sent_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "notice"
            indexes = ((("case", "event", "recipient", "channel"), True),)

    @migrator.create_model
    class ReleaseNotice(pw.Model):
        id = pw.AutoField()
        case = pw.ForeignKeyField(
            migrator.orm["case"],
            column_name="case_id",
            unique=True,
            on_delete="CASCADE",
        )
        business = pw.ForeignKeyField(
            migrator.orm["business"], column_name="business_id"
        )
        items = pw.TextField()
        issued_at = pw.DateTimeField()

        class Meta:
            table_name = "release_notice"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("release_notice")
    migrator.remove_model("notice")
    migrator.remove_model("sms_setting")
    migrator.remove_model("subscribe_choice")
    migrator.remove_fields("party", "phone")
