// Processors: the list; deploy by dropping a .wasm (or the file picker) with a form for the
// spec; a processor's page with per-task state, lag, errors with the failing offset and
// restore progress, pause/resume/delete, a state-store browser (look up a key, scan a prefix
// page by page) and its dead-letter topic.

import { api, upload, seg } from "./api.js";
import {
  h, fill, table, errorBox, showError, showOk, field, formatBytes, formatTime, confirmAction,
  renderField, every, link,
} from "./ui.js";

const REFRESH_MS = 2000;

function names(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/// `key=value` lines → an object (values stay strings; the server accepts them).
function configOf(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t || t.startsWith("#")) continue;
    const eq = t.indexOf("=");
    if (eq <= 0) throw { code: "invalid_spec", message: `config line "${t}" is not key=value` };
    out[t.slice(0, eq).trim()] = t.slice(eq + 1).trim();
  }
  return out;
}

/// The deploy form; with `current` (a processor's description) it redeploys that processor
/// (`PUT`, the name fixed, the fields filled from its spec).
function deployForm(onDeployed, current) {
  const status = h("div", { class: "slot", id: "deploy-status" });
  const file = h("input", { type: "file", name: "wasm", id: "deploy-file", accept: ".wasm,application/wasm" });
  const chosen = h("span", { class: "muted", id: "deploy-chosen" }, "no file chosen");
  let module = null;
  const choose = (f) => {
    module = f;
    chosen.textContent = f ? `${f.name} (${formatBytes(f.size)})` : "no file chosen";
    if (f && !name.value) name.value = f.name.replace(/\.wasm$/, "").replace(/[^A-Za-z0-9_-]/g, "-");
  };
  file.addEventListener("change", () => choose(file.files[0] || null));
  const drop = h("div", { class: "drop", id: "deploy-drop", tabindex: 0, role: "button",
    "aria-label": "Drop a .wasm file here or press Enter to choose one" },
    "Drop a .wasm component here, or ", h("label", { for: "deploy-file", class: "linklike" }, "choose a file"), ". ", chosen, file);
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      file.click();
    }
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });
  const name = h("input", { name: "name", id: "deploy-name", required: true, pattern: "[A-Za-z0-9_\\-]+", maxlength: 100 });
  const inputs = h("input", { name: "inputs", id: "deploy-inputs", required: true, placeholder: "text" });
  const outputs = h("input", { name: "outputs", id: "deploy-outputs", placeholder: "counts" });
  const config = h("textarea", { name: "config", id: "deploy-config", rows: 2, placeholder: "key=value per line" });
  const onError = h("select", { name: "on_error", id: "deploy-on-error" },
    h("option", { value: "fail" }, "fail (stop the task)"),
    h("option", { value: "skip" }, "skip the record"),
    h("option", { value: "dead_letter" }, "dead-letter topic"));
  const start = h("select", { name: "start", id: "deploy-start" },
    h("option", { value: "earliest" }, "earliest"), h("option", { value: "latest" }, "latest"));
  const memory = h("input", { name: "memory", type: "number", min: 1, placeholder: "64" });
  const cpu = h("input", { name: "cpu", type: "number", min: 1, placeholder: "5000" });
  const commit = h("input", { name: "commit", id: "deploy-commit", type: "number", min: 1, placeholder: "500" });
  if (current) {
    const spec = current.spec;
    name.value = spec.name;
    name.readOnly = true;
    inputs.value = spec.inputs.join(", ");
    outputs.value = spec.outputs.join(", ");
    config.value = Object.entries(spec.config || {}).map(([k, v]) => `${k}=${v}`).join("\n");
    onError.value = spec.on_error;
    start.value = spec.start;
    commit.value = String(spec.commit_interval_ms);
    memory.value = String(Math.round(spec.limits.memory_bytes / (1024 * 1024)));
    cpu.value = String(spec.limits.cpu_ms_per_call);
  }
  const form = h("form", { id: "deploy" },
    drop,
    h("div", { class: "grid" },
      field("Name", name), field("Inputs", inputs, "topics, comma separated"), field("Outputs", outputs, "topics, comma separated"),
      field("On error", onError), field("Start from", start), field("Commit interval (ms)", commit),
      field("Memory limit (MiB)", memory), field("CPU per call (ms)", cpu)),
    field("Config", config),
    h("button", { type: "submit", class: "primary" }, current ? "Redeploy" : "Deploy"), status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      if (!module) throw { code: "invalid_input", message: "choose a .wasm file first" };
      const spec = {
        ...(current ? current.spec : {}),
        name: name.value.trim(),
        inputs: names(inputs.value),
        outputs: names(outputs.value),
        config: configOf(config.value),
        on_error: onError.value,
        start: start.value,
      };
      if (commit.value) spec.commit_interval_ms = Number(commit.value);
      if (memory.value || cpu.value) {
        // The server wants every limit when limits are given: start from the processor's
        // (or the server's defaults).
        spec.limits = {
          ...(current ? current.spec.limits : {
            max_output_records_per_call: 100000,
            max_output_bytes_per_call: 64 * 1024 * 1024,
            max_module_bytes: 64 * 1024 * 1024,
          }),
          memory_bytes: Number(memory.value || 64) * 1024 * 1024,
          cpu_ms_per_call: Number(cpu.value || 5000),
        };
      }
      const data = new FormData();
      data.append("spec", new Blob([JSON.stringify(spec)], { type: "application/json" }));
      data.append("wasm", module, module.name);
      showOk(status, `Uploading ${module.name}…`);
      const d = current
        ? await upload("PUT", `/v1/processors/${seg(current.name)}`, data)
        : await upload("POST", "/v1/processors", data);
      showOk(status, `${current ? "Redeployed" : "Deployed"} ${d.name} (version ${d.version}).`);
      onDeployed(d.name);
    } catch (err) {
      showError(status, err);
    }
  });
  return form;
}

export async function renderList(main, ctx) {
  const listSlot = h("div", { id: "processors-list" });
  const load = async () => {
    try {
      const list = (await api("GET", "/v1/processors")).processors;
      fill(listSlot, list.length === 0
        ? h("p", { class: "muted" }, "No processors deployed.")
        : table(["Processor", "Status", "Version", "Inputs", "Outputs", "Tasks running", "Failed", "Lag"],
            list.map((p) => [
              link(`#/processors/${seg(p.name)}`, p.name),
              h("span", { class: `badge ${p.status}` }, p.status),
              String(p.version), p.inputs.join(", "), p.outputs.join(", "),
              String(p.tasks_running), String(p.tasks_failed), String(p.lag),
            ]), { id: "processors-table" }));
    } catch (err) {
      if (err.status !== 401) fill(listSlot, errorBox(err));
    }
  };
  fill(main, h("h1", {}, "Processors"), listSlot,
    h("section", {}, h("h2", {}, "Deploy a processor"),
      deployForm((n) => { location.hash = `#/processors/${seg(n)}`; })));
  await load();
  every(REFRESH_MS, ctx.isCurrent, load);
}

/// Store names from the changelog topics `<name>.<store>.changelog`.
function storesOf(d) {
  const prefix = `${d.name}.`;
  return d.topics.changelogs
    .filter((t) => t.startsWith(prefix) && t.endsWith(".changelog"))
    .map((t) => t.slice(prefix.length, -".changelog".length));
}

function taskRow(t) {
  let restore = "";
  if (t.restore) {
    const r = t.restore;
    restore = r.done
      ? h("span", { class: "muted", title: `${r.records} records from ${r.store || "–"}` }, "restored")
      : h("progress", { max: "100", value: String(Math.round(r.percent)), title: `${r.store}: ${Math.round(r.percent)}%` });
  }
  const err = t.last_error
    ? h("span", { class: "error-text" }, `${t.last_error.code}: ${t.last_error.message}`,
        t.last_error.offset !== undefined && t.last_error.offset !== null
          ? ` (offset ${t.last_error.offset}${t.last_error.topic ? ` of ${t.last_error.topic}` : ""})` : "")
    : "";
  return [
    String(t.partition),
    h("span", { class: `badge ${t.state}` }, String(t.state)),
    String(t.lag), String(t.records_in), String(t.records_out), String(t.errors),
    restore, t.last_commit_ms ? formatTime(t.last_commit_ms) : "–", err,
  ];
}

export async function renderProcessor(main, name, ctx) {
  const slot = h("div", { class: "slot", id: "processor-status" });
  const head = h("div", { id: "processor-head" });
  const tasks = h("div", { id: "tasks" });
  const specSlot = h("div");
  const storeSlot = h("div");
  let stores = null;
  let shownVersion = null;
  const action = async (verb) => {
    try {
      await api("POST", `/v1/processors/${seg(name)}/${verb}`);
      showOk(slot, verb === "pause" ? "Paused." : "Resumed.");
      await load();
    } catch (err) {
      showError(slot, err);
    }
  };
  const remove = async () => {
    if (!(await confirmAction(`Delete processor ${name}, its state and its internal topics?`, "Delete processor"))) return;
    try {
      await api("DELETE", `/v1/processors/${seg(name)}`);
      location.hash = "#/processors";
    } catch (err) {
      showError(slot, err);
    }
  };
  const buttons = h("div", { class: "buttons" },
    h("button", { type: "button", id: "pause", onclick: () => action("pause") }, "Pause"),
    h("button", { type: "button", id: "resume", onclick: () => action("resume") }, "Resume"),
    h("button", { type: "button", id: "delete-processor", class: "danger", onclick: remove }, "Delete"));

  const load = async () => {
    let d;
    try {
      d = await api("GET", `/v1/processors/${seg(name)}`);
    } catch (err) {
      if (err.status !== 401) fill(head, errorBox(err));
      return;
    }
    if (!ctx.isCurrent()) return;
    fill(head,
      h("dl", { class: "facts" },
        h("dt", {}, "Status"), h("dd", {}, h("span", { class: `badge ${d.status}`, id: "processor-state" }, d.status)),
        h("dt", {}, "Version"), h("dd", { id: "processor-version" }, String(d.version)),
        h("dt", {}, "Inputs"), h("dd", {}, d.spec.inputs.map((t, i) => [i ? ", " : "", link(`#/topics/${seg(t)}`, t)])),
        h("dt", {}, "Outputs"), h("dd", {}, d.spec.outputs.map((t, i) => [i ? ", " : "", link(`#/topics/${seg(t)}`, t)])),
        h("dt", {}, "Lag"), h("dd", {}, String(d.lag)),
        h("dt", {}, "Module"), h("dd", {}, formatBytes(d.module_bytes)),
        h("dt", {}, "Updated"), h("dd", {}, formatTime(d.updated_ms)),
        d.topics.dead_letter ? [h("dt", {}, "Dead letters"), h("dd", {}, link(`#/topics/${seg(d.topics.dead_letter)}`, d.topics.dead_letter))] : null),
      d.error ? errorBox({ code: "processor_error", message: d.error }) : null);
    buttons.querySelector("#pause").disabled = d.paused;
    buttons.querySelector("#resume").disabled = !d.paused;
    fill(tasks, d.tasks.length === 0
      ? h("p", { class: "muted" }, "No tasks.")
      : table(["Task", "State", "Lag", "Records in", "Records out", "Errors", "Restore", "Last commit", "Last error"],
          d.tasks.map(taskRow), { id: "tasks-table" }));
    if (!specSlot.firstChild || shownVersion !== d.version) {
      shownVersion = d.version;
      fill(specSlot,
        h("details", {}, h("summary", {}, "Spec"), h("pre", { class: "json" }, JSON.stringify(d.spec, null, 2))),
        h("details", { id: "redeploy" }, h("summary", {}, "Redeploy (new module or spec; state and offsets kept)"),
          deployForm(() => load(), d)));
    }
    // The stores appear once the tasks have opened them: redraw when the list changes.
    const now = storesOf(d);
    if (stores === null || now.join("\n") !== stores.join("\n")) {
      stores = now;
      fill(storeSlot, storeBrowser(name, stores));
    }
  };
  fill(main,
    h("p", { class: "crumbs" }, link("#/processors", "Processors"), " / "),
    h("h1", {}, name), slot, head, buttons,
    h("section", {}, h("h2", {}, "Tasks"), tasks),
    h("section", {}, h("h2", {}, "State"), storeSlot),
    specSlot);
  await load();
  every(REFRESH_MS, ctx.isCurrent, load);
}

/// Keys and values from the interactive-query API (`key`/`value` when text, else
/// `key_b64`/`value_b64`), shown as text, JSON or hex of the exact bytes.
function storeCell(text, b64) {
  return renderField(text, b64);
}

const SCAN_PAGE = 50;

function storeBrowser(name, stores) {
  if (stores.length === 0) return h("p", { class: "muted" }, "This processor keeps no state.");
  const store = h("select", { name: "store", id: "store-name" }, stores.map((s) => h("option", { value: s }, s)));
  const key = h("input", { name: "key", id: "store-key", required: true });
  const result = h("div", { id: "store-result" });
  const form = h("form", { id: "store-lookup", class: "inline" },
    field("Key", key), h("button", { type: "submit", class: "primary" }, "Look up"));
  const storeRoot = () => `/v1/processors/${seg(name)}/stores/${seg(store.value)}/keys`;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("GET", `${storeRoot()}/${seg(key.value)}`);
      fill(result, table(["Key", "Value"], [[r.key, storeCell(r.value, r.value_b64)]]));
    } catch (err) {
      if (err.status === 404 && err.code === "key_not_found") fill(result, h("p", { class: "muted" }, `No value for key "${key.value}".`));
      else fill(result, errorBox(err));
    }
  });

  // Prefix scan: pages of SCAN_PAGE entries over every task, "More" follows `next`.
  const prefix = h("input", { name: "prefix", id: "scan-prefix", placeholder: "(all keys)" });
  const scanResult = h("div", { id: "scan-result" });
  const scanStatus = h("p", { class: "muted", id: "scan-status" });
  const more = h("button", { type: "button", id: "scan-more", hidden: true }, "More");
  const scanForm = h("form", { id: "store-scan", class: "inline" },
    field("Key prefix", prefix), h("button", { type: "submit", class: "primary" }, "Scan"));
  let rows = [];
  let next = null;
  const scan = async (fresh) => {
    if (fresh) {
      rows = [];
      next = null;
    }
    const q = new URLSearchParams({ prefix: prefix.value, limit: String(SCAN_PAGE) });
    if (next) q.set("after", next);
    try {
      const page = await api("GET", `${storeRoot()}?${q}`);
      rows = rows.concat(page.entries.map((e) => [storeCell(e.key, e.key_b64), storeCell(e.value, e.value_b64), String(e.partition)]));
      next = page.next;
      fill(scanResult, rows.length === 0
        ? h("p", { class: "muted" }, prefix.value ? `No keys start with "${prefix.value}".` : "The store is empty.")
        : table(["Key", "Value", "Task"], rows, { id: "scan-table" }));
      scanStatus.textContent = rows.length ? `${rows.length} entr${rows.length === 1 ? "y" : "ies"}${next ? ", more to load" : ", all shown"}.` : "";
      more.hidden = !next;
    } catch (err) {
      fill(scanResult, errorBox(err));
      more.hidden = true;
    }
  };
  scanForm.addEventListener("submit", (e) => {
    e.preventDefault();
    scan(true);
  });
  more.addEventListener("click", () => scan(false));
  store.addEventListener("change", () => {
    fill(result);
    fill(scanResult);
    scanStatus.textContent = "";
    more.hidden = true;
  });
  return h("div", {}, h("div", { class: "grid", id: "store-pick" }, field("Store", store)),
    h("h3", {}, "Look up a key"), form, result,
    h("h3", {}, "Scan a prefix"), scanForm, scanResult, scanStatus, more);
}
