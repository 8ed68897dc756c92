// The staff console: password login (with the forced change of a one-time
// password), customer-service lookup, the utility desk's returned transfers and
// accounts to check, an agency's or window's cases, and the supervision report.

import { ApiError, Session, query } from "/static/shared/api.js";
import { errorBox, h, pager, shortTime, show, statusTone, timelineList, yuan } from "/static/shared/dom.js";
import { showSupervision } from "/static/console/supervision.js";

const session = new Session("lianban.console");
const main = document.getElementById("main");
const tabs = document.getElementById("tabs");
const userBar = document.getElementById("user-bar");

const PAGE_SIZE = 20;
const REASON_MIN = 4;
const CRITERIA = {
  business_no: "登记业务号",
  unit_code: "不动产单元代码",
  account_no: "户号",
  id_number: "证件号码（居民身份证）",
};
// Each role gets the tabs whose endpoints accept it: lookup (api/lookup.py),
// the utility desk (api/utility.py), cases (CASE_ROLES in api/security.py)
// and the supervision report (api/supervision.py).
const TABS_BY_ROLE = {
  service: [["lookup", "案件查询"]],
  admin: [
    ["lookup", "案件查询"],
    ["supervision", "监管报表"],
  ],
  supervisor: [["supervision", "监管报表"]],
  utility: [
    ["returned", "退件"],
    ["reviews", "待核对户号"],
  ],
  agent: [["cases", "受托案件"]],
  window: [["cases", "窗口案件"]],
};
const REGISTRATION_STATUSES = {
  accepted: "已受理",
  completed: "已登簿",
  withdrawn: "已撤回",
};
const CASE_STATUSES = {
  open: "待提交",
  submitted: "已提交，待登簿",
  in_progress: "办理中",
  closed: "已办结",
  withdrawn: "已撤回",
};

session.onLoggedOut = () => showLogin(new ApiError(401, { code: "token_expired" }));

let me = null;

async function start() {
  if (!session.loggedIn) return showLogin();
  try {
    me = await session.call("GET", "/auth/me");
  } catch (error) {
    return showLogin(error);
  }
  if (me.must_change_password) return showPasswordChange();
  return showDesk();
}

// ---- Logging in ----

function showLogin(error) {
  me = null;
  show(tabs);
  show(userBar);
  const form = h(
    "form",
    { class: "card narrow", "data-testid": "staff-login" },
    h("h2", {}, "工作人员登录"),
    h("label", { for: "username" }, "用户名"),
    h("input", { id: "username", name: "username", required: true, autocomplete: "username" }),
    h("label", { for: "password" }, "密码"),
    h("input", { id: "password", name: "password", type: "password", required: true, autocomplete: "current-password" }),
    h("div", { id: "login-error" }, error ? errorBox(error) : null),
    h("button", { type: "submit", "data-testid": "login" }, "登录"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      const pair = await session.login("/auth/login", {
        username: data.get("username").trim(),
        password: data.get("password"),
      });
      me = await session.call("GET", "/auth/me");
      if (pair.must_change_password) return showPasswordChange(data.get("password"));
      return showDesk();
    } catch (failure) {
      show(form.querySelector("#login-error"), errorBox(failure));
    }
  });
  show(main, form);
}

function showPasswordChange(oldPassword = "") {
  showUser();
  const form = h(
    "form",
    { class: "card narrow", "data-testid": "password-change" },
    h("h2", {}, "请修改密码"),
    h("p", { class: "notice" }, "您使用的是一次性密码，修改密码后才能使用工作台。"),
    h("label", { for: "old_password" }, "原密码"),
    h("input", { id: "old_password", type: "password", required: true, value: oldPassword, autocomplete: "current-password" }),
    h("label", { for: "new_password" }, "新密码"),
    h("input", { id: "new_password", type: "password", required: true, autocomplete: "new-password" }),
    h("label", { for: "new_password_again" }, "再次输入新密码"),
    h("input", { id: "new_password_again", type: "password", required: true, autocomplete: "new-password" }),
    h("p", { class: "hint" }, "密码不能包含用户名，也不能与原密码相同。"),
    h("div", { id: "password-error" }),
    h("button", { type: "submit", "data-testid": "change-password" }, "修改密码"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorSlot = form.querySelector("#password-error");
    const newPassword = form.querySelector("#new_password").value;
    if (newPassword !== form.querySelector("#new_password_again").value) {
      show(errorSlot, errorBox({ message: "两次输入的新密码不一致。" }));
      return;
    }
    try {
      const pair = await session.call("POST", "/auth/password", {
        old_password: form.querySelector("#old_password").value,
        new_password: newPassword,
      });
      session.store(pair);
      me = await session.call("GET", "/auth/me");
      showDesk();
    } catch (failure) {
      show(errorSlot, errorBox(failure));
    }
  });
  show(main, form);
}

function showUser() {
  const organisation = me.organisation ? me.organisation.name : "";
  show(
    userBar,
    h("span", { "data-testid": "staff-name" }, `${me.display_name} · ${me.role_label}`),
    organisation ? h("span", { class: "muted" }, organisation) : null,
    h("button", { type: "button", onclick: logOut }, "退出"),
  );
}

async function logOut() {
  await session.logout();
  showLogin();
}

// ---- Tabs ----

const SCREENS = {
  lookup: showLookup,
  returned: showReturned,
  reviews: showReviews,
  cases: showCases,
  supervision: () => showSupervision(main, session),
};

function showDesk() {
  showUser();
  const available = TABS_BY_ROLE[me.role] || [];
  show(
    tabs,
    available.map(([key, label]) =>
      h("button", { type: "button", "data-tab": key, onclick: () => openTab(key) }, label),
    ),
  );
  if (!available.length) {
    show(main, h("p", { class: "card" }, "您的岗位在工作台上没有可用的功能。"));
    return;
  }
  openTab(available[0][0]);
}

function openTab(key) {
  tabs.querySelectorAll("button").forEach((button) => {
    if (button.dataset.tab === key) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  });
  SCREENS[key]();
}

function people(list) {
  return (list || []).map((person) => `${person.name}（${person.id_number}）`).join("、") || "—";
}

function timeline(events) {
  return timelineList(events, "timeline events");
}

// ---- Customer-service lookup ----

function showLookup() {
  const results = h("section", { "data-testid": "lookup-results" });
  const detail = h("section", { "data-testid": "lookup-detail" });
  const errorSlot = h("div", { "data-testid": "lookup-error" });
  const form = h(
    "form",
    { class: "card", "data-testid": "lookup-form", novalidate: true },
    h("h2", {}, "案件查询"),
    h("p", { class: "muted" }, "查询结果中的姓名和证件号码已脱敏。每次查询连同事由都会记录在案。"),
    h(
      "div",
      { class: "search" },
      h("div", {}, h("label", { for: "criterion" }, "查询条件"), h("select", { id: "criterion" }, Object.entries(CRITERIA).map(([value, label]) => h("option", { value }, label)))),
      h("div", {}, h("label", { for: "value" }, "查询内容"), h("input", { id: "value", required: true, autocomplete: "off" })),
      h(
        "div",
        {},
        h("label", { for: "reason" }, "查询事由（必填）"),
        h("input", { id: "reason", required: true, maxlength: 200, placeholder: "如：12345 工单号及来电诉求", autocomplete: "off" }),
      ),
      h("button", { type: "submit", "data-testid": "lookup-submit" }, "查询"),
    ),
    errorSlot,
  );
  const search = async (page = 1) => {
    show(errorSlot);
    const criterion = form.querySelector("#criterion").value;
    const value = form.querySelector("#value").value.trim();
    const reason = form.querySelector("#reason").value.trim();
    if (!value) {
      show(errorSlot, errorBox({ message: `请填写${CRITERIA[criterion]}。`, code: "value_missing" }, "lookup-prompt"));
      return;
    }
    if (reason.length < REASON_MIN) {
      show(
        errorSlot,
        errorBox({ message: `请填写查询事由（至少 ${REASON_MIN} 个字），如工单号和来电诉求；事由将记入查询记录。`, code: "reason_missing" }, "lookup-prompt"),
      );
      form.querySelector("#reason").focus();
      return;
    }
    show(detail);
    try {
      const found = await session.call("POST", "/lookup/cases/search", {
        [criterion]: value,
        reason,
        page,
        page_size: PAGE_SIZE,
      });
      renderLookupResults(results, detail, found, reason, search);
    } catch (failure) {
      show(results);
      show(errorSlot, errorBox(failure));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(1);
  });
  show(main, form, results, detail);
}

function renderLookupResults(results, detail, found, reason, load) {
  if (!found.items.length) {
    show(results, h("p", { class: "card" }, "没有找到符合条件的案件。"));
    return;
  }
  const rows = found.items.map((item) =>
    h(
      "tr",
      { class: "clickable", "data-testid": "lookup-row", onclick: () => openLookupCase(detail, item.case_id, reason) },
      h("td", {}, item.business_no),
      h("td", {}, item.business_type),
      h("td", {}, item.location),
      h("td", { "data-testid": "owners" }, people(item.owners)),
      h("td", { "data-testid": "previous-owners" }, people(item.previous_owners)),
      h("td", {}, CASE_STATUSES[item.status] || item.status),
      h("td", {}, shortTime(item.opened_at)),
    ),
  );
  show(
    results,
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["业务号", "业务类型", "坐落", "权利人", "原权利人", "状态", "创建时间"].map((title) => h("th", {}, title)))),
      h("tbody", {}, rows),
    ),
    pager(found, load),
  );
}

async function openLookupCase(detail, caseId, reason) {
  try {
    const found = await session.call("GET", `/lookup/cases/${caseId}${query({ reason })}`);
    show(detail, caseDetail(found));
  } catch (failure) {
    show(detail, errorBox(failure));
  }
}

function caseDetail(found) {
  return h(
    "div",
    { class: "card", "data-testid": "case-detail" },
    h("h2", {}, `${found.business_no} · ${found.location}`),
    h(
      "dl",
      { class: "fields" },
      h("dt", {}, "不动产单元"),
      h("dd", {}, found.unit_code),
      h("dt", {}, "登记状态"),
      h("dd", {}, REGISTRATION_STATUSES[found.registration_status] || found.registration_status),
      h("dt", {}, "联办状态"),
      h("dd", {}, CASE_STATUSES[found.status] || found.status),
      h("dt", {}, "权利人"),
      h("dd", {}, people(found.owners)),
      h("dt", {}, "原权利人"),
      h("dd", {}, people(found.previous_owners)),
    ),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["服务机构", "户号", "户主", "确认/协议", "欠费", "状态", "进度"].map((title) => h("th", {}, title)))),
      h(
        "tbody",
        {},
        found.transfers.map((transfer) =>
          h(
            "tr",
            { "data-testid": "detail-transfer" },
            h("td", {}, transfer.service_org),
            h("td", {}, transfer.account_no),
            h("td", {}, transfer.holder_name || "—"),
            h("td", {}, `${transfer.account_confirmed ? "已确认" : "未确认"} / ${transfer.agreement_accepted ? "已同意" : "未同意"}`),
            h("td", {}, yuan(transfer.arrears_fen)),
            h(
              "td",
              {},
              h("span", { class: `badge ${statusTone(transfer.status)}` }, transfer.status_label),
              transfer.return_reason ? h("div", { class: "reason" }, transfer.return_reason) : null,
            ),
            h("td", {}, transfer.events ? timeline(transfer.events) : null),
          ),
        ),
      ),
    ),
  );
}

// ---- Utility desk: returned transfers ----

async function showReturned(page = 1) {
  show(main, h("p", { class: "muted" }, "正在加载…"));
  let found;
  try {
    found = await session.call("GET", `/utility/transfers${query({ status: "returned", page, page_size: PAGE_SIZE })}`);
  } catch (failure) {
    show(main, errorBox(failure));
    return;
  }
  const detail = h("section", { "data-testid": "transfer-detail" });
  const rows = found.items.map((item) =>
    h(
      "tr",
      { class: "clickable", "data-testid": "returned-row", onclick: () => openTransfer(detail, item.transfer_id) },
      h("td", {}, item.business_no),
      h("td", {}, item.location),
      h("td", {}, item.account_no),
      h("td", {}, people(item.owners)),
      h("td", { class: "reason" }, item.return_reason || "—"),
      h("td", {}, shortTime(item.updated_at)),
    ),
  );
  show(
    main,
    h("h2", {}, "退件的过户"),
    h("p", { class: "muted" }, "退件原因消除后，可重新受理该过户。"),
    rows.length
      ? h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["业务号", "坐落", "户号", "权利人", "退件原因", "时间"].map((title) => h("th", {}, title)))),
          h("tbody", {}, rows),
        )
      : h("p", { class: "card" }, "没有退件的过户。"),
    pager(found, showReturned),
    detail,
  );
}

async function openTransfer(detail, transferId) {
  let transfer;
  try {
    transfer = await session.call("GET", `/utility/transfers/${transferId}`);
  } catch (failure) {
    show(detail, errorBox(failure));
    return;
  }
  const note = h("input", { id: "reopen-note", maxlength: 200, placeholder: "如：原户主已解除银行代扣" });
  const errorSlot = h("div");
  const reopen = async () => {
    try {
      await session.call("POST", `/utility/transfers/${transferId}/reopen`, { note: note.value.trim() });
      await showReturned();
    } catch (failure) {
      show(errorSlot, errorBox(failure));
    }
  };
  show(
    detail,
    h(
      "div",
      { class: "card" },
      h("h3", {}, `${transfer.business_no} · 户号 ${transfer.account_no}`),
      h(
        "dl",
        { class: "fields" },
        h("dt", {}, "坐落"),
        h("dd", {}, transfer.location),
        h("dt", {}, "权利人"),
        h("dd", {}, people(transfer.owners)),
        h("dt", {}, "原权利人"),
        h("dd", {}, people(transfer.previous_owners)),
        h("dt", {}, "欠费"),
        h("dd", {}, yuan(transfer.arrears_fen)),
      ),
      timeline(transfer.events),
      transfer.status === "returned"
        ? h(
            "div",
            { class: "decision" },
            h("div", {}, h("label", { for: "reopen-note" }, "重新受理说明（必填）"), note),
            h("button", { type: "button", onclick: reopen }, "重新受理"),
          )
        : null,
      errorSlot,
    ),
  );
}

// ---- Utility desk: accounts to check by hand ----

async function showReviews(page = 1) {
  show(main, h("p", { class: "muted" }, "正在加载…"));
  let found;
  try {
    found = await session.call("GET", `/partner/reconciliations${query({ status: "open", page, page_size: PAGE_SIZE })}`);
  } catch (failure) {
    show(main, errorBox(failure));
    return;
  }
  show(
    main,
    h("h2", {}, "待核对户号"),
    h("p", { class: "muted" }, "左侧为贵单位系统中的户号信息，右侧为可能对应的房屋；核对后关联或不予关联。"),
    found.items.length ? found.items.map(reviewCard) : h("p", { class: "card" }, "没有待核对的户号。"),
    pager(found, showReviews),
  );
}

function reviewCard(item) {
  const candidates = item.candidates && item.candidates.length ? item.candidates : null;
  let chosen = candidates ? candidates[0].unit_code : null;
  const card = h("div", { class: "card", "data-testid": "review-item" });
  const note = h("input", { maxlength: 500, placeholder: "不予关联时必填，申请人会看到", "aria-label": "说明" });
  const errorSlot = h("div");
  const decide = async (decision) => {
    const body = { decision, note: note.value.trim() || null };
    if (decision === "reject" && !body.note) {
      show(errorSlot, errorBox({ message: "不予关联时必须填写说明，申请人会看到这段说明。" }));
      return;
    }
    if (decision === "link" && candidates) body.unit_code = chosen;
    try {
      await session.call("POST", `/partner/reconciliations/${item.item_id}`, body);
      await showReviews();
    } catch (failure) {
      show(errorSlot, errorBox(failure));
    }
  };
  const candidateViews = candidates
    ? candidates.map((candidate) => {
        const view = h(
          "label",
          { class: `candidate ${candidate.unit_code === chosen ? "chosen" : ""}` },
          h("input", { type: "radio", name: `unit-${item.item_id}`, value: candidate.unit_code, checked: candidate.unit_code === chosen }),
          ` ${candidate.location || "—"}`,
          h("div", { class: "muted" }, `${candidate.unit_code} · 相似度 ${candidate.score}`),
          h("div", { class: "muted" }, (candidate.reason_labels || []).join("；")),
        );
        view.querySelector("input").addEventListener("change", () => {
          chosen = candidate.unit_code;
          card.querySelectorAll(".candidate").forEach((other) => other.classList.toggle("chosen", other === view));
        });
        return view;
      })
    : [
        h(
          "div",
          { class: "candidate chosen" },
          h("strong", {}, item.location || "—"),
          h("div", { class: "muted" }, `${item.business_no || ""} · ${item.unit_code || ""}`),
          h("div", {}, `权利人：${people(item.owners)}`),
          h("div", {}, `原权利人：${people(item.previous_owners)}`),
        ),
      ];
  show(
    card,
    h("div", { class: "row" }, h("h3", {}, `户号 ${item.account_no}`), h("span", { class: "badge wait" }, item.status_label)),
    h(
      "div",
      { class: "side-by-side" },
      h(
        "div",
        {},
        h("h3", {}, "贵单位系统中的户号"),
        h(
          "dl",
          { class: "fields" },
          h("dt", {}, "户主"),
          h("dd", {}, item.holder_name || "—"),
          h("dt", {}, "证件号码"),
          h("dd", {}, (item.holder_id_numbers || []).join("、") || "—"),
          h("dt", {}, "用户地址"),
          h("dd", {}, item.account_address || "—"),
        ),
        h("p", { class: "notice" }, (item.reason_labels || []).join("；")),
      ),
      h("div", {}, h("h3", {}, candidates ? "候选房屋" : "申请的房屋"), candidateViews),
    ),
    h(
      "div",
      { class: "decision" },
      note,
      h("button", { type: "button", "data-testid": "link", onclick: () => decide("link") }, "关联"),
      h("button", { type: "button", class: "danger", "data-testid": "reject", onclick: () => decide("reject") }, "不予关联"),
    ),
    errorSlot,
  );
  return card;
}

// ---- An agency's or window's cases ----

async function showCases(page = 1) {
  show(main, h("p", { class: "muted" }, "正在加载…"));
  let found;
  try {
    found = await session.call("GET", `/cases${query({ page, page_size: PAGE_SIZE })}`);
  } catch (failure) {
    show(main, errorBox(failure));
    return;
  }
  const detail = h("section", { "data-testid": "case-detail-slot" });
  const rows = found.items.map((item) =>
    h(
      "tr",
      { class: "clickable", "data-testid": "case-row", onclick: () => openCase(detail, item.case_id) },
      h("td", {}, item.business_no),
      h("td", {}, item.business_type),
      h("td", {}, item.location),
      h("td", {}, CASE_STATUSES[item.status] || item.status),
      h("td", {}, shortTime(item.opened_at)),
    ),
  );
  show(
    main,
    h("h2", {}, "案件"),
    rows.length
      ? h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["业务号", "业务类型", "坐落", "状态", "创建时间"].map((title) => h("th", {}, title)))),
          h("tbody", {}, rows),
        )
      : h("p", { class: "card" }, "暂无案件。业主授权后，可按业务号在此办理。"),
    pager(found, showCases),
    detail,
  );
}

async function openCase(detail, caseId) {
  try {
    const [found, progress] = await Promise.all([
      session.call("GET", `/cases/${caseId}`),
      session.call("GET", `/cases/${caseId}/progress`),
    ]);
    const events = new Map(progress.transfers.map((transfer) => [transfer.transfer_id, transfer.events]));
    found.transfers.forEach((transfer) => {
      transfer.events = events.get(transfer.transfer_id) || [];
    });
    show(detail, caseDetail(found));
  } catch (failure) {
    show(detail, errorBox(failure));
  }
}

start();
