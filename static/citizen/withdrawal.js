// The confirmation dialog that withdraws a case before its registration
// completes. It lists what the API does on withdrawal first, because a
// withdrawn case cannot be opened again.

import { errorBox, h, show } from "/static/shared/dom.js";
import { session } from "/static/citizen/session.js";

const CONSEQUENCES = [
  "各户号停止办理，不再推送给服务机构；",
  "尚未支付的缴费订单将关闭，二维码失效；",
  "已通过本事项缴纳的欠费将原路退回付款账户，服务机构同时冲销该笔缴费；",
  "撤回后本事项不能再次办理。",
];

// Open `dialog` to withdraw case `caseId`; `onWithdrawn(found)` gets the case.
export function openWithdrawalDialog(dialog, caseId, onWithdrawn) {
  const reason = h("textarea", { id: "withdraw-reason", name: "reason", maxlength: "200", rows: "2", placeholder: "如：买卖双方协商解除合同" });
  const error = h("div");
  const confirm = h("button", { type: "button", class: "danger", "data-testid": "confirm-withdrawal" }, "确认撤回");
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    const text = reason.value.trim();
    try {
      const found = await session.call("POST", `/cases/${caseId}/withdrawal`, text ? { reason: text } : {});
      dialog.close();
      await onWithdrawn(found);
    } catch (failure) {
      show(error, errorBox(failure, "withdrawal-error"));
      confirm.disabled = false;
    }
  });
  show(
    dialog,
    h("h2", { id: "withdrawal-title" }, "撤回联办"),
    h("p", {}, "不动产登记登簿前可以撤回联办。撤回后："),
    h("ul", { class: "consequences", "data-testid": "withdrawal-consequences" }, CONSEQUENCES.map((line) => h("li", {}, line))),
    h("label", { for: "withdraw-reason" }, "撤回原因（选填，将显示在办理进度中）"),
    reason,
    error,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "取消"),
      confirm,
    ),
  );
  dialog.showModal();
}
