// SQL: an editor with history (kept in this browser), statements run through /v1/sql, a
// SELECT through /v1/query: a pull query's rows, or a push query's (EMIT CHANGES) rows
// streaming into the table as they arrive until it is stopped or the page is left; and the
// streams, tables and running queries, each query with a terminate button.

import { api, stream } from "./api.js";
import { h, fill, table, errorBox, showError, showOk, confirmAction } from "./ui.js";

const HISTORY_KEY = "weir.sql.history";
const MAX_HISTORY = 50;
/// Rows kept in the push-query table (the oldest go first).
const MAX_ROWS = 1000;

function history() {
  try {
    const v = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(v) ? v : [];
  } catch (_) {
    return [];
  }
}

function remember(sql) {
  const list = history().filter((s) => s !== sql);
  list.unshift(sql);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, MAX_HISTORY)));
}

/// The text without comments, for deciding how to run it.
function stripComments(sql) {
  return sql.replace(/--[^\n]*/g, "").replace(/\/\*[\s\S]*?\*\//g, "").trim();
}

/// Whether `sql` is one SELECT (one statement: no `;` outside quotes but a trailing one).
export function isSingleSelect(sql) {
  const s = stripComments(sql);
  if (!/^select\b/i.test(s)) return false;
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "'") inQuote = !inQuote;
    else if (c === ";" && !inQuote && s.slice(i + 1).trim() !== "") return false;
  }
  return true;
}

function cell(v) {
  if (v === null || v === undefined) return h("span", { class: "muted" }, "null");
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

export async function render(main, ctx) {
  const editor = h("textarea", { id: "sql-editor", rows: 8, spellcheck: "false", "aria-label": "SQL statements",
    placeholder: "SHOW STREAMS;\nSELECT * FROM possible_fraud EMIT CHANGES;" });
  const earliest = h("input", { type: "checkbox", id: "sql-earliest", checked: true });
  const run = h("button", { type: "submit", class: "primary", id: "sql-run" }, "Run");
  const stop = h("button", { type: "button", id: "sql-stop", disabled: true }, "Stop");
  const out = h("div", { id: "sql-results" });
  const historySlot = h("div", { id: "sql-history" });
  const catalog = h("div", { id: "sql-catalog" });
  const status = h("div", { class: "slot" });
  let running = null;

  const form = h("form", { id: "sql-form" }, editor,
    h("div", { class: "buttons" }, run, stop,
      h("span", { class: "field check" }, earliest, h("label", { for: "sql-earliest" }, "push queries from the earliest record")),
      h("span", { class: "muted" }, "Ctrl+Enter runs")));
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => running && running.abort());

  const showHistory = () => {
    const list = history();
    fill(historySlot, list.length === 0 ? h("p", { class: "muted" }, "Nothing run yet.")
      : h("ol", { class: "history" }, list.map((s) => h("li", {},
          h("button", { type: "button", class: "linklike", title: "Put in the editor",
            onclick: () => { editor.value = s; editor.focus(); } }, s.length > 120 ? s.slice(0, 120) + "…" : s)))));
  };

  const loadCatalog = async () => {
    try {
      const r = await api("POST", "/v1/sql", { sql: "SHOW STREAMS; SHOW TABLES; SHOW QUERIES;" });
      const [streams, tables, queries] = r.results;
      fill(catalog,
        h("h3", {}, "Streams"), resultTable(streams, "sql-streams"),
        h("h3", {}, "Tables"), resultTable(tables, "sql-tables"),
        h("h3", {}, "Queries"),
        queries.rows.length === 0 ? h("p", { class: "muted" }, "No persistent queries.")
          : table([...queries.columns, ""], queries.rows.map((row) => [...row.map(cell),
              h("button", { type: "button", class: "danger small", "aria-label": `Terminate ${row[0]}`,
                onclick: () => terminate(row[0]) }, "Terminate")]), { id: "sql-queries" }));
    } catch (err) {
      if (err.status !== 401) fill(catalog, errorBox(err));
    }
  };

  const terminate = async (id) => {
    if (!(await confirmAction(`Terminate query ${id}? Its sink topic stays.`, "Terminate"))) return;
    try {
      await api("POST", "/v1/sql", { sql: `TERMINATE ${id};` });
      showOk(status, `Terminated ${id}.`);
    } catch (err) {
      showError(status, err);
    }
    await loadCatalog();
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const sql = editor.value.trim();
    if (!sql) return;
    if (running) running.abort();
    remember(sql);
    showHistory();
    status.replaceChildren();
    if (isSingleSelect(sql)) query(sql);
    else await statements(sql);
    await loadCatalog();
  });

  const statements = async (sql) => {
    fill(out, h("p", { class: "muted" }, "Running…"));
    try {
      const r = await api("POST", "/v1/sql", { sql });
      fill(out, r.results.map((x) => h("div", { class: "result" },
        h("pre", { class: "statement" }, x.statement),
        x.message ? h("p", { class: "ok" }, x.message) : null,
        x.columns ? resultTable(x) : null)));
    } catch (err) {
      const parts = [errorBox(err)];
      if (err.details && Array.isArray(err.details.executed) && err.details.executed.length) {
        parts.push(h("p", { class: "muted" }, `${err.details.executed.length} statement(s) ran before the failing one.`));
      }
      fill(out, parts);
    }
  };

  const query = async (sql) => {
    const controller = new AbortController();
    ctx.signal.addEventListener("abort", () => controller.abort());
    running = controller;
    stop.disabled = false;
    const count = h("span", { id: "sql-row-count" }, "0");
    const state = h("span", { id: "sql-query-state" }, "running");
    const body = h("tbody");
    const head = h("tr");
    fill(out, h("p", { class: "muted" }, h("span", {}, "Rows: "), count, " — ", state),
      h("table", { id: "sql-rows" }, h("thead", {}, head), body));
    let rows = 0;
    const properties = earliest.checked ? { "auto.offset.reset": "earliest" } : {};
    try {
      await stream("/v1/query", { sql, properties }, (line) => {
        if (line.header) {
          fill(head, line.header.columns.map((c) => h("th", { scope: "col" }, c)));
        } else if (line.row) {
          body.append(h("tr", {}, line.row.map((v) => h("td", {}, cell(v)))));
          if (body.childElementCount > MAX_ROWS) body.firstElementChild.remove();
          rows++;
          count.textContent = String(rows);
        } else if (line.error) {
          out.append(errorBox(line.error));
        }
      }, controller.signal);
      state.textContent = controller.signal.aborted ? "stopped" : "done";
    } catch (err) {
      state.textContent = "failed";
      out.prepend(errorBox(err));
    } finally {
      if (running === controller) {
        running = null;
        stop.disabled = true;
      }
    }
  };

  fill(main, h("h1", {}, "SQL"), form, status, out,
    h("div", { class: "columns" },
      h("section", {}, h("h2", {}, "Catalog"), catalog),
      h("section", {}, h("h2", {}, "History"), historySlot)));
  showHistory();
  await loadCatalog();
}

function resultTable(r, id) {
  if (!r.rows || r.rows.length === 0) return h("p", { class: "muted" }, "None.");
  // The Kafka topic of a stream or table links to its topic page.
  const topicColumn = r.columns.indexOf("Kafka Topic");
  return table(r.columns, r.rows.map((row) => row.map((v, i) =>
    i === topicColumn && typeof v === "string" ? h("a", { href: `#/topics/${encodeURIComponent(v)}` }, v) : cell(v))),
    id ? { id } : {});
}
