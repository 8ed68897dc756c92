"""QR rendering, checked by decoding the images with zxing-cpp."""

import io
import xml.etree.ElementTree as ElementTree

import pytest
import zxingcpp
from PIL import Image

from payments.errors import QRContentTooLong
from payments.qr import (
    MAX_ALPHANUMERIC_CHARS,
    MAX_BYTES,
    MAX_NUMERIC_DIGITS,
    render_png,
    render_svg,
)

CODE_URL = "weixin://wxpay/bizpayurl?pr=iPTm7eVXlH8T"
SVG_NAMESPACE = "{http://www.w3.org/2000/svg}"


def decode_png(png):
    image = Image.open(io.BytesIO(png))
    results = zxingcpp.read_barcodes(image.convert("L"))
    return [result.text for result in results]


def test_png_decodes_to_content():
    png = render_png(CODE_URL)

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_png(png) == [CODE_URL]


def test_png_width_fits_phone_screen():
    for content in (CODE_URL, "a" * MAX_BYTES):
        width, height = Image.open(io.BytesIO(render_png(content))).size

        assert 300 <= width <= 600, content[:20]
        assert width == height


def test_png_explicit_box_size():
    small = Image.open(io.BytesIO(render_png(CODE_URL, box_size=2))).size
    large = Image.open(io.BytesIO(render_png(CODE_URL, box_size=4))).size

    assert large[0] == 2 * small[0]


@pytest.mark.parametrize("box_size", [0, -3, 2.5, True])
def test_png_invalid_box_size_rejected(box_size):
    with pytest.raises(ValueError, match="box_size"):
        render_png(CODE_URL, box_size=box_size)


def test_png_of_largest_byte_content_decodes():
    content = "https://example.invalid/" + "x" * (MAX_BYTES - 24)

    assert decode_png(render_png(content)) == [content]


def test_png_cached_by_content():
    first = render_png(CODE_URL + "cache")
    second = render_png(CODE_URL + "cache")

    assert second is first


def test_svg_is_xml_with_path():
    svg = render_svg(CODE_URL)

    root = ElementTree.fromstring(svg.encode("utf-8"))
    assert root.tag == SVG_NAMESPACE + "svg"
    assert root.find(SVG_NAMESPACE + "path") is not None
    assert 300 <= int(root.get("width")) <= 600


def test_svg_cached_by_content():
    assert render_svg(CODE_URL) is render_svg(CODE_URL)


@pytest.mark.parametrize(
    ("content", "length", "limit"),
    [
        ("1" * (MAX_NUMERIC_DIGITS + 1), MAX_NUMERIC_DIGITS + 1, MAX_NUMERIC_DIGITS),
        (
            "A" * (MAX_ALPHANUMERIC_CHARS + 1),
            MAX_ALPHANUMERIC_CHARS + 1,
            MAX_ALPHANUMERIC_CHARS,
        ),
        ("a" * (MAX_BYTES + 1), MAX_BYTES + 1, MAX_BYTES),
        ("水" * 778, 778 * 3, MAX_BYTES),
    ],
    ids=["numeric", "alphanumeric", "bytes", "utf8"],
)
def test_too_long_content_rejected(content, length, limit):
    for render in (render_png, render_svg):
        with pytest.raises(QRContentTooLong) as caught:
            render(content)

        assert isinstance(caught.value, ValueError)
        assert caught.value.length == length
        assert caught.value.limit == limit
        assert str(length) in str(caught.value)
        assert str(limit) in str(caught.value)


@pytest.mark.parametrize(
    "content",
    ["1" * MAX_NUMERIC_DIGITS, "A" * MAX_ALPHANUMERIC_CHARS, "a" * MAX_BYTES],
    ids=["numeric", "alphanumeric", "bytes"],
)
def test_content_at_limit_renders(content):
    assert render_png(content).startswith(b"\x89PNG")
    assert render_svg(content).startswith("<?xml")


def test_empty_content_rejected():
    with pytest.raises(ValueError, match="empty"):
        render_png("")
    with pytest.raises(ValueError, match="empty"):
        render_svg("")
