"""Domain errors that the API turns into its one error shape.

`code` is stable and meant for programs; `message` is Chinese text for the
user that says what was wrong and what to do.
"""


class ServiceError(Exception):
    status = 400

    def __init__(self, code, message, errors=None, status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    """A step taken out of order, or a change that clashes with the state."""

    status = 409


class Invalid(ServiceError):
    status = 422


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class PartnerUnavailable(ServiceError):
    """A partner system that is down, slow or returned an invalid response."""

    status = 502
