// Consumer groups: the list (state, protocol type, members, coordinator) and a group's page
// with its members (client id, host, assignment) and per partition the committed offset, the
// log end and the lag, refreshed every few seconds. Read only (GET /v1/groups…).

import { api, seg } from "./api.js";
import { h, fill, table, errorBox, link, every, formatTime } from "./ui.js";

const REFRESH_MS = 3000;

function stateBadge(state) {
  const cls = state === "Stable" ? "running" : state === "Empty" ? "" : "paused";
  return h("span", { class: `badge ${cls}`.trim() }, state);
}

function lagText(lag) {
  return lag === null || lag === undefined ? "–" : String(lag);
}

export async function renderList(main, ctx) {
  const listSlot = h("div", { id: "groups-list" });
  fill(main, h("h1", {}, "Consumer groups"), listSlot);
  const load = async () => {
    let r;
    try {
      r = await api("GET", "/v1/groups");
    } catch (err) {
      if (err.status !== 401) fill(listSlot, errorBox(err));
      return;
    }
    if (!ctx.isCurrent()) return;
    const note = r.unanswered && r.unanswered.length
      ? h("p", { class: "error-text", id: "groups-unanswered" },
        `Node(s) ${r.unanswered.join(", ")} did not answer: their groups are missing.`)
      : null;
    fill(listSlot, r.groups.length === 0
      ? h("p", { class: "muted" }, "No consumer groups. Groups appear when Kafka clients join one or commit offsets.")
      : table(["Group", "State", "Protocol", "Members", "Coordinator"], r.groups.map((g) => [
          link(`#/groups/${seg(g.group_id)}`, g.group_id),
          stateBadge(g.state),
          g.protocol_type,
          String(g.members),
          `node ${g.coordinator}`,
        ]), { id: "groups-table" }),
    note);
  };
  await load();
  every(REFRESH_MS, ctx.isCurrent, load);
}

export async function renderGroup(main, id, ctx) {
  const head = h("div", { id: "group-head" });
  const membersSlot = h("div", { id: "group-members" });
  const lagSlot = h("div", { id: "group-lag" });
  fill(main,
    h("p", { class: "crumbs" }, link("#/groups", "Consumer groups"), " / "),
    h("h1", {}, id),
    head,
    h("section", {}, h("h2", {}, "Members"), membersSlot),
    h("section", {}, h("h2", {}, "Offsets and lag"), lagSlot));
  const load = async () => {
    let g;
    try {
      g = await api("GET", `/v1/groups/${seg(id)}`);
    } catch (err) {
      if (err.status !== 401) fill(head, errorBox(err));
      return;
    }
    if (!ctx.isCurrent()) return;
    fill(head, h("dl", { class: "facts" },
      h("dt", {}, "State"), h("dd", { id: "group-state" }, stateBadge(g.state)),
      h("dt", {}, "Protocol"), h("dd", {}, g.protocol_type || "–", g.protocol ? ` (${g.protocol})` : ""),
      h("dt", {}, "Coordinator"), h("dd", {}, `node ${g.coordinator}`),
      h("dt", {}, "Total lag"), h("dd", { id: "group-total-lag" }, lagText(g.total_lag))));
    fill(membersSlot, g.members.length === 0
      ? h("p", { class: "muted" }, "No members: nobody is consuming with this group now.")
      : table(["Member", "Client id", "Host", "Assignment"], g.members.map((m) => [
          h("code", {}, m.member_id),
          m.client_id,
          m.client_host,
          m.assignment === null
            ? h("span", { class: "muted" }, m.assignment_bytes ? `${m.assignment_bytes} bytes (not a consumer assignment)` : "none yet")
            : m.assignment.map((t) => h("div", {}, link(`#/topics/${seg(t.topic)}`, t.topic), `: ${t.partitions.join(", ")}`)),
        ]), { id: "members-table" }));
    const owner = new Map(g.members.map((m) => [m.member_id, m.client_id]));
    fill(lagSlot, g.partitions.length === 0
      ? h("p", { class: "muted" }, "No committed offsets or assigned partitions.")
      : table(["Topic", "Partition", "Committed", "Log end", "Lag", "Member", "Committed at"], g.partitions.map((p) => [
          link(`#/topics/${seg(p.topic)}`, p.topic),
          String(p.partition),
          p.committed_offset === null ? "–" : String(p.committed_offset),
          p.log_end_offset === null ? "–" : String(p.log_end_offset),
          h("span", { class: p.lag ? "lag" : "" }, lagText(p.lag)),
          p.member_id ? owner.get(p.member_id) || p.member_id : h("span", { class: "muted" }, "unassigned"),
          formatTime(p.commit_timestamp),
        ]), { id: "lag-table" }));
  };
  await load();
  every(REFRESH_MS, ctx.isCurrent, load);
}
