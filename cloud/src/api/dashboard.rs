//! The web dashboard: static assets (`cloud/dashboard/`) embedded in the
//! binary at compile time, so `cargo build` needs no Node and the binary
//! needs no files beside it.
//!
//! Routes (no token: the assets hold no data; every API call the page
//! makes carries the token the user signed in with):
//!
//! * `GET /` and `GET /dashboard` redirect (303) to `/dashboard/`;
//! * `GET /dashboard/` is `index.html`, `GET /dashboard/{file}` the other
//!   assets ([`ASSETS`]); anything else under `/dashboard/` is a 404
//!   problem document.
//!
//! Every asset carries a strong `ETag` (SHA-256 of its bytes) and
//! `Cache-Control: no-cache`, so browsers revalidate and get a bodiless
//! 304 while it is unchanged; and a strict [`CONTENT_SECURITY_POLICY`]:
//! scripts, styles and connections only from this origin, no inline
//! script or style, no framing.
//!
//! ```no_run
//! # fn demo(state: gridlink_cloud::api::AppState<gridlink_cloud::store::AnyStore>) {
//! let app = gridlink_cloud::api::router(state); // includes these routes
//! # }
//! ```

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY as CSP_HEADER, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::api::ApiError;

/// The policy sent with every asset: nothing from other origins, no inline
/// code, no plugins, no framing; `fetch` only to this origin (the API and
/// its live stream).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name under `/dashboard/` (`index.html` is also `/dashboard/`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Every embedded file of `cloud/dashboard/`.
pub const ASSETS: [Asset; 6] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../dashboard/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../dashboard/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../dashboard/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../dashboard/api.js"),
    },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../dashboard/chart.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../dashboard/favicon.svg"),
    },
];

/// The `ETag` of each asset (same order as [`ASSETS`]): the first 128
/// bits of its SHA-256, quoted.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = ring::digest::digest(&ring::digest::SHA256, asset.body);
            let hex = digest.as_ref()[..16]
                .iter()
                .fold(String::with_capacity(32), |mut hex, b| {
                    use std::fmt::Write as _;
                    let _ = write!(hex, "{b:02x}");
                    hex
                });
            format!("\"{hex}\"")
        })
        .collect()
});

/// The dashboard's routes, merged into [`crate::api::router`].
pub fn routes<T: Clone + Send + Sync + 'static>() -> Router<T> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/dashboard/{*file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

/// Whether an `If-None-Match` header matches `etag` (a list, or `*`).
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        let path: String = format!("/dashboard/{name}").chars().take(256).collect();
        return ApiError::NoRoute(path).into_response();
    };
    let asset = ASSETS[index];
    let etag = ETAGS[index].as_str();
    let status = if matches(headers, etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut response = if status == StatusCode::OK {
        asset.body.into_response()
    } else {
        status.into_response()
    };
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(ETAG, value);
    }
    out.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        CSP_HEADER,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_and_if_none_match_is_parsed() {
        let tags: std::collections::HashSet<&String> = ETAGS.iter().collect();
        assert_eq!(tags.len(), ASSETS.len());
        let etag = &ETAGS[0];
        let mut headers = HeaderMap::new();
        headers.insert(
            IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{etag}")).unwrap(),
        );
        assert!(matches(&headers, etag));
        assert!(!matches(&headers, &ETAGS[1]));
        assert!(!matches(&HeaderMap::new(), etag));
    }

    #[test]
    fn index_loads_only_local_modules() {
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(index.contains(r#"<script type="module" src="app.js">"#));
        assert!(!index.contains("<style"), "inline styles break the CSP");
        assert!(!index.contains("http://") && !index.contains("https://"));
    }
}
