// The console's script: served as a file, as its Content-Security-Policy allows no inline script.
"use strict";
const $ = (s) => document.querySelector(s);
const COLORS = { accepted: "#635bff", published: "#0e7c3a", failed: "#c0123c" };
let csrf = null, timer = null, traced = "";

function el(tag, text, cls) {
  const e = document.createElement(tag);  // text only, never HTML: entries come from outside
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path, options = {}) {
  const opts = { method: options.method || "GET", credentials: "same-origin",
                 headers: { "Accept": "application/json" } };
  if (options.body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(options.body);
  }
  if (opts.method !== "GET") opts.headers["X-CSRF-Token"] = csrf || "";
  const answer = await fetch("/console/api/" + path, opts);
  if (answer.status === 401 && path !== "session") { signedOut(); throw new Error("signed out"); }
  return { status: answer.status, body: await answer.json() };
}

function signedOut() {
  clearInterval(timer); csrf = null;
  $("#console").hidden = true; $("#signout").hidden = true; $("#signin").hidden = false;
}

async function signIn(token) {
  const { status, body } = await api("session", { method: "POST", body: { token } });
  if (status !== 200) { $("#signin-error").textContent = body.error.message; signedOut(); return; }
  start(body.csrf);
}

function start(token) {
  csrf = token;
  $("#signin").hidden = true; $("#console").hidden = false; $("#signout").hidden = false;
  refresh(); clearInterval(timer); timer = setInterval(refresh, 2000);
}

function row(tbody, cells, attrs = {}) {
  const tr = el("tr");
  for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = v;
  for (const c of cells) { const td = el("td"); td.append(c instanceof Node ? c : el("span", c)); tr.append(td); }
  tbody.append(tr);
  return tr;
}

function figures(s) {
  const dl = $("#figures"); dl.replaceChildren();
  const pace = Object.entries(s.pace).map(([mode, rate]) => `${rate}/s (${mode} key)`).join(", ") || "none yet";
  const items = [["live workers", s.live_workers], ["not consuming", s.workers_not_consuming], ["queued", s.queue_depth], ["in flight", s.in_flight],
    ["retries waiting", s.retries_waiting], ["pending", s.pending],
    ["oldest pending", s.oldest_pending_seconds === null ? "none" : s.oldest_pending_seconds + " s"],
    ["errors", `${s.streams.errors.entries} (${s.errors_replayed} replayed)`], ["Stripe pace", pace],
    ["endpoint paces", Object.entries(s.endpoint_pace || {}).map(([mode, eps]) =>
      Object.entries(eps).map(([ep, rate]) => `${ep} ${rate}/s (${mode})`).join(", ") +
      (s.in_flight_cap && s.in_flight_cap[mode] ? `; at most ${s.in_flight_cap[mode]} in flight` : "") +
      (s.limited_by && s.limited_by[mode] ? `; last 429 from ${s.limited_by[mode]}` : "")).join("; ") || "none yet"],
    ["catch-up cursor", s.catchup ? Object.entries(s.catchup.cursor_ages).map(([acct, age]) =>
      `${Math.round(age)} s behind` + (acct ? ` (${acct})` : "")).join(", ") || "not yet" : "never ran"],
    ["catch-up recovered", s.catchup ? `${s.catchup.recovered} never delivered` : "none"]];
  for (const [name, stream] of Object.entries(s.streams)) {
    for (const [group, g] of Object.entries(stream.groups)) items.push([`lag ${name}/${group}`, g.lag ?? "?"]);
  }
  for (const [k, v] of items) { dl.append(el("dt", k)); dl.append(el("dd", v)); }
  const health = $("#health");
  health.textContent = s.problems.length ? s.problems.join("; ") : "OK";
  health.className = s.problems.length ? "bad" : "ok";
  const tbody = $("#workers tbody"); tbody.replaceChildren();
  for (const w of s.workers) row(tbody, [`${w.host} pid ${w.pid}`, `${w.pool} x${w.concurrency}`, w.tasks_done, w.running, w.beat_seconds_ago + " s ago" + (w.consuming ? "" : ", NOT CONSUMING")]);
}

function chart(t) {
  const canvas = $("#chart"), ctx = canvas.getContext("2d"), n = t.accepted.length;
  const max = Math.max(1, ...t.accepted, ...t.published, ...t.failed);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#697386"; ctx.font = "11px sans-serif";
  ctx.fillText(`${max}/s`, 2, 10); ctx.fillText("-5 min", 2, canvas.height - 2); ctx.fillText("now", canvas.width - 24, canvas.height - 2);
  const legend = $("#legend"); legend.replaceChildren();
  for (const name of ["accepted", "published", "failed"]) {
    ctx.strokeStyle = COLORS[name]; ctx.beginPath();
    t[name].forEach((v, i) => {
      const x = (i / (n - 1)) * canvas.width, y = canvas.height - 14 - (v / max) * (canvas.height - 28);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
    const lastMinute = t[name].slice(-60).reduce((a, b) => a + b, 0);
    const span = el("span", `${name}: ${lastMinute} in the last minute`); span.id = "total-" + name;
    const swatch = el("i"); swatch.style.background = COLORS[name]; span.prepend(swatch); legend.append(span);
  }
}

function when(entryId) {  // a stream entry id starts with its time in ms
  const time = el("span", new Date(parseInt(entryId, 10)).toLocaleTimeString()); time.title = entryId;
  return time;
}

function entries(name, list) {
  const tbody = $(`#stream-${name} tbody`); tbody.replaceChildren();
  for (const e of list) {
    row(tbody, [when(e.id), e.customerEmail || e.event_type || "", e.customerId || "", `${e.source}:${e.source_id}`], { id: e.id });
  }
  if (!list.length) row(tbody, ["no entries yet"]);
}

function errors(list) {
  const tbody = $("#errors tbody"); tbody.replaceChildren();
  for (const e of list) {
    let action;
    if (e.replayed) action = el("span", "replayed", "muted");
    else {
      action = el("button", "Replay", "replay"); action.dataset.id = e.id;
      action.addEventListener("click", () => replay({ ids: [e.id] }));
    }
    row(tbody, [e.id, `${e.source}:${e.source_id}`, `${e.error_type} ${e.http_status || ""}`, e.error_message || "", action], { id: e.id });
  }
  if (!list.length) row(tbody, ["no failures"]);
}

async function replay(body) {
  const { body: answer } = await api("replay", { method: "POST", body });
  const results = answer.results || {};
  $("#replay-result").textContent = Object.keys(results).length
    ? Object.entries(results).map(([id, r]) => `${id}: ${r}`).join("; ") : "nothing to replay";
  refresh();
}

async function showTrail() {
  if (!traced) return;
  const { body } = await api("trace?q=" + encodeURIComponent(traced));
  const box = $("#trail"); box.replaceChildren();
  if (!body.found.length) { box.append(el("p", `nothing found for ${traced}`, "muted")); return; }
  for (const f of body.found) {
    box.append(el("h3", f.work_id));
    const ol = el("ol"); ol.className = "trail";
    for (const line of f.trail) {
      const at = new Date(line.at * 1000).toISOString().replace("T", " ").slice(0, 23);
      const rest = Object.entries(line).filter(([k]) => k !== "at" && k !== "step").map(([k, v]) => `${k}=${v}`).join("  ");
      const li = el("li"); li.dataset.step = line.step;
      li.append(el("span", at + "  ", "muted"), el("b", line.step), el("span", "  " + rest));
      ol.append(li);
    }
    box.append(ol);
  }
}

async function refresh() {
  try {
    const { body } = await api("overview");
    figures(body.status); chart(body.throughput);
    entries("customers", body.streams.customers); entries("events", body.streams.events);
    errors(body.errors);
    await showTrail();
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) { $("#updated").textContent = "not updated: " + e.message; }
}

$("#signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#token").value); });
$("#search-form").addEventListener("submit", (e) => { e.preventDefault(); traced = $("#search").value.trim(); showTrail(); });
$("#replay-all").addEventListener("click", () => replay({ all: true }));
$("#signout").addEventListener("click", async () => { await api("session", { method: "DELETE" }); signedOut(); });

(async () => {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { history.replaceState(null, "", location.pathname); return signIn(decodeURIComponent(m[1])); }
  const { status, body } = await api("session");
  if (status === 200 && body.csrf) start(body.csrf); else signedOut();
})();
