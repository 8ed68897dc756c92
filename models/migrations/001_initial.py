"""Create the tables of the first schema."""

from contextlib import suppress
from decimal import ROUND_HALF_EVEN

import peewee as pw
from peewee_migrate import Migrator

with suppress(ImportError):
    pass


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Utility(pw.Model):
        id = pw.AutoField()
        code = pw.CharField(max_length=32, unique=True)
        service_org = pw.CharField(max_length=100, unique=True)
        kind = pw.CharField(max_length=16)
        base_url = pw.CharField(max_length=255, null=True)
        connection = pw.CharField(default="system", max_length=16)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "utility"

    @migrator.create_model
    class Unit(pw.Model):
        id = pw.AutoField()
        unit_code = pw.CharField(max_length=28, unique=True)
        location = pw.TextField()
        usage = pw.CharField(max_length=32, null=True)
        building_area = pw.DecimalField(
            auto_round=False,
            decimal_places=2,
            max_digits=12,
            null=True,
            rounding=ROUND_HALF_EVEN,
        )
        inner_area = pw.DecimalField(
            auto_round=False,
            decimal_places=2,
            max_digits=12,
            null=True,
            rounding=ROUND_HALF_EVEN,
        )
        certificate_no = pw.CharField(max_length=64, null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "unit"

    @migrator.create_model
    class AccountLink(pw.Model):
        id = pw.AutoField()
        utility = pw.ForeignKeyField(
            column_name="utility_id", field="id", model=migrator.orm["utility"]
        )
        account_no = pw.CharField(max_length=64)
        unit = pw.ForeignKeyField(
            column_name="unit_id", field="id", model=migrator.orm["unit"], null=True
        )
        holder_name = pw.TextField(null=True)
        holder_id_numbers = pw.TextField(null=True)
        account_address = pw.TextField(null=True)
        source = pw.CharField(max_length=16)
        match_result = pw.CharField(max_length=16, null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "account_link"
            indexes = [(("utility", "account_no"), True)]

    @migrator.create_model
    class Agreement(pw.Model):
        id = pw.AutoField()
        utility = pw.ForeignKeyField(
            column_name="utility_id", field="id", model=migrator.orm["utility"]
        )
        version = pw.IntegerField()
        title = pw.CharField(max_length=200)
        body = pw.TextField()
        published_at = pw.DateTimeField()

        class Meta:
            table_name = "agreement"
            indexes = [(("utility", "version"), True)]

    @migrator.create_model
    class Business(pw.Model):
        id = pw.AutoField()
        business_no = pw.CharField(max_length=64, unique=True)
        business_type = pw.CharField(max_length=16)
        unit = pw.ForeignKeyField(
            column_name="unit_id", field="id", model=migrator.orm["unit"]
        )
        certificate_no = pw.CharField(max_length=64, null=True)
        location = pw.TextField()
        usage = pw.CharField(max_length=32, null=True)
        building_area = pw.DecimalField(
            auto_round=False,
            decimal_places=2,
            max_digits=12,
            null=True,
            rounding=ROUND_HALF_EVEN,
        )
        inner_area = pw.DecimalField(
            auto_round=False,
            decimal_places=2,
            max_digits=12,
            null=True,
            rounding=ROUND_HALF_EVEN,
        )
        registration_status = pw.CharField(max_length=16)
        registered_at = pw.DateTimeField(null=True)
        payload = pw.TextField()
        payload_digest = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "business"

    @migrator.create_model
    class Citizen(pw.Model):
        id = pw.AutoField()
        openid = pw.CharField(max_length=64, unique=True)
        name = pw.TextField()
        id_type = pw.CharField(max_length=32)
        id_number = pw.TextField()
        id_index = pw.CharField(index=True, max_length=64)
        phone = pw.TextField(null=True)
        verified_at = pw.DateTimeField()
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "citizen"

    @migrator.create_model
    class Case(pw.Model):
        id = pw.AutoField()
        business = pw.ForeignKeyField(
            column_name="business_id",
            field="id",
            model=migrator.orm["business"],
            unique=True,
        )
        citizen = pw.ForeignKeyField(
            column_name="citizen_id", field="id", model=migrator.orm["citizen"]
        )
        status = pw.CharField(default="open", max_length=16)
        opened_at = pw.DateTimeField()
        submitted_at = pw.DateTimeField(null=True)
        closed_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "case"

    @migrator.create_model
    class Delegation(pw.Model):
        id = pw.AutoField()
        case = pw.ForeignKeyField(
            column_name="case_id",
            field="id",
            model=migrator.orm["case"],
            on_delete="CASCADE",
        )
        granted_by = pw.ForeignKeyField(
            column_name="granted_by_id", field="id", model=migrator.orm["citizen"]
        )
        agency_name = pw.CharField(max_length=100)
        agency_credit_code = pw.CharField(max_length=18)
        scope = pw.CharField(max_length=200)
        expires_at = pw.DateTimeField()
        revoked_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "delegation"

    @migrator.create_model
    class OutboxMessage(pw.Model):
        id = pw.AutoField()
        kind = pw.CharField(max_length=32)
        ref_id = pw.IntegerField()
        utility_code = pw.CharField(max_length=32)
        payload = pw.TextField()
        state = pw.CharField(default="pending", max_length=32)
        attempts = pw.IntegerField(default=0)
        next_attempt_at = pw.DateTimeField(index=True)
        last_error = pw.TextField(null=True)
        created_at = pw.DateTimeField()
        done_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "outbox_message"
            indexes = [(("kind", "ref_id"), True)]

    @migrator.create_model
    class PartnerMessage(pw.Model):
        id = pw.AutoField()
        message_id = pw.CharField(max_length=64, unique=True)
        partner = pw.CharField(max_length=32)
        received_at = pw.DateTimeField(index=True)

        class Meta:
            table_name = "partner_message"

    @migrator.create_model
    class Party(pw.Model):
        id = pw.AutoField()
        business = pw.ForeignKeyField(
            column_name="business_id",
            field="id",
            model=migrator.orm["business"],
            on_delete="CASCADE",
        )
        role = pw.CharField(max_length=16)
        position = pw.IntegerField()
        name = pw.TextField()
        id_type = pw.CharField(max_length=32)
        id_number = pw.TextField()
        id_index = pw.CharField(index=True, max_length=64)

        class Meta:
            table_name = "party"
            indexes = [(("business", "role", "position"), True)]

    @migrator.create_model
    class Transfer(pw.Model):
        id = pw.AutoField()
        case = pw.ForeignKeyField(
            column_name="case_id",
            field="id",
            model=migrator.orm["case"],
            on_delete="CASCADE",
        )
        utility = pw.ForeignKeyField(
            column_name="utility_id", field="id", model=migrator.orm["utility"]
        )
        account_no = pw.CharField(max_length=64)
        account = pw.ForeignKeyField(
            column_name="account_id",
            field="id",
            model=migrator.orm["account_link"],
            null=True,
        )
        added_by_applicant = pw.BooleanField(default=False)
        account_confirmed = pw.BooleanField(default=False)
        confirmed_at = pw.DateTimeField(null=True)
        agreement = pw.ForeignKeyField(
            column_name="agreement_id",
            field="id",
            model=migrator.orm["agreement"],
            null=True,
        )
        agreement_accepted_at = pw.DateTimeField(null=True)
        arrears_fen = pw.IntegerField(null=True)
        arrears_checked_at = pw.DateTimeField(null=True)
        status = pw.CharField(default="draft", max_length=32)
        return_reason = pw.TextField(null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "transfer"
            indexes = [(("case", "utility", "account_no"), True)]

    @migrator.create_model
    class Payment(pw.Model):
        id = pw.AutoField()
        transfer = pw.ForeignKeyField(
            column_name="transfer_id", field="id", model=migrator.orm["transfer"]
        )
        provider = pw.CharField(default="wechatpay", max_length=16)
        out_trade_no = pw.CharField(max_length=32, unique=True)
        amount_fen = pw.IntegerField()
        description = pw.CharField(max_length=127)
        status = pw.CharField(default="pending", max_length=16)
        code_url = pw.CharField(max_length=255, null=True)
        expires_at = pw.DateTimeField()
        transaction_id = pw.CharField(max_length=64, null=True, unique=True)
        paid_at = pw.DateTimeField(null=True)
        reported_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "payment"

    @migrator.create_model
    class RefreshToken(pw.Model):
        id = pw.AutoField()
        jti = pw.CharField(max_length=64, unique=True)
        citizen = pw.ForeignKeyField(
            column_name="citizen_id", field="id", model=migrator.orm["citizen"]
        )
        expires_at = pw.DateTimeField()
        used_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "refresh_token"

    @migrator.create_model
    class TransferEvent(pw.Model):
        id = pw.AutoField()
        transfer = pw.ForeignKeyField(
            column_name="transfer_id",
            field="id",
            model=migrator.orm["transfer"],
            on_delete="CASCADE",
        )
        status = pw.CharField(max_length=32)
        actor = pw.CharField(max_length=16)
        note = pw.TextField(null=True)
        return_reason = pw.TextField(null=True)
        occurred_at = pw.DateTimeField()

        class Meta:
            table_name = "transfer_event"

    @migrator.create_model
    class UnitCode(pw.Model):
        id = pw.AutoField()
        unit = pw.ForeignKeyField(
            column_name="unit_id",
            field="id",
            model=migrator.orm["unit"],
            on_delete="CASCADE",
        )
        code = pw.CharField(max_length=28, unique=True)
        is_current = pw.BooleanField(default=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "unit_code"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model("unit_code")

    migrator.remove_model("transfer_event")

    migrator.remove_model("refresh_token")

    migrator.remove_model("payment")

    migrator.remove_model("transfer")

    migrator.remove_model("party")

    migrator.remove_model("partner_message")

    migrator.remove_model("outbox_message")

    migrator.remove_model("delegation")

    migrator.remove_model("case")

    migrator.remove_model("citizen")

    migrator.remove_model("business")

    migrator.remove_model("agreement")

    migrator.remove_model("account_link")

    migrator.remove_model("unit")

    migrator.remove_model("utility")
