//! The web console (issue #16): `GET /` and `GET /console/{file}` serve a hand-written
//! single-page front end (plain ES modules and CSS under `src/http/console/`, embedded in the
//! binary with `include_bytes!`; no Node toolchain, no CDN, no third-party code). The page
//! does everything through the `/v1` JSON API with the caller's own credentials, so
//! authentication and ACLs stay at the one gate ([`super::auth::gate`]); the assets
//! themselves hold no data and are open (like `/health`).
//!
//! Every asset is answered with its content type, a strict Content-Security-Policy (scripts,
//! styles and connections only from this origin, no inline script or style, no frames, no
//! plugins), `nosniff`, `no-referrer`, and `Cache-Control: no-cache` with an `ETag` (a hash
//! of the embedded bytes, computed at compile time) so a browser revalidates and gets `304`
//! until the binary changes.
//!
//! This module must not reach the broker, the engine or any state: it only serves bytes.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::ApiPath;

/// The policy every console response carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    etag: u64,
}

/// FNV-1a over the bytes (the ETag; evaluated at compile time).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("console/", $name)),
            etag: fnv1a(include_bytes!(concat!("console/", $name))),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console. `index.html` is served at `/`, the others at `/console/{name}`.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("topics.js", JS),
    asset!("groups.js", JS),
    asset!("processors.js", JS),
    asset!("sql.js", JS),
    asset!("functions.js", JS),
    asset!("cluster.js", JS),
];

/// The asset called `name`.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// `GET /` → the console's page.
pub async fn index(headers: HeaderMap) -> Result<Response, ApiError> {
    let asset = find("index.html").ok_or_else(|| ApiError::internal("index.html missing"))?;
    Ok(serve(asset, &headers))
}

/// `GET /console/{file}` → one asset, or 404.
pub async fn file(
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let asset = find(&name).ok_or_else(|| {
        ApiError::not_found("not_found", format!("the console has no file '{name}'"))
    })?;
    Ok(serve(asset, &headers))
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &Asset) -> &'static str {
        std::str::from_utf8(a.body).unwrap()
    }

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        // `import … from "./x.js"` and `<script src="/console/x.js">` name files; each must be
        // in ASSETS, or the page would break only in a browser.
        for asset in ASSETS {
            let body = text(asset);
            for (marker, end) in [("from \"./", '"'), ("src=\"/console/", '"')] {
                for part in body.split(marker).skip(1) {
                    let name = &part[..part.find(end).unwrap()];
                    assert!(find(name).is_some(), "{} names {name}", asset.name);
                }
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_no_external_url() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            let body = text(asset);
            assert!(!body.contains("<style"), "{}", asset.name);
            assert!(!body.contains(" style="), "{}", asset.name);
            for script in body.split("<script").skip(1) {
                let tag_end = script.find('>').unwrap();
                assert!(script[..tag_end].contains("src="), "inline script");
                assert!(script[tag_end..].starts_with("></script>"), "inline script");
            }
        }
        for asset in ASSETS {
            // (An SVG's XML namespace is a name, not a request.)
            let body = text(asset).replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!body.contains("http://"), "{} names http://", asset.name);
            assert!(!body.contains("https://"), "{} names https://", asset.name);
            // innerHTML would be an injection path for record data and error messages.
            assert!(!body.contains("innerHTML"), "{} uses innerHTML", asset.name);
        }
    }

    #[test]
    fn etags_differ_per_content() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        let mut seen = std::collections::HashSet::new();
        for a in ASSETS {
            assert!(seen.insert(a.etag), "{}", a.name);
        }
    }
}
