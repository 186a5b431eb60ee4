//! `GET /` and `GET /assets/{file}`: the web page (web/), one more client of the
//! `/generate3d` protocol, embedded in the binary at compile time (gateway/build.rs), so it
//! needs no files, CDN or network at run time and every gateway behind a load balancer serves
//! the same bytes.
//!
//! Headers: the content type by extension; `index.html` is revalidated on every load
//! (`no-cache` + ETag) while the assets, whose names carry a hash of their content, are
//! `immutable` for a year; gzip when the client accepts it (compressed at compile time); and a
//! strict Content-Security-Policy: only this origin's scripts, styles and connections (the
//! WebSocket is same-origin), `blob:` for the parts the page shows, no inline code, no framing.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page's Content-Security-Policy. `blob:`: the result parts are shown and downloaded from
/// object URLs, and three.js's GLTFLoader fetches the GLB's embedded texture from one.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; connect-src 'self' blob:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// `Cache-Control` of the content-hashed assets: their name changes when they do.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One embedded file of web/dist.
struct Asset {
    /// URL path, e.g. `/assets/app-T5ISI2DM.js`.
    path: &'static str,
    /// The file as built.
    raw: &'static [u8],
    /// The same, gzipped.
    gzip: &'static [u8],
    /// A fingerprint of `raw`, quoted as an ETag.
    etag: &'static str,
}

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The routes serving the page.
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/assets/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    respond("/index.html", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    respond(&format!("/assets/{file}"), &headers)
}

fn respond(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let hashed = path != "/index.html";
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(if hashed { IMMUTABLE } else { "no-cache" }));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let revalidated = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
    if revalidated {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if accepts_gzip(request) {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (headers, asset.gzip).into_response()
    } else {
        (headers, asset.raw).into_response()
    }
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(request: &HeaderMap) -> bool {
    let Some(accept) = request.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused =
            parts.any(|p| p.replace(' ', "").strip_prefix("q=").is_some_and(|q| q.parse::<f32>() == Ok(0.0)));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        h
    }

    /// gzip is chosen only when listed and not refused with q=0.
    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(&accept("gzip, deflate, br")));
        assert!(accepts_gzip(&accept("br;q=1.0, gzip;q=0.5")));
        assert!(accepts_gzip(&accept("*")));
        assert!(!accepts_gzip(&accept("gzip;q=0")));
        assert!(!accepts_gzip(&accept("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    /// The embedded page is the built one: an index naming hashed assets that are embedded too.
    #[test]
    fn index_names_embedded_assets() {
        let index = ASSETS.iter().find(|a| a.path == "/index.html").expect("index.html embedded");
        let html = std::str::from_utf8(index.raw).unwrap();
        let named: Vec<&str> = html.split('"').filter(|s| s.starts_with("/assets/")).collect();
        assert_eq!(named.len(), 2, "one script and one stylesheet: {named:?}");
        for path in named {
            assert!(ASSETS.iter().any(|a| a.path == path), "{path} is named by index.html but not embedded");
        }
    }
}
