// Charts of the supervision report, drawn as inline SVG. Each chart takes
// the report's rows (one per utility and month) and returns a <figure> with
// a visible title, and an <svg role="img"> whose <title> and <desc> give the
// same numbers as text for screen readers.

import { h } from "/static/shared/dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const FONT_SIZE = 13;
const COLOURS = { received: "#1565c0", completed: "#2e7d32", returned: "#c62828" };
const SERIES = [
  ["received", "受理"],
  ["completed", "办结"],
  ["returned", "退件"],
];

let chartSerial = 0;

// Build an SVG element, with text children as text nodes.
function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  Object.entries(attributes).forEach(([name, value]) => {
    if (value !== undefined && value !== null) element.setAttribute(name, value);
  });
  children.flat(Infinity).forEach((child) => {
    if (child === undefined || child === null || child === false) return;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  });
  return element;
}

// Estimate the drawn width of `text` in pixels: a CJK character is about one
// em wide, a digit or Latin letter about 0.6 em.
function textWidth(text, size = FONT_SIZE) {
  let width = 0;
  for (const character of text) width += character.charCodeAt(0) > 0x2e80 ? size : size * 0.6;
  return width;
}

function clip(text, maxCharacters) {
  return text.length > maxCharacters ? `${text.slice(0, maxCharacters - 1)}…` : text;
}

// Return the share `part / whole` as "87.5%", or null when `whole` is 0.
export function percent(part, whole) {
  if (!whole) return null;
  return `${((100 * part) / whole).toFixed(1)}%`;
}

// Return a tick step of 1, 2 or 5 times a power of ten that splits `max`
// into at most about `count` intervals.
function tickStep(max, count) {
  const rough = Math.max(max / count, 1);
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((factor) => factor * power).find((candidate) => candidate >= rough);
  return step;
}

function figure(testId, title, summary, width, height, ...body) {
  chartSerial += 1;
  const titleId = `chart-${chartSerial}-title`;
  const descId = `chart-${chartSerial}-desc`;
  return h(
    "figure",
    { class: "chart card", "data-testid": testId },
    h("h3", {}, title),
    svg(
      "svg",
      {
        viewBox: `0 0 ${width} ${height}`,
        width,
        height,
        role: "img",
        "aria-labelledby": `${titleId} ${descId}`,
        "font-size": FONT_SIZE,
      },
      svg("title", { id: titleId }, title),
      svg("desc", { id: descId }, summary),
      body,
    ),
  );
}

function emptyChart(testId, title, message) {
  return h(
    "figure",
    { class: "chart card", "data-testid": testId },
    h("h3", {}, title),
    h("p", { class: "chart-empty", "data-testid": "chart-empty" }, message),
  );
}

// Sum each utility's figures over the months of `rows`, in the rows' order.
function totalsByUtility(rows) {
  const totals = new Map();
  rows.forEach((row) => {
    const total = totals.get(row.utility) || {
      utility: row.utility,
      service_org: row.service_org,
      completed: 0,
      completed_on_time: 0,
    };
    total.completed += row.completed;
    total.completed_on_time += row.completed_on_time;
    totals.set(row.utility, total);
  });
  return [...totals.values()];
}

// (a) Each utility's on-time rate over the months, as horizontal bars.
export function onTimeChart(rows) {
  const title = "各服务机构按时办结率";
  const utilities = totalsByUtility(rows);
  if (!utilities.some((utility) => utility.completed)) {
    return emptyChart("chart-on-time", title, "所选月份没有办结的过户，无法计算按时办结率。");
  }
  const width = 540;
  const labelWidth = 180;
  const barSpace = width - labelWidth - 24;
  const rowHeight = 34;
  const top = 8;
  const plotHeight = utilities.length * rowHeight;
  const height = top + plotHeight + 50;
  const grid = [0, 25, 50, 75, 100].map((tick) => {
    const x = labelWidth + (barSpace * tick) / 100;
    return [
      svg("line", { x1: x, x2: x, y1: top, y2: top + plotHeight, class: "grid" }),
      svg("text", { x, y: top + plotHeight + 16, "text-anchor": "middle", class: "tick" }, `${tick}%`),
    ];
  });
  const bars = utilities.map((utility, index) => onTimeBar(utility, labelWidth, barSpace, top + index * rowHeight, rowHeight));
  const summary = utilities
    .map((utility) =>
      utility.completed
        ? `${utility.service_org} ${percent(utility.completed_on_time, utility.completed)}（按时办结 ${utility.completed_on_time} 件，办结 ${utility.completed} 件）`
        : `${utility.service_org} 无办结`,
    )
    .join("；");
  const axisTitle = svg(
    "text",
    { x: labelWidth + barSpace / 2, y: height - 8, "text-anchor": "middle", class: "axis-title" },
    "按时办结率（按时办结件数 ÷ 办结件数）",
  );
  return figure("chart-on-time", title, `按时办结率：${summary}。`, width, height, grid, bars, axisTitle);
}

function onTimeBar(utility, labelWidth, barSpace, y, rowHeight) {
  const middle = y + rowHeight / 2;
  const name = svg(
    "text",
    { x: labelWidth - 8, y: middle, "text-anchor": "end", "dominant-baseline": "central" },
    svg("title", {}, utility.service_org),
    clip(utility.service_org, 12),
  );
  const group = svg("g", { "data-testid": "on-time-bar", "data-utility": utility.utility }, name);
  if (!utility.completed) {
    group.append(
      svg("text", { x: labelWidth + 6, y: middle, "dominant-baseline": "central", class: "none" }, "暂无办结"),
    );
    return group;
  }
  const label = percent(utility.completed_on_time, utility.completed);
  const barWidth = (barSpace * utility.completed_on_time) / utility.completed;
  // The label sits inside the bar's end when it fits there, otherwise just after it.
  const inside = barWidth >= textWidth(label) + 12;
  group.append(
    svg(
      "rect",
      { x: labelWidth, y: y + 6, width: Math.max(barWidth, 1), height: rowHeight - 12, rx: 3, class: "bar on-time" },
      svg("title", {}, `${utility.service_org}：按时办结 ${utility.completed_on_time} 件，办结 ${utility.completed} 件`),
    ),
    svg(
      "text",
      {
        x: inside ? labelWidth + barWidth - 6 : labelWidth + barWidth + 6,
        y: middle,
        "text-anchor": inside ? "end" : "start",
        "dominant-baseline": "central",
        class: inside ? "value inside" : "value",
        "data-testid": "on-time-label",
      },
      label,
    ),
  );
  return group;
}

// Sum the received, completed and returned transfers of each month, oldest first.
function totalsByMonth(rows) {
  const totals = new Map();
  rows.forEach((row) => {
    const total = totals.get(row.month) || { month: row.month, received: 0, completed: 0, returned: 0 };
    SERIES.forEach(([key]) => {
      total[key] += row[key];
    });
    totals.set(row.month, total);
  });
  return [...totals.values()].sort((a, b) => a.month.localeCompare(b.month));
}

// (b) Received, completed and returned transfers per month, as grouped bars.
export function monthlyChart(rows, scope) {
  const title = `各月受理、办结与退件（${scope}）`;
  const months = totalsByMonth(rows);
  const width = 1100;
  const height = 320;
  const margin = { left: 64, right: 16, top: 40, bottom: 62 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const largest = Math.max(1, ...months.flatMap((month) => SERIES.map(([key]) => month[key])));
  const step = tickStep(largest, 5);
  const top = Math.ceil(largest / step) * step;
  const yOf = (value) => margin.top + plotHeight - (plotHeight * value) / top;

  const ticks = [];
  for (let value = 0; value <= top; value += step) {
    ticks.push(
      svg("line", { x1: margin.left, x2: width - margin.right, y1: yOf(value), y2: yOf(value), class: "grid" }),
      svg("text", { x: margin.left - 8, y: yOf(value), "text-anchor": "end", "dominant-baseline": "central", class: "tick" }, value),
    );
  }

  const slot = plotWidth / months.length;
  // Label every month while there is room, otherwise every second or third,
  // counting back from the newest month so that it always has its label.
  const labelEvery = Math.ceil(64 / slot);
  const groups = months.map((month, index) =>
    monthGroup(month, index, {
      slot,
      margin,
      yOf,
      labelled: (months.length - 1 - index) % labelEvery === 0,
      bottom: margin.top + plotHeight,
    }),
  );

  const legend = SERIES.map(([key, name], index) => {
    const x = margin.left + index * 90;
    return svg(
      "g",
      {},
      svg("rect", { x, y: 10, width: 14, height: 14, rx: 2, fill: COLOURS[key] }),
      svg("text", { x: x + 20, y: 17, "dominant-baseline": "central" }, name),
    );
  });
  const axes = [
    svg("line", { x1: margin.left, x2: width - margin.right, y1: yOf(0), y2: yOf(0), class: "axis" }),
    svg("text", { x: margin.left + plotWidth / 2, y: height - 8, "text-anchor": "middle", class: "axis-title" }, "月份（服务机构受理过户的月份）"),
    svg(
      "text",
      { x: 16, y: margin.top + plotHeight / 2, "text-anchor": "middle", transform: `rotate(-90 16 ${margin.top + plotHeight / 2})`, class: "axis-title" },
      "过户件数",
    ),
  ];
  return figure("chart-monthly", title, monthlySummary(months), width, height, ticks, axes, groups, legend);
}

function monthGroup(month, index, { slot, margin, yOf, labelled, bottom }) {
  const groupWidth = Math.min(slot * 0.75, 96);
  const barWidth = groupWidth / SERIES.length;
  const start = margin.left + index * slot + (slot - groupWidth) / 2;
  const bars = SERIES.map(([key, name], series) => {
    const value = month[key];
    const x = start + series * barWidth;
    return svg(
      "g",
      {},
      svg(
        "rect",
        { x, y: yOf(value), width: Math.max(barWidth - 2, 1), height: bottom - yOf(value), fill: COLOURS[key] },
        svg("title", {}, `${month.month} ${name} ${value} 件`),
      ),
      // Value labels need a bar at least as wide as two digits.
      value && barWidth >= 16
        ? svg("text", { x: x + (barWidth - 2) / 2, y: yOf(value) - 5, "text-anchor": "middle", class: "value small", "data-series": key }, value)
        : null,
    );
  });
  return svg(
    "g",
    { "data-testid": "month-group", "data-month": month.month },
    bars,
    labelled
      ? svg("text", { x: margin.left + index * slot + slot / 2, y: bottom + 18, "text-anchor": "middle", class: "tick" }, month.month)
      : null,
  );
}

function monthlySummary(months) {
  const busy = months.filter((month) => month.received || month.completed || month.returned);
  const parts = busy.map((month) => `${month.month} 受理 ${month.received} 件，办结 ${month.completed} 件，退件 ${month.returned} 件`);
  const quiet = months.length - busy.length;
  if (quiet) parts.push(`其余 ${quiet} 个月均为 0`);
  return `各月过户件数：${parts.join("；")}。`;
}

// Sum the returned transfers of every row by reason, most frequent first.
function totalsByReason(rows) {
  const counts = new Map();
  rows.forEach((row) =>
    row.returned_by_reason.forEach(({ reason, count }) => {
      counts.set(reason, (counts.get(reason) || 0) + count);
    }),
  );
  return [...counts.entries()]
    .map(([reason, count]) => ({ reason, count }))
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
}

// (c) Returned transfers by reason, as horizontal bars.
export function reasonChart(rows) {
  const title = "退件原因分布";
  const reasons = totalsByReason(rows);
  if (!reasons.length) return emptyChart("chart-reasons", title, "所选月份没有退件。");
  const width = 540;
  const labelWidth = 190;
  const barSpace = width - labelWidth - 60;
  const rowHeight = 34;
  const top = 8;
  const plotHeight = reasons.length * rowHeight;
  const height = top + plotHeight + 50;
  const largest = reasons[0].count;
  const step = tickStep(largest, 4);
  const end = Math.ceil(largest / step) * step;
  const xOf = (value) => labelWidth + (barSpace * value) / end;
  const grid = [];
  for (let value = 0; value <= end; value += step) {
    grid.push(
      svg("line", { x1: xOf(value), x2: xOf(value), y1: top, y2: top + plotHeight, class: "grid" }),
      svg("text", { x: xOf(value), y: top + plotHeight + 16, "text-anchor": "middle", class: "tick" }, value),
    );
  }
  const bars = reasons.map(({ reason, count }, index) => {
    const y = top + index * rowHeight;
    const text = reason || "未填写原因";
    return svg(
      "g",
      { "data-testid": "reason-bar" },
      svg(
        "text",
        { x: labelWidth - 8, y: y + rowHeight / 2, "text-anchor": "end", "dominant-baseline": "central", "data-testid": "reason-name" },
        svg("title", {}, text),
        clip(text, 13),
      ),
      svg("rect", { x: labelWidth, y: y + 6, width: xOf(count) - labelWidth, height: rowHeight - 12, rx: 3, fill: COLOURS.returned }),
      svg(
        "text",
        { x: xOf(count) + 6, y: y + rowHeight / 2, "dominant-baseline": "central", class: "value", "data-testid": "reason-count" },
        `${count} 件`,
      ),
    );
  });
  const axisTitle = svg(
    "text",
    { x: labelWidth + barSpace / 2, y: height - 8, "text-anchor": "middle", class: "axis-title" },
    "退件件数",
  );
  const summary = reasons.map(({ reason, count }) => `${reason || "未填写原因"} ${count} 件`).join("；");
  return figure("chart-reasons", title, `退件原因：${summary}。`, width, height, grid, bars, axisTitle);
}
