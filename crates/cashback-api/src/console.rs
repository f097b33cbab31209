//! The web console's static assets, embedded in the binary (no CDN; works offline) and served
//! under `/console/`. The console itself only calls the public APIs: the citizen's with a Bearer
//! token, the operators' views with an operator API key.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::SharedState;

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/console/";

/// Scripts, styles and pictures only from this origin; the API is same-origin too.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// (path under /console/, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../console/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../console/console.js")),
    ("i18n.js", "text/javascript; charset=utf-8", include_bytes!("../console/i18n.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../console/console.css")),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.iife.min.js"),
    ),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../console/vendor/uPlot.min.css")),
    ("vendor/uPlot.LICENSE", "text/plain; charset=utf-8", include_bytes!("../console/vendor/uPlot.LICENSE")),
];

/// The embedded asset at `path` (relative to `/console/`; empty means the page).
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|(p, _, _)| *p == path).map(|(_, ct, body)| (*ct, *body))
}

fn serve_asset(path: &str) -> Response {
    match asset(path) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                // Assets change with the binary: revalidate rather than cache blindly.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
                (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
                (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            ],
            body,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

async fn page() -> Response {
    serve_asset("")
}

async fn file(Path(path): Path<String>) -> Response {
    serve_asset(&path)
}

/// `/` and `/console` lead to the console; `/console/{*path}` serves its files.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(|| async { Redirect::to(CONSOLE_PATH) }))
        .route("/console", get(|| async { Redirect::to(CONSOLE_PATH) }))
        .route(CONSOLE_PATH, get(page))
        .route("/console/{*path}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let (_, page) = asset("").unwrap();
        let page = std::str::from_utf8(page).unwrap();
        for needle in ["console.js", "i18n.js", "console.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"] {
            assert!(page.contains(needle), "{needle} not referenced");
            assert!(asset(needle).is_some(), "{needle} not embedded");
        }
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("nope.js").is_none());
    }

    #[test]
    fn both_languages_have_every_key() {
        let (_, js) = asset("i18n.js").unwrap();
        let js = std::str::from_utf8(js).unwrap();
        let (en, it) = js.split_once("\n  it: {").expect("an `it` block");
        let keys = |block: &str| -> std::collections::BTreeSet<String> {
            block
                .lines()
                .filter_map(|l| l.trim().split_once(": ").map(|(k, _)| k.to_owned()))
                .filter(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .collect()
        };
        let (en, it) = (keys(en.split_once("en: {").unwrap().1), keys(it));
        assert!(en.len() > 100, "{} keys", en.len());
        let missing: Vec<_> = en.difference(&it).collect();
        assert!(missing.is_empty(), "missing in Italian: {missing:?}");
        let extra: Vec<_> = it.difference(&en).collect();
        assert!(extra.is_empty(), "only in Italian: {extra:?}");
    }
}
