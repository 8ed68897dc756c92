"""Payment orders for arrears, each split into shares per transfer."""

from datetime import UTC

import peewee

from models.base import BaseModel, utcnow
from models.cases import Case, Transfer


class Payment(BaseModel):
    """A provider order for the arrears of one or more transfers of a case.

    The order's amount is the sum of its shares. `transfer` names the
    transfer when the order pays exactly one, as the per-account endpoint
    creates them. An order for several accounts leaves it empty.
    """

    case = peewee.ForeignKeyField(Case, backref="payments", null=True)
    transfer = peewee.ForeignKeyField(Transfer, backref="payments", null=True)
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

    @property
    def ordered_shares(self):
        return list(self.shares.order_by(PaymentShare.id))

    @property
    def ordered_refunds(self):
        return list(self.refunds.order_by(Refund.id))

    # Set when a notification or query disagreed with the order; staff look
    # at flagged payments.
    flag = peewee.TextField(null=True)
    # When the worker last asked the provider about this pending order.
    checked_at = peewee.DateTimeField(null=True)


class PaymentShare(BaseModel):
    """The part of an order that pays one transfer's arrears.

    Each share is reported to its utility on its own, under
    `utility_payment_id`, and the utility's response states how much of it
    went against the debt. What the debt no longer needed, because it was paid at
    the utility's counter meanwhile, is refunded.
    """

    payment = peewee.ForeignKeyField(Payment, backref="shares")
    transfer = peewee.ForeignKeyField(Transfer, backref="payment_shares")
    amount_fen = peewee.IntegerField()
    utility_payment_id = peewee.CharField(max_length=40)
    # unpaid, credited, paid_twice (another payment settled the debt first),
    # paid_late (the order was closed or the case withdrawn) or refunded
    # (credited, then returned whole: the case was withdrawn, or the utility
    # could apply none of it).
    status = peewee.CharField(max_length=16, default="unpaid")
    # What the utility took off the debt, from its response to the report.
    applied_fen = peewee.IntegerField(null=True)
    reported_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("payment", "transfer"), True),)


class Refund(BaseModel):
    """Money returned to the payer: a late payment or a debt paid twice.

    A refund of one share names it; a refund of a whole order does not.
    """

    payment = peewee.ForeignKeyField(Payment, backref="refunds")
    share = peewee.ForeignKeyField(PaymentShare, backref="refunds", null=True)
    out_refund_no = peewee.CharField(max_length=64, unique=True)
    amount_fen = peewee.IntegerField()
    reason = peewee.CharField(max_length=80)
    status = peewee.CharField(max_length=16, default="pending")
    provider_refund_id = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    done_at = peewee.DateTimeField(null=True)
