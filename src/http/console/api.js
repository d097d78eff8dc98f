// The console's only way to the server: the /v1 JSON API, with the credentials the user
// gave (kept for this browser tab in sessionStorage). Every failure becomes an ApiError
// carrying the API's {"error":{"code","message"}}, so pages can show it.

const AUTH_KEY = "weir.authorization";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

let onUnauthenticated = () => {};

/// Called with the error when a request is refused for lack of (valid) credentials.
export function setUnauthenticatedHandler(f) {
  onUnauthenticated = f;
}

export function authorization() {
  return sessionStorage.getItem(AUTH_KEY);
}

export function setBasic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  sessionStorage.setItem(AUTH_KEY, `Basic ${btoa(bin)}`);
}

export function setToken(token) {
  sessionStorage.setItem(AUTH_KEY, `Bearer ${token.trim()}`);
}

export function clearAuth() {
  sessionStorage.removeItem(AUTH_KEY);
}

function headers(extra) {
  const h = new Headers(extra || {});
  const a = authorization();
  if (a) h.set("Authorization", a);
  return h;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // not JSON: keep the status alone
  }
  const e = body && body.error;
  const err = e
    ? new ApiError(response.status, e.code, e.message, e)
    : new ApiError(response.status, "http_" + response.status, `${response.status} ${response.statusText}`);
  if (response.status === 401) onUnauthenticated(err);
  return err;
}

async function send(method, path, init) {
  let response;
  try {
    response = await fetch(path, { method, credentials: "omit", cache: "no-store", ...init });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server: ${e.message}`);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/// A JSON request; resolves to the parsed body (null for 204).
export async function api(method, path, body) {
  const init = { headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await send(method, path, init);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/// A multipart upload (FormData); resolves to the parsed body.
export async function upload(method, path, form) {
  const response = await send(method, path, { headers: headers(), body: form });
  return response.json();
}

/// Plain text (the /metrics page).
export async function text(path) {
  const response = await send("GET", path, { headers: headers() });
  return response.text();
}

/// POSTs `body` and calls `onLine` with each NDJSON line as it arrives, until the stream
/// ends or `signal` aborts it.
export async function stream(path, body, onLine, signal) {
  const response = await send("POST", path, {
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
    signal,
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) onLine(JSON.parse(line));
      }
    }
  } catch (e) {
    if (e.name === "AbortError") return;
    throw e;
  }
  if (buffered.trim()) onLine(JSON.parse(buffered));
}

/// Path segment escaping for names in URLs.
export function seg(s) {
  return encodeURIComponent(s);
}
