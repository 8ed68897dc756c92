"""The subscribe-message and SMS sandboxes as real processes, with their clients."""

import datetime as dt

import pytest
import requests

from partners import subscribe
from partners.http import PartnerError
from partners.sms import NumberRejected, SmsClient
from partners.subscribe import NotDelivered, SubscribeClient
from peers.launch import start_peers
from peers.sms_sandbox import ensure_sms_keys

STATUS = "LBzTransferStatus0000000000000000000000001"
RELEASE = "LBzReleaseNotice00000000000000000000000002"
OPENID = "o" + "A" * 27
PHONE = "13912345678"
DATA = {
    "thing1": "济南水务集团有限公司",
    "phrase2": "已办结",
    "thing3": "户号已过户至新户主",
    "time4": "2026-12-04 15:01",
    "character_string5": "JN2026000001",
}


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("notices")
    with start_peers(
        workdir, "http://127.0.0.1:9", include_wechatpay=False, include_alipay=False
    ) as running:
        yield running


@pytest.fixture
def platform(peers):
    subscribe.forget_tokens()
    return SubscribeClient(
        peers.subscribe_url, peers.keys.idp_appid, peers.keys.idp_secret
    )


@pytest.fixture
def gateway(peers):
    keys = ensure_sms_keys(peers.keys.directory)
    return SmsClient(
        peers.sms_url,
        keys["access_key_id"],
        keys["access_key_secret"],
        keys["sign_name"],
    )


def accept(peers, openid, template_id, result="accept"):
    response = requests.post(
        peers.subscribe_url + "/_sandbox/subscriptions",
        json={"openid": openid, "template_id": template_id, "result": result},
        timeout=10,
    )
    response.raise_for_status()


def send_raw(peers, token, body):
    return requests.post(
        peers.subscribe_url + "/cgi-bin/message/subscribe/send",
        params={"access_token": token},
        json=body,
        timeout=10,
    ).json()


def test_token_needs_appid_and_secret(peers):
    good = requests.get(
        peers.subscribe_url + "/cgi-bin/token",
        params={
            "grant_type": "client_credential",
            "appid": peers.keys.idp_appid,
            "secret": peers.keys.idp_secret,
        },
        timeout=10,
    ).json()
    wrong = requests.get(
        peers.subscribe_url + "/cgi-bin/token",
        params={
            "grant_type": "client_credential",
            "appid": peers.keys.idp_appid,
            "secret": "x",
        },
        timeout=10,
    ).json()
    stable = requests.post(
        peers.subscribe_url + "/cgi-bin/stable_token",
        json={
            "grant_type": "client_credential",
            "appid": peers.keys.idp_appid,
            "secret": peers.keys.idp_secret,
        },
        timeout=10,
    ).json()

    assert good["expires_in"] == 7200
    assert len(good["access_token"]) > 20
    assert wrong["errcode"] == 40125
    assert "access_token" in stable


def test_one_time_quota_is_used_up(peers, platform):
    openid = "o" + "B" * 27
    accept(peers, openid, STATUS)

    first = platform.send(openid, STATUS, DATA, "pages/case/index")

    assert first >= 1
    with pytest.raises(NotDelivered) as refused:
        platform.send(openid, STATUS, DATA, "pages/case/index")
    assert refused.value.code == 43101


def test_long_term_template_has_no_quota(peers, platform):
    openid = "o" + "C" * 27
    accept(peers, openid, RELEASE)
    data = {
        "thing1": "户号已全部过户",
        "character_string2": "JN2026000001",
        "time3": "2026-12-04 15:01",
        "thing4": "共2个户号，点击查看证明",
    }

    sent = [
        platform.send(openid, RELEASE, data, "pages/release/index") for _ in range(3)
    ]

    assert len(set(sent)) == 3


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("thing1", "一" * 21),
        ("phrase2", "已经办结完毕"),
        ("phrase2", "done"),
        ("time4", "tomorrow"),
        ("character_string5", "业务号"),
        ("character_string5", "J" * 33),
    ],
)
def test_field_rules_give_47003(peers, platform, key, value):
    openid = "o" + "D" * 27
    accept(peers, openid, STATUS)

    with pytest.raises(PartnerError) as error:
        platform.send(openid, STATUS, {**DATA, key: value}, "pages/case/index")

    assert error.value.code == 47003
    assert error.value.retryable is False


def test_invalid_openid_gives_40003(peers, platform):
    with pytest.raises(NotDelivered) as error:
        platform.send("not-an-openid", STATUS, DATA, "pages/case/index")

    assert error.value.code == 40003


def test_expired_token_is_refreshed_once(peers, platform):
    openid = "o" + "E" * 27
    accept(peers, openid, STATUS)
    platform.access_token()
    requests.post(peers.subscribe_url + "/_sandbox/tokens/expire", timeout=10)
    issued = requests.get(peers.subscribe_url + "/_sandbox/tokens", timeout=10).json()

    platform.send(openid, STATUS, DATA, "pages/case/index")

    after = requests.get(peers.subscribe_url + "/_sandbox/tokens", timeout=10).json()
    assert after["issued"] == issued["issued"] + 1


def test_unknown_token_gives_40001(peers):
    answer = send_raw(peers, "made-up", {"touser": OPENID, "template_id": STATUS})

    assert answer["errcode"] == 40001


def test_sms_is_recorded_and_found(peers, gateway):
    params = {
        "utility": "济南水务集团有限公司",
        "status": "已办结",
        "detail": "户号已过户至新户主。",
        "business_no": "JN2026000001",
        "token": "abc123",
    }

    biz_id = gateway.send(PHONE, "SMS_LB_STATUS", params, ref="notice:1")

    recorded = requests.get(
        peers.sms_url + "/_sandbox/messages", params={"phone": PHONE}, timeout=10
    ).json()
    assert [m["biz_id"] for m in recorded] == [biz_id]
    assert recorded[0]["text"].startswith(
        "【泉城联办】您的济南水务集团有限公司过户已办结"
    )
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    assert gateway.find_sent(PHONE, today, "notice:1") == biz_id
    assert gateway.find_sent(PHONE, today, "notice:2") is None


def test_sms_errors(peers, gateway):
    params = {"utility": "水", "status": "办结", "detail": "", "business_no": "B1"}

    with pytest.raises(NumberRejected):
        gateway.send("1234", "SMS_LB_STATUS", {**params, "token": "t"})
    with pytest.raises(PartnerError) as unknown:
        gateway.send(PHONE, "SMS_NOPE", {**params, "token": "t"})
    with pytest.raises(PartnerError) as missing:
        gateway.send(PHONE, "SMS_LB_STATUS", params)
    wrong = SmsClient(peers.sms_url, gateway.access_key_id, "wrong", gateway.sign_name)
    with pytest.raises(PartnerError) as unsigned:
        wrong.send(PHONE, "SMS_LB_STATUS", {**params, "token": "t"})

    assert unknown.value.code == "isv.SMS_TEMPLATE_ILLEGAL"
    assert missing.value.code == "isv.TEMPLATE_MISSING_PARAMETERS"
    assert unsigned.value.code == "SignatureDoesNotMatch"
    assert unknown.value.retryable is False


def test_sms_limit_per_number_is_retryable(peers, gateway):
    phone = "13700000001"
    requests.put(
        peers.sms_url + "/_sandbox/settings", json={"per_number_limit": 2}, timeout=10
    ).raise_for_status()
    params = {
        "utility": "水",
        "status": "办结",
        "detail": "",
        "business_no": "B1",
        "token": "t",
    }
    try:
        gateway.send(phone, "SMS_LB_STATUS", params)
        gateway.send(phone, "SMS_LB_STATUS", params)
        with pytest.raises(PartnerError) as limited:
            gateway.send(phone, "SMS_LB_STATUS", params)
    finally:
        requests.put(
            peers.sms_url + "/_sandbox/settings",
            json={"per_number_limit": 30},
            timeout=10,
        )

    assert limited.value.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert limited.value.retryable is True
