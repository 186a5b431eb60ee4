//! The WebSocket upgrade of `/generate3d`, done here instead of by axum's extractor so that a
//! session owns a tokio-tungstenite stream.
//!
//! axum's `Message` can only send a message whole: the library then copies all of it into the
//! connection's write buffer, and that buffer keeps its capacity until the connection closes
//! (a client sent one 20 MB part held 20 MB for the rest of its connection). With the stream
//! itself, a session sends a part as fragments of [`FRAGMENT`] bytes, sliced from the shared
//! part without copying it, so the write buffer stays small.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocketConfig};

/// An upgraded client connection.
pub type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// The size of the fragments a large binary message is sent in: big enough that the frame
/// headers cost nothing (10 bytes per 64 KiB), small enough that the write buffer each
/// connection keeps stays small.
pub const FRAGMENT: usize = 64 << 10;

/// A valid WebSocket upgrade request (RFC 6455 section 4.2.1), not yet answered.
#[derive(Debug)]
pub struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade: answered 400 (426 for a wrong version) with the
/// reason, as axum's extractor did.
#[derive(Debug)]
pub struct NotUpgrade(StatusCode, &'static str);

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        let mut response = (self.0, format!("{}\n", self.1)).into_response();
        if self.0 == StatusCode::UPGRADE_REQUIRED {
            response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

fn header_has_token(headers: &HeaderMap, name: axum::http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotUpgrade> {
        let bad = |reason| NotUpgrade(StatusCode::BAD_REQUEST, reason);
        if parts.method != Method::GET {
            return Err(bad("a WebSocket upgrade must be a GET"));
        }
        if !header_has_token(&parts.headers, CONNECTION, "upgrade")
            || !header_has_token(&parts.headers, UPGRADE, "websocket")
        {
            return Err(bad(
                "this endpoint speaks WebSocket: `Connection: upgrade` and `Upgrade: websocket` are missing",
            ));
        }
        if parts.headers.get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return Err(NotUpgrade(StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is spoken"));
        }
        let key =
            parts.headers.get(SEC_WEBSOCKET_KEY).ok_or_else(|| bad("`Sec-WebSocket-Key` is missing"))?;
        let accept =
            HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a valid header");
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| bad("this connection cannot be upgraded"))?;
        Ok(Upgrade { accept, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and, once the connection is handed over, runs `session` on it (in a task of
    /// its own). A connection that fails to upgrade is dropped with a debug log line.
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws =
                        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                            .await;
                    session(ws).await;
                }
                Err(e) => tracing::debug!(error = %e, "the upgrade did not complete"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, self.accept);
        response
    }
}
