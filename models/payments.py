"""Payment orders for a transfer's arrears."""

from datetime import UTC

import peewee

from models.base import BaseModel, utcnow
from models.cases import Transfer


class Payment(BaseModel):
    """A provider order for the arrears of one transfer."""

    transfer = peewee.ForeignKeyField(Transfer, backref="payments")
    provider = peewee.CharField(max_length=16, default="wechatpay")
    out_trade_no = peewee.CharField(max_length=32, unique=True)
    amount_fen = peewee.IntegerField()
    description = peewee.CharField(max_length=127)
    status = peewee.CharField(max_length=16, default="pending")
    code_url = peewee.CharField(max_length=255, null=True)
    expires_at = peewee.DateTimeField()
    transaction_id = peewee.CharField(max_length=64, null=True, unique=True)
    paid_at = peewee.DateTimeField(null=True)
    reported_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)

    @property
    def expires_at_aware(self):
        return self.expires_at.replace(tzinfo=UTC)

    # Set when a notification or query disagreed with the order; staff look
    # at flagged payments.
    flag = peewee.TextField(null=True)
    # When the worker last asked the provider about this pending order.
    checked_at = peewee.DateTimeField(null=True)


class Refund(BaseModel):
    """Money returned to the payer: a late payment or a debt paid twice."""

    payment = peewee.ForeignKeyField(Payment, backref="refunds")
    out_refund_no = peewee.CharField(max_length=64, unique=True)
    amount_fen = peewee.IntegerField()
    reason = peewee.CharField(max_length=80)
    status = peewee.CharField(max_length=16, default="pending")
    provider_refund_id = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    done_at = peewee.DateTimeField(null=True)
