//! Who may open a WebSocket, decided before the upgrade: API keys (opt-in), browser origins
//! (opt-in), and which client a request counts against for the per-client quotas.
//!
//! Keys are held only as SHA-256 hashes, so a memory dump or a debug print shows no key, and
//! a presented key is checked by hashing it and looking the hash up. The key file is read at
//! start (a missing or empty file stops the start, naming the flag) and again on SIGHUP.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// The API keys of `--api-keys FILE`: one key per line; blank lines and lines starting with
/// `#` are skipped.
#[derive(Clone)]
pub struct ApiKeys {
    path: PathBuf,
    hashes: Arc<RwLock<HashSet<[u8; 32]>>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").field("path", &self.path).field("keys", &self.len()).finish()
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn read_hashes(path: &PathBuf) -> Result<HashSet<[u8; 32]>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let hashes: HashSet<_> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(hash).collect();
    if hashes.is_empty() {
        return Err(format!("{} holds no key (one key per line)", path.display()));
    }
    Ok(hashes)
}

impl ApiKeys {
    /// Reads the key file (the `--api-keys` value parser: an unreadable or empty file is
    /// refused at start).
    pub fn load(path: &str) -> Result<Self, String> {
        let path = PathBuf::from(path);
        let hashes = read_hashes(&path)?;
        Ok(ApiKeys { path, hashes: Arc::new(RwLock::new(hashes)) })
    }

    /// Reads the file again; on error the keys in use stay.
    pub fn reload(&self) {
        match read_hashes(&self.path) {
            Ok(hashes) => {
                let n = hashes.len();
                *self.hashes.write().unwrap_or_else(|p| p.into_inner()) = hashes;
                tracing::info!(keys = n, path = %self.path.display(), "API keys reloaded");
            }
            Err(e) => tracing::error!(error = %e, "API keys not reloaded; the previous keys stay in use"),
        }
    }

    /// How many keys are loaded.
    pub fn len(&self) -> usize {
        self.hashes.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is loaded (never, after a successful load).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client a valid `key` stands for; `None` when it is not one of the keys.
    fn check(&self, key: &str) -> Option<ClientId> {
        let h = hash(key);
        let known = self.hashes.read().unwrap_or_else(|p| p.into_inner()).contains(&h);
        known.then(|| ClientId::Key(u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))))
    }

    /// Reloads on every SIGHUP, for the life of the process (needs a Tokio runtime).
    pub fn reload_on_sighup(&self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP: API keys load only at start");
                    return;
                }
            };
            let keys = self.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    keys.reload();
                }
            });
        }
    }
}

/// Whom a connection counts against for the quotas: its API key (by a hash prefix, never the
/// key), or its IP address when keys are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// An API key (the first 8 bytes of its SHA-256).
    Key(u64),
    /// A client address.
    Ip(IpAddr),
}

impl ClientId {
    /// The id of an API key as metrics label it (see `img3d_key_jobs_total`): the first 16
    /// hex digits of its SHA-256, which the key's owner can compute and the metrics reader
    /// cannot turn back into the key. `None` for a client counted by address (addresses are
    /// not metric labels: unbounded).
    pub fn key_label(&self) -> Option<String> {
        match self {
            ClientId::Key(prefix) => Some(format!("{prefix:016x}")),
            ClientId::Ip(_) => None,
        }
    }
}

/// Why a request was refused before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No key, or not a known key: HTTP 401.
    Unauthorized,
    /// A browser page from an origin not in `--allowed-origins`: HTTP 403.
    Origin(String),
}

/// An address range, `10.0.0.0/8` or one address (`10.1.2.3`, a /32 or /128): what
/// `--trusted-proxies` lists, since a load balancer's address in a container network is known
/// only by its subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr =
            addr.parse().map_err(|_| format!("{s:?} is not an IP address or range (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?
            }
        };
        Ok(IpRange { addr, prefix })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Option<u128> {
            match (self.addr, ip) {
                (IpAddr::V4(_), IpAddr::V4(v)) => Some(u128::from(u32::from(v)) << 96),
                (IpAddr::V6(_), IpAddr::V6(v)) => Some(u128::from(v)),
                (IpAddr::V4(_), IpAddr::V6(v)) => v.to_ipv4_mapped().map(|v| u128::from(u32::from(v)) << 96),
                _ => None,
            }
        };
        let (Some(net), Some(ip)) = (bits(self.addr), bits(ip)) else { return false };
        // An IPv4 address sits in the top 32 bits, so one mask serves both families.
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
        net & mask == ip & mask
    }
}

/// The access rules of one gateway.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `--api-keys`; `None`: no key needed.
    pub keys: Option<ApiKeys>,
    /// `--allowed-origins`; empty: any origin.
    pub origins: Vec<String>,
    /// `--trusted-proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpRange>,
}

impl Access {
    /// Checks a WebSocket request from TCP peer `peer`; the client it counts against.
    pub fn admit(&self, headers: &HeaderMap, query: Option<&str>, peer: IpAddr) -> Result<ClientId, Denied> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
            if !self.origins.is_empty() && !self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                return Err(Denied::Origin(origin.to_owned()));
            }
        }
        let Some(keys) = &self.keys else {
            return Ok(ClientId::Ip(self.client_ip(headers, peer)));
        };
        let presented = bearer(headers).or_else(|| query_key(query)).ok_or(Denied::Unauthorized)?;
        keys.check(&presented).ok_or(Denied::Unauthorized)
    }

    /// The client's address: the last `X-Forwarded-For` hop not a trusted proxy, when the peer
    /// is one; the peer otherwise (anyone can write that header).
    fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|r| r.contains(ip));
        if !trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        hops.into_iter().rev().find(|ip| !trusted(*ip)).unwrap_or(peer)
    }
}

/// `Authorization: Bearer KEY`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim().to_owned())
}

/// `?key=KEY` (browsers cannot set headers on a WebSocket), percent-decoded.
fn query_key(query: Option<&str>) -> Option<String> {
    let raw = query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == "key")?.1;
    Some(percent_decode(raw))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys(lines: &str) -> (tempfile::TempDir, ApiKeys) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, lines).unwrap();
        let keys = ApiKeys::load(path.to_str().unwrap()).unwrap();
        (dir, keys)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    /// A key is accepted from the header or the query, a wrong or missing one is refused, and
    /// the key file's comments and blanks are skipped.
    #[test]
    fn keys_from_header_or_query() {
        let (_dir, keys) = keys("# ops\n\nalpha-1\n beta/2 \n");
        assert_eq!(keys.len(), 2);
        let access = Access { keys: Some(keys), ..Access::default() };
        let by_header = access.admit(&headers(&[("authorization", "Bearer alpha-1")]), None, PEER).unwrap();
        let by_query = access.admit(&HeaderMap::new(), Some("events=progress&key=alpha-1"), PEER).unwrap();
        assert_eq!(by_header, by_query, "the same key is the same client");
        assert!(access.admit(&HeaderMap::new(), Some("key=beta%2F2"), PEER).is_ok());
        assert_eq!(access.admit(&HeaderMap::new(), None, PEER), Err(Denied::Unauthorized));
        assert_eq!(
            access.admit(&headers(&[("authorization", "Bearer nope")]), None, PEER),
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            access.admit(&headers(&[("authorization", "Basic alpha-1")]), None, PEER),
            Err(Denied::Unauthorized)
        );
        assert!(!format!("{access:?}").contains("alpha"), "keys must not be printed");
    }

    /// A reload replaces the keys; a failed reload keeps the old ones.
    #[test]
    fn reload_replaces_keys() {
        let (dir, keys) = keys("old\n");
        let path = dir.path().join("keys");
        std::fs::write(&path, "new\n").unwrap();
        keys.reload();
        assert!(keys.check("new").is_some() && keys.check("old").is_none());
        std::fs::remove_file(&path).unwrap();
        keys.reload();
        assert!(keys.check("new").is_some());
        assert!(ApiKeys::load(path.to_str().unwrap()).is_err());
    }

    /// Origins are checked only when configured and only for requests that send one.
    #[test]
    fn key_ids_are_the_sha256_prefix() {
        let (_dir, keys) = keys("alpha-key\n");
        let id = keys.check("alpha-key").unwrap();
        // printf %s alpha-key | sha256sum | cut -c1-16
        let expected: String = hash("alpha-key")[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(id.key_label(), Some(expected));
        assert_eq!(ClientId::Ip("127.0.0.1".parse().unwrap()).key_label(), None);
    }

    #[test]
    fn origins() {
        let access = Access { origins: vec!["https://app.example".into()], ..Access::default() };
        assert!(access.admit(&headers(&[("origin", "https://app.example")]), None, PEER).is_ok());
        assert!(access.admit(&HeaderMap::new(), None, PEER).is_ok(), "non-browser clients send no origin");
        assert_eq!(
            access.admit(&headers(&[("origin", "https://evil.example")]), None, PEER),
            Err(Denied::Origin("https://evil.example".into()))
        );
    }

    /// `X-Forwarded-For` names the client only when the peer is a trusted proxy.
    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.1")]);
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let untrusted = Access::default();
        assert_eq!(untrusted.admit(&xff, None, PEER), Ok(ClientId::Ip(PEER)));
        let trusted =
            Access { trusted_proxies: vec![IpRange::parse("10.0.0.0/8").unwrap()], ..Access::default() };
        assert_eq!(trusted.admit(&xff, None, PEER), Ok(ClientId::Ip(client)));
        assert_eq!(trusted.admit(&HeaderMap::new(), None, PEER), Ok(ClientId::Ip(PEER)));
    }

    /// Ranges and single addresses, both families; nonsense refused.
    #[test]
    fn ip_ranges() {
        let net = IpRange::parse("172.16.0.0/12").unwrap();
        assert!(net.contains("172.20.1.2".parse().unwrap()));
        assert!(!net.contains("172.32.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:172.16.0.9".parse().unwrap()));
        let one = IpRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap()));
        let v6 = IpRange::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("fe80::1".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(IpRange::parse("10.0.0.0/33").is_err() && IpRange::parse("nope").is_err());
    }
}
