"""The SMS opt-out page on a phone-sized screen, with the link of a real SMS."""

import re
import secrets
import time

import pytest
import requests
from playhouse.db_url import connect

from models import SmsSetting

# Every SMS template of the hub ends with the opt-out link.
LINK = re.compile(r"https://lianban\.example(/u/\S+)$")
NOT_FOUND_MESSAGE = "退订链接无效，请核对短信中的链接是否完整。"
MALFORMED_MESSAGE = "退订链接不完整或有误"
SMS_WAIT_SECONDS = 40


@pytest.fixture
def stack_database(stack):
    """The stack's own database, for reading the opt-out state."""
    db = connect(stack["database_url"])
    yield db
    db.close()


def link_choice(db, token):
    """Return (opted_in, decided_by) of the number that the token belongs to."""
    with db.bind_ctx([SmsSetting]):
        setting = (
            SmsSetting.select(SmsSetting.opted_in, SmsSetting.decided_by)
            .where(SmsSetting.opt_out_token == token)
            .get()
        )
    return setting.opted_in, setting.decided_by


def sms_link(stack, phone):
    """Wait for the first SMS to `phone` in the sandbox; return its opt-out path."""
    deadline = time.monotonic() + SMS_WAIT_SECONDS
    while True:
        messages = requests.get(
            stack["sms_url"] + "/_sandbox/messages",
            params={"phone": phone},
            timeout=10,
        ).json()
        if messages or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert messages, f"no SMS reached the seller within {SMS_WAIT_SECONDS} s"
    link = LINK.search(messages[0]["text"])
    assert link, messages[0]["text"]
    return link.group(1)


def record_posts(page):
    """Return a list that collects the URL of every POST the page sends."""
    posts = []

    def record(request):
        if request.method == "POST":
            posts.append(request.url)

    page.on("request", record)
    return posts


def error_box(page):
    box = page.get_by_test_id("error")
    box.wait_for()
    return box


def assert_nothing_personal(page, phone):
    html = page.content()
    assert phone not in html
    assert f"{phone[:3]}****{phone[-4:]}" not in html


def test_opt_out_page_confirms_before_posting(
    phone_page, stack, stack_database, screenshots
):
    page = phone_page
    phone = stack["opt_out_phone"]
    path = sms_link(stack, phone)
    token = path.removeprefix("/u/")
    posts = record_posts(page)

    page.goto(stack["hub_url"] + path)
    confirm = page.get_by_test_id("opt-out-confirm")
    confirm.wait_for()
    text = confirm.inner_text()
    assert "水电气暖视过户进度的短信通知" in text
    assert "订阅消息不受影响" in text
    assert "仅打开本页不会退订" in text
    assert_nothing_personal(page, phone)
    screenshots(page, "optout-1-confirm")
    assert posts == []
    assert link_choice(stack_database, token) == (None, None)

    page.get_by_test_id("confirm-opt-out").click()
    done = page.get_by_test_id("opt-out-done")
    done.wait_for()
    text = done.inner_text()
    assert "已退订短信通知" in text
    assert "在通知设置中开启短信通知" in text
    assert_nothing_personal(page, phone)
    screenshots(page, "optout-2-done")
    assert posts == [stack["hub_url"] + "/api/v1/notifications/sms-opt-out"]
    assert link_choice(stack_database, token) == (False, "link")

    # Pressing again after a reload, even twice in a row, changes nothing more.
    page.reload()
    page.get_by_test_id("confirm-opt-out").dblclick()
    page.get_by_test_id("opt-out-done").wait_for()
    assert len(posts) == 2
    assert link_choice(stack_database, token) == (False, "link")


def test_opt_out_page_unknown_token(phone_page, stack, screenshots):
    page = phone_page
    page.errors.allowed_statuses.add(404)
    path = sms_link(stack, stack["opt_out_phone"])
    token = path.removeprefix("/u/")
    mistyped = token[:-1] + ("0" if token[-1] != "0" else "1")

    for made_up in (mistyped, secrets.token_hex(12)):
        page.goto(f"{stack['hub_url']}/u/{made_up}")
        page.get_by_test_id("confirm-opt-out").click()
        box = error_box(page)
        assert box.get_attribute("data-code") == "opt_out_token_not_found"
        assert box.inner_text().startswith(NOT_FOUND_MESSAGE)
        assert page.get_by_test_id("confirm-opt-out").count() == 0
    screenshots(page, "optout-3-not-found")


@pytest.mark.parametrize(
    "path",
    ["/u/", "/u/not-a-token", "/u/0123456789abcdef0123456", "/u/%E0%A4%A/x"],
)
def test_opt_out_page_malformed_path(phone_page, stack, path):
    page = phone_page
    posts = record_posts(page)

    page.goto(stack["hub_url"] + path)

    box = error_box(page)
    assert box.get_attribute("data-code") == "opt_out_link_malformed"
    assert MALFORMED_MESSAGE in box.inner_text()
    assert page.get_by_test_id("confirm-opt-out").count() == 0
    assert posts == []
