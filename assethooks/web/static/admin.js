// The Webhooks page. Served by the app: the Content-Security-Policy allows no inline script.
"use strict";
const $ = (selector) => document.querySelector(selector);
let editing = null;

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
  ({ webhooks: loadWebhooks, logs: loadLogs, dlq: loadDlq })[view]().catch(complain);
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
  const { webhooks } = await api("GET", "/api/webhooks");
  const body = $("#webhooks tbody");
  body.replaceChildren();
  for (const webhook of webhooks) {
    const row = body.insertRow();
    cell(row, webhook.name);
    cell(row, webhook.url);
    cell(row, webhook.events === "all" ? "all" : webhook.events.join(", "));
    cell(row, webhook.active ? "active" : "inactive" + (webhook.disabled_reason ? ` (${webhook.disabled_reason})` : ""),
         webhook.active ? "ok" : "failed");
    const actions = row.insertCell();
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
      say(`Deleted webhook ${webhook.name}`);
      await loadWebhooks();
    });
  }
}

function openForm(webhook) {
  editing = webhook;
  const form = $("#webhook-form");
  form.reset();
  $("#form-title").textContent = webhook ? `Edit ${webhook.name}` : "New Webhook";
  $("#f-name").value = webhook ? webhook.name : "";
  $("#f-url").value = webhook ? webhook.url : "";
  $("#f-active").checked = webhook ? webhook.active : true;
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
  return body;
}

async function save(event) {
  event.preventDefault();
  const body = formBody();
  const saved = editing
    ? await api("PATCH", `/api/webhooks/${editing.id}`, body)
    : await api("POST", "/api/webhooks", body);
  $("#webhook-form").classList.add("hidden");
  say(`Saved webhook ${saved.webhook.name}` + saved.warnings.map((warning) => ` — Warning: ${warning}`).join(""));
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

async function loadLogs() {
  const form = $("#log-filters");
  const query = new URLSearchParams();
  for (const name of ["webhook_id", "event", "status", "since"]) {
    if (form[name].value) query.set(name, form[name].value);
  }
  const { attempts } = await api("GET", `/api/logs?${query}`);
  const body = $("#logs tbody");
  body.replaceChildren();
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
loadEvents().then(loadWebhooks).catch(complain);
