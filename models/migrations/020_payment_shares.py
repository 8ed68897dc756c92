"""Split each payment order into shares, one per transfer it pays.

An order may now pay the arrears of several accounts of one case, so the
order names its case, its transfer becomes optional, and each transfer's
part is a share of its own. Every existing order becomes an order with one
share whose id is the order's id, so that messages already written for an
order's report or reversal name the share.
"""

import peewee as pw
from peewee_migrate import Migrator

SHARE_STATUS = (
    "CASE "
    "WHEN payment.status = 'paid' AND EXISTS "
    "(SELECT 1 FROM refund WHERE refund.payment_id = payment.id) THEN 'refunded' "
    "WHEN payment.status = 'paid' THEN 'credited' "
    "WHEN payment.status IN ('paid_twice', 'paid_late') THEN payment.status "
    "ELSE 'unpaid' END"
)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields(
        "payment",
        case=pw.ForeignKeyField(
            column_name="case_id",
            field="id",
            model=migrator.orm["case"],
            null=True,
        ),
    )
    migrator.drop_not_null("payment", "transfer")

    @migrator.create_model
    class PaymentShare(pw.Model):
        id = pw.AutoField()
        payment = pw.ForeignKeyField(
            column_name="payment_id", field="id", model=migrator.orm["payment"]
        )
        transfer = pw.ForeignKeyField(
            column_name="transfer_id", field="id", model=migrator.orm["transfer"]
        )
        amount_fen = pw.IntegerField()
        utility_payment_id = pw.CharField(max_length=40)
        status = pw.CharField(default="unpaid", max_length=16)
        applied_fen = pw.IntegerField(null=True)
        reported_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "payment_share"
            indexes = ((("payment", "transfer"), True),)

    migrator.add_fields(
        "refund",
        share=pw.ForeignKeyField(
            column_name="share_id",
            field="id",
            model=migrator.orm["payment_share"],
            null=True,
        ),
    )
    migrator.sql(
        "UPDATE payment SET case_id = "
        '(SELECT case_id FROM "transfer" WHERE "transfer".id = payment.transfer_id)'
    )
    migrator.sql(
        "INSERT INTO payment_share (id, payment_id, transfer_id, amount_fen, "
        "utility_payment_id, status, reported_at) "
        "SELECT id, id, transfer_id, amount_fen, out_trade_no, "
        f"{SHARE_STATUS}, reported_at FROM payment"
    )
    if isinstance(database, pw.PostgresqlDatabase):
        migrator.sql(
            "SELECT setval(pg_get_serial_sequence('payment_share', 'id'), "
            "COALESCE((SELECT MAX(id) FROM payment_share), 0) + 1, false)"
        )


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("refund", "share")
    migrator.remove_model("payment_share")
    migrator.sql("DELETE FROM payment WHERE transfer_id IS NULL")
    migrator.add_not_null("payment", "transfer")
    migrator.remove_fields("payment", "case")
