// The citizen's page: log in, open the case, confirm each account, accept each
// agreement, check that each account can transfer, pay arrears by QR code,
// submit or withdraw, and follow each utility's timeline and final meter
// reading. A citizen who sold a home finds it under "我出售的房屋".

import { ApiError } from "/static/shared/api.js";
import { errorBox, h, shortTime, show, statusTone, timelineList, yuan } from "/static/shared/dom.js";
import { renderChecks, stoppingItems } from "/static/citizen/checks.js";
import { isMetered, openDisputeDialog, readingBlock } from "/static/citizen/readings.js";
import { session } from "/static/citizen/session.js";
import { soldSection } from "/static/citizen/sold.js";
import { openWithdrawalDialog } from "/static/citizen/withdrawal.js";

const main = document.getElementById("main");
const userBar = document.getElementById("user-bar");
const dialog = document.getElementById("agreement");
const disputeDialog = document.getElementById("dispute");
const withdrawalDialog = document.getElementById("withdrawal");

const PAYMENT_POLL_MS = 1500;
const PROGRESS_POLL_MS = 2000;
// Progress polls that wait for missing meter readings after the case closed.
const READING_POLLS = 30;
const ID_TYPES = [
  "居民身份证",
  "护照",
  "港澳居民来往内地通行证",
  "台湾居民来往大陆通行证",
  "外国人永久居留身份证",
  "军官证",
  "其他",
];
const RELATIONS = {
  owner: "本房权利人",
  previous_owner: "原权利人",
  other: "更早的户主",
};
const CASE_BADGES = {
  open: ["待提交", "wait"],
  submitted: ["已提交，待登簿", ""],
  in_progress: ["办理中", ""],
  closed: ["已办结", "good"],
  withdrawn: ["已撤回", "bad"],
};
const ARREARS_TONES = { owed: "bad", clear: "good" };
// The key of the one-order panel among the per-account payment panels.
const ALL_ACCOUNTS = "all";
const ARREARS_STATES = {
  owed: "待缴",
  clear: "无欠费",
  paid_pending: "已缴费，服务机构销账中",
  unavailable: "暂时无法查询",
  not_connected: "请到服务机构营业厅查询",
};

// Timers of the case on screen; stopped whenever another screen is shown.
let timers = [];

function stopTimers() {
  timers.forEach((timer) => clearTimeout(timer));
  timers = [];
}

function later(callback, milliseconds) {
  timers.push(setTimeout(callback, milliseconds));
}

session.onLoggedOut = () => showLogin(new ApiError(401, { code: "token_expired" }));

async function start() {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  if (code) {
    // A login code handed over by the mini-program container is used once.
    history.replaceState(null, "", location.pathname);
    try {
      await session.login("/auth/miniprogram-login", { code });
    } catch (error) {
      return showLogin(error);
    }
  }
  if (!session.loggedIn) return showLogin();
  return showCases();
}

// ---- Logging in ----

async function sandboxUrl() {
  try {
    const response = await fetch("/app/config.json");
    return (await response.json()).identity_sandbox_url;
  } catch {
    return null;
  }
}

async function showLogin(error) {
  stopTimers();
  show(userBar);
  const sandbox = await sandboxUrl();
  if (!sandbox) {
    show(
      main,
      h("div", { class: "card" }, h("h2", {}, "请登录"), h("p", {}, "请在济南不动产登记小程序中打开本页，登录后办理。")),
      error ? errorBox(error) : null,
    );
    return;
  }
  const form = h(
    "form",
    { class: "card", "data-testid": "sandbox-login" },
    h("h2", {}, "实名登录（测试环境）"),
    h("p", { class: "muted" }, "测试环境由身份认证沙箱代替小程序实名登录，请填写登记时的权利人信息。"),
    h("label", { for: "name" }, "姓名"),
    h("input", { id: "name", name: "name", required: true, autocomplete: "name" }),
    h("label", { for: "id_type" }, "证件类型"),
    h("select", { id: "id_type", name: "id_type" }, ID_TYPES.map((type) => h("option", { value: type }, type))),
    h("label", { for: "id_number" }, "证件号码"),
    h("input", { id: "id_number", name: "id_number", required: true, autocomplete: "off" }),
    h("label", { for: "phone" }, "手机号（选填）"),
    h("input", { id: "phone", name: "phone", inputmode: "tel", autocomplete: "tel" }),
    h("div", { id: "login-error" }, error ? errorBox(error) : null),
    h("button", { type: "submit", class: "submit" }, "登录"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const code = await requestSandboxCode(sandbox, new FormData(form));
      await session.login("/auth/miniprogram-login", { code });
      await showCases();
    } catch (failure) {
      show(form.querySelector("#login-error"), errorBox(failure));
      button.disabled = false;
    }
  });
  show(main, form);
}

async function requestSandboxCode(sandbox, data) {
  const identity = {
    name: data.get("name").trim(),
    id_type: data.get("id_type"),
    id_number: data.get("id_number").trim(),
  };
  const phone = data.get("phone").trim();
  if (phone) identity.phone = phone;
  let response;
  try {
    response = await fetch(`${sandbox}/_sandbox/codes`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(identity),
    });
  } catch {
    throw new ApiError(0, { message: "无法连接身份认证沙箱，请确认服务已启动。" });
  }
  const body = await response.json();
  if (!response.ok) {
    // The sandbox's own errors are {code, message} in English.
    throw new ApiError(response.status, {
      code: "sandbox_rejected",
      message: `身份认证沙箱拒绝了登录信息：${body.message}`,
    });
  }
  return body.code;
}

async function showUser() {
  const me = await session.call("GET", "/auth/me");
  show(
    userBar,
    h("span", { "data-testid": "display-name" }, me.display_name),
    h("button", { type: "button", onclick: logOut }, "退出"),
  );
}

async function logOut() {
  stopTimers();
  await session.logout();
  await showLogin();
}

// ---- The list of cases ----

async function showCases(error, message) {
  stopTimers();
  try {
    await showUser();
    const [page, sales, notices] = await Promise.all([
      session.call("GET", "/cases?page_size=50"),
      session.call("GET", "/previous-owner/cases?page_size=50"),
      session.call("GET", "/release-notices?page_size=50"),
    ]);
    renderCases(page, error);
    const sold = soldSection(sales, notices, disputeSold);
    if (sold) main.append(sold);
    if (message) main.prepend(h("p", { class: "notice", "data-testid": "page-message" }, message));
  } catch (failure) {
    if (!session.loggedIn) return;
    show(main, errorBox(failure));
  }
}

function disputeSold(sale, transfer) {
  openDisputeDialog(disputeDialog, {
    transfer,
    path: `/previous-owner/cases/${sale.case_id}/transfers/${transfer.transfer_id}/meter-reading/dispute`,
    onSent: (message) => showCases(undefined, message),
    // The list behind the dialog then shows the reading as disputed.
    onRefused: () => showCases(),
  });
}

function renderCases(page, error) {
  const form = h(
    "form",
    { class: "card", "data-testid": "open-case" },
    h("h2", {}, "办理新业务"),
    h("label", { for: "business_no" }, "登记业务号（见不动产登记受理单）"),
    h("input", { id: "business_no", name: "business_no", required: true, autocomplete: "off" }),
    h("div", { id: "open-error" }, error ? errorBox(error) : null),
    h("button", { type: "submit", class: "submit" }, "开始办理"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const businessNo = new FormData(form).get("business_no").trim();
    try {
      const found = await session.call("POST", "/cases", { business_no: businessNo });
      await showCase(found.case_id);
    } catch (failure) {
      show(form.querySelector("#open-error"), errorBox(failure));
    }
  });
  const items = page.items.map((item) =>
    h(
      "button",
      { type: "button", class: "case-link", "data-testid": "case-link", onclick: () => showCase(item.case_id) },
      h("div", { class: "row" }, h("strong", {}, item.business_no), caseBadge(item.status)),
      h("p", {}, item.location),
      h("p", { class: "muted" }, `${item.business_type} · ${shortTime(item.opened_at)}`),
    ),
  );
  show(
    main,
    h("h2", { class: "section" }, "我的联办事项"),
    items.length ? items : h("p", { class: "muted" }, "还没有联办事项。"),
    form,
  );
}

function caseBadge(status) {
  const [label, tone] = CASE_BADGES[status] || [status, ""];
  return h("span", { class: `badge ${tone}`, "data-testid": "case-status" }, label);
}

// ---- One case ----

async function showCase(caseId) {
  stopTimers();
  show(main, h("p", { class: "muted" }, "正在加载…"));
  let found;
  try {
    found = await session.call("GET", `/cases/${caseId}`);
  } catch (failure) {
    return showCases(failure);
  }
  const view = {
    caseId,
    summary: h("section", { "data-testid": "case-summary" }),
    accounts: h("section", { "data-testid": "accounts" }),
    arrears: h("section", { "data-testid": "arrears" }),
    checks: h("section", { "data-testid": "transfer-checks" }),
    submit: h("section", { "data-testid": "submit" }),
    progress: h("section", { "data-testid": "progress" }),
    message: h("div", { "data-testid": "case-message" }),
    payments: new Map(),
  };
  show(
    main,
    h("button", { type: "button", class: "secondary", onclick: () => showCases() }, "‹ 我的联办事项"),
    view.message,
    view.summary,
    view.accounts,
    view.arrears,
    view.checks,
    view.submit,
    view.progress,
  );
  renderCase(view, found);
  await Promise.all([refreshArrears(view, found), refreshChecks(view)]);
  if (found.status !== "open") pollProgress(view);
}

async function reloadCase(view) {
  const found = await session.call("GET", `/cases/${view.caseId}`);
  renderCase(view, found);
  return found;
}

function renderCase(view, found) {
  view.found = found;
  const owners = found.owners.map((person) => `${person.name}${person.is_me ? "（本人）" : ""}`);
  show(
    view.summary,
    h(
      "div",
      { class: "card" },
      h("div", { class: "row" }, h("h2", {}, found.location), caseBadge(found.status)),
      h(
        "dl",
        { class: "fields" },
        h("dt", {}, "业务号"),
        h("dd", {}, found.business_no),
        h("dt", {}, "业务类型"),
        h("dd", {}, found.business_type),
        h("dt", {}, "不动产单元"),
        h("dd", {}, found.unit_code),
        h("dt", {}, "权利人"),
        h("dd", {}, owners.join("、")),
      ),
      (found.warnings || []).map((text) => h("p", { class: "notice", "data-testid": "warning" }, text)),
      (found.account_reviews || []).map((review) =>
        h(
          "p",
          { class: "notice" },
          `${review.service_org} 户号 ${review.account_no}：${review.status_label}`,
          review.decision_note ? `（${review.decision_note}）` : "",
        ),
      ),
    ),
  );
  renderAccounts(view, found);
  renderSubmit(view, found);
}

function renderAccounts(view, found) {
  const open = found.status === "open";
  const cards = found.transfers.map((transfer) =>
    h(
      "div",
      { class: "card", "data-testid": "account", "data-org": transfer.service_org },
      h("div", { class: "row" }, h("h3", {}, transfer.service_org), h("span", { class: `badge ${statusTone(transfer.status)}` }, transfer.status_label)),
      h(
        "dl",
        { class: "fields" },
        h("dt", {}, "户号"),
        h("dd", {}, transfer.account_no),
        h("dt", {}, "户主"),
        h("dd", {}, `${transfer.holder_name || "—"}（${RELATIONS[transfer.holder_relation] || "—"}）`),
        h("dt", {}, "用户地址"),
        h("dd", {}, transfer.account_address || "—"),
      ),
      transfer.return_reason ? h("p", { class: "reason" }, `退件原因：${transfer.return_reason}`) : null,
      readingBlock(transfer, {
        waiting: found.registration_status === "completed",
        onDispute: () => disputeReading(view, transfer),
      }),
      h(
        "div",
        { class: "steps" },
        transfer.account_confirmed
          ? h("span", { class: "done" }, "✓ 已确认户号信息")
          : h(
              "button",
              { type: "button", disabled: !open, "data-testid": "confirm", onclick: () => confirmAccount(view, transfer) },
              "确认户号信息",
            ),
        transfer.agreement_accepted
          ? h("span", { class: "done" }, `✓ 已同意过户协议（第 ${transfer.agreement_version} 版）`)
          : h(
              "button",
              {
                type: "button",
                class: "secondary",
                disabled: !open || !transfer.account_confirmed,
                "data-testid": "read-agreement",
                onclick: () => readAgreement(view, transfer),
              },
              "阅读过户协议",
            ),
      ),
    ),
  );
  show(view.accounts, h("h2", { class: "section" }, "户号"), cards, open ? addAccountForm(view) : null);
}

function disputeReading(view, transfer) {
  openDisputeDialog(disputeDialog, {
    transfer,
    path: `/cases/${view.caseId}/transfers/${transfer.transfer_id}/meter-reading/dispute`,
    onSent: async (message) => {
      await reloadCase(view);
      show(view.message, h("p", { class: "notice", "data-testid": "dispute-result" }, message));
    },
    // The card behind the dialog then shows the reading as disputed.
    onRefused: () => reloadCase(view),
  });
}

// Codes of an added account that the online checks cannot place; the utility
// can check it by hand instead.
const NOT_PLACED = new Set(["account_holder_mismatch", "account_address_mismatch", "utility_not_connected"]);

function addAccountForm(view) {
  const form = h(
    "form",
    { class: "card", "data-testid": "add-account" },
    h("h3", {}, "添加未列出的户号"),
    h("p", { class: "muted" }, "房屋的某项户号没有列出时，可按缴费单填写服务机构和户号。"),
    h("label", { for: "service_org" }, "服务机构名称"),
    h("input", { id: "service_org", name: "service_org", required: true, placeholder: "如：济南能源集团有限公司热力" }),
    h("label", { for: "account_no" }, "户号"),
    h("input", { id: "account_no", name: "account_no", required: true, autocomplete: "off" }),
    h("div", { class: "add-result" }),
    h("button", { type: "submit", class: "submit secondary" }, "添加户号"),
  );
  const result = form.querySelector(".add-result");
  const add = async (requestReview) => {
    const data = new FormData(form);
    const body = {
      service_org: data.get("service_org").trim(),
      account_no: data.get("account_no").trim(),
    };
    if (requestReview) body.request_review = true;
    try {
      // A queued review shows in the case summary once the case is reloaded.
      await session.call("POST", `/cases/${view.caseId}/accounts`, body);
      await reloadCase(view);
      await refreshArrears(view, view.found);
    } catch (failure) {
      const review = NOT_PLACED.has(failure.code) && !requestReview;
      show(
        result,
        errorBox(failure),
        review ? h("button", { type: "button", class: "secondary", onclick: () => add(true) }, "请服务机构人工核对") : null,
      );
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    add(false);
  });
  return form;
}

// Run one step of the case, one at a time: a second tap while a step is
// under way, such as a double click, sends nothing.
async function act(view, step) {
  if (view.busy) return;
  view.busy = true;
  main.setAttribute("aria-busy", "true");
  show(view.message);
  try {
    await step();
  } catch (failure) {
    show(view.message, errorBox(failure));
    window.scrollTo({ top: 0 });
  } finally {
    view.busy = false;
    main.removeAttribute("aria-busy");
  }
}

function confirmAccount(view, transfer) {
  return act(view, async () => {
    await session.call("POST", `/cases/${view.caseId}/transfers/${transfer.transfer_id}/confirmation`, {});
    await reloadCase(view);
  });
}

function readAgreement(view, transfer) {
  return act(view, async () => {
    // The last agreement shown stays in the closed dialog until replaced, so
    // empty it first: nothing may act on the previous utility's text.
    show(dialog);
    dialog.removeAttribute("data-org");
    const agreement = await session.call("GET", `/agreements/${encodeURIComponent(transfer.service_org)}`);
    const agree = h("button", { type: "button", disabled: true, "data-testid": "accept-agreement" }, "同意并继续");
    const checkbox = h("input", { type: "checkbox", id: "agreement-read" });
    checkbox.addEventListener("change", () => {
      agree.disabled = !checkbox.checked;
    });
    const error = h("div");
    agree.addEventListener("click", async () => {
      agree.disabled = true;
      try {
        await session.call("POST", `/cases/${view.caseId}/transfers/${transfer.transfer_id}/agreement`, {
          version: agreement.version,
        });
        dialog.close();
        await reloadCase(view);
      } catch (failure) {
        show(error, errorBox(failure));
      }
    });
    show(
      dialog,
      h("h2", { id: "agreement-title" }, agreement.title),
      h("p", { class: "muted" }, `${agreement.service_org} · 第 ${agreement.version} 版`),
      h("div", { class: "agreement-body", "data-testid": "agreement-body" }, agreement.body),
      h("label", { class: "check", for: "agreement-read" }, checkbox, "我已阅读并同意以上协议"),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "取消"),
        agree,
      ),
    );
    dialog.setAttribute("data-org", transfer.service_org);
    dialog.showModal();
  });
}

function renderSubmit(view, found) {
  const withdraw = canWithdraw(found)
    ? h("button", { type: "button", class: "submit withdraw", "data-testid": "withdraw-case", onclick: () => withdrawCase(view) }, "撤回联办")
    : null;
  if (found.status !== "open") {
    show(view.submit, found.submitted_at ? h("p", { class: "muted" }, `已于 ${shortTime(found.submitted_at)} 提交`) : null, withdraw);
    return;
  }
  const ready = found.transfers.length > 0 && found.transfers.every((t) => t.account_confirmed && t.agreement_accepted);
  const stopped = stoppingItems(view.checkResults).length > 0;
  let hint = null;
  if (stopped) {
    hint = h("p", { class: "reason", "data-testid": "submit-blocked" }, "有户号被服务机构暂停过户或已销户，处理完成前不能提交。");
  } else if (!ready) {
    hint = h("p", { class: "muted" }, "请先确认每个户号的信息并同意其过户协议。");
  }
  show(
    view.submit,
    h(
      "button",
      { type: "button", class: "submit", disabled: !ready || stopped, "data-testid": "submit-case", onclick: () => submitCase(view) },
      "提交联办",
    ),
    hint,
    withdraw,
  );
}

function submitCase(view) {
  return act(view, async () => {
    let found;
    try {
      found = await session.call("POST", `/cases/${view.caseId}/submission`, {});
    } catch (failure) {
      // The utility blocked an account since the last check: show it.
      if (failure.code === "transfer_blocked") await refreshChecks(view);
      throw failure;
    }
    renderCase(view, found);
    clearChecks(view);
    pollProgress(view);
  });
}

// ---- Transfer checks ----

async function refreshChecks(view) {
  if (view.found.status !== "open") return clearChecks(view);
  show(view.checks, h("h2", { class: "section" }, "过户前核验"), h("p", { class: "muted" }, "正在向各服务机构核验…"));
  let checks = null;
  let failure = null;
  try {
    checks = await session.call("GET", `/cases/${view.caseId}/transfer-checks`);
  } catch (error) {
    failure = error;
  }
  // The case may have been submitted or withdrawn while the utilities answered.
  if (view.found.status !== "open") return clearChecks(view);
  // A failed check leaves the submit button alone: the submission checks again.
  view.checkResults = checks;
  if (checks) {
    renderChecks(view.checks, checks, () => refreshChecks(view));
  } else {
    show(view.checks, h("h2", { class: "section" }, "过户前核验"), errorBox(failure, "checks-error"));
  }
  renderSubmit(view, view.found);
}

function clearChecks(view) {
  view.checkResults = null;
  show(view.checks);
}

// ---- Withdrawal ----

function canWithdraw(found) {
  const before = found.status === "open" || found.status === "submitted";
  return before && found.registration_status !== "completed";
}

function withdrawCase(view) {
  openWithdrawalDialog(withdrawalDialog, view.caseId, async (found) => {
    renderCase(view, found);
    clearChecks(view);
    await refreshArrears(view, found);
    pollProgress(view);
  });
}

// ---- Arrears and payment ----

async function refreshArrears(view, found) {
  if (found.status === "closed" || found.status === "withdrawn") {
    show(view.arrears);
    return [];
  }
  let answers;
  try {
    answers = await session.call("GET", `/cases/${view.caseId}/arrears`);
  } catch (failure) {
    show(view.arrears, h("h2", { class: "section" }, "欠费"), errorBox(failure, "arrears-error"));
    return [];
  }
  const rows = answers.map((answer) => arrearsCard(view, answer));
  show(view.arrears, h("h2", { class: "section" }, "欠费"), payAllCard(view, answers), rows);
  return answers;
}

// One code for every account that owes, when more than one does.
function payAllCard(view, answers) {
  const owed = answers.filter((answer) => answer.state === "owed" && answer.arrears_fen > 0);
  const panel = view.payments.get(ALL_ACCOUNTS) || h("div", { class: "qr" });
  view.payments.set(ALL_ACCOUNTS, panel);
  if (owed.length < 2 && !panel.hasChildNodes()) return null;
  const total = owed.reduce((sum, answer) => sum + answer.arrears_fen, 0);
  return h(
    "div",
    { class: "card", "data-testid": "pay-all" },
    h("div", { class: "row" }, h("strong", {}, "一次缴清所有欠费")),
    owed.length >= 2
      ? h("p", {}, `${owed.length} 个户号合计 `, h("strong", { "data-testid": "pay-all-total" }, yuan(total)), "，各服务机构分别销账。")
      : null,
    owed.length >= 2 && !panel.hasChildNodes()
      ? h(
          "div",
          { class: "steps" },
          h("button", { type: "button", "data-testid": "pay-all-wechat", onclick: () => startPayment(view, null, "wechatpay") }, "微信一次缴清"),
          h("button", { type: "button", class: "secondary", "data-testid": "pay-all-alipay", onclick: () => startPayment(view, null, "alipay") }, "支付宝一次缴清"),
        )
      : null,
    panel,
  );
}

function arrearsCard(view, answer) {
  const panel = view.payments.get(answer.transfer_id) || h("div", { class: "qr" });
  view.payments.set(answer.transfer_id, panel);
  const owed = answer.state === "owed" && answer.arrears_fen > 0;
  const tone = ARREARS_TONES[answer.state] || "wait";
  return h(
    "div",
    { class: "card", "data-testid": "arrears-row", "data-org": answer.service_org, "data-state": answer.state },
    h("div", { class: "row" }, h("strong", {}, answer.service_org), h("span", { class: `badge ${tone}` }, ARREARS_STATES[answer.state] || answer.state)),
    h("p", {}, `户号 ${answer.account_no} · 欠费 `, h("strong", { "data-testid": "arrears-amount" }, answer.arrears_display || "—")),
    owed && !panel.hasChildNodes()
      ? h(
          "div",
          { class: "steps" },
          h("button", { type: "button", "data-testid": "pay-wechat", onclick: () => startPayment(view, answer, "wechatpay") }, "微信扫码缴费"),
          h("button", { type: "button", class: "secondary", "data-testid": "pay-alipay", onclick: () => startPayment(view, answer, "alipay") }, "支付宝扫码缴费"),
        )
      : null,
    panel,
  );
}

// Start an order for one account's arrears, or for every account's when
// `answer` is null.
function startPayment(view, answer, provider) {
  return act(view, async () => {
    const key = answer ? answer.transfer_id : ALL_ACCOUNTS;
    const path = answer ? `/cases/${view.caseId}/transfers/${answer.transfer_id}/payments` : `/cases/${view.caseId}/payments`;
    const payment = await session.call("POST", path, { provider });
    const panel = view.payments.get(key);
    const image = await qrImage(payment);
    const parts = payment.shares.length > 1 ? payment.shares.map((share) => h("li", { "data-testid": "payment-share" }, `${share.service_org} ${share.amount_display}`)) : null;
    show(
      panel,
      h("img", { src: image, alt: "缴费二维码", "data-testid": "payment-qr", "data-code-url": payment.code_url }),
      h("p", {}, `${payment.service_org} 应缴 `, h("strong", {}, payment.amount_display)),
      parts ? h("ul", { class: "shares" }, parts) : null,
      h("p", { class: "muted", "data-testid": "payment-expiry" }),
      h("p", { "data-testid": "payment-status" }, "请用", provider === "alipay" ? "支付宝" : "微信", "扫码支付，支付完成后本页自动更新。"),
    );
    await refreshArrears(view, view.found);
    watchPayment(view, payment, panel, key);
  });
}

// Build a line for each refund, such as a debt already paid at the counter.
function refundLines(payment) {
  return payment.refunds.map((refund) =>
    h(
      "div",
      { class: "muted", "data-testid": "payment-refund", "data-status": refund.status },
      `${refund.amount_display} 已原路退回：${refund.reason}`,
      refund.status === "succeeded" ? "" : "（退款处理中）",
    ),
  );
}

async function qrImage(payment) {
  // The image endpoint needs the Bearer token, so it is fetched, not linked.
  const response = await session.call("GET", payment.qr_png.replace("/api/v1", ""), undefined, { raw: true });
  return URL.createObjectURL(await response.blob());
}

function watchPayment(view, payment, panel, key) {
  const expires = Date.parse(payment.expires_at);
  let settling = false;
  const tick = async () => {
    const status = panel.querySelector("[data-testid=payment-status]");
    const expiry = panel.querySelector("[data-testid=payment-expiry]");
    if (!status) return;
    let current;
    try {
      current = await session.call("GET", `/payments/${payment.payment_id}`);
    } catch (failure) {
      show(status, errorBox(failure));
      later(tick, PAYMENT_POLL_MS * 2);
      return;
    }
    if (current.status === "paid") {
      panel.querySelector("img").classList.add("hidden");
      if (expiry) expiry.remove();
      show(status, h("span", { class: "paid", "data-testid": "payment-paid" }, `已支付 ${current.amount_display}（${shortTime(current.paid_at)}）`), refundLines(current));
      // Each utility's booking may return part of the payment; keep watching
      // until every part is booked and each refund has finished.
      const booked = current.shares.every((share) => share.reported);
      const refunded = current.refunds.every((refund) => refund.status === "succeeded");
      if (!booked || !refunded) later(tick, PAYMENT_POLL_MS);
      if (!settling) {
        settling = true;
        return waitForSettlement(view);
      }
      return;
    }
    if (current.status !== "pending") {
      show(status, h("span", { class: "reason" }, "该二维码已失效，请重新生成。"));
      view.payments.delete(key);
      return refreshArrears(view, view.found);
    }
    const seconds = Math.max(0, Math.round((expires - Date.now()) / 1000));
    const minutes = String(Math.floor(seconds / 60)).padStart(2, "0");
    show(expiry, `二维码有效期至 ${shortTime(payment.expires_at).slice(11)}，剩余 ${minutes}:${String(seconds % 60).padStart(2, "0")}`);
    later(tick, PAYMENT_POLL_MS);
  };
  tick();
}

async function waitForSettlement(view, tries = 20) {
  // Arrears read "paid_pending" until the utility books the payment.
  const answers = await refreshArrears(view, view.found);
  if (tries > 0 && answers.some((answer) => answer.state === "paid_pending")) {
    later(() => waitForSettlement(view, tries - 1), PAYMENT_POLL_MS);
  } else if (view.found.status === "open") {
    // The utility's check shows the arrears as paid once it booked them.
    await refreshChecks(view);
  }
}

// ---- Progress ----

// Whether a metered account still waits for its final reading.
function readingsMissing(found) {
  if (found.registration_status !== "completed") return false;
  return found.transfers.some((t) => isMetered(t) && t.connection === "system" && !t.final_reading);
}

function pollProgress(view) {
  let readingPolls = READING_POLLS;
  const tick = async () => {
    let progress;
    try {
      progress = await session.call("GET", `/cases/${view.caseId}/progress`);
    } catch (failure) {
      show(view.progress, errorBox(failure, "progress-error"));
      later(tick, PROGRESS_POLL_MS * 2);
      return;
    }
    renderProgress(view, progress);
    const waiting = readingsMissing(view.found);
    if (progress.status !== view.found.status || waiting) await reloadCase(view);
    const ended = progress.status === "closed" || progress.status === "withdrawn";
    // Readings come apart from the utilities' reports, so polling may go on
    // a while after the case closed, but not for ever.
    if (!ended || (readingsMissing(view.found) && readingPolls-- > 0)) later(tick, PROGRESS_POLL_MS);
  };
  tick();
}

function renderProgress(view, progress) {
  const cards = progress.transfers.map((transfer) => {
    const tone = statusTone(transfer.status);
    return h(
      "div",
      { class: "card", "data-testid": "transfer-progress", "data-org": transfer.service_org, "data-status": transfer.status },
      h("div", { class: "row" }, h("h3", {}, transfer.service_org), h("span", { class: `badge ${tone}`, "data-testid": "transfer-status" }, transfer.status_label)),
      h("p", { class: "muted" }, `户号 ${transfer.account_no}`),
      transfer.return_reason ? h("p", { class: "reason", "data-testid": "return-reason" }, `退件原因：${transfer.return_reason}`) : null,
      timelineList(transfer.events),
    );
  });
  show(view.progress, h("h2", { class: "section" }, "办理进度"), cards);
}

start();
