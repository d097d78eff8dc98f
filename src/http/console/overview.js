// Overview: the nodes and their health, and live charts of produce/consume rates (records/s
// and bytes/s, from the same counters as /metrics) and processor throughput and lag. A
// sampler runs while the console is open and keeps the last minutes, so the charts are
// full when the user comes back to this page.

import { api, text, seg } from "./api.js";
import { LineChart } from "./chart.js";
import { h, fill, table, errorBox, every, formatTime, link } from "./ui.js";

const PERIOD_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;
/// Processors whose task counters are sampled (one describe each per period).
const MAX_SAMPLED_PROCESSORS = 20;

const samples = []; // {t, produced, consumed, producedBytes, consumedBytes, processed, lag}
let rates = []; // {t, values: [...]} per chart, derived from samples
let sampling = false;
let lastError = null;
const listeners = new Set();

/// Sums each counter of the OpenMetrics text over its labels.
export function parseMetrics(body) {
  const sums = {};
  for (const line of body.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)/);
    if (!m) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) sums[m[1]] = (sums[m[1]] || 0) + v;
  }
  return sums;
}

async function sample() {
  const metrics = parseMetrics(await text("/metrics"));
  const list = await api("GET", "/v1/processors");
  let processed = 0;
  let lag = 0;
  for (const p of list.processors) lag += Math.max(0, p.lag);
  for (const p of list.processors.slice(0, MAX_SAMPLED_PROCESSORS)) {
    try {
      const d = await api("GET", `/v1/processors/${seg(p.name)}`);
      for (const t of d.tasks) processed += t.records_in;
    } catch (_) {
      // deleted meanwhile
    }
  }
  const s = {
    t: Date.now(),
    produced: metrics.weir_topic_records_appended_total || 0,
    producedBytes: metrics.weir_topic_bytes_appended_total || 0,
    consumed: metrics.weir_topic_records_read_total || 0,
    consumedBytes: metrics.weir_topic_bytes_read_total || 0,
    processed,
    lag,
    processors: list.processors,
  };
  samples.push(s);
  while (samples.length && samples[0].t < s.t - WINDOW_MS - PERIOD_MS) samples.shift();
  rates = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = (b.t - a.t) / 1000;
    // A counter that went down (a restart, a deleted topic) restarts from zero.
    const r = (k) => Math.max(0, b[k] - a[k]) / dt;
    rates.push({
      t: b.t,
      records: [r("produced"), r("consumed")],
      bytes: [r("producedBytes"), r("consumedBytes")],
      processors: [r("processed"), b.lag],
    });
  }
}

/// Starts the background sampler (once); it stops on 401 and starts again after a login.
export function startSampling() {
  if (sampling) return;
  sampling = true;
  const tick = async () => {
    try {
      await sample();
      lastError = null;
    } catch (e) {
      lastError = e;
      if (e.status === 401) {
        sampling = false;
        return;
      }
    }
    for (const f of listeners) f();
    setTimeout(tick, PERIOD_MS);
  };
  tick();
}

export async function render(main, ctx) {
  startSampling();
  const nodesSlot = h("div", { id: "nodes" });
  const health = h("span", { class: "badge", id: "health" }, "…");
  const records = new LineChart("Records per second", [{ name: "produced" }, { name: "consumed" }], WINDOW_MS, "/s");
  const bytes = new LineChart("Bytes per second", [{ name: "produced" }, { name: "consumed" }], WINDOW_MS, " B/s");
  const procs = new LineChart("Processors", [{ name: "processed/s" }, { name: "lag" }], WINDOW_MS, "");
  records.el.id = "chart-records";
  const status = h("div", { class: "slot" });
  const procTable = h("div", { id: "processor-summary" });
  fill(
    main,
    h("h1", {}, "Overview ", health),
    status,
    h("section", {}, h("h2", {}, "Nodes"), nodesSlot),
    h("section", { class: "charts" }, records.el, bytes.el, procs.el),
    h("section", {}, h("h2", {}, "Processors"), procTable),
  );
  const draw = () => {
    if (!ctx.isCurrent()) {
      listeners.delete(draw);
      return;
    }
    records.draw(rates.map((p) => ({ t: p.t, values: p.records })));
    bytes.draw(rates.map((p) => ({ t: p.t, values: p.bytes })));
    procs.draw(rates.map((p) => ({ t: p.t, values: p.processors })));
    if (lastError) fill(status, errorBox(lastError));
    else status.replaceChildren();
    const last = samples[samples.length - 1];
    if (last) {
      fill(
        procTable,
        last.processors.length === 0
          ? h("p", { class: "muted" }, "No processors. ", link("#/processors", "Deploy one"), ".")
          : table(
              ["Processor", "Status", "Tasks running", "Failed", "Lag"],
              last.processors.map((p) => [
                link(`#/processors/${seg(p.name)}`, p.name),
                h("span", { class: `badge ${p.status}` }, p.status),
                String(p.tasks_running),
                String(p.tasks_failed),
                String(p.lag),
              ]),
            ),
      );
    }
  };
  listeners.add(draw);
  draw();
  const nodes = async () => {
    try {
      await api("GET", "/health");
      health.textContent = "healthy";
      health.className = "badge running";
    } catch (e) {
      health.textContent = "unreachable";
      health.className = "badge failed";
    }
    try {
      const c = await api("GET", "/v1/cluster");
      const controller = c.metadata ? c.metadata.controller : null;
      fill(
        nodesSlot,
        h("p", { class: "muted", id: "cluster-facts" }, `Mode: ${c.mode}`, c.cluster_id ? `, cluster ${c.cluster_id}` : "",
          c.metadata
            ? `; metadata quorum: controller ${controller === null ? "unknown" : `node ${controller}`}, this node ${c.metadata.role}, ` +
              `term ${c.metadata.term}, applied index ${c.metadata.applied_index ?? "–"}, voters ${c.metadata.voters.join(", ")}`
            : ""),
        table(
          ["Node", "Cluster address", "Version", "Reachable", "Last seen", "Registered"],
          c.nodes.map((n) => [
            `${n.id}${n.self ? " (this node)" : ""}`,
            n.address || "–",
            n.version || "–",
            n.reachable || n.self
              ? h("span", { class: "badge running" }, "yes")
              : h("span", { class: "badge failed", title: n.error || "" }, "no"),
            n.last_seen_ms ? formatTime(n.last_seen_ms) : "–",
            n.registered === null || n.registered === undefined ? "–" : n.registered ? "yes" : "no",
          ]),
          { id: "nodes-table" },
        ),
      );
    } catch (e) {
      if (e.status !== 401) fill(nodesSlot, errorBox(e));
    }
  };
  await nodes();
  every(5000, ctx.isCurrent, nodes);
}
