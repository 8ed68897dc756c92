"""OpenAPI document parts that flask-smorest's decorators do not provide.

They are the error schema, the security schemes, and helpers that document an
operation's security requirement and error responses in one decorator.
"""

from decimal import Decimal

from flask_smorest import Api
from marshmallow import fields

from api.errors import ErrorSchema
from models import PartnerMessage
from partners.signing import (
    MESSAGE_ID_HEADER,
    PARTNER_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WINDOW_SECONDS,
)

BEARER_AUTH = "bearerAuth"
PARTNER_SIGNATURE = "partnerSignature"

SECURITY_SCHEMES = {
    BEARER_AUTH: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": (
            "The access token from POST /api/v1/auth/miniprogram-login (citizens), "
            "POST /api/v1/auth/login (staff) or POST /api/v1/auth/refresh, sent "
            "as `Authorization: Bearer <token>`."
        ),
    },
    PARTNER_SIGNATURE: {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": (
            "An HMAC-SHA256 signature from the registry or a utility, in four "
            "headers that must all be sent:\n\n"
            f"- `{PARTNER_HEADER}`: the partner code, `registry` for the registry "
            "or the utility's code (such as `water`).\n"
            f"- `{MESSAGE_ID_HEADER}`: a new id for every request, at most "
            f"{PartnerMessage.message_id.max_length} characters. A repeated id is "
            "rejected.\n"
            f"- `{TIMESTAMP_HEADER}`: Unix seconds, within {WINDOW_SECONDS} seconds "
            "of the server clock.\n"
            f"- `{SIGNATURE_HEADER}`: the lowercase hex HMAC-SHA256 of the signed "
            "text under the partner's shared secret.\n\n"
            "The signed text is `METHOD\\nPATH\\nMESSAGE_ID\\nTIMESTAMP\\n` followed "
            "by the raw body bytes, where PATH includes the query string. Registry "
            "operations take only the `registry` partner, and partner operations "
            "only utilities."
        ),
    },
}

ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON, or it is nested too deeply.",
    401: "Authentication failed, and `code` names the reason.",
    403: (
        "The caller's role may not use this operation, an agency's delegation "
        "does not cover this step, or a staff member must first change a "
        "one-time password. `code` names which."
    ),
    404: "The object does not exist, or the caller may not see it.",
    409: (
        "The request clashes with the current state, such as a step taken out "
        "of order. `code` names the conflict."
    ),
    413: "The request body is larger than the MAX_CONTENT_LENGTH setting allows.",
    415: "A request body was sent without `Content-Type: application/json`.",
    422: "A value in the request is invalid. `errors` names it where possible.",
    429: (
        "Too many requests from this caller; wait for the seconds in the "
        "Retry-After header."
    ),
    502: (
        "A partner system (a utility, the identity provider or WeChat Pay) "
        "failed or timed out."
    ),
}

BEARER_UNAUTHORIZED = "The bearer token is missing, expired or invalid."
PARTNER_UNAUTHORIZED = (
    "The signature headers are missing, expired or wrong, the partner may not "
    "call this operation, or the message id was used before."
)

# The errors that any operation with a JSON body can return. 422 is left out
# because `Blueprint.arguments` documents it.
JSON_BODY_ERRORS = (400, 413, 415)


class LianbanApi(Api):
    """flask-smorest's Api, documenting errors in the shape of api.errors."""

    ERROR_SCHEMA = ErrorSchema


def init_api(app):
    """Create the Api for `app`, with the security schemes and field converters."""
    rest = LianbanApi(app)
    for name, scheme in SECURITY_SCHEMES.items():
        rest.spec.components.security_scheme(name, scheme)
    rest.ma_plugin.converter.add_attribute_function(decimal_bounds_as_numbers)
    return rest


def decimal_bounds_as_numbers(converter, field, ret, **kwargs):
    """Write the range bounds of a Decimal field as JSON numbers.

    apispec copies the bounds as Decimal objects, which Flask's JSON provider
    writes as strings, and OpenAPI requires numbers there.
    """
    if not isinstance(field, fields.Decimal):
        return {}
    return {
        key: _json_number(ret[key])
        for key in ("minimum", "maximum")
        if isinstance(ret.get(key), Decimal)
    }


def _json_number(value):
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def bearer_operation(blp, *statuses):
    """Document an operation that takes a citizen's or staff member's bearer token.

    401 and 403 are added to the error `statuses`.
    """
    security = [{BEARER_AUTH: []}]
    return _operation(blp, security, (401, 403, *statuses), {401: BEARER_UNAUTHORIZED})


def partner_operation(blp, *statuses):
    """Document an operation that takes a partner signature.

    401 is added to the error `statuses`.
    """
    security = [{PARTNER_SIGNATURE: []}]
    return _operation(blp, security, (401, *statuses), {401: PARTNER_UNAUTHORIZED})


def utility_operation(blp, *statuses):
    """Document an operation that takes a utility's signature or its staff's token.

    401 and 403 are added to the error `statuses`.
    """
    security = [{BEARER_AUTH: []}, {PARTNER_SIGNATURE: []}]
    unauthorized = (
        "Without the X-Lianban-Partner header: "
        + BEARER_UNAUTHORIZED
        + " With it: "
        + PARTNER_UNAUTHORIZED
    )
    return _operation(blp, security, (401, 403, *statuses), {401: unauthorized})


def public_operation(blp, *statuses):
    """Document an operation open to anyone, with the errors it can return."""
    return _operation(blp, [], statuses, {})


def _operation(blp, security, statuses, descriptions):
    def decorate(view):
        for status in sorted(set(statuses)):
            description = descriptions.get(status, ERROR_DESCRIPTIONS[status])
            view = blp.alt_response(
                status, schema=ErrorSchema, description=description
            )(view)
        return blp.doc(security=security)(view)

    return decorate
