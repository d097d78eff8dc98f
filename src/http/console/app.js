// The console's entry: the page frame (navigation, who is logged in, the error banner), the
// hash router (#/topics/NAME …) and the login form shown whenever the API answers 401.

import { api, clearAuth, setBasic, setToken, setUnauthenticatedHandler } from "./api.js";
import { h, fill, errorBox, field } from "./ui.js";
import * as overview from "./overview.js";
import * as topics from "./topics.js";
import * as groups from "./groups.js";
import * as processors from "./processors.js";
import * as sql from "./sql.js";
import * as functions from "./functions.js";
import * as cluster from "./cluster.js";

// Errors of the page itself (uncaught exceptions, rejected promises, CSP violations) are
// kept here for the browser tests and shown in the banner: never a silent blank page.
window.__weirErrors = [];
function pageError(message) {
  window.__weirErrors.push(message);
  const banner = document.getElementById("banner");
  fill(banner, errorBox({ code: "console_error", message }));
  banner.hidden = false;
}
window.addEventListener("error", (e) => pageError(`${e.message} (${e.filename}:${e.lineno})`));
window.addEventListener("unhandledrejection", (e) => pageError(String(e.reason && e.reason.message || e.reason)));
document.addEventListener("securitypolicyviolation", (e) => pageError(`CSP blocked ${e.blockedURI} (${e.violatedDirective})`));

const main = document.getElementById("main");
let generation = 0;

const routes = [
  [/^\/?$/, "overview", (m) => overview.render(m, ctx())],
  [/^\/topics\/?$/, "topics", (m) => topics.renderList(m, ctx())],
  [/^\/topics\/([^/]+)$/, "topics", (m, a) => topics.renderTopic(m, decodeURIComponent(a[1]), ctx())],
  [/^\/groups\/?$/, "groups", (m) => groups.renderList(m, ctx())],
  [/^\/groups\/([^/]+)$/, "groups", (m, a) => groups.renderGroup(m, decodeURIComponent(a[1]), ctx())],
  [/^\/processors\/?$/, "processors", (m) => processors.renderList(m, ctx())],
  [/^\/processors\/([^/]+)$/, "processors", (m, a) => processors.renderProcessor(m, decodeURIComponent(a[1]), ctx())],
  [/^\/sql\/?$/, "sql", (m) => sql.render(m, ctx())],
  [/^\/functions\/?$/, "functions", (m) => functions.render(m, ctx())],
  [/^\/cluster\/?$/, "cluster", (m) => cluster.render(m, ctx())],
];

/// What a page gets: whether it is still the one shown (for timers and streams) and a
/// signal aborted when the user leaves it.
let controller = new AbortController();
function ctx() {
  const mine = generation;
  return { isCurrent: () => mine === generation && !loginShown, signal: controller.signal };
}

let loginShown = false;

function route() {
  generation++;
  controller.abort();
  controller = new AbortController();
  loginShown = false;
  const path = (location.hash || "#/").slice(1);
  for (const a of document.querySelectorAll("#nav a")) a.removeAttribute("aria-current");
  fill(main);
  for (const [re, page, render] of routes) {
    const m = path.match(re);
    if (!m) continue;
    const navLink = document.querySelector(`#nav a[data-page="${page}"]`);
    if (navLink) navLink.setAttribute("aria-current", "page");
    Promise.resolve(render(main, m)).catch((e) => {
      if (e && e.status === 401) return; // the login form is showing
      main.append(errorBox(e));
    });
    return;
  }
  fill(main, h("h1", {}, "Not found"), h("p", {}, `No page ${path}. `, h("a", { href: "#/" }, "Overview")));
}

function showLogin(err) {
  if (loginShown) return;
  loginShown = true;
  generation++;
  controller.abort();
  const user = h("input", { name: "user", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password" });
  const token = h("input", { name: "token", autocomplete: "off" });
  const form = h(
    "form",
    { class: "login", id: "login" },
    h("h1", {}, "Log in to Weir"),
    err ? errorBox(err) : null,
    h("p", { class: "muted" }, "This server runs with --auth. Log in with a user and password, or paste a token."),
    field("User", user),
    field("Password", password),
    h("p", { class: "muted" }, "or"),
    field("Token", token),
    h("button", { type: "submit", class: "primary" }, "Log in"),
  );
  user.required = false;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (token.value.trim()) setToken(token.value);
    else setBasic(user.value, password.value);
    loginShown = false;
    refreshWho().then((ok) => {
      if (!ok) return; // refused: the form is shown again with the API's error
      overview.startSampling();
      route();
    });
  });
  fill(main, form);
  user.focus();
}

async function refreshWho() {
  const who = document.getElementById("whoami");
  const logout = document.getElementById("logout");
  try {
    const me = await api("GET", "/v1/whoami");
    who.textContent = me.user ? `${me.user} (${me.role})` : "";
    logout.hidden = !me.user;
    return true;
  } catch (e) {
    who.textContent = "";
    logout.hidden = true;
    return false;
  }
}

setUnauthenticatedHandler(showLogin);
document.getElementById("logout").addEventListener("click", () => {
  clearAuth();
  document.getElementById("whoami").textContent = "";
  document.getElementById("logout").hidden = true;
  showLogin(null);
});
window.addEventListener("hashchange", route);
overview.startSampling();
refreshWho();
route();
