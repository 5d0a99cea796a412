//! The web dashboard: one static page and its assets, compiled into the
//! binary so that `serve` needs no files beside it. They hold no data and
//! need no key; the page asks for one and sends it with its API calls.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

const INDEX: &str = include_str!("../assets/index.html");

/// (name, media type, content) of every file under `/assets/`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

/// Headers every dashboard response carries: revalidated on each load (a
/// new binary must not run with an old script), and a policy that lets the
/// page talk to its own origin only and play audio from object URLs.
fn with_headers(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

/// `GET /`: the dashboard page.
pub async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{name}`: the page's script, style sheet and icon.
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, content_type, bytes)| with_headers(content_type, bytes))
        .ok_or_else(|| ApiError::not_found(format!("no asset {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_only_to_assets_that_exist() {
        for reference in INDEX.split("/assets/").skip(1) {
            let name: String = reference
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect();
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "index.html refers to /assets/{name}, which is not embedded"
            );
        }
    }
}
