"""The database models, in the order their tables are created."""

from models.case_changes import CaseChange
from models.cases import (
    Case,
    Citizen,
    Delegation,
    RefreshToken,
    Transfer,
    TransferEvent,
)
from models.deadlines import OverdueAlert
from models.evidence import EvidenceEntry, EvidenceHead, EvidenceKey
from models.idempotency import IdempotencyRecord
from models.meter_readings import MeterReading
from models.notifications import Notice, ReleaseNotice, SmsSetting, SubscribeChoice
from models.outbox import OutboxMessage, PartnerMessage
from models.partners import PartnerKey
from models.payments import Payment, PaymentShare, Refund
from models.reconciliation import ReconciliationItem
from models.registry import Business, Party, Unit, UnitCode
from models.rosters import RegistryUnit, RosterEntry, RosterJob
from models.staff import CaseAction, CounterConsent, LookupRecord, Organisation, Staff
from models.utilities import AccountLink, Agreement, Utility

ALL_MODELS = (
    Unit,
    UnitCode,
    Business,
    Party,
    Utility,
    AccountLink,
    Agreement,
    Citizen,
    RefreshToken,
    Case,
    Transfer,
    TransferEvent,
    Delegation,
    Organisation,
    Staff,
    CounterConsent,
    CaseAction,
    LookupRecord,
    ReconciliationItem,
    Payment,
    PaymentShare,
    Refund,
    OutboxMessage,
    PartnerMessage,
    IdempotencyRecord,
    RegistryUnit,
    RosterJob,
    RosterEntry,
    PartnerKey,
    OverdueAlert,
    EvidenceEntry,
    EvidenceHead,
    EvidenceKey,
    SubscribeChoice,
    SmsSetting,
    Notice,
    ReleaseNotice,
    CaseChange,
    MeterReading,
)

__all__ = [model.__name__ for model in ALL_MODELS] + ["ALL_MODELS"]
