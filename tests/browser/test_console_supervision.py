"""The supervision report on the staff console, checked against the API.

The stack process seeds completed, late, returned and open transfers in the
current month (seed_supervision), so the figures on the page are not zeros.
Other browser tests add transfers too, so each check compares the page with
the API's response for the same filter rather than with fixed totals, except
for the gas company, whose two transfers only the seed makes.
"""

from pathlib import Path

from tests.browser.test_console import log_in, tab_keys

REPORT = "/supervision/transfers"
# The API caps a page at 100 rows.
API_PAGE_SIZE = 100
TABLE_PAGE_SIZE = 20
GAS = "济南能源集团有限公司燃气"
POWER = "国网济南供电公司"


def percent(part, whole):
    """Format a share as the page does: one decimal and a percent sign."""
    return f"{100 * part / whole:.1f}%" if whole else None


def expected_cells(row):
    """Return the table cells that the page shows for one API row."""
    reasons = "；".join(
        f"{item['reason'] or '未填写原因'} {item['count']}"
        for item in row["returned_by_reason"]
    )
    median = row["median_hours_to_completion"]
    share = row["linked_account_share"]
    return {
        "month": row["month"],
        "service_org": row["service_org"],
        "service_days": str(row["service_days"]),
        "received": str(row["received"]),
        "completed": str(row["completed"]),
        "completed_on_time": str(row["completed_on_time"]),
        "on_time_rate": percent(row["completed_on_time"], row["completed"]) or "—",
        "returned": str(row["returned"]),
        "returned_by_reason": reasons or "—",
        "overdue_open": str(row["overdue_open"]),
        "median_hours_to_completion": "—" if median is None else f"{median:.2f}",
        "linked_account_share": "—" if share is None else percent(share, 1),
    }


def shown_cells(row):
    cells = row.locator("td")
    return {
        cells.nth(index).get_attribute("data-field"): cells.nth(index).inner_text()
        for index in range(cells.count())
    }


def every_row(hub, filters):
    rows = []
    page = 1
    while True:
        found = hub.call(
            "GET", f"{REPORT}?{filters}&page={page}&page_size={API_PAGE_SIZE}"
        )
        rows += found["items"]
        if not found["items"] or len(rows) >= found["total"]:
            return rows
        page += 1


def totals_by_utility(rows):
    totals = {}
    for row in rows:
        total = totals.setdefault(
            row["utility"], {"service_org": row["service_org"], "done": 0, "on": 0}
        )
        total["done"] += row["completed"]
        total["on"] += row["completed_on_time"]
    return totals


def totals_by_reason(rows):
    counts = {}
    for row in rows:
        for item in row["returned_by_reason"]:
            reason = item["reason"] or "未填写原因"
            counts[reason] = counts.get(reason, 0) + item["count"]
    return counts


def supervisor_api(hub, stack):
    login = stack["staff"]["supervisor"]
    hub.staff_login(login["username"], login["password"])
    return hub


def submit_filters(page, from_month=None, to_month=None, utility=None):
    form = page.get_by_test_id("report-form")
    if from_month:
        form.locator("#from_month").fill(from_month)
    if to_month:
        form.locator("#to_month").fill(to_month)
    if utility is not None:
        form.locator("#report-utility").select_option(utility)
    page.get_by_test_id("report-submit").click()


def test_supervisor_report_matches_api(desktop_page, stack, hub, screenshots):
    page = desktop_page
    log_in(page, stack, stack["staff"]["supervisor"])
    rows = page.get_by_test_id("report-row")
    rows.first.wait_for()
    assert page.get_by_test_id("staff-name").inner_text().endswith("· 监督人员")
    assert tab_keys(page) == ["supervision"]

    api = supervisor_api(hub, stack)
    from_month = page.locator("#from_month").input_value()
    to_month = page.locator("#to_month").input_value()
    filters = f"from_month={from_month}&to_month={to_month}"
    first_page = api.call(
        "GET", f"{REPORT}?{filters}&page=1&page_size={TABLE_PAGE_SIZE}"
    )
    report = every_row(api, filters)
    assert len(report) == first_page["total"]
    assert sum(row["completed"] for row in report) >= 4
    assert sum(row["returned"] for row in report) >= 2

    assert rows.count() == len(first_page["items"])
    for index, expected in enumerate(first_page["items"]):
        assert rows.nth(index).get_attribute("data-utility") == expected["utility"]
        assert shown_cells(rows.nth(index)) == expected_cells(expected)
    table = page.get_by_test_id("report-table").inner_text()
    assert f"共 {first_page['total']} 条" in table

    on_time = page.get_by_test_id("chart-on-time")
    for code, total in totals_by_utility(report).items():
        bar = on_time.locator(f"[data-testid=on-time-bar][data-utility='{code}']")
        if total["done"]:
            label = bar.get_by_test_id("on-time-label").text_content()
            assert label == percent(total["on"], total["done"]), code
        else:
            assert bar.text_content().endswith("暂无办结"), code
    gas = on_time.locator("[data-testid=on-time-bar][data-utility=gas]")
    assert gas.get_by_test_id("on-time-label").text_content() == "50.0%"
    summary = on_time.locator("svg desc").text_content()
    assert f"{GAS} 50.0%（按时办结 1 件，办结 2 件）" in summary

    reasons = page.get_by_test_id("chart-reasons").get_by_test_id("reason-bar")
    shown_reasons = {}
    for index in range(reasons.count()):
        bar = reasons.nth(index)
        # The drawn name may be cut short; its <title> contains the whole reason.
        name = bar.get_by_test_id("reason-name").locator("title").text_content()
        shown_reasons[name] = bar.get_by_test_id("reason-count").text_content()
    expected_reasons = totals_by_reason(report)
    assert shown_reasons == {
        reason: f"{count} 件" for reason, count in expected_reasons.items()
    }
    assert "原户主银行代扣未解除" in shown_reasons
    assert "账户仍有欠费未结清" in shown_reasons

    month = page.get_by_test_id("chart-monthly").locator(
        f"[data-testid=month-group][data-month='{to_month}']"
    )
    for series in ("received", "completed", "returned"):
        value = sum(row[series] for row in report if row["month"] == to_month)
        label = month.locator(f"text[data-series={series}]").text_content()
        assert label == str(value), series
    screenshots(page, "console-7-supervision")

    with page.expect_download() as started:
        page.get_by_test_id("download-csv").click()
    download = started.value
    downloaded = Path(download.path()).read_bytes()
    answer = api.session.get(
        f"{api.api}{REPORT}?{filters}&format=csv",
        headers={"Authorization": f"Bearer {api.token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert downloaded == answer.content
    name = f"transfers-report-{from_month}-{to_month}.csv"
    assert download.suggested_filename == name

    # On a laptop and on a phone the page stays within the window's width;
    # only the table scrolls sideways inside its box.
    for width, shot in ((1024, "console-8-supervision-1024"), (390, None)):
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, (width, overflow)
        if shot:
            screenshots(page, shot)


def test_supervision_report_filters_and_errors(desktop_page, stack, hub):
    page = desktop_page
    page.errors.allowed_statuses.add(422)
    log_in(page, stack, stack["staff"]["supervisor"])
    page.get_by_test_id("report-row").first.wait_for()
    to_month = page.locator("#to_month").input_value()

    submit_filters(page, utility="power")
    heading = page.get_by_test_id("chart-monthly").locator("h3")
    heading.filter(has_text=f"（{POWER}）").wait_for()
    utilities = page.get_by_test_id("report-row").evaluate_all(
        "rows => rows.map((row) => row.dataset.utility)"
    )
    assert set(utilities) == {"power"}
    api = supervisor_api(hub, stack)
    month_filter = f"from_month={to_month}&to_month={to_month}&utility=power"
    [power] = api.call("GET", f"{REPORT}?{month_filter}")["items"]
    row = page.locator(f"[data-testid=report-row][data-month='{to_month}']")
    assert shown_cells(row) == expected_cells(power)

    submit_filters(page, from_month="2025-05", to_month="2025-04", utility="")
    alert = page.get_by_test_id("report-error").get_by_role("alert")
    alert.wait_for()
    assert alert.get_attribute("data-code") == "month_range_invalid"
    assert "起始月份不能晚于结束月份" in alert.inner_text()
    assert page.get_by_test_id("report-row").count() == 0

    submit_filters(page, from_month="2024-01", to_month="2024-03")
    empty = page.get_by_test_id("report-empty")
    empty.wait_for()
    assert "所选月份没有过户数据" in empty.inner_text()
    assert page.get_by_test_id("report-charts").locator("svg").count() == 0
    quiet = api.call("GET", f"{REPORT}?from_month=2024-01&to_month=2024-03")
    assert page.get_by_test_id("report-row").count() == min(
        quiet["total"], TABLE_PAGE_SIZE
    )


def test_admin_sees_lookup_and_report(desktop_page, stack):
    page = desktop_page
    log_in(page, stack, stack["staff"]["admin"])
    page.get_by_test_id("lookup-form").wait_for()
    assert page.get_by_test_id("staff-name").inner_text().endswith("· 平台管理员")
    assert tab_keys(page) == ["lookup", "supervision"]

    page.locator("[data-tab=supervision]").click()
    page.get_by_test_id("report-row").first.wait_for()
    assert page.get_by_test_id("chart-on-time").locator("svg").count() == 1
