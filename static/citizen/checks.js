// The transfer checks before submitting: what each utility found on its
// account and what to do. An item with `stops_submission` (a block or a
// closed account) keeps the submit button disabled, as the API refuses the
// submission with 409 transfer_blocked while it is open.

import { h, shortTime, show } from "/static/shared/dom.js";

const STATES = {
  ok: ["可以过户", "good"],
  action_needed: ["需处理", "wait"],
  unavailable: ["暂时无法核验", "wait"],
  not_connected: ["未接入线上核验", ""],
};
const ITEM_LABELS = {
  arrears: "欠费",
  direct_debit: "银行代扣",
  prepaid_balance: "预存余额",
  block: "暂停过户",
  account_closed: "销户",
};
const STATE_NOTES = {
  unavailable: "服务机构系统暂时没有应答，提交时将再次核验。",
  not_connected: "该服务机构未接入线上核验，将通过其他渠道办理。",
};

// Return the items that stop the submission, over all accounts.
export function stoppingItems(checks) {
  return (checks || []).flatMap((entry) => entry.items.filter((item) => item.stops_submission));
}

function itemAttributes(item, tone) {
  return {
    class: `check-item ${tone}`,
    "data-testid": "check-item",
    "data-item": item.item,
    "data-blocking": String(item.blocking),
    "data-stops": String(Boolean(item.stops_submission)),
  };
}

// An item to act on, or one with an amount (a prepaid balance), in full.
function itemRow(item) {
  let tone = "info";
  let tag = h("span", { class: "badge" }, "请知悉");
  if (item.stops_submission) {
    tone = "stop";
    tag = h("span", { class: "badge bad" }, "须先处理，暂不能提交");
  } else if (item.blocking) {
    tone = "act";
    tag = h("span", { class: "badge wait" }, "需处理");
  }
  return h(
    "li",
    itemAttributes(item, tone),
    h("div", { class: "row" }, h("strong", {}, ITEM_LABELS[item.item] || item.item), tag),
    h("p", { "data-testid": "check-advice" }, item.advice),
  );
}

// Items with nothing to do, one short line each.
function clearRow(item) {
  return h("li", itemAttributes(item, "ok"), "✓ ", h("span", { "data-testid": "check-advice" }, item.advice));
}

function needsReading(item) {
  return item.blocking || Boolean(item.amount_fen);
}

function checkCard(entry) {
  const stopped = entry.items.some((item) => item.stops_submission);
  const [label, tone] = stopped ? ["暂不能过户", "bad"] : STATES[entry.state] || ["尚未核验", ""];
  return h(
    "div",
    { class: "card", "data-testid": "check", "data-org": entry.service_org, "data-state": entry.state || "" },
    h("div", { class: "row" }, h("h3", {}, entry.service_org), h("span", { class: `badge ${tone}` }, label)),
    h("p", { class: "muted" }, `户号 ${entry.account_no}`, entry.checked_at ? ` · 核验于 ${shortTime(entry.checked_at)}` : ""),
    STATE_NOTES[entry.state] ? h("p", { class: "muted" }, STATE_NOTES[entry.state]) : null,
    h("ul", { class: "check-items" }, entry.items.filter(needsReading).map(itemRow)),
    h("ul", { class: "check-clear" }, entry.items.filter((item) => !needsReading(item)).map(clearRow)),
  );
}

// Render each utility's check result in `section`, with a button that
// checks again.
export function renderChecks(section, checks, recheck) {
  const stopped = stoppingItems(checks).length > 0;
  show(
    section,
    h("div", { class: "row" }, h("h2", { class: "section" }, "过户前核验"), h("button", { type: "button", class: "secondary small", "data-testid": "recheck", onclick: recheck }, "重新核验")),
    h("p", { class: "muted" }, "提交前，各服务机构核验户号能否过户。标为“须先处理”的事项处理完成前不能提交。"),
    stopped
      ? h("p", { class: "alert", "data-testid": "checks-stopped" }, "有户号被服务机构暂停过户或已销户，请按下方提示处理，处理后点“重新核验”。")
      : null,
    checks.map(checkCard),
  );
}
