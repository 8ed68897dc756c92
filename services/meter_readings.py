"""Final meter readings on the transfer day, so the bill splits where it should.

When the registration completes, each metered account (water, power, gas,
heat) gets a message that requests the utility's reading for that day. The
reading is stored once and shown with the transfer on the case. The buyer,
those acting for them, or the seller may dispute it with a note and a photo of
the meter. A reading takes one dispute, whoever sends it, because the utility
reads the meter again for both sides. The photo is sealed on disk and sent to
the utility.
"""

import base64
import hashlib
import logging
import warnings
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import current_app
from PIL import Image

from domain.utilities import METER_UNITS
from models import MeterReading, OutboxMessage, Transfer
from models.base import utcnow
from models.db import locked, transaction
from models.fields import data_keys
from services import access, delivery, timeline
from services.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

READ_METER = "read_meter"
SEND_DISPUTE = "send_meter_dispute"
CHINA = ZoneInfo("Asia/Shanghai")
# The first bytes of each photo format a dispute may carry.
PHOTO_SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
# The timeline entry of a dispute names the seller, because the buyer reads it.
DISPUTE_NOTE_PREFIXES = {"previous_owner": "原权利人对过户日读数提出异议："}


def queue_requests(case):
    """Write a reading request for each metered transfer of the case.

    Runs inside the caller's transaction.
    """
    reading_date = utcnow().replace(tzinfo=ZoneInfo("UTC")).astimezone(CHINA).date()
    for transfer in Transfer.select().where(Transfer.case == case):
        utility = transfer.utility
        if utility.kind not in METER_UNITS or utility.connection != "system":
            continue
        OutboxMessage.create(
            kind=READ_METER,
            ref_id=transfer.id,
            utility_code=utility.code,
            payload={"reading_date": reading_date.isoformat()},
        )


def send_request(message):
    """Request the reading from the utility and store it."""
    transfer = Transfer.get_by_id(message.ref_id)
    reading = delivery.utility_client(transfer.utility).read_meter(
        transfer.account_no, str(transfer.id), message.payload["reading_date"]
    )
    with transaction():
        delivery.mark_done(message)
        # The reading is shown on the transfer, not on its timeline, where it
        # would land among the utility's reports in no fixed order.
        stored, _ = MeterReading.get_or_create(
            transfer=transfer, defaults=dict(reading)
        )
    log.info("meter reading stored transfer=%s reading=%s", transfer.id, stored.id)


def reading_view(reading):
    if reading is None:
        return None
    return {
        "value": reading.value,
        "unit": reading.unit,
        "read_at": reading.read_at,
        "method": reading.method,
        "disputed": reading.disputed_at is not None,
    }


def readings_of(transfers):
    """Return each transfer's reading by transfer id, in one query."""
    ids = [transfer.id for transfer in transfers]
    if not ids:
        return {}
    query = MeterReading.select().where(MeterReading.transfer.in_(ids))
    return {reading.transfer_id: reading for reading in query}


def photo_dir():
    path = Path(current_app.config["VAR_DIR"]) / "meter-photos"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _photo_path(reading_id):
    return photo_dir() / f"reading-{reading_id}.sealed"


def _associated(reading_id):
    return f"meter-photo:{reading_id}".encode()


# A phone camera takes about 50 million pixels at most. The size is read
# from the header before anything is decoded, because a small file can
# declare a picture that takes gigabytes to decode.
PHOTO_MAX_PIXELS = 60_000_000


def photo_type(photo):
    """Return jpeg or png when `photo` decodes as that image, else None."""
    kind = next(
        (name for name, start in PHOTO_SIGNATURES.items() if photo.startswith(start)),
        None,
    )
    if kind is None:
        return None
    try:
        # Pillow warns of a picture over its own limit as it opens it; that
        # is a refusal here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(BytesIO(photo))
        with opened as image:
            width, height = image.size
            if width * height > PHOTO_MAX_PIXELS:
                log.info("meter photo rejected kind=%s pixels=%d", kind, width * height)
                return None
            image.verify()
        # verify() checks a PNG's chunks but not a JPEG's data, so decode too.
        with Image.open(BytesIO(photo)) as image:
            image.load()
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        log.info("meter photo rejected kind=%s error=%s", kind, type(error).__name__)
        return None
    return kind


def _require_disputable(transfer):
    if transfer.utility.kind not in METER_UNITS:
        raise Conflict(
            "not_metered", f"{transfer.utility.service_org}没有表计读数，无需核对。"
        )
    reading = MeterReading.get_or_none(MeterReading.transfer == transfer)
    if reading is None:
        raise NotFound(
            "reading_not_found", "服务机构尚未提供过户日读数，暂不能提出异议。"
        )
    if reading.disputed_at is not None:
        raise Conflict("reading_disputed", "该读数已提出异议，请等待服务机构处理。")


def dispute(transfer, note, photo):
    """Record a dispute of the transfer's reading and queue it to the utility."""
    note = (note or "").strip()
    if not 1 <= len(note) <= 500:
        raise Invalid(
            "dispute_note_invalid",
            "请说明读数有何异议（1 至 500 字）。",
            errors={"note": ["must be 1 to 500 characters"]},
        )
    # The reading is checked first, so that a person does not fix a photo
    # only to learn that the reading cannot be disputed.
    _require_disputable(transfer)
    kind = photo_type(photo)
    if kind is None:
        raise Invalid(
            "photo_invalid",
            "请上传不超过 6000 万像素的 JPEG 或 PNG 格式的表计照片。",
            errors={"photo": ["must be a JPEG or PNG image of at most 60 megapixels"]},
        )
    with transaction():
        reading = locked(
            MeterReading.select().where(MeterReading.transfer == transfer)
        ).first()
        if reading is None:
            raise NotFound(
                "reading_not_found", "服务机构尚未提供过户日读数，暂不能提出异议。"
            )
        if reading.disputed_at is not None:
            raise Conflict("reading_disputed", "该读数已提出异议，请等待服务机构处理。")
        digest = hashlib.sha256(photo).hexdigest()
        _photo_path(reading.id).write_bytes(
            data_keys.seal_bytes(photo, _associated(reading.id))
        )
        reading.disputed_at = utcnow()
        reading.dispute_note = note
        reading.photo_sha256 = digest
        reading.photo_type = kind
        reading.save()
        OutboxMessage.create(
            kind=SEND_DISPUTE,
            ref_id=reading.id,
            utility_code=transfer.utility.code,
            payload={"reading_id": reading.reading_id},
        )
        prefix = DISPUTE_NOTE_PREFIXES.get(
            access.current().actor_role, "对过户日读数提出异议："
        )
        timeline.record(transfer, "meter_disputed", note=prefix + note)
        access.record_action(transfer.case, "dispute_reading", transfer=transfer)
    delivery.wake()
    log.info("meter reading disputed transfer=%s reading=%s", transfer.id, reading.id)
    return reading


def send_dispute(message):
    """Send a dispute with its photo to the utility."""
    reading = MeterReading.get_by_id(message.ref_id)
    photo = data_keys.open_bytes(
        _photo_path(reading.id).read_bytes(), _associated(reading.id)
    )
    delivery.utility_client(reading.transfer.utility).dispute_reading(
        reading.reading_id,
        reading.dispute_note,
        reading.photo_sha256,
        base64.b64encode(photo).decode("ascii"),
    )
    with transaction():
        delivery.mark_done(message)
    log.info("meter dispute sent reading=%s", reading.id)
