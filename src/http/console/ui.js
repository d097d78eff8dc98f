// DOM helpers shared by the pages. Everything is built with createElement and textContent
// (never parsed as markup), so record contents and error messages cannot inject markup.

/// h("div", {class: "x", onclick: f}, child, "text", [more children]) → an element.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/// Replaces the children of `el`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/// An error box for an API (or any) error; never empty.
export function errorBox(err) {
  const code = err && err.code ? err.code : "error";
  const message = (err && err.message) || String(err) || "unknown error";
  const box = h("div", { class: "error", role: "alert" }, h("strong", {}, code), ": ", message);
  if (err && err.details && err.details.line) {
    box.append(` (line ${err.details.line}, column ${err.details.column})`);
  }
  return box;
}

/// Shows `err` in `slot` (an element kept for messages).
export function showError(slot, err) {
  fill(slot, errorBox(err));
}

export function showOk(slot, message) {
  fill(slot, h("div", { class: "ok", role: "status" }, message));
}

/// A table from column titles and rows of cells (strings, numbers or nodes).
export function table(columns, rows, attrs) {
  return h(
    "table",
    attrs || {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
  );
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "–";
  const d = [[86400000, "d"], [3600000, "h"], [60000, "min"], [1000, "s"]];
  for (const [size, unit] of d) if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  return `${ms} ms`;
}

export function formatTime(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
}

export function formatRate(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return v >= 10 ? v.toFixed(0) : v.toFixed(1);
}

/// Asks for confirmation in the page's <dialog>; resolves to true or false.
export function confirmAction(text, okLabel) {
  const dialog = document.getElementById("confirm");
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  document.getElementById("confirm-text").textContent = text;
  ok.textContent = okLabel || "Delete";
  return new Promise((resolve) => {
    const done = (v) => {
      ok.removeEventListener("click", yes);
      cancel.removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      dialog.close();
      resolve(v);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    cancel.addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
    cancel.focus();
  });
}

/// A labelled form field.
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}

/// Runs `task` on a timer while `isCurrent()` holds (the page is still shown).
export function every(ms, isCurrent, task) {
  const tick = async () => {
    if (!isCurrent()) return;
    try {
      await task();
    } finally {
      if (isCurrent()) setTimeout(tick, ms);
    }
  };
  setTimeout(tick, ms);
}

/// Shows a value for a person: JSON pretty-printed, text as text, anything else as hex.
/// `s` is what the API returned (a string, or null); for bytes that are not UTF-8 the API
/// also gives `…_b64`, shown with [`renderBytes`] instead.
export function renderValue(s) {
  if (s === null || s === undefined) return h("span", { class: "muted" }, "null");
  const trimmed = s.trim();
  if ((trimmed.startsWith("{") || trimmed.startsWith("[")) && trimmed.length > 1) {
    try {
      return h("pre", { class: "json" }, JSON.stringify(JSON.parse(trimmed), null, 2));
    } catch (_) {
      // not JSON
    }
  }
  // Control characters (other than tab and newlines) mean binary: show hex of the UTF-8
  // bytes (exact: the string is what the bytes decoded to).
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(s)) return hex(new TextEncoder().encode(s), "binary, shown as hex");
  return h("span", { class: "text" }, s);
}

function hex(bytes, title) {
  const text = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
  return h("code", { class: "hex", title }, text);
}

/// The bytes of standard base64 (what the API gives for bytes that are not UTF-8).
export function fromBase64(b64) {
  const bin = atob(b64 || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/// Shows exact bytes: as [`renderValue`] when they are UTF-8, else hex of the bytes.
export function renderBytes(bytes) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (_) {
    return hex(bytes, "not UTF-8: the exact bytes, shown as hex");
  }
  return renderValue(text);
}

/// A record's key or value from the API: the exact bytes when it sent `…_b64` (bytes that
/// are not UTF-8), else the text.
export function renderField(text, b64) {
  return b64 !== undefined && b64 !== null ? renderBytes(fromBase64(b64)) : renderValue(text);
}

/// A link to a console page.
export function link(href, text) {
  return h("a", { href }, text);
}
