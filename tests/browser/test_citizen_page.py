"""The buyer's page on a phone-sized screen, from login to 办结 and 退件."""

from io import BytesIO

import requests
import zxingcpp
from PIL import Image

WATER = "济南水务集团有限公司"
POWER = "国网济南供电公司"


def log_in(page, stack, person):
    page.goto(stack["hub_url"] + "/app/")
    form = page.get_by_test_id("sandbox-login")
    form.locator("#name").fill(person["name"])
    form.locator("#id_type").select_option(person["id_type"])
    form.locator("#id_number").fill(person["id_number"])
    form.locator("#phone").fill(person["phone"])
    form.locator("button[type=submit]").click()
    page.get_by_test_id("open-case").wait_for()


def confirm_and_accept(page, org):
    account = page.locator(f"[data-testid=account][data-org='{org}']")
    account.get_by_test_id("confirm").click()
    account.get_by_text("✓ 已确认户号信息").wait_for()
    account.get_by_test_id("read-agreement").click()
    # The dialog is filled after the agreement loads; wait for this one.
    dialog = page.locator(f"dialog#agreement[open][data-org='{org}']")
    dialog.wait_for()
    assert dialog.get_by_test_id("agreement-body").inner_text().strip()
    accept = dialog.get_by_test_id("accept-agreement")
    assert accept.is_disabled()
    dialog.locator("#agreement-read").check()
    accept.click()
    account.get_by_text("✓ 已同意过户协议").wait_for()


def decode_qr(page):
    png = page.get_by_test_id("payment-qr").screenshot()
    return [result.text for result in zxingcpp.read_barcodes(Image.open(BytesIO(png)))]


def test_citizen_walks_case_to_final_reports(phone_page, stack, hub, screenshots):
    page = phone_page
    home = stack["citizen_home"]
    page.goto(stack["hub_url"] + "/app/")
    page.get_by_test_id("sandbox-login").wait_for()
    screenshots(page, "citizen-1-login")

    log_in(page, stack, home["buyer"])
    assert page.get_by_test_id("display-name").inner_text() == home["buyer"]["name"]
    page.locator("#business_no").fill(home["business_no"])
    page.get_by_test_id("open-case").locator("button[type=submit]").click()
    page.locator("[data-testid=account]").first.wait_for()
    assert page.locator("[data-testid=account]").count() == 2
    assert page.get_by_test_id("case-status").inner_text() == "待提交"
    assert page.get_by_test_id("submit-case").is_disabled()
    screenshots(page, "citizen-2-case")

    for org in (WATER, POWER):
        confirm_and_accept(page, org)
    assert page.get_by_test_id("submit-case").is_enabled()

    water = page.locator(f"[data-testid=arrears-row][data-org='{WATER}']")
    assert water.get_attribute("data-state") == "owed"
    assert water.get_by_test_id("arrears-amount").inner_text() == "¥42.30"
    water.get_by_test_id("pay-wechat").click()
    qr = page.get_by_test_id("payment-qr")
    qr.wait_for()
    code_url = qr.get_attribute("data-code-url")
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    assert decode_qr(page) == [code_url]
    expiry = page.get_by_test_id("payment-expiry")
    page.wait_for_function(
        "element => element.textContent.includes('剩余')", arg=expiry.element_handle()
    )
    assert "二维码有效期至" in expiry.inner_text()
    screenshots(page, "citizen-3-payment-qr")

    paid = requests.post(
        stack["wechatpay_url"] + "/_sandbox/pay",
        json={"code_url": code_url},
        timeout=10,
    )
    assert paid.status_code == 200, paid.text
    assert "¥42.30" in page.get_by_test_id("payment-paid").inner_text()
    page.locator(
        f"[data-testid=arrears-row][data-org='{WATER}'][data-state=clear]"
    ).wait_for()
    screenshots(page, "citizen-4-paid")

    page.get_by_test_id("submit-case").click()
    page.locator("[data-testid=transfer-progress]").first.wait_for()
    assert page.get_by_test_id("case-status").inner_text() == "已提交，待登簿"

    hub.put_business(home["business_no"], home["completed_payload"])
    done = page.locator(
        f"[data-testid=transfer-progress][data-org='{WATER}'][data-status=completed]"
    )
    done.wait_for(timeout=30_000)
    returned = page.locator(
        f"[data-testid=transfer-progress][data-org='{POWER}'][data-status=returned]"
    )
    returned.wait_for(timeout=30_000)
    assert done.get_by_test_id("transfer-status").inner_text() == "办结"
    assert returned.get_by_test_id("transfer-status").inner_text() == "退件"
    reason = returned.get_by_test_id("return-reason").inner_text()
    assert reason == "退件原因：原户主银行代扣未解除"
    page.get_by_text("已办结").first.wait_for()
    screenshots(page, "citizen-5-timeline")


def test_citizen_sees_chinese_error_for_unknown_business(
    phone_page, stack, screenshots
):
    page = phone_page
    page.errors.allowed_statuses.add(404)
    log_in(page, stack, stack["returned_home"]["buyer"])
    page.locator("#business_no").fill("NOSUCH0001")
    page.get_by_test_id("open-case").locator("button[type=submit]").click()
    alert = page.get_by_test_id("open-case").get_by_role("alert")
    alert.wait_for()
    assert alert.get_attribute("data-code") == "business_not_found"
    assert "未找到该登记业务号" in alert.inner_text()
    assert "请求编号" in alert.inner_text()
    screenshots(page, "citizen-6-error")


def test_citizen_asks_review_of_unplaced_account(phone_page, stack, screenshots):
    page = phone_page
    page.errors.allowed_statuses.add(409)
    home = stack["unlisted_home"]
    log_in(page, stack, home["buyer"])
    page.locator("#business_no").fill(home["business_no"])
    page.get_by_test_id("open-case").locator("button[type=submit]").click()
    form = page.get_by_test_id("add-account")
    form.wait_for()
    assert page.locator("[data-testid=account]").count() == 1

    form.locator("#service_org").fill("济南能源集团有限公司燃气")
    form.locator("#account_no").fill(home["gas_account_no"])
    form.locator("button[type=submit]").click()
    alert = form.get_by_role("alert")
    alert.wait_for()
    assert alert.get_attribute("data-code") == "account_holder_mismatch"
    assert "不是本房屋的权利人" in alert.inner_text()
    screenshots(page, "citizen-7-unplaced-account")

    form.get_by_role("button", name="请服务机构人工核对").click()
    review = page.get_by_test_id("case-summary").get_by_text(home["gas_account_no"])
    review.wait_for()
    assert "待服务机构核对" in review.inner_text()
