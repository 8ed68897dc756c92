"""Meter readings on the transfer day, and disputes of them with a photo."""

import hashlib
import struct
import time
import zlib
from io import BytesIO

import pytest
import requests
from PIL import Image

from demo import scenarios
from models import MeterReading, OutboxMessage, Transfer
from services import meter_readings
from tests.hub.flows import assert_error, citizen_request, drive_to_submission
from tests.hub.test_agents_and_windows import grant


def meter_photo(kind="PNG"):
    buffer = BytesIO()
    Image.new("RGB", (64, 48), (40, 90, 160)).save(buffer, kind)
    return buffer.getvalue()


def registered_case(client, homes, accounts):
    home = homes.make(accounts=accounts)
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    return home, case_id


def wait_for_readings(client, case_id, count, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        case = client.call("GET", f"/cases/{case_id}")
        read = [t for t in case["transfers"] if t["final_reading"]]
        if len(read) >= count:
            return case
        time.sleep(0.1)
    raise AssertionError(f"{count} readings not taken within {seconds} s")


def dispute(client, case_id, transfer_id, note, photo, content_type="image/png"):
    path = f"/cases/{case_id}/transfers/{transfer_id}/meter-reading/dispute"
    return client.session.post(
        client.api + path,
        headers={"Authorization": f"Bearer {client.token}"},
        data={"note": note} if note is not None else {},
        files={"photo": ("meter.png", photo, content_type)} if photo else None,
        timeout=10,
    )


def test_reading_taken_for_each_metered_account(client, homes):
    _, case_id = registered_case(
        client, homes, [("water", {}), ("power", {}), ("tv", {})]
    )

    case = wait_for_readings(client, case_id, 2)

    readings = {t["utility_kind"]: t["final_reading"] for t in case["transfers"]}
    assert readings["tv"] is None
    assert readings["water"]["unit"] == "m³"
    assert readings["power"]["unit"] == "kWh"
    for kind in ("water", "power"):
        assert readings[kind]["method"] == "remote"
        assert readings[kind]["disputed"] is False
        assert float(readings[kind]["value"]) > 0


def test_reading_request_sent_once(client, homes):
    _, case_id = registered_case(client, homes, [("gas", {})])
    wait_for_readings(client, case_id, 1)
    transfer = Transfer.get(Transfer.case == case_id)
    message = OutboxMessage.get(
        (OutboxMessage.kind == meter_readings.READ_METER)
        & (OutboxMessage.ref_id == transfer.id)
    )

    assert message.state == "done"
    assert MeterReading.select().where(MeterReading.transfer == transfer).count() == 1


def test_dispute_reaches_the_utility(client, homes, stack):
    _, case_id = registered_case(client, homes, [("water", {})])
    case = wait_for_readings(client, case_id, 1)
    transfer_id = case["transfers"][0]["transfer_id"]
    photo = meter_photo()

    response = dispute(client, case_id, transfer_id, "读数比实际多了一百吨", photo)

    assert response.status_code == 200, response.text
    assert response.json()["final_reading"]["disputed"] is True
    digest = hashlib.sha256(photo).hexdigest()
    deadline = time.monotonic() + 20
    sent = []
    while not sent and time.monotonic() < deadline:
        listed = requests.get(
            stack.peers.utility_sim_url + "/_sim/meter-disputes", timeout=10
        ).json()["disputes"]
        sent = [d for d in listed if d["photo_sha256"] == digest]
        time.sleep(0.1)
    assert sent[0]["note"] == "读数比实际多了一百吨"
    assert sent[0]["photo_bytes"] == len(photo)
    stored = MeterReading.get(MeterReading.transfer == transfer_id)
    sealed = meter_readings._photo_path(stored.id).read_bytes()
    assert photo not in sealed
    again = dispute(client, case_id, transfer_id, "再次提出", meter_photo())
    assert_error(again, 409, "reading_disputed")
    # Refused as disputed even with a bad photo, which is never looked at.
    bad_again = dispute(client, case_id, transfer_id, "再次提出", b"GIF89a")
    assert_error(bad_again, 409, "reading_disputed")


def png_declaring(width, height):
    """Return a small PNG file whose header declares a `width` x `height` picture."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height"),
    [(13000, 13000), (8000, 8000), (60_000_001, 1), (1, 60_000_001)],
)
def test_photo_declaring_huge_picture_refused(client, homes, width, height):
    """A small file that declares a picture too large to decode is refused
    from its header, before anything is decoded."""
    _, case_id = registered_case(client, homes, [("water", {})])
    case = wait_for_readings(client, case_id, 1)
    transfer_id = case["transfers"][0]["transfer_id"]
    photo = png_declaring(width, height)
    assert len(photo) < 200

    response = dispute(client, case_id, transfer_id, "读数不对", photo)

    assert_error(response, 422, "photo_invalid")
    assert MeterReading.get(MeterReading.transfer == transfer_id).disputed_at is None


def test_unmetered_account_has_nothing_to_dispute(client, homes):
    _, case_id = registered_case(client, homes, [("tv", {})])
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]

    response = dispute(client, case_id, transfer_id, "读数不对", meter_photo())

    assert_error(response, 409, "not_metered")


def test_bad_dispute_rejected(client, homes):
    _, case_id = registered_case(client, homes, [("water", {})])
    case = wait_for_readings(client, case_id, 1)
    transfer_id = case["transfers"][0]["transfer_id"]

    not_image = dispute(client, case_id, transfer_id, "读数不对", b"GIF89a....")
    # The right first bytes, but no image after them.
    fake_png = dispute(
        client, case_id, transfer_id, "读数不对", b"\x89PNG\r\n\x1a\nGARBAGE"
    )
    cut_jpeg = dispute(
        client, case_id, transfer_id, "读数不对", meter_photo("JPEG")[:200]
    )
    no_note = dispute(client, case_id, transfer_id, None, meter_photo())
    long_note = dispute(client, case_id, transfer_id, "长" * 501, meter_photo())
    no_photo = dispute(client, case_id, transfer_id, "读数不对", None)
    too_large = dispute(
        client,
        case_id,
        transfer_id,
        "读数不对",
        b"\x89PNG\r\n\x1a\n" + b"0" * (6 << 20),
    )

    assert_error(not_image, 422, "photo_invalid")
    assert_error(fake_png, 422, "photo_invalid")
    assert_error(cut_jpeg, 422, "photo_invalid")
    assert no_note.status_code == 422
    assert long_note.status_code == 422
    assert no_photo.status_code == 422
    body = assert_error(too_large, 413, "payload_too_large")
    assert body["errors"]["body"] == [f"The body is larger than {5 << 20} bytes."]
    assert MeterReading.get(MeterReading.transfer == transfer_id).disputed_at is None


def test_dispute_before_reading_not_found(client, homes):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]

    response = dispute(client, case_id, transfer_id, "还没有读数", meter_photo("JPEG"))

    assert_error(response, 404, "reading_not_found")


def test_agent_needs_confirm_scope_to_dispute(client, homes, staffing):
    agency = staffing.organisation("agency")
    _, agent = staffing.member("agent", organisation=agency)
    home, case_id = registered_case(client, homes, [("water", {})])
    grant(client, home, agency, scope=["view"], case_id=case_id)
    case = wait_for_readings(client, case_id, 1)

    response = dispute(
        agent, case_id, case["transfers"][0]["transfer_id"], "读数不对", meter_photo()
    )

    assert_error(response, 403, "delegation_scope")


def test_other_citizen_cannot_dispute(client, homes, stack):
    from demo.client import HubClient

    _, case_id = registered_case(client, homes, [("water", {})])
    case = wait_for_readings(client, case_id, 1)
    stranger = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    stranger.login(homes.person())

    response = dispute(
        stranger,
        case_id,
        case["transfers"][0]["transfer_id"],
        "读数不对",
        meter_photo(),
    )

    assert_error(response, 404, "case_not_found")
    assert citizen_request(stranger, "GET", f"/cases/{case_id}").status_code == 404


def test_unknown_form_field_rejected(client, homes):
    _, case_id = registered_case(client, homes, [("water", {})])
    case = wait_for_readings(client, case_id, 1)
    transfer_id = case["transfers"][0]["transfer_id"]
    path = f"/cases/{case_id}/transfers/{transfer_id}/meter-reading/dispute"

    response = client.session.post(
        client.api + path,
        headers={"Authorization": f"Bearer {client.token}"},
        data={"note": "读数不对", "state": "closed"},
        files={"photo": ("meter.png", meter_photo(), "image/png")},
        timeout=10,
    )

    body = assert_error(response, 422, "validation_failed")
    assert body["errors"]["form"] == {"state": ["Unknown field."]}
