// Build DOM nodes without HTML strings, so that text from the API is never
// parsed as markup.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  Object.entries(attributes || {}).forEach(([name, value]) => {
    if (value === undefined || value === null || value === false) return;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, value);
    }
  });
  append(element, children);
  return element;
}

function append(element, children) {
  children.flat(Infinity).forEach((child) => {
    if (child === undefined || child === null || child === false) return;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  });
}

// Replace everything inside `element` with `children`.
export function show(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

// Build an alert block for an ApiError (or any error), with its request id.
export function errorBox(error, testId = "error") {
  const problems = (error.problems || []).map((problem) =>
    h("li", {}, problem.label ? `${problem.label}：${problem.text}` : problem.text),
  );
  return h(
    "div",
    { class: "alert", role: "alert", "data-testid": testId, "data-code": error.code || "" },
    h("p", {}, error.message || "操作失败，请稍后再试。"),
    problems.length ? h("ul", {}, problems) : null,
    error.requestId ? h("p", { class: "request-id" }, `请求编号 ${error.requestId}`) : null,
  );
}

// Format a yuan amount from integer fen.
export function yuan(fen) {
  if (fen === null || fen === undefined) return "—";
  return `¥${(fen / 100).toFixed(2)}`;
}

// Shorten an ISO 8601 time from the API to "2026-12-04 20:25".
export function shortTime(iso) {
  if (!iso) return "";
  return iso.replace("T", " ").slice(0, 16);
}

// Return the badge class of a transfer or timeline status.
export function statusTone(status) {
  if (status === "completed") return "good";
  if (status === "returned" || status === "push_failed" || status === "withdrawn") return "bad";
  return "";
}

// Build the list of a transfer's timeline events, newest last.
export function timelineList(events, className = "timeline") {
  return h(
    "ol",
    { class: className },
    events.map((event) =>
      h(
        "li",
        { class: statusTone(event.status) },
        h("div", {}, event.label, event.actor_name ? `（${event.actor_name}）` : ""),
        event.return_reason ? h("div", { class: "reason" }, event.return_reason) : null,
        event.note ? h("div", { class: "muted" }, event.note) : null,
        h("div", { class: "when" }, shortTime(event.occurred_at)),
      ),
    ),
  );
}

// Build the "page N of M" line with its previous and next buttons. Clicking
// one calls `load(n)` for page n. `page` is a paged response: {total, page, page_size}.
export function pager(page, load) {
  const pages = Math.max(1, Math.ceil(page.total / page.page_size));
  return h(
    "div",
    { class: "pager" },
    h("span", { class: "muted" }, `共 ${page.total} 条，第 ${page.page} / ${pages} 页`),
    h("button", { type: "button", class: "secondary", disabled: page.page <= 1, onclick: () => load(page.page - 1) }, "上一页"),
    h("button", { type: "button", class: "secondary", disabled: page.page >= pages, onclick: () => load(page.page + 1) }, "下一页"),
  );
}
