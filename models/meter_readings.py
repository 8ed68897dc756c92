"""Final meter readings taken on the transfer day, and disputes of them."""

import peewee

from models.base import BaseModel, utcnow
from models.cases import Transfer


class MeterReading(BaseModel):
    """The utility's reading of one account's meter on the transfer day."""

    transfer = peewee.ForeignKeyField(
        Transfer, backref="meter_readings", unique=True, on_delete="CASCADE"
    )
    reading_id = peewee.CharField(max_length=64)
    # Decimal text as the utility wrote it, in `unit`.
    value = peewee.CharField(max_length=64)
    unit = peewee.CharField(max_length=16)
    read_at = peewee.CharField(max_length=64)
    # remote, estimated or manual, as the utility reports it.
    method = peewee.CharField(max_length=32)
    received_at = peewee.DateTimeField(default=utcnow)
    # A dispute by the buyer, an agent or the seller, with a photo of the meter
    # sealed on disk.
    disputed_at = peewee.DateTimeField(null=True)
    dispute_note = peewee.TextField(null=True)
    photo_sha256 = peewee.CharField(max_length=64, null=True)
    photo_type = peewee.CharField(max_length=16, null=True)
