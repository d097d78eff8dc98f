// Functions: the uploaded UDFs with their SQL signatures; upload (a .wasm component and a
// name) and delete.

import { api, upload, seg } from "./api.js";
import { h, fill, table, errorBox, showError, showOk, field, formatBytes, formatTime, confirmAction } from "./ui.js";

const SQL_TYPES = { boolean: "BOOLEAN", int: "BIGINT", float: "DOUBLE", text: "STRING", bytes: "BYTES", any: "ANY" };

export function signature(f) {
  const t = (x) => SQL_TYPES[x] || String(x).toUpperCase();
  return `${f.name}(${f.signature.params.map(t).join(", ")}) -> ${t(f.signature.returns)}`;
}

export async function render(main, ctx) {
  const status = h("div", { class: "slot", id: "functions-status" });
  const listSlot = h("div", { id: "functions-list" });
  const file = h("input", { type: "file", id: "function-file", accept: ".wasm,application/wasm", required: true });
  const name = h("input", { id: "function-name", required: true, maxlength: 64 });
  const replace = h("input", { type: "checkbox", id: "function-replace" });
  const form = h("form", { id: "function-upload", class: "inline" },
    field("Component (.wasm)", file), field("Name", name),
    h("div", { class: "field check" }, replace, h("label", { for: "function-replace" }, "Replace")),
    h("button", { type: "submit", class: "primary" }, "Upload"));
  file.addEventListener("change", () => {
    const f = file.files[0];
    if (f && !name.value) name.value = f.name.replace(/\.wasm$/, "").replace(/[^A-Za-z0-9_]/g, "_");
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const f = file.files[0];
      if (!f) throw { code: "invalid_input", message: "choose a .wasm file" };
      const data = new FormData();
      data.append("spec", new Blob([JSON.stringify({ name: name.value.trim(), replace: replace.checked })], { type: "application/json" }));
      data.append("wasm", f, f.name);
      const info = await upload("POST", "/v1/functions", data);
      showOk(status, `Registered ${signature(info)}.`);
      await load();
    } catch (err) {
      showError(status, err);
    }
  });

  const remove = async (fname) => {
    if (!(await confirmAction(`Delete function ${fname}?`, "Delete function"))) return;
    try {
      await api("DELETE", `/v1/functions/${seg(fname)}`);
      showOk(status, `Deleted ${fname}.`);
    } catch (err) {
      showError(status, err);
    }
    await load();
  };

  const load = async () => {
    try {
      const list = (await api("GET", "/v1/functions")).functions;
      fill(listSlot, list.length === 0
        ? h("p", { class: "muted" }, "No functions uploaded. Built-in functions: SHOW FUNCTIONS on the SQL page.")
        : table(["Signature", "Kind", "Size", "Created", "SHA-256", ""], list.map((f) => [
            h("code", {}, signature(f)),
            f.kind,
            formatBytes(f.module_bytes),
            formatTime(f.created_ms),
            h("code", { title: f.sha256 }, f.sha256.slice(0, 12)),
            [f.error ? h("span", { class: "error-text" }, f.error) : null,
              h("button", { type: "button", class: "danger small", "aria-label": `Delete function ${f.name}`, onclick: () => remove(f.name) }, "Delete")],
          ]), { id: "functions-table" }));
    } catch (err) {
      if (err.status !== 401) fill(listSlot, errorBox(err));
    }
  };
  fill(main, h("h1", {}, "Functions"), listSlot,
    h("section", {}, h("h2", {}, "Upload a function"), form, status));
  await load();
  void ctx;
}
