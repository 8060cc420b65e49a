// The Webhooks page. Served by the app: the Content-Security-Policy allows no inline script.
"use strict";
const $ = (selector) => document.querySelector(selector);
let editing = null;
let healthOf = null;  // the webhook whose health panel is open
let logsCursor = null;  // where the next page of Webhook Logs starts
const SVG = "http://www.w3.org/2000/svg";

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { "X-Requested-With": "assethooks" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const answer = await fetch(path, options);
  const data = await answer.json().catch(() => ({}));
  if (answer.status === 401) { location.href = "/login"; }
  if (!answer.ok) { throw new Error(data.error || `HTTP ${answer.status}`); }
  return data;
}

function say(text) { $("#problem").textContent = ""; $("#message").textContent = text; }
function complain(error) { $("#message").textContent = ""; $("#problem").textContent = error.message; }

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function button(parent, label, action) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", () => action().catch(complain));
  parent.appendChild(element);
  parent.appendChild(document.createTextNode(" "));
  return element;
}

function show(view) {
  for (const name of ["webhooks", "logs", "dlq"]) {
    $(`#view-${name}`).classList.toggle("hidden", name !== view);
    const tab = document.querySelector(`nav button[data-view=${name}]`);
    if (name === view) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
  }
  ({ webhooks: loadWebhooks, logs: () => loadLogs(false), dlq: loadDlq })[view]().catch(complain);
}

async function loadEvents() {
  const { groups } = await api("GET", "/api/events");
  const holder = $("#event-groups");
  for (const group of groups) {
    const fieldset = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = group.group;
    fieldset.appendChild(legend);
    for (const name of group.events) {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox"; box.name = "event"; box.value = name;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + name));
      fieldset.appendChild(label);
    }
    holder.appendChild(fieldset);
  }
}

async function loadWebhooks() {
  const [{ webhooks }, { health }] = await Promise.all([api("GET", "/api/webhooks"), api("GET", "/api/health")]);
  const healthById = new Map(health.map((item) => [item.webhook_id, item]));
  const body = $("#webhooks tbody");
  body.replaceChildren();
  for (const webhook of webhooks) {
    const row = body.insertRow();
    cell(row, webhook.name);
    cell(row, webhook.url);
    cell(row, webhook.events === "all" ? "all" : webhook.events.join(", "));
    cell(row, webhook.active ? "active" : "inactive" + (webhook.disabled_reason ? ` (${webhook.disabled_reason})` : ""),
         webhook.active ? "ok" : "failed");
    const found = healthById.get(webhook.id);
    cell(row, found ? found.summary : "", found ? `health-${found.state}` : "");
    cell(row, [webhook.filter, webhook.rate_limit].filter(Boolean).join(" · ") || "—");
    const actions = row.insertCell();
    button(actions, "Health", () => openHealth(webhook));
    button(actions, "Edit", async () => openForm(webhook));
    button(actions, "Test Webhook", () => testWebhook(webhook));
    button(actions, webhook.active ? "Disable" : "Enable", async () => {
      await api("POST", `/api/webhooks/${webhook.id}/${webhook.active ? "disable" : "enable"}`);
      say(`Webhook ${webhook.name} is now ${webhook.active ? "inactive" : "active"}`);
      await loadWebhooks();
    });
    button(actions, "Logs", async () => { $("#log-filters").webhook_id.value = webhook.id; show("logs"); });
    button(actions, "Delete", async () => {
      if (!confirm(`Delete webhook ${webhook.name}?`)) return;
      await api("DELETE", `/api/webhooks/${webhook.id}`);
      if (healthOf && healthOf.id === webhook.id) $("#close-health").click();
      say(`Deleted webhook ${webhook.name}`);
      await loadWebhooks();
    });
  }
  if (healthOf) {  // the open panel follows the table
    await openHealth(webhooks.find((webhook) => webhook.id === healthOf.id) || healthOf);
  }
}

async function openHealth(webhook) {
  const { health } = await api("GET", `/api/webhooks/${webhook.id}/health`);
  healthOf = webhook;
  $("#health-title").textContent = `Health of ${webhook.name}`;
  const rate = (window) => window.attempts
    ? `${window.attempts} attempts, ${(100 * window.success_rate).toFixed(1)}% succeeded, mean ${window.mean_ms} ms`
    : "no attempts";
  const last = health.last_attempt;
  const facts = {
    "Health": health.summary,
    "Last hour": rate(health.last_hour),
    "Last 24 hours": rate(health.last_day),
    "Last attempt": last
      ? `${last.at.replace("T", " ").slice(0, 19)} — ${last.success ? "ok" : "failed"} ${last.status_code ?? "no answer"} in ${Math.round(last.duration_ms)} ms`
      : "none",
    "Failing since": health.failing_since ? health.failing_since.replace("T", " ").slice(0, 19) : "—",
    "Circuit": health.circuit + (health.circuit === "open" ? ` until ${health.circuit_open_until.replace("T", " ").slice(0, 19)}` : ""),
    "Waiting for a retry": String(health.retrying),
    "Dead letters": String(health.dead_letters),
    "Filter": webhook.filter || "none: every subscribed event",
    "Rate limit": webhook.rate_limit || "none",
  };
  if (webhook.public_key) facts["Public key"] = webhook.public_key;  // not a secret: receivers verify with it
  if (webhook.previous_public_key) facts["Previous public key"] = `${webhook.previous_public_key} (signs too until ${webhook.previous_secret_until})`;
  const list = $("#health-facts");
  list.replaceChildren();
  for (const [name, value] of Object.entries(facts)) {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    detail.dataset.fact = name;
    list.append(term, detail);
  }
  $("#health-chart").replaceChildren(chart(health.hours));
  $("#rotated").classList.add("hidden");
  $("#health-panel").classList.remove("hidden");
}

// Attempts per hour as stacked bars (succeeded below, failed above), drawn here: no library, no CDN.
function chart(hours) {
  const width = 24 * 20 + 12, height = 100, top = 10, bottom = 16;  // room for the last hour's label
  const busiest = Math.max(1, ...hours.map((hour) => hour.succeeded + hour.failed));
  const scale = (count) => (height - top - bottom) * count / busiest;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "attempts per hour over the last 24 hours");
  const shape = (name, attributes) => {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    svg.appendChild(element);
    return element;
  };
  shape("line", { class: "axis", x1: 0, x2: 24 * 20, y1: height - bottom, y2: height - bottom });
  hours.forEach((hour, index) => {
    const x = index * 20 + 3;
    const okHeight = scale(hour.succeeded), failedHeight = scale(hour.failed);
    const label = `${hour.start.slice(11, 13)}:00 — ${hour.succeeded} succeeded, ${hour.failed} failed`;
    for (const [kind, count, y, tall] of [
      ["ok", hour.succeeded, height - bottom - okHeight, okHeight],
      ["failed", hour.failed, height - bottom - okHeight - failedHeight, failedHeight],
    ]) {
      if (!count) continue;
      const bar = shape("rect", { class: `bar-${kind}`, x, y, width: 14, height: tall, "data-hour": hour.start, "data-count": count });
      const title = document.createElementNS(SVG, "title");
      title.textContent = label;
      bar.appendChild(title);
    }
    if (index % 6 === 0 || index === 23) {
      shape("text", { class: "tick", x, y: height - 4 }).textContent = hour.start.slice(11, 13) + "h";
    }
  });
  return svg;
}

async function rotateSecret() {
  const webhook = healthOf;
  const pair = webhook.signature === "standard-ed25519";  // a new key pair: only its public key is shown
  const what = pair ? "key" : "secret";
  const grace = prompt(`Rotate the ${what} of ${webhook.name}: how long may the old ${what} keep signing too?`, "24h");
  if (grace === null) return;
  if (!confirm(`Make a new ${what} for ${webhook.name}? Its receiver must learn it within ${grace}.`)) return;
  const asked = pair ? { generate_key: true, grace } : { generate_secret: true, grace };
  const answer = await api("POST", `/api/webhooks/${webhook.id}/rotate-secret`, asked);
  if (pair) await openHealth(answer.webhook);  // its facts show both public keys
  const shown = $("#rotated");
  shown.textContent = (pair
    ? `New public key (give it to the receiver): ${answer.webhook.public_key}`
    : `New secret (shown once, give it to the receiver): ${answer.secret}`) +
    (answer.previous_secret_until ? ` — the old one signs too until ${answer.previous_secret_until}` : "");
  shown.classList.remove("hidden");
  say(`Rotated the ${what} of ${webhook.name}`);
}

async function purgeLogs() {
  const age = prompt("Delete the delivery-log entries older than (e.g. 30d, 12h):", "30d");
  if (age === null) return;
  if (!confirm(`Delete every delivery-log entry older than ${age}? This cannot be undone.`)) return;
  const report = await api("POST", "/api/logs/purge", { older_than: age });
  say(`Purged ${report.purged} entries older than ${report.cutoff}`);
  await loadLogs();
}

function openForm(webhook) {
  editing = webhook;
  const form = $("#webhook-form");
  form.reset();
  $("#form-title").textContent = webhook ? `Edit ${webhook.name}` : "New Webhook";
  $("#f-name").value = webhook ? webhook.name : "";
  $("#f-url").value = webhook ? webhook.url : "";
  $("#f-active").checked = webhook ? webhook.active : true;
  $("#f-rate-limit").value = webhook && webhook.rate_limit ? webhook.rate_limit : "";
  $("#f-filter").value = webhook && webhook.filter ? webhook.filter : "";
  $("#f-signature").value = webhook ? webhook.signature : "seed";
  const chosen = webhook && webhook.events !== "all" ? new Set(webhook.events) : new Set();
  const all = Boolean(webhook && webhook.events === "all");
  $("#f-all-events").checked = all;
  for (const box of form.querySelectorAll("input[name=event]")) { box.checked = all || chosen.has(box.value); }
  form.classList.remove("hidden");
  $("#f-name").focus();
}

function formBody() {
  const form = $("#webhook-form");
  const events = [...form.querySelectorAll("input[name=event]:checked")].map((box) => box.value);
  const body = {
    name: $("#f-name").value,
    url: $("#f-url").value,
    events: $("#f-all-events").checked ? "all" : events,
    active: $("#f-active").checked,
    rate_limit: $("#f-rate-limit").value,  // empty: none
    filter: $("#f-filter").value,
  };
  const headers = {};
  const lines = $("#f-headers").value.split("\n").filter((line) => line.trim());
  for (const line of lines) {
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`header '${line}' must look like 'Name: value'`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  if (lines.length || !editing) body.headers = headers;
  if ($("#f-no-secret").checked) body.secret = null;
  else if ($("#f-secret").value) body.secret = $("#f-secret").value;
  if (!editing || $("#f-signature").value !== editing.signature) body.signature = $("#f-signature").value;
  if ($("#f-generate-key").checked) body.generate_key = true;
  return body;
}

async function save(event) {
  event.preventDefault();
  const body = formBody();
  const saved = editing
    ? await api("PATCH", `/api/webhooks/${editing.id}`, body)
    : await api("POST", "/api/webhooks", body);
  $("#webhook-form").classList.add("hidden");
  const key = saved.webhook.public_key ? ` — public key (give it to the receiver): ${saved.webhook.public_key}` : "";
  say(`Saved webhook ${saved.webhook.name}` + key + saved.warnings.map((warning) => ` — Warning: ${warning}`).join(""));
  editing = null;
  await loadWebhooks();
}

async function testWebhook(webhook) {
  say(`Sending a test payload to ${webhook.name}…`);
  const result = await api("POST", `/api/webhooks/${webhook.id}/test`);
  const holder = $("#test-result");
  holder.replaceChildren();
  const line = document.createElement("p");
  line.className = result.ok ? "ok" : "failed";
  const code = result.status_code === null ? "no answer" : `HTTP ${result.status_code}`;
  line.textContent = `Test Webhook ${webhook.name}: ${code} in ${Math.round(result.duration_ms)} ms` +
    (result.error ? ` — ${result.error}` : "") + ` (delivery ${result.delivery_id})`;
  holder.appendChild(line);
  say(result.ok ? "Test delivered" : "Test failed");
}

// The first page of Webhook Logs, or with `more` the next one (a cursor: pages stay right while rows arrive).
async function loadLogs(more) {
  const form = $("#log-filters");
  const query = new URLSearchParams();
  for (const name of ["webhook_id", "event", "status", "since"]) {
    if (form[name].value) query.set(name, form[name].value);
  }
  if (more && logsCursor) query.set("cursor", logsCursor);
  const { attempts, next_cursor } = await api("GET", `/api/logs?${query}`);
  logsCursor = next_cursor;
  $("#older-logs").classList.toggle("hidden", !next_cursor);
  const body = $("#logs tbody");
  if (!more) body.replaceChildren();
  for (const attempt of attempts) {
    const row = body.insertRow();
    cell(row, attempt.created_at.replace("T", " ").slice(0, 19));
    cell(row, attempt.webhook_id);
    cell(row, attempt.event);
    cell(row, attempt.attempt);
    cell(row, attempt.status_code);
    cell(row, attempt.success ? "ok" : "failed", attempt.success ? "ok" : "failed");
    cell(row, Math.round(attempt.duration_ms));
    cell(row, attempt.error);
    const actions = row.insertCell();
    if (!attempt.success && attempt.source_topic) {
      button(actions, "Retry", async () => {
        const report = await api("POST", "/api/logs/retry", { ids: [attempt.id] });
        const skipped = report.skipped.map((item) => item.reason).join("; ");
        say(report.queued.length ? `Queued delivery ${report.queued[0]} for another attempt` : `Not retried: ${skipped}`);
      });
    }
  }
}

async function loadDlq() {
  const { entries } = await api("GET", "/api/dlq");
  const body = $("#dlq tbody");
  body.replaceChildren();
  for (const entry of entries) {
    const row = body.insertRow();
    cell(row, entry.id);
    cell(row, entry.dead_at.replace("T", " ").slice(0, 19));
    cell(row, entry.kind);
    cell(row, entry.webhook_id);
    cell(row, entry.event);
    cell(row, entry.reason);
    const actions = row.insertCell();
    button(actions, "Replay", async () => {
      const report = await api("POST", "/api/dlq/replay", { ids: [entry.id] });
      say(`Replayed ${report.replayed.length} entries, ${report.missing.length} missing from the topic`);
      await loadDlq();
    });
    button(actions, "Purge", async () => {
      if (!confirm(`Purge dead letter ${entry.id} without sending it?`)) return;
      const report = await api("POST", "/api/dlq/purge", { ids: [entry.id] });
      say(`Purged ${report.purged.length} entries`);
      await loadDlq();
    });
  }
}

for (const tab of document.querySelectorAll("nav button")) {
  tab.addEventListener("click", () => show(tab.dataset.view));
}
$("#new-webhook").addEventListener("click", () => openForm(null));
$("#cancel").addEventListener("click", () => { $("#webhook-form").classList.add("hidden"); editing = null; });
$("#webhook-form").addEventListener("submit", (event) => save(event).catch(complain));
$("#f-all-events").addEventListener("change", (event) => {
  for (const box of document.querySelectorAll("input[name=event]")) box.checked = event.target.checked;
});
$("#event-groups").addEventListener("change", (event) => {
  if (!event.target.checked) $("#f-all-events").checked = false;  // one event off: no longer "all"
});
$("#log-filters").addEventListener("submit", (event) => { event.preventDefault(); loadLogs().catch(complain); });
$("#older-logs").addEventListener("click", () => loadLogs(true).catch(complain));
$("#purge-logs").addEventListener("click", () => purgeLogs().catch(complain));
$("#rotate-secret").addEventListener("click", () => rotateSecret().catch(complain));
$("#close-health").addEventListener("click", () => { $("#health-panel").classList.add("hidden"); healthOf = null; });
loadEvents().then(loadWebhooks).catch(complain);
