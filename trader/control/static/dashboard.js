// The trader dashboard: polls the control API (same origin, session cookie) every 2 s and renders it.
// No external resource, no inline script (the page is served with CSP default-src 'self'); the token is sent once
// to POST /login and never kept: the browser holds only the HttpOnly session cookie.
"use strict";

const POLL_MS = 2000;
const STALE_MS = 3 * POLL_MS + 1000;
const SVG = "http://www.w3.org/2000/svg";

let csrf = "";
let pollTimer = 0;
let polling = false;
let lastOk = 0;
let lastError = "";
const rendered = {}; // section name -> the JSON text last drawn (a section is redrawn only when it changed)

class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

function $(id) {
  return document.getElementById(id);
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

// Wall time of a poll, in IST like every time the daemon shows (the phone may be set to another zone).
function when(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { timeZone: "Asia/Kolkata" }) + " IST";
}

function td(text, cls) {
  return el("td", { text: text === null || text === undefined ? "—" : String(text), class: cls });
}

// Rupees with Indian grouping (12,34,567.89), always two decimals.
function inr(rupees) {
  if (rupees === null || rupees === undefined || Number.isNaN(rupees)) return "—";
  const paise = Math.round(Math.abs(rupees) * 100);
  const whole = String(Math.floor(paise / 100));
  const fraction = String(paise % 100).padStart(2, "0");
  let grouped = whole;
  if (whole.length > 3) {
    const head = whole.slice(0, -3).replace(/\B(?=(\d{2})+(?!\d))/g, ",");
    grouped = head + "," + whole.slice(-3);
  }
  return (rupees < 0 && paise > 0 ? "-" : "") + "₹" + grouped + "." + fraction;
}

function signed(node, rupees) {
  node.textContent = inr(rupees);
  node.classList.toggle("gain", rupees > 0);
  node.classList.toggle("loss", rupees < 0);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 90 ? `${minutes} min ${Math.round(seconds % 60)} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function clock(isoText) {
  // "2026-11-25T09:31:05+05:30" -> "09:31:05" (IST, as the daemon writes it)
  return isoText ? isoText.slice(11, 19) : "";
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-Trader-CSRF"] = csrf;
    init.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (ignored) {
    data = null;
  }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `HTTP ${response.status} ${response.statusText}`;
    if (response.status === 401 && path !== "/login") showLogin("Your session has ended: log in again.");
    throw new ApiError(response.status, message, data);
  }
  return data;
}

// -- login / logout ---------------------------------------------------------------------------------------------
function showLogin(why) {
  stopPolling();
  csrf = "";
  for (const key of Object.keys(rendered)) delete rendered[key];
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  $("token-input").focus();
}

function showDashboard(session) {
  csrf = session.csrf;
  lastOk = Date.now(); // a fresh start: no "stale" banner before the first poll has had its chance
  lastError = "";
  $("login").hidden = true;
  $("dashboard").hidden = false;
  startPolling();
}

async function login(event) {
  event.preventDefault();
  const input = $("token-input");
  const button = $("login-button");
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const session = await api("POST", "/login", { token: input.value });
    input.value = "";
    showDashboard(session);
  } catch (error) {
    $("login-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api("POST", "/logout", {});
  } catch (ignored) {
    // the session is gone either way
  }
  showLogin("Logged out.");
}

// -- polling ------------------------------------------------------------------------------------------------------
function startPolling() {
  stopPolling();
  polling = true;
  poll();
}

function stopPolling() {
  polling = false;
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = 0;
}

async function poll() {
  if (!polling) return;
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = 0;
  try {
    const [status, positions, orders, signals, report] = await Promise.all(
      ["/status", "/positions", "/orders", "/signals", "/report"].map((path) => api("GET", path)));
    lastOk = Date.now();
    lastError = "";
    renderStatus(status, report);
    draw("positions", positions, renderPositions);
    draw("orders", { orders: orders.orders, day: status.session_time.slice(0, 10) }, renderOrders);
    draw("signals", signals.pending, renderSignals);
    draw("chart", report.equity_curve, renderChart);
    $("updated").textContent = when(lastOk);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // showLogin() took over
    lastError = error.message || String(error);
  }
  showStaleness();
  if (polling) pollTimer = setTimeout(poll, POLL_MS);
}

function showStaleness() {
  const banner = $("banner");
  const age = lastOk ? Date.now() - lastOk : Infinity;
  const fresh = !lastError && age < STALE_MS;
  document.body.classList.toggle("is-stale", !fresh);
  if (fresh) {
    banner.hidden = true;
    return;
  }
  const since = lastOk ? `last update ${when(lastOk)}` : "no update yet";
  banner.textContent = lastError
    ? `Disconnected from the daemon (${lastError}); ${since}. Retrying every ${POLL_MS / 1000} s.`
    : `Stale: ${since}.`;
  banner.hidden = false;
}

function draw(name, data, render) {
  const text = JSON.stringify(data);
  if (rendered[name] === text) return;
  rendered[name] = text;
  render(data);
}

// -- rendering ----------------------------------------------------------------------------------------------------
function renderStatus(status, report) {
  $("mode").textContent = status.mode;
  $("mode").className = "pill mode-" + status.mode;
  const state = $("state");
  state.textContent = status.trading_state;
  state.className = "state state-" + status.trading_state;
  $("risk-level").textContent = status.risk_level;
  $("risk-level").className = "pill risk-" + status.risk_level;
  const health = status.health || { ok: true, failing: [], checks: {} };
  $("health").textContent = health.ok ? "ok" : "failing: " + health.failing.join(", ");
  $("health").className = "pill " + (health.ok ? "good" : "bad");
  $("health-detail").textContent = health.ok ? ""
    : health.failing.map((name) => `${name}: ${health.checks[name].detail}`).join("; ");
  $("auto").textContent = status.auto_execution ? "auto-execution" : "semi-live (approve entries)";
  $("state-reason").textContent = status.state_reason || "";
  $("session-time").textContent = status.session_time.replace("T", " ").slice(0, 19) + " IST";
  $("version").textContent = "trader " + status.version;
  $("equity").textContent = inr(report.equity_inr);
  signed($("day-pnl"), report.day_pnl_inr);
  const curve = report.equity_curve;
  let peak = -Infinity;
  for (const point of curve) peak = Math.max(peak, point[1]);
  const drawdown = curve.length ? peak - curve[curve.length - 1][1] : 0;
  signed($("drawdown"), -drawdown);
  $("pending-count").textContent = String(status.pending_approvals);
  $("halt").disabled = status.trading_state === "HALTED";
  $("resume").disabled = status.trading_state !== "HALTED";
}

function renderPositions(data) {
  const body = $("positions-body");
  const rows = data.positions.filter((p) => p.quantity !== 0);
  body.replaceChildren(...rows.map((p) => {
    const unrealized = td(inr(p.unrealized_inr), "num");
    unrealized.classList.toggle("gain", p.unrealized_inr > 0);
    unrealized.classList.toggle("loss", p.unrealized_inr < 0);
    return el("tr", { testid: "position-row", "data-symbol": p.tradingsymbol },
      td(p.tradingsymbol, "sym"), td(p.quantity, "num wide"), td(p.lots, "num"), td(inr(p.average_price_inr), "num wide"),
      td(inr(p.last_price_inr), "num"), unrealized, td(inr(p.realized_inr), "num wide"), td(p.held_by, "wide"));
  }));
  $("positions-empty").hidden = rows.length > 0;
  $("positions-count").textContent = String(rows.length);
  signed($("unrealized"), data.unrealized_inr);
  signed($("realized"), data.realized_inr);
  $("charges").textContent = inr(data.charges_inr);
}

function renderOrders(data) {
  const today = data.orders.filter((o) => o.time.slice(0, 10) === data.day).reverse();
  $("orders-body").replaceChildren(...today.map((o) => {
    const slip = o.slippage_bps === null || o.slippage_bps === undefined ? "—" : `${o.slippage_bps.toFixed(1)} bps`;
    const slipCell = td(slip, "num");
    if (o.slippage_bps > 0) slipCell.classList.add("loss");
    else if (o.slippage_bps < 0) slipCell.classList.add("gain");
    const status = td(o.status, "status status-" + o.status);
    if (o.reason && (o.status === "REFUSED" || o.status === "REJECTED")) status.title = o.reason;
    return el("tr", { testid: "order-row", "data-intent-id": o.intent_id },
      td(clock(o.time)), td(o.intent_id, "mono wide"), td(o.strategy, "wide"), td(o.side, "side-" + o.side),
      td(o.tradingsymbol, "sym"), td(o.quantity, "num wide"), td(o.order_type, "wide"), status,
      td(o.filled_quantity, "num wide"), td(o.average_price_inr === null ? "—" : inr(o.average_price_inr), "num wide"),
      td(inr(o.expected_price_inr), "num wide"), slipCell);
  }));
  $("orders-empty").hidden = today.length > 0;
  $("orders-count").textContent = String(today.length);
}

function renderSignals(pending) {
  $("signals-body").replaceChildren(...pending.map((a) => {
    const approve = el("button", { type: "button", class: "primary small", text: "Approve",
      testid: "approve-" + a.intent_id, onclick: () => decide(a, "approve") });
    const reject = el("button", { type: "button", class: "small", text: "Reject",
      testid: "reject-" + a.intent_id, onclick: () => decide(a, "reject") });
    return el("tr", { testid: "signal-row", "data-intent-id": a.intent_id },
      td(clock(a.time), "wide"), td(a.tradingsymbol, "sym"), td(a.side, "side-" + a.side), td(a.lots, "num"),
      td(inr(a.expected_price_inr), "num"), td(duration(a.expires_in_s), "num"),
      td(a.reason, "reason wide"), el("td", { class: "buttons" }, approve, reject));
  }));
  $("signals-empty").hidden = pending.length > 0;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

let lastCurve = [];

function renderChart(curve) {
  lastCurve = curve;
  const box = $("chart");
  if (curve.length < 2) {
    box.replaceChildren(el("p", { class: "muted empty", text: "The curve starts with the first marks." }));
    return;
  }
  const width = Math.max(300, Math.round(box.clientWidth) || 640); // drawn at the box's own pixel width
  const left = 86;
  const right = 10;
  const top1 = 10;
  const height1 = 130;
  const top2 = top1 + height1 + 26;
  const height2 = 60;
  const height = top2 + height2 + 22;
  let peak = -Infinity;
  const equity = curve.map((p) => p[1]);
  const drawdown = equity.map((value) => {
    peak = Math.max(peak, value);
    return peak - value;
  });
  const lo = Math.min(...equity);
  const hi = Math.max(...equity);
  const span = hi - lo || 1;
  const ddMax = Math.max(...drawdown) || 1;
  const x = (i) => left + (i * (width - left - right)) / (curve.length - 1);
  const y1 = (v) => top1 + height1 - ((v - lo) / span) * height1;
  const y2 = (d) => top2 + (d / ddMax) * height2;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-testid": "equity-svg",
    "aria-label": "equity and drawdown curve" });
  chart.append(svg("rect", { x: left, y: top1, width: width - left - right, height: height1, class: "plot" }));
  chart.append(svg("rect", { x: left, y: top2, width: width - left - right, height: height2, class: "plot" }));
  const line = equity.map((v, i) => `${x(i).toFixed(1)},${y1(v).toFixed(1)}`).join(" ");
  chart.append(svg("polyline", { points: line, class: "equity-line" }));
  const area = [`${x(0).toFixed(1)},${top2}`, ...drawdown.map((d, i) => `${x(i).toFixed(1)},${y2(d).toFixed(1)}`),
    `${x(curve.length - 1).toFixed(1)},${top2}`].join(" ");
  chart.append(svg("polygon", { points: area, class: "drawdown-area" }));
  chart.append(svg("text", { x: left - 6, y: top1 + 10, class: "axis end" }, inr(hi)));
  chart.append(svg("text", { x: left - 6, y: top1 + height1, class: "axis end" }, inr(lo)));
  chart.append(svg("text", { x: left - 6, y: top2 + 10, class: "axis end" }, "drawdown"));
  chart.append(svg("text", { x: left - 6, y: top2 + height2, class: "axis end" }, inr(-Math.max(...drawdown))));
  chart.append(svg("text", { x: left, y: height - 6, class: "axis" }, clock(curve[0][0])));
  chart.append(svg("text", { x: width - right, y: height - 6, class: "axis end" }, clock(curve[curve.length - 1][0])));
  box.replaceChildren(chart);
}

// -- acts -----------------------------------------------------------------------------------------------------------
function say(text, ok) {
  const box = $("message");
  box.textContent = text;
  box.className = "message " + (ok ? "ok" : "error");
  box.hidden = false;
}

async function act(label, method, path, body, describe) {
  try {
    const answer = await api(method, path, body);
    say(`${label}: ${describe(answer)}`, true);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) say(`${label} failed: ${error.message}`, false);
  }
  if (polling) poll();
}

function stateWords(answer) {
  return answer.detail || `trading state ${answer.trading_state}`;
}

function decide(approval, verb) {
  const what = `${approval.side} ${approval.lots} lot(s) of ${approval.tradingsymbol}`;
  if (verb === "approve") {
    act(`Approve ${approval.intent_id}`, "POST", `/signals/${encodeURIComponent(approval.intent_id)}/approve`, {},
      (answer) => answer.message || `${what} approved`);
  } else {
    act(`Reject ${approval.intent_id}`, "POST", `/signals/${encodeURIComponent(approval.intent_id)}/reject`,
      { reason: "rejected from the dashboard" }, (answer) => answer.detail || `${what} rejected`);
  }
}

function halt() {
  const reason = window.prompt("Halt trading: no new orders until you resume. Reason?", "halted from the dashboard");
  if (reason === null) return;
  if (!window.confirm("Halt trading now? Open orders and positions stay; Flatten closes positions.")) return;
  act("Halt", "POST", "/halt", { reason: reason.trim() || "halted from the dashboard" }, stateWords);
}

function resume() {
  if (!window.confirm("Resume trading?")) return;
  act("Resume", "POST", "/resume", {}, stateWords);
}

function flatten() {
  if (!window.confirm("Flatten: exit ALL the daemon's positions at market and cancel its working orders?")) return;
  act("Flatten", "POST", "/flatten", {}, (answer) => `${answer.detail} (${answer.exits} exit order(s))`);
}

// -- start ----------------------------------------------------------------------------------------------------------
async function boot() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("halt").addEventListener("click", halt);
  $("resume").addEventListener("click", resume);
  $("flatten").addEventListener("click", flatten);
  window.addEventListener("resize", () => {
    if (!polling) return;
    delete rendered.chart;
    draw("chart", lastCurve, renderChart);
  });
  setInterval(() => {
    if (polling) showStaleness();
  }, 1000);
  try {
    const session = await api("GET", "/session");
    if (session.logged_in) showDashboard(session);
    else showLogin("");
  } catch (error) {
    showLogin(`The daemon did not answer: ${error.message}`);
  }
}

document.addEventListener("DOMContentLoaded", boot);
