//! A WebDriver client for the browser tests: Debian's `chromedriver` started on a free port,
//! one headless Chromium session, spoken to with W3C WebDriver's plain JSON over HTTP
//! (`reqwest`, already in the tree). Only the commands the tests use.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key W3C WebDriver puts element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's code points of special keys.
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";
pub const ESCAPE: &str = "\u{E00C}";
/// How long a wait for the page lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `chromedriver`.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::blocking::Client,
}

impl Driver {
    /// Starts `chromedriver` (`$WEIR_CHROMEDRIVER`, else from `PATH`; scripts/test.sh installs
    /// Debian's `chromium-driver`).
    pub fn start() -> Driver {
        let bin = std::env::var("WEIR_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = super::common::free_port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): install chromium and chromium-driver (scripts/test.sh does)")
            });
        // reqwest's rustls needs a process-wide crypto provider (the binary installs ring).
        weir_broker::net::tls::install_default_provider();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send()
                && r.json::<Value>().is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url, http }
    }

    /// A new headless Chromium session at 1280×800 that keeps the browser's console log.
    pub fn session(&self) -> Session {
        let binary = std::env::var("WEIR_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,800", "--no-first-run", "--no-default-browser-check",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-default-apps"
                ]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let v = self.post(&format!("{}/session", self.url), &caps);
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Session {
            base: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
        }
    }

    fn post(&self, url: &str, body: &Value) -> Value {
        call(&self.http, reqwest::Method::POST, url, Some(body))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(
    http: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Value {
    let mut req = http.request(method.clone(), url);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status();
    let v: Value = r.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {url} → {status}: {v}");
    v["value"].clone()
}

/// One browser session (ended on drop).
pub struct Session {
    base: String,
    http: reqwest::blocking::Client,
}

/// A reference to an element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Element {
    fn json(&self) -> Value {
        json!({ ELEMENT: self.0 })
    }
}

impl Session {
    fn post(&self, path: &str, body: Value) -> Value {
        call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}{path}", self.base),
            Some(&body),
        )
    }

    fn get(&self, path: &str) -> Value {
        call(
            &self.http,
            reqwest::Method::GET,
            &format!("{}{path}", self.base),
            None,
        )
    }

    pub fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its result.
    pub fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    /// The first element matching `css` now, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let v = self.post("/elements", json!({"using": "css selector", "value": css}));
        v.as_array()
            .and_then(|a| a.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(|id| Element(id.to_string()))
    }

    /// Waits for an element matching `css`.
    pub fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(Instant::now() < deadline, "no element {css} on the page");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.post(&format!("/element/{}/click", e.0), json!({}));
    }

    /// Clears a field and types `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.post(&format!("/element/{}/clear", e.0), json!({}));
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }));
    }

    /// Gives a file input the file at `path` (WebDriver's way of choosing a file).
    pub fn choose_file(&self, css: &str, path: &Path) {
        let e = self.find(css);
        self.post(
            &format!("/element/{}/value", e.0),
            json!({ "text": path.to_str().unwrap() }),
        );
    }

    /// Sets a <select> to `value` (as a user choosing the option).
    pub fn select(&self, css: &str, value: &str) {
        let e = self.find(css);
        self.exec(
            "arguments[0].value = arguments[1]; \
             arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
            vec![e.json(), json!(value)],
        );
    }

    /// The rendered text of the first element matching `css` ("" when there is none).
    pub fn text(&self, css: &str) -> String {
        self.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            vec![json!(css)],
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    pub fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.text(css);
            if ok(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {css} to show {what}; it shows: {t:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the text of `css` contains `needle`.
    pub fn wait_contains(&self, css: &str, needle: &str) -> String {
        self.wait_text(css, needle, |t| t.contains(needle))
    }

    /// Saves a PNG of the window.
    pub fn screenshot(&self, path: &Path) {
        let v = self.get("/screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The browser console's entries since the last call: (level, message).
    pub fn console_log(&self) -> Vec<(String, String)> {
        let v = self.post("/se/log", json!({"type": "browser"}));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Presses keys one after the other on whatever has the focus (WebDriver key actions;
    /// special keys as WebDriver's code points, e.g. [`TAB`], [`ENTER`], [`ESCAPE`]).
    pub fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    pub fn set_window(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
    }
}
