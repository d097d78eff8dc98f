// Overview: the nodes and their health, and live charts of produce/consume rates (records/s
// and bytes/s, from the same counters as /metrics) and processor throughput and lag. A
// sampler runs while the console is open and keeps the last minutes, so the charts are
// full when the user comes back to this page.

import { api, text, seg } from "./api.js";
import { LineChart } from "./chart.js";
import { h, fill, table, errorBox, every, formatRate, formatTime, link } from "./ui.js";

const PERIOD_MS = 2000;
const WINDOW_MS = 5 * 60 * 1000;
/// Processors whose task counters are sampled (one describe each per period).
const MAX_SAMPLED_PROCESSORS = 20;

const samples = []; // {t, produced, consumed, producedBytes, consumedBytes, processed, lag}
let rates = []; // {t, values: [...]} per chart, derived from samples
let sampling = false;
let lastError = null;
const listeners = new Set();

/// Sums each counter of the OpenMetrics text over its labels; `byTopic[name][topic]` keeps
/// the per-topic values.
export function parseMetrics(body) {
  const sums = {};
  const byTopic = {};
  for (const line of body.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)/);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    sums[m[1]] = (sums[m[1]] || 0) + v;
    const topic = m[2] && m[2].match(/topic="((?:[^"\\]|\\.)*)"/);
    if (topic) (byTopic[m[1]] = byTopic[m[1]] || {})[topic[1]] = v;
  }
  return { sums, byTopic };
}

/// Topics by records/s between two samples, busiest first.
function topicRates(a, b) {
  const dt = (b.t - a.t) / 1000;
  const rate = (x, y) => Math.max(0, (y || 0) - (x || 0)) / dt;
  const out = [];
  for (const topic of new Set([...Object.keys(b.appended), ...Object.keys(b.read)])) {
    const produced = rate(a.appended[topic], b.appended[topic]);
    const consumed = rate(a.read[topic], b.read[topic]);
    if (produced > 0 || consumed > 0) out.push({ topic, produced, consumed });
  }
  return out.sort((x, y) => y.produced + y.consumed - (x.produced + x.consumed));
}

async function sample() {
  const { sums: metrics, byTopic } = parseMetrics(await text("/metrics"));
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
    appended: byTopic.weir_topic_records_appended_total || {},
    read: byTopic.weir_topic_records_read_total || {},
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
  const topicTable = h("div", { id: "topic-rates" });
  fill(
    main,
    h("h1", {}, "Overview ", health),
    status,
    h("section", {}, h("h2", {}, "Nodes"), nodesSlot),
    h("section", { class: "charts" }, records.el, bytes.el, procs.el),
    h("section", {}, h("h2", {}, "Busiest topics now"), topicTable),
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
    if (samples.length >= 2) {
      const busiest = topicRates(samples[samples.length - 2], last).slice(0, 10);
      fill(topicTable, busiest.length === 0
        ? h("p", { class: "muted" }, "No records produced or consumed in the last seconds.")
        : table(["Topic", "Produced records/s", "Consumed records/s"], busiest.map((r) => [
            link(`#/topics/${seg(r.topic)}`, r.topic), formatRate(r.produced), formatRate(r.consumed),
          ])));
    }
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
