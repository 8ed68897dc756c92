"""Notices on every change of a case, through the subscribe and SMS sandboxes."""

import logging
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from demo import scenarios
from models import Citizen, Notice, OutboxMessage, SmsSetting, Transfer
from models.base import utcnow
from models.db import transaction
from models.fields import data_keys
from peers import launch
from services import notifications, queue
from tests.hub.flows import (
    assert_error,
    citizen_request,
    drive_to_submission,
    signed_call,
)

STATUS_TEMPLATE = notifications.TEMPLATES["transfer_status"].subscribe_id
RELEASE_TEMPLATE = notifications.TEMPLATES["release_notice"].subscribe_id


class LogCollector(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def captured_logs():
    """Every log line at INFO and above of this module's tests, hub and worker too."""
    collector = LogCollector()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(collector)
    yield collector
    root.removeHandler(collector)
    root.setLevel(old_level)


@pytest.fixture(scope="module")
def people_seen():
    """Phone and ID numbers used in this module, which no log line may contain."""
    return set()


@pytest.fixture
def sandboxes(stack):
    class Sandboxes:
        def subscribe_messages(self, openid):
            return requests.get(
                stack.peers.subscribe_url + "/_sandbox/messages",
                params={"touser": openid},
                timeout=10,
            ).json()

        def sms(self, phone):
            return requests.get(
                stack.peers.sms_url + "/_sandbox/messages",
                params={"phone": phone},
                timeout=10,
            ).json()

        def subscribe(self, openid, template_id, result="accept"):
            response = requests.post(
                stack.peers.subscribe_url + "/_sandbox/subscriptions",
                json={"openid": openid, "template_id": template_id, "result": result},
                timeout=10,
            )
            response.raise_for_status()

        def tokens_issued(self):
            url = stack.peers.subscribe_url + "/_sandbox/tokens"
            return requests.get(url, timeout=10).json()["issued"]

    return Sandboxes()


def with_phones(client, home, people_seen, seller_phone=True):
    """Send the business again with the 联系电话 of each person, as the registry may."""
    payload = scenarios.business_payload(home, "accepted")
    payload["owners"][0]["phone"] = home.buyer.phone
    if seller_phone:
        payload["previous_owners"][0]["phone"] = home.sellers[0].phone
    client.put_business(home.business_no, payload)
    for person in [home.buyer, *home.sellers]:
        people_seen.update({person.phone, person.id_number})
    home.payload = payload


def openid_of(person):
    index = data_keys.blind_index(person.id_number)
    return Citizen.get(Citizen.id_index == index).openid


def subscribe_buyer(client, sandboxes, person, template_id, times):
    """Accept `times` one-time messages in WeChat and report it to the hub."""
    openid = openid_of(person)
    for _ in range(times):
        sandboxes.subscribe(openid, template_id)
        client.call("POST", "/me/notifications", {"results": {template_id: "accept"}})
    return openid


def wait_for(read, count, seconds=40):
    """Poll `read()` until it returns at least `count` items; return the last list."""
    deadline = time.monotonic() + seconds
    while True:
        items = read()
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.3)


def settle(seconds=1.5):
    """Give the worker time to send anything more that it would wrongly send."""
    time.sleep(seconds)


def complete_case(client, home, case_id):
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(
        home.business_no, {**home.payload, "registration_status": "completed"}
    )
    return client.wait_until_final(case_id, seconds=40)


def statuses(messages, key):
    return sorted(m["data"][key]["value"] for m in messages)


def test_each_event_reaches_each_person_once(
    stack, client, homes, sandboxes, captured_logs, people_seen
):
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    with_phones(client, home, people_seen)
    client.login(home.buyer)
    openid = subscribe_buyer(client, sandboxes, home.buyer, STATUS_TEMPLATE, 5)
    case_id = drive_to_submission(client, home)

    progress = complete_case(client, home, case_id)

    assert [t["status"] for t in progress["transfers"]] == ["completed", "completed"]
    buyer_messages = wait_for(lambda: sandboxes.subscribe_messages(openid), 5)
    seller = home.sellers[0]
    seller_sms = wait_for(lambda: sandboxes.sms(seller.phone), 6)
    settle()
    buyer_messages = sandboxes.subscribe_messages(openid)
    seller_sms = sandboxes.sms(seller.phone)
    assert statuses(buyer_messages, "phrase2") == sorted(
        ["已创建", "已推送", "已推送", "已办结", "已办结"]
    )
    assert {m["data"]["character_string5"]["value"] for m in buyer_messages} == {
        home.business_no
    }
    assert sandboxes.sms(home.buyer.phone) == []
    status_sms = [m for m in seller_sms if m["template_code"] == "SMS_LB_STATUS"]
    release_sms = [m for m in seller_sms if m["template_code"] == "SMS_LB_RELEASE"]
    assert sorted(m["params"]["status"] for m in status_sms) == sorted(
        ["已创建", "已推送", "已推送", "已办结", "已办结"]
    )
    assert len(release_sms) == 1
    assert "济南水务集团" in release_sms[0]["text"]
    assert all(m["text"].startswith("【泉城联办】") for m in seller_sms)
    sent = Notice.select().where(Notice.case == case_id)
    assert {n.state for n in sent} == {"sent"}
    assert sent.count() == 11


def test_payment_and_return_reach_seller(stack, client, homes, sandboxes, people_seen):
    home = homes.make(
        accounts=[("water", {"arrears_fen": 1999}), ("power", {"direct_debit": True})]
    )
    with_phones(client, home, people_seen)
    case_id = drive_to_submission(client, home)
    water = next(
        a
        for a in client.call("GET", f"/cases/{case_id}/arrears")
        if a["arrears_fen"] == 1999
    )
    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{water['transfer_id']}/payments", {}
    )
    client.pay_in_sandbox(payment["code_url"])
    client.wait_for_payment(payment["payment_id"])

    progress = complete_case(client, home, case_id)
    seller = home.sellers[0]
    wait_for(lambda: sandboxes.sms(seller.phone), 6)
    settle()

    by_status = {}
    for message in sandboxes.sms(seller.phone):
        by_status.setdefault(message["params"]["status"], []).append(message)
    assert sorted(t["status"] for t in progress["transfers"]) == [
        "completed",
        "returned",
    ]
    assert [m["params"]["detail"] for m in by_status["已缴费"]] == [
        "欠费19.99元已缴清。"
    ]
    assert [m["params"]["detail"] for m in by_status["已退件"]] == [
        "退件原因：原户主银行代扣未解除。"
    ]
    assert "供电" in by_status["已退件"][0]["params"]["utility"]
    assert len(by_status["已办结"]) == 1
    assert "SMS_LB_RELEASE" not in {
        m["template_code"] for m in sandboxes.sms(seller.phone)
    }


def test_release_notice_readable_by_seller_only(stack, client, homes, people_seen):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen)
    case_id = drive_to_submission(client, home)
    complete_case(client, home, case_id)
    seller = stack_client(stack)
    seller.login(home.sellers[0])

    listed = seller.call("GET", "/release-notices")

    mine = [n for n in listed["items"] if n["case_id"] == case_id]
    assert len(mine) == 1
    notice = seller.call("GET", f"/release-notices/{mine[0]['release_notice_id']}")
    assert [item["utility"] for item in notice["items"]] == ["water"]
    assert notice["items"][0]["account_no"] == home.accounts[0].account_no
    assert notice["previous_owners"] == [{"name": home.sellers[0].name, "is_me": True}]
    assert notice["owners"][0]["name"] != home.buyer.name
    assert notice["owners"][0]["name"][0] == home.buyer.name[0]
    buyer_answer = citizen_request(
        client, "GET", f"/release-notices/{mine[0]['release_notice_id']}"
    )
    missing = citizen_request(client, "GET", "/release-notices/2000000000")
    assert_error(buyer_answer, 404, "release_notice_not_found")
    assert_error(missing, 404, "release_notice_not_found")
    assert client.call("GET", "/release-notices")["total"] == 0


def stack_client(stack):
    from demo.client import HubClient

    return HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )


def test_refused_subscribe_message_falls_back_to_sms(
    stack, client, homes, sandboxes, people_seen
):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen)
    client.login(home.buyer)
    # The user accepted in the mini-program, then turned the template off in
    # WeChat's settings, so the platform refuses the message.
    openid = subscribe_buyer(client, sandboxes, home.buyer, STATUS_TEMPLATE, 1)
    sandboxes.subscribe(openid, STATUS_TEMPLATE, "reject")

    case = client.call("POST", "/cases", {"business_no": home.business_no})

    buyer_sms = wait_for(lambda: sandboxes.sms(home.buyer.phone), 1)
    settle()
    assert [m["params"]["status"] for m in sandboxes.sms(home.buyer.phone)] == [
        "已创建"
    ]
    assert sandboxes.subscribe_messages(openid) == []
    notices = {
        n.channel: n.state
        for n in Notice.select().where(
            (Notice.case == case["case_id"]) & (Notice.role == "owner")
        )
    }
    assert notices == {"subscribe": "refused", "sms": "sent"}
    assert len(buyer_sms) == 1


def test_expired_access_token_is_refreshed_once(
    stack, client, homes, sandboxes, people_seen
):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen, seller_phone=False)
    client.login(home.buyer)
    openid = subscribe_buyer(client, sandboxes, home.buyer, STATUS_TEMPLATE, 2)
    first = homes.make(accounts=[("water", {})], buyer=home.buyer)
    client.call("POST", "/cases", {"business_no": first.business_no})
    wait_for(lambda: sandboxes.subscribe_messages(openid), 1)
    requests.post(stack.peers.subscribe_url + "/_sandbox/tokens/expire", timeout=10)
    issued = sandboxes.tokens_issued()

    client.call("POST", "/cases", {"business_no": home.business_no})

    messages = wait_for(lambda: sandboxes.subscribe_messages(openid), 2)
    assert len(messages) == 2
    assert sandboxes.tokens_issued() == issued + 1


def restart_sms_sandbox(stack, port):
    peers = stack.peers
    old = peers.processes["sms"]
    new = launch._spawn(launch.SMS, peers.workdir, peers.keys, ["--port", str(port)])
    launch._wait_until_healthy(new, time.monotonic() + 15, 15)
    peers.processes["sms"] = new
    old.log_file.close()


def test_sms_gateway_down_is_retried(stack, client, homes, sandboxes, people_seen):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen)
    gateway = stack.peers.processes["sms"]
    port = gateway.port
    gateway.process.terminate()
    gateway.process.wait(timeout=10)
    try:
        client.login(home.buyer)
        case = client.call("POST", "/cases", {"business_no": home.business_no})
        time.sleep(2.5)
        notice = Notice.get(
            (Notice.case == case["case_id"]) & (Notice.role == "previous_owner")
        )
        message = OutboxMessage.get(
            (OutboxMessage.kind == notifications.NOTICE)
            & (OutboxMessage.ref_id == notice.id)
        )
        assert Notice.get_by_id(notice.id).state == "pending"
        assert message.attempts >= 1
        assert message.state == "pending"
    finally:
        restart_sms_sandbox(stack, port)

    seller_sms = wait_for(lambda: sandboxes.sms(home.sellers[0].phone), 1, 60)

    assert [m["params"]["status"] for m in seller_sms] == ["已创建"]
    assert Notice.get_by_id(notice.id).state == "sent"


def wait_for_state(notice_id, state, seconds=30):
    deadline = time.monotonic() + seconds
    while Notice.get_by_id(notice_id).state != state:
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
    return Notice.get_by_id(notice_id).state


def test_sms_is_not_sent_again_after_worker_crash(
    stack, client, homes, sandboxes, people_seen
):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen)
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    seller = home.sellers[0]
    wait_for(lambda: sandboxes.sms(seller.phone), 1)
    notice = Notice.get(
        (Notice.case == case["case_id"]) & (Notice.role == "previous_owner")
    )
    # As a worker that died after the gateway took the message leaves it:
    # claimed once, with no result recorded.
    Notice.update(state="pending").where(Notice.id == notice.id).execute()
    OutboxMessage.update(
        state="pending", next_attempt_at=utcnow(), claimed_at=utcnow(), done_at=None
    ).where(
        (OutboxMessage.kind == notifications.NOTICE)
        & (OutboxMessage.ref_id == notice.id)
    ).execute()

    queue.send_due()

    assert wait_for_state(notice.id, "sent") == "sent"
    settle()
    assert len(sandboxes.sms(seller.phone)) == 1


def test_sms_opt_out_by_link_is_respected(
    stack, client, homes, sandboxes, captured_logs, people_seen
):
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    with_phones(client, home, people_seen)
    seller = home.sellers[0]
    case_id = drive_to_submission(client, home)
    opened = wait_for(lambda: sandboxes.sms(seller.phone), 1)
    token = opened[0]["params"]["token"]
    assert token in opened[0]["text"]

    answer = client.call("POST", "/notifications/sms-opt-out", {"token": token})
    complete_case(client, home, case_id)
    settle(3)

    assert answer["opted_in"] is False
    assert len(sandboxes.sms(seller.phone)) == 1
    skipped = [
        line
        for line in captured_logs.lines
        if f"case={case_id} " in line and "reason=opted_out" in line
    ]
    # pushed twice, completed twice, released once: one line for each
    assert len(skipped) == 5
    unknown = citizen_request(
        client, "POST", "/notifications/sms-opt-out", {"token": "f" * 24}
    )
    assert_error(unknown, 404, "opt_out_token_not_found")


def test_citizen_sms_choice_is_respected(stack, client, homes, sandboxes, people_seen):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen, seller_phone=False)
    client.login(home.buyer)

    choice = client.call("PUT", "/me/notifications/sms", {"opt_in": False})
    client.call("POST", "/cases", {"business_no": home.business_no})
    settle(3)

    assert choice["sms"]["opted_in"] is False
    assert sandboxes.sms(home.buyer.phone) == []
    other = homes.make(accounts=[("water", {})], buyer=home.buyer)
    client.call("PUT", "/me/notifications/sms", {"opt_in": True})
    client.call("POST", "/cases", {"business_no": other.business_no})
    sms = wait_for(lambda: sandboxes.sms(home.buyer.phone), 1)
    assert [m["params"]["business_no"] for m in sms] == [other.business_no]


def test_agent_opted_in_gets_sms(
    stack, client, homes, staffing, sandboxes, people_seen
):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen, seller_phone=False)
    agency = staffing.organisation("agency")
    _, agent = staffing.member("agent", organisation=agency)
    agent_phone = homes.person().phone
    people_seen.add(agent_phone)
    agent.call("PUT", "/me/notifications/sms", {"opt_in": True, "phone": agent_phone})
    case_id = drive_to_submission(client, home)
    client.call(
        "POST",
        f"/cases/{case_id}/delegations",
        {
            "agency_name": agency.name,
            "agency_credit_code": agency.credit_code,
            "scope": ["view"],
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
    )

    complete_case(client, home, case_id)
    sms = wait_for(lambda: sandboxes.sms(agent_phone), 2)
    settle()

    assert sorted(m["params"]["status"] for m in sandboxes.sms(agent_phone)) == sorted(
        ["已推送", "已办结"]
    )
    missing_phone = citizen_request(
        staffing.member("agent")[1], "PUT", "/me/notifications/sms", {"opt_in": True}
    )
    assert_error(missing_phone, 422, "phone_required")
    assert len(sms) >= 2


def test_replayed_feedback_sends_nothing_new(
    stack, client, homes, sandboxes, people_seen
):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen)
    case_id = drive_to_submission(client, home)
    progress = complete_case(client, home, case_id)
    seller = home.sellers[0]
    before = wait_for(lambda: sandboxes.sms(seller.phone), 4)
    settle()
    before = sandboxes.sms(seller.phone)
    transfer = progress["transfers"][0]
    report = {
        "transfer_id": str(transfer["transfer_id"]),
        "account_no": home.accounts[0].account_no,
        "status": "办结",
        "reported_at": "2026-12-04T10:00:00+08:00",
        "service_org": transfer["service_org"],
    }

    replay = signed_call(stack, "water", "POST", "/partner/feedback", report)
    settle(3)

    assert replay.status_code == 200, replay.text
    assert len(before) == 4
    assert sandboxes.sms(seller.phone) == before
    assert Notice.select().where(Notice.case == case_id).count() == 7


def test_passed_deadline_is_told_once(
    stack, client, homes, app, sandboxes, people_seen
):
    home = homes.make(accounts=[("water", {})])
    with_phones(client, home, people_seen)
    case_id = drive_to_submission(client, home)
    seller = home.sellers[0]
    wait_for(lambda: sandboxes.sms(seller.phone), 1)
    transfer = Transfer.get(Transfer.case == case_id)

    for _ in range(2):
        with transaction():
            notifications.on_deadline_passed(transfer)
    queue.send_due()
    sms = wait_for(lambda: sandboxes.sms(seller.phone), 2)
    settle()

    overdue = [
        m for m in sandboxes.sms(seller.phone) if m["params"]["status"] == "已超期"
    ]
    assert len(overdue) == 1
    assert "济南水务集团" in overdue[0]["text"]
    assert len(sms) == 2


def test_subscribe_choices_are_listed(client, homes):
    client.login(homes.person())

    recorded = client.call(
        "POST",
        "/me/notifications",
        {"results": {STATUS_TEMPLATE: "accept", RELEASE_TEMPLATE: "reject"}},
    )

    by_template = {c["template"]: c for c in recorded["subscribe"]}
    assert by_template["transfer_status"]["decision"] == "accept"
    assert by_template["transfer_status"]["remaining"] == 1
    assert by_template["release_notice"]["decision"] == "reject"
    assert by_template["release_notice"]["long_term"] is True
    bad = citizen_request(
        client, "POST", "/me/notifications", {"results": {STATUS_TEMPLATE: "maybe"}}
    )
    assert_error(bad, 422, "validation_failed")


def test_no_personal_numbers_in_logs(stack, captured_logs, people_seen):
    assert people_seen
    text = "\n".join(captured_logs.lines)
    for value in people_seen:
        assert value not in text
    for name in ("sms", "subscribe"):
        peer_log = stack.peers.log_path(name).read_text(encoding="utf-8")
        for value in people_seen:
            assert value not in peer_log, name


def test_citizen_sending_phone_rejected(client, homes):
    home = homes.make(accounts=[("water", {})])
    client.login(home.buyer)

    response = citizen_request(
        client, "PUT", "/me/notifications/sms", {"opt_in": True, "phone": "13912345678"}
    )

    body = assert_error(response, 422, "validation_failed")
    assert list(body["errors"]) == ["phone"]
    choices = client.call("GET", "/me/notifications")
    assert choices["sms"]["opted_in"] is not True


def _new_citizen(client, homes):
    client.login(homes.person())
    return Citizen.select().order_by(Citizen.id.desc()).first()


def _decide(subject, opted_in, decided_by, minute, phone=None):
    """Record an SMS decision made at 08:`minute` on 2026-12-04 (UTC)."""
    setting, _ = SmsSetting.get_or_create(subject=subject)
    setting.opted_in = opted_in
    setting.decided_by = decided_by
    setting.updated_at = datetime(2026, 12, 4, 8, minute)
    if phone is not None:
        setting.phone = phone
    setting.save()


@pytest.mark.parametrize(
    ("steps", "allowed"),
    [
        ((), True),
        (("link_out",), False),
        (("own_in", "link_out"), False),
        (("link_out", "own_in"), True),
        (("own_out",), False),
        (("link_out", "own_out"), False),
        (("own_out", "link_out"), False),
        (("own_out", "own_in"), True),
    ],
    ids=lambda item: "-".join(item) or "none" if isinstance(item, tuple) else None,
)
@pytest.mark.parametrize("person", ["citizen", "staff"])
def test_latest_sms_choice_counts(app, client, homes, staffing, steps, allowed, person):
    """Between a person's own choice and the link's opt-out, the later one counts."""
    phone = f"139{random.randrange(10**8):08d}"
    if person == "staff":
        staff = staffing.member("agent", login=False)[0]
        subject = f"staff:{staff.id}"
        recipient = notifications.Recipient(subject, "agent", staff=staff)
        # Agency staff get SMS only after opting in with their number.
        _decide(subject, True, "staff", 0, phone)
    else:
        citizen = _new_citizen(client, homes)
        subject = f"citizen:{citizen.id}"
        recipient = notifications.Recipient(
            subject, "previous_owner", citizen=citizen, phone=phone
        )
    with app.app_context():
        link = f"phone:{notifications.phone_index(phone)}"
        for minute, step in enumerate(steps, start=1):
            if step == "link_out":
                _decide(link, False, "link", minute)
            else:
                _decide(subject, step == "own_in", person, minute, phone)

        assert notifications.sms_allowed(recipient)[0] is allowed


def test_link_wins_a_tie(app, client, homes):
    phone = f"139{random.randrange(10**8):08d}"
    citizen = _new_citizen(client, homes)
    subject = f"citizen:{citizen.id}"
    recipient = notifications.Recipient(
        subject, "previous_owner", citizen=citizen, phone=phone
    )
    with app.app_context():
        _decide(subject, True, "citizen", 5)
        _decide(f"phone:{notifications.phone_index(phone)}", False, "link", 5)

        assert notifications.sms_allowed(recipient) == (False, "opted_out")


def test_login_without_phone_keeps_the_number(client, homes):
    """SMS go to the number a citizen shared once; a later login that shares
    none must not silence them."""
    from dataclasses import replace

    person = homes.person()
    client.login(person)
    client.call("PUT", "/me/notifications/sms", {"opt_in": True})

    client.login(replace(person, phone=None))

    citizen = Citizen.get(Citizen.id_index == data_keys.blind_index(person.id_number))
    assert citizen.phone == person.phone
    choices = client.call("GET", "/me/notifications")
    assert choices["sms"]["opted_in"] is True


def test_settings_show_the_link_opt_out(app, client, homes):
    """The opt-out page sends people to their settings to turn SMS on again,
    so the settings show the opt-out the link made."""
    from services import notice_choices

    person = homes.person()
    client.login(person)
    client.call("PUT", "/me/notifications/sms", {"opt_in": True})
    with app.app_context():
        token = notice_choices.opt_out_token(person.phone)
    client.call("POST", "/notifications/sms-opt-out", {"token": token})

    after_link = client.call("GET", "/me/notifications")["sms"]
    client.call("PUT", "/me/notifications/sms", {"opt_in": True})
    after_opt_in = client.call("GET", "/me/notifications")["sms"]

    assert after_link["opted_in"] is False
    assert after_opt_in["opted_in"] is True
