// The supervision report for supervisors and administrators: each utility's
// transfers by month from GET /supervision/transfers, as charts, a table and
// a CSV download.

import { query } from "/static/shared/api.js";
import { errorBox, h, pager, show } from "/static/shared/dom.js";
import { monthlyChart, onTimeChart, percent, reasonChart } from "/static/console/charts.js";

const REPORT_PATH = "/supervision/transfers";
// The API caps a page at 100 rows, and the charts need every row of the range.
const FETCH_PAGE_SIZE = 100;
const TABLE_PAGE_SIZE = 20;
const DEFAULT_MONTHS = 12;
// Table columns: the row's key, the heading, and the heading's tooltip.
const COLUMNS = [
  ["month", "月份", "服务机构受理过户的月份"],
  ["service_org", "服务机构"],
  ["service_days", "时限（工作日）", "办理时限，按工作日计"],
  ["received", "受理", "当月受理的过户件数"],
  ["completed", "办结"],
  ["completed_on_time", "按时办结", "在办理时限内办结的件数"],
  ["on_time_rate", "按时率", "按时办结件数 ÷ 办结件数"],
  ["returned", "退件"],
  ["returned_by_reason", "退件原因"],
  ["overdue_open", "超期未办结", "尚未办结且已超过办理时限的件数"],
  ["median_hours_to_completion", "用时中位数（小时）", "从登簿到办结的用时中位数"],
  ["linked_account_share", "户号关联率", "服务机构现有户号中已关联不动产单元代码的比例"],
];

const TEXT_COLUMNS = new Set(["month", "service_org", "returned_by_reason"]);

// Utility codes and names seen in unfiltered reports, for the filter's choices.
const knownUtilities = new Map();

// Return the current month in China time as "YYYY-MM", shifted by `offset` months.
function chinaMonth(offset = 0) {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: "Asia/Shanghai", year: "numeric", month: "numeric" }).formatToParts(new Date());
  const year = Number(parts.find((part) => part.type === "year").value);
  const month = Number(parts.find((part) => part.type === "month").value);
  const index = year * 12 + month - 1 + offset;
  return `${Math.floor(index / 12)}-${String((index % 12) + 1).padStart(2, "0")}`;
}

// Fetch every row of the report for `filters`, page by page.
async function fetchReport(session, filters) {
  const rows = [];
  for (let page = 1; ; page += 1) {
    const found = await session.call("GET", `${REPORT_PATH}${query({ ...filters, page, page_size: FETCH_PAGE_SIZE })}`);
    rows.push(...found.items);
    if (!found.items.length || rows.length >= found.total) return rows;
  }
}

async function downloadCsv(session, filters) {
  const response = await session.call("GET", `${REPORT_PATH}${query({ ...filters, format: "csv" })}`, undefined, { raw: true });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: `transfers-report-${filters.from_month}-${filters.to_month}.csv`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // Chromium reads the blob after the click returns, so the URL is kept a little longer.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function showSupervision(main, session) {
  const errorSlot = h("div", { "data-testid": "report-error" });
  const charts = h("section", { class: "charts", "data-testid": "report-charts" });
  const table = h("section", { "data-testid": "report-table" });
  const utilitySelect = h("select", { id: "report-utility" });
  const download = h("button", { type: "button", class: "secondary", "data-testid": "download-csv", disabled: true }, "下载 CSV");
  let loadedFilters = null;
  // Only the latest request may draw, when an earlier one is still in flight.
  let latestLoad = 0;

  const form = filterForm(utilitySelect, download);

  const load = async () => {
    show(errorSlot);
    const filters = {
      from_month: form.querySelector("#from_month").value,
      to_month: form.querySelector("#to_month").value,
      utility: utilitySelect.value,
    };
    if (!filters.from_month || !filters.to_month) {
      show(errorSlot, errorBox({ message: "请选择起始月份和结束月份。", code: "month_missing" }));
      return;
    }

    download.disabled = true;
    show(charts, h("p", { class: "muted" }, "正在加载…"));
    show(table);
    latestLoad += 1;
    const thisLoad = latestLoad;
    let rows;
    try {
      rows = await fetchReport(session, filters);
    } catch (failure) {
      if (thisLoad !== latestLoad) return;
      show(charts);
      show(errorSlot, errorBox(failure));
      return;
    }
    if (thisLoad !== latestLoad) return;

    loadedFilters = filters;
    if (!filters.utility) rememberUtilities(rows, utilitySelect);
    renderCharts(charts, rows, filters.utility);
    renderTable(table, rows, 1);
    download.disabled = false;
  };

  download.addEventListener("click", async () => {
    show(errorSlot);
    try {
      await downloadCsv(session, loadedFilters);
    } catch (failure) {
      show(errorSlot, errorBox(failure));
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });

  show(
    main,
    h("h2", {}, "监管报表"),
    h(
      "p",
      { class: "muted" },
      "按服务机构和月份统计过户办理情况。过户计入服务机构受理（收到推送或领取）的月份；按时办结率为按时办结件数除以办结件数。",
    ),
    form,
    errorSlot,
    charts,
    table,
  );
  load();
}

// Build the filter form, with the range set to the API's default: the last
// DEFAULT_MONTHS months up to the current one.
function filterForm(utilitySelect, download) {
  fillUtilities(utilitySelect);
  return h(
    "form",
    { class: "card report-filters", "data-testid": "report-form" },
    h("div", {}, h("label", { for: "from_month" }, "起始月份"), h("input", { id: "from_month", type: "month", required: true, value: chinaMonth(1 - DEFAULT_MONTHS) })),
    h("div", {}, h("label", { for: "to_month" }, "结束月份"), h("input", { id: "to_month", type: "month", required: true, value: chinaMonth() })),
    h("div", {}, h("label", { for: "report-utility" }, "服务机构"), utilitySelect),
    h("button", { type: "submit", "data-testid": "report-submit" }, "查询"),
    download,
  );
}

function rememberUtilities(rows, select) {
  rows.forEach((row) => knownUtilities.set(row.utility, row.service_org));
  fillUtilities(select);
}

function fillUtilities(select) {
  const chosen = select.value;
  show(
    select,
    h("option", { value: "" }, "全部服务机构"),
    [...knownUtilities].map(([code, name]) => h("option", { value: code, selected: code === chosen }, name)),
  );
}

function renderCharts(charts, rows, utility) {
  if (!rows.some((row) => row.received)) {
    show(charts, h("p", { class: "card chart-empty", "data-testid": "report-empty" }, "所选月份没有过户数据，请调整月份或服务机构后再查询。"));
    return;
  }
  const scope = utility ? rows[0].service_org : "全部服务机构";
  show(charts, h("div", { class: "chart-pair" }, onTimeChart(rows), reasonChart(rows)), monthlyChart(rows, scope));
}

function cellText(row, key) {
  if (key === "on_time_rate") return percent(row.completed_on_time, row.completed) || "—";
  if (key === "returned_by_reason") {
    return row.returned_by_reason.map(({ reason, count }) => `${reason || "未填写原因"} ${count}`).join("；") || "—";
  }
  if (key === "median_hours_to_completion") {
    return row.median_hours_to_completion === null ? "—" : row.median_hours_to_completion.toFixed(2);
  }
  if (key === "linked_account_share") {
    return row.linked_account_share === null ? "—" : percent(row.linked_account_share, 1);
  }
  return String(row[key]);
}

function renderTable(table, rows, page) {
  const start = (page - 1) * TABLE_PAGE_SIZE;
  const body = rows.slice(start, start + TABLE_PAGE_SIZE).map((row) =>
    h(
      "tr",
      // Rows without any transfer are dimmed so that the busy ones stand out.
      { "data-testid": "report-row", "data-month": row.month, "data-utility": row.utility, class: row.received ? null : "quiet" },
      COLUMNS.map(([key]) => h("td", { "data-field": key, class: TEXT_COLUMNS.has(key) ? null : "number" }, cellText(row, key))),
    ),
  );
  show(
    table,
    // The table scrolls sideways inside its box on a narrow window.
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "report" },
        h("caption", {}, "明细（每个服务机构每月一行，最新月份在前）"),
        h("thead", {}, h("tr", {}, COLUMNS.map(([key, title, tip]) => h("th", { scope: "col", title: tip, class: TEXT_COLUMNS.has(key) ? null : "number" }, title)))),
        h("tbody", {}, body),
      ),
    ),
    pager({ total: rows.length, page, page_size: TABLE_PAGE_SIZE }, (next) => renderTable(table, rows, next)),
  );
}
