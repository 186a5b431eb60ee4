//! Client settings, with the reason for each default.

use std::time::Duration;

use crate::ClientError;

/// How a [`crate::Client`] connects and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The service endpoint, e.g. `ws://127.0.0.1:8080/generate3d` (`wss://` needs the `tls`
    /// feature, on by default: rustls with the system's root certificates).
    pub url: String,
    /// Application-level timeout from sending the image to the final status (default 5 min:
    /// a CRM job takes tens of seconds on a GPU, minutes on a busy queue). On expiry the
    /// connection is closed, which cancels the job on the server.
    pub timeout: Duration,
    /// Limit on opening one connection, TCP and WebSocket handshake together (default 10 s).
    pub connect_timeout: Duration,
    /// Connection attempts per request before giving up (default 2: fail fast, one retry for
    /// a momentary hiccup; never a background reconnect loop).
    pub connect_attempts: u32,
    /// Pause between connection attempts (default 250 ms).
    pub retry_delay: Duration,
    /// Send a WebSocket ping this often and drop the connection when the previous ping got no
    /// pong (default off: the server pings, and the client answers automatically).
    pub ping_interval: Option<Duration>,
    /// Ask for the opt-in `queued`/`progress` messages (`?events=progress`).
    pub progress_events: bool,
    /// Per-job options for every job of the connection (on its query: `?seed=7&formats=zip,glb`);
    /// the default asks for nothing, i.e. the original protocol.
    pub options: img3d_protocol::JobOptions,
    /// Largest message accepted from the server (default 512 MiB; a result ZIP is ~10-40 MB,
    /// and the default of the WebSocket library, 64 MiB, is too close for comfort).
    pub max_message_bytes: usize,
}

impl ClientConfig {
    /// The defaults for a server URL.
    pub fn new(url: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            timeout: Duration::from_secs(5 * 60),
            connect_timeout: Duration::from_secs(10),
            connect_attempts: 2,
            retry_delay: Duration::from_millis(250),
            ping_interval: None,
            progress_events: false,
            options: img3d_protocol::JobOptions::default(),
            max_message_bytes: 512 << 20,
        }
    }

    /// The URL actually connected to: [`ClientConfig::url`] plus `events=progress` and the job
    /// options when asked.
    pub fn request_url(&self) -> Result<String, ClientError> {
        let url = self.url.trim();
        let invalid =
            |reason: &str| ClientError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() };
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("wss://"))
            .ok_or_else(|| invalid("expected ws://HOST:PORT/generate3d or wss://..."))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("no host"));
        }
        if url.contains('#') {
            return Err(invalid("a WebSocket URL cannot have a #fragment"));
        }
        let mut query = Vec::new();
        if self.progress_events {
            query.push(format!("events={}", img3d_protocol::EVENTS_PROGRESS));
        }
        let options = self.options.to_query();
        if !options.is_empty() {
            query.push(options);
        }
        if query.is_empty() {
            return Ok(url.to_owned());
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{sep}{}", query.join("&")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Progress events and job options go on the query, after any query the URL already has;
    /// with neither, the URL is left as given.
    #[test]
    fn request_url_carries_options() {
        let mut config = ClientConfig::new("ws://h:1/generate3d");
        assert_eq!(config.request_url().unwrap(), "ws://h:1/generate3d");
        config.options.seed = Some(7);
        config.options.formats = Some(vec![img3d_protocol::Format::Zip, img3d_protocol::Format::Glb]);
        assert_eq!(config.request_url().unwrap(), "ws://h:1/generate3d?seed=7&formats=zip,glb");
        config.progress_events = true;
        config.url = "ws://h:1/generate3d?key=k".into();
        assert_eq!(
            config.request_url().unwrap(),
            "ws://h:1/generate3d?key=k&events=progress&seed=7&formats=zip,glb"
        );
    }
}
