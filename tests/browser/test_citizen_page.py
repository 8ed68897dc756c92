"""The citizen's page on a phone-sized screen.

The buyer from login to 办结 and 退件, the transfer checks before submitting,
the final meter readings and their dispute, a withdrawal, and the homes a
seller sold with their release notice.
"""

from io import BytesIO

import requests
import zxingcpp
from PIL import Image

WATER = "济南水务集团有限公司"
POWER = "国网济南供电公司"
GAS = "济南能源集团有限公司燃气"
HEAT = "济南能源集团有限公司热力"
ORGS = {"water": WATER, "power": POWER, "gas": GAS, "heat": HEAT}


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


def open_case(page, business_no):
    page.locator("#business_no").fill(business_no)
    page.get_by_test_id("open-case").locator("button[type=submit]").click()
    page.locator("[data-testid=account]").first.wait_for()


def test_one_code_pays_every_debt(phone_page, stack, screenshots):
    """Water and power owe; the seller pays power at the counter before the scan."""
    page = phone_page
    home = stack["debts_home"]
    log_in(page, stack, home["buyer"])
    open_case(page, home["business_no"])
    for org in (WATER, POWER):
        confirm_and_accept(page, org)

    pay_all = page.get_by_test_id("pay-all")
    assert pay_all.get_by_test_id("pay-all-total").inner_text() == "¥38.00"
    pay_all.get_by_test_id("pay-all-wechat").click()
    qr = pay_all.get_by_test_id("payment-qr")
    qr.wait_for()
    code_url = qr.get_attribute("data-code-url")
    assert decode_qr(page) == [code_url]
    shares = [
        item.inner_text() for item in pay_all.get_by_test_id("payment-share").all()
    ]
    assert shares == [f"{WATER} ¥15.00", f"{POWER} ¥23.00"]
    screenshots(page, "citizen-12-pay-all")

    power = next(a for a in home["accounts"] if a["utility"] == "power")
    counter = requests.post(
        stack["utility_sim_url"] + "/_sim/counter-payments",
        json={
            "utility": "power",
            "account_no": power["account_no"],
            "amount_fen": 2300,
        },
        timeout=10,
    )
    assert counter.status_code == 200, counter.text
    paid = requests.post(
        stack["wechatpay_url"] + "/_sandbox/pay",
        json={"code_url": code_url},
        timeout=10,
    )
    assert paid.status_code == 200, paid.text

    assert "¥38.00" in pay_all.get_by_test_id("payment-paid").inner_text()
    refund = pay_all.locator("[data-testid=payment-refund][data-status=succeeded]")
    refund.wait_for(timeout=30_000)
    assert refund.inner_text() == "¥23.00 已原路退回：欠费已在服务机构结清"
    for org in (WATER, POWER):
        page.locator(
            f"[data-testid=arrears-row][data-org='{org}'][data-state=clear]"
        ).wait_for()
    screenshots(page, "citizen-13-pay-all-refund")


def test_double_click_sends_one_request(phone_page, stack):
    page = phone_page
    home = stack["double_click_home"]
    sent = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.url.split("/api/v1")[-1])
            if request.method == "POST"
            else None
        ),
    )
    log_in(page, stack, home["buyer"])
    open_case(page, home["business_no"])
    account = page.locator(f"[data-testid=account][data-org='{WATER}']")

    account.get_by_test_id("confirm").dblclick()
    account.get_by_text("✓ 已确认户号信息").wait_for()
    account.get_by_test_id("read-agreement").click()
    dialog = page.locator(f"dialog#agreement[open][data-org='{WATER}']")
    dialog.locator("#agreement-read").check()
    dialog.get_by_test_id("accept-agreement").click()
    account.get_by_text("✓ 已同意过户协议").wait_for()
    page.get_by_test_id("submit-case").dblclick()
    page.locator("[data-testid=transfer-progress]").first.wait_for()

    assert sum(path.endswith("/confirmation") for path in sent) == 1
    assert sum(path.endswith("/submission") for path in sent) == 1
    assert page.get_by_test_id("case-status").inner_text() == "已提交，待登簿"
    assert page.locator(".error").count() == 0


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


def account_card(page, org):
    return page.locator(f"[data-testid=account][data-org='{org}']")


def check_card(page, org, state=None):
    selector = f"[data-testid=check][data-org='{org}']"
    if state:
        selector += f"[data-state={state}]"
    return page.locator(selector)


def post_sim_account(stack, account):
    response = requests.post(
        stack["utility_sim_url"] + "/_sim/accounts", json=[account], timeout=10
    )
    response.raise_for_status()


def sim_reading(stack, account_no):
    """Return the reading the utility simulator gave for an account."""
    url = stack["utility_sim_url"] + "/_sim/meter-readings"
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    (reading,) = [
        r for r in response.json()["readings"] if r["account_no"] == account_no
    ]
    return reading


def meter_photo():
    buffer = BytesIO()
    Image.new("RGB", (80, 60), (30, 80, 150)).save(buffer, "PNG")
    return buffer.getvalue()


def send_dispute(page, note):
    dialog = page.locator("dialog#dispute[open]")
    dialog.locator("#dispute-note").fill(note)
    dialog.locator("#dispute-photo").set_input_files(
        files=[{"name": "meter.png", "mimeType": "image/png", "buffer": meter_photo()}]
    )
    dialog.get_by_test_id("send-dispute").click()
    return dialog


def test_checks_hold_submission_while_blocked(phone_page, stack, screenshots):
    page = phone_page
    page.errors.allowed_statuses.add(409)
    home = stack["checked_home"]
    log_in(page, stack, home["buyer"])
    open_case(page, home["business_no"])
    for org in (WATER, POWER, HEAT):
        confirm_and_accept(page, org)

    water = check_card(page, WATER, "action_needed")
    water.wait_for()
    arrears = water.locator("[data-testid=check-item][data-item=arrears]")
    assert arrears.get_attribute("data-blocking") == "true"
    assert arrears.get_attribute("data-stops") == "false"
    assert (
        arrears.get_by_test_id("check-advice").inner_text()
        == "欠费 ¥15.00，请在本页扫码缴清后再过户。"
    )
    debit = check_card(page, POWER).locator("[data-item=direct_debit]")
    assert debit.get_attribute("data-stops") == "false"
    assert "需处理" in debit.inner_text()
    assert "解除代扣" in debit.inner_text()
    assert check_card(page, HEAT).get_attribute("data-state") == "unavailable"
    assert page.get_by_test_id("submit-case").is_enabled()

    # The heat utility's system comes back, and it has blocked the account.
    post_sim_account(
        stack,
        {
            **home["heat_account"],
            "transfer_check_down": False,
            "block_reason": "供热计量纠纷处理中",
        },
    )
    page.get_by_test_id("submit-case").click()

    alert = page.get_by_test_id("case-message").get_by_role("alert")
    alert.wait_for()
    assert alert.get_attribute("data-code") == "transfer_blocked"
    assert "暂停过户或已销户" in alert.inner_text()
    block = check_card(page, HEAT, "action_needed").locator(
        "[data-testid=check-item][data-item=block]"
    )
    block.wait_for()
    assert block.get_attribute("data-stops") == "true"
    assert "须先处理，暂不能提交" in block.inner_text()
    assert "供热计量纠纷处理中" in block.get_by_test_id("check-advice").inner_text()
    assert page.get_by_test_id("submit-case").is_disabled()
    assert "处理完成前不能提交" in page.get_by_test_id("submit-blocked").inner_text()
    assert page.get_by_test_id("case-status").inner_text() == "待提交"
    screenshots(page, "citizen-8-checks")

    # Cleared at the utility: checking again lets the case go.
    post_sim_account(stack, {**home["heat_account"], "transfer_check_down": False})
    page.get_by_test_id("recheck").click()
    check_card(page, HEAT, "ok").wait_for()
    assert page.get_by_test_id("submit-case").is_enabled()
    assert page.get_by_test_id("submit-blocked").count() == 0


def test_reading_shown_and_disputed_once(
    phone_page, second_phone_page, stack, screenshots
):
    home = stack["read_home"]
    buyer_page, seller_page = phone_page, second_phone_page
    seller_page.errors.allowed_statuses.add(409)
    # The seller's page is open before the buyer disputes.
    log_in(seller_page, stack, home["sellers"][0])
    sold_water = seller_page.locator(
        f"[data-testid=sold-case][data-business='{home['business_no']}'] "
        f"[data-testid=sold-transfer][data-org='{WATER}']"
    )
    sold_water.get_by_test_id("dispute-reading").wait_for()

    log_in(buyer_page, stack, home["buyer"])
    open_case(buyer_page, home["business_no"])
    for account in home["accounts"]:
        simulated = sim_reading(stack, account["account_no"])
        card = account_card(buyer_page, ORGS[account["utility"]])
        assert card.get_by_test_id("reading-value").inner_text() == simulated["value"]
        shown = card.get_by_test_id("final-reading").inner_text()
        assert f"{simulated['value']} {simulated['unit']}" in shown
        assert "远程抄表" in shown
        read_at = card.get_by_test_id("reading-time").inner_text()
        assert read_at == simulated["read_at"].replace("T", " ")[:16]
    water = account_card(buyer_page, WATER)
    water.get_by_test_id("dispute-reading").click()
    dialog = buyer_page.locator("dialog#dispute[open]")
    assert "每个读数只能提出一次异议" in dialog.inner_text()
    send_dispute(buyer_page, "交房时水表读数为 80，此读数偏高")

    result = buyer_page.get_by_test_id("dispute-result")
    result.wait_for()
    assert "每个读数只能提出一次异议" in result.inner_text()
    water.get_by_test_id("reading-disputed").wait_for()
    assert water.get_by_test_id("dispute-reading").count() == 0
    heat = account_card(buyer_page, HEAT)
    assert heat.get_by_test_id("dispute-reading").count() == 1
    screenshots(buyer_page, "citizen-9-reading")

    # The seller's page still offers it, and the hub refuses a second dispute.
    sold_water.get_by_test_id("dispute-reading").click()
    dialog = send_dispute(seller_page, "交房时读数与此一致，请勿调整")
    error = dialog.get_by_test_id("dispute-error")
    error.wait_for()
    assert error.get_attribute("data-code") == "reading_disputed"
    assert "每个读数只能提出一次" in error.inner_text()
    sold_water.get_by_test_id("reading-disputed").wait_for()
    screenshots(seller_page, "citizen-9b-reading-refused")


def test_withdrawn_case_shows_reason(phone_page, stack, screenshots):
    page = phone_page
    home = stack["withdrawn_home"]
    log_in(page, stack, home["buyer"])
    open_case(page, home["business_no"])
    confirm_and_accept(page, WATER)
    page.get_by_test_id("submit-case").click()
    page.locator("[data-testid=transfer-progress]").first.wait_for()

    page.get_by_test_id("withdraw-case").click()
    dialog = page.locator("dialog#withdrawal[open]")
    consequences = dialog.get_by_test_id("withdrawal-consequences").inner_text()
    assert "不再推送给服务机构" in consequences
    assert "缴费订单将关闭" in consequences
    assert "原路退回" in consequences
    dialog.locator("#withdraw-reason").fill("买卖双方协商解除合同")
    screenshots(page, "citizen-10a-withdraw-confirm")
    dialog.get_by_test_id("confirm-withdrawal").click()

    progress = page.locator(
        f"[data-testid=transfer-progress][data-org='{WATER}'][data-status=withdrawn]"
    )
    progress.wait_for()
    assert page.get_by_test_id("case-status").inner_text() == "已撤回"
    assert progress.get_by_test_id("transfer-status").inner_text() == "已撤回"
    last = progress.locator("ol.timeline > li").last
    assert "已撤回" in last.inner_text()
    assert "申请人撤回联办：买卖双方协商解除合同" in last.inner_text()
    assert page.get_by_test_id("withdraw-case").count() == 0
    assert page.get_by_test_id("submit-case").count() == 0
    screenshots(page, "citizen-10-withdrawn")


def test_seller_sees_sold_home_with_proof(phone_page, stack, screenshots):
    page = phone_page
    home = stack["sold_home"]
    buyer = home["buyer"]
    log_in(page, stack, home["sellers"][0])

    sale = page.locator(
        f"[data-testid=sold-case][data-business='{home['business_no']}']"
    )
    sale.wait_for()
    assert sale.get_attribute("data-status") == "closed"
    shown_buyers = sale.get_by_test_id("sold-buyers").inner_text()
    assert shown_buyers != buyer["name"]
    assert shown_buyers[0] == buyer["name"][0]
    assert "*" in shown_buyers
    assert buyer["name"] not in page.get_by_test_id("sold-homes").inner_text()
    assert buyer["id_number"] not in page.content()
    assert sale.get_by_test_id("release-notice").is_visible()
    for account in home["accounts"]:
        org = ORGS[account["utility"]]
        simulated = sim_reading(stack, account["account_no"])
        row = sale.locator(f"[data-testid=sold-transfer][data-org='{org}']")
        assert row.get_attribute("data-status") == "completed"
        assert account["account_no"] in row.inner_text()
        assert row.get_by_test_id("reading-value").inner_text() == simulated["value"]
        completed = row.get_by_test_id("completed-at").inner_text()
        assert completed.startswith("办结时间 20")
        item = sale.locator(f"[data-testid=release-item][data-org='{org}']")
        assert f"{completed.removeprefix('办结时间 ')} 办结" in item.inner_text()
        assert (
            item.get_by_test_id("release-reading").inner_text()
            == f"过户日读数 {simulated['value']} {simulated['unit']}"
        )
    screenshots(page, "citizen-11-sales")

    power = sale.locator(f"[data-testid=sold-transfer][data-org='{POWER}']")
    power.get_by_test_id("dispute-reading").click()
    send_dispute(page, "交房时电表读数为 3000 千瓦时")
    message = page.get_by_test_id("page-message")
    message.wait_for()
    assert "已提交对国网济南供电公司户号" in message.inner_text()
    power.get_by_test_id("reading-disputed").wait_for()
    release_power = sale.locator(f"[data-testid=release-item][data-org='{POWER}']")
    assert "（已提出异议）" in release_power.inner_text()
