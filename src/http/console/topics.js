// Topics: the list (partitions, size, retention, compaction), create and delete (with a
// confirmation), and a topic's page: per-partition offsets, a record browser (partition,
// offset or time, key filter; JSON pretty-printed, binary as hex) and a form to produce a
// test record.

import { api, seg } from "./api.js";
import {
  h, fill, table, errorBox, showError, showOk, field, formatBytes, formatMs, formatTime,
  confirmAction, renderField, link,
} from "./ui.js";

const PAGE = 50;
/// Topics described for their size on the list page (one request each).
const MAX_SIZED = 200;

export async function renderList(main, ctx) {
  const slot = h("div", { class: "slot", id: "topics-status" });
  const listSlot = h("div", { id: "topics-list" });
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9._\\-]+", maxlength: 249 });
  const partitions = h("input", { name: "partitions", type: "number", min: 1, value: "1", required: true });
  const compacted = h("input", { name: "compacted", type: "checkbox" });
  const retention = h("input", { name: "retention_ms", type: "number", min: -1, placeholder: "server default" });
  const form = h(
    "form",
    { id: "create-topic", class: "inline" },
    field("Name", name),
    field("Partitions", partitions),
    field("Retention (ms)", retention),
    h("div", { class: "field check" }, compacted, h("label", { for: (compacted.id = "f-compacted") }, "Compacted")),
    h("button", { type: "submit", class: "primary" }, "Create topic"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const spec = { name: name.value.trim(), partitions: Number(partitions.value), compacted: compacted.checked };
    if (retention.value !== "") spec.retention_ms = Number(retention.value);
    try {
      await api("POST", "/v1/topics", spec);
      showOk(slot, `Created topic ${spec.name}.`);
      name.value = "";
      await load();
    } catch (err) {
      showError(slot, err);
    }
  });
  const showInternal = h("input", { type: "checkbox", id: "show-internal" });
  showInternal.addEventListener("change", () => load());
  fill(main, h("h1", {}, "Topics"), h("details", { open: true }, h("summary", {}, "Create a topic"), form), slot,
    h("div", { class: "field check" }, showInternal,
      h("label", { for: "show-internal" }, "Show internal topics (processors' changelogs, offsets, repartition; __consumer_offsets)")),
    listSlot);

  const load = async () => {
    let list;
    try {
      list = (await api("GET", "/v1/topics")).topics;
    } catch (err) {
      if (err.status !== 401) fill(listSlot, errorBox(err));
      return;
    }
    if (!ctx.isCurrent()) return;
    const hidden = showInternal.checked ? 0 : list.filter((t) => t.internal).length;
    if (!showInternal.checked) list = list.filter((t) => !t.internal);
    if (list.length === 0) {
      fill(listSlot, h("p", { class: "muted" }, "No topics yet.", hidden ? ` (${hidden} internal topics hidden.)` : ""));
      return;
    }
    const sizes = new Map();
    const rows = list.map((t) => {
      const size = h("span", { class: "size" }, "…");
      sizes.set(t.name, size);
      const del = t.internal
        ? h("span", { class: "muted", title: `owned by ${t.internal.owner}` }, "internal")
        : h("button", { type: "button", class: "danger small", "aria-label": `Delete topic ${t.name}`, onclick: () => remove(t.name) }, "Delete");
      return [
        link(`#/topics/${seg(t.name)}`, t.name),
        String(t.partitions),
        size,
        t.retention_ms === null || t.retention_ms === undefined || t.retention_ms < 0 ? "forever" : formatMs(t.retention_ms),
        t.compacted ? "compacted" : "delete",
        del,
      ];
    });
    fill(listSlot, table(["Topic", "Partitions", "Size", "Retention", "Cleanup", ""], rows, { id: "topics-table" }),
      hidden ? h("p", { class: "muted" }, `${hidden} internal topic(s) hidden.`) : null);
    for (const t of list.slice(0, MAX_SIZED)) {
      if (!ctx.isCurrent()) return;
      try {
        const d = await api("GET", `/v1/topics/${seg(t.name)}`);
        sizes.get(t.name).textContent = formatBytes(d.partition_offsets.reduce((s, p) => s + p.size_bytes, 0));
      } catch (_) {
        sizes.get(t.name).textContent = "–";
      }
    }
  };

  const remove = async (topic) => {
    if (!(await confirmAction(`Delete topic ${topic} and all its records?`, "Delete topic"))) return;
    try {
      await api("DELETE", `/v1/topics/${seg(topic)}`);
      showOk(slot, `Deleted topic ${topic}.`);
    } catch (err) {
      showError(slot, err);
    }
    await load();
  };
  await load();
}

export async function renderTopic(main, name, ctx) {
  const slot = h("div", { class: "slot", id: "topic-status" });
  let d;
  try {
    d = await api("GET", `/v1/topics/${seg(name)}`);
  } catch (err) {
    if (err.status === 401) return;
    fill(main, h("h1", {}, name), errorBox(err), h("p", {}, link("#/topics", "All topics")));
    return;
  }
  const partsSlot = h("div", { id: "partitions" });
  const config = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Partitions"), h("dd", {}, String(d.partitions)),
    h("dt", {}, "Cleanup"), h("dd", {}, d.compacted ? "compacted" : "delete"),
    h("dt", {}, "Retention"), h("dd", {}, d.retention_ms === null || d.retention_ms < 0 ? "forever" : formatMs(d.retention_ms)),
    h("dt", {}, "Retention bytes"), h("dd", {}, d.retention_bytes === null || d.retention_bytes < 0 ? "unlimited" : formatBytes(d.retention_bytes)),
    h("dt", {}, "Segment"), h("dd", {}, `${formatBytes(d.segment_bytes)}, ${formatMs(d.segment_ms)}`),
    h("dt", {}, "fsync"), h("dd", {}, String(d.fsync)),
    d.internal ? [h("dt", {}, "Owner"), h("dd", {}, d.internal.owner)] : null,
  );
  const del = d.internal
    ? null
    : h("button", { type: "button", class: "danger", id: "delete-topic", onclick: async () => {
        if (!(await confirmAction(`Delete topic ${name} and all its records?`, "Delete topic"))) return;
        try {
          await api("DELETE", `/v1/topics/${seg(name)}`);
          location.hash = "#/topics";
        } catch (err) {
          showError(slot, err);
        }
      } }, "Delete topic");

  // Record browser.
  const partition = h("select", { name: "partition", id: "browse-partition" },
    d.partition_offsets.map((p) => h("option", { value: String(p.partition) }, String(p.partition))));
  const from = h("select", { name: "from", id: "browse-from" },
    h("option", { value: "latest" }, "latest records"),
    h("option", { value: "offset" }, "offset"),
    h("option", { value: "time" }, "time"));
  const offset = h("input", { name: "offset", id: "browse-offset", type: "number", min: 0, value: "0" });
  const time = h("input", { name: "time", id: "browse-time", type: "datetime-local", step: 1 });
  const keyFilter = h("input", { name: "key", id: "browse-key", placeholder: "key contains…" });
  const records = h("div", { id: "records" });
  const browseStatus = h("div", { class: "slot" });
  let nextOffset = null;
  let firstOffset = null;

  const loadRecords = async (mode, at) => {
    const p = Number(partition.value);
    let query;
    try {
      if (mode === "latest") {
        const fresh = await api("GET", `/v1/topics/${seg(name)}`);
        const po = fresh.partition_offsets[p];
        query = `offset=${Math.max(po.start_offset, po.end_offset - PAGE)}`;
      } else if (mode === "time") {
        if (!time.value) throw { code: "invalid_input", message: "choose a time" };
        query = `timestamp=${new Date(time.value).getTime()}`;
      } else {
        query = `offset=${Math.max(0, Number(at))}`;
      }
      const r = await api("GET", `/v1/topics/${seg(name)}/partitions/${p}/records?${query}&max=${PAGE}`);
      nextOffset = r.next_offset;
      firstOffset = r.records.length ? r.records[0].offset : null;
      const filter = keyFilter.value;
      const shown = filter ? r.records.filter((x) => x.key !== null && x.key.includes(filter)) : r.records;
      fill(browseStatus, h("p", { class: "muted" },
        `Partition ${p}: ${r.records.length} record(s) read, ${shown.length} shown; end offset ${r.end_offset}.`));
      fill(records, shown.length === 0
        ? h("p", { class: "muted" }, "No records here.")
        : table(["Offset", "Timestamp", "Key", "Value", "Headers"], shown.map((x) => [
            String(x.offset),
            formatTime(x.timestamp),
            renderField(x.key, x.key_b64),
            renderField(x.value, x.value_b64),
            Object.keys(x.headers).length ? h("pre", {}, JSON.stringify(x.headers, null, 2)) : "",
          ]), { id: "records-table" }));
    } catch (err) {
      if (err.status !== 401) fill(browseStatus, errorBox(err));
    }
  };
  const browse = h("form", { id: "browse", class: "inline" },
    field("Partition", partition), field("From", from), field("Offset", offset), field("Time (local)", time),
    field("Key filter", keyFilter),
    h("button", { type: "submit", class: "primary" }, "Show records"),
    h("button", { type: "button", id: "older", onclick: () => firstOffset !== null && loadRecords("offset", firstOffset - PAGE) }, "Older"),
    h("button", { type: "button", id: "newer", onclick: () => nextOffset !== null && loadRecords("offset", nextOffset) }, "Newer"));
  browse.addEventListener("submit", (e) => {
    e.preventDefault();
    loadRecords(from.value, offset.value);
  });

  // Produce a test record.
  const key = h("input", { name: "key", id: "produce-key", placeholder: "(none)" });
  const value = h("textarea", { name: "value", id: "produce-value", rows: 3 });
  const toPartition = h("select", { name: "partition", id: "produce-partition" },
    h("option", { value: "" }, "by key"),
    d.partition_offsets.map((p) => h("option", { value: String(p.partition) }, String(p.partition))));
  const produceStatus = h("div", { class: "slot", id: "produce-status" });
  const produce = h("form", { id: "produce" },
    field("Key", key), field("Value", value), field("Partition", toPartition),
    h("button", { type: "submit", class: "primary" }, "Produce"), produceStatus);
  produce.addEventListener("submit", async (e) => {
    e.preventDefault();
    const record = { value: value.value };
    if (key.value !== "") record.key = key.value;
    if (toPartition.value !== "") record.partition = Number(toPartition.value);
    try {
      const r = await api("POST", `/v1/topics/${seg(name)}/records`, { records: [record] });
      const at = r.offsets[0];
      showOk(produceStatus, `Produced to partition ${at.partition} at offset ${at.offset}.`);
      partition.value = String(at.partition);
      await Promise.all([loadRecords("latest"), loadPartitions()]);
    } catch (err) {
      showError(produceStatus, err);
    }
  });

  const loadPartitions = async () => {
    try {
      const fresh = await api("GET", `/v1/topics/${seg(name)}`);
      fill(partsSlot, table(["Partition", "Start offset", "End offset", "Records (approx.)", "Size", "Segments", "Status"],
        fresh.partition_offsets.map((p) => [
          String(p.partition), String(p.start_offset), String(p.end_offset), String(p.end_offset - p.start_offset),
          formatBytes(p.size_bytes), String(p.segments),
          p.status === "offline" ? h("span", { class: "badge failed", title: p.error || "" }, "offline") : h("span", { class: "badge running" }, "online"),
        ]), { id: "partitions-table" }));
    } catch (err) {
      if (err.status !== 401) fill(partsSlot, errorBox(err));
    }
  };

  fill(main,
    h("p", { class: "crumbs" }, link("#/topics", "Topics"), " / "),
    h("h1", {}, name, " ", d.internal ? h("span", { class: "badge" }, "internal") : null),
    slot, config, del,
    h("section", {}, h("h2", {}, "Partitions"), partsSlot),
    h("section", {}, h("h2", {}, "Records"), browse, browseStatus, records),
    d.internal ? null : h("section", {}, h("h2", {}, "Produce a test record"), produce));
  await loadPartitions();
  await loadRecords("latest");
}
