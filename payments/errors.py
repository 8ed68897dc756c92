"""Exceptions raised by the payment clients and the QR renderer."""


class PaymentError(Exception):
    """Base class of the errors raised by the WeChat Pay client."""


class WechatPayError(PaymentError):
    """A non-2xx response from WeChat Pay, with the `code` and `message` it sent.

    `status` is the HTTP status. `code` is WeChat Pay's error code, such as
    `PARAM_ERROR`, `SIGN_ERROR`, `ORDERPAID`, `RESOURCE_NOT_EXISTS` or
    `STATEMENT_CREATING`, or `HTTP_<status>` when the body carried no code.
    """

    # Codes that WeChat Pay documents as temporary, so the same request may
    # succeed later. STATEMENT_CREATING means the day's bill is still being
    # generated.
    RETRYABLE_CODES = frozenset(
        {"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANKERROR", "STATEMENT_CREATING"}
    )

    def __init__(self, code, message, status):
        super().__init__(f"WeChat Pay returned {status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def retryable(self):
        """Whether sending the same request again later may succeed."""
        return self.status >= 500 or self.code in self.RETRYABLE_CODES


class WechatPayUnavailable(PaymentError):
    """A request that got no response: connection refused, reset or timed out.

    The request may or may not have reached WeChat Pay, so the caller should
    query the order before it assumes either outcome.
    """


class WechatPayInvalidResponse(PaymentError):
    """A 2xx response whose signature, serial, timestamp or body is not valid.

    The response cannot be trusted, so the caller should treat the outcome as
    unknown, as for WechatPayUnavailable.
    """


class InvalidNotification(PaymentError):
    """A payment or refund notification that failed a check.

    Its verification, decryption or parsing failed, and `reason` names the check.
    """

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class QRContentTooLong(ValueError):
    """Content that does not fit in the largest QR code at the chosen level."""

    def __init__(self, length, limit, unit):
        super().__init__(
            f"QR content is {length} {unit} long, more than the maximum of "
            f"{limit} {unit} for one QR code at error correction level M; "
            "shorten the content."
        )
        self.length = length
        self.limit = limit
