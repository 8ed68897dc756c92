"""The staff console at desktop size: login, lookup, the utility desk, cases.

Each role gets only the tabs whose endpoints accept it.
"""

NEW_PASSWORD = "Console-test-2026"


def log_in(page, stack, login):
    page.goto(stack["hub_url"] + "/console/")
    form = page.get_by_test_id("staff-login")
    form.locator("#username").fill(login["username"])
    form.locator("#password").fill(login["password"])
    page.get_by_test_id("login").click()


def tab_keys(page):
    """Return the keys of the console's tabs, in order."""
    page.get_by_test_id("staff-name").wait_for()
    return page.locator("#tabs button").evaluate_all(
        "buttons => buttons.map((button) => button.dataset.tab)"
    )


def test_hotline_lookup_is_masked_and_needs_reason(desktop_page, stack, screenshots):
    page = desktop_page
    home = stack["returned_home"]
    login = stack["staff"]["service"]
    page.errors.allowed_statuses.add(401)
    log_in(page, stack, {"username": login["username"], "password": "wrong-password"})
    alert = page.get_by_test_id("staff-login").get_by_role("alert")
    alert.wait_for()
    assert alert.get_attribute("data-code") == "login_failed"
    assert "用户名或密码不正确" in alert.inner_text()

    log_in(page, stack, login)

    change = page.get_by_test_id("password-change")
    change.wait_for()
    screenshots(page, "console-1-password-change")
    change.locator("#new_password").fill(NEW_PASSWORD)
    change.locator("#new_password_again").fill(NEW_PASSWORD)
    page.get_by_test_id("change-password").click()

    form = page.get_by_test_id("lookup-form")
    form.wait_for()
    assert page.get_by_test_id("staff-name").inner_text() == "客服测试员 · 客服人员"
    assert tab_keys(page) == ["lookup"]
    lookups = []
    page.on(
        "request",
        lambda request: "/lookup/" in request.url and lookups.append(request.url),
    )
    form.locator("#criterion").select_option("business_no")
    form.locator("#value").fill(home["business_no"])
    page.get_by_test_id("lookup-submit").click()
    prompt = page.get_by_test_id("lookup-prompt")
    prompt.wait_for()
    assert "请填写查询事由" in prompt.inner_text()
    form.locator("#reason").fill("核对")
    page.get_by_test_id("lookup-submit").click()
    assert "至少 4 个字" in prompt.inner_text()
    assert lookups == []
    screenshots(page, "console-2-reason-required")

    form.locator("#reason").fill("12345工单核对退件原因")
    page.get_by_test_id("lookup-submit").click()
    row = page.get_by_test_id("lookup-row")
    row.wait_for()
    assert row.count() == 1
    assert len(lookups) == 1
    buyer = home["buyer"]
    seller = home["sellers"][0]
    owners = row.get_by_test_id("owners").inner_text()
    assert owners.startswith(buyer["name"][0])
    assert buyer["name"] not in owners
    assert buyer["id_number"][:6] in owners
    assert buyer["id_number"] not in owners
    assert seller["id_number"] not in row.get_by_test_id("previous-owners").inner_text()

    row.click()
    detail = page.get_by_test_id("case-detail")
    detail.wait_for()
    transfer = detail.get_by_test_id("detail-transfer")
    assert "退件" in transfer.inner_text()
    assert "原户主银行代扣未解除" in transfer.inner_text()
    content = page.content()
    assert buyer["id_number"] not in content
    assert seller["id_number"] not in content
    screenshots(page, "console-3-lookup")


def test_utility_desk_shows_returns_and_reviews(desktop_page, stack, screenshots):
    page = desktop_page
    log_in(page, stack, stack["staff"]["utility"])

    row = page.get_by_test_id("returned-row").filter(
        has_text=stack["returned_home"]["business_no"]
    )
    row.wait_for()
    assert tab_keys(page) == ["returned", "reviews"]
    assert "原户主银行代扣未解除" in row.inner_text()
    row.click()
    page.locator("#reopen-note").wait_for()
    screenshots(page, "console-4-returned")

    page.locator("[data-tab=reviews]").click()
    item = page.get_by_test_id("review-item").first
    item.wait_for()
    assert stack["review_home"]["location"] in item.inner_text()
    assert "不是本房屋的权利人" in item.inner_text()
    item.get_by_test_id("reject").click()
    assert "必须填写说明" in item.get_by_role("alert").inner_text()
    screenshots(page, "console-5-reviews")

    item.get_by_test_id("link").click()
    page.get_by_text("没有待核对的户号").wait_for()


def test_agent_sees_case_list(desktop_page, stack, screenshots):
    page = desktop_page
    log_in(page, stack, stack["staff"]["agent"])
    row = page.get_by_test_id("case-row")
    row.wait_for()
    assert tab_keys(page) == ["cases"]
    assert row.count() == 1
    assert stack["review_home"]["business_no"] in row.inner_text()
    row.click()
    detail = page.get_by_test_id("case-detail")
    detail.wait_for()
    water = detail.get_by_test_id("detail-transfer").filter(
        has_text="济南水务集团有限公司"
    )
    assert water.count() == 1
    screenshots(page, "console-6-agent")
