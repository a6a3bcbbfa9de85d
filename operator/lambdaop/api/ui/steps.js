// lambdaop web page: a TaskSet's steps drawn as a graph, in plain HTML and CSS.
//
// The main line is an ordered list, top to bottom: the seed's tasks with a condition check between
// them, or the named steps (a call, a `parallel` step with its branches side by side and their join,
// a `waitForCallback` step). The fallback and the notifications are drawn beside it, off the main
// line. Each node says in words its name, its kind, its state and its attempts (never colour alone),
// and opens what it answered: a named step's output as the store keeps it (the object's `outputs`),
// or the last response of any other call. Where the run stands is marked (`aria-current="step"`) and
// said in a sentence above the drawing. Imported by app.js, whose detail view redraws it as the
// object changes; an opened output stays open, and keeps the focus, across redraws.

import { callWords, esc, host, localTime, target } from "./format.js";

// data-status values and the words and signs that say them
const STATE_WORDS = { done: "done", failed: "failed", running: "running", waiting: "waiting", pending: "not started", skipped: "not run", cancelled: "cancelled" };
const STATE_SIGNS = { done: "✓", failed: "✗", running: "▶", waiting: "◷", pending: "○", skipped: "–", cancelled: "⊘" };
const KIND_WORDS = { task: "task", check: "condition check", call: "call", parallel: "parallel", wait: "waits for a callback", fallback: "fallback", notify: "notification" };
const FALLBACK_WHEN = { check: "the check gives up", task: "a task fails" };
const FALLBACK_WHEN_STEPS = { check: "a step's check gives up", task: "a step fails" };
const SHOWN = 20000;  // characters of an output drawn on the page (a step may keep 256 KiB)

export function stepLabel(key) {
  // the same words on the drawing and in the calls table: Task 1, Check 1, Fallback, Notification
  const [name, index] = key.split(":");
  if (name === "task" && index === undefined) return "Task";
  if (name === "task") return `Task ${Number(index) + 1}`;
  if (name === "step" && index.includes("/")) { const [, branch, inner] = index.split("/"); return `Branch ${Number(branch) + 1}: ${inner}`; }
  if (name === "step") return index;
  if (name === "callback") return `Callback for ${index}`;
  if (name === "check" && !/^\d+$/.test(index)) return `Check after ${index}`;
  if (name === "check") return `Check ${Number(index) + 1}`;
  if (name === "notify" && index !== undefined) return `Notification (${index})`;
  return { fallback: "Fallback", notify: "Failure notification" }[name] || key;
}

// ---------------------------------------------------------------- what the object says of each step

function reading(o) {
  // the run drawn: the current one, or a recurring object's last between runs (its other runs are in
  // its runs table); its calls and kept outputs, and how it ended
  const last = o.schedule && o.state === "scheduled" && o.lastRun ? o.lastRun : null;
  const run = last ? last.run : o.schedule ? o.run : null;
  const ours = (x) => x && x.generation === o.generation && (run == null || x.run === run);
  const history = (o.attempts || []).filter(ours);
  return {
    o,
    last,
    live: !last && o.state === "running",
    ended: Boolean(last) || ["completed", "failed", "cancelled"].includes(o.state),
    failed: last ? last.result === "failed" : o.state === "failed",
    failedStep: last ? last.failedStep : o.failedStep,
    calls: (key) => history.filter((a) => a.step === key),
    callsOf: (keys) => history.filter((a) => keys.includes(a.step)),
    kept: (name) => (o.outputs && ours(o.outputs[name]) ? o.outputs[name] : undefined),
  };
}

function plainState(r, key, calls, kept) {
  // a single call's step: where the run is, how it ended, or that it has not run
  if (r.live && r.o.step === key) return r.o.inFlight ? "running" : "waiting";
  if (r.failedStep === key) return "failed";
  if (kept) return kept.ok ? "done" : "failed";
  if (calls.length) return calls[calls.length - 1].ok ? "done" : "failed";
  return r.ended ? "skipped" : "pending";
}

function lastResponse(calls) {
  const last = calls[calls.length - 1];
  return last && last.response ? { title: "Last response", text: last.response, read: null } : null;
}

function keptOutput(kept, read) {
  return kept ? { title: "Output", value: kept.output, read } : null;
}

function callNode(r, { key, kind, label, invoke, retries, output }) {
  // a node that is one call: a task, a check, a named step, a branch's step, the fallback
  const calls = r.calls(key);
  const kept = output && output.kept;
  const status = plainState(r, key, calls, kept);
  const current = r.live && r.o.step === key;
  return {
    key, kind, label: label || stepLabel(key), invoke, retries, status, current,
    attempts: Math.max(kept ? kept.attempts || 0 : 0, calls.length),
    attempt: current ? r.o.attempt : null,
    output: kept ? keptOutput(kept, output.read) : lastResponse(calls),
    note: current && status === "waiting" && r.o.due ? `${r.o.attempt > 1 ? "next try" : "due"} at ${localTime(r.o.due)}` : "",
  };
}

function waitNode(r, step) {
  // waitForCallback: a call handed ${{ callback.url }}, then a wait until it is POSTed to
  const key = `step:${step.name}`;
  const wait = step.waitForCallback;
  const calls = r.calls(key);
  const answers = r.calls(`callback:${step.name}`);
  const kept = r.kept(step.name);
  const current = r.live && r.o.step === key;
  let status;
  if (current) status = r.o.inFlight && !r.o.waitingUntil ? "running" : "waiting";
  else if (r.failedStep === key) status = "failed";
  else if (answers.some((a) => a.ok)) status = "done";
  else if (calls.length || answers.length) status = "failed";
  else status = r.ended ? "skipped" : "pending";
  let note = `then waits up to ${esc(wait.timeout)} for a callback${wait.heartbeat ? ` (a heartbeat gives it ${esc(wait.heartbeat)} more)` : ""}`;
  if (current && r.o.waitingUntil) note = `waiting for its callback until ${localTime(r.o.waitingUntil)}`;
  else if (current && !r.o.inFlight && r.o.due) note = `${r.o.attempt > 1 ? "next try" : "due"} at ${localTime(r.o.due)}`;
  return {
    key, kind: "wait", label: step.name, invoke: wait.invoke, retries: step.retries, status, current, note,
    attempts: Math.max(kept ? kept.attempts || 0 : 0, calls.length),
    attempt: current ? r.o.attempt : null,
    output: kept && current && status === "waiting"
      ? { title: "Answer to its call", value: kept.output, read: `steps.${step.name}.output`, note: "the callback's output takes its place" }
      : keptOutput(kept, `steps.${step.name}.output`),
  };
}

function laneState(lane) {
  // a branch as the API tells it while its parallel step runs (waiting: no place was free yet)
  if (lane.state === "waiting") return "pending";
  if (lane.state === "active") return lane.due && new Date(lane.due) > new Date() ? "waiting" : "running";
  return lane.state;
}

function parallelNode(r, step) {
  const key = `step:${step.name}`;
  const par = step.parallel;
  const count = par.branches.length;
  const current = r.live && r.o.step === key;
  const lanes = current && Array.isArray(r.o.branches) ? r.o.branches : [];
  const kept = r.kept(step.name);
  const ends = kept && Array.isArray(kept.branches) ? kept.branches : [];
  const branches = par.branches.map((steps, b) => {
    const lane = lanes.find((l) => l.branch === b);
    const nodes = steps.map((inner, j) => {
      const node = callNode(r, { key: `${key}/${b}/${inner.name}`, kind: "call", label: inner.name, invoke: inner.invoke, retries: inner.retries, output: { kept: r.kept(`${step.name}/${b}/${inner.name}`), read: `steps.${inner.name}.output` } });
      if (lane && lane.state !== "waiting" && j === lane.at) {  // the step this branch is at
        node.status = laneState(lane);
        node.current = ["running", "waiting"].includes(node.status);
        node.attempt = node.current ? lane.attempt : null;
        if (node.status === "waiting" && lane.due) node.note = `next try at ${localTime(lane.due)}`;
      } else if (lane && j < lane.at) node.status = "done";
      else if (lane && node.status === "skipped") node.status = "pending";
      if ((lane ? lane.state : ends[b]) === "cancelled" && ["pending", "skipped"].includes(node.status)) node.status = "cancelled";
      return node;
    });
    let status = lane ? laneState(lane) : ends[b];
    if (!status) {
      if (nodes.some((n) => n.status === "failed")) status = "failed";
      else if (nodes.every((n) => n.status === "done")) status = "done";
      else status = nodes.some((n) => n.status === "done") ? (r.ended ? "failed" : "running") : (r.ended ? "skipped" : "pending");
    }
    const note = lane && lane.state === "waiting" ? "waits for a free place" : "";
    return { branch: b, status, note, nodes };
  });
  let status;
  if (current) status = r.o.inFlight || lanes.some((l) => laneState(l) === "running") ? "running" : "waiting";
  else if (r.failedStep === key || (r.failedStep || "").startsWith(`${key}/`)) status = "failed";
  else if (kept) status = kept.ok ? "done" : "failed";
  else if (branches.some((b) => b.nodes.some((n) => n.attempts))) status = "failed";
  else status = r.ended ? "skipped" : "pending";
  const at = par.maxConcurrency && par.maxConcurrency < count ? `, ${par.maxConcurrency} at a time` : "";
  const mode = par.mode === "any" ? "the first to succeed ends the step" : "all must succeed";
  return {
    key, kind: "parallel", label: step.name, status, current, branches,
    words: `${count} branch${count === 1 ? "" : "es"} side by side${at}`,
    join: { mode, status },
    attempts: 0,
    output: kept ? { title: "Output", value: kept.output, read: `steps.${step.name}.output[i]`, note: "one item per branch: what its last step answered" } : null,
  };
}

function fallbackNode(r, fallback, named) {
  const on = fallback.on || ["check", "task"];
  const words = named ? FALLBACK_WHEN_STEPS : FALLBACK_WHEN;
  const node = callNode(r, { key: "fallback", kind: "fallback", invoke: fallback.invoke, retries: fallback.retries });
  node.note = `runs when ${on.map((w) => words[w]).join(" or ")}`;
  const failed = (r.failedStep || "").split(":")[0];
  const why = failed === "check" ? "check" : failed ? "task" : null;
  if (node.status === "skipped" && r.failed && why && !on.includes(why)) node.note = `not run: ${words[why]}, and it runs only when ${on.map((w) => words[w]).join(" or ")}`;
  return node;
}

function notifyNodes(r) {
  // spec.notify's entries (told of started, succeeded, failed) and onFailure (or serve --on-failure)
  const { o } = r;
  const nodes = (o.spec.notify || []).map((n, i) => {
    const keys = (n.on || []).map((event) => `notify:${event}:${i}`);
    const calls = r.callsOf(keys);
    const current = r.live && keys.includes(o.step);
    let status = r.ended ? "skipped" : "pending";
    if (current) status = o.inFlight ? "running" : "waiting";
    else if (calls.length) status = calls[calls.length - 1].ok ? "done" : "failed";
    return {
      key: `notify:${i}`, kind: "notify", label: `Notification ${i + 1}`, invoke: n.invoke, retries: n.retries, status, current,
      attempts: calls.length, attempt: current ? o.attempt : null,
      note: `told when a run ${(n.on || []).map((e) => ({ started: "starts", succeeded: "succeeds", failed: "fails" })[e] || e).join(" or ")}`,
      output: lastResponse(calls),
    };
  });
  const told = r.calls("notify");
  if (o.spec.onFailure || told.length) {
    const node = callNode(r, { key: "notify", kind: "notify", invoke: o.spec.onFailure ? o.spec.onFailure.invoke : null, retries: o.spec.onFailure ? o.spec.onFailure.retries : undefined });
    node.note = o.spec.onFailure ? "told when a run fails (onFailure)" : "told when a run fails (the server's --on-failure)";
    nodes.push(node);
  }
  return nodes;
}

function flowOf(o) {
  // the drawing's nodes: { line: the main line, hooks: off it, where: a sentence }
  const r = reading(o);
  const spec = o.spec || {};
  const line = [];
  (spec.tasks || []).forEach((t, i) => {
    line.push(callNode(r, { key: `task:${i}`, kind: "task", invoke: t, retries: t && t.retries }));
    const last = i === spec.tasks.length - 1;
    if (spec.conditionCheck && (!last || spec.conditionCheck.afterLast)) line.push(callNode(r, { key: `check:${i}`, kind: "check", invoke: spec.conditionCheck.invoke, retries: spec.conditionCheck.retries }));
  });
  (spec.steps || []).forEach((step) => {
    if (step.parallel) line.push(parallelNode(r, step));
    else if (step.waitForCallback) line.push(waitNode(r, step));
    else line.push(callNode(r, { key: `step:${step.name}`, kind: "call", label: step.name, invoke: step.invoke, retries: step.retries, output: { kept: r.kept(step.name), read: `steps.${step.name}.output` } }));
    if (step.conditionCheck) line.push(callNode(r, { key: `check:${step.name}`, kind: "check", invoke: step.conditionCheck.invoke, retries: step.conditionCheck.retries }));
  });
  const hooks = [];
  if (spec.fallback) hooks.push(fallbackNode(r, spec.fallback, Boolean(spec.steps)));
  hooks.push(...notifyNodes(r));
  if (r.failed) {  // where the run stopped
    const stopped = everyNode(line).find((n) => n.key === r.failedStep);
    if (stopped) stopped.stopped = true;
  }
  return { line, hooks, where: r.last ? lastRunWords(o, r.last) : whereWords(o, line, hooks) };
}

function placeWords(key) {
  // a step named where a sentence says it: a branch's step with its branch
  const [kind, rest] = key.split(":");
  const parts = (rest || "").split("/");
  if (kind === "step" && parts.length === 3) return `${parts[2]} (branch ${Number(parts[1]) + 1} of ${parts[0]})`;
  return stepLabel(key);
}

function everyNode(nodes) {
  return nodes.flatMap((n) => [n, ...(n.branches || []).flatMap((b) => b.nodes)]);
}

function ofRetries(node) {
  return node.retries ? ` of ${node.retries + 1}` : "";
}

function lastRunWords(o, last) {
  const ended = { completed: "completed", failed: "failed", cancelled: "was cancelled" }[last.result] || esc(last.result);
  return `Between runs: run ${esc(last.run)} ${ended} at ${localTime(last.finished)}${o.suspended ? "; suspended, no run starts until it is resumed" : `; the next run starts at ${localTime(o.due)}`}.`;
}

function whereWords(o, line, hooks) {
  // the sentence above the drawing: where the run stands, in words
  const nodes = [...everyNode(line), ...hooks];
  if (o.state === "scheduled") {
    if (o.suspended) return "Suspended: no step starts until it is resumed.";
    return o.due ? `${o.schedule ? "Between runs: the next run starts" : "Not started: the first step starts"} at ${localTime(o.due)}.` : "Not started.";
  }
  if (o.state === "completed") return "Completed: every step is done.";
  if (o.state === "cancelled") return "Cancelled.";
  if (o.state === "failed") {
    const fallback = hooks.find((n) => n.kind === "fallback");
    const ran = !fallback ? "" : fallback.status === "done" ? " The fallback ran." : fallback.status === "failed" ? " The fallback ran and failed." : " The fallback did not run.";
    const stopped = nodes.find((n) => n.stopped);
    return `Failed at ${esc(placeWords(o.failedStep || "?"))}${stopped && stopped.attempts ? ` after ${stopped.attempts} attempt${stopped.attempts === 1 ? "" : "s"}` : ""}.${ran}`;
  }
  const here = nodes.find((n) => n.key === o.step);
  if (!here) return "Running.";
  const name = `Now at <strong>${esc(here.label)}</strong>`;
  if (here.kind === "parallel") {
    const counts = {};
    here.branches.forEach((b) => { counts[b.status] = (counts[b.status] || 0) + 1; });
    const told = ["running", "waiting", "done", "failed", "cancelled", "pending"].filter((s) => counts[s]).map((s) => `${counts[s]} ${s === "waiting" ? "waiting to try again" : STATE_WORDS[s]}`);
    return `${name}: of its ${here.branches.length} branches, ${told.join(", ")}.`;
  }
  if (here.kind === "wait" && o.waitingUntil) return `${name}: waiting for its callback until ${localTime(o.waitingUntil)}.`;
  if (here.status === "running") return `${name}: running, attempt ${esc(o.attempt)}${ofRetries(here)}.`;
  if (o.attempt > 1) return `${name}: waiting to try again at ${localTime(o.due)} (attempt ${esc(o.attempt)}${ofRetries(here)}).`;
  return `${name}: due at ${localTime(o.due)}.`;
}

// ---------------------------------------------------------------- the drawing

const shown = { id: null, open: new Set() };  // the outputs opened on the object shown, kept across redraws

function outputText(value) {
  // short JSON on one line, longer JSON laid out; either cut at SHOWN characters
  const line = JSON.stringify(value);
  const text = line === undefined ? String(value) : line.length <= 80 ? line : JSON.stringify(value, null, 2);
  return text.length > SHOWN ? `${text.slice(0, SHOWN)}\n… (${text.length - SHOWN} more characters: lambdaop get -o yaml shows all of it)` : text;
}

function peek(out) {
  // the start of an output, on one line, beside its toggle
  const line = out.text !== undefined ? out.text : JSON.stringify(out.value);
  return String(line).replace(/\s+/g, " ");
}

function drawOutput(node) {
  const out = node.output;
  if (!out) return "";
  const text = out.text !== undefined ? out.text : outputText(out.value);
  const open = shown.open.has(node.key) ? " open" : "";
  return `<details class="node-output" data-output-for="${esc(node.key)}"${open}>
      <summary><span class="output-title">${esc(out.title)}</span><span class="visually-hidden"> of ${esc(node.label)}</span> <code class="output-peek" aria-hidden="true">${esc(peek(out).slice(0, 120))}</code></summary>
      ${out.read ? `<small class="d-block text-muted">later steps read it as <code>${esc(out.read)}</code>${out.note ? `: ${esc(out.note)}` : ""}</small>` : ""}
      <pre class="response step-output" tabindex="0" aria-label="${esc(out.title)} of ${esc(node.label)}">${esc(text)}</pre></details>`;
}

function attemptWords(node) {
  if (node.attempt) return ` · attempt ${esc(node.attempt)}${ofRetries(node)}`;
  if (node.attempts) return ` · ${node.attempts} attempt${node.attempts === 1 ? "" : "s"}`;
  return "";
}

function drawNode(node) {
  const url = node.invoke ? target(node.invoke) : "";
  const words = node.words || (node.invoke ? callWords(node.invoke) : "");
  const mark = node.current ? "now" : node.stopped ? "stopped here" : "";
  const classes = ["flow-node", `kind-${node.kind}`, node.status, node.current || node.stopped ? "current" : ""].filter(Boolean).join(" ");
  return `<li class="${classes}" data-step="${esc(node.key)}" data-status="${node.status}" data-kind="${node.kind}"${mark ? ` aria-current="step"` : ""}>
    <div class="node">
      <div class="node-head"><span class="node-sign" aria-hidden="true">${STATE_SIGNS[node.status]}</span><span class="step-name">${esc(node.label)}</span>
        <span class="node-kind">${KIND_WORDS[node.kind]}</span>${mark ? `<span class="node-now">${mark}</span>` : ""}</div>
      ${words ? `<small class="d-block text-break step-call" title="${esc(url)}">${esc(words)}</small>` : ""}
      ${url ? `<small class="d-block text-muted text-truncate step-host">${esc(host(url))}${node.retries ? ` · retries ${esc(node.retries)}` : ""}</small>` : ""}
      <small class="d-block node-state"><span class="state-word">${STATE_WORDS[node.status]}</span>${attemptWords(node)}</small>
      ${node.note ? `<small class="d-block text-muted step-note">${node.note}</small>` : ""}
      ${drawOutput(node)}
    </div>${node.branches ? drawBranches(node) : ""}</li>`;
}

function drawBranches(node) {
  const branches = node.branches.map((b) => `
    <li class="flow-branch ${b.status}" data-branch="${b.branch}" data-status="${b.status}">
      <div class="branch-head"><span class="node-sign" aria-hidden="true">${STATE_SIGNS[b.status]}</span> <span class="branch-name">Branch ${b.branch + 1}</span> ·
        <span class="state-word">${STATE_WORDS[b.status]}</span>${b.note ? ` <small class="text-muted">(${esc(b.note)})</small>` : ""}</div>
      <ol class="flow-line" aria-label="Branch ${b.branch + 1} of ${esc(node.label)}">${b.nodes.map(drawNode).join("")}</ol></li>`).join("");
  return `
    <ol class="flow-branches" aria-label="The branches of ${esc(node.label)}, side by side">${branches}</ol>
    <div class="flow-join ${node.join.status}" data-join="${esc(node.key)}" data-status="${node.join.status}"><span class="node-sign" aria-hidden="true">${STATE_SIGNS[node.join.status]}</span>
      Join: ${esc(node.join.mode)} · <span class="state-word">${STATE_WORDS[node.join.status]}</span></div>`;
}

function hooksTitle(hooks) {
  const fallback = hooks.some((n) => n.kind === "fallback");
  const told = hooks.some((n) => n.kind === "notify");
  return `${fallback ? "Fallback" : ""}${fallback && told ? " and notifications" : told ? "Notifications" : ""} <small class="text-muted fw-normal">(off the main line)</small>`;
}

export function drawSteps(o) {
  // the Steps section of a TaskSet's page
  if (shown.id !== o.id) { shown.id = o.id; shown.open.clear(); }
  const flow = flowOf(o);
  const hooks = flow.hooks.length ? `
      <section class="flow-hooks" aria-labelledby="flow-hooks-title"><h3 class="h6" id="flow-hooks-title">${hooksTitle(flow.hooks)}</h3>
        <ul class="flow-hook-list">${flow.hooks.map(drawNode).join("")}</ul></section>` : "";
  return `<section class="flow mt-3" id="flow" aria-labelledby="flow-title">
    <h2 class="h5" id="flow-title">Steps</h2>
    <p class="flow-where" id="flow-where">${flow.where}</p>
    <div class="flow-graph${hooks ? " with-hooks" : ""}">
      <ol class="flow-line flow-main" id="flow-main" aria-label="The steps, in order">${flow.line.map(drawNode).join("")}</ol>${hooks}
    </div></section>`;
}

export function watchSteps(container) {
  // an output opened (or closed) stays so when the view is redrawn
  container.addEventListener("toggle", (e) => {
    const key = e.target.dataset && e.target.dataset.outputFor;
    if (key === undefined) return;
    if (e.target.open) shown.open.add(key); else shown.open.delete(key);
  }, true);
}

export function keepSteps(container) {
  // before a redraw: what is focused and scrolled among the outputs; the answer puts it back after it
  const active = document.activeElement;
  const holder = active && container.contains(active) ? active.closest("[data-output-for]") : null;
  const scrolled = [...container.querySelectorAll("details[data-output-for][open] pre")].map((pre) => [pre.closest("details").dataset.outputFor, pre.scrollTop]);
  return () => {
    const find = (key) => [...container.querySelectorAll("details[data-output-for]")].find((d) => d.dataset.outputFor === key);
    for (const [key, top] of scrolled) { const d = find(key); if (d) d.querySelector("pre").scrollTop = top; }
    if (!holder) return;
    const d = find(holder.dataset.outputFor);
    const again = d && (active.tagName === "PRE" ? d.querySelector("pre") : d.querySelector("summary"));
    if (again) again.focus({ preventScroll: true });
  };
}
