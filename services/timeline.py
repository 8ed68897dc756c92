"""Transfer states and the timeline entry written for each change."""

from models import TransferEvent
from models.base import utcnow
from services import access, deadlines, notifications

# Transfer status, its label for the applicant, and whether it is final.
STATUSES = {
    "draft": ("待确认", False),
    "submitted": ("已提交，待登簿", False),
    "queued": ("已登簿，待推送", False),
    "pushed": ("已推送至服务机构", False),
    "awaiting_collection": ("待服务机构线下领取", False),
    "collected": ("服务机构已领取", False),
    "accepted": ("已受理", False),
    "in_progress": ("办理中", False),
    "completed": ("办结", True),
    "returned": ("退件", True),
    "push_failed": ("推送失败，待人工处理", False),
    "withdrawn": ("已撤回", True),
}

# Events that are not status changes but belong on the timeline.
NOTES = {
    "confirmed": "已确认户号信息",
    "agreement_accepted": "已同意过户协议",
    "arrears_paid": "欠费已缴清",
    "registered": "不动产登记已登簿",
    "opened": "已创建联办事项",
    "push_retry": "平台已安排重新推送",
    "meter_disputed": "已对过户日读数提出异议",
    "overpaid_refunded": "欠费已在服务机构结清，多缴金额原路退回",
    "payment_refunded": "联办事项已撤回，已缴欠费原路退回",
}


def status_label(status):
    return STATUSES.get(status, (status, False))[0]


def is_final(status):
    return STATUSES.get(status, (status, False))[1]


def record(transfer, status, actor=None, note=None, return_reason=None):
    """Append a timeline entry, and change the transfer's status if `status` is one.

    `actor` defaults to whoever the current request acts as: the applicant, or
    the agency or window acting for them, whose name the entry keeps.
    """
    authority = access.current()
    actor_name = None
    if actor is None:
        actor = authority.actor_role
        actor_name = authority.actor_name
    if status in STATUSES and status != transfer.status:
        deadlines.start_clock(transfer, status)
        transfer.status = status
        transfer.return_reason = return_reason
        transfer.updated_at = utcnow()
        transfer.save()
    notifications.on_timeline(transfer, status, return_reason)
    return TransferEvent.create(
        transfer=transfer,
        status=status,
        actor=actor,
        actor_name=actor_name,
        note=note,
        return_reason=return_reason,
    )
