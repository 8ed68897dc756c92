"""Response schemas and the builders that mask personal data for the caller."""

from marshmallow import Schema, fields

from api.fields import LocalDateTime, to_local
from domain.masking import mask_address, mask_id_number, mask_name
from models import Party, Transfer, TransferEvent
from models.fields import data_keys
from services import (
    deadlines,
    meter_readings,
    reconciliation_queue,
    timeline,
    transfer_checks,
)


class PersonView(Schema):
    name = fields.String()
    id_type = fields.String()
    id_number = fields.String()
    is_me = fields.Boolean()


class ReadingSchema(Schema):
    value = fields.String(metadata={"description": "Decimal text, in `unit`"})
    unit = fields.String()
    read_at = fields.String()
    method = fields.String(metadata={"description": "remote, estimated or manual"})
    disputed = fields.Boolean()


class TransferSchema(Schema):
    transfer_id = fields.Integer()
    service_org = fields.String()
    utility_kind = fields.String()
    connection = fields.String()
    account_no = fields.String()
    holder_name = fields.String(allow_none=True)
    holder_id_numbers = fields.List(fields.String())
    holder_relation = fields.String(
        metadata={"description": "owner, previous_owner or other (an earlier holder)"}
    )
    account_address = fields.String(allow_none=True)
    added_by_applicant = fields.Boolean()
    account_confirmed = fields.Boolean()
    agreement_accepted = fields.Boolean()
    agreement_version = fields.Integer(allow_none=True)
    arrears_fen = fields.Integer(allow_none=True)
    status = fields.String()
    status_label = fields.String()
    return_reason = fields.String(allow_none=True)
    due_at = LocalDateTime(allow_none=True)
    overdue = fields.Boolean()
    final_reading = fields.Nested(
        ReadingSchema,
        allow_none=True,
        metadata={"description": "The meter reading on the transfer day, when taken"},
    )
    check_state = fields.String(
        allow_none=True,
        metadata={
            "description": "The utility's answer on whether the account can "
            "transfer: ok, action_needed, or null before it was asked"
        },
    )


class CheckItemSchema(Schema):
    item = fields.String(
        metadata={
            "description": "arrears, direct_debit, prepaid_balance, block, "
            "account_closed, or another check the utility makes"
        }
    )
    blocking = fields.Boolean(
        metadata={"description": "Whether the item stops the transfer until cleared"}
    )
    stops_submission = fields.Boolean(
        metadata={
            "description": "Whether the hub refuses the submission while the "
            "item is open: a block or a closed account, which only the utility "
            "can clear. Other blocking items, such as arrears or a direct debit, "
            "are warnings at submission."
        }
    )
    amount_fen = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    advice = fields.String(metadata={"description": "What to do, in Chinese"})


class TransferCheckSchema(Schema):
    transfer_id = fields.Integer()
    service_org = fields.String()
    account_no = fields.String()
    state = fields.String(
        allow_none=True,
        metadata={
            "description": "ok, action_needed, unavailable (the utility did not "
            "answer), not_connected (no system link), or null"
        },
    )
    transferable = fields.Boolean(allow_none=True)
    items = fields.List(fields.Nested(CheckItemSchema))
    checked_at = LocalDateTime(allow_none=True)


class CaseSummarySchema(Schema):
    case_id = fields.Integer()
    business_no = fields.String()
    business_type = fields.String()
    location = fields.String()
    status = fields.String()
    opened_at = fields.String()


class AccountReviewSchema(Schema):
    item_id = fields.Integer()
    service_org = fields.String()
    account_no = fields.String()
    status = fields.String(metadata={"description": "open, linked or rejected"})
    status_label = fields.String()
    reasons = fields.List(
        fields.String(),
        metadata={
            "description": "The checks the account failed: "
            + ", ".join(reconciliation_queue.REASONS)
        },
    )
    decision_note = fields.String(
        allow_none=True, metadata={"description": "The utility's note on its decision"}
    )
    outcome = fields.String(
        allow_none=True,
        metadata={
            "description": "For a linked account: transfer_added, or linked_only "
            "when the case was no longer open"
        },
    )
    transfer_id = fields.Integer(allow_none=True)
    created_at = LocalDateTime()
    decided_at = LocalDateTime(allow_none=True)


class CaseSchema(CaseSummarySchema):
    unit_code = fields.String()
    certificate_no = fields.String(allow_none=True)
    registration_status = fields.String()
    owners = fields.List(fields.Nested(PersonView))
    previous_owners = fields.List(fields.Nested(PersonView))
    submitted_at = fields.String(allow_none=True)
    transfers = fields.List(fields.Nested(TransferSchema))
    account_reviews = fields.List(
        fields.Nested(AccountReviewSchema),
        metadata={"description": "Accounts sent to their utility to check by hand"},
    )
    warnings = fields.List(
        fields.String(), metadata={"description": "Things the applicant should know"}
    )


class ArrearsSchema(Schema):
    transfer_id = fields.Integer(attribute="transfer.id")
    service_org = fields.String(attribute="transfer.utility.service_org")
    account_no = fields.String(attribute="transfer.account_no")
    arrears_fen = fields.Integer(allow_none=True)
    arrears_display = fields.Method("display")
    state = fields.String(
        metadata={
            "description": "owed, clear, paid_pending, unavailable or not_connected"
        }
    )

    def display(self, answer):
        amount = answer["arrears_fen"]
        return None if amount is None else f"¥{amount / 100:.2f}"


# An order's state as the payer reads it.
PAYMENT_STATES = {
    "creating": "正在生成",
    "pending": "待支付",
    "paid": "已支付",
    "closed": "已关闭",
    "failed": "下单失败",
    "paid_late": "已支付并原路退回",
    "paid_twice": "已支付并原路退回",
}


def _yuan(amount_fen):
    return f"¥{amount_fen / 100:.2f}"


class RefundSchema(Schema):
    amount_fen = fields.Integer()
    amount_display = fields.Function(lambda refund: _yuan(refund.amount_fen))
    reason = fields.String()
    status = fields.String(
        metadata={"description": "pending, processing, succeeded or failed"}
    )
    transfer_id = fields.Method(
        "share_transfer",
        allow_none=True,
        metadata={
            "type": "integer",
            "description": "The account refunded, unless the whole order was",
        },
    )
    created_at = LocalDateTime()
    done_at = LocalDateTime(allow_none=True)

    def share_transfer(self, refund):
        return refund.share.transfer_id if refund.share_id else None


class PaymentShareSchema(Schema):
    transfer_id = fields.Integer()
    service_org = fields.String(attribute="transfer.utility.service_org")
    account_no = fields.String(attribute="transfer.account_no")
    amount_fen = fields.Integer()
    amount_display = fields.Function(lambda share: _yuan(share.amount_fen))
    status = fields.String(
        metadata={
            "description": "unpaid; credited (went against the debt); paid_twice "
            "(another payment settled the debt first, refunded); paid_late (the "
            "order was closed or the case withdrawn, refunded); refunded "
            "(credited, then returned whole when the case was withdrawn or the "
            "utility could apply none of it)"
        }
    )
    applied_fen = fields.Integer(
        allow_none=True,
        metadata={
            "description": "What the utility took off the debt once it had the "
            "report; the rest is refunded"
        },
    )
    reported = fields.Function(lambda share: share.reported_at is not None)


class PaymentSchema(Schema):
    payment_id = fields.Integer(attribute="id")
    case_id = fields.Integer()
    transfer_id = fields.Integer(
        allow_none=True,
        metadata={"description": "Set when the order pays one account's arrears"},
    )
    provider = fields.String()
    out_trade_no = fields.String()
    amount_fen = fields.Integer()
    amount_display = fields.Function(lambda payment: _yuan(payment.amount_fen))
    service_org = fields.Method(
        "service_orgs",
        metadata={"type": "string", "description": "The utilities paid, joined by 、"},
    )
    status = fields.String()
    status_label = fields.Method(
        "label",
        metadata={
            "type": "string",
            "description": "The state in Chinese, with refunds",
        },
    )
    code_url = fields.String(allow_none=True)
    qr_png = fields.Method("png_path")
    qr_svg = fields.Method("svg_path")
    expires_at = LocalDateTime()
    paid_at = LocalDateTime(allow_none=True)
    shares = fields.List(fields.Nested(PaymentShareSchema), attribute="ordered_shares")
    refunds = fields.List(fields.Nested(RefundSchema), attribute="ordered_refunds")
    refunded_fen = fields.Method(
        "refunded",
        metadata={
            "type": "integer",
            "description": "Refunds recorded for this order, failed ones excepted",
        },
    )

    def service_orgs(self, payment):
        names = []
        for share in payment.ordered_shares:
            if share.transfer.utility.service_org not in names:
                names.append(share.transfer.utility.service_org)
        return "、".join(names)

    def label(self, payment):
        word = PAYMENT_STATES.get(payment.status, payment.status)
        refunded = self.refunded(payment)
        if payment.status != "paid" or refunded == 0:
            return word
        if refunded >= payment.amount_fen:
            return "已支付，已全额退回"
        return f"已支付，已退回 {_yuan(refunded)}"

    def refunded(self, payment):
        return sum(
            refund.amount_fen
            for refund in payment.ordered_refunds
            if refund.status != "failed"
        )

    def png_path(self, payment):
        return f"/api/v1/payments/{payment.id}/qr.png"

    def svg_path(self, payment):
        return f"/api/v1/payments/{payment.id}/qr.svg"


class EventSchema(Schema):
    status = fields.String()
    label = fields.String()
    actor = fields.String(
        metadata={
            "description": "applicant, agent, window, previous_owner, utility or system"
        }
    )
    actor_name = fields.String(
        allow_none=True,
        metadata={"description": "The agency or registry window that acted"},
    )
    note = fields.String(allow_none=True)
    return_reason = fields.String(allow_none=True)
    occurred_at = fields.String()


class TransferProgressSchema(Schema):
    transfer_id = fields.Integer()
    service_org = fields.String()
    account_no = fields.String()
    status = fields.String()
    status_label = fields.String()
    return_reason = fields.String(allow_none=True)
    events = fields.List(fields.Nested(EventSchema))


class ProgressSchema(Schema):
    case_id = fields.Integer()
    status = fields.String()
    transfers = fields.List(fields.Nested(TransferProgressSchema))


def person_view(party, viewer):
    is_me = party.id_index == viewer.id_index
    return {
        "name": party.name if is_me else mask_name(party.name),
        "id_type": party.id_type,
        "id_number": party.id_number if is_me else mask_id_number(party.id_number),
        "is_me": is_me,
    }


def _parties(business):
    return list(
        Party.select().where(Party.business == business).order_by(Party.position)
    )


def case_summary(case):
    business = case.business
    return {
        "case_id": case.id,
        "business_no": business.business_no,
        "business_type": business.business_type,
        "location": business.location,
        "status": case.status,
        "opened_at": to_local(case.opened_at),
    }


def case_view(case, viewer):
    business = case.business
    parties = _parties(business)
    view = case_summary(case)
    view.update(
        unit_code=business.unit.unit_code,
        certificate_no=business.certificate_no,
        registration_status=business.registration_status,
        owners=[person_view(p, viewer) for p in parties if p.role == "owner"],
        previous_owners=[
            person_view(p, viewer) for p in parties if p.role == "previous_owner"
        ],
        submitted_at=to_local(case.submitted_at),
        transfers=transfer_views(case, viewer, parties),
        account_reviews=[
            account_review_view(item)
            for item in reconciliation_queue.items_of_case(case)
        ],
    )
    return view


def account_review_view(item):
    return {
        "item_id": item.id,
        "service_org": item.utility.service_org,
        "account_no": item.account_no,
        "status": item.status,
        "status_label": reconciliation_queue.STATUSES[item.status],
        "reasons": item.reasons,
        "decision_note": item.decision_note,
        "outcome": reconciliation_queue.outcome(item),
        "transfer_id": item.transfer_id,
        "created_at": item.created_at,
        "decided_at": item.decided_at,
    }


def holder_relation(holder_ids, parties):
    """Return the account holder's role: owner, previous_owner or other."""
    indexes = {data_keys.blind_index(number) for number in holder_ids or []}
    roles = {p.role for p in parties if p.id_index in indexes}
    for role in ("owner", "previous_owner"):
        if role in roles:
            return role
    return "other"


def transfer_view(transfer, viewer, parties=None, readings=None):
    parties = parties if parties is not None else _parties(transfer.case.business)
    if readings is None:
        readings = meter_readings.readings_of([transfer])
    link = transfer.account
    holder_ids = (link.holder_id_numbers if link else None) or []
    viewer_is_holder = viewer.id_number in holder_ids
    return {
        "transfer_id": transfer.id,
        "service_org": transfer.utility.service_org,
        "utility_kind": transfer.utility.kind,
        "connection": transfer.utility.connection,
        "account_no": transfer.account_no,
        "holder_name": _maybe(link and link.holder_name, mask_name, viewer_is_holder),
        "holder_id_numbers": [
            _maybe(number, mask_id_number, number == viewer.id_number)
            for number in holder_ids
        ],
        "holder_relation": holder_relation(holder_ids, parties),
        "account_address": _maybe(
            link and link.account_address, mask_address, viewer_is_holder
        ),
        "added_by_applicant": transfer.added_by_applicant,
        "account_confirmed": transfer.account_confirmed,
        "agreement_accepted": transfer.agreement_accepted_at is not None,
        "agreement_version": transfer.agreement.version if transfer.agreement else None,
        "arrears_fen": transfer.arrears_fen,
        "status": transfer.status,
        "status_label": _label(transfer),
        "return_reason": transfer.return_reason,
        **deadlines.due_fields(transfer),
        "check_state": transfer_checks.state_of(transfer),
        "final_reading": meter_readings.reading_view(readings.get(transfer.id)),
    }


def _label(transfer):
    ready = transfer.account_confirmed and transfer.agreement_accepted_at
    if transfer.status == "draft" and ready:
        return "已确认，待提交"
    return timeline.status_label(transfer.status)


def _maybe(value, mask, is_owner):
    if not value:
        return value or None
    return value if is_owner else mask(value)


def transfer_views(case, viewer, parties=None):
    parties = parties if parties is not None else _parties(case.business)
    transfers = list(case.transfers.order_by(Transfer.id))
    readings = meter_readings.readings_of(transfers)
    return [transfer_view(t, viewer, parties, readings) for t in transfers]


def progress_view(case):
    transfers = []
    for transfer in case.transfers.order_by(Transfer.id):
        events = (
            TransferEvent.select()
            .where(TransferEvent.transfer == transfer)
            .order_by(TransferEvent.occurred_at, TransferEvent.id)
        )
        transfers.append(
            {
                "transfer_id": transfer.id,
                "service_org": transfer.utility.service_org,
                "account_no": transfer.account_no,
                "status": transfer.status,
                "status_label": _label(transfer),
                "return_reason": transfer.return_reason,
                "events": [
                    {
                        "status": event.status,
                        "label": timeline.NOTES.get(event.status)
                        or timeline.status_label(event.status),
                        "actor": event.actor,
                        "actor_name": event.actor_name,
                        "note": event.note,
                        "return_reason": event.return_reason,
                        "occurred_at": to_local(event.occurred_at),
                    }
                    for event in events
                ],
            }
        )
    return {"case_id": case.id, "status": case.status, "transfers": transfers}
