// The final meter reading of a transfer, and the dialog that disputes it
// with a note and a photo of the meter. A reading takes one dispute, from
// the buyer's side or the seller's.

import { errorBox, h, shortTime, show } from "/static/shared/dom.js";
import { session } from "/static/citizen/session.js";

const METERED = new Set(["water", "power", "gas", "heat"]);
const METHODS = { remote: "远程抄表", estimated: "估算", manual: "人工抄表" };
const PHOTO_TYPES = "image/jpeg,image/png";

export function isMetered(transfer) {
  return METERED.has(transfer.utility_kind);
}

// Build the reading block of a transfer. `waiting` is true once a reading is
// due, after the registration completed. `onDispute` opens the dialog.
export function readingBlock(transfer, { waiting, onDispute }) {
  const reading = transfer.final_reading;
  if (!reading) {
    if (!waiting || !isMetered(transfer)) return null;
    return h("p", { class: "muted", "data-testid": "reading-pending" }, "过户日读数：等待服务机构抄表…");
  }
  return h(
    "div",
    { class: "reading", "data-testid": "final-reading", "data-disputed": String(reading.disputed) },
    h(
      "dl",
      { class: "fields" },
      h("dt", {}, "过户日读数"),
      h("dd", {}, h("strong", { "data-testid": "reading-value" }, reading.value), ` ${reading.unit}`),
      h("dt", {}, "抄表时间"),
      h("dd", { "data-testid": "reading-time" }, shortTime(reading.read_at)),
      h("dt", {}, "抄表方式"),
      h("dd", {}, METHODS[reading.method] || reading.method),
    ),
    reading.disputed
      ? h("p", { class: "badge wait", "data-testid": "reading-disputed" }, "已提出异议，等待服务机构核对")
      : h("button", { type: "button", class: "secondary", "data-testid": "dispute-reading", onclick: onDispute }, "对读数有异议"),
  );
}

// Open `dialog` to dispute the reading of `transfer` at the API `path`.
// `onSent(message)` runs after the dispute is accepted and `onRefused()`
// after the API refused it because the reading was already disputed.
export function openDisputeDialog(dialog, { transfer, path, onSent, onRefused }) {
  const reading = transfer.final_reading;
  const form = h(
    "form",
    { "data-testid": "dispute-form" },
    h("h2", { id: "dispute-title" }, "对过户日读数有异议"),
    h("p", {}, `${transfer.service_org} 户号 ${transfer.account_no}`),
    h("p", { class: "muted" }, `读数 ${reading.value} ${reading.unit}，抄表时间 ${shortTime(reading.read_at)}`),
    h("p", { class: "notice" }, "每个读数只能提出一次异议，买方或原权利人先提出的计入。说明会显示在买卖双方的办理进度中，并与照片一起发送给服务机构核对。"),
    h("label", { for: "dispute-note" }, "异议说明"),
    h("textarea", { id: "dispute-note", name: "note", required: true, maxlength: "500", rows: "3", placeholder: "如：交房时表上读数为 1200，与此读数不符" }),
    h("p", { class: "label" }, "表具照片（JPEG 或 PNG，5 MB 以内）"),
    h(
      "div",
      { class: "photo-pick" },
      h("input", { id: "dispute-photo", name: "photo", type: "file", required: true, accept: PHOTO_TYPES }),
      // The browser labels the file input's own button in its UI language,
      // so the input is hidden behind a Chinese label.
      h("label", { for: "dispute-photo", class: "button" }, "选择照片"),
      h("span", { class: "muted", "data-testid": "photo-name" }, "未选择"),
    ),
    h("div", { class: "dispute-result" }),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "取消"),
      h("button", { type: "submit", "data-testid": "send-dispute" }, "提交异议"),
    ),
  );
  const result = form.querySelector(".dispute-result");
  const photo = form.querySelector("#dispute-photo");
  photo.addEventListener("change", () => {
    show(form.querySelector("[data-testid=photo-name]"), photo.files.length ? photo.files[0].name : "未选择");
  });
  const send = form.querySelector("[data-testid=send-dispute]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    send.disabled = true;
    try {
      await session.call("POST", path, new FormData(form));
      dialog.close();
      await onSent(`已提交对${transfer.service_org}户号 ${transfer.account_no} 过户日读数的异议，服务机构将核对。每个读数只能提出一次异议。`);
    } catch (failure) {
      show(result, errorBox(failure, "dispute-error"));
      send.disabled = false;
      if (failure.code === "reading_disputed") {
        send.disabled = true;
        await onRefused();
      }
    }
  });
  show(dialog, form);
  dialog.showModal();
}
