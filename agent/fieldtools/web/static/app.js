"use strict";
// The technician's page: plain JS, no build step. Live survey data over Server-Sent Events.
const $ = (id) => document.getElementById(id);
const auth = { loggedIn: false, csrf: null, passwordSet: false, hint: "" };
let currentPage = null;
let timer = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}
function say(text, kind) { const m = $("message"); m.textContent = text || ""; m.className = text ? (kind || "info") : ""; }
function fmtS(s) { if (s === null || s === undefined) return "—"; s = Math.round(s); if (s < 120) return s + " s"; if (s < 7200) return Math.round(s / 60) + " min"; return (s / 3600).toFixed(1) + " h"; }
function yes(v, good, bad) { return el("span", v ? good : bad, v ? "ok" : "bad"); }

async function api(path, opts) {
  opts = opts || {};
  const headers = { "Accept": "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.method === "POST" && auth.csrf) headers["X-CSRF-Token"] = auth.csrf;
  const resp = await fetch(path, { method: opts.method || "GET", headers, credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = { error: resp.status + " " + resp.statusText }; }
  if (resp.status === 401 && auth.loginRequired) { location.reload(); } // the login page
  if (resp.status === 401 && auth.loggedIn && opts.method === "POST") { auth.loggedIn = false; showAuth(); }
  return { status: resp.status, ok: resp.ok, data };
}

// ------------------------------------------------------------------ session
async function loadSession() {
  const r = await api("/api/session");
  auth.loggedIn = r.data.loggedIn; auth.csrf = r.data.csrf; auth.passwordSet = r.data.passwordSet;
  auth.hint = r.data.setPasswordHint; auth.loginRequired = r.data.loginRequired;
  showAuth();
}
function showAuth() {
  $("auth-state").textContent = auth.loggedIn ? "admin" : (auth.passwordSet ? "read-only" : "read-only (no admin password set)");
  $("auth-state").title = auth.passwordSet ? "" : "changes need an admin password: run " + auth.hint + " on the gateway";
  $("password").hidden = auth.loggedIn || !auth.passwordSet;
  $("login").hidden = auth.loggedIn || !auth.passwordSet;
  $("logout").hidden = !auth.loggedIn;
}
$("login").onclick = async () => {
  const r = await api("/api/login", { method: "POST", body: { password: $("password").value } });
  $("password").value = "";
  if (r.ok) { auth.loggedIn = true; auth.csrf = r.data.csrf; say("logged in as admin"); showAuth(); show(currentPage); }
  else say("login refused: " + r.data.error, "error");
};
$("password").addEventListener("keydown", (e) => { if (e.key === "Enter") $("login").click(); });
$("logout").onclick = async () => { await api("/api/logout", { method: "POST", body: {} }); auth.loggedIn = false; auth.csrf = null; if (auth.loginRequired) { location.reload(); return; } showAuth(); say("logged out"); };

// ------------------------------------------------------------------ overview
async function overview() {
  const r = await api("/api/status");
  if (!r.ok) { say(r.data.error, "error"); return; }
  const s = r.data, u = s.uplink, b = s.buffer;
  $("title").textContent = "Edge agent " + s.gateway.id;
  const t = $("overview"); t.replaceChildren();
  const add = (k, v) => { const tr = document.createElement("tr"); tr.appendChild(el("th", k)); const td = document.createElement("td"); if (v instanceof Node) td.appendChild(v); else td.textContent = v; tr.appendChild(td); t.appendChild(tr); };
  add("gateway id", s.gateway.id); add("site", s.gateway.site); add("version", s.version);
  add("uptime", fmtS(s.uptimeS));
  add("clock synced", s.clock.synchronised === null ? el("span", "unknown", "warn") : yes(s.clock.synchronised, "yes", "NO"));
  add("buffer depth", b.depth + " events"); add("oldest event age", fmtS(b.oldestEventAgeS));
  add("broker", u.broker); add("connected", yes(u.connected, "connected", "disconnected"));
  add("last PUBACK", u.lastPubackAgeS === null ? "none yet" : fmtS(u.lastPubackAgeS) + " ago (" + u.published + " messages confirmed)");
  add("dead letters", b.deadLetters + (b.deadLettersFull ? " (FULL)" : ""));
  const al = el("ul"); for (const a of s.alarms || []) al.appendChild(el("li", a, "bad"));
  add("alarms", (s.alarms || []).length ? al : el("span", "none", "ok"));
  add("health", yes(s.health.ok, "OK", "UNHEALTHY"));
  const rb = $("refusals").tBodies[0]; rb.replaceChildren();
  const reasons = Object.entries(u.refusedByReason || {});
  if (!reasons.length) rb.appendChild(row(["none", 0]));
  for (const [k, v] of reasons) rb.appendChild(row([k, v]));
  const h = $("health"); h.replaceChildren();
  for (const reason of s.health.reasons) h.appendChild(el("li", reason, "bad"));
  if (!s.health.reasons.length) h.appendChild(el("li", "no problems", "ok"));
}

// ------------------------------------------------------------------ readers
const antennaRate = {}; // "reader/antenna" -> reads/s, from the survey stream
let rateSource = null; // the readers page's own aggregate stream (per-antenna reads/s)
function rateStream(on) {
  if (on && !rateSource && !surveySource) {
    rateSource = new EventSource("/api/survey");
    rateSource.onmessage = (ev) => { const m = JSON.parse(ev.data); for (const k of Object.keys(antennaRate)) if (!(k in m.antennas)) antennaRate[k] = 0; for (const [k, a] of Object.entries(m.antennas)) antennaRate[k] = a.readsPerS; };
  } else if (!on && rateSource) { rateSource.close(); rateSource = null; }
}
async function readersPage() {
  rateStream(true);
  const r = await api("/api/readers");
  if (!r.ok) { say(r.data.error, "error"); return; }
  const tb = $("readers").tBodies[0]; tb.replaceChildren();
  for (const x of r.data.readers) {
    const per = Object.entries(antennaRate).filter(([k]) => k.startsWith(x.name + "/")).map(([k, v]) => "ant " + k.split("/")[1] + ": " + v).join(", ");
    tb.appendChild(row([x.name, x.driver, el("span", x.state, x.state === "connected" ? "ok" : "bad"), x.lastError || "",
      x.temperatureC === null ? "—" : x.temperatureC + " °C", x.firmware || "—",
      JSON.stringify(x.power.reportedDbm), x.readRate, per || "—"]));
  }
}

// ------------------------------------------------------------------ site survey
let surveySource = null;
const tags = new Map(); // key -> tag
const series = new Map(); // "reader/antenna" -> [[t, rssiAvg]]
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
function startSurvey() {
  stopSurvey();
  const prefix = $("survey-prefix").value.trim().toUpperCase();
  surveySource = new EventSource("/api/survey" + (prefix ? "?prefix=" + encodeURIComponent(prefix) : ""));
  surveySource.onmessage = (ev) => onSurvey(JSON.parse(ev.data));
  surveySource.onopen = () => { $("survey-state").textContent = "running"; };
  surveySource.onerror = () => { $("survey-state").textContent = "reconnecting…"; };
  $("survey-start").disabled = true; $("survey-stop").disabled = false;
  $("survey-state").textContent = "connecting…";
}
function stopSurvey() {
  if (surveySource) surveySource.close();
  surveySource = null;
  $("survey-start").disabled = false; $("survey-stop").disabled = true; $("survey-state").textContent = "stopped";
}
function onSurvey(m) {
  const now = m.time;
  for (const t of m.tags) {
    const key = t.epc + "|" + t.reader + "|" + t.antenna;
    const old = tags.get(key);
    if (old) {
      old.count += t.count; old.last = t.last; old.lastRssi = t.lastRssi;
      if (t.peakRssi !== null && (old.peakRssi === null || t.peakRssi > old.peakRssi)) old.peakRssi = t.peakRssi;
    } else tags.set(key, Object.assign({}, t));
  }
  for (const [k, a] of Object.entries(m.antennas)) {
    antennaRate[k] = a.readsPerS;
    if (!series.has(k)) series.set(k, []);
    if (a.rssiAvg !== null) series.get(k).push([now, a.rssiAvg]);
  }
  for (const k of Object.keys(antennaRate)) if (!(k in m.antennas)) antennaRate[k] = 0;
  for (const pts of series.values()) while (pts.length && pts[0][0] < now - 60) pts.shift();
  if (currentPage === "survey") drawSurvey(now);
}
function drawSurvey(now) {
  const prefix = $("survey-prefix").value.trim().toUpperCase();
  const tb = $("survey-tags").tBodies[0];
  const list = [...tags.values()].filter((t) => !prefix || t.epc.startsWith(prefix)).sort((a, b) => (b.peakRssi ?? -999) - (a.peakRssi ?? -999));
  const rows = list.slice(0, 500).map((t) => {
    const tr = row([t.epc, t.hri || t.uri || "", t.reader, t.antenna, t.peakRssi, t.lastRssi, t.count, t.first.slice(11, 23), t.last.slice(11, 23)]);
    tr.dataset.epc = t.epc; tr.dataset.antenna = t.antenna; return tr;
  });
  tb.replaceChildren(...rows);
  $("survey-count").textContent = "(" + list.length + ")";
  const ab = $("survey-antennas").tBodies[0]; ab.replaceChildren();
  for (const k of [...series.keys()].sort()) {
    const pts = series.get(k); const last = pts.length ? pts[pts.length - 1][1] : null;
    const max = pts.length ? Math.max(...pts.map((p) => p[1])) : null;
    ab.appendChild(row([k, antennaRate[k] ?? 0, last, max]));
  }
  drawChart(now || Date.now() / 1000);
}
function drawChart(now) {
  const c = $("survey-chart"), g = c.getContext("2d"), W = c.width, H = c.height, L = 44, B = 20;
  g.clearRect(0, 0, W, H);
  let lo = -90, hi = -20;
  g.strokeStyle = "#e3e6ea"; g.fillStyle = "#555"; g.font = "11px sans-serif";
  for (let v = lo; v <= hi; v += 10) { const y = (H - B) - (v - lo) / (hi - lo) * (H - B - 8); g.beginPath(); g.moveTo(L, y); g.lineTo(W, y); g.stroke(); g.fillText(v + " dBm", 2, y + 4); }
  for (let s = 0; s <= 60; s += 10) { const x = L + (60 - s) / 60 * (W - L - 4); g.fillText(s ? "-" + s + " s" : "now", x - 12, H - 4); }
  const legend = $("survey-legend"); legend.replaceChildren();
  let i = 0;
  for (const k of [...series.keys()].sort()) {
    const color = COLORS[i++ % COLORS.length], pts = series.get(k);
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    pts.forEach(([t, v], j) => { const x = L + (1 - (now - t) / 60) * (W - L - 4); const y = (H - B) - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo) * (H - B - 8); if (j) g.lineTo(x, y); else g.moveTo(x, y); });
    g.stroke(); g.lineWidth = 1;
    const item = el("span", "", "legend-item"); const sw = el("span", "", "swatch"); sw.style.background = color; item.appendChild(sw); item.appendChild(document.createTextNode(k)); legend.appendChild(item);
  }
}
$("survey-start").onclick = startSurvey;
$("survey-stop").onclick = stopSurvey;
$("survey-clear").onclick = () => { tags.clear(); series.clear(); drawSurvey(); };
$("survey-prefix").addEventListener("change", () => { if (surveySource) startSurvey(); drawSurvey(); });

// ------------------------------------------------------------------ reader settings
async function settingsPage() {
  const r = await api("/api/readers");
  if (!r.ok) { say(r.data.error, "error"); return; }
  const box = $("settings"); box.replaceChildren();
  for (const x of r.data.readers) {
    const d = el("div", "", "reader-box"); d.dataset.reader = x.name;
    d.appendChild(el("h2", x.name + " (" + x.driver + ", " + x.state + ")"));
    d.appendChild(el("p", "reported by the reader: " + JSON.stringify(x.power.reportedDbm) + " dBm; desired: " + JSON.stringify(x.power.desiredDbm) + "; config: " + JSON.stringify(x.configPowerDbm) + (x.power.error ? "; last refusal: " + x.power.error : "")));
    const bar = el("div", "", "bar");
    const lab = el("label", "power (dBm, all ports) ");
    const inp = el("input"); inp.type = "number"; inp.min = 0; inp.max = 33; inp.className = "power-all"; inp.value = typeof x.power.reportedDbm === "number" ? x.power.reportedDbm : "";
    lab.appendChild(inp); bar.appendChild(lab);
    const ants = x.configAntennas.length ? x.configAntennas : [];
    const per = {};
    for (const a of ants) { const l = el("label", "ant " + a + " "); const i = el("input"); i.type = "number"; i.min = 0; i.max = 33; i.size = 3; i.className = "power-port"; i.dataset.port = a; l.appendChild(i); bar.appendChild(l); per[a] = i; }
    const saveLab = el("label", " save to config "); const save = el("input"); save.type = "checkbox"; save.className = "power-save"; saveLab.appendChild(save); bar.appendChild(saveLab);
    const btn = el("button", "Apply power"); btn.className = "power-apply"; bar.appendChild(btn);
    const result = el("div", "", "power-result"); d.appendChild(bar); d.appendChild(result);
    const bar2 = el("div", "", "bar");
    for (const action of ["stop", "start"]) {
      const b = el("button", action === "stop" ? "Stop reader" : "Start reader"); b.className = "reader-" + action;
      b.onclick = async () => {
        const res = await api("/api/readers/" + encodeURIComponent(x.name) + "/" + action, { method: "POST", body: {} });
        result.textContent = res.ok ? "reader " + x.name + ": " + res.data.state : "refused: " + res.data.error;
        result.className = "power-result " + (res.ok ? "ok" : "bad");
        setTimeout(settingsPage, 1500);
      };
      bar2.appendChild(b);
    }
    d.appendChild(bar2);
    if (Object.keys(x.settingsChoices || {}).length) d.appendChild(settingsForm(x));
    btn.onclick = async () => {
      let dbm = null; const ports = {};
      for (const [a, i] of Object.entries(per)) if (i.value !== "") ports[a] = Number(i.value);
      if (Object.keys(ports).length) dbm = ports; else if (inp.value !== "") dbm = Number(inp.value);
      if (dbm === null) { result.textContent = "enter a power"; return; }
      result.textContent = "applying…"; result.className = "power-result";
      const res = await api("/api/readers/" + encodeURIComponent(x.name) + "/power", { method: "POST", body: { dbm, save: save.checked } });
      if (!res.ok) { result.textContent = "refused: " + res.data.error; result.className = "power-result bad"; return; }
      const o = res.data;
      let text = o.applied ? "confirmed: the reader reports " + JSON.stringify(o.reportedDbm) + " dBm" : "queued: the reader applies it when it reconnects (desired " + JSON.stringify(o.desiredDbm) + ")";
      if (o.saved) text += o.saved.ok ? "; saved to " + o.saved.path : "; NOT saved: " + o.saved.error;
      result.textContent = text; result.className = "power-result " + (o.applied ? "ok" : "warn");
    };
    box.appendChild(d);
  }
}

const SETTING_LABELS = { antennas: "antennas enabled", session: "session", inventory: "inventory mode", target: "target", reader_mode: "reader mode (RF mode table: number or name)", search_mode: "search mode (Impinj)" };
function settingsForm(x) {
  // Antennas, session, inventory mode...: the remote set_reader_settings command (the reader
  // reconnects with them, then what it reports is read back).
  const desired = (x.settings && x.settings.desired) || x.configSettings || {};
  const wrap = el("div", "", "reader-settings");
  wrap.appendChild(el("h3", "Antennas, session, inventory"));
  const bar = el("div", "", "bar");
  const inputs = {};
  for (const [key, choices] of Object.entries(x.settingsChoices)) {
    const lab = el("label", SETTING_LABELS[key] || key); lab.className = "setting setting-" + key;
    if (key === "antennas") {
      const boxes = [];
      for (const a of choices) {
        const l = el("label", " " + a); const cb = el("input"); cb.type = "checkbox"; cb.className = "antenna"; cb.value = a;
        cb.checked = (desired.antennas || []).includes(a); l.prepend(cb); lab.appendChild(l); boxes.push(cb);
      }
      inputs[key] = () => boxes.filter((b) => b.checked).map((b) => Number(b.value));
    } else if (choices === null) {
      const i = el("input"); i.size = 14; i.className = "setting-value"; i.value = desired[key] === null || desired[key] === undefined ? "" : desired[key];
      i.placeholder = "reader's default"; lab.appendChild(document.createTextNode(" ")); lab.appendChild(i);
      inputs[key] = () => i.value.trim() === "" ? null : (/^\d+$/.test(i.value.trim()) ? Number(i.value.trim()) : i.value.trim());
    } else {
      const sel = el("select"); sel.className = "setting-value";
      // A setting the config leaves to the reader (search_mode; ThingMagic session / target).
      if (key === "search_mode" || desired[key] === null || desired[key] === undefined) { sel.appendChild(el("option", "reader's default")); sel.options[0].value = ""; }
      for (const c of choices) { const o = el("option", c); o.value = c; sel.appendChild(o); }
      sel.value = desired[key] === null || desired[key] === undefined ? "" : String(desired[key]);
      lab.appendChild(document.createTextNode(" ")); lab.appendChild(sel);
      inputs[key] = () => sel.value === "" ? null : (typeof choices[0] === "number" ? Number(sel.value) : sel.value);
    }
    bar.appendChild(lab);
  }
  const saveLab = el("label", " save to config "); const save = el("input"); save.type = "checkbox"; save.className = "settings-save"; saveLab.appendChild(save); bar.appendChild(saveLab);
  const btn = el("button", "Apply settings"); btn.className = "settings-apply"; bar.appendChild(btn);
  wrap.appendChild(bar);
  const reports = (rb) => "antennas " + JSON.stringify(rb.antennas) + ", session " + rb.session + (rb.target ? ", target " + rb.target : "");
  const noteText = (rb) => "applied at connect: " + JSON.stringify(desired) + (rb ? "; the reader reported (" + rb.source + "): " + reports(rb) : "");
  const note = el("p", noteText(x.settings && x.settings.readBack), "note settings-now"); wrap.appendChild(note);
  const result = el("div", "", "settings-result"); wrap.appendChild(result);
  btn.onclick = async () => {
    const settings = {};
    for (const [key, get] of Object.entries(inputs)) {
      const v = get();
      if (JSON.stringify(v) !== JSON.stringify(desired[key] === undefined ? null : desired[key])) settings[key] = v;
    }
    if (!Object.keys(settings).length) {
      if (!save.checked) { result.textContent = "nothing changed"; result.className = "settings-result"; return; }
      for (const [key, get] of Object.entries(inputs)) settings[key] = get();
    }
    result.textContent = "applying: the reader reconnects with the new settings…"; result.className = "settings-result";
    const res = await api("/api/readers/" + encodeURIComponent(x.name) + "/settings", { method: "POST", body: { settings, save: save.checked } });
    if (!res.ok) { result.textContent = "refused: " + res.data.error; result.className = "settings-result bad"; return; }
    const o = res.data;
    let text;
    if (o.confirmed && o.readBack) text = "confirmed: the reader reports " + reports(o.readBack) + " (" + o.verifiedBy + ")";
    else if (o.confirmed) text = "confirmed: connected again with " + JSON.stringify(o.desired) + " (" + o.note + ")";
    else if (o.mismatch) text = "NOT confirmed: " + o.mismatch.join("; ");
    else text = "queued: " + (o.note || "applied when the reader connects");
    if (o.saved) text += o.saved.ok ? "; saved to " + o.saved.path : "; NOT saved: " + o.saved.error;
    if (o.confirmed) { Object.assign(desired, o.desired); note.textContent = noteText(o.readBack); }
    result.textContent = text; result.className = "settings-result " + (o.confirmed ? "ok" : "warn");
  };
  return wrap;
}

// ------------------------------------------------------------------ configuration
function issues(title, list, cls) {
  const d = el("div"); if (!list.length) return d;
  d.appendChild(el("h2", title)); const ul = el("ul", "", cls);
  for (const i of list) ul.appendChild(el("li", (i.line ? "line " + i.line + ": " : "") + (i.path ? i.path + ": " : "") + i.message));
  d.appendChild(ul); return d;
}
function showOutcome(o) {
  const box = $("config-outcome"); box.replaceChildren();
  if (!o) return;
  const cls = o.state === "confirmed" ? "ok" : o.state === "rolled back" ? "bad" : "warn";
  box.appendChild(el("p", "last apply: " + o.state + (o.reason ? " — " + o.reason : "") + (o.backup ? " (backup " + o.backup + ")" : ""), "apply-state " + cls));
}
async function configPage() {
  const r = await api("/api/config");
  if (!r.ok) { say(r.data.error, "error"); return; }
  $("config-path").textContent = r.data.path; $("config-text").value = r.data.text;
  showOutcome(r.data.outcome);
}
function showCheck(d) {
  const box = $("config-result"); box.replaceChildren();
  box.appendChild(el("p", d.ok ? "valid" + (d.warnings.length ? " with " + d.warnings.length + " warning(s)" : "") : d.errors.length + " error(s)", d.ok ? "ok" : "bad"));
  box.appendChild(issues("Errors", d.errors, "errors")); box.appendChild(issues("Warnings", d.warnings, "warnings"));
}
$("config-check").onclick = async () => {
  const r = await api("/api/config/check", { method: "POST", body: { text: $("config-text").value } });
  if (r.data.errors) showCheck(r.data); else say(r.data.error, "error");
};
$("config-apply").onclick = async () => {
  const r = await api("/api/config/apply", { method: "POST", body: { text: $("config-text").value } });
  if (!r.data.errors) { say(r.data.error, "error"); return; }
  showCheck(r.data);
  if (!r.data.applied) { say("not applied: the configuration has errors", "error"); return; }
  say("applied; the agent restarts with it and rolls back by itself if it cannot connect");
  showOutcome(r.data.outcome);
  const started = Date.now();
  const poll = async () => {
    let o = null;
    try { const x = await api("/api/config/outcome"); o = x.data.outcome; } catch (e) { /* restarting */ }
    if (o && o.state !== "probation" && o.appliedAt === r.data.outcome.appliedAt) {
      await configPage(); // the file now in effect (the restored backup after a rollback)
      say("config " + o.state + (o.reason ? ": " + o.reason : "") + "; the text box shows the file in effect", o.state === "confirmed" ? "info" : "error");
      loadSession(); return;
    }
    if (o) showOutcome(o);
    if (Date.now() - started < 600000) setTimeout(poll, 1000);
  };
  setTimeout(poll, 1500);
};
$("config-reload").onclick = configPage;

// ------------------------------------------------------------------ diagnostics
async function diagnosticsPage() {
  const lr = await api("/api/logs");
  if (lr.ok) $("diag-logs").textContent = lr.data.lines.join("\n");
}
$("diag-run").onclick = async () => {
  $("diag-run").disabled = true; const tb = $("diag-checks").tBodies[0]; tb.replaceChildren(row(["running…"]));
  const r = await api("/api/diagnostics"); $("diag-run").disabled = false; tb.replaceChildren();
  if (!r.ok) { say(r.data.error, "error"); return; }
  for (const c of r.data.checks) tb.appendChild(row([c.name, el("span", c.status, c.status === "PASS" ? "ok" : c.status === "FAIL" ? "bad" : "warn"), c.detail, c.hint]));
  diagnosticsPage();
};

// ------------------------------------------------------------------ navigation
const pages = { overview, readers: readersPage, survey: () => drawSurvey(), settings: settingsPage, config: configPage, diagnostics: diagnosticsPage };
const refresh = { overview: 2000, readers: 2000, diagnostics: 5000 };
function show(name) {
  if (!pages[name]) name = "overview";
  currentPage = name;
  if (name !== "readers") rateStream(false);
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== "page-" + name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  if (timer) clearInterval(timer);
  timer = null;
  const run = () => pages[name]().catch((e) => say(String(e), "error"));
  run();
  if (refresh[name]) timer = setInterval(run, refresh[name]);
}
window.addEventListener("hashchange", () => { say(""); show(location.hash.slice(1)); });
loadSession().then(() => {
  show(location.hash.slice(1));
  api("/api/status").then((r) => { if (r.ok) $("title").textContent = "Edge agent " + r.data.gateway.id; });
});
