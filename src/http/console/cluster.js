// Cluster: the nodes (alive, fenced or draining, voter, controller, replicas held,
// partitions led, replication lag), the metadata quorum, the under-replicated, offline and
// reassigning partitions, retired node ids, and every partition's leader and in-sync set
// (GET /v1/cluster, /v1/cluster/partitions), refreshed every few seconds. A single node says
// so.

import { api, seg } from "./api.js";
import { h, fill, table, errorBox, link, every, formatTime } from "./ui.js";

const REFRESH_MS = 3000;
/// Partitions drawn at most (the rest are counted).
const MAX_PARTITION_ROWS = 1000;

function yesNo(v, yesClass, noClass) {
  if (v === null || v === undefined) return "–";
  return h("span", { class: `badge ${v ? yesClass : noClass}`.trim() }, v ? "yes" : "no");
}

function nodeState(n) {
  if (n.draining && !n.fenced) return h("span", { class: "badge paused", title: "being decommissioned: its replicas are moving to other nodes" }, "draining");
  if (n.fenced) return h("span", { class: "badge failed", title: "fenced: missed its session or shut down" }, "fenced");
  if (n.self || n.reachable) return h("span", { class: "badge running" }, "alive");
  return h("span", { class: "badge failed", title: n.error || "" }, "unreachable");
}

function replicaList(ids, isr) {
  return ids.map((id, i) => [i ? ", " : "", isr && !isr.includes(id) ? h("span", { class: "error-text", title: "not in sync" }, String(id)) : String(id)]);
}

function partitionRows(list, withLeader) {
  return list.map((p) => [
    link(`#/topics/${seg(p.topic)}`, p.topic),
    String(p.partition),
    withLeader ? (p.leader === null ? h("span", { class: "badge failed" }, "none") : `node ${p.leader}`) : null,
    String(p.leader_epoch),
    h("span", {}, replicaList(p.replicas, p.isr)),
    p.isr.join(", ") || "–",
  ].filter((c) => c !== null));
}

export async function render(main, ctx) {
  const facts = h("div", { id: "cluster-summary" });
  const nodesSlot = h("div", { id: "cluster-nodes" });
  const issuesSlot = h("div", { id: "cluster-issues" });
  const partsSlot = h("div", { id: "cluster-partitions" });
  const filter = h("input", { id: "partition-filter", placeholder: "topic contains…" });
  const clustered = h("div", { id: "cluster-details" },
    h("section", {}, h("h2", {}, "Nodes"), nodesSlot),
    h("section", {}, h("h2", {}, "Partition health"), issuesSlot),
    h("section", {}, h("h2", {}, "Partitions"),
      h("div", { class: "grid" }, h("div", { class: "field" }, h("label", { for: "partition-filter" }, "Filter"), filter)),
      partsSlot));
  fill(main, h("h1", {}, "Cluster"), facts, clustered);
  let partitions = [];
  const drawPartitions = () => {
    const f = filter.value.trim();
    const shown = f ? partitions.filter((p) => p.topic.includes(f)) : partitions;
    fill(partsSlot, shown.length === 0
      ? h("p", { class: "muted" }, f ? "No partitions of matching topics." : "No replicated partitions.")
      : [table(["Topic", "Partition", "Leader", "Epoch", "Replicas", "In sync"], partitionRows(shown.slice(0, MAX_PARTITION_ROWS), true), { id: "partitions-map" }),
        shown.length > MAX_PARTITION_ROWS ? h("p", { class: "muted" }, `${shown.length - MAX_PARTITION_ROWS} more not shown; filter by topic.`) : null]);
  };
  filter.addEventListener("input", drawPartitions);

  const load = async () => {
    let c;
    let map;
    try {
      [c, map] = await Promise.all([api("GET", "/v1/cluster"), api("GET", "/v1/cluster/partitions")]);
    } catch (err) {
      if (err.status !== 401) fill(facts, errorBox(err));
      return;
    }
    if (!ctx.isCurrent()) return;
    if (c.mode !== "cluster") {
      fill(facts, h("p", { id: "cluster-mode" }, h("span", { class: "badge" }, "single node"),
        ` This server runs alone (node ${c.node_id}, no --peers or --join): every partition is led here and there is nothing to replicate.`));
      clustered.hidden = true;
      return;
    }
    clustered.hidden = false;
    const m = c.metadata;
    const controller = m ? m.controller : null;
    fill(facts, h("dl", { class: "facts", id: "cluster-mode" },
      h("dt", {}, "Mode"), h("dd", {}, "cluster", c.cluster_id ? ` ${c.cluster_id}` : ""),
      h("dt", {}, "This node"), h("dd", {}, `node ${c.node_id}`, m ? ` (${m.role})` : ""),
      h("dt", {}, "Controller"), h("dd", { id: "cluster-controller" }, controller === null || controller === undefined ? "unknown" : `node ${controller}`),
      m ? [h("dt", {}, "Raft"), h("dd", {}, `term ${m.term}, applied index ${m.applied_index ?? "–"}, metadata version ${m.version}`),
        h("dt", {}, "Voters"), h("dd", {}, m.voters.join(", "))] : null));
    fill(nodesSlot, table(
      ["Node", "State", "Voter", "Controller", "Replicas", "Partitions led", "Replication lag", "Kafka", "HTTP", "Last seen"],
      c.nodes.map((n) => [
        `${n.id}${n.self ? " (this node)" : ""}`,
        nodeState(n),
        yesNo(n.voter, "running", ""),
        n.id === controller ? h("span", { class: "badge running" }, "controller") : "",
        n.replicas === null || n.replicas === undefined ? "–" : String(n.replicas),
        n.partitions_led === null || n.partitions_led === undefined ? "–" : String(n.partitions_led),
        n.replication_lag === null || n.replication_lag === undefined
          ? h("span", { class: "muted", title: "a leader did not report" }, "unknown")
          : h("span", { class: n.replication_lag ? "lag" : "" }, String(n.replication_lag)),
        n.kafka_address || "–",
        n.http_address ? h("code", {}, n.http_address) : "–",
        n.self ? "now" : n.last_seen_ms ? formatTime(n.last_seen_ms) : "–",
      ]),
      { id: "cluster-nodes-table" }));
    const issues = [];
    issues.push(h("h3", {}, `Under-replicated: ${c.under_replicated.length}`));
    if (c.under_replicated.length) {
      issues.push(table(["Topic", "Partition", "Leader", "Epoch", "Replicas", "In sync"], partitionRows(c.under_replicated, true), { id: "under-replicated" }));
    }
    issues.push(h("h3", {}, `Offline (no leader): ${c.offline.length}`));
    if (c.offline.length) {
      issues.push(table(["Topic", "Partition", "Epoch", "Replicas", "In sync"], partitionRows(c.offline, false), { id: "offline" }));
    }
    const moving = c.reassigning || [];
    issues.push(h("h3", {}, `Reassigning: ${moving.length}`));
    if (moving.length) {
      issues.push(table(["Topic", "Partition", "Leader", "Replicas", "In sync", "Adding", "Removing"], moving.map((p) => [
        link(`#/topics/${seg(p.topic)}`, p.topic),
        String(p.partition),
        p.leader === null ? h("span", { class: "badge failed" }, "none") : `node ${p.leader}`,
        h("span", {}, replicaList(p.replicas, p.isr)),
        p.isr.join(", ") || "–",
        p.adding.join(", ") || "–",
        p.removing.join(", ") || "–",
      ]), { id: "reassigning" }));
    }
    if (c.retired && c.retired.length) issues.push(h("p", { class: "muted", id: "retired" }, `Retired node ids (decommissioned, never reused): ${c.retired.join(", ")}.`));
    fill(issuesSlot, issues);
    partitions = map.partitions;
    drawPartitions();
  };
  await load();
  every(REFRESH_MS, ctx.isCurrent, load);
}
