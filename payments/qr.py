"""QR codes for payment links such as WeChat Pay code_url values.

Both renderers use error correction level M and a 4-module quiet zone, and
keep the content in one segment of the most compact mode that contains all of
it: numeric, alphanumeric or byte (UTF-8). Results are cached by content, so
a page that polls the same code renders it once.
"""

import io
import math
import re
from functools import lru_cache

import qrcode
import qrcode.constants
import qrcode.exceptions
import segno

from payments.errors import QRContentTooLong

BORDER_MODULES = 4
# Without an explicit box size, each module gets the smallest whole number of
# pixels that makes the image at least this wide, a size meant for showing on
# a phone screen. The result stays under 500 px because a QR code has at most
# 177 + 2 * 4 modules a side.
MIN_WIDTH_PX = 300
CACHE_SIZE = 256

# Capacity of a version 40 code at level M in one segment. qrcode 8.2 and
# segno 1.6 render exactly these lengths, as tests/payments/test_qr.py checks.
MAX_NUMERIC_DIGITS = 5596
MAX_ALPHANUMERIC_CHARS = 3391
MAX_BYTES = 2331

ALPHANUMERIC_PATTERN = re.compile(r"[0-9A-Z $%*+\-./:]*")


def check_capacity(content):
    """Raise QRContentTooLong unless `content` fits one level-M QR code.

    Also raises ValueError for empty content and TypeError for a non-string.
    """
    if not isinstance(content, str):
        raise TypeError(f"QR content must be a string, got {type(content).__name__}")
    if not content:
        raise ValueError("QR content is empty")
    if content.isascii() and content.isdigit():
        length, limit, unit = len(content), MAX_NUMERIC_DIGITS, "digits"
    elif ALPHANUMERIC_PATTERN.fullmatch(content):
        length, limit, unit = len(content), MAX_ALPHANUMERIC_CHARS, "characters"
    else:
        length, limit, unit = len(content.encode("utf-8")), MAX_BYTES, "bytes"
    if length > limit:
        raise QRContentTooLong(length, limit, unit)
    return length, limit, unit


def render_png(content: str, box_size: int | None = None) -> bytes:
    """Render `content` as a PNG QR code and return the PNG bytes.

    `box_size` is the pixel width of one module. By default it is the
    smallest size that makes the image at least 300 px wide.
    """
    if box_size is not None and (
        isinstance(box_size, bool) or not isinstance(box_size, int) or box_size < 1
    ):
        raise ValueError(f"box_size must be a positive integer, got {box_size!r}")
    return _render_png(content, box_size)


def _module_pixels(side_modules):
    return math.ceil(MIN_WIDTH_PX / side_modules)


@lru_cache(maxsize=CACHE_SIZE)
def _render_png(content, box_size):
    limits = check_capacity(content)
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, border=BORDER_MODULES
    )
    # optimize=0 keeps one segment, which is what check_capacity measured.
    code.add_data(content, optimize=0)
    try:
        code.make(fit=True)
    except qrcode.exceptions.DataOverflowError:
        raise QRContentTooLong(*limits) from None
    if box_size is None:
        side_modules = code.modules_count + 2 * BORDER_MODULES
        box_size = _module_pixels(side_modules)
    code.box_size = box_size
    output = io.BytesIO()
    code.make_image().save(output)
    return output.getvalue()


@lru_cache(maxsize=CACHE_SIZE)
def render_svg(content: str) -> str:
    """Render `content` as an SVG QR code and return the SVG document text.

    The width and height attributes are between 300 and 500 px, like the PNG.
    """
    limits = check_capacity(content)
    try:
        code = segno.make(content, error="m", boost_error=False, micro=False)
    except segno.DataOverflowError:
        raise QRContentTooLong(*limits) from None
    side_modules = code.symbol_size(scale=1, border=BORDER_MODULES)[0]
    output = io.BytesIO()
    code.save(
        output,
        kind="svg",
        scale=_module_pixels(side_modules),
        border=BORDER_MODULES,
        encoding="utf-8",
        title="WeChat Pay QR code",
    )
    return output.getvalue().decode("utf-8")
