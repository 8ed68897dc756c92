// "我出售的房屋": the homes the citizen sold, each account's completion time
// and final meter reading, and the release notice once every account moved.
// Together they are the seller's proof of where their last bills end.

import { h, shortTime, statusTone } from "/static/shared/dom.js";
import { readingBlock } from "/static/citizen/readings.js";

const CASE_TONES = { open: "wait", closed: "good", withdrawn: "bad" };

// A returned or withdrawn transfer left the account in the seller's name.
const STAYED = new Set(["returned", "withdrawn"]);

function completionText(transfer, stayed) {
  if (transfer.completed_at) return `办结时间 ${shortTime(transfer.completed_at)}`;
  if (stayed) return "户号仍在您的名下";
  return "尚未办结";
}

function soldTransfer(sale, transfer, onDispute) {
  const stayed = STAYED.has(transfer.status);
  return h(
    "div",
    { class: "sold-transfer", "data-testid": "sold-transfer", "data-org": transfer.service_org, "data-status": transfer.status },
    h("div", { class: "row" }, h("strong", {}, transfer.service_org), h("span", { class: `badge ${statusTone(transfer.status)}` }, transfer.status_label)),
    h("p", { class: "muted" }, `户号 ${transfer.account_no}`),
    h(
      "p",
      { "data-testid": "completed-at" },
      completionText(transfer, stayed),
    ),
    transfer.return_reason ? h("p", { class: "reason", "data-testid": "sold-return-reason" }, `退件原因：${transfer.return_reason}`) : null,
    stayed
      ? null
      : readingBlock(transfer, {
          waiting: sale.registration_status === "completed",
          onDispute: () => onDispute(sale, transfer),
        }),
  );
}

function releaseItem(item) {
  const reading = item.final_reading;
  return h(
    "li",
    { "data-testid": "release-item", "data-org": item.service_org },
    h("div", {}, h("strong", {}, item.service_org), ` 户号 ${item.account_no}`),
    h("div", {}, `${item.completed_at} 办结`),
    h(
      "div",
      { "data-testid": "release-reading" },
      reading ? `过户日读数 ${reading.value} ${reading.unit}${reading.disputed ? "（已提出异议）" : ""}` : "无过户日读数",
    ),
  );
}

function releaseNotice(notice) {
  return h(
    "div",
    { class: "release", "data-testid": "release-notice" },
    h("h4", {}, "过户完成证明"),
    h("p", { class: "muted" }, `出具时间 ${shortTime(notice.issued_at)} · 各户号已全部过户至新户主`),
    h("ul", {}, notice.items.map(releaseItem)),
  );
}

function soldCard(sale, notice, onDispute) {
  const buyers = sale.owners.map((person) => person.name).join("、");
  return h(
    "div",
    { class: "card", "data-testid": "sold-case", "data-business": sale.business_no, "data-status": sale.status },
    h("div", { class: "row" }, h("h3", {}, sale.location), h("span", { class: `badge ${CASE_TONES[sale.status] || ""}` }, sale.status_label)),
    h(
      "dl",
      { class: "fields" },
      h("dt", {}, "业务号"),
      h("dd", {}, sale.business_no),
      h("dt", {}, "业务类型"),
      h("dd", {}, sale.business_type),
      h("dt", {}, "新户主"),
      h("dd", { "data-testid": "sold-buyers" }, buyers || "—"),
    ),
    sale.transfers.map((transfer) => soldTransfer(sale, transfer, onDispute)),
    notice ? releaseNotice(notice) : null,
  );
}

// Build the section, or nothing when the citizen sold no home here.
// `onDispute(sale, transfer)` opens the dispute of a reading.
export function soldSection(sales, notices, onDispute) {
  if (!sales.items.length) return null;
  const byCase = new Map(notices.items.map((notice) => [notice.case_id, notice]));
  return h(
    "section",
    { "data-testid": "sold-homes" },
    h("h2", { class: "section" }, "我出售的房屋"),
    h("p", { class: "muted" }, "过户日读数是您最后一期账单的截止读数，与办结时间一起作为过户凭证，请核对。"),
    sales.items.map((sale) => soldCard(sale, byCase.get(sale.case_id), onDispute)),
  );
}
