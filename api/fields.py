"""marshmallow fields shared by the API schemas."""

from datetime import UTC
from zoneinfo import ZoneInfo

from marshmallow import ValidationError, fields

from domain.identifiers import (
    InvalidIdentifier,
    normalise_certificate_no,
    normalise_unit_code,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


class LocalDateTime(fields.DateTime):
    """A stored naive UTC time, written as ISO 8601 in Asia/Shanghai."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.replace(tzinfo=UTC).astimezone(SHANGHAI).isoformat()


class Checked(fields.String):
    """A string normalised and checked by a domain function."""

    normalise = None

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return type(self).normalise(text)
        except InvalidIdentifier as error:
            raise ValidationError(f"{error} [{error.rule}]") from None


class UnitCode(Checked):
    normalise = staticmethod(normalise_unit_code)


class CertificateNo(Checked):
    normalise = staticmethod(normalise_certificate_no)


class StrictInteger(fields.Integer):
    """An integer that must be sent as a JSON number, never as a string."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)


def to_local(value):
    if value is None:
        return None
    return value.replace(tzinfo=UTC).astimezone(SHANGHAI).isoformat()
