// The page behind the opt-out link of every SMS notice, /u/<token>. Opening it
// changes nothing, because link scanners and message previews fetch links too.
// The number is opted out only when the person presses 确认退订. The page never
// receives the number, because the API takes only the token and returns none.

import { Session } from "/static/shared/api.js";
import { errorBox, h, show } from "/static/shared/dom.js";

// The token is 24 hex digits (services/notice_choices.py, opt_out_token). A
// trailing slash or upper-case digits, as a person may type them, are accepted.
const LINK = /^\/u\/([0-9a-f]{24})\/?$/i;
const MALFORMED = {
  code: "opt_out_link_malformed",
  message: "退订链接不完整或有误。请从短信中完整复制“退订请访问”后面的链接，再用浏览器打开。",
};

// The page is public, so this session stores no tokens and every call is
// anonymous.
const session = new Session("lianban.optout");
const main = document.getElementById("main");

function start() {
  const match = LINK.exec(location.pathname);
  if (!match) return showProblem(MALFORMED);
  return showConfirm(match[1].toLowerCase());
}

function showConfirm(token, error) {
  const button = h(
    "button",
    { type: "button", class: "confirm", "data-testid": "confirm-opt-out" },
    "确认退订",
  );
  button.addEventListener("click", () => optOut(token, button));
  show(
    main,
    h(
      "section",
      { class: "card", "data-testid": "opt-out-confirm" },
      h("h2", {}, "退订短信通知"),
      h("p", {}, "确认退订后："),
      h(
        "ul",
        {},
        h("li", {}, "本手机号不再收到水电气暖视过户进度的短信通知。"),
        h("li", {}, "济南不动产登记小程序内的订阅消息不受影响，仍按您在小程序中的选择发送。"),
      ),
      h("p", { class: "muted" }, "仅打开本页不会退订，请点击下方按钮确认。"),
      error ? errorBox(error) : null,
      button,
    ),
  );
}

// Pressing the button again, here or after a reload, sends the same request
// and gets the same 200 response.
async function optOut(token, button) {
  button.disabled = true;
  button.textContent = "正在退订…";
  try {
    await session.call("POST", "/notifications/sms-opt-out", { token });
  } catch (error) {
    if (error.code === "opt_out_token_not_found") return showProblem(error);
    // The network or the hub failed, so the person may try again.
    return showConfirm(token, error);
  }
  return showDone();
}

function showDone() {
  show(
    main,
    h(
      "section",
      { class: "card done", "data-testid": "opt-out-done" },
      h("h2", {}, "已退订短信通知"),
      h("p", {}, "本手机号将不再收到水电气暖视过户进度的短信通知。"),
      h("p", {}, "小程序内的订阅消息不受影响。"),
      h(
        "p",
        { class: "notice" },
        "如需重新接收短信通知，请登录济南不动产登记小程序，在通知设置中开启短信通知。",
      ),
    ),
  );
}

function showProblem(error) {
  show(
    main,
    h("section", { class: "card" }, h("h2", {}, "无法退订"), errorBox(error)),
  );
}

start();
