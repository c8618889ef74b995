"use strict";
// hubbub's admin UI: plain DOM, no framework, no build step. Every action goes
// through the admin API (POST api {method, params}) with the token from the login;
// the live trace is a Server-Sent Events stream (GET trace?channel=|user=).
// Data from the server only ever becomes text (textContent), never HTML.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "hubbub-admin-token";
let token = "";
try { token = sessionStorage.getItem(TOKEN_KEY) || ""; } catch { /* storage off */ }
let insecure = false;
let view = "nodes";
let pollTimer = 0;
let trace = null;          // the EventSource of the running trace
let channelShown = "";     // the channel in the detail panel
let connectionsUser = null;
const nodeNames = new Map();  // uid -> name, from the last reading of the nodes

/** A node as people know it: its name (its uid until the nodes were read). */
function nodeName(uid) {
  return nodeNames.get(uid) || String(uid || "").slice(0, 8);
}

// ---- the admin API ----
async function api(method, params = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `token ${token}`;
  const response = await fetch("api", { method: "POST", headers, body: JSON.stringify({ method, params }) });
  if (response.status === 401) {
    logout("Your session has expired: log in again.");
    throw new Error("not logged in");
  }
  if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
  const body = await response.json();
  if (body.error) throw new Error(`${body.error.message} (error ${body.error.code})`);
  return body.result !== undefined ? body.result : body;
}

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function json(text, what) {
  try { return JSON.parse(text); } catch (error) { throw new Error(`${what} is not JSON: ${error.message}`); }
}

function showResult(form, promise, success) {
  const out = form.querySelector(".result");
  out.className = "result";
  out.textContent = "…";
  promise.then((result) => {
    out.className = "result ok";
    out.textContent = success(result);
  }).catch((error) => {
    out.className = "result failed";
    out.textContent = error.message;
  });
}

// ---- login ----
async function start() {
  const headers = token ? { Authorization: `token ${token}` } : {};
  let info = { authenticated: false, insecure: false };
  try {
    info = await (await fetch("init", { headers })).json();
  } catch (error) {
    toast(`cannot reach the server: ${error.message}`);
  }
  insecure = Boolean(info.insecure);
  if (info.authenticated) loggedIn(); else showLogin("");
}

function showLogin(message) {
  $("login-view").hidden = false;
  $("tabs").hidden = true;
  $("logout").hidden = true;
  for (const section of document.querySelectorAll(".view")) section.hidden = true;
  $("login-error").textContent = message;
  $("password").focus();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new URLSearchParams({ password: $("password").value });
  const response = await fetch("auth", { method: "POST", body });
  if (response.status === 400) {
    $("login-error").textContent = "Wrong password.";
    return;
  }
  if (!response.ok) {
    $("login-error").textContent = `Login failed: ${response.status} ${(await response.text()).trim()}`;
    return;
  }
  token = (await response.json()).token;
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch { /* storage off */ }
  $("password").value = "";
  loggedIn();
});

function loggedIn() {
  $("login-view").hidden = true;
  $("tabs").hidden = false;
  $("logout").hidden = insecure;
  show(view);
}

function logout(message = "") {
  token = "";
  try { sessionStorage.removeItem(TOKEN_KEY); } catch { /* storage off */ }
  stopTrace();
  clearInterval(pollTimer);
  showLogin(message);
}
$("logout").addEventListener("click", () => logout());

// ---- views ----
for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => show(button.dataset.view));
}

function show(name) {
  view = name;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.view === name);
  }
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== `${name}-view`;
  }
  clearInterval(pollTimer);
  if (name === "nodes") {
    loadNodes();
    pollTimer = setInterval(loadNodes, 2000);
  } else if (name === "channels") {
    loadChannels();
  }
}

// ---- nodes ----
function uptime(seconds = 0) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m ${s}s` : `${s}s`;
}

async function loadNodes() {
  let result;
  try {
    result = await api("info");
  } catch (error) {
    $("nodes-updated").textContent = error.message;
    return;
  }
  const nodes = (result.nodes || []).slice().sort((a, b) => String(a.name).localeCompare(b.name));
  for (const node of nodes) nodeNames.set(node.uid, node.name);
  const body = $("nodes").tBodies[0];
  body.replaceChildren(...nodes.map((node) => {
    const row = el("tr", null, "node");
    row.dataset.uid = node.uid || "";
    for (const value of [node.name, node.version, uptime(node.uptime), node.num_clients || 0,
      node.num_users || 0, node.num_subs || 0, node.num_channels || 0]) {
      row.append(el("td", value));
    }
    return row;
  }));
  const sum = (key) => nodes.reduce((total, node) => total + (node[key] || 0), 0);
  $("total-nodes").textContent = nodes.length;
  $("total-clients").textContent = sum("num_clients");
  $("total-users").textContent = sum("num_users");
  $("total-channels").textContent = sum("num_channels");
  $("total-subs").textContent = sum("num_subs");
  $("nodes-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---- channels ----
$("channel-search").addEventListener("submit", (event) => {
  event.preventDefault();
  loadChannels();
});

async function loadChannels() {
  let result;
  try {
    result = await api("channels", { pattern: $("channel-pattern").value.trim() });
  } catch (error) {
    toast(error.message);
    return;
  }
  const entries = Object.entries(result.channels || {}).sort((a, b) => b[1].num_clients - a[1].num_clients);
  $("channels").tBodies[0].replaceChildren(...entries.map(([name, info]) => {
    const row = el("tr", null, "channel");
    row.dataset.channel = name;
    row.append(el("td", name, "mono"), el("td", info.num_clients || 0));
    row.addEventListener("click", () => showChannel(name));
    return row;
  }));
  $("channels-empty").hidden = entries.length > 0;
}

async function showChannel(name) {
  channelShown = name;
  $("channel-detail").hidden = false;
  $("channel-title").textContent = name;
  $("channel-publish").querySelector(".result").textContent = "";
  const presence = $("channel-presence"), history = $("channel-history");
  presence.replaceChildren(el("li", "…", "muted"));
  history.replaceChildren(el("li", "…", "muted"));
  api("presence", { channel: name }).then((result) => {
    const members = Object.values(result.presence || {});
    presence.replaceChildren(...members.map((m) => el("li", `${m.user || "(anonymous)"} · ${m.client}`)));
    if (!members.length) presence.replaceChildren(el("li", "nobody", "muted"));
  }).catch((error) => presence.replaceChildren(el("li", error.message, "muted")));
  api("history", { channel: name, limit: 20, reverse: true }).then((result) => {
    const pubs = result.publications || [];
    history.replaceChildren(...pubs.map((p) => el("li", `#${p.offset || "-"} ${JSON.stringify(p.data)}`, "mono")));
    if (!pubs.length) history.replaceChildren(el("li", "empty", "muted"));
  }).catch((error) => history.replaceChildren(el("li", error.message, "muted")));
}
$("channel-refresh").addEventListener("click", () => channelShown && showChannel(channelShown));
$("channel-trace").addEventListener("click", () => {
  $("trace-kind").value = "channel";
  $("trace-target").value = channelShown;
  show("trace");
  startTrace();
});
$("channel-publish").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  showResult(form, (async () => {
    const data = json($("channel-publish-data").value, "data");
    return api("publish", { channel: channelShown, data });
  })(), (r) => `published at offset ${r.offset ?? "-"}`);
});

// ---- connections ----
$("connections-search").addEventListener("submit", (event) => {
  event.preventDefault();
  loadConnections($("connections-user").value.trim());
});

async function loadConnections(user) {
  connectionsUser = user;
  $("connections-disconnect-user").disabled = !user;
  let result;
  try {
    result = await api("connections", user ? { user } : {});
  } catch (error) {
    toast(error.message);
    return;
  }
  const entries = Object.entries(result.connections || {});
  $("connections").tBodies[0].replaceChildren(...entries.map(([client, info]) => {
    const row = el("tr", null, "connection");
    row.dataset.client = client;
    const actions = el("td");
    const cut = el("button", "Disconnect", "danger disconnect");
    cut.addEventListener("click", () => act(api("disconnect", { user: info.user, client }), "disconnected"));
    actions.append(cut);
    if ((info.channels || []).length) {
      const pick = el("select");
      pick.setAttribute("aria-label", "Channel");
      for (const channel of info.channels) pick.append(el("option", channel));
      const leave = el("button", "Unsubscribe", "unsubscribe");
      leave.addEventListener("click", () => act(
        api("unsubscribe", { user: info.user, channel: pick.value, client }), `unsubscribed from ${pick.value}`));
      actions.append(" ", pick, " ", leave);
    }
    row.append(el("td", client, "mono"), el("td", info.user || "(anonymous)"), el("td", info.addr),
      el("td", [info.app_name, info.app_version].filter(Boolean).join(" ")),
      el("td", `${nodeName(info.node)} · ${info.transport || "websocket"}`),
      el("td", (info.channels || []).join(", ")), actions);
    return row;
  }));
  $("connections-empty").hidden = entries.length > 0;
}

function act(promise, done) {
  promise.then(() => {
    toast(done);
    setTimeout(() => loadConnections(connectionsUser || ""), 300);
  }).catch((error) => toast(error.message));
}
$("connections-disconnect-user").addEventListener("click", () => {
  if (connectionsUser) act(api("disconnect", { user: connectionsUser }), `${connectionsUser} disconnected`);
});

// ---- actions ----
$("publish-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showResult(event.target, (async () => api("publish", {
    channel: $("publish-channel").value.trim(),
    data: json($("publish-data").value, "data"),
  }))(), (r) => `published${r.offset ? ` at offset ${r.offset}` : ""}`);
});
$("broadcast-form").addEventListener("submit", (event) => {
  event.preventDefault();
  showResult(event.target, (async () => api("broadcast", {
    channels: $("broadcast-channels").value.split(/[\s,]+/).filter(Boolean),
    data: json($("broadcast-data").value, "data"),
  }))(), (r) => {
    const failed = (r.responses || []).filter((x) => x.error).length;
    return failed ? `${failed} channel(s) failed` : `sent to ${(r.responses || []).length} channel(s)`;
  });
});
$("disconnect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = { user: $("disconnect-user").value.trim() };
  const client = $("disconnect-client").value.trim();
  if (client) params.client = client;
  showResult(event.target, api("disconnect", params), () => "disconnected");
});
$("unsubscribe-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = { user: $("unsubscribe-user").value.trim(), channel: $("unsubscribe-channel").value.trim() };
  const client = $("unsubscribe-client").value.trim();
  if (client) params.client = client;
  showResult(event.target, api("unsubscribe", params), () => "unsubscribed");
});

// ---- live trace ----
$("trace-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startTrace();
});
$("trace-stop").addEventListener("click", () => stopTrace("stopped"));
$("trace-clear").addEventListener("click", () => $("trace-events").replaceChildren());

function startTrace() {
  stopTrace();
  const kind = $("trace-kind").value, target = $("trace-target").value.trim();
  if (!target) return;
  const url = new URL("trace", document.baseURI);
  url.searchParams.set(kind, target);
  if (token) url.searchParams.set("token", token);
  trace = new EventSource(url);
  $("trace-status").textContent = `connecting to the ${kind} ${target}…`;
  $("trace-start").disabled = true;
  $("trace-stop").disabled = false;
  trace.onmessage = (message) => addTraceEvent(JSON.parse(message.data));
  trace.addEventListener("error", (message) => {
    if (message.data) $("trace-status").textContent = `trace refused: ${message.data}`;
  });
  trace.onerror = () => {
    if (trace && trace.readyState === EventSource.CLOSED) stopTrace("the server ended the trace");
    else $("trace-status").textContent = "reconnecting…";
  };
}

function stopTrace(status = "") {
  if (trace) trace.close();
  trace = null;
  $("trace-start").disabled = false;
  $("trace-stop").disabled = true;
  if (status) $("trace-status").textContent = status;
}

function summary(event) {
  switch (event.kind) {
    case "tracing": return `tracing ${event.channel ? `channel ${event.channel}` : `user ${event.user}`} on node ${event.node}`;
    case "publication": {
      const pub = (event.message && event.message.push && event.message.push.pub) || {};
      return `#${pub.offset || "-"} ${JSON.stringify(pub.data)}${pub.info ? ` from ${pub.info.user || pub.info.client}` : ""}`;
    }
    case "join": case "leave": {
      const push = (event.message && event.message.push) || {};
      const info = (push[event.kind] && push[event.kind].info) || {};
      return `${info.user || "(anonymous)"} · ${info.client || ""}`;
    }
    case "connect": return `${event.client} from ${event.addr}${event.name ? ` (${event.name} ${event.version || ""})` : ""}`;
    case "disconnect": return `${event.client}: ${event.code} ${event.reason} by ${event.by}${event.detail ? ` (${event.detail})` : ""}`;
    case "command": return `${event.method}${event.error ? ` → error ${event.error}` : ""} · ${event.ms} ms · ${JSON.stringify(event.command)}`;
    case "dropped": return `${event.count} events dropped: the page did not keep up`;
    default: return JSON.stringify(event);
  }
}

function addTraceEvent(event) {
  if (event.kind === "tracing") $("trace-status").textContent = "tracing: events appear as they happen";
  const list = $("trace-events");
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const item = el("li", null, "trace-event");
  item.dataset.kind = event.kind;
  const time = new Date((event.time || Date.now() / 1000) * 1000);
  item.append(el("span", time.toLocaleTimeString(), "time"), el("span", event.kind, `kind ${event.kind}`),
    el("span", event.node && event.kind !== "tracing" ? nodeName(event.node) : "", "node"),
    el("pre", summary(event)));
  list.append(item);
  while (list.children.length > 2000) list.firstChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

start();
