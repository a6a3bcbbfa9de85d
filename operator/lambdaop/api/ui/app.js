// lambdaop web page: plain JavaScript on the public REST API, no build step.
// Views are chosen by the URL hash: #/tasks, #/tasksets, #/task/ID, #/taskset/ID, #/runs, #/specs, #/login.
// format.js writes values (text, times, calls); steps.js draws a TaskSet's steps.

import { ARN, esc, host, localTime, target } from "./format.js";
import { drawSteps, keepSteps, stepLabel, watchSteps } from "./steps.js";

const STATES = ["scheduled", "running", "completed", "failed", "cancelled"];
// a list's tabs: failed next to what is going on, never at the end of the row
const TABS = ["scheduled", "running", "failed", "completed", "cancelled", "mine", "all"];  // mine: all of the caller's; all: everybody's (the original `All`)
const TAB_LABEL = { mine: "All mine", all: "Everyone's" };
const TOKEN_KEY = "lambdaop.token";
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const main = document.getElementById("main");
const alertBox = document.getElementById("alert");
const connection = document.getElementById("connection");

// ---------------------------------------------------------------- helpers

function zoneOffset(date = new Date()) {
  // "UTC+01:00": the picker's offset now (it moves with summer time)
  const minutes = -date.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  const abs = Math.abs(minutes);
  return `UTC${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

function label(o) { return o.displayName || o.name; }

function badge(state) {
  const colour = { scheduled: "secondary", running: "primary", completed: "success", failed: "danger", cancelled: "dark" }[state] || "light";
  return `<span class="badge text-bg-${colour}" data-state="${esc(state)}">${esc(state)}</span>`;
}

function lastResult(last) {
  if (!last) return "–";
  const status = last.status ? `HTTP ${last.status}` : "no answer";
  return last.ok ? `<span class="text-success">${esc(status)}</span>` : `<span class="text-danger">${esc(last.error || status)}</span>`;
}

function showError(err) {
  if (err && err.network) { offline(); return; }
  alertBox.innerHTML = `<div class="alert alert-danger alert-dismissible" role="alert">
    <strong>${esc(err.title || "Something went wrong")}:</strong> ${esc(err.message)}
    ${err.details && err.details.length ? `<ul class="mb-0">${err.details.map((d) => `<li>${esc(describeProblem(d))}</li>`).join("")}</ul>` : ""}
    <button type="button" class="btn-close" data-bs-dismiss="alert" aria-label="Close"></button></div>`;
}

function showInfo(message) {
  alertBox.innerHTML = `<div class="alert alert-success alert-dismissible" role="status">${esc(message)}
    <button type="button" class="btn-close" data-bs-dismiss="alert" aria-label="Close"></button></div>`;
}

function clearAlert() { alertBox.innerHTML = ""; }

function describeProblem(d) {
  // a problem of a request the page made: the field in words, never a line of JSON the user did not write
  return d.field ? `${d.field}: ${d.message}` : d.message;
}

const PLAIN = {
  401: "You are not signed in, or your session has ended. Please sign in again.",
  403: "You may not do that.",
  404: "That object does not exist, or it belongs to another user.",
  409: "That is not possible in the object's current state.",
  413: "That is too large to send (at most 1 MiB).",
  415: "The server cannot read that kind of content.",
  422: "Some fields are not valid.",
  503: "The server cannot reach its store just now.",
};

// ---------------------------------------------------------------- the connection to the server

let downSince = null;
function offline(retryIn) {
  // one message while the server cannot be reached, however many requests failed
  downSince = downSince || new Date();
  const again = retryIn ? ` Trying again in ${Math.round(retryIn / 1000)} s.` : "";
  connection.innerHTML = `<div class="alert alert-warning mb-3" data-offline>
    <strong>The server cannot be reached</strong> (since ${esc(downSince.toLocaleTimeString())}): check that lambdaop is running.${esc(again)}</div>`;
}
function online() {
  if (downSince === null) return;
  downSince = null;
  connection.innerHTML = "";
}

// ---------------------------------------------------------------- the API

const api = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  async call(method, path, body, contentType = "application/json") {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = contentType;
      payload = contentType === "application/json" ? JSON.stringify(body) : body;
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload });
    } catch (e) {
      throw { title: "The server cannot be reached", message: "Check that lambdaop is running.", network: true };
    }
    online();
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 401 && path !== "/auth/login") { sessionStorage.removeItem(TOKEN_KEY); me = null; location.hash = "#/login"; }
      throw { status: response.status, title: PLAIN[response.status] || `Error ${response.status}`, message: data.reason || data.message || "", details: data.details || [] };
    }
    return data;
  },
};

// ---------------------------------------------------------------- live refresh with back-off

let poller = null;
const FINAL_ERRORS = [401, 403, 404];  // retrying does not mend these
function poll(fn, base = 1500, onError = null) {
  stopPolling();
  let delay = base;
  const state = { stopped: false, paused: false };
  const tick = async () => {
    if (state.stopped) return;
    if (!document.hidden && !state.paused) {
      try { await fn(); delay = base; } catch (err) {
        delay = Math.min(delay * 2, 30000);
        if (err.network) offline(delay);
        else if (FINAL_ERRORS.includes(err.status)) { state.stopped = true; if (onError) onError(err); return; }
        else if (onError) onError(err, delay);
      }
    }
    if (!state.stopped) state.timer = setTimeout(tick, delay);
  };
  state.timer = setTimeout(tick, delay);
  poller = state;
  return state;
}
function stopPolling() { if (poller) { poller.stopped = true; clearTimeout(poller.timer); poller = null; } }

// ---------------------------------------------------------------- routing

function parseHash() {
  const [path, query] = (location.hash.slice(1) || "/dashboard").split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

let me = null;
async function route() {
  stopPolling();
  closeMenu();
  const { parts, params } = parseHash();
  const section = { task: "tasks", taskset: "tasksets" }[parts[0]] || parts[0];
  document.querySelectorAll("[data-nav]").forEach((a) => {
    a.classList.toggle("active", a.dataset.nav === section);
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (!api.token || parts[0] === "login") { me = null; updateWho(); renderLogin(); return; }
  if (!me) {
    try { me = await api.call("GET", "/auth/me"); } catch (err) {
      if (err.network) { offline(); main.innerHTML = `<p class="text-muted">Waiting for the server…</p>`; poll(async () => { await api.call("GET", "/auth/me"); route(); }, 2000); }
      else if (err.status !== 401) showError(err);
      return;
    }
  }
  updateWho();
  if (parts[0] === "tasks") return renderList("Task", params);
  if (parts[0] === "tasksets") return renderList("TaskSet", params);
  if (parts[0] === "task" && parts[1]) return renderDetail("Task", parts[1]);
  if (parts[0] === "taskset" && parts[1]) return renderDetail("TaskSet", parts[1]);
  if (parts[0] === "runs") return renderRuns(params);
  if (parts[0] === "specs") return renderSpecs();
  return renderDashboard();
}

function updateWho() {
  document.getElementById("who").textContent = me ? `Signed in as ${me.name}` : "";
  document.getElementById("signout").classList.toggle("d-none", !me);
  // the menu is for people signed in: signed out, there is only the sign-in form
  document.getElementById("nav-links").classList.toggle("d-none", !me);
  document.getElementById("nav-toggle").classList.toggle("d-none", !me);
}

function closeMenu() {
  // on narrow screens the menu folds away once a link is chosen, even one chosen while it still opens
  const nav = document.getElementById("nav");
  const menu = bootstrap.Collapse.getOrCreateInstance(nav, { toggle: false });
  const opening = nav.classList.contains("collapsing") && document.getElementById("nav-toggle").getAttribute("aria-expanded") === "true";
  if (opening) nav.addEventListener("shown.bs.collapse", () => menu.hide(), { once: true });
  else if (nav.classList.contains("show")) menu.hide();
}

document.getElementById("nav").addEventListener("click", (e) => { if (e.target.closest("a.nav-link")) closeMenu(); });
document.getElementById("signout").addEventListener("click", async () => {
  try { await api.call("POST", "/auth/logout"); } catch { /* the session may have ended already */ }
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  clearAlert();
  location.hash = "#/login";
});
window.addEventListener("hashchange", () => { clearAlert(); route(); });

function failed(where, err, retryIn) {
  // an element that was waiting for data says why it has none (never an endless "Loading…"),
  // and whether the page tries again (it does not for what retrying cannot mend)
  const el = typeof where === "string" ? document.getElementById(where) : where;
  if (!el) return;
  if (err.network) { el.innerHTML = `<p class="text-muted load-error">Waiting for the server…</p>`; return; }
  const again = retryIn ? ` Trying again in ${Math.round(retryIn / 1000)} s.` : "";
  el.innerHTML = `<p class="text-danger load-error">Could not load: ${esc(err.title || "error")}${err.message ? ` (${esc(err.message)})` : ""}.${esc(again)}</p>`;
}

// ---------------------------------------------------------------- confirming

let confirmModal = null;
function confirmAction({ title, body, yes = "Cancel it", no = "Keep it" }) {
  // a Bootstrap dialog; answers true when the user confirms (Escape, Close and "Keep it" answer false)
  const el = document.getElementById("confirm");
  confirmModal = confirmModal || new bootstrap.Modal(el);
  el.querySelector("#confirm-title").textContent = title;
  el.querySelector("#confirm-body").innerHTML = body;
  el.querySelector("#confirm-yes").textContent = yes;
  el.querySelector("#confirm-no").textContent = no;
  const paused = poller;
  if (paused) paused.paused = true;
  return new Promise((resolve) => {
    let answer = false;
    const yesButton = el.querySelector("#confirm-yes");
    const onYes = () => { answer = true; confirmModal.hide(); };
    yesButton.addEventListener("click", onYes, { once: true });
    el.addEventListener("hidden.bs.modal", () => {
      yesButton.removeEventListener("click", onYes);
      if (paused) paused.paused = false;
      resolve(answer);
    }, { once: true });
    // the safe answer has the focus: Enter or Escape keeps the object
    el.addEventListener("shown.bs.modal", () => el.querySelector("#confirm-no").focus(), { once: true });
    confirmModal.show();
  });
}

// ---------------------------------------------------------------- sign in

function renderLogin() {
  main.innerHTML = `
  <div class="row justify-content-center"><div class="col-12 col-sm-10 col-md-6 col-lg-5">
    <h1 class="h3 mb-3">Sign in</h1>
    <form id="login" class="card card-body mb-3">
      <div class="mb-3"><label class="form-label" for="login-name">Name</label>
        <input class="form-control" id="login-name" name="name" autocomplete="username" required></div>
      <div class="mb-3"><label class="form-label" for="login-password">Password</label>
        <input class="form-control" id="login-password" name="password" type="password" autocomplete="current-password" required aria-describedby="login-password-help">
        <div class="form-text" id="login-password-help">A password is set on the server's machine with <code>lambdaop user passwd NAME</code>.</div></div>
      <button class="btn btn-primary" type="submit">Sign in</button>
    </form>
    <form id="token-login" class="card card-body mb-3">
      <div class="mb-3"><label class="form-label" for="login-token">Or paste an API token</label>
        <input class="form-control" id="login-token" name="token" autocomplete="off" required aria-describedby="login-token-help"></div>
      <button class="btn btn-outline-primary" type="submit">Use token</button>
    </form>
    <section class="small text-muted" id="where-tokens" aria-labelledby="where-tokens-title">
      <h2 class="h6" id="where-tokens-title">Where a token comes from</h2>
      <ul class="ps-3 mb-2" id="login-token-help">
        <li>On its first start lambdaop creates the user <code>admin</code> and writes its token to <code>.lambdaop/admin.token</code> in the folder it runs in (its <code>--state-dir</code>).</li>
        <li><code>lambdaop user token NAME</code> prints another token for a user; <code>lambdaop user add NAME</code> creates a user and prints its first.</li>
      </ul>
      <p class="mb-0">The REST API and its tokens are described in the <a href="/docs">API reference</a>.</p>
    </section>
  </div></div>`;
  document.getElementById("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    try {
      const answer = await api.call("POST", "/auth/login", { name: form.get("name"), password: form.get("password") });
      signedIn(answer.token);
    } catch (err) {
      if (err.status === 429) showError({ title: "Too many failed sign-ins", message: err.message });
      else showError(err.status === 401 ? { title: "Sign-in failed", message: "Unknown name or wrong password." } : err);
    }
  });
  document.getElementById("token-login").addEventListener("submit", async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, new FormData(e.target).get("token").trim());
    try { me = await api.call("GET", "/auth/me"); signedIn(api.token); }
    catch (err) { sessionStorage.removeItem(TOKEN_KEY); showError(err.network ? err : { title: "Sign-in failed", message: "That token is not valid (revoked, expired, or not all of it was pasted)." }); }
  });
}

function signedIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  me = null;
  clearAlert();
  if (location.hash === "#/dashboard") route(); else location.hash = "#/dashboard";
}

// ---------------------------------------------------------------- dashboard

const COLOURS = { ok: "#198754", failed: "#dc3545", Task: "#0d6efd", TaskSet: "#6f42c1" };
let shownCharts = {};  // the dashboard's charts while it is open, resized with the window

window.addEventListener("resize", () => {
  for (const [id, chart] of Object.entries(shownCharts)) {
    const el = document.getElementById(id);
    if (el) chart.setSize({ width: Math.max(240, el.clientWidth), height: chart.height });
  }
});

const TIP = "Point at a mark, or tap it, to see what it is.";

function renderDashboard() {
  main.innerHTML = `
    <h1 class="h3">Dashboard</h1>
    <div id="paused-all" role="status"></div>
    <section class="card mb-3" id="attention" aria-labelledby="attention-title">
      <div class="card-body">
        <h2 class="h5 card-title" id="attention-title">Needs attention</h2>
        <div class="row g-3" id="attention-body"><p class="text-muted">Loading…</p></div>
      </div>
    </section>
    <div class="mb-3" id="counts" aria-label="Objects by state"><p class="text-muted">Loading…</p></div>
    <div class="row g-3">
      <section class="col-12 col-xl-6" aria-labelledby="timeline-title">
        <h2 class="h5" id="timeline-title">Calls due in the next hour</h2>
        <div class="chart" id="timeline" role="img" aria-label="Calls due in the next hour on a time axis, one mark per call"></div>
        <p class="small text-muted mb-1" id="timeline-tip" aria-live="polite">${TIP}</p>
        <ol class="small list-unstyled mb-0" id="upcoming"></ol>
      </section>
      <section class="col-12 col-xl-6" aria-labelledby="calls-title">
        <h2 class="h5" id="calls-title">Calls per minute, last hour</h2>
        <div class="chart" id="calls" role="img" aria-label="Calls per minute over the last hour, ok and failed"></div>
        <p class="small mb-1 chart-legend" id="calls-legend"><span class="swatch" style="background:${COLOURS.ok}"></span> ok
          <span class="swatch ms-3" style="background:${COLOURS.failed}"></span> failed
          <span class="text-muted ms-3" id="calls-tip" aria-live="polite">${TIP}</span></p>
        <p class="small text-muted" id="calls-total"></p>
      </section>
    </div>`;
  const charts = {};
  shownCharts = charts;
  const load = async () => {
    const d = await api.call("GET", "/dashboard");
    if (!document.getElementById("counts")) return;
    renderAttention(d.attention || {}, d.pausedAll);
    renderCounts(d.counts);
    drawTimeline(charts, d);
    drawCalls(charts, d.callsPerMinute, d.callsSince);
  };
  document.getElementById("paused-all").addEventListener("click", (e) => {
    const button = e.target.closest("[data-kill]");
    if (button) killSwitch(button.dataset.kill, load).catch(showError);
  });
  const problem = (err, retryIn) => { failed("counts", err, retryIn); failed("attention-body", err, retryIn); };
  load().catch((err) => problem(err));
  poll(load, 5000, problem);
}

const ATTENTION_LISTED = 5;  // failed runs and late calls named on the dashboard; the count says how many

function renderAttention(a, pausedAll) {
  // what the person on call looks at first: what failed, what is late, what is suspended, and whether
  // everything is paused;
  // each names its object, a click away
  const box = document.getElementById("paused-all");
  const shown = pausedAll ? `on:${pausedAll.at}` : "off";
  if (box.dataset.shown !== shown) {  // redrawn when it changes only: a button being pressed stays
    box.dataset.shown = shown;
    const resume = me && me.admin ? ` <button class="btn btn-light btn-sm ms-2" type="button" data-kill="resume">Resume everything</button>` : "";
    const pause = me && me.admin ? `<div class="text-end mb-2"><button class="btn btn-outline-danger btn-sm" type="button" data-kill="pause">Pause everything…</button></div>` : "";
    box.innerHTML = pausedAll ? `<div class="alert alert-danger" id="paused-all-banner">${pausedAllWords(pausedAll)}${resume}</div>` : pause;
  }
  const failedRuns = a.failed || [];
  const late = a.late || [];
  const count = (n, more, colour) => `<span class="badge ${n ? `text-bg-${colour}` : "text-bg-light"}" data-attention-count>${n}${more ? "+" : ""}</span>`;
  const failedItems = failedRuns.slice(0, ATTENTION_LISTED).map((r) => `<li class="list-group-item px-0" data-run="${esc(r.id)}" data-kind="${esc(r.object.kind)}">
      ${esc(r.object.kind)} ${runLink(r)} <small class="text-muted">${r.run != null ? `run ${esc(r.run)}` : `generation ${esc(r.generation)}`}, ended ${localTime(r.finished)}</small>
      ${r.reason ? `<small class="d-block text-danger text-break">${esc(r.reason)}</small>` : ""}</li>`).join("");
  const paused = a.paused || [];
  const pausedItems = paused.slice(0, ATTENTION_LISTED).map((o) => `<li class="list-group-item px-0" data-paused="${esc(o.id)}">${esc(o.kind)} <a href="${objectHash(o.kind, o.id)}">${esc(o.name)}</a>
      ${o.reason ? `<small class="d-block text-muted text-break">${esc(o.reason)}</small>` : ""}</li>`).join("");
  const lateItems = late.slice(0, ATTENTION_LISTED).map((l) => `<li class="list-group-item px-0" data-late="${esc(l.id)}">${esc(l.kind)} <a href="${objectHash(l.kind, l.id)}">${esc(l.name)}</a>
      <small class="text-muted">due ${localTime(l.due)}</small></li>`).join("");
  document.getElementById("attention-body").innerHTML = `
    <div class="col-12 col-lg-6" id="attention-failed">
      <h3 class="h6"><span class="text-danger">Failed</span> in the last 24 hours ${count(failedRuns.length, a.failedMore, "danger")}</h3>
      ${failedItems ? `<ul class="list-group list-group-flush small mb-1">${failedItems}</ul>` : `<p class="small text-muted mb-1">No run failed.</p>`}
      <a class="small" href="${runsHash({ state: "failed", since: "24h" })}">All failed runs</a></div>
    <div class="col-12 col-lg-6" id="attention-late">
      <h3 class="h6">Late by more than a minute ${count(late.length, a.lateMore, "warning")}</h3>
      ${lateItems ? `<ul class="list-group list-group-flush small mb-1">${lateItems}</ul>` : `<p class="small text-muted mb-1">Nothing is late.</p>`}
      ${pausedAll && late.length ? `<p class="small text-muted mb-0">Nothing starts while everything is paused.</p>` : ""}</div>
    <div class="col-12 col-lg-6" id="attention-paused">
      <h3 class="h6">Suspended ${count(paused.length, a.pausedMore, "secondary")}</h3>
      ${pausedItems ? `<ul class="list-group list-group-flush small mb-1">${pausedItems}</ul>` : `<p class="small text-muted mb-1">Nothing is suspended.</p>`}</div>`;
}

async function killSwitch(action, reload) {
  // an admin's pause of everything, everybody's (POST /pause {all: true, reason}): no call starts until resumed
  clearAlert();
  if (action === "resume") {
    await api.call("POST", "/resume", { all: true });
    showInfo("Everything is resumed: calls start again.");
    return reload();
  }
  const sure = await confirmAction({
    title: "Pause everything?",
    body: `<p>No call of anybody's objects starts until an admin resumes everything; calls already out finish.</p>
      <label class="form-label" for="kill-reason">Why (shown on the dashboard and on every object)</label>
      <input class="form-control" id="kill-reason" maxlength="200" autocomplete="off" placeholder="e.g. store migration">`,
    yes: "Pause everything",
    no: "Keep running",
  });
  if (!sure) return;
  const reason = document.getElementById("kill-reason").value.trim();
  if (!reason) { showError({ title: "Not paused", message: "say why everything is paused: every user sees it." }); return; }
  await api.call("POST", "/pause", { all: true, reason });
  showInfo("Everything is paused.");
  return reload();
}

function renderCounts(counts) {
  const rows = ["Task", "TaskSet"].map((kind) => {
    const cards = STATES.map((state) => {
      const n = (counts[kind] || {})[state] || 0;
      const red = state === "failed" && n > 0;  // failed counts in red
      return `<div class="col"><a class="card card-body p-2 text-decoration-none count-card ${red ? "border-danger" : ""}" href="#/${kind.toLowerCase()}s?state=${state}" data-kind="${kind}" data-state="${state}">
        <span class="small ${red ? "text-danger" : "text-muted"}">${kind}s ${state}</span><span class="fs-4 ${red ? "text-danger" : ""}" data-count>${n}</span></a></div>`;
    });
    return `<div class="row row-cols-2 row-cols-sm-3 row-cols-lg-5 g-2 mb-1">${cards.join("")}</div>`;
  });
  document.getElementById("counts").innerHTML = rows.join("");
}

function chartSize(el, height) {
  return { width: Math.max(240, el.clientWidth || 320), height };
}

function tapToCursor(chart, el) {
  // a tap on a phone moves the cursor as a mouse would (uPlot follows the mouse only)
  el.addEventListener("click", (e) => {
    const over = chart.over.getBoundingClientRect();
    const left = e.clientX - over.left;
    if (left >= 0 && left <= over.width) chart.setCursor({ left, top: Math.max(0, Math.min(over.height - 1, e.clientY - over.top)) });
  });
}

function drawTimeline(charts, d) {
  const el = document.getElementById("timeline");
  if (!el) return;
  const now = Date.parse(d.now) / 1000;
  const points = d.upcoming.map((u) => ({ ...u, t: Date.parse(u.due) / 1000 }));
  const xs = [now, ...points.map((p) => p.t), now + 3600];
  const lane = (kind) => (kind === "Task" ? 1 : 2);
  const task = [null, ...points.map((p) => (p.kind === "Task" ? lane(p.kind) : null)), null];
  const set = [null, ...points.map((p) => (p.kind === "TaskSet" ? lane(p.kind) : null)), null];
  const data = [xs, task, set];
  // the list below: each object once, with how often it calls in the hour
  const byObject = new Map();
  for (const p of points) {
    const seen = byObject.get(p.id);
    if (seen) seen.count += 1; else byObject.set(p.id, { ...p, count: 1 });
  }
  const items = [...byObject.values()].slice(0, 10).map((p) => `<li>${localTime(p.due)} · ${esc(p.kind)} <a href="#/${p.kind.toLowerCase()}/${esc(p.id)}">${esc(p.name)}</a>${p.count > 1 ? ` <span class="text-muted">and ${p.count - 1} more call${p.count > 2 ? "s" : ""} in the hour</span>` : ""}</li>`);
  if (d.upcomingMore) items.push(`<li class="text-muted">and ${esc(d.upcomingMore)} more calls not drawn</li>`);
  document.getElementById("upcoming").innerHTML = items.join("") || `<li class="text-muted">Nothing due in the next hour.</li>`;
  el.dataset.points = String(points.length);
  el.dataset.objects = String(byObject.size);
  const tip = document.getElementById("timeline-tip");
  charts.timelinePoints = points;
  if (charts.timeline) { charts.timeline.setData(data); return; }
  const dots = (colour) => ({ stroke: colour, fill: colour, paths: () => null, points: { show: true, size: 9, fill: colour } });
  charts.timeline = new uPlot({
    ...chartSize(el, 140),
    series: [{}, { label: "Tasks", ...dots(COLOURS.Task) }, { label: "TaskSets", ...dots(COLOURS.TaskSet) }],
    scales: { y: { range: [0.5, 2.5] } },
    axes: [{}, { values: (u, vals) => vals.map((v) => ({ 1: "Task", 2: "Set" }[v] || "")), splits: () => [1, 2], size: 48 }],
    legend: { show: false },
    cursor: { points: { show: true } },
    hooks: { setCursor: [(u) => {
      const i = u.cursor.idx;
      const shown = charts.timelinePoints || [];
      const p = i != null && i > 0 && i <= shown.length ? shown[i - 1] : null;
      // what was last pointed at or tapped stays said (a tap ends with the pointer leaving the chart)
      if (p) tip.textContent = `${p.kind} ${p.name}, due ${new Date(p.due).toLocaleTimeString()}${p.recurring ? " (one of its runs)" : ""}`;
    }] },
  }, data, el);
  tapToCursor(charts.timeline, el);
}

function drawCalls(charts, minutes, since) {
  const el = document.getElementById("calls");
  if (!el) return;
  const xs = minutes.map((m) => m.minute);
  const ok = minutes.map((m) => m.ok);
  const total = minutes.map((m) => m.ok + m.failed);  // drawn behind the ok bars: the red part is what failed
  const sum = total.reduce((a, b) => a + b, 0);
  const failedSum = minutes.reduce((a, m) => a + m.failed, 0);
  const counted = since && Date.parse(since) > Date.now() - 3600 * 1000 ? ` Counted since this server started, at ${new Date(since).toLocaleTimeString()}.` : "";
  document.getElementById("calls-total").textContent = `${sum} call${sum === 1 ? "" : "s"} in the last hour, ${failedSum} failed.${counted}`;
  el.dataset.calls = String(sum);
  const data = [xs, total, ok];
  charts.callMinutes = minutes;
  if (charts.calls) { charts.calls.setData(data); return; }
  const tip = document.getElementById("calls-tip");
  const bars = uPlot.paths.bars({ size: [0.8, 20] });
  charts.calls = new uPlot({
    ...chartSize(el, 180),
    series: [{}, { label: "failed", fill: COLOURS.failed, stroke: COLOURS.failed, paths: bars, points: { show: false } },
             { label: "ok", fill: COLOURS.ok, stroke: COLOURS.ok, paths: bars, points: { show: false } }],
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    legend: { show: false },  // the legend is drawn below the chart; the values of a minute show on pointing at it
    hooks: { setCursor: [(u) => {
      const m = u.cursor.idx != null ? (charts.callMinutes || [])[u.cursor.idx] : null;
      if (m) tip.textContent = `${new Date(m.minute * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${m.ok} ok, ${m.failed} failed`;
    }] },
  }, data, el);
  tapToCursor(charts.calls, el);
}

// ---------------------------------------------------------------- lists

const KIND = {
  Task: { list: "/tasks", key: "tasks", title: "Tasks", one: "task", cancel: "/scheduler/cancel", modify: "/scheduler/modify", hash: "#/tasks" },
  TaskSet: { list: "/tasksets", key: "taskSets", title: "TaskSets", one: "taskset", cancel: "/orchestrator/cancel", modify: "/orchestrator/modify", hash: "#/tasksets" },
};

function renderList(kind, params) {
  const k = KIND[kind];
  const state = TABS.includes(params.get("state")) ? params.get("state") : "scheduled";
  const prefix = params.get("prefix") || "";
  const selector = params.get("labelSelector") || "";
  const search = { prefix, labelSelector: selector };
  const filtered = Boolean(prefix || selector);
  const cursors = [];  // the cursors of the pages before this one
  let cursor = null;
  main.innerHTML = `
    <div class="d-flex flex-wrap justify-content-between align-items-center mb-2 gap-2">
      <h1 class="h3 mb-0">${k.title}</h1>
      <button class="btn btn-primary" type="button" data-bs-toggle="collapse" data-bs-target="#create" aria-expanded="false" aria-controls="create">New ${kind}</button>
    </div>
    <div class="collapse mb-3" id="create">${kind === "Task" ? taskForm() : taskSetForm()}</div>
    <form class="row g-2 align-items-end mb-2" id="list-filter" role="search" aria-label="Search ${k.title}" novalidate>
      <div class="col-12 col-sm-5 col-lg-4"><label class="form-label" for="list-prefix">Name starts with</label>
        <input class="form-control" type="search" id="list-prefix" name="prefix" value="${esc(prefix)}" autocomplete="off" spellcheck="false"></div>
      <div class="col-12 col-sm-7 col-lg-4"><label class="form-label" for="list-labels">Labels</label>
        <input class="form-control" id="list-labels" name="labelSelector" value="${esc(selector)}" placeholder="team=billing,env!=dev" autocomplete="off" spellcheck="false" aria-describedby="list-labels-help"></div>
      <div class="col-12 col-lg-4 d-flex flex-wrap gap-2"><button class="btn btn-outline-primary" type="submit">Search</button>
        ${filtered ? `<a class="btn btn-link" href="${listHash(k, state, {})}">Clear</a>` : ""}
        ${selector ? `<button class="btn btn-outline-dark" type="button" data-bulk="pause">Pause these…</button><button class="btn btn-outline-success" type="button" data-bulk="resume">Resume these…</button>` : ""}</div>
      <div class="col-12 form-text mt-0" id="list-labels-help">Labels as kubectl's <code>-l</code>: <code>team=billing</code>, <code>env!=dev</code>, <code>tier in (a,b)</code>, <code>!legacy</code>.${filtered ? " The counts on the tabs are of all your objects." : ""}</div>
    </form>
    <ul class="nav nav-tabs flex-wrap" role="tablist" aria-label="States">
      ${TABS.map((s) => `<li class="nav-item" role="presentation"><a class="nav-link ${s === state ? "active" : ""}" role="tab" aria-selected="${s === state}" href="${listHash(k, s, search)}" data-tab="${s}" ${s === "all" ? `title="every user's ${k.title.toLowerCase()}; another user's show a summary only"` : ""}>${TAB_LABEL[s] || s} <span class="badge text-bg-light" data-count="${s}">0</span></a></li>`).join("")}
    </ul>
    <table class="table table-sm table-hover align-middle objects" aria-live="polite">
      <thead><tr><th scope="col">Name</th><th scope="col">Calls to</th><th scope="col">Next</th><th scope="col">Calls</th><th scope="col">State</th><th scope="col">Last result</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody id="rows"><tr><td colspan="7">Loading…</td></tr></tbody>
    </table>
    <nav aria-label="Pages" class="d-flex gap-2 d-none" id="pager">
      <button class="btn btn-outline-secondary btn-sm" id="newer" type="button" disabled>Newer</button>
      <button class="btn btn-outline-secondary btn-sm" id="older" type="button" disabled>Older</button>
    </nav>`;
  const load = async () => {
    const query = new URLSearchParams({ limit: "20" });
    if (state !== "mine") query.set("taskState", state);
    if (prefix) query.set("prefix", prefix);
    if (selector) query.set("labelSelector", selector);
    if (cursor) query.set("cursor", cursor);
    // a search is of your own objects: everyone's list is not searched
    const theirs = state === "all" && filtered;
    const [page, mine, everybody] = await Promise.all([
      theirs ? Promise.resolve({ [k.key]: [], next: null }) : api.call("GET", `${k.list}?${query}`),
      api.call("GET", `${k.list}?limit=1`),
      api.call("GET", `${k.list}?taskState=all&limit=1`),
    ]);
    if (poller && poller.paused) return;  // a form opened in a row while this was read: keep it
    const sum = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);
    for (const s of TABS) {
      const n = s === "all" ? sum(everybody.counts) : s === "mine" ? sum(mine.counts) : mine.counts[s] || 0;
      const el = main.querySelector(`[data-count="${s}"]`);
      if (el) el.textContent = n;
      // failed objects are seen at a glance, whichever tab is open
      if (el && s === "failed") { el.classList.toggle("text-bg-danger", n > 0); el.classList.toggle("text-bg-light", n === 0); }
    }
    const rows = page[k.key];
    const tbody = document.getElementById("rows");
    if (!tbody) return;
    const where = state === "mine" ? "" : state === "all" ? " of any user" : ` in state ${state}`;
    const matching = [prefix ? ` whose name starts with “${prefix}”` : "", selector ? ` with labels ${selector}` : ""].filter(Boolean).join(" and");
    const none = theirs ? `A search lists your own ${k.title}: choose All mine or a state.` : `No ${k.title.toLowerCase()}${where}${matching}.`;
    tbody.innerHTML = rows.length ? rows.map((o) => row(kind, o)).join("") : `<tr><td colspan="7" class="text-muted">${esc(none)}</td></tr>`;
    const older = document.getElementById("older");
    older.disabled = !page.next;
    older.dataset.next = page.next || "";
    document.getElementById("newer").disabled = cursors.length === 0;
    document.getElementById("pager").classList.toggle("d-none", !page.next && cursors.length === 0);  // one page: no pager
  };
  document.getElementById("older").addEventListener("click", (e) => { cursors.push(cursor); cursor = e.target.dataset.next; load().catch(showError); });
  document.getElementById("newer").addEventListener("click", () => { cursor = cursors.pop() || null; load().catch(showError); });
  main.querySelector("#rows").addEventListener("click", (e) => onRowAction(e, kind, load));
  const filter = document.getElementById("list-filter");
  const labelsInput = document.getElementById("list-labels");
  filter.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(filter);
    const wanted = { prefix: String(f.get("prefix") || "").trim(), labelSelector: String(f.get("labelSelector") || "").trim() };
    location.hash = listHash(k, state === "all" && (wanted.prefix || wanted.labelSelector) ? "mine" : state, wanted);
  });
  labelsInput.addEventListener("input", () => clearField(labelsInput));
  filter.addEventListener("click", (e) => {
    const bulk = e.target.closest("[data-bulk]");
    if (bulk) pauseMany(bulk.dataset.bulk, kind, selector, load).catch(showError);
  });
  const problem = (err, retryIn) => {
    const bad = err.status === 422 && (err.details || []).find((d) => d.field === "labelSelector" || d.field === "prefix");
    if (bad) { markField(bad.field === "prefix" ? document.getElementById("list-prefix") : labelsInput, bad.message); }
    failed(document.querySelector("#rows td") || "rows", bad ? { title: "The search is not valid", message: "see the marked field" } : err, bad ? null : retryIn);
  };
  const form = main.querySelector("#create form");
  form.addEventListener("submit", (e) => (kind === "Task" ? submitTask(e, load) : submitTaskSet(e, load)));
  wireForm(form, kind);
  const refresh = poll(load, 1500, problem);
  load().catch((err) => {
    problem(err);
    if (err.status === 422) { refresh.stopped = true; clearTimeout(refresh.timer); }
  });
}

async function pauseMany(action, kind, selector, reload) {
  // POST /pause or /resume by label selector: a dry run lists what would change, the dialog asks
  // why (a pause) or whether a one-time object whose time passed meanwhile is cancelled (a resume)
  const key = action === "pause" ? "paused" : "resumed";
  const body = { labelSelector: selector, kind };
  clearAlert();
  const plan = await api.call("POST", `/${action}`, { ...body, dryRun: true });
  const item = (r) => `<li>${esc(r.kind)} <strong>${esc(r.name)}</strong>${r.message ? `: ${esc(r.message)}` : ""}</li>`;
  const found = plan[key];
  if (!found.length) {
    showInfo(`Nothing to ${action}: none of your ${kind}s with labels ${selector} is ${action === "pause" ? "scheduled or running unpaused" : "paused"}.`);
    return;
  }
  const n = found.length;
  const ask = action === "pause"
    ? `<label class="form-label mt-2" for="bulk-reason">Why (shown on each object, optional)</label><input class="form-control" id="bulk-reason" maxlength="200" autocomplete="off" placeholder="e.g. incident 42">`
    : `<div class="form-check mt-2"><input class="form-check-input" type="checkbox" id="bulk-skip-missed"><label class="form-check-label" for="bulk-skip-missed">Cancel one-time objects whose time passed while paused (otherwise they run now)</label></div>`;
  const sure = await confirmAction({
    title: `${action === "pause" ? "Pause" : "Resume"} ${n} ${kind}${n === 1 ? "" : "s"} with labels ${selector}?`,
    body: `<ul class="small mb-0" id="bulk-plan">${found.map(item).join("")}</ul>${plan.next ? `<p class="small text-muted mb-0">and more after these (at most 500 at a time)</p>` : ""}${plan.refused.length ? `<p class="mb-1 mt-2">Left as they are:</p><ul class="small mb-0">${plan.refused.map(item).join("")}</ul>` : ""}${ask}`,
    yes: `${action === "pause" ? "Pause" : "Resume"} ${n === 1 ? "it" : `all ${n}`}`,
    no: "Not now",
  });
  if (!sure) return;
  if (action === "pause") {
    const reason = document.getElementById("bulk-reason").value.trim();
    if (reason) body.reason = reason;
  } else if (document.getElementById("bulk-skip-missed").checked) body.skipMissed = true;
  const done = await api.call("POST", `/${action}`, body);
  showInfo(`${action === "pause" ? "Paused" : "Resumed"} ${done[key].length}: ${done[key].map((r) => r.name).join(", ")}.${done.refused.length ? ` Left as they are: ${done.refused.map((r) => `${r.name} (${r.message || r.reason})`).join("; ")}.` : ""}`);
  await reload();
}

function listHash(k, state, search) {
  // a list's address holds its tab and its search, so a bookmark or a refresh opens the same rows
  const query = new URLSearchParams({ state });
  for (const [key, value] of Object.entries(search)) if (value) query.set(key, value);
  return `${k.hash}?${query}`;
}

function mine(o) { return me && o.owner === me.name; }
function live(o) { return ["scheduled", "running"].includes(o.state); }

function lastFailedRun(o) {
  // the run a re-run would take up: a one-time object's failed generation, or a recurring one's
  // newest failed run (its runs are on its page; in a list, its last run)
  if (!o.schedule) return o.state === "failed" ? { generation: o.generation, failedStep: o.failedStep } : null;
  const runs = (o.runs || (o.lastRun ? [o.lastRun] : [])).filter((r) => r.result === "failed");
  return runs.length ? runs[runs.length - 1] : null;
}

function runActions(kind, o) {
  // on an object's page: run it now, and run its failed run again (a TaskSet from its failed step or from the start)
  if (!mine(o) || o.redacted || o.pruned) return "";
  const name = esc(label(o));
  const buttons = [`<button class="btn btn-primary btn-sm" type="button" data-action="run" data-id="${esc(o.id)}" aria-label="Run ${name} now">Run now</button>`];
  const bad = lastFailedRun(o);
  if (bad && !(o.state === "running" && !o.schedule)) {
    const which = bad.run != null ? ` run ${bad.run}` : "";
    const data = `data-id="${esc(o.id)}" ${bad.run != null ? `data-run="${esc(bad.run)}"` : ""}`;
    if (kind === "TaskSet") {
      buttons.push(`<button class="btn btn-outline-danger btn-sm" type="button" data-action="rerun" data-from="failed" ${data} aria-label="Re-run${which} of ${name} from the failed step">Re-run${esc(which)} from the failed step</button>`);
    }
    buttons.push(`<button class="btn btn-outline-danger btn-sm" type="button" data-action="rerun" data-from="start" ${data} aria-label="Re-run${which} of ${name} from the start">Re-run${esc(which)}${kind === "TaskSet" ? " from the start" : ""}</button>`);
  }
  return `<div class="btn-group flex-wrap me-2" role="group" aria-label="Run">${buttons.join("")}</div>`;
}

function actionsFor(kind, o) {
  if (!mine(o) || o.redacted) return "";
  const buttons = [];
  const name = esc(label(o));
  if (o.state === "scheduled" && !o.inFlight && !o.suspended) {
    const words = o.schedule ? "Move next run" : "Modify time";
    buttons.push(`<button class="btn btn-outline-primary btn-sm" type="button" data-action="modify" data-id="${esc(o.id)}" data-recurring="${o.schedule ? "1" : ""}" aria-label="${o.schedule ? "Move the next run of" : "Modify the time of"} ${name}">${words}</button>`);
  }
  // a recurring object is paused while live, a one-time one while it waits for its call
  if ((o.schedule && live(o)) || (o.suspended && live(o)) || (o.state === "scheduled" && !o.inFlight)) {
    buttons.push(o.suspended
      ? `<button class="btn btn-outline-success btn-sm" type="button" data-action="resume" data-id="${esc(o.id)}" aria-label="Resume ${name}">Resume</button>`
      : `<button class="btn btn-outline-dark btn-sm" type="button" data-action="suspend" data-id="${esc(o.id)}" aria-label="Suspend ${name}">Suspend</button>`);
  }
  if (o.state === "scheduled" && !o.inFlight) {
    buttons.push(`<button class="btn btn-outline-danger btn-sm" type="button" data-action="cancel" data-id="${esc(o.id)}" data-name="${name}" aria-label="Cancel ${name}">Cancel</button>`);
  }
  return buttons.length ? `<div class="btn-group flex-wrap">${buttons.join("")}</div>` : "";
}

function pausedAllWords(p) {
  return `<strong>Everything is paused</strong> by ${esc(p.by)} since ${localTime(p.at)}${p.reason ? `: ${esc(p.reason)}` : ""}. No call starts until an admin resumes everything (<code class="text-nowrap">lambdaop resume --all</code>).`;
}

function waitingWords(w) {
  // its due call waits for a place of a limit key (concurrency or rate), as GET /tasks/{id} says
  const bound = w.kind === "rate" ? `at most ${esc(w.limit)} per ${esc(w.per)}` : `at most ${esc(w.limit)} at once`;
  return `<strong>Waiting for a place</strong>: ${esc(w.kind)} key <code>${esc(w.key)}</code> (${bound}), since ${localTime(w.since)}. It leaves when a place is free, in due order.`;
}

function nextCall(o) {
  // when it calls next: its due time (a modified or jittered one too), else a recurring object's next run
  if (o.suspended) return `<span class="text-muted">suspended</span>`;
  return localTime(o.due || (o.nextRuns && o.nextRuns[0]));
}

function row(kind, o) {
  const tasks = (o.spec && o.spec.tasks) || [];
  const url = kind === "Task" ? (o.url || target(o.spec && o.spec.invoke)) : tasks.map(target).join(", ");
  const hosts = kind === "Task" ? host(url) : [...new Set(tasks.map((t) => host(target(t))))].join(", ");
  const nameCell = mine(o)
    ? `<a href="#/${KIND[kind].one}/${esc(o.id)}">${esc(label(o))}</a>`
    : `<span class="text-body">${esc(label(o))}</span> <small class="text-muted">(${esc(o.owner)})</small>`;  // another user's: no details to open
  const badges = [
    o.schedule && live(o) ? `<span class="badge text-bg-info" title="${esc(o.schedule.description)}">recurring</span>` : "",
    o.suspended && live(o) ? `<span class="badge text-bg-warning" ${o.pauseReason ? `title="${esc(o.pauseReason)}"` : ""}>suspended</span>` : "",
  ].filter(Boolean).join(" ");
  const why = o.suspended && live(o) && o.pauseReason ? ` <small class="text-muted d-block pause-reason">paused: ${esc(o.pauseReason)}</small>` : "";
  return `<tr data-id="${esc(o.id)}" data-name="${esc(label(o))}" class="${mine(o) ? "" : "theirs"}">
    <td data-label="Name" class="name"><span class="name-text">${nameCell}</span>${badges ? ` <span class="badges">${badges}</span>` : ""}${why}</td>
    <td data-label="Calls to" class="url" title="${esc(url)}">${esc(hosts || "–")}</td>
    <td data-label="Next">${nextCall(o)}</td><td data-label="Calls">${esc(o.calls)}</td><td data-label="State">${badge(o.state)}</td><td data-label="Last">${lastResult(o.last)}</td>
    <td class="actions">${actionsFor(kind, o)}</td></tr>`;
}

function toIso(local) {
  const d = new Date(local);  // datetime-local values are in the browser's time zone
  if (Number.isNaN(d.getTime())) throw { title: "Invalid time", message: "Choose a date and a time." };
  return d.toISOString();
}

function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

async function onRowAction(e, kind, reload) {
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  const id = button.dataset.id;
  const action = button.dataset.action;
  try {
    if (action === "cancel") {
      const name = button.dataset.name;
      const sure = await confirmAction({
        title: `Cancel ${kind} ${name}?`,
        body: `<p class="mb-0">${esc(kind)} <strong>${esc(name)}</strong> will not run${kind === "TaskSet" ? " any of its steps" : ""}. A cancelled object cannot be scheduled again; its history is kept.</p>`,
      });
      if (!sure) return;
      await api.call("POST", KIND[kind].cancel, { taskId: id });
      showInfo(`${kind} ${name} cancelled.`);
    } else if (action === "suspend") {
      openSuspend(kind, id, button.closest("td") || button.parentElement, reload);
      return;
    } else if (action === "resume") {
      const answer = await api.call("POST", `${KIND[kind].list}/${encodeURIComponent(id)}/resume`);
      showInfo(answer.object && answer.object.schedule ? "Resumed from its next run time." : `${kind} ${label(answer.object || {})} ${answer.message}${answer.object && answer.object.due ? `: it runs at ${new Date(answer.object.due).toLocaleString()}` : ""}.`);
    } else if (action === "run" || action === "rerun") {
      button.disabled = true;
      const body = action === "rerun" ? { from: button.dataset.from, ...(button.dataset.run ? { run: Number(button.dataset.run) } : {}) } : undefined;
      try {
        const answer = await api.call("POST", `${KIND[kind].list}/${encodeURIComponent(id)}/${action}`, body);
        showInfo(`${kind} ${label(answer.object)} ${answer.message}.`);
      } finally { button.disabled = false; }
    } else if (action === "modify") {
      openModify(kind, id, button.closest("td") || button.parentElement, reload, button.dataset.recurring === "1");
      return;
    }
    await reload();
  } catch (err) { showError(err); }
}

function openSuspend(kind, id, cell, reload) {
  // a pause says why (shown on the object and by `describe`); Enter with nothing typed pauses without a reason
  if (poller) poller.paused = true;
  cell.innerHTML = `<form class="d-flex flex-wrap gap-1 suspend-form" novalidate>
      <label class="visually-hidden" for="suspend-${esc(id)}">Why pause it (optional)</label>
      <input class="form-control form-control-sm" id="suspend-${esc(id)}" maxlength="200" placeholder="Why? e.g. incident 42" autocomplete="off">
      <button class="btn btn-dark btn-sm" type="submit">Suspend</button>
      <button class="btn btn-link btn-sm" type="button" data-close>Close</button></form>`;
  const form = cell.querySelector("form");
  const input = form.querySelector("input");
  input.focus();
  const done = () => { if (poller) poller.paused = false; reload().catch(showError); };
  form.querySelector("[data-close]").addEventListener("click", done);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const reason = input.value.trim();
    try {
      const answer = await api.call("POST", `${KIND[kind].list}/${encodeURIComponent(id)}/suspend`, reason ? { reason } : {});
      const when = answer.afterThisRun ? "Suspended once the run going on ends" : "Suspended: no run starts until it is resumed";
      showInfo(`${when}${reason ? ` (${reason})` : ""}.`);
      done();
    } catch (err) {
      if (err.status === 422) markField(input, (err.details[0] || err).message); else showError(err);
    }
  });
}

function openModify(kind, id, cell, reload, recurring) {
  if (poller) poller.paused = true;  // keep the user's form while they type
  cell.innerHTML = `<form class="d-flex flex-wrap gap-1 modify-form" novalidate>
      <label class="visually-hidden" for="modify-${esc(id)}">${recurring ? "New time of the next run" : "New time"}</label>
      <input class="form-control form-control-sm" type="datetime-local" step="1" id="modify-${esc(id)}" value="${localInputValue(new Date(Date.now() + 60000))}" required aria-describedby="modify-${esc(id)}-zone">
      <span class="form-text w-100 m-0" id="modify-${esc(id)}-zone">${esc(ZONE)} (${esc(zoneOffset())})${recurring ? "; the runs after it keep their schedule" : ""}</span>
      <button class="btn btn-primary btn-sm" type="submit">Save</button>
      <button class="btn btn-link btn-sm" type="button" data-close>Close</button></form>`;
  const form = cell.querySelector("form");
  const input = form.querySelector("input");
  input.focus();
  const done = () => { if (poller) poller.paused = false; reload().catch(showError); };
  form.querySelector("[data-close]").addEventListener("click", done);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearFieldErrors(form);
    if (!input.value) { markField(input, "Choose a date and a time."); return; }
    try {
      const answer = await api.call("POST", KIND[kind].modify, { taskId: id, at: toIso(input.value) });
      const moved = answer.task || answer.taskSet || {};
      showInfo(`${recurring ? "Next run" : "New time"} saved: ${new Date(moved.due || toIso(input.value)).toLocaleString()}.`);
      done();
    } catch (err) {
      if (err.status === 422) markField(input, (err.details[0] || err).message); else showError(err);
    }
  });
}

// ---------------------------------------------------------------- forms: fields in words

function clearField(input) {
  // a field the user changes is no longer marked: its note goes, and so does its description
  if (!input || !input.id) return;
  input.classList.remove("is-invalid");
  input.removeAttribute("aria-invalid");
  const id = `${input.id}-error`;
  const note = document.getElementById(id);
  if (note && note.dataset.made) note.remove();
  const described = (input.getAttribute("aria-describedby") || "").split(" ").filter((d) => d && d !== id);
  if (described.length) input.setAttribute("aria-describedby", described.join(" ")); else input.removeAttribute("aria-describedby");
}

function clearFieldErrors(form) {
  form.querySelectorAll(".is-invalid, [aria-invalid]").forEach(clearField);
  form.querySelectorAll(".invalid-feedback[data-made]").forEach((el) => el.remove());
}

function markField(input, message) {
  // the field says what is expected, beside it (and to a screen reader, as its description)
  input.classList.add("is-invalid");
  input.setAttribute("aria-invalid", "true");
  const id = `${input.id}-error`;
  let note = document.getElementById(id);
  if (!note) {
    note = document.createElement("div");
    note.className = "invalid-feedback";
    note.id = id;
    note.dataset.made = "1";
    (input.closest(".input-group") || input).insertAdjacentElement("afterend", note);
    input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), id].filter(Boolean).join(" "));
  }
  note.textContent = message;
  if (input.closest(".input-group")) note.classList.add("d-block");
}

function problemsShown(form, problems, fieldOf) {
  // server problems on the fields they name; what names no field goes to the banner, in words
  const rest = [];
  let first = null;
  for (const p of problems) {
    const input = fieldOf(p.field || "");
    if (input) { markField(input, p.message); first = first || input; } else rest.push(p);
  }
  if (first) first.focus();
  if (rest.length) showError({ title: "Not saved", message: "", details: rest.map((p) => ({ message: p.message, field: p.field ? plainField(p.field) : null })) });
  else if (first) showError({ title: "Not saved", message: "see the marked fields." });
}

function plainField(field) {
  // spec.conditionCheck.retries -> "condition check retries": a field's name as the form calls it
  return String(field).replace(/^spec\./, "").replace(/\[(\d+)\]/g, (m, n) => ` ${Number(n) + 1}`).replace(/\./g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
}

const DURATION = /^(\d+(\.\d+)?(ms|s|m|h|d))+$|^0$|^P(T?)[0-9.HMSDW]+$/i;

function checkDuration(input, errors, what) {
  const v = input.value.trim();
  if (v && !DURATION.test(v)) errors.push([input, `${what}: write a duration with a unit, e.g. 30s, 5m or 1h30m.`]);
}

function checkCount(input, errors, what) {
  const v = input.value.trim();
  if (v && !/^\d+$/.test(v)) errors.push([input, `${what}: a whole number, 0 or more.`]);
}

function checkTarget(input, errors, required, what = "URL") {
  const v = input.value.trim();
  if (!v) { if (required) errors.push([input, `A ${what} is needed: https://… or a Lambda function ARN (arn:aws:lambda:…).`]); return; }
  if (v.startsWith("arn:")) { if (!ARN.test(v)) errors.push([input, "A Lambda function ARN looks like arn:aws:lambda:REGION:ACCOUNT:function:NAME."]); return; }
  try { const u = new URL(v); if (!["http:", "https:"].includes(u.protocol)) throw new Error(); } catch { errors.push([input, `Write an http:// or https:// URL, or a Lambda function ARN.`]); }
}

function reportErrors(form, errors) {
  // every mistake marked at once, in the order of the form; the first one gets the focus
  errors.forEach(([input, message]) => markField(input, message));
  if (errors.length) { errors[0][0].focus(); showError({ title: "Not saved", message: errors.length === 1 ? "see the marked field." : `see the ${errors.length} marked fields.` }); }
  return errors.length === 0;
}

// ---------------------------------------------------------------- create forms

function whenFields(prefix, onceHelp = "") {
  return `<fieldset class="col-12"><legend class="form-label fs-6 mb-1">When</legend>
    <div class="d-flex flex-wrap gap-3 mb-2">
      ${[["once", "Once, at a time"], ["cron", "On a cron schedule"], ["every", "At a fixed rate"]].map(([v, t], i) => `
      <div class="form-check"><input class="form-check-input" type="radio" name="when" id="${prefix}-when-${v}" value="${v}" ${i === 0 ? "checked" : ""}>
        <label class="form-check-label" for="${prefix}-when-${v}">${t}</label></div>`).join("")}
    </div>
    <div class="row g-2">
      <div class="col-12 col-sm-8 col-lg-6" data-when="once"><label class="form-label" for="${prefix}-at">Date and time <span class="text-muted">(${esc(ZONE)})</span></label>
        <input class="form-control" id="${prefix}-at" name="at" type="datetime-local" step="1" aria-describedby="${prefix}-at-help">
        <div class="d-flex flex-wrap gap-2 mt-1" role="group" aria-label="Choose a time">
          <button class="btn btn-outline-secondary btn-sm" type="button" data-now="0">Now</button>
          <button class="btn btn-outline-secondary btn-sm" type="button" data-now="300">In 5 min</button>
        </div>
        <div class="form-text" id="${prefix}-at-help">In your time zone, ${esc(ZONE)} (${esc(zoneOffset())}).${onceHelp}</div></div>
      <div class="col-12 col-sm-6 col-lg-4 d-none" data-when="cron"><label class="form-label" for="${prefix}-cron">Cron (minute hour day month weekday)</label>
        <input class="form-control" id="${prefix}-cron" name="cron" placeholder="0 9 * * MON-FRI"></div>
      <div class="col-12 col-sm-6 col-lg-4 d-none" data-when="every"><label class="form-label" for="${prefix}-every">Every</label>
        <input class="form-control" id="${prefix}-every" name="every" placeholder="15m" aria-describedby="${prefix}-every-help">
        <div class="form-text" id="${prefix}-every-help">e.g. 30s, 15m, 1h (at least 1s)</div></div>
      <div class="col-12 col-sm-6 col-lg-4 d-none" data-when="cron"><label class="form-label" for="${prefix}-zone">Time zone</label>
        <input class="form-control" id="${prefix}-zone" name="timezone" value="${esc(ZONE)}" data-default="${esc(ZONE)}"></div>
    </div></fieldset>`;
}

function slug(text) {
  return String(text || "").trim().replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-._]+|[-._]+$/g, "");
}

function wireForm(form, kind) {
  // the "when" choice shows its fields; a reset shows Once again, with its field
  const show = () => {
    const when = form.querySelector("input[name=when]:checked").value;
    form.querySelectorAll("[data-when]").forEach((el) => el.classList.toggle("d-none", el.dataset.when !== when));
    nameHint();
  };
  // a recurring object is a spec: its name is unique and may hold only some characters; say what it becomes
  const nameInput = form.querySelector("input[name=name]");
  const hint = form.querySelector("[data-name-hint]");
  const nameHint = () => {
    const recurring = form.querySelector("input[name=when]:checked").value !== "once";
    const text = nameInput.value.trim();
    const made = slug(text);
    if (!recurring) hint.textContent = "A label: it need not be unique.";
    else if (!text) hint.textContent = `Recurring: its name is unique; left empty, one is made up (${kind.toLowerCase()}-…).`;
    else if (made !== text) hint.innerHTML = `Recurring: its name is unique and holds only letters, digits, . _ and -; it will be saved as <strong data-slug>${esc(made || "(none: type letters or digits)")}</strong>.`;
    else hint.textContent = "Recurring: its name is unique.";
  };
  form.querySelectorAll("input[name=when]").forEach((r) => r.addEventListener("change", show));
  nameInput.addEventListener("input", nameHint);
  // a Lambda function ARN has an invocation type; a URL may be signed with AWS IAM
  const target = form.querySelector("input[name=url]");
  const targetFields = () => {
    const arn = String(target ? target.value : "").trim().startsWith("arn:");
    form.querySelectorAll("[data-target]").forEach((el) => el.classList.toggle("d-none", (el.dataset.target === "arn") !== arn));
  };
  if (target && form.querySelector("[data-target]")) {
    target.addEventListener("input", targetFields);
    form.addEventListener("reset", () => setTimeout(targetFields));
  }
  form.querySelectorAll("[data-now]").forEach((b) => b.addEventListener("click", () => {
    const input = form.querySelector("input[name=at]");
    input.value = localInputValue(new Date(Date.now() + Number(b.dataset.now) * 1000));
    clearField(input);
  }));
  form.addEventListener("input", (e) => clearField(e.target));
  form.addEventListener("change", (e) => { if (e.target.matches("select, input[type=checkbox]")) clearField(e.target); });
  form.addEventListener("reset", () => setTimeout(() => { clearFieldErrors(form); if (form.resetRows) form.resetRows(); show(); }, 0));
  if (kind === "TaskSet") wireSteps(form);
  show();
}

function readWhen(form, errors) {
  const f = new FormData(form);
  const when = f.get("when");
  if (when === "cron") {
    const input = form.querySelector("input[name=cron]");
    if (!input.value.trim()) errors.push([input, "A cron schedule is needed: five fields, e.g. 0 9 * * MON-FRI."]);
    else if (input.value.trim().split(/\s+/).length !== 5) errors.push([input, "Five fields: minute hour day month weekday, e.g. 0 9 * * MON-FRI."]);
    return { schedule: { cron: input.value.trim(), timezone: (f.get("timezone") || "UTC").trim() } };
  }
  if (when === "every") {
    const input = form.querySelector("input[name=every]");
    if (!input.value.trim()) errors.push([input, "A rate is needed, e.g. 15m or 1h."]);
    else checkDuration(input, errors, "Every");
    return { schedule: { every: input.value.trim() } };
  }
  const input = form.querySelector("input[name=at]");
  if (!input.value) { errors.push([input, "A time is needed: choose a date and a time, or Now."]); return {}; }
  return { at: toIso(input.value) };
}

function successWhenFields(prefix, what) {
  return `<details class="col-12 small-details" data-success="${prefix}"><summary class="form-label">${what} succeeds when… <span class="text-muted">(default: any 2xx answer)</span></summary>
    <div class="row g-2 mt-1">
      <div class="col-12 col-sm-4"><label class="form-label" for="${prefix}-ok-status">Status codes</label>
        <input class="form-control" id="${prefix}-ok-status" name="${prefix}OkStatus" placeholder="200, 202" aria-describedby="${prefix}-ok-status-help">
        <div class="form-text" id="${prefix}-ok-status-help">Comma-separated; empty: any 2xx.</div></div>
      <div class="col-6 col-sm-4"><label class="form-label" for="${prefix}-ok-path">and the JSON field</label>
        <input class="form-control" id="${prefix}-ok-path" name="${prefix}OkPath" placeholder="status"></div>
      <div class="col-6 col-sm-4"><label class="form-label" for="${prefix}-ok-equals">equals</label>
        <input class="form-control" id="${prefix}-ok-equals" name="${prefix}OkEquals" placeholder="success"></div>
    </div></details>`;
}

function readSuccessWhen(form, prefix, errors) {
  const status = form.querySelector(`[name=${prefix}OkStatus]`);
  const path = form.querySelector(`[name=${prefix}OkPath]`);
  const equals = form.querySelector(`[name=${prefix}OkEquals]`);
  const out = {};
  if (status.value.trim()) {
    const codes = status.value.split(/[\s,]+/).filter(Boolean);
    if (codes.some((c) => !/^[1-5]\d\d$/.test(c))) errors.push([status, "Status codes are numbers from 100 to 599, e.g. 200, 202."]);
    else out.status = codes.map(Number);
  }
  if (path.value.trim() || equals.value.trim()) {
    if (!path.value.trim()) errors.push([path, "Name the JSON field to test, e.g. status."]);
    let value = equals.value.trim();
    try { value = JSON.parse(value); } catch { /* plain text */ }
    out.json = { path: path.value.trim(), equals: value };
  }
  return Object.keys(out).length ? out : null;
}

async function nameIsFree(kind, name, input, errors) {
  // applying a spec of a taken name would change that object: a new one from the form needs a new name
  const taken = await api.call("GET", `${KIND[kind].list}?name=${encodeURIComponent(name)}`);
  if (taken[KIND[kind].key].length) errors.push([input, `You have a ${kind} named ${name} already: choose another name.`]);
}

async function applySpec(kind, name, spec) {
  const answer = await api.call("POST", "/specs", [{ apiVersion: "lambdaop/v1", kind, metadata: { name }, spec }]);
  return answer.results[0];
}

function taskForm() {
  return `<form class="card card-body" id="task-form" novalidate>
    <h2 class="h5">Schedule a Task</h2>
    <div class="row g-2">
      <div class="col-12 col-lg-6"><label class="form-label" for="task-url">URL or Lambda function ARN</label>
        <input class="form-control" id="task-url" name="url" type="url" placeholder="https://… or arn:aws:lambda:…:function:…" required aria-describedby="task-url-help">
        <div class="form-text" id="task-url-help">An ARN is invoked through the Lambda Invoke API with lambdaop's AWS credentials; the body is its event (the method does not apply).</div></div>
      <div class="col-12 col-sm-6 col-lg-3"><label class="form-label" for="task-name">Name (optional)</label>
        <input class="form-control" id="task-name" name="name" aria-describedby="task-name-help">
        <div class="form-text" id="task-name-help" data-name-hint></div></div>
      <div class="col-6 col-sm-3 col-lg-3"><label class="form-label" for="task-method">Method</label>
        <select class="form-select" id="task-method" name="method">${["GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => `<option>${m}</option>`).join("")}</select></div>
      <div class="col-12 col-lg-6 d-none" data-target="arn"><label class="form-label" for="task-invocation">Invocation type</label>
        <select class="form-select" id="task-invocation" name="invocationType" aria-describedby="task-invocation-help">
          <option value="RequestResponse">RequestResponse: wait for the function's answer</option>
          <option value="Event">Event: queue the event (the function runs later; 202)</option>
          <option value="DryRun">DryRun: only check that the call is allowed (204)</option></select>
        <div class="form-text" id="task-invocation-help">How the Lambda Invoke API is called.</div></div>
      <div class="col-12 col-lg-6" data-target="url"><div class="form-check mt-lg-4">
        <input class="form-check-input" type="checkbox" id="task-aws-iam" name="awsIam" aria-describedby="task-aws-iam-help">
        <label class="form-check-label" for="task-aws-iam">Sign with AWS IAM (SigV4)</label>
        <div class="form-text" id="task-aws-iam-help">For a Lambda Function URL whose auth type is AWS_IAM: signed with lambdaop's AWS credentials.</div></div></div>
      ${whenFields("task")}
      <div class="col-4 col-lg-2"><label class="form-label" for="task-retries">Retries</label>
        <input class="form-control" id="task-retries" name="retries" inputmode="numeric" value="0" aria-describedby="task-retries-help">
        <div class="form-text" id="task-retries-help">Further attempts after a failure</div></div>
      <div class="col-8 col-lg-2"><label class="form-label" for="task-retry-delay">Retry delay</label>
        <input class="form-control" id="task-retry-delay" name="retryDelay" value="10s" aria-describedby="task-retry-help">
        <div class="form-text" id="task-retry-help">e.g. 30s, 5m</div></div>
      <div class="col-12 col-lg-8"><label class="form-label" for="task-body">Body, or the function's event (JSON, optional)</label>
        <textarea class="form-control" id="task-body" name="body" rows="2"></textarea></div>
      ${successWhenFields("task", "The call")}
    </div>
    <div class="mt-3"><button class="btn btn-primary" type="submit">Schedule</button></div>
  </form>`;
}

async function submitTask(e, reload) {
  e.preventDefault();
  const form = e.target;
  clearFieldErrors(form);
  clearAlert();
  const f = new FormData(form);
  const errors = [];
  const urlInput = form.querySelector("[name=url]");
  checkTarget(urlInput, errors, true);
  const when = readWhen(form, errors);
  checkCount(form.querySelector("[name=retries]"), errors, "Retries");
  checkDuration(form.querySelector("[name=retryDelay]"), errors, "Retry delay");
  const url = String(f.get("url") || "").trim();
  const arn = url.startsWith("arn:");  // a Lambda function: the Invoke API, its event in `payload`
  const invoke = arn ? { lambda: url } : { url, method: f.get("method") };
  const invocationType = String(f.get("invocationType") || "RequestResponse");
  if (arn && invocationType !== "RequestResponse") invoke.invocationType = invocationType;
  if (!arn && f.get("awsIam")) invoke.auth = "aws_iam";
  const bodyInput = form.querySelector("[name=body]");
  const body = bodyInput.value.trim();
  if (body) {
    try { invoke[arn ? "payload" : "body"] = JSON.parse(body); } catch { errors.push([bodyInput, "Not JSON: write a JSON value, e.g. {\"report\": \"daily\"}, or leave it empty."]); }
  }
  const successWhen = readSuccessWhen(form, "task", errors);
  if (successWhen) invoke.successWhen = successWhen;
  const nameInput = form.querySelector("[name=name]");
  const recurring = Boolean(when.schedule);
  const name = recurring ? slug(f.get("name")) || `task-${Date.now().toString(36)}` : String(f.get("name") || "").trim();
  try {
    if (recurring && errors.length === 0) await nameIsFree("Task", name, nameInput, errors);
    if (!reportErrors(form, errors)) return;
    const retries = Number(f.get("retries") || 0);
    const retryDelay = String(f.get("retryDelay") || "").trim() || "10s";
    if (recurring) {  // a recurring Task is a spec: it needs a unique name
      const result = await applySpec("Task", name, { invoke, retries, retryDelay, schedule: when.schedule });
      showInfo(`Task ${result.name} ${result.action}.`);
    } else {
      const { lambda, ...rest } = invoke;  // the original route takes an ARN in its URL field
      const request = { ...rest, ...(arn ? { url: lambda } : {}), at: when.at, retries, retryDelay };
      if (name) request.name = name;
      const created = await api.call("POST", "/scheduler/schedule", request);
      showInfo(`Task ${label(created)} scheduled.`);
    }
    form.reset();
    await reload();
  } catch (err) {
    if (err.status === 422) problemsShown(form, err.details, (field) => taskField(form, field));
    else showError(err);
  }
}

function taskField(form, field) {
  // the input behind a field the server names (the original route's, or the spec's)
  const f = field.replace(/^spec\./, "");
  const by = (name) => form.querySelector(`[name=${name}]`);
  if (/^(url|invoke(\.url|\.lambda)?)$/.test(f) || f === "lambda") return by("url");
  if (/^(at|after|delay)$/.test(f)) return by("at");
  if (f.startsWith("schedule.cron")) return by("cron");
  if (f.startsWith("schedule.every")) return by("every");
  if (f.startsWith("schedule.timezone")) return by("timezone");
  if (f === "retries") return by("retries");
  if (/^(retryDelay|backoff)/.test(f)) return by("retryDelay");
  if (/^(body|payload|invoke\.(body|payload))/.test(f)) return by("body");
  if (/successWhen\.status/.test(f)) return by("taskOkStatus");
  if (/successWhen\.json/.test(f)) return by("taskOkPath");
  if (/^(name|metadata\.name)$/.test(f)) return by("name");
  if (/^(method|invoke\.method)$/.test(f)) return by("method");
  return null;
}

function stepRow(i, value = {}) {
  return `<div class="row g-2 align-items-end step-row mb-2" data-step-row>
    <div class="col-12 col-md-7"><label class="form-label small mb-0" for="ts-task-${i}">Task ${i + 1}: URL or Lambda function ARN</label>
      <input class="form-control" id="ts-task-${i}" name="taskUrl" type="url" value="${esc(value.url || "")}" placeholder="https://… or arn:aws:lambda:REGION:ACCOUNT:function:NAME"></div>
    <div class="col-5 col-md-2"><label class="form-label small mb-0" for="ts-task-${i}-method"><span class="visually-hidden">Task ${i + 1}: </span>Method</label>
      <select class="form-select" id="ts-task-${i}-method" name="taskMethod">${["GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => `<option ${value.method === m ? "selected" : ""}>${m}</option>`).join("")}</select></div>
    <div class="col-4 col-md-2"><label class="form-label small mb-0" for="ts-task-${i}-retries"><span class="visually-hidden">Task ${i + 1}: </span>Retries</label>
      <input class="form-control" id="ts-task-${i}-retries" name="taskRetries" inputmode="numeric" value="${esc(value.retries ?? 0)}"></div>
    <div class="col-3 col-md-1"><button class="btn btn-outline-secondary w-100" type="button" data-remove-step aria-label="Remove task ${i + 1}">✕</button></div>
  </div>`;
}

function wireSteps(form) {
  const box = form.querySelector("#ts-steps");
  const renumber = () => {
    const values = [...box.querySelectorAll("[data-step-row]")].map((r) => ({ url: r.querySelector("[name=taskUrl]").value, method: r.querySelector("[name=taskMethod]").value, retries: r.querySelector("[name=taskRetries]").value }));
    setRows(values);
  };
  const setRows = (values) => {
    box.innerHTML = (values.length ? values : [{}]).map((v, i) => stepRow(i, v)).join("");
  };
  form.resetRows = () => setRows([{}]);
  box.addEventListener("click", (e) => {
    const remove = e.target.closest("[data-remove-step]");
    if (!remove) return;
    remove.closest("[data-step-row]").remove();
    renumber();
  });
  form.querySelector("#ts-add-step").addEventListener("click", () => {
    const rows = [...box.querySelectorAll("[data-step-row]")];
    box.insertAdjacentHTML("beforeend", stepRow(rows.length));
    box.querySelector(`#ts-task-${rows.length}`).focus();
  });
  box.addEventListener("paste", (e) => {
    // several URLs pasted into one field become one task each
    const input = e.target.closest("[name=taskUrl]");
    const text = (e.clipboardData || window.clipboardData).getData("text");
    const lines = text.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
    if (!input || lines.length < 2) return;
    e.preventDefault();
    input.value = lines[0];
    const rest = lines.slice(1).map((url) => ({ url }));
    const values = [...box.querySelectorAll("[data-step-row]")].map((r) => ({ url: r.querySelector("[name=taskUrl]").value, method: r.querySelector("[name=taskMethod]").value, retries: r.querySelector("[name=taskRetries]").value }));
    const at = [...box.querySelectorAll("[name=taskUrl]")].indexOf(input);
    values.splice(at + 1, 0, ...rest);
    setRows(values.filter((v, i) => v.url || i === 0));
  });
  setRows([{}]);
}

function taskSetForm() {
  return `<form class="card card-body" id="taskset-form" novalidate>
    <h2 class="h5">Orchestrate a TaskSet</h2>
    <fieldset class="mb-2"><legend class="form-label fs-6 mb-1">Tasks, in order</legend>
      <div id="ts-steps"></div>
      <button class="btn btn-outline-primary btn-sm" type="button" id="ts-add-step">Add a task</button>
      <div class="form-text">A URL, or a Lambda function ARN (invoked through the Invoke API). Pasting several lines makes one task of each. A task's retries are further attempts after it fails.</div>
    </fieldset>
    <div class="row g-2">
      <div class="col-12 col-lg-6"><label class="form-label" for="ts-check">Condition check URL (optional)</label>
        <input class="form-control" id="ts-check" name="check" type="url" placeholder="https://… or arn:aws:lambda:…" aria-describedby="ts-check-help">
        <div class="form-text" id="ts-check-help">Called after each task but the last; the next task runs once it succeeds.</div></div>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-check-delay">Delay before each check</label>
        <input class="form-control" id="ts-check-delay" name="checkDelay" value="0s"></div>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-check-retries">Check retries</label>
        <input class="form-control" id="ts-check-retries" name="checkRetries" inputmode="numeric" value="0"></div>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-check-retry-delay">Delay between checks</label>
        <input class="form-control" id="ts-check-retry-delay" name="checkRetryDelay" value="10s"></div>
      ${successWhenFields("check", "The check")}
      <div class="col-12 col-lg-6"><label class="form-label" for="ts-fallback">Fallback URL (optional)</label>
        <input class="form-control" id="ts-fallback" name="fallback" type="url" placeholder="https://… or arn:aws:lambda:…" aria-describedby="ts-fallback-help"></div>
      <fieldset class="col-12 col-lg-6"><legend class="form-label fs-6 mb-1">The fallback runs when</legend>
        <div class="form-check"><input class="form-check-input" type="checkbox" name="fallbackOn" value="check" id="ts-fallback-check" checked>
          <label class="form-check-label" for="ts-fallback-check">the check gives up (its retries are used up)</label></div>
        <div class="form-check"><input class="form-check-input" type="checkbox" name="fallbackOn" value="task" id="ts-fallback-task" checked>
          <label class="form-check-label" for="ts-fallback-task">a task fails (its retries are used up)</label></div>
        <div class="form-text" id="ts-fallback-help">Otherwise the fallback is not called, and a set that fails ends without it.</div></fieldset>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-initial">Initial delay (once)</label>
        <input class="form-control" id="ts-initial" name="initialDelay" value="0s" aria-describedby="ts-initial-help">
        <div class="form-text" id="ts-initial-help">Used when no time is chosen.</div></div>
      <div class="col-12 col-lg-6"><label class="form-label" for="ts-name">Name (optional)</label>
        <input class="form-control" id="ts-name" name="name" aria-describedby="ts-name-help">
        <div class="form-text" id="ts-name-help" data-name-hint></div></div>
      ${whenFields("ts", " Empty: after the initial delay.")}
    </div>
    <div class="mt-3"><button class="btn btn-primary" type="submit">Orchestrate</button></div>
  </form>`;
}

async function submitTaskSet(e, reload) {
  e.preventDefault();
  const form = e.target;
  clearFieldErrors(form);
  clearAlert();
  const f = new FormData(form);
  const errors = [];
  const rows = [...form.querySelectorAll("[data-step-row]")];
  const filled = rows.filter((r) => r.querySelector("[name=taskUrl]").value.trim());
  if (!filled.length) errors.push([rows[0].querySelector("[name=taskUrl]"), "At least one task is needed: a URL or a Lambda function ARN."]);
  const tasks = filled.map((r) => {
    const input = r.querySelector("[name=taskUrl]");
    checkTarget(input, errors, true);
    const retriesInput = r.querySelector("[name=taskRetries]");
    checkCount(retriesInput, errors, "Retries");
    const url = input.value.trim();
    const step = url.startsWith("arn:") ? { lambda: url } : { url, method: r.querySelector("[name=taskMethod]").value };
    const retries = Number(retriesInput.value || 0);
    if (retries) step.retries = retries;
    return step;
  });
  const checkInput = form.querySelector("[name=check]");
  checkTarget(checkInput, errors, false, "condition check URL");
  checkDuration(form.querySelector("[name=checkDelay]"), errors, "Delay before each check");
  checkCount(form.querySelector("[name=checkRetries]"), errors, "Check retries");
  checkDuration(form.querySelector("[name=checkRetryDelay]"), errors, "Delay between checks");
  const checkOk = readSuccessWhen(form, "check", errors);
  const fallbackInput = form.querySelector("[name=fallback]");
  checkTarget(fallbackInput, errors, false, "fallback URL");
  const on = f.getAll("fallbackOn");
  if (f.get("fallback") && !on.length) errors.push([form.querySelector("#ts-fallback-check"), "Tick when the fallback runs, or leave its URL empty."]);
  const recurring = f.get("when") !== "once";
  const when = recurring ? readWhen(form, errors) : (f.get("at") ? { at: toIso(f.get("at")) } : {});
  if (!recurring && !f.get("at")) checkDuration(form.querySelector("[name=initialDelay]"), errors, "Initial delay");
  const checkValue = String(f.get("check") || "").trim();
  const check = checkValue ? { invoke: checkOk ? { ...(checkValue.startsWith("arn:") ? { lambda: checkValue } : { url: checkValue }), successWhen: checkOk } : checkValue,
    delay: String(f.get("checkDelay") || "").trim() || "0s", retries: Number(f.get("checkRetries") || 0), retryDelay: String(f.get("checkRetryDelay") || "").trim() || "10s" } : null;
  const nameInput = form.querySelector("[name=name]");
  const name = recurring ? slug(f.get("name")) || `taskset-${Date.now().toString(36)}` : String(f.get("name") || "").trim();
  try {
    if (recurring && errors.length === 0) await nameIsFree("TaskSet", name, nameInput, errors);
    if (!reportErrors(form, errors)) return;
    if (recurring) {
      const spec = { tasks, ...when };
      if (check) spec.conditionCheck = check;
      if (f.get("fallback")) spec.fallback = { invoke: String(f.get("fallback")).trim(), on };
      const result = await applySpec("TaskSet", name, spec);
      showInfo(`TaskSet ${result.name} ${result.action}.`);
    } else {
      const request = { tasks };
      if (when.at) request.at = when.at; else request.initialDelay = String(f.get("initialDelay") || "").trim() || "0s";
      if (name) request.name = name;
      if (check) {
        request.conditionCheckUrl = check.invoke;
        request.timeDelayForConditionCheck = check.delay;
        request.conditionCheckRetries = check.retries;
        request.timeDelayBetweenRetries = check.retryDelay;
      }
      if (f.get("fallback")) { request.fallbackUrl = String(f.get("fallback")).trim(); request.fallbackOn = on; }
      const created = await api.call("POST", "/orchestrator/orchestrate", request);
      showInfo(`TaskSet ${label(created)} scheduled.`);
    }
    form.reset();
    await reload();
  } catch (err) {
    if (err.status === 422) problemsShown(form, err.details, (field) => taskSetField(form, field));
    else showError(err);
  }
}

function taskSetField(form, field) {
  const f = field.replace(/^spec\./, "");
  const by = (name) => form.querySelector(`[name=${name}]`);
  const rows = [...form.querySelectorAll("[data-step-row]")].filter((r) => r.querySelector("[name=taskUrl]").value.trim());
  const step = /^tasks\[(\d+)\](\.(\w+))?/.exec(f);
  if (step && rows[Number(step[1])]) return rows[Number(step[1])].querySelector(step[3] === "retries" ? "[name=taskRetries]" : step[3] === "method" ? "[name=taskMethod]" : "[name=taskUrl]");
  if (/^(tasks|taskUrls|tasksURL|\w+TaskURL)/.test(f)) return form.querySelector("[name=taskUrl]");
  if (/^(conditionCheck\.invoke|conditionCheckUrl)/.test(f)) return by("check");
  if (/^(conditionCheck\.delay|timeDelayForConditionCheck)/.test(f)) return by("checkDelay");
  if (/^(conditionCheck\.retries|conditionCheckRetries)$/.test(f)) return by("checkRetries");
  if (/^(conditionCheck\.retryDelay|timeDelayBetweenRetries)/.test(f)) return by("checkRetryDelay");
  if (/^(fallback\.invoke|fallbackUrl)/.test(f)) return by("fallback");
  if (/^(fallback\.on|fallbackOn)/.test(f)) return form.querySelector("#ts-fallback-check");
  if (/^(initialDelay)$/.test(f)) return by("initialDelay");
  if (/^(at|after|delay)$/.test(f)) return by("at");
  if (f.startsWith("schedule.cron")) return by("cron");
  if (f.startsWith("schedule.every")) return by("every");
  if (f.startsWith("schedule.timezone")) return by("timezone");
  if (/^(name|metadata\.name)$/.test(f)) return by("name");
  return null;
}

// ---------------------------------------------------------------- details

function attemptsTable(attempts) {
  if (!attempts.length) return `<p class="text-muted">No calls yet.</p>`;
  return `<table class="table table-sm align-middle objects" id="attempts">
    <caption class="visually-hidden">Calls</caption>
    <thead><tr><th scope="col">Time</th><th scope="col">Step</th><th scope="col">Attempt</th><th scope="col">Result</th><th scope="col">Duration</th><th scope="col">Response</th></tr></thead>
    <tbody>${attempts.slice().reverse().map((a) => `<tr data-step="${esc(a.step)}">
      <td data-label="Time">${localTime(a.at)}</td><td data-label="Step">${esc(stepLabel(a.step))}${a.run ? ` <small class="text-muted">run ${esc(a.run)}</small>` : ""}</td><td data-label="Attempt">${esc(a.attempt)}</td>
      <td data-label="Result">${a.ok ? `<span class="text-success">ok${a.status ? ` (HTTP ${esc(a.status)})` : ""}</span>` : `<span class="text-danger">${esc(a.error || "failed")}</span>`}${a.delayReason ? `<br><small class="text-muted">next try in ${esc((a.nextDelayMs / 1000).toFixed(1))}s: ${esc(a.delayReason)}</small>` : ""}</td>
      <td data-label="Duration">${a.duration_ms != null ? `${esc(Math.round(a.duration_ms))} ms` : "–"}</td>
      <td data-label="Response">${a.response ? `<pre class="response">${esc(a.response)}</pre>` : ""}</td></tr>`).join("")}</tbody></table>`;
}

function scheduleBlock(o) {
  if (!o.schedule) return "";
  const next = (o.nextRuns || []).map((t) => `<li>${localTime(t)}</li>`).join("") || `<li class="text-muted">${o.suspended ? "Suspended: no runs until resumed." : "No more runs."}</li>`;
  const runs = (o.runs || []).slice().reverse().map((r) => `<tr data-run="${esc(r.run)}"><td data-label="Run">${esc(r.run)}${r.trigger ? ` <small class="text-muted" data-trigger="${esc(r.trigger)}">${esc(TRIGGER_WORDS[r.trigger] || r.trigger)}${r.rerunOf ? ` of run ${esc(r.rerunOf)}` : ""}</small>` : ""}</td><td data-label="Due">${localTime(r.scheduled)}</td><td data-label="Finished">${localTime(r.finished)}</td>
      <td data-label="Result">${badge(r.result)}${r.reason ? ` <small>${esc(r.reason)}</small>` : ""}${r.notified ? ` <small class="text-muted">notified: ${esc(r.notified)}</small>` : ""}</td></tr>`).join("");
  return `<h2 class="h5 mt-3">Schedule</h2>
    <p id="schedule-words">${esc(o.schedule.description)}${o.suspended && live(o) ? ` <span class="badge text-bg-warning">suspended</span>` : ""}${o.skippedRuns ? ` <small class="text-muted">(${esc(o.skippedRuns)} run(s) skipped or missed)</small>` : ""}</p>
    <div class="row g-3"><div class="col-12 col-md-4"><h3 class="h6">Next runs</h3><ol class="small" id="next-runs">${next}</ol></div>
    <div class="col-12 col-md-8"><h3 class="h6">Runs</h3>${runs ? `<table class="table table-sm objects" id="runs"><thead><tr><th scope="col">Run</th><th scope="col">Due</th><th scope="col">Finished</th><th scope="col">Result</th></tr></thead><tbody>${runs}</tbody></table>` : `<p class="text-muted small">No run has ended yet.</p>`}</div></div>`;
}

function backfillForm(o) {
  // a recurring object's missed runs: the runs its schedule would have made in [from, until)
  if (!o.schedule || !mine(o) || o.redacted || !live(o)) return "";
  const hour = new Date();
  hour.setMinutes(0, 0, 0);
  return `<details class="small-details mt-3" id="backfill"><summary class="h6 d-inline">Backfill missed runs…</summary>
    <form class="row g-2 align-items-end mt-1" id="backfill-form" novalidate>
      <div class="col-12 col-sm-5 col-lg-3"><label class="form-label" for="backfill-start">From</label>
        <input class="form-control" type="datetime-local" step="1" id="backfill-start" name="start" value="${localInputValue(new Date(hour.getTime() - 6 * 3600 * 1000))}"></div>
      <div class="col-12 col-sm-5 col-lg-3"><label class="form-label" for="backfill-end">Until (not included)</label>
        <input class="form-control" type="datetime-local" step="1" id="backfill-end" name="end" value="${localInputValue(hour)}"></div>
      <div class="col-6 col-sm-2 col-lg-2"><label class="form-label" for="backfill-parallelism">At once</label>
        <input class="form-control" type="number" min="1" max="50" step="1" id="backfill-parallelism" name="parallelism" value="1"></div>
      <div class="col-6 col-sm-2 col-lg-2"><button class="btn btn-outline-primary" type="submit">Backfill</button></div>
      <div class="col-12 form-text mt-0">In your time zone, ${esc(ZONE)} (${esc(zoneOffset())}). The runs its schedule would have made in that time (at most 1,000), each recorded as a backfill run: at once 1 runs them one after another from now, then the schedule goes on where it was; more deals them out to that many copies of it (labelled <code>lambdaop/backfill-of=${esc(o.name)}</code>), each running its share in turn and ending completed, while this one and its schedule go on untouched.</div>
    </form></details>`;
}

function wireBackfill(detail, kind, id, reload) {
  // while the form is open the page does not redraw it (what is typed stays)
  detail.addEventListener("toggle", (e) => {
    if (e.target.id === "backfill" && poller) poller.paused = e.target.open;
  }, true);
  detail.addEventListener("submit", async (e) => {
    if (e.target.id !== "backfill-form") return;
    e.preventDefault();
    const form = e.target;
    clearFieldErrors(form);
    const start = form.querySelector("[name=start]");
    const end = form.querySelector("[name=end]");
    const errors = [];
    if (!start.value) errors.push([start, "Choose the date and time the backfill starts from."]);
    if (!end.value) errors.push([end, "Choose the date and time it ends before."]);
    if (!errors.length && new Date(end.value) <= new Date(start.value)) errors.push([end, "Until must be later than From."]);
    const parallel = form.querySelector("[name=parallelism]");
    const atOnce = Number(parallel.value || "1");
    if (!Number.isInteger(atOnce) || atOnce < 1 || atOnce > 50) errors.push([parallel, "Say how many runs at once: a whole number from 1 to 50."]);
    if (!reportErrors(form, errors)) return;
    try {
      const answer = await api.call("POST", `${KIND[kind].list}/${encodeURIComponent(id)}/backfill`, { start: toIso(start.value), end: toIso(end.value), ...(atOnce > 1 ? { parallelism: atOnce } : {}) });
      showInfo(`${kind} ${label(answer.object)} ${answer.message}.`);
      if (poller) poller.paused = false;
      await reload();
    } catch (err) {
      const bad = err.status === 422 ? (err.details || []).filter((d) => d.field === "start" || d.field === "end") : [];
      if (bad.length) bad.forEach((d) => markField(d.field === "start" ? start : end, d.message));
      else showError(err);
    }
  });
}

function renderDetail(kind, id) {
  const k = KIND[kind];
  main.innerHTML = `<p><a href="${k.hash}">← ${k.title}</a></p><div id="detail">Loading…</div>`;
  const load = async () => {
    const o = await api.call("GET", `${k.list}/${encodeURIComponent(id)}`);
    const detail = document.getElementById("detail");
    if (!detail || (poller && poller.paused)) return;
    const steps = kind === "TaskSet" ? drawSteps(o) : "";
    const shownName = label(o);
    const restore = keepSteps(detail);  // an opened output stays open, with the focus, when redrawn
    detail.innerHTML = `
      <div class="d-flex flex-wrap align-items-center gap-2 mb-2"><h1 class="h3 mb-0 text-break">${esc(shownName)}</h1> ${badge(o.state)}
        <span class="ms-auto d-flex flex-wrap gap-1" id="detail-actions">${runActions(kind, o)}${actionsFor(kind, o)}</span></div>
      ${o.pausedAll ? `<div class="alert alert-danger" id="detail-paused-all">${pausedAllWords(o.pausedAll)}</div>` : ""}
      ${o.waitingFor && live(o) ? `<div class="alert alert-info" id="detail-waiting">${waitingWords(o.waitingFor)}</div>` : ""}
      ${o.suspended && live(o) ? `<div class="alert alert-warning" id="pause-reason"><strong>Paused</strong>${o.pauseReason ? `: ${esc(o.pauseReason)}` : " (no reason was given)"}. No call starts until it is resumed.</div>` : ""}
      <dl class="row mb-0">
        ${shownName !== o.name ? `<dt class="col-sm-3">Name</dt><dd class="col-sm-9 text-break" id="detail-name"><code>${esc(o.name)}</code> <small class="text-muted">(what the CLI and specs call it)</small></dd>` : ""}
        <dt class="col-sm-3">Id</dt><dd class="col-sm-9"><code>${esc(o.id)}</code></dd>
        <dt class="col-sm-3">Owner</dt><dd class="col-sm-9">${esc(o.owner)}</dd>
        ${kind === "Task" && o.spec.invoke.lambda ? `<dt class="col-sm-3">Lambda function</dt><dd class="col-sm-9 text-break" id="detail-function">${esc(target(o.spec.invoke))} <small class="text-muted">(${esc(o.spec.invoke.invocationType || "RequestResponse")})</small></dd>` : ""}
        ${kind === "Task" && !o.spec.invoke.lambda ? `<dt class="col-sm-3">URL</dt><dd class="col-sm-9 text-break">${esc(o.spec.invoke.method || "GET")} ${esc(o.url)}</dd>` : ""}
        <dt class="col-sm-3">Next call</dt><dd class="col-sm-9">${o.suspended && live(o) ? "suspended" : localTime(o.due)}</dd>
        <dt class="col-sm-3">Calls</dt><dd class="col-sm-9">${esc(o.calls)}</dd>
        <dt class="col-sm-3">Generation</dt><dd class="col-sm-9">${esc(o.generation)}</dd>
        ${o.reason ? `<dt class="col-sm-3">Reason</dt><dd class="col-sm-9">${esc(o.reason)}</dd>` : ""}
        ${o.trigger ? `<dt class="col-sm-3">This run</dt><dd class="col-sm-9" id="detail-trigger">${esc(TRIGGER_WORDS[o.trigger] || o.trigger)}${o.rerunOf ? ` of run ${esc(o.rerunOf)}` : ""}${o.backfillLeft ? ` <small class="text-muted">(${esc(o.backfillLeft)} backfill run(s) to go)</small>` : ""}</dd>` : ""}
        ${o.rerunsWaiting ? `<dt class="col-sm-3">Re-runs waiting</dt><dd class="col-sm-9" id="detail-reruns">of run(s) ${o.rerunsWaiting.map(esc).join(", ")}, one after another once this run has ended</dd>` : ""}
      </dl>${scheduleBlock(o)}${backfillForm(o)}${steps}
      <h2 class="h5 mt-3">Calls</h2>${attemptsTable(o.attempts || [])}`;
    restore();
  };
  document.getElementById("detail").addEventListener("click", (e) => {
    if (e.target.closest("#detail-actions")) onRowAction(e, kind, load);
  });
  wireBackfill(document.getElementById("detail"), kind, id, load);
  watchSteps(document.getElementById("detail"));
  const gone = (err, retryIn) => {
    const detail = document.getElementById("detail");
    if (!detail) return;  // another view is open by now
    if (err.status === 404) {
      detail.innerHTML = `<p class="text-danger load-error">Not found: no ${esc(kind)} ${esc(id)} is yours to see (it does not exist, or it belongs to another user).</p><p><a href="${k.hash}">See your ${k.title}</a></p>`;
    } else failed("detail", err, retryIn);
  };
  // the refresh starts with the view (never later: by then another view may be open and polling);
  // what retrying cannot mend stops it, and what may mend by itself is tried again
  const refresh = poll(load, 1500, gone);
  load().catch((err) => {
    gone(err);
    if (FINAL_ERRORS.includes(err.status)) { refresh.stopped = true; clearTimeout(refresh.timer); }
  });
}

// ---------------------------------------------------------------- runs across objects

const RUN_TABS = ["failed", "completed", "cancelled", "any"];  // failed first: what the person on call looks for
const RUN_TAB_LABEL = { any: "Any result" };
const SINCE = [["1h", "the last hour"], ["24h", "the last 24 hours"], ["7d", "the last 7 days"], ["30d", "the last 30 days (all kept)"]];
const TRIGGER_WORDS = { now: "run now", rerun: "re-run", backfill: "backfill" };

function objectHash(kind, id) { return `#/${kind === "TaskSet" ? "taskset" : "task"}/${encodeURIComponent(id)}`; }

function runLink(r) {
  // the run's object, a click away (a run names its object; the page opens the object's view)
  const o = r.object || {};
  return `<a href="${objectHash(o.kind, o.id)}" data-object="${esc(o.id)}">${esc(o.name)}</a>`;
}

function runNumber(r) {
  const which = r.run != null ? `run ${r.run}` : `generation ${r.generation}`;
  const how = r.trigger ? ` <span class="badge text-bg-light" data-trigger="${esc(r.trigger)}">${esc(TRIGGER_WORDS[r.trigger] || r.trigger)}${r.rerunOf ? ` of run ${esc(r.rerunOf)}` : ""}</span>` : "";
  return `${esc(which)}${how}`;
}

function runsHash(filters) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
  return `#/runs?${query}`;
}

async function rerunMany(filters, reload) {
  // POST /rerun: a dry run says which runs it would take up (and which it refuses, and why), then the person says yes
  const body = { since: filters.since, from: "failed" };
  if (filters.labelSelector) body.labelSelector = filters.labelSelector;
  if (filters.kind) body.kind = filters.kind;
  clearAlert();
  const plan = await api.call("POST", "/rerun", { ...body, dryRun: true });
  const item = (r) => `<li>${esc(r.kind)} <strong>${esc(r.name)}</strong>: ${esc(r.message || r.reason || "")}</li>`;
  const refused = plan.refused.length ? `<p class="mb-1 mt-2">Not re-run:</p><ul class="small mb-0" id="rerun-refused">${plan.refused.map(item).join("")}</ul>` : "";
  if (!plan.rerun.length) {
    showInfo(`Nothing to re-run: no object has a failed run here that can run again${plan.refused.length ? ` (${plan.refused.map((r) => `${r.name}: ${r.message || r.reason}`).join("; ")})` : ""}.`);
    return;
  }
  const n = plan.rerun.length;
  const sure = await confirmAction({
    title: `Re-run ${n} failed run${n === 1 ? "" : "s"}?`,
    body: `<ul class="small mb-0" id="rerun-plan">${plan.rerun.map(item).join("")}</ul>${plan.next ? `<p class="small text-muted mb-0">and more after these (at most 500 at a time)</p>` : ""}${refused}`,
    yes: `Re-run ${n === 1 ? "it" : `all ${n}`}`,
    no: "Not now",
  });
  if (!sure) return;
  const done = await api.call("POST", "/rerun", body);
  showInfo(`Re-running ${done.rerun.length}: ${done.rerun.map((r) => r.name).join(", ")}.${done.refused.length ? ` Refused: ${done.refused.map((r) => `${r.name} (${r.message || r.reason})`).join("; ")}.` : ""}`);
  await reload();
}

function renderRuns(params) {
  const state = RUN_TABS.includes(params.get("state")) ? params.get("state") : "failed";
  const since = SINCE.some(([v]) => v === params.get("since")) ? params.get("since") : "24h";
  const kind = ["Task", "TaskSet"].includes(params.get("kind")) ? params.get("kind") : "";
  const selector = params.get("labelSelector") || "";
  const prefix = params.get("prefix") || "";
  const filters = { state, since, kind, labelSelector: selector, prefix };
  const cursors = [];
  let cursor = null;
  main.innerHTML = `
    <h1 class="h3">Runs</h1>
    <p class="text-muted">Runs that ended, of all your Tasks and TaskSets, newest first. Each opens its object.</p>
    <form class="row g-2 align-items-end mb-2" id="runs-filter" role="search" aria-label="Filter runs" novalidate>
      <div class="col-12 col-sm-6 col-lg-3"><label class="form-label" for="runs-prefix">Name starts with</label>
        <input class="form-control" type="search" id="runs-prefix" name="prefix" value="${esc(prefix)}" autocomplete="off" spellcheck="false"></div>
      <div class="col-12 col-sm-6 col-lg-2"><label class="form-label" for="runs-since">Ended in</label>
        <select class="form-select" id="runs-since" name="since">${SINCE.map(([v, t]) => `<option value="${v}" ${v === since ? "selected" : ""}>${esc(t)}</option>`).join("")}</select></div>
      <div class="col-12 col-sm-6 col-lg-2"><label class="form-label" for="runs-kind">Kind</label>
        <select class="form-select" id="runs-kind" name="kind"><option value="">Tasks and TaskSets</option>${["Task", "TaskSet"].map((k) => `<option value="${k}" ${k === kind ? "selected" : ""}>${k}s</option>`).join("")}</select></div>
      <div class="col-12 col-sm-6 col-lg-3"><label class="form-label" for="runs-labels">Labels</label>
        <input class="form-control" id="runs-labels" name="labelSelector" value="${esc(selector)}" placeholder="team=billing,env!=dev" autocomplete="off" aria-describedby="runs-labels-help"></div>
      <div class="col-12 col-lg-2 d-flex flex-wrap gap-2"><button class="btn btn-primary" type="submit">Filter</button>
        ${selector || kind || prefix ? `<a class="btn btn-link" href="${runsHash({ state, since })}">Clear</a>` : ""}</div>
      <div class="col-12 form-text mt-0" id="runs-labels-help">Labels as kubectl's <code>-l</code>: <code>team=billing</code>, <code>env!=dev</code>, <code>tier in (a,b)</code>.</div>
    </form>
    <ul class="nav nav-tabs flex-wrap" role="tablist" aria-label="Results">
      ${RUN_TABS.map((s) => `<li class="nav-item" role="presentation"><a class="nav-link ${s === state ? "active" : ""} ${s === "failed" ? "link-danger" : ""}" role="tab" aria-selected="${s === state}" href="${runsHash({ ...filters, state: s })}" data-run-tab="${s}">${esc(RUN_TAB_LABEL[s] || s)}</a></li>`).join("")}
    </ul>
    ${state === "failed" && !prefix ? `<div class="d-flex flex-wrap align-items-center gap-2 my-2"><button class="btn btn-outline-danger btn-sm" type="button" id="rerun-these">Re-run these…</button>
      <small class="text-muted">each object's newest failed run in this list (${esc(SINCE.find(([v]) => v === since)[1])}${selector ? `, labels ${esc(selector)}` : ""}), from its failed step; you see which first</small></div>` : ""}
    ${state === "failed" && prefix ? `<p class="small text-muted my-2" id="rerun-by-labels">A re-run of many takes labels, not a name: to re-run these in one go, filter by labels instead.</p>` : ""}
    <table class="table table-sm align-middle objects" id="runs-list" aria-live="polite">
      <caption class="visually-hidden">Runs</caption>
      <thead><tr><th scope="col">Object</th><th scope="col">Run</th><th scope="col">Due</th><th scope="col">Ended</th><th scope="col">Result</th></tr></thead>
      <tbody id="run-rows"><tr><td colspan="5">Loading…</td></tr></tbody>
    </table>
    <nav aria-label="Pages" class="d-flex gap-2 d-none" id="runs-pager">
      <button class="btn btn-outline-secondary btn-sm" id="runs-newer" type="button" disabled>Newer</button>
      <button class="btn btn-outline-secondary btn-sm" id="runs-older" type="button" disabled>Older</button>
    </nav>`;
  const form = document.getElementById("runs-filter");
  const labelsInput = document.getElementById("runs-labels");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(form);
    location.hash = runsHash({ state, since: f.get("since"), kind: f.get("kind"), labelSelector: String(f.get("labelSelector") || "").trim(), prefix: String(f.get("prefix") || "").trim() });
  });
  form.querySelectorAll("select").forEach((el) => el.addEventListener("change", () => form.requestSubmit()));
  const prefixInput = document.getElementById("runs-prefix");
  for (const input of [labelsInput, prefixInput]) input.addEventListener("input", () => clearField(input));
  const load = async () => {
    const query = new URLSearchParams({ since, limit: "20" });
    if (state !== "any") query.set("state", state);
    if (kind) query.set("kind", kind);
    if (selector) query.set("labelSelector", selector);
    if (prefix) query.set("prefix", prefix);
    if (cursor) query.set("cursor", cursor);
    const page = await api.call("GET", `/runs?${query}`);
    const tbody = document.getElementById("run-rows");
    if (!tbody) return;
    const of = prefix ? ` of an object whose name starts with “${prefix}”` : "";
    const what = state === "any" ? `No run${of} ended` : `No run${of} ${state === "completed" ? "completed" : `was ${state}`}`;
    tbody.innerHTML = page.runs.length ? page.runs.map((r) => `<tr data-run="${esc(r.id)}" data-kind="${esc(r.object.kind)}" data-result="${esc(r.result)}">
      <td data-label="Object" class="name"><span class="name-text">${runLink(r)} <small class="text-muted">${esc(r.object.kind)}</small></span></td>
      <td data-label="Run">${runNumber(r)}</td>
      <td data-label="Due">${localTime(r.due)}</td><td data-label="Ended">${localTime(r.finished)}</td>
      <td data-label="Result">${badge(r.result)}${r.reason ? ` <small class="${r.result === "failed" ? "text-danger" : "text-muted"} run-reason">${esc(r.reason)}</small>` : ""}</td></tr>`).join("")
      : `<tr><td colspan="5" class="text-muted">${esc(what)} in ${esc(SINCE.find(([v]) => v === since)[1])}${selector ? ` with labels ${esc(selector)}` : ""}.</td></tr>`;
    const older = document.getElementById("runs-older");
    older.disabled = !page.next;
    older.dataset.next = page.next || "";
    document.getElementById("runs-newer").disabled = cursors.length === 0;
    document.getElementById("runs-pager").classList.toggle("d-none", !page.next && cursors.length === 0);
  };
  const problem = (err, retryIn) => {
    const bad = err.status === 422 && (err.details || []).find((d) => d.field === "labelSelector" || d.field === "prefix");
    if (bad) {
      markField(bad.field === "prefix" ? prefixInput : labelsInput, bad.message);
      document.getElementById("run-rows").innerHTML = `<tr><td colspan="5" class="text-danger load-error">The ${bad.field === "prefix" ? "name search" : "label filter"} is not valid: see the field.</td></tr>`;
      return;
    }
    failed(document.querySelector("#run-rows td") || "run-rows", err, retryIn);
  };
  const rerunButton = document.getElementById("rerun-these");
  if (rerunButton) rerunButton.addEventListener("click", () => rerunMany({ since, labelSelector: selector, kind }, load).catch(showError));
  document.getElementById("runs-older").addEventListener("click", (e) => { cursors.push(cursor); cursor = e.target.dataset.next; load().catch(problem); });
  document.getElementById("runs-newer").addEventListener("click", () => { cursor = cursors.pop() || null; load().catch(problem); });
  const refresh = poll(load, 5000, problem);
  load().catch((err) => {
    problem(err);
    if (err.status === 422) { refresh.stopped = true; clearTimeout(refresh.timer); }
  });
}

// ---------------------------------------------------------------- specs

function renderSpecs() {
  main.innerHTML = `<h1 class="h3">Specs</h1>
    <p class="text-muted">Paste or upload YAML (one or many documents, separated by <code>---</code>). Validate checks it and changes nothing; Apply creates or updates the objects.</p>
    <div class="row g-3">
      <div class="col-12 col-lg-7">
        <label class="form-label" for="spec-text">Spec YAML</label>
        <div class="spec-editor-box">
          <pre class="spec-gutter" id="spec-gutter" aria-hidden="true">1</pre>
          <textarea class="form-control spec-editor" id="spec-text" rows="18" spellcheck="false" wrap="off" aria-describedby="spec-errors-title"></textarea>
        </div>
        <div class="mt-2"><label class="form-label" for="spec-file">Or upload a file</label>
          <input class="form-control" type="file" id="spec-file" accept=".yaml,.yml,.json,text/yaml,application/json"></div>
        <div class="form-check mt-3">
          <input class="form-check-input" type="checkbox" id="spec-force" aria-describedby="spec-force-help">
          <label class="form-check-label" for="spec-force">Take over objects the specs folder manages (the folder then leaves them alone)</label>
          <div class="form-text" id="spec-force-help">Without it, a document that changes an object made from the specs folder is refused.</div>
        </div>
        <div class="mt-3 d-flex gap-2">
          <button class="btn btn-outline-primary" type="button" id="validate">Validate</button>
          <button class="btn btn-primary" type="button" id="apply">Apply</button>
        </div>
      </div>
      <div class="col-12 col-lg-5">
        <h2 class="h5" id="spec-errors-title">Result</h2>
        <div id="spec-result" aria-live="polite"><p class="text-muted">Nothing checked yet.</p></div>
      </div>
    </div>`;
  const text = document.getElementById("spec-text");
  const gutter = document.getElementById("spec-gutter");
  const result = document.getElementById("spec-result");
  let marked = new Set();
  const numbers = () => {
    const count = text.value.split("\n").length;
    gutter.innerHTML = Array.from({ length: Math.max(count, 1) }, (_, i) => (marked.has(i + 1) ? `<span class="bad">${i + 1}</span>` : String(i + 1))).join("\n");
    gutter.scrollTop = text.scrollTop;
  };
  text.addEventListener("input", () => { marked = new Set(); numbers(); });
  text.addEventListener("scroll", () => { gutter.scrollTop = text.scrollTop; });
  numbers();
  document.getElementById("spec-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) { text.value = await file.text(); marked = new Set(); numbers(); }
  });
  const goTo = (line) => {
    // select the line in the editor, scrolled into view
    const lines = text.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    text.focus();
    text.setSelectionRange(start, start + (lines[line - 1] || "").length);
    const height = parseFloat(getComputedStyle(text).lineHeight) || 20;
    text.scrollTop = Math.max(0, (line - 3) * height);
  };
  result.addEventListener("click", (e) => {
    const link = e.target.closest("[data-goto]");
    if (link) { e.preventDefault(); goTo(Number(link.dataset.goto)); }
  });
  const where = (d) => [d.document != null ? `Document ${Number(d.document) + 1}` : null, d.line != null ? `line ${d.line}` : null, d.column != null ? `column ${d.column}` : null].filter(Boolean).join(", ");
  const flag = (message) => String(message)
    .replace(/(apply|send it|delete it|resend)[^;.)]*?with force=true/gi, "tick \u201cTake over objects the specs folder manages\u201d and apply")
    .replace(/force=true/g, "the \u201cTake over\u201d box");
  const objectLink = (r) => (r.id && r.kind ? `<a href="#/${r.kind.toLowerCase()}/${esc(r.id)}">${esc(r.name)}</a>` : esc(r.name));
  const send = async (dryRun) => {
    clearAlert();
    const force = document.getElementById("spec-force").checked;
    const query = [dryRun ? "dryRun=true" : null, force ? "force=true" : null].filter(Boolean).join("&");
    try {
      const answer = await api.call("POST", `/specs${query ? `?${query}` : ""}`, text.value, "application/yaml");
      marked = new Set();
      numbers();
      const said = (r) => (dryRun ? (r.action === "unchanged" ? "valid, unchanged" : `valid; would be ${r.action}`) : r.action);
      const head = dryRun ? `<p class="text-success">Valid: nothing was changed. Apply to make it so.</p>` : `<p class="text-success">Applied.</p>`;
      result.innerHTML = `${head}<ul class="list-group">${answer.results.map((r) => `<li class="list-group-item list-group-item-${r.action === "refused" ? "warning" : "success"}">${esc(r.kind)} <strong>${dryRun ? esc(r.name) : objectLink(r)}</strong>: ${esc(said(r))}${r.message ? ` (${esc(flag(r.message))})` : ""}</li>`).join("")}</ul>`;
    } catch (err) {
      if (err.status === 422 || err.status === 409) {
        const seen = new Set();
        const items = err.details.filter((d) => { const key = `${d.document}|${d.line}|${d.field}|${d.message}`; if (seen.has(key)) return false; seen.add(key); return true; })
          .sort((a, b) => (a.document ?? -1) - (b.document ?? -1) || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
        marked = new Set(items.map((d) => d.line).filter((n) => n != null));
        numbers();
        const head = err.status === 409
          ? (dryRun ? "Valid, but some objects are managed by the specs folder:" : "Nothing was applied: some objects are managed by the specs folder.")
          : (dryRun ? `Not valid: ${items.length} problem${items.length === 1 ? "" : "s"} to fix.` : "Nothing was applied: the specs are not valid.");
        result.innerHTML = `<p class="text-danger">${esc(head)}</p><ul class="list-group spec-errors">${items.map((d) => `<li class="list-group-item list-group-item-danger" data-line="${esc(d.line ?? "")}">${where(d) ? (d.line != null ? `<a href="#" data-goto="${esc(d.line)}" class="link-danger fw-bold">${esc(where(d))}</a>: ` : `<strong>${esc(where(d))}</strong>: `) : ""}${d.field ? `<code>${esc(d.field)}</code>: ` : ""}${esc(flag(d.message))}</li>`).join("")}</ul>`;
      } else { showError(err); }
    }
  };
  document.getElementById("validate").addEventListener("click", () => send(true));
  document.getElementById("apply").addEventListener("click", () => send(false));
}

route();
