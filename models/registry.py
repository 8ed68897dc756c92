"""Units, their codes, and the registration businesses the registry sends."""

import peewee

from models.base import BaseModel, utcnow
from models.fields import SealedField, SealedJSONField


class Unit(BaseModel):
    """A registered real-estate unit, keyed by its current unit code."""

    unit_code = peewee.CharField(max_length=28, unique=True)
    location = peewee.TextField()
    usage = peewee.CharField(max_length=32, null=True)
    building_area = peewee.DecimalField(max_digits=12, decimal_places=2, null=True)
    inner_area = peewee.DecimalField(max_digits=12, decimal_places=2, null=True)
    certificate_no = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class UnitCode(BaseModel):
    """Every code a unit has had, because merges and splits change codes."""

    unit = peewee.ForeignKeyField(Unit, backref="codes", on_delete="CASCADE")
    code = peewee.CharField(max_length=28, unique=True)
    is_current = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField(default=utcnow)


class Business(BaseModel):
    """A registration business (不动产登记业务) as the registry last sent it."""

    business_no = peewee.CharField(max_length=64, unique=True)
    business_type = peewee.CharField(max_length=16)
    unit = peewee.ForeignKeyField(Unit, backref="businesses")
    certificate_no = peewee.CharField(max_length=64, null=True)
    location = peewee.TextField()
    usage = peewee.CharField(max_length=32, null=True)
    building_area = peewee.DecimalField(max_digits=12, decimal_places=2, null=True)
    inner_area = peewee.DecimalField(max_digits=12, decimal_places=2, null=True)
    registration_status = peewee.CharField(max_length=16)
    registered_at = peewee.DateTimeField(null=True)
    # The body exactly as the registry sent it, and its digest so that a
    # repeated call is recognised and changes nothing.
    payload = SealedJSONField()
    payload_digest = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class Party(BaseModel):
    """An owner or previous owner named on a business."""

    business = peewee.ForeignKeyField(Business, backref="parties", on_delete="CASCADE")
    role = peewee.CharField(max_length=16)
    position = peewee.IntegerField()
    name = SealedField()
    id_type = peewee.CharField(max_length=32)
    id_number = SealedField()
    id_index = peewee.CharField(max_length=64, index=True)
    phone = SealedField(null=True)

    class Meta:
        indexes = ((("business", "role", "position"), True),)
