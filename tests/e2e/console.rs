//! The web console's files over HTTP (the browser itself is in tests/browser): `/` and
//! `/console/{file}` with their content types, the strict Content-Security-Policy, ETag
//! revalidation, a JSON 404 for an unknown file, and under `--auth` open files while the API
//! they call still needs credentials.

use serde_json::json;

use crate::common::Server;

#[test]
fn the_console_is_served_at_the_root_with_a_strict_policy() {
    let s = Server::start(&[]);
    let r = s.http.get(format!("{}/", s.url)).send().unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let page = r.text().unwrap();
    assert!(page.contains(r#"<script type="module" src="/console/app.js"></script>"#));

    // Revalidation: the same ETag gets a 304 without a body.
    let etag = h["etag"].to_str().unwrap().to_string();
    let r = s
        .http
        .get(format!("{}/", s.url))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().unwrap().is_empty());

    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = s
            .http
            .get(format!("{}/console/{file}", s.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(r.headers()["content-type"], content_type, "{file}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    let (status, body) = s.get("/console/missing.js");
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, _) = s.get("/console/../Cargo.toml");
    assert_eq!(status, 404);
    // The API stays under /v1.
    assert_eq!(s.get("/v1/topics").0, 200);
}

#[test]
fn under_auth_the_files_are_open_and_the_api_is_not() {
    let s = Server::start_with_env(&["--auth"], &[("WEIR_ADMIN_PASSWORD", "console-pw")]);
    assert_eq!(s.get("/").0, 200);
    let r = s
        .http
        .get(format!("{}/console/api.js", s.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = s.get("/v1/topics");
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthenticated"))
    );
    let r = s
        .http
        .get(format!("{}/v1/topics", s.url))
        .basic_auth("admin", Some("console-pw"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
