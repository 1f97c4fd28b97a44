// yujing dashboard: one page, hash routes, the /api/v1 endpoints with a session cookie.
// zh-CN by default, English on the button; no framework, no build step, no external asset.
"use strict";

const I18N = {
  zh: {
    skip: "跳到正文", "nav.board": "预警看板", "nav.sites": "站点总览", "nav.admin": "规则管理",
    logout: "退出", "red.title": "新的红色预警", "red.open": "查看", "red.ok": "知道了",
    "login.title": "登录", "login.token": "访问令牌", "login.help": "请输入管理员发放的访问令牌（操作员、部门或管理员）。",
    "login.go": "登录", "login.bad": "令牌无效",
    "board.title": "预警看板", level: "级别", status: "状态", kind: "站点类型", department: "部门",
    search: "搜索", all: "全部", "board.count": "共 {n} 条，显示 {m} 条", title: "预警", site: "站点",
    raised: "发布时间", updated: "更新时间", "status.active": "未办结", "board.empty": "没有符合条件的预警",
    "st.open": "待签收", "st.acknowledged": "已签收", "st.handled": "已处置", "st.closed": "已办结", "st.cleared": "已解除",
    overdue: "超时",
    "lv.blue": "蓝色", "lv.yellow": "黄色", "lv.orange": "橙色", "lv.red": "红色",
    "kind.environment": "环境", "kind.construction": "建筑工地", "kind.water": "水利", "kind.tourism": "文旅",
    "sites.title": "站点总览", "sites.map": "站点分布示意图", "sites.elsewhere": "图外站点", devices: "设备", firing: "正在预警",
    latest: "最新数据", "dev.online": "在线", "dev.offline": "离线", "dev.unseen": "未上报",
    "stream.playing": "视频正常", "stream.lost": "视频中断", "stream.connecting": "连接中",
    "site.charts": "近两小时数据", "site.warnings": "未办结预警", "site.none": "暂无", "site.events": "摄像机事件",
    "site.thresholds": "虚线为规则阈值",
    "w.message": "内容", "w.value": "数值", "w.threshold": "阈值", "w.window": "时间窗", "w.evidence": "依据",
    "w.timeline": "处置时间线", "w.deadlines": "时限", "w.ack_due": "签收时限", "w.handle_due": "处置时限",
    "w.ack": "签收", "w.feedback": "反馈处置情况", "w.measures": "采取的措施", "w.result": "处置结果",
    "w.submit": "提交反馈", "w.close": "办结", "w.note": "备注（可选）", "w.done": "已提交",
    "w.forbidden": "无权查看该预警：它不属于您的部门。", "w.notfound": "没有这条预警。",
    "w.deliveries": "推送记录", "w.channel": "渠道", "w.state": "状态", "w.attempts": "次数",
    "tl.raised": "发布", "tl.escalated": "升级", "tl.de-escalated": "降级", "tl.cleared": "解除", "tl.reopened": "重新发布",
    "tl.delivered": "已推送", "tl.delivery_failed": "推送失败", "tl.delivery_dead": "推送放弃",
    "tl.acknowledged": "签收", "tl.feedback": "反馈", "tl.closed": "办结", "tl.reminder": "催办",
    "tl.supervisor_notified": "抄送督查",
    "admin.title": "规则管理", "admin.reload": "最近一次加载", "admin.reload.ok": "成功", "admin.reload.bad": "失败（旧规则继续运行）",
    "admin.reload.now": "重新加载配置", "admin.rules": "已加载的规则", "admin.tests": "规则测试",
    "admin.tests.run": "运行规则测试", "admin.tests.result": "通过 {p} 个，失败 {f} 个",
    "admin.file": "文件", "admin.window": "时间窗", "admin.kept": "保留状态 {k} 条，重置 {r} 条",
    "nav.tickets": "热线工单", "tk.title": "12345热线工单", "tk.unmatched": "只看未匹配站点的工单", "tk.number": "工单号",
    "tk.received": "受理时间", "tk.category": "类别", "tk.object": "被反映对象", "tk.content": "内容", "tk.problems": "问题",
    "tk.none": "暂无工单", "tk.nosite": "未匹配", "tk.assign": "分配到站点", "tk.assign.go": "分配", "tk.assigned": "已分配",
    "tk.by.credit_code": "按信用代码", "tk.by.site": "按站点编号", "tk.by.keyword": "按地址关键词", "tk.by.manual": "人工分配",
    "site.tickets.title": "12345热线工单",
    "nav.report": "部门考评", "rp.title": "部门预警处置考评", "rp.from": "开始日期", "rp.to": "结束日期", "rp.go": "统计",
    "rp.total": "预警数", "rp.ack": "签收用时（分钟）中位数/P90", "rp.handle": "处置用时（分钟）中位数/P90",
    "rp.overdue": "超时", "rp.escal": "升级", "rp.feedback": "反馈完整率", "rp.acked": "已签收", "rp.none": "期间内没有预警",
    "rp.chart": "签收用时（蓝：中位数，橙：P90）",
    loading: "加载中…", "live.on": "实时连接", "live.off": "实时连接中断，正在重连", error: "出错了",
  },
  en: {
    skip: "Skip to content", "nav.board": "Warnings", "nav.sites": "Sites", "nav.admin": "Rules",
    logout: "Log out", "red.title": "New RED warning", "red.open": "Open", "red.ok": "Got it",
    "login.title": "Log in", "login.token": "Access token", "login.help": "Enter the access token your administrator gave you (operator, department or admin).",
    "login.go": "Log in", "login.bad": "Unknown token",
    "board.title": "Warnings", level: "Level", status: "Status", kind: "Site kind", department: "Department",
    search: "Search", all: "All", "board.count": "{m} of {n} shown", title: "Warning", site: "Site",
    raised: "Raised", updated: "Updated", "status.active": "Not closed", "board.empty": "No warning matches",
    "st.open": "Open", "st.acknowledged": "Acknowledged", "st.handled": "Handled", "st.closed": "Closed", "st.cleared": "Cleared",
    overdue: "overdue",
    "lv.blue": "Blue", "lv.yellow": "Yellow", "lv.orange": "Orange", "lv.red": "Red",
    "kind.environment": "Environment", "kind.construction": "Construction", "kind.water": "Water", "kind.tourism": "Tourism",
    "sites.title": "Sites", "sites.map": "Schematic map of the sites", "sites.elsewhere": "Elsewhere", devices: "Devices", firing: "Firing",
    latest: "Latest", "dev.online": "online", "dev.offline": "offline", "dev.unseen": "not heard from",
    "stream.playing": "video playing", "stream.lost": "video lost", "stream.connecting": "connecting",
    "site.charts": "The last two hours", "site.warnings": "Warnings not closed", "site.none": "None", "site.events": "Camera events",
    "site.thresholds": "Dashed lines: rule thresholds",
    "w.message": "Message", "w.value": "Value", "w.threshold": "Threshold", "w.window": "Window", "w.evidence": "Evidence",
    "w.timeline": "Timeline", "w.deadlines": "Deadlines", "w.ack_due": "Acknowledge by", "w.handle_due": "Handle by",
    "w.ack": "Acknowledge", "w.feedback": "Report what was done", "w.measures": "Measures taken", "w.result": "Result",
    "w.submit": "Send the report", "w.close": "Close", "w.note": "Note (optional)", "w.done": "Sent",
    "w.forbidden": "You may not open this warning: it is not your department's.", "w.notfound": "No such warning.",
    "w.deliveries": "Deliveries", "w.channel": "Channel", "w.state": "State", "w.attempts": "Attempts",
    "tl.raised": "raised", "tl.escalated": "escalated", "tl.de-escalated": "de-escalated", "tl.cleared": "cleared", "tl.reopened": "reopened",
    "tl.delivered": "delivered", "tl.delivery_failed": "delivery failed", "tl.delivery_dead": "delivery given up",
    "tl.acknowledged": "acknowledged", "tl.feedback": "feedback", "tl.closed": "closed", "tl.reminder": "reminder",
    "tl.supervisor_notified": "supervisor notified",
    "admin.title": "Rules", "admin.reload": "Last (re)load", "admin.reload.ok": "ok", "admin.reload.bad": "failed (the previous rules keep running)",
    "admin.reload.now": "Reload the configuration", "admin.rules": "Loaded rules", "admin.tests": "Rule tests",
    "admin.tests.run": "Run the rule tests", "admin.tests.result": "{p} passed, {f} failed",
    "admin.file": "File", "admin.window": "Window", "admin.kept": "{k} kept their state, {r} started afresh",
    "nav.tickets": "Hotline", "tk.title": "12345 hotline tickets", "tk.unmatched": "Only tickets without a site", "tk.number": "Number",
    "tk.received": "Received", "tk.category": "Category", "tk.object": "Reported", "tk.content": "Content", "tk.problems": "Problems",
    "tk.none": "No tickets", "tk.nosite": "no site", "tk.assign": "Assign to site", "tk.assign.go": "Assign", "tk.assigned": "Assigned",
    "tk.by.credit_code": "by credit code", "tk.by.site": "by site id", "tk.by.keyword": "by address", "tk.by.manual": "by hand",
    "site.tickets.title": "12345 hotline tickets",
    "nav.report": "Report", "rp.title": "Department response report", "rp.from": "From", "rp.to": "To", "rp.go": "Show",
    "rp.total": "Warnings", "rp.ack": "Minutes to acknowledge, median/p90", "rp.handle": "Minutes to handle, median/p90",
    "rp.overdue": "Overdue", "rp.escal": "Escalations", "rp.feedback": "Feedback complete", "rp.acked": "Acknowledged", "rp.none": "No warnings in the period",
    "rp.chart": "Minutes to acknowledge (blue: median, orange: p90)",
    loading: "Loading…", "live.on": "live", "live.off": "live stream lost, reconnecting", error: "Error",
  },
};
const LEVELS = ["red", "orange", "yellow", "blue"];
const STATUSES = ["open", "acknowledged", "handled", "closed", "cleared"];
const KINDS = ["environment", "construction", "water", "tourism"];

const S = {
  lang: localStorage.getItem("yj.lang") === "en" ? "en" : "zh",
  me: null,
  warnings: new Map(),
  fresh: new Set(),
  filters: { level: "", status: "active", kind: "", department: "", q: "" },
  stream: null,
};

function t(key, vars) {
  let s = (I18N[S.lang] && I18N[S.lang][key]) || I18N.zh[key] || key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, v);
  return s;
}
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const $ = (sel, root = document) => root.querySelector(sel);
function main() { return $("#main"); }
function time(s) { return s ? String(s).replace("T", " ").replace(/(\+|Z).*$/, "").slice(0, 19) : ""; }
function lv(level) { return `<span class="lv lv-${esc(level)}">${esc(t("lv." + level))}</span>`; }
function titleOf(w) { return S.lang === "en" && w.title_en ? w.title_en : w.title; }
function messageOf(w) { return S.lang === "en" && w.message_en ? w.message_en : w.message; }
function depName(id) {
  const d = (S.me?.departments || []).find((x) => x.id === id);
  return d ? (S.lang === "en" && d.name_en ? d.name_en : d.name) : id;
}
function status(w) {
  const over = w.overdue ? ` <span class="st st-overdue">${esc(t("overdue"))}</span>` : "";
  return `<span class="st st-${esc(w.status)}">${esc(t("st." + w.status))}</span>${over}`;
}

async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if ((opts.method || "GET") !== "GET" && S.me) headers["X-CSRF-Token"] = S.me.csrf;
  const r = await fetch(path, {
    method: opts.method || "GET", headers, credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (r.status === 401 && path !== "/ui/login" && path !== "/ui/session") { S.me = null; showLogin(); }
  return { status: r.status, ok: r.ok, data };
}

// ---- chrome: language, navigation, login ----

function applyChrome() {
  document.documentElement.lang = S.lang === "en" ? "en" : "zh-CN";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  $("#lang").textContent = S.lang === "en" ? "中文" : "English";
  $("#lang").setAttribute("aria-label", S.lang === "en" ? "切换到中文" : "Switch to English");
  const logged = !!S.me;
  $("#nav").hidden = !logged;
  $("#logout").hidden = !logged;
  $("#user").textContent = logged ? `${S.me.name} · ${S.me.department ? depName(S.me.department) : S.me.role}` : "";
  for (const a of document.querySelectorAll("[data-role=staff]")) a.hidden = !logged || !!S.me.department;
  const route = location.hash.split("?")[0].split("/")[1] || "board";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#/${route}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function showLogin(message) {
  closeStream();
  applyChrome();
  document.title = `${t("login.title")} · yujing`;
  main().innerHTML = `
    <div class="card login">
      <h1>${esc(t("login.title"))}</h1>
      <p class="muted" id="login-help">${esc(t("login.help"))}</p>
      <form class="form" id="login-form">
        <label for="token">${esc(t("login.token"))}</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required aria-describedby="login-help">
        <div id="login-error" role="alert">${message ? `<p class="error">${esc(message)}</p>` : ""}</div>
        <button class="primary" type="submit">${esc(t("login.go"))}</button>
      </form>
    </div>`;
  $("#token").focus();
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("/ui/login", { method: "POST", body: { token: $("#token").value.trim() } });
    if (!r.ok) {
      $("#login-error").innerHTML = `<p class="error">${esc(t("login.bad"))}</p>`;
      return;
    }
    S.me = r.data;
    if (!location.hash || location.hash === "#/login") location.hash = "#/board";
    start();
  });
}

// ---- the live stream and the red alert ----

function openStream() {
  if (S.stream) return;
  const es = new EventSource("/api/v1/stream");
  S.stream = es;
  es.onopen = () => { $("#live").textContent = "● " + t("live.on"); };
  es.onerror = () => { $("#live").textContent = "○ " + t("live.off"); };
  const take = (raw, isTransition) => {
    let w;
    try { w = JSON.parse(raw); } catch (_) { return; }
    const known = S.warnings.get(w.id) || {};
    const merged = Object.assign({}, known, w);
    if (isTransition) {
      if (w.transition === "clear") merged.status = "cleared";
      else if (w.transition === "raise" && !known.status) merged.status = "open";
    }
    S.warnings.set(w.id, merged);
    S.fresh.add(w.id);
    if (isTransition && w.level === "red" && (w.transition === "raise" || w.transition === "escalate")) redAlert(merged);
    if (currentRoute() === "board") renderBoardRows();
  };
  es.addEventListener("transition", (e) => take(e.data, true));
  es.addEventListener("update", (e) => take(e.data, false));
}
function closeStream() {
  if (S.stream) { S.stream.close(); S.stream = null; }
  $("#live").textContent = "";
}

function redAlert(w) {
  const box = $("#red");
  $("#red-text").textContent = `${w.site?.name || ""} ${titleOf(w)} — ${messageOf(w)}`;
  $("#red-open").setAttribute("href", `#/warning/${encodeURIComponent(w.id)}`);
  box.hidden = false;
  document.title = `🔴 ${t("red.title")} · yujing`;
  $("#red-ok").focus();
}
function dismissRed() {
  $("#red").hidden = true;
  document.title = "yujing";
}

// ---- views ----

function currentRoute() { return location.hash.split("/")[1] || "board"; }

async function loadWarnings() {
  const r = await api("/api/v1/warnings?limit=1000");
  if (!r.ok) return;
  S.warnings = new Map(r.data.items.map((w) => [w.id, w]));
}

function filtered() {
  const f = S.filters;
  const q = f.q.trim().toLowerCase();
  return [...S.warnings.values()]
    .filter((w) => !f.level || w.level === f.level)
    .filter((w) => (f.status === "active" ? w.status !== "closed" : !f.status || w.status === f.status))
    .filter((w) => !f.kind || w.site?.kind === f.kind)
    .filter((w) => !f.department || (w.departments || []).includes(f.department))
    .filter((w) => !q || `${w.title} ${w.title_en || ""} ${w.site?.name || ""} ${w.message} ${w.rule}`.toLowerCase().includes(q))
    .sort((a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level) || String(b.raised_at).localeCompare(String(a.raised_at)));
}

function options(values, current, label) {
  return [`<option value="">${esc(t("all"))}</option>`]
    .concat(values.map(([v, text]) => `<option value="${esc(v)}"${v === current ? " selected" : ""}>${esc(text ?? label(v))}</option>`))
    .join("");
}

async function board() {
  document.title = `${t("board.title")} · yujing`;
  main().innerHTML = `<h1>${esc(t("board.title"))}</h1><p class="muted">${esc(t("loading"))}</p>`;
  const gen = S.gen;
  await loadWarnings();
  if (gen !== S.gen) return; // the user moved on while this page's data was loading
  const f = S.filters;
  const deps = (S.me.departments || []).map((d) => [d.id, depName(d.id)]);
  main().innerHTML = `
    <h1>${esc(t("board.title"))}</h1>
    <form class="filters" id="filters" role="search">
      <label>${esc(t("level"))}<select id="f-level">${options(LEVELS.map((l) => [l, t("lv." + l)]), f.level)}</select></label>
      <label>${esc(t("status"))}<select id="f-status"><option value="active"${f.status === "active" ? " selected" : ""}>${esc(t("status.active"))}</option>${options(STATUSES.map((s) => [s, t("st." + s)]), f.status)}</select></label>
      <label>${esc(t("kind"))}<select id="f-kind">${options(KINDS.map((k) => [k, t("kind." + k)]), f.kind)}</select></label>
      ${S.me.department ? "" : `<label>${esc(t("department"))}<select id="f-department">${options(deps, f.department)}</select></label>`}
      <label>${esc(t("search"))}<input id="f-q" type="search" value="${esc(f.q)}"></label>
    </form>
    <p class="muted" id="count" aria-live="polite"></p>
    <table>
      <thead><tr><th scope="col">${esc(t("level"))}</th><th scope="col">${esc(t("title"))}</th><th scope="col">${esc(t("site"))}</th><th scope="col">${esc(t("department"))}</th><th scope="col">${esc(t("status"))}</th><th scope="col">${esc(t("raised"))}</th></tr></thead>
      <tbody id="rows"></tbody>
    </table>`;
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  for (const id of ["level", "status", "kind", "department", "q"]) {
    const el = $(`#f-${id}`);
    if (!el) continue;
    el.addEventListener(id === "q" ? "input" : "change", () => { S.filters[id] = el.value; renderBoardRows(); });
  }
  renderBoardRows();
}

function renderBoardRows() {
  const body = $("#rows");
  if (!body) return;
  const list = filtered();
  const shown = list.slice(0, 1000);
  $("#count").textContent = t("board.count", { n: S.warnings.size, m: shown.length });
  body.innerHTML = shown.length
    ? shown.map((w) => `<tr class="${S.fresh.has(w.id) ? "new" : ""}" data-id="${esc(w.id)}">
        <td>${lv(w.level)}</td>
        <td><a href="#/warning/${encodeURIComponent(w.id)}">${esc(titleOf(w))}</a><div class="muted">${esc(messageOf(w))}</div></td>
        <td><a href="#/site/${encodeURIComponent(w.site?.id || "")}">${esc(w.site?.name || "")}</a></td>
        <td>${(w.departments || []).map((d) => esc(depName(d))).join("、")}</td>
        <td>${status(w)}</td>
        <td>${esc(time(w.raised_at))}</td></tr>`).join("")
    : `<tr><td colspan="6" class="muted">${esc(t("board.empty"))}</td></tr>`;
  S.fresh.clear();
}

function spark(points, w = 90, h = 22) {
  if (!points || points.length < 2) return "";
  const vs = points.map((p) => p[1]);
  const lo = Math.min(...vs), hi = Math.max(...vs), span = hi - lo || 1;
  const d = vs.map((v, i) => `${((i / (vs.length - 1)) * w).toFixed(1)},${(h - 2 - ((v - lo) / span) * (h - 4)).toFixed(1)}`).join(" ");
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" aria-hidden="true"><polyline fill="none" stroke="#0a4fb0" stroke-width="1.5" points="${d}"/></svg>`;
}

function worst(firing) {
  const ls = (firing || []).map((f) => f[1]);
  return LEVELS.find((l) => ls.includes(l)) || "";
}

function siteMap(items) {
  const located = items.filter((s) => s.location && (s.location.lat || s.location.lon));
  if (!located.length) return "";
  // the map shows the county: sites far from the others (reference stations elsewhere) are
  // listed beside it instead of squeezing the county into a corner
  const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const mlat = median(located.map((s) => s.location.lat)), mlon = median(located.map((s) => s.location.lon));
  const near = (s) => Math.abs(s.location.lat - mlat) < 1.5 && Math.abs(s.location.lon - mlon) < 1.5;
  const pts = located.filter(near), away = located.filter((s) => !near(s));
  const lats = pts.map((s) => s.location.lat), lons = pts.map((s) => s.location.lon);
  const [a, b, c, d] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  const W = 900, H = 420, pad = 30;
  const x = (lon) => pad + ((lon - c) / (d - c || 1)) * (W - 2 * pad - 140);
  const y = (lat) => H - pad - ((lat - a) / (b - a || 1)) * (H - 2 * pad);
  const colour = { red: "#c4161c", orange: "#b54708", yellow: "#f2c200", blue: "#1c5fb8", "": "#6e7781" };
  const marks = pts.map((s) => {
    const l = worst(s.firing);
    const name = S.lang === "en" && s.name_en ? s.name_en : s.name;
    return `<a href="#/site/${encodeURIComponent(s.id)}" aria-label="${esc(name)}${l ? " " + esc(t("lv." + l)) : ""}">
      <circle cx="${x(s.location.lon).toFixed(1)}" cy="${y(s.location.lat).toFixed(1)}" r="${l ? 9 : 6}" fill="${colour[l]}" stroke="#fff" stroke-width="2"/>
      <text x="${(x(s.location.lon) + 11).toFixed(1)}" y="${(y(s.location.lat) + 4).toFixed(1)}">${esc(name)}</text></a>`;
  }).join("");
  const elsewhere = away.length
    ? `<p class="muted">${esc(t("sites.elsewhere"))}: ${away.map((s) => `<a href="#/site/${encodeURIComponent(s.id)}">${esc(S.lang === "en" && s.name_en ? s.name_en : s.name)}</a>`).join("、")}</p>`
    : "";
  return `<svg class="map" viewBox="0 0 ${W} ${H}" role="group" aria-label="${esc(t("sites.map"))}">${marks}</svg>${elsewhere}`;
}

function deviceChips(d) {
  const cam = d.stream ? ` <span class="chip chip-${esc(d.stream.state)}">${esc(t("stream." + d.stream.state))}</span>` : "";
  return `<span class="chip chip-${esc(d.status)}">${esc(d.id)} · ${esc(t("dev." + d.status))}</span>${cam}`;
}

async function sites() {
  document.title = `${t("sites.title")} · yujing`;
  main().innerHTML = `<h1>${esc(t("sites.title"))}</h1><p class="muted">${esc(t("loading"))}</p>`;
  const gen = S.gen;
  const r = await api("/api/v1/sites");
  if (gen !== S.gen) return; // the user moved on while this page's data was loading
  if (!r.ok) return failed(r);
  const items = r.data.items;
  main().innerHTML = `
    <h1>${esc(t("sites.title"))}</h1>
    <div class="card">${siteMap(items)}</div>
    <table>
      <thead><tr><th scope="col">${esc(t("site"))}</th><th scope="col">${esc(t("kind"))}</th><th scope="col">${esc(t("firing"))}</th><th scope="col">${esc(t("devices"))}</th><th scope="col">${esc(t("latest"))}</th></tr></thead>
      <tbody>${items.map((s) => `<tr>
        <td><a href="#/site/${encodeURIComponent(s.id)}">${esc(S.lang === "en" && s.name_en ? s.name_en : s.name)}</a></td>
        <td>${esc(t("kind." + s.kind))}</td>
        <td>${(s.firing || []).map((f) => lv(f[1])).join(" ")}</td>
        <td>${s.devices.map(deviceChips).join("")}</td>
        <td>${s.devices.flatMap((d) => d.readings.slice(0, 3).map((x) => `<div>${esc(x.metric)} <strong>${esc(round(x.value))}</strong> ${spark(x.points)}</div>`)).join("")}</td>
      </tr>`).join("")}</tbody>
    </table>`;
}

function round(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toFixed(2);
}

function chart(title, series, thresholds) {
  const W = 640, H = 200, L = 48, R = 10, T = 12, B = 24;
  const pts = series.points || [];
  if (pts.length < 2) return "";
  const xs = pts.map((p) => p[0]), vs = pts.map((p) => p[1]);
  const lines = thresholds.flatMap((th) => Object.entries(th.levels).map(([level, v]) => ({ level, v, rule: th.rule })));
  const all = vs.concat(lines.map((l) => l.v));
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const X = (x) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const colour = { red: "#c4161c", orange: "#b54708", yellow: "#b38f00", blue: "#1c5fb8" };
  const th = lines.map((l) => `<line x1="${L}" x2="${W - R}" y1="${Y(l.v).toFixed(1)}" y2="${Y(l.v).toFixed(1)}" stroke="${colour[l.level]}" stroke-dasharray="6 4"><title>${esc(l.rule)} ${esc(t("lv." + l.level))} ${esc(l.v)}</title></line>
    <text x="${W - R - 4}" y="${(Y(l.v) - 3).toFixed(1)}" text-anchor="end" fill="${colour[l.level]}">${esc(t("lv." + l.level))} ${esc(round(l.v))}</text>`).join("");
  const line = pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" ");
  const tick = (ms) => new Date(ms).toTimeString().slice(0, 5);
  return `<figure class="card"><figcaption><strong>${esc(title)}</strong></figcaption>
    <svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">
      <line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/><line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>
      <text x="${L - 4}" y="${T + 8}" text-anchor="end">${esc(round(hi))}</text><text x="${L - 4}" y="${H - B}" text-anchor="end">${esc(round(lo))}</text>
      <text x="${L}" y="${H - 6}">${tick(x0)}</text><text x="${W - R}" y="${H - 6}" text-anchor="end">${tick(x1)}</text>
      ${th}<polyline fill="none" stroke="#0a4fb0" stroke-width="2" points="${line}"/>
    </svg></figure>`;
}

async function site(id) {
  main().innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
  const gen = S.gen;
  const r = await api(`/api/v1/sites/${encodeURIComponent(id)}`);
  if (gen !== S.gen) return; // the user moved on while this page's data was loading
  if (!r.ok) return failed(r);
  const s = r.data;
  const name = S.lang === "en" && s.name_en ? s.name_en : s.name;
  document.title = `${name} · yujing`;
  const charts = s.devices.flatMap((d) => d.readings.map((x) => chart(`${d.id} · ${x.metric}`, x, (s.thresholds || []).filter((th) => th.metric === x.metric)))).join("");
  const events = s.devices.flatMap((d) => (d.events || []).map((e) => `<tr><td>${esc(d.id)}</td><td>${esc(e.topic)}</td><td>${esc(e.value)}</td><td>${esc(time(e.ts))}</td></tr>`)).join("");
  main().innerHTML = `
    <h1>${esc(name)} <span class="muted">${esc(t("kind." + s.kind))}</span></h1>
    <div class="card"><dl class="kv">
      <dt>${esc(t("department"))}</dt><dd>${s.departments.map((d) => esc(depName(d))).join("、")}</dd>
      <dt>${esc(t("devices"))}</dt><dd>${s.devices.map(deviceChips).join("")}</dd>
      <dt>${esc(t("firing"))}</dt><dd>${(s.firing || []).map((f) => `${lv(f[1])} ${esc(f[0])}`).join(" ") || esc(t("site.none"))}</dd>
    </dl></div>
    <h2>${esc(t("site.warnings"))}</h2>
    ${s.warnings.length ? `<table><thead><tr><th scope="col">${esc(t("level"))}</th><th scope="col">${esc(t("title"))}</th><th scope="col">${esc(t("status"))}</th><th scope="col">${esc(t("raised"))}</th></tr></thead><tbody>
      ${s.warnings.map((w) => `<tr><td>${lv(w.level)}</td><td><a href="#/warning/${encodeURIComponent(w.id)}">${esc(titleOf(w))}</a></td><td>${status(w)}</td><td>${esc(time(w.raised_at))}</td></tr>`).join("")}</tbody></table>` : `<p class="muted">${esc(t("site.none"))}</p>`}
    <h2>${esc(t("site.charts"))}</h2><p class="muted">${esc(t("site.thresholds"))}</p>
    <div class="grid">${charts || `<p class="muted">${esc(t("site.none"))}</p>`}</div>
    ${events ? `<h2>${esc(t("site.events"))}</h2><table><tbody>${events}</tbody></table>` : ""}
    <h2>${esc(t("site.tickets.title"))}</h2><div id="site-tickets"></div>`;
  const tk = await api(`/api/v1/hotline/tickets?site=${encodeURIComponent(id)}&limit=50`);
  if (tk.ok && $("#site-tickets")) $("#site-tickets").innerHTML = ticketTable(tk.data.items, false, "");
}

async function warning(id) {
  main().innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
  const gen = S.gen;
  const r = await api(`/api/v1/warnings/${encodeURIComponent(id)}`);
  if (gen !== S.gen) return; // the user moved on while this page's data was loading
  if (r.status === 403) { main().innerHTML = `<h1>${esc(t("error"))}</h1><p class="error" role="alert">${esc(t("w.forbidden"))}</p>`; return; }
  if (r.status === 404) { main().innerHTML = `<h1>${esc(t("error"))}</h1><p class="error" role="alert">${esc(t("w.notfound"))}</p>`; return; }
  if (!r.ok) return failed(r);
  const w = r.data;
  document.title = `${titleOf(w)} · yujing`;
  const mine = S.me.department && (w.departments || []).includes(S.me.department);
  const ev = w.evidence || {};
  const agg = ev.aggregates ? Object.entries(ev.aggregates).map(([k, v]) => `${esc(k)} ${esc(round(v))}`).join("，") : "";
  let forms = "";
  if (mine && w.status === "open") {
    forms = `<div class="card"><form class="form" id="ack-form"><label for="ack-note">${esc(t("w.note"))}</label><input id="ack-note" name="note"><button class="primary" type="submit">${esc(t("w.ack"))}</button></form></div>`;
  } else if (mine && w.status === "acknowledged") {
    forms = `<div class="card"><h2>${esc(t("w.feedback"))}</h2><form class="form" id="feedback-form">
      <label for="measures">${esc(t("w.measures"))}</label><textarea id="measures" name="measures" required></textarea>
      <label for="result">${esc(t("w.result"))}</label><textarea id="result" name="result" required></textarea>
      <button class="primary" type="submit">${esc(t("w.submit"))}</button></form></div>`;
  } else if (mine && w.status === "handled") {
    forms = `<div class="card"><form class="form" id="close-form"><label for="close-note">${esc(t("w.note"))}</label><input id="close-note" name="note"><button class="primary" type="submit">${esc(t("w.close"))}</button></form></div>`;
  }
  main().innerHTML = `
    <h1>${lv(w.level)} ${esc(titleOf(w))}</h1>
    <div class="card"><dl class="kv">
      <dt>${esc(t("site"))}</dt><dd><a href="#/site/${encodeURIComponent(w.site?.id || "")}">${esc(w.site?.name || "")}</a></dd>
      <dt>${esc(t("w.message"))}</dt><dd>${esc(messageOf(w))}</dd>
      <dt>${esc(t("status"))}</dt><dd>${status(w)}</dd>
      <dt>${esc(t("department"))}</dt><dd>${(w.departments || []).map((d) => esc(depName(d))).join("、")}</dd>
      <dt>${esc(t("w.value"))}</dt><dd>${esc(typeof w.value === "number" ? round(w.value) : w.value)} (${esc(t("w.threshold"))} ${esc(w.threshold)})</dd>
      <dt>${esc(t("w.window"))}</dt><dd>${esc(time(w.window?.start))} – ${esc(time(w.window?.end))}</dd>
      <dt>${esc(t("w.evidence"))}</dt><dd>${esc(ev.window || "")} ${agg} ${(ev.devices || []).map((d) => `<span class="chip">${esc(d)}</span>`).join("")}</dd>
      <dt>${esc(t("w.ack_due"))}</dt><dd>${esc(time(w.deadlines?.ack))}</dd>
      <dt>${esc(t("w.handle_due"))}</dt><dd>${esc(time(w.deadlines?.handle))}</dd>
    </dl></div>
    <div id="act-result" role="status"></div>
    ${forms}
    <h2>${esc(t("w.timeline"))}</h2>
    <ol class="timeline" id="timeline">${(w.timeline || []).map((e) => `<li><span class="k">${esc(t("tl." + e.kind))}</span> · ${esc(time(e.at))} · ${esc(e.actor || "")}<div class="muted">${esc(detailText(e.detail))}</div></li>`).join("")}</ol>
    <h2>${esc(t("w.deliveries"))}</h2>
    <table><thead><tr><th scope="col">${esc(t("department"))}</th><th scope="col">${esc(t("w.channel"))}</th><th scope="col">${esc(t("w.state"))}</th><th scope="col">${esc(t("w.attempts"))}</th></tr></thead>
    <tbody>${(w.deliveries || []).map((d) => `<tr><td>${esc(depName(d.department))}</td><td>${esc(d.channel)}</td><td>${esc(d.state)}</td><td>${esc(d.attempts)}</td></tr>`).join("")}</tbody></table>`;
  const act = async (path, body) => {
    const res = await api(`/api/v1/warnings/${encodeURIComponent(id)}/${path}`, { method: "POST", body });
    if (res.ok) warning(id);
    else $("#act-result").innerHTML = `<p class="error" role="alert">${esc(res.data?.error || t("error"))}</p>`;
  };
  $("#ack-form")?.addEventListener("submit", (e) => { e.preventDefault(); act("ack", { note: $("#ack-note").value || undefined }); });
  $("#feedback-form")?.addEventListener("submit", (e) => { e.preventDefault(); act("feedback", { measures: $("#measures").value, result: $("#result").value }); });
  $("#close-form")?.addEventListener("submit", (e) => { e.preventDefault(); act("close", { note: $("#close-note").value || undefined }); });
}

function detailText(d) {
  if (!d) return "";
  if (typeof d === "string") return d;
  if (d.message) return d.message;
  if (d.measures || d.result) return [d.measures, d.result].filter(Boolean).join(" — ");
  if (d.channel) return [d.channel, d.department && depName(d.department), d.status ?? d.error].filter(Boolean).join(" · ");
  return Object.entries(d).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ");
}

function ticketRows(items, staffView, siteOptions) {
  return items.map((k) => `<tr data-number="${esc(k.number)}">
    <td><code>${esc(k.number)}</code><div class="muted">${esc(k.channel || "")}</div></td>
    <td>${esc(time(k.received_at))}</td>
    <td>${esc(k.category || "")}<div class="muted">${esc(k.concern)}</div></td>
    <td>${k.site ? `<a href="#/site/${encodeURIComponent(k.site)}">${esc(k.site)}</a><div class="muted">${esc(t("tk.by." + k.matched_by))}</div>` : `<span class="st st-open">${esc(t("tk.nosite"))}</span>`}
      ${!k.site && staffView ? `<form class="assign"><label>${esc(t("tk.assign"))}<select name="site">${siteOptions}</select></label><button type="submit">${esc(t("tk.assign.go"))}</button></form>` : ""}</td>
    <td>${esc(k.enterprise || "")}<div class="muted">${esc(k.credit_code || "")} ${esc(k.industry || "")}</div></td>
    <td>${esc(k.content || "")}<div class="muted">${esc(k.status || "")} ${esc(k.result || "")}</div></td>
    <td>${(k.problems || []).map((p) => `<div class="error">${esc(p)}</div>`).join("")}</td></tr>`).join("");
}

function ticketTable(items, staffView, siteOptions) {
  if (!items.length) return `<p class="muted">${esc(t("tk.none"))}</p>`;
  return `<table><thead><tr><th scope="col">${esc(t("tk.number"))}</th><th scope="col">${esc(t("tk.received"))}</th><th scope="col">${esc(t("tk.category"))}</th><th scope="col">${esc(t("site"))}</th><th scope="col">${esc(t("tk.object"))}</th><th scope="col">${esc(t("tk.content"))}</th><th scope="col">${esc(t("tk.problems"))}</th></tr></thead>
    <tbody id="ticket-rows">${ticketRows(items, staffView, siteOptions)}</tbody></table>`;
}

async function tickets(notice) {
  document.title = `${t("tk.title")} · yujing`;
  const staffView = !S.me.department;
  const only = new URLSearchParams(location.hash.split("?")[1] || "").get("unmatched") === "1";
  main().innerHTML = `<h1>${esc(t("tk.title"))}</h1><p class="muted">${esc(t("loading"))}</p>`;
  const gen = S.gen;
  const [r, sitesRes] = await Promise.all([
    api(`/api/v1/hotline/tickets?limit=500${only ? "&unmatched=true" : ""}`),
    staffView ? api("/api/v1/sites") : Promise.resolve({ ok: true, data: { items: [] } }),
  ]);
  if (gen !== S.gen) return; // the user moved on while this page's data was loading
  if (!r.ok) return failed(r);
  const siteOptions = (sitesRes.data?.items || []).map((x) => `<option value="${esc(x.id)}">${esc(x.name)} (${esc(x.id)})</option>`).join("");
  main().innerHTML = `<h1>${esc(t("tk.title"))}</h1>
    ${staffView ? `<p><label><input type="checkbox" id="only-unmatched"${only ? " checked" : ""}> ${esc(t("tk.unmatched"))}</label></p>` : ""}
    <div id="assign-result" role="status">${notice || ""}</div>
    ${ticketTable(r.data.items, staffView, siteOptions)}`;
  $("#only-unmatched")?.addEventListener("change", (e) => { location.hash = e.target.checked ? "#/tickets?unmatched=1" : "#/tickets"; });
  for (const f of document.querySelectorAll("form.assign")) {
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const number = f.closest("tr").dataset.number;
      const res = await api(`/api/v1/hotline/tickets/${encodeURIComponent(number)}/assign`, { method: "POST", body: { site: f.site.value } });
      if (res.ok) tickets(`<p class="ok">${esc(t("tk.assigned"))}: ${esc(number)} → ${esc(res.data.site)}</p>`);
      else $("#assign-result").innerHTML = `<p class="error" role="alert">${esc(res.data?.error || t("error"))}</p>`;
    });
  }
}

async function report() {
  document.title = `${t("rp.title")} · yujing`;
  const q = new URLSearchParams(location.hash.split("?")[1] || "");
  const day = (d) => d.toISOString().slice(0, 10);
  const from = q.get("from") || day(new Date(Date.now() - 30 * 86400000));
  // the end is exclusive and read in the service's time zone: two UTC days ahead covers today
  // there whatever the browser's clock zone (one day ahead missed the evening in UTC+8)
  const to = q.get("to") || day(new Date(Date.now() + 2 * 86400000));
  main().innerHTML = `<h1>${esc(t("rp.title"))}</h1><p class="muted">${esc(t("loading"))}</p>`;
  const gen = S.gen;
  const r = await api(`/api/v1/report?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  if (gen !== S.gen) return; // the user moved on while this page's data was loading
  if (!r.ok) return failed(r);
  const rows = r.data.departments;
  const opt = (v) => (v === null || v === undefined ? "—" : v);
  const max = Math.max(1, ...rows.map((x) => x.ack_minutes_p90 || 0));
  const bars = rows.map((x, i) => `<text x="0" y="${22 + i * 28}">${esc(x.name)}</text>
    <rect x="190" y="${12 + i * 28}" width="${((x.ack_minutes_median || 0) / max * 400).toFixed(1)}" height="10" fill="#1c5fb8"/>
    <rect x="190" y="${24 + i * 28}" width="${((x.ack_minutes_p90 || 0) / max * 400).toFixed(1)}" height="6" fill="#b54708"/>`).join("");
  main().innerHTML = `<h1>${esc(t("rp.title"))}</h1>
    <form class="filters" id="rp-form">
      <label>${esc(t("rp.from"))}<input type="date" id="rp-from" value="${esc(from)}"></label>
      <label>${esc(t("rp.to"))}<input type="date" id="rp-to" value="${esc(to)}"></label>
      <button type="submit">${esc(t("rp.go"))}</button>
    </form>
    ${rows.length ? `<table id="report"><thead><tr><th scope="col">${esc(t("department"))}</th><th scope="col">${esc(t("rp.total"))}</th>
      ${LEVELS.map((l) => `<th scope="col">${esc(t("lv." + l))}</th>`).join("")}
      <th scope="col">${esc(t("rp.acked"))}</th><th scope="col">${esc(t("rp.ack"))}</th><th scope="col">${esc(t("rp.handle"))}</th>
      <th scope="col">${esc(t("rp.overdue"))}</th><th scope="col">${esc(t("rp.escal"))}</th><th scope="col">${esc(t("rp.feedback"))}</th></tr></thead>
      <tbody>${rows.map((x) => `<tr data-department="${esc(x.department)}"><td>${esc(depName(x.department))}</td><td>${x.warnings}</td>
        ${LEVELS.map((l) => `<td>${x.by_level[l] || 0}</td>`).join("")}
        <td>${x.acknowledged}</td><td>${esc(opt(x.ack_minutes_median))} / ${esc(opt(x.ack_minutes_p90))}</td>
        <td>${esc(opt(x.handle_minutes_median))} / ${esc(opt(x.handle_minutes_p90))}</td><td>${x.overdue}</td><td>${x.escalations}</td>
        <td>${x.feedback_completeness === null ? "—" : Math.round(x.feedback_completeness * 100) + "%"}</td></tr>`).join("")}</tbody></table>
      <h2>${esc(t("rp.chart"))}</h2><svg width="620" height="${20 + rows.length * 28}" viewBox="0 0 620 ${20 + rows.length * 28}" role="img" aria-label="${esc(t("rp.chart"))}">${bars}</svg>`
      : `<p class="muted">${esc(t("rp.none"))}</p>`}`;
  $("#rp-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/report?from=${$("#rp-from").value}&to=${$("#rp-to").value}`;
  });
}

async function admin() {
  document.title = `${t("admin.title")} · yujing`;
  main().innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
  const gen = S.gen;
  const r = await api("/api/v1/rules");
  if (gen !== S.gen) return; // the user moved on while this page's data was loading
  if (!r.ok) return failed(r);
  const last = r.data.last_reload || {};
  const isAdmin = S.me.role === "admin";
  main().innerHTML = `
    <h1>${esc(t("admin.title"))}</h1>
    <div class="card">
      <h2>${esc(t("admin.reload"))}</h2>
      <p>${esc(time(last.at))} · ${esc(last.trigger || "")} · ${last.ok ? `<span class="ok">${esc(t("admin.reload.ok"))}</span>` : `<span class="error">${esc(t("admin.reload.bad"))}</span>`}
        ${last.ok ? esc(t("admin.kept", { k: last.kept, r: last.reset })) : ""}</p>
      ${(last.errors || []).length ? `<ul id="reload-errors">${last.errors.map((e) => `<li><code>${esc(e)}</code></li>`).join("")}</ul>` : ""}
      ${isAdmin ? `<button type="button" id="reload">${esc(t("admin.reload.now"))}</button>` : ""}
      <div id="reload-result" role="status"></div>
    </div>
    <div class="card">
      <h2>${esc(t("admin.tests"))}</h2>
      <button type="button" id="run-tests">${esc(t("admin.tests.run"))}</button>
      <div id="tests" role="status"></div>
    </div>
    <h2>${esc(t("admin.rules"))}</h2>
    <table><thead><tr><th scope="col">id</th><th scope="col">${esc(t("title"))}</th><th scope="col">${esc(t("admin.window"))}</th><th scope="col">${esc(t("admin.file"))}</th></tr></thead>
    <tbody>${r.data.rules.map((x) => `<tr><td><code>${esc(x.id)}</code></td><td>${esc(S.lang === "en" && x.title_en ? x.title_en : x.title)}</td><td>${esc(x.window || "")}</td><td><code>${esc(x.file)}:${esc(x.line)}</code></td></tr>`).join("")}</tbody></table>`;
  $("#reload")?.addEventListener("click", async () => {
    const res = await api("/api/v1/reload", { method: "POST" });
    $("#reload-result").innerHTML = res.ok ? `<p class="ok">${esc(t("admin.reload.ok"))}</p>` : `<ul class="error">${(res.data?.errors || [res.data?.error]).map((e) => `<li><code>${esc(e)}</code></li>`).join("")}</ul>`;
  });
  $("#run-tests").addEventListener("click", async () => {
    $("#tests").innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
    const res = await api("/api/v1/rules/tests");
    if (!res.ok) { $("#tests").innerHTML = `<p class="error">${esc(res.data?.error || t("error"))}</p>`; return; }
    $("#tests").innerHTML = `<p class="${res.data.failed ? "error" : "ok"}">${esc(t("admin.tests.result", { p: res.data.passed, f: res.data.failed }))}</p>
      <ul>${res.data.items.map((o) => `<li>${o.ok ? "✔" : "✘"} <code>${esc(o.location)}</code> ${esc(o.name)}${o.failure ? `<pre>${esc(o.failure)}</pre>` : ""}</li>`).join("")}</ul>`;
  });
}

function failed(r) {
  main().innerHTML = `<h1>${esc(t("error"))}</h1><p class="error" role="alert">${esc(r.data?.error || r.status)}</p>`;
}

async function route() {
  if (!S.me) return showLogin();
  // a page drawn after its data arrives checks it is still the page asked for
  S.gen = (S.gen || 0) + 1;
  applyChrome();
  const [, name, arg] = location.hash.split("?")[0].split("/");
  const id = arg ? decodeURIComponent(arg) : "";
  switch (name || "board") {
    case "sites": await sites(); break;
    case "site": await site(id); break;
    case "warning": await warning(id); break;
    case "admin": await admin(); break;
    case "tickets": await tickets(); break;
    case "report": await report(); break;
    default: await board();
  }
  main().focus({ preventScroll: true });
}

function start() {
  applyChrome();
  openStream();
  route();
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#lang").addEventListener("click", () => {
    S.lang = S.lang === "en" ? "zh" : "en";
    localStorage.setItem("yj.lang", S.lang);
    S.me ? route() : showLogin();
    applyChrome();
  });
  $("#logout").addEventListener("click", async () => {
    await api("/ui/logout", { method: "POST" });
    S.me = null;
    showLogin();
  });
  $("#red-ok").addEventListener("click", dismissRed);
  $("#red-open").addEventListener("click", dismissRed);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("#red").hidden) dismissRed(); });
  window.addEventListener("hashchange", () => { if (S.me) route(); });
  const r = await api("/ui/session");
  if (r.ok) { S.me = r.data; start(); } else showLogin();
});
