// lambdaop web page: plain JavaScript on the public REST API, no build step.
// Views are chosen by the URL hash: #/tasks, #/tasksets, #/task/ID, #/taskset/ID, #/specs, #/login.

const STATES = ["scheduled", "running", "completed", "failed", "cancelled", "all"];
const TOKEN_KEY = "lambdaop.token";
const main = document.getElementById("main");
const alertBox = document.getElementById("alert");

// ---------------------------------------------------------------- helpers

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function localTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return `<time datetime="${esc(iso)}" title="${esc(d.toISOString())} (UTC)">${esc(d.toLocaleString())}</time>`;
}

function label(o) { return o.displayName || o.name; }

function host(url) {
  // a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]) shows as its name and region
  const arn = /^arn:aws[a-z-]*:lambda:([a-z0-9-]+):\d{12}:function:(.+)$/.exec(url || "");
  if (arn) return `λ ${arn[2]} (${arn[1]})`;
  try { return new URL(url).host; } catch { return url || ""; }
}

function target(invoke) {
  // what a call reaches: its URL, or its Lambda function (name or ARN, with the qualifier)
  if (!invoke || typeof invoke === "string") return invoke || "";
  if (invoke.lambda) return invoke.qualifier && !invoke.lambda.endsWith(`:${invoke.qualifier}`) ? `${invoke.lambda}:${invoke.qualifier}` : invoke.lambda;
  return invoke.url || "";
}

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
  const where = [d.line != null ? `line ${d.line}` : null, d.column != null ? `column ${d.column}` : null, d.field].filter(Boolean).join(", ");
  return where ? `${where}: ${d.message}` : d.message;
}

const PLAIN = {
  401: "You are not signed in, or your session has ended. Please sign in again.",
  404: "That object does not exist, or it belongs to another user.",
  409: "That is not possible in the object's current state.",
  413: "That is too large to send (at most 1 MiB).",
  415: "The server cannot read that kind of content.",
  422: "Some fields are not valid.",
};

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
      throw { title: "The server cannot be reached", message: "Check that lambdaop is running; the page retries by itself.", network: true };
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 401 && path !== "/auth/login") { sessionStorage.removeItem(TOKEN_KEY); location.hash = "#/login"; }
      throw { status: response.status, title: PLAIN[response.status] || `Error ${response.status}`, message: data.reason || data.message || "", details: data.details || [] };
    }
    return data;
  },
};

// ---------------------------------------------------------------- live refresh with back-off

let poller = null;
function poll(fn, base = 1500) {
  stopPolling();
  let delay = base;
  const state = { stopped: false, paused: false };
  const tick = async () => {
    if (state.stopped) return;
    if (!document.hidden && !state.paused) {
      try { await fn(); delay = base; } catch (err) { delay = Math.min(delay * 2, 30000); if (err.network) showError(err); }
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
  const { parts, params } = parseHash();
  const section = { task: "tasks", taskset: "tasksets" }[parts[0]] || parts[0];
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === section));
  if (!api.token || parts[0] === "login") { me = null; renderLogin(); updateWho(); return; }
  if (!me) {
    try { me = await api.call("GET", "/auth/me"); } catch (err) { if (err.status !== 401) showError(err); return; }
  }
  updateWho();
  if (parts[0] === "tasks") return renderList("Task", params);
  if (parts[0] === "tasksets") return renderList("TaskSet", params);
  if (parts[0] === "task" && parts[1]) return renderDetail("Task", parts[1]);
  if (parts[0] === "taskset" && parts[1]) return renderDetail("TaskSet", parts[1]);
  if (parts[0] === "specs") return renderSpecs();
  return renderDashboard();
}

function updateWho() {
  document.getElementById("who").textContent = me ? `Signed in as ${me.name}` : "";
  document.getElementById("signout").classList.toggle("d-none", !me);
}

document.getElementById("signout").addEventListener("click", async () => {
  try { await api.call("POST", "/auth/logout"); } catch { /* the session may have ended already */ }
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  clearAlert();
  location.hash = "#/login";
});
window.addEventListener("hashchange", () => { clearAlert(); route(); });

function failed(where, err) {
  // an element that was waiting for data says why it has none (never an endless "Loading…")
  const el = typeof where === "string" ? document.getElementById(where) : where;
  if (el) el.innerHTML = `<p class="text-danger load-error">Could not load: ${esc(err.title || "error")}${err.message ? ` (${esc(err.message)})` : ""}. The page tries again by itself.</p>`;
}

// ---------------------------------------------------------------- sign in

function renderLogin() {
  main.innerHTML = `
  <div class="row justify-content-center"><div class="col-12 col-sm-10 col-md-6 col-lg-4">
    <h1 class="h3 mb-3">Sign in</h1>
    <form id="login" class="card card-body mb-3">
      <div class="mb-3"><label class="form-label" for="login-name">Name</label>
        <input class="form-control" id="login-name" name="name" autocomplete="username" required></div>
      <div class="mb-3"><label class="form-label" for="login-password">Password</label>
        <input class="form-control" id="login-password" name="password" type="password" autocomplete="current-password" required></div>
      <button class="btn btn-primary" type="submit">Sign in</button>
    </form>
    <form id="token-login" class="card card-body">
      <div class="mb-3"><label class="form-label" for="login-token">Or paste an API token</label>
        <input class="form-control" id="login-token" name="token" autocomplete="off" required></div>
      <button class="btn btn-outline-primary" type="submit">Use token</button>
    </form>
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
    catch (err) { sessionStorage.removeItem(TOKEN_KEY); showError({ title: "Sign-in failed", message: "That token is not valid." }); }
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

function renderDashboard() {
  main.innerHTML = `
    <h1 class="h3">Dashboard</h1>
    <div class="mb-3" id="counts" aria-label="Objects by state"><p class="text-muted">Loading…</p></div>
    <div class="row g-3">
      <section class="col-12 col-xl-6" aria-labelledby="timeline-title">
        <h2 class="h5" id="timeline-title">Due in the next hour</h2>
        <div class="chart" id="timeline" role="img" aria-label="Calls due in the next hour on a time axis"></div>
        <p class="small text-muted mb-1" id="timeline-tip" aria-live="polite">Hover a mark to see its name.</p>
        <ol class="small list-unstyled mb-0" id="upcoming"></ol>
      </section>
      <section class="col-12 col-xl-6" aria-labelledby="calls-title">
        <h2 class="h5" id="calls-title">Calls per minute, last hour</h2>
        <div class="chart" id="calls" role="img" aria-label="Calls per minute over the last hour, ok and failed"></div>
        <p class="small text-muted" id="calls-total"></p>
      </section>
    </div>`;
  const charts = {};
  shownCharts = charts;
  const load = async () => {
    const d = await api.call("GET", "/dashboard");
    if (!document.getElementById("counts")) return;
    renderCounts(d.counts);
    drawTimeline(charts, d);
    drawCalls(charts, d.callsPerMinute);
  };
  load().catch((err) => failed("counts", err));
  poll(load, 5000);
}

function renderCounts(counts) {
  const rows = ["Task", "TaskSet"].map((kind) => {
    const cards = STATES.slice(0, 5).map((state) => {
      const n = (counts[kind] || {})[state] || 0;
      return `<div class="col"><a class="card card-body p-2 text-decoration-none count-card" href="#/${kind.toLowerCase()}s?state=${state}" data-kind="${kind}" data-state="${state}">
        <span class="small text-muted">${kind}s ${state}</span><span class="fs-4" data-count>${n}</span></a></div>`;
    });
    return `<div class="row row-cols-2 row-cols-sm-3 row-cols-lg-5 g-2 mb-1">${cards.join("")}</div>`;
  });
  document.getElementById("counts").innerHTML = rows.join("");
}

function chartSize(el, height) {
  return { width: Math.max(240, el.clientWidth || 320), height };
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
  document.getElementById("upcoming").innerHTML = points.slice(0, 10).map((p) => `<li>${localTime(p.due)} · ${esc(p.kind)} <a href="#/${p.kind.toLowerCase()}/${esc(p.id)}">${esc(p.name)}</a></li>`).join("") || `<li class="text-muted">Nothing due in the next hour.</li>`;
  el.dataset.points = String(points.length);
  if (charts.timeline) { charts.timeline.setData(data); return; }
  const tip = document.getElementById("timeline-tip");
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
      const p = i != null && i > 0 && i <= points.length ? points[i - 1] : null;
      tip.textContent = p ? `${p.kind} ${p.name}, due ${new Date(p.due).toLocaleTimeString()}` : "Hover a mark to see its name.";
    }] },
  }, data, el);
}

function drawCalls(charts, minutes) {
  const el = document.getElementById("calls");
  if (!el) return;
  const xs = minutes.map((m) => m.minute);
  const ok = minutes.map((m) => m.ok);
  const total = minutes.map((m) => m.ok + m.failed);  // drawn behind the ok bars: the red part is what failed
  const sum = total.reduce((a, b) => a + b, 0);
  const failedSum = minutes.reduce((a, m) => a + m.failed, 0);
  document.getElementById("calls-total").textContent = `${sum} call(s) in the last hour, ${failedSum} failed (this process).`;
  el.dataset.calls = String(sum);
  const data = [xs, total, ok];
  if (charts.calls) { charts.calls.setData(data); return; }
  const bars = uPlot.paths.bars({ size: [0.8, 20] });
  charts.calls = new uPlot({
    ...chartSize(el, 180),
    series: [{}, { label: "failed", fill: COLOURS.failed, stroke: COLOURS.failed, paths: bars, points: { show: false } },
             { label: "ok", fill: COLOURS.ok, stroke: COLOURS.ok, paths: bars, points: { show: false } }],
    scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    legend: { show: true },
  }, data, el);
}

// ---------------------------------------------------------------- lists

const KIND = {
  Task: { list: "/tasks", key: "tasks", title: "Tasks", one: "task", cancel: "/scheduler/cancel", modify: "/scheduler/modify", hash: "#/tasks" },
  TaskSet: { list: "/tasksets", key: "taskSets", title: "TaskSets", one: "taskset", cancel: "/orchestrator/cancel", modify: "/orchestrator/modify", hash: "#/tasksets" },
};

function renderList(kind, params) {
  const k = KIND[kind];
  const state = STATES.includes(params.get("state")) ? params.get("state") : "scheduled";
  const cursors = [];  // the cursors of the pages before this one
  let cursor = null;
  main.innerHTML = `
    <div class="d-flex flex-wrap justify-content-between align-items-center mb-2 gap-2">
      <h1 class="h3 mb-0">${k.title}</h1>
      <button class="btn btn-primary" type="button" data-bs-toggle="collapse" data-bs-target="#create" aria-expanded="false" aria-controls="create">New ${kind}</button>
    </div>
    <div class="collapse mb-3" id="create">${kind === "Task" ? taskForm() : taskSetForm()}</div>
    <ul class="nav nav-tabs flex-wrap" role="tablist" aria-label="States">
      ${STATES.map((s) => `<li class="nav-item" role="presentation"><a class="nav-link ${s === state ? "active" : ""}" role="tab" aria-selected="${s === state}" href="${k.hash}?state=${s}" data-tab="${s}">${s === "all" ? "All" : s} <span class="badge text-bg-light" data-count="${s}">0</span></a></li>`).join("")}
    </ul>
    <table class="table table-sm table-hover align-middle objects" aria-live="polite">
      <thead><tr><th scope="col">Name</th><th scope="col">URL host</th><th scope="col">Next</th><th scope="col">Calls</th><th scope="col">State</th><th scope="col">Last result</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody id="rows"><tr><td colspan="7">Loading…</td></tr></tbody>
    </table>
    <nav aria-label="Pages" class="d-flex gap-2">
      <button class="btn btn-outline-secondary btn-sm" id="newer" type="button" disabled>Newer</button>
      <button class="btn btn-outline-secondary btn-sm" id="older" type="button" disabled>Older</button>
    </nav>`;
  const load = async () => {
    const query = new URLSearchParams({ taskState: state, limit: "20" });
    if (cursor) query.set("cursor", cursor);
    const [page, mine, everybody] = await Promise.all([
      api.call("GET", `${k.list}?${query}`),
      api.call("GET", `${k.list}?limit=1`),
      api.call("GET", `${k.list}?taskState=all&limit=1`),
    ]);
    for (const s of STATES) {
      const n = s === "all" ? Object.values(everybody.counts).reduce((a, b) => a + b, 0) : mine.counts[s] || 0;
      const el = main.querySelector(`[data-count="${s}"]`);
      if (el) el.textContent = n;
    }
    const rows = page[k.key];
    const tbody = document.getElementById("rows");
    if (!tbody) return;
    tbody.innerHTML = rows.length ? rows.map((o) => row(kind, o)).join("") : `<tr><td colspan="7" class="text-muted">No ${k.title.toLowerCase()} ${state === "all" ? "" : `in state ${state}`}</td></tr>`;
    const older = document.getElementById("older");
    older.disabled = !page.next;
    older.dataset.next = page.next || "";
    document.getElementById("newer").disabled = cursors.length === 0;
  };
  document.getElementById("older").addEventListener("click", (e) => { cursors.push(cursor); cursor = e.target.dataset.next; load().catch(showError); });
  document.getElementById("newer").addEventListener("click", () => { cursor = cursors.pop() || null; load().catch(showError); });
  main.querySelector("#rows").addEventListener("click", (e) => onRowAction(e, kind, load));
  main.querySelector("#create form").addEventListener("submit", (e) => (kind === "Task" ? submitTask(e, load) : submitTaskSet(e, load)));
  wireWhen(main.querySelector("#create form"));
  load().catch((err) => failed(document.querySelector("#rows td") || "rows", err));
  poll(load);
}

function mine(o) { return me && o.owner === me.name; }

function actionsFor(kind, o) {
  if (!mine(o) || o.redacted) return "";
  const buttons = [];
  const name = esc(label(o));
  if (o.state === "scheduled" && !o.inFlight && !o.suspended) {
    buttons.push(`<button class="btn btn-outline-primary btn-sm" type="button" data-action="modify" data-id="${esc(o.id)}" aria-label="Modify the time of ${name}">Modify time</button>`);
  }
  if (o.schedule && ["scheduled", "running"].includes(o.state)) {
    buttons.push(o.suspended
      ? `<button class="btn btn-outline-success btn-sm" type="button" data-action="resume" data-id="${esc(o.id)}" aria-label="Resume ${name}">Resume</button>`
      : `<button class="btn btn-outline-secondary btn-sm" type="button" data-action="suspend" data-id="${esc(o.id)}" aria-label="Suspend ${name}">Suspend</button>`);
  }
  if (o.state === "scheduled" && !o.inFlight) {
    buttons.push(`<button class="btn btn-outline-danger btn-sm" type="button" data-action="cancel" data-id="${esc(o.id)}" aria-label="Cancel ${name}">Cancel</button>`);
  }
  return buttons.length ? `<div class="btn-group flex-wrap">${buttons.join("")}</div>` : "";
}

function row(kind, o) {
  const tasks = (o.spec && o.spec.tasks) || [];
  const url = kind === "Task" ? (o.url || target(o.spec && o.spec.invoke)) : tasks.map(target).join(", ");
  const hosts = kind === "Task" ? host(url) : [...new Set(tasks.map((t) => host(target(t))))].join(", ");
  const nameCell = mine(o)
    ? `<a href="#/${KIND[kind].one}/${esc(o.id)}">${esc(label(o))}</a>`
    : `<span class="text-body">${esc(label(o))}</span> <small class="text-muted">(${esc(o.owner)})</small>`;  // another user's: no details to open
  const next = o.nextRuns && o.nextRuns.length ? o.nextRuns[0] : o.due;
  return `<tr data-id="${esc(o.id)}" data-name="${esc(label(o))}" class="${mine(o) ? "" : "theirs"}">
    <td data-label="Name">${nameCell}${o.schedule ? ` <span class="badge text-bg-info" title="${esc(o.schedule.description)}">recurring</span>` : ""}${o.suspended ? ` <span class="badge text-bg-warning">suspended</span>` : ""}</td>
    <td data-label="Host" class="url" title="${esc(url)}">${esc(hosts || "–")}</td>
    <td data-label="Next">${localTime(next)}</td><td data-label="Calls">${esc(o.calls)}</td><td data-label="State">${badge(o.state)}</td><td data-label="Last">${lastResult(o.last)}</td>
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
      await api.call("POST", KIND[kind].cancel, { taskId: id });
      showInfo("Cancelled.");
    } else if (action === "suspend" || action === "resume") {
      const answer = await api.call("POST", `${KIND[kind].list}/${encodeURIComponent(id)}/${action}`);
      showInfo(action === "suspend" ? (answer.afterThisRun ? "Suspended once the run going on ends." : "Suspended.") : "Resumed.");
    } else if (action === "modify") {
      openModify(kind, id, button.closest("td") || button.parentElement, reload);
      return;
    }
    await reload();
  } catch (err) { showError(err); }
}

function openModify(kind, id, cell, reload) {
  if (poller) poller.paused = true;  // keep the user's form while they type
  cell.innerHTML = `<form class="d-flex flex-wrap gap-1 modify-form">
      <label class="visually-hidden" for="modify-${esc(id)}">New time</label>
      <input class="form-control form-control-sm" type="datetime-local" step="1" id="modify-${esc(id)}" value="${localInputValue(new Date(Date.now() + 60000))}" required>
      <button class="btn btn-primary btn-sm" type="submit">Save</button>
      <button class="btn btn-link btn-sm" type="button" data-close>Close</button></form>`;
  const form = cell.querySelector("form");
  form.querySelector("input").focus();
  const done = () => { if (poller) poller.paused = false; reload().catch(showError); };
  form.querySelector("[data-close]").addEventListener("click", done);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api.call("POST", KIND[kind].modify, { taskId: id, at: toIso(form.querySelector("input").value) });
      showInfo("New time saved.");
      done();
    } catch (err) { showError(err); }
  });
}

// ---------------------------------------------------------------- create forms

function whenFields(prefix) {
  return `<fieldset class="col-12"><legend class="form-label fs-6 mb-1">When</legend>
    <div class="d-flex flex-wrap gap-3 mb-2">
      ${[["once", "Once, at a time"], ["cron", "On a cron schedule"], ["every", "At a fixed rate"]].map(([v, t], i) => `
      <div class="form-check"><input class="form-check-input" type="radio" name="when" id="${prefix}-when-${v}" value="${v}" ${i === 0 ? "checked" : ""}>
        <label class="form-check-label" for="${prefix}-when-${v}">${t}</label></div>`).join("")}
    </div>
    <div class="row g-2">
      <div class="col-12 col-sm-6 col-lg-4" data-when="once"><label class="form-label" for="${prefix}-at">Date and time</label>
        <input class="form-control" id="${prefix}-at" name="at" type="datetime-local" step="1"></div>
      <div class="col-12 col-sm-6 col-lg-4 d-none" data-when="cron"><label class="form-label" for="${prefix}-cron">Cron (minute hour day month weekday)</label>
        <input class="form-control" id="${prefix}-cron" name="cron" placeholder="0 9 * * MON-FRI"></div>
      <div class="col-12 col-sm-6 col-lg-4 d-none" data-when="every"><label class="form-label" for="${prefix}-every">Every</label>
        <input class="form-control" id="${prefix}-every" name="every" placeholder="15m"></div>
      <div class="col-12 col-sm-6 col-lg-4 d-none" data-when="cron"><label class="form-label" for="${prefix}-zone">Time zone</label>
        <input class="form-control" id="${prefix}-zone" name="timezone" value="${esc(Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC")}"></div>
    </div></fieldset>`;
}

function wireWhen(form) {
  const show = () => {
    const when = form.querySelector("input[name=when]:checked").value;
    form.querySelectorAll("[data-when]").forEach((el) => el.classList.toggle("d-none", el.dataset.when !== when));
  };
  form.querySelectorAll("input[name=when]").forEach((r) => r.addEventListener("change", show));
}

function readWhen(f) {
  const when = f.get("when");
  if (when === "cron") {
    if (!f.get("cron")) throw { title: "A cron schedule is needed", message: "Five fields, e.g. 0 9 * * MON-FRI." };
    return { schedule: { cron: f.get("cron"), timezone: f.get("timezone") || "UTC" } };
  }
  if (when === "every") {
    if (!f.get("every")) throw { title: "A rate is needed", message: "e.g. 15m or 1h." };
    return { schedule: { every: f.get("every") } };
  }
  if (!f.get("at")) throw { title: "A time is needed", message: "Choose a date and a time." };
  return { at: toIso(f.get("at")) };
}

function slug(text, kind) {
  const s = String(text || "").trim().replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-._]+|[-._]+$/g, "");
  return s || `${kind.toLowerCase()}-${Date.now().toString(36)}`;
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
        <input class="form-control" id="task-name" name="name"></div>
      <div class="col-6 col-sm-3 col-lg-3"><label class="form-label" for="task-method">Method</label>
        <select class="form-select" id="task-method" name="method">${["GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => `<option>${m}</option>`).join("")}</select></div>
      ${whenFields("task")}
      <div class="col-4 col-lg-2"><label class="form-label" for="task-retries">Retries</label>
        <input class="form-control" id="task-retries" name="retries" type="number" min="0" value="0"></div>
      <div class="col-8 col-lg-2"><label class="form-label" for="task-retry-delay">Retry delay</label>
        <input class="form-control" id="task-retry-delay" name="retryDelay" value="10s" aria-describedby="task-retry-help">
        <div class="form-text" id="task-retry-help">e.g. 30s, 5m</div></div>
      <div class="col-12 col-lg-8"><label class="form-label" for="task-body">Body, or the function's event (JSON, optional)</label>
        <textarea class="form-control" id="task-body" name="body" rows="2"></textarea></div>
    </div>
    <div class="mt-3"><button class="btn btn-primary" type="submit">Schedule</button></div>
  </form>`;
}

async function submitTask(e, reload) {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    const when = readWhen(f);
    const url = String(f.get("url") || "").trim();
    const arn = url.startsWith("arn:");  // a Lambda function: the Invoke API, its event in `payload`
    const invoke = arn ? { lambda: url } : { url, method: f.get("method") };
    const body = (f.get("body") || "").trim();
    if (body) {
      try { invoke[arn ? "payload" : "body"] = JSON.parse(body); } catch { throw { title: "The body is not JSON", message: "Write a JSON value, e.g. {\"report\": \"daily\"}, or leave it empty." }; }
    }
    const retries = Number(f.get("retries") || 0);
    const retryDelay = f.get("retryDelay") || "10s";
    if (when.schedule) {  // a recurring Task is a spec: it needs a unique name
      const result = await applySpec("Task", slug(f.get("name"), "Task"), { invoke, retries, retryDelay, schedule: when.schedule });
      showInfo(`Task ${result.name} ${result.action}.`);
    } else {
      const { lambda, ...rest } = invoke;  // the original route takes an ARN in its URL field
      const request = { ...rest, ...(arn ? { url: lambda } : {}), at: when.at, retries, retryDelay };
      if (f.get("name")) request.name = f.get("name");
      const created = await api.call("POST", "/scheduler/schedule", request);
      showInfo(`Task ${label(created)} scheduled.`);
    }
    e.target.reset();
    await reload();
  } catch (err) { showError(err); }
}

function taskSetForm() {
  return `<form class="card card-body" id="taskset-form" novalidate>
    <h2 class="h5">Orchestrate a TaskSet</h2>
    <div class="row g-2">
      <div class="col-12 col-lg-6"><label class="form-label" for="ts-tasks">Task URLs, in order (one per line)</label>
        <textarea class="form-control" id="ts-tasks" name="tasks" rows="3" required placeholder="https://…&#10;arn:aws:lambda:REGION:ACCOUNT:function:NAME" aria-describedby="ts-tasks-help"></textarea>
        <div class="form-text" id="ts-tasks-help">A URL, or a Lambda function ARN (invoked through the Invoke API), on each line; the check and the fallback take either too.</div></div>
      <div class="col-12 col-lg-6"><label class="form-label" for="ts-check">Condition check URL (optional)</label>
        <input class="form-control" id="ts-check" name="check" type="url" placeholder="https://… or arn:aws:lambda:…">
        <label class="form-label mt-2" for="ts-fallback">Fallback URL (optional)</label>
        <input class="form-control" id="ts-fallback" name="fallback" type="url" placeholder="https://… or arn:aws:lambda:…"></div>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-initial">Initial delay (once)</label>
        <input class="form-control" id="ts-initial" name="initialDelay" value="0s"></div>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-check-delay">Delay before each check</label>
        <input class="form-control" id="ts-check-delay" name="checkDelay" value="0s"></div>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-check-retries">Check retries</label>
        <input class="form-control" id="ts-check-retries" name="checkRetries" type="number" min="0" value="0"></div>
      <div class="col-6 col-lg-3"><label class="form-label" for="ts-check-retry-delay">Delay between checks</label>
        <input class="form-control" id="ts-check-retry-delay" name="checkRetryDelay" value="10s"></div>
      <div class="col-12 col-lg-6"><label class="form-label" for="ts-name">Name (optional)</label>
        <input class="form-control" id="ts-name" name="name"></div>
      ${whenFields("ts").replace('name="at" type="datetime-local" step="1">', 'name="at" type="datetime-local" step="1" placeholder="(or the initial delay)">')}
    </div>
    <div class="mt-3"><button class="btn btn-primary" type="submit">Orchestrate</button></div>
  </form>`;
}

async function submitTaskSet(e, reload) {
  e.preventDefault();
  const f = new FormData(e.target);
  const tasks = String(f.get("tasks") || "").split("\n").map((s) => s.trim()).filter(Boolean);
  try {
    const recurring = f.get("when") !== "once";
    if (recurring) {
      const spec = { tasks, ...readWhen(f) };
      if (f.get("check")) spec.conditionCheck = { invoke: f.get("check"), delay: f.get("checkDelay") || "0s", retries: Number(f.get("checkRetries") || 0), retryDelay: f.get("checkRetryDelay") || "10s" };
      if (f.get("fallback")) spec.fallback = { invoke: f.get("fallback") };
      const result = await applySpec("TaskSet", slug(f.get("name"), "TaskSet"), spec);
      showInfo(`TaskSet ${result.name} ${result.action}.`);
    } else {
      const request = { tasks };
      if (f.get("at")) request.at = toIso(f.get("at")); else request.initialDelay = f.get("initialDelay") || "0s";
      if (f.get("name")) request.name = f.get("name");
      if (f.get("check")) {
        request.conditionCheckUrl = f.get("check");
        request.timeDelayForConditionCheck = f.get("checkDelay") || "0s";
        request.conditionCheckRetries = Number(f.get("checkRetries") || 0);
        request.timeDelayBetweenRetries = f.get("checkRetryDelay") || "10s";
      }
      if (f.get("fallback")) request.fallbackUrl = f.get("fallback");
      const created = await api.call("POST", "/orchestrator/orchestrate", request);
      showInfo(`TaskSet ${label(created)} scheduled.`);
    }
    e.target.reset();
    await reload();
  } catch (err) { showError(err); }
}

// ---------------------------------------------------------------- details

function stepLabel(key) {
  // the same words on the step cards and in the calls table: Task 1, Check 1, Fallback, Notify
  const [name, index] = key.split(":");
  if (name === "task" && index === undefined) return "Task";
  if (name === "task") return `Task ${Number(index) + 1}`;
  if (name === "step") return index;
  if (name === "check" && !/^\d+$/.test(index)) return `Check after ${index}`;
  if (name === "check") return `Check ${Number(index) + 1}`;
  if (name === "notify" && index !== undefined) return `Notification (${index})`;
  return { fallback: "Fallback", notify: "Failure notification" }[name] || key;
}

function stepsOf(o) {
  const spec = o.spec;
  const steps = [];
  (spec.tasks || []).forEach((t, i) => {
    steps.push({ key: `task:${i}`, url: target(t) });
    const last = i === spec.tasks.length - 1;
    if (spec.conditionCheck && (!last || spec.conditionCheck.afterLast)) steps.push({ key: `check:${i}`, url: target(spec.conditionCheck.invoke) });
  });
  (spec.steps || []).forEach((t) => {
    steps.push({ key: `step:${t.name}`, url: target(t.invoke) });
    if (t.conditionCheck) steps.push({ key: `check:${t.name}`, url: target(t.conditionCheck.invoke) });
  });
  if (spec.fallback) steps.push({ key: "fallback", url: target(spec.fallback.invoke) });
  const run = o.schedule ? o.run : null;
  return steps.map((s) => {
    const calls = (o.attempts || []).filter((a) => a.step === s.key && a.generation === o.generation && (run == null || a.run === run));
    let status = "pending";
    if (calls.some((a) => a.ok)) status = s.key === "fallback" ? "fallback" : "done";
    else if (o.step === s.key && o.state === "running") status = o.inFlight ? "running" : "waiting";
    else if (calls.length) status = s.key === "fallback" ? "fallback" : "failed";
    if (o.failedStep === s.key) status = "failed";
    if (status === "pending" && ["completed", "failed", "cancelled"].includes(o.state)) status = "skipped";
    const named = s.key.startsWith("step:") && o.outputs ? o.outputs[s.key.slice(5)] : undefined;
    const output = named && named.generation === o.generation && (run == null || named.run === run) ? named.output : undefined;
    return { ...s, label: stepLabel(s.key), status, calls, output };
  });
}

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
  const runs = (o.runs || []).slice().reverse().map((r) => `<tr><td>${esc(r.run)}</td><td>${localTime(r.scheduled)}</td><td>${localTime(r.finished)}</td>
      <td>${badge(r.result)}${r.reason ? ` <small>${esc(r.reason)}</small>` : ""}${r.notified ? ` <small class="text-muted">notified: ${esc(r.notified)}</small>` : ""}</td></tr>`).join("");
  return `<h2 class="h5 mt-3">Schedule</h2>
    <p id="schedule-words">${esc(o.schedule.description)}${o.suspended ? ` <span class="badge text-bg-warning">suspended</span>` : ""}${o.skippedRuns ? ` <small class="text-muted">(${esc(o.skippedRuns)} run(s) skipped or missed)</small>` : ""}</p>
    <div class="row g-3"><div class="col-12 col-md-4"><h3 class="h6">Next runs</h3><ol class="small" id="next-runs">${next}</ol></div>
    <div class="col-12 col-md-8"><h3 class="h6">Runs</h3>${runs ? `<table class="table table-sm objects" id="runs"><thead><tr><th>Run</th><th>Due</th><th>Finished</th><th>Result</th></tr></thead><tbody>${runs}</tbody></table>` : `<p class="text-muted small">No run has ended yet.</p>`}</div></div>`;
}

function renderDetail(kind, id) {
  const k = KIND[kind];
  main.innerHTML = `<p><a href="${k.hash}">← ${k.title}</a></p><div id="detail">Loading…</div>`;
  const load = async () => {
    const o = await api.call("GET", `${k.list}/${encodeURIComponent(id)}`);
    const detail = document.getElementById("detail");
    if (!detail || (poller && poller.paused)) return;
    const steps = kind === "TaskSet" ? `<h2 class="h5 mt-3">Steps</h2><ol class="steps" aria-label="Steps">${stepsOf(o).map((s) => `
        <li class="${s.status}" data-step="${esc(s.key)}" data-status="${s.status}"><span class="step-name">${esc(s.label)}</span>
        <small class="d-block text-truncate" title="${esc(s.url)}">${esc(host(s.url))}</small>
        <small>${esc(s.status)}${s.calls.length ? ` · ${s.calls.length} call${s.calls.length > 1 ? "s" : ""}` : ""}</small>${s.output !== undefined ? `
        <pre class="response step-output" title="steps.${esc(s.key.slice(5))}.output">${esc(JSON.stringify(s.output).slice(0, 300))}</pre>` : ""}</li>`).join("")}</ol>` : "";
    detail.innerHTML = `
      <div class="d-flex flex-wrap align-items-center gap-2 mb-2"><h1 class="h3 mb-0 text-break">${esc(label(o))}</h1> ${badge(o.state)}
        <span class="ms-auto" id="detail-actions">${actionsFor(kind, o)}</span></div>
      <dl class="row mb-0">
        <dt class="col-sm-3">Id</dt><dd class="col-sm-9"><code>${esc(o.id)}</code></dd>
        <dt class="col-sm-3">Owner</dt><dd class="col-sm-9">${esc(o.owner)}</dd>
        ${kind === "Task" && o.spec.invoke.lambda ? `<dt class="col-sm-3">Lambda function</dt><dd class="col-sm-9 text-break" id="detail-function">${esc(target(o.spec.invoke))} <small class="text-muted">(${esc(o.spec.invoke.invocationType || "RequestResponse")})</small></dd>` : ""}
        ${kind === "Task" && !o.spec.invoke.lambda ? `<dt class="col-sm-3">URL</dt><dd class="col-sm-9 text-break">${esc(o.spec.invoke.method)} ${esc(o.url)}</dd>` : ""}
        <dt class="col-sm-3">Next call</dt><dd class="col-sm-9">${localTime(o.due)}</dd>
        <dt class="col-sm-3">Calls</dt><dd class="col-sm-9">${esc(o.calls)}</dd>
        <dt class="col-sm-3">Generation</dt><dd class="col-sm-9">${esc(o.generation)}</dd>
        ${o.reason ? `<dt class="col-sm-3">Reason</dt><dd class="col-sm-9">${esc(o.reason)}</dd>` : ""}
      </dl>${scheduleBlock(o)}${steps}
      <h2 class="h5 mt-3">Calls</h2>${attemptsTable(o.attempts || [])}`;
  };
  document.getElementById("detail").addEventListener("click", (e) => {
    if (e.target.closest("#detail-actions")) onRowAction(e, kind, load);
  });
  const firstLoad = load().catch((err) => {
    failed("detail", err.status === 404 ? { title: "Not found", message: "That object does not exist, or it belongs to another user" } : err);
    if (err.status === 404) stopPolling();
  });
  poll(() => firstLoad.then(load));
}

// ---------------------------------------------------------------- specs

function renderSpecs() {
  main.innerHTML = `<h1 class="h3">Specs</h1>
    <p class="text-muted">Paste or upload YAML (one or many documents), validate it, then apply it.</p>
    <div class="row g-3">
      <div class="col-12 col-lg-7">
        <label class="form-label" for="spec-text">Spec YAML</label>
        <textarea class="form-control spec-editor" id="spec-text" rows="18" spellcheck="false" aria-describedby="spec-errors-title"></textarea>
        <div class="mt-2"><label class="form-label" for="spec-file">Or upload a file</label>
          <input class="form-control" type="file" id="spec-file" accept=".yaml,.yml,.json,text/yaml,application/json"></div>
        <div class="form-check mt-3">
          <input class="form-check-input" type="checkbox" id="spec-force">
          <label class="form-check-label" for="spec-force">Take over objects the specs folder manages (the folder then leaves them alone)</label>
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
  const result = document.getElementById("spec-result");
  document.getElementById("spec-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) text.value = await file.text();
  });
  const where = (d) => [d.document != null ? `Document ${Number(d.document) + 1}` : null, d.line != null ? `line ${d.line}` : null, d.column != null ? `column ${d.column}` : null].filter(Boolean).join(", ");
  const flag = (message) => String(message).replace("apply with force=true", "tick \u201cTake over objects the specs folder manages\u201d and apply").replace("force=true", "the \u201cTake over\u201d box");
  const send = async (dryRun) => {
    clearAlert();
    const force = document.getElementById("spec-force").checked;
    const query = [dryRun ? "dryRun=true" : null, force ? "force=true" : null].filter(Boolean).join("&");
    try {
      const answer = await api.call("POST", `/specs${query ? `?${query}` : ""}`, text.value, "application/yaml");
      const said = (r) => (dryRun ? (r.action === "unchanged" ? "valid, unchanged" : `valid; would be ${r.action}`) : r.action);
      result.innerHTML = `<ul class="list-group">${answer.results.map((r) => `<li class="list-group-item list-group-item-${r.action === "refused" ? "warning" : "success"}">${esc(r.kind)} <strong>${esc(r.name)}</strong>: ${esc(said(r))}${r.message ? ` (${esc(flag(r.message))})` : ""}</li>`).join("")}</ul>`;
    } catch (err) {
      if (err.status === 422 || err.status === 409) {
        const seen = new Set();
        const items = err.details.filter((d) => { const key = `${d.document}|${d.line}|${d.field}|${d.message}`; if (seen.has(key)) return false; seen.add(key); return true; });
        result.innerHTML = `<p class="text-danger">${err.status === 409 ? "Nothing was applied: some objects are managed by the specs folder." : "Nothing was applied: the specs are not valid."}</p><ul class="list-group spec-errors">${items.map((d) => `<li class="list-group-item list-group-item-danger" data-line="${esc(d.line ?? "")}">${where(d) ? `<strong>${esc(where(d))}</strong>: ` : ""}${d.field ? `<code>${esc(d.field)}</code>: ` : ""}${esc(flag(d.message))}</li>`).join("")}</ul>`;
      } else { showError(err); }
    }
  };
  document.getElementById("validate").addEventListener("click", () => send(true));
  document.getElementById("apply").addEventListener("click", () => send(false));
}

route();
