//! Where the backend's connections come from: one Redis server at a URL, or the current
//! master of a group that Redis Sentinel watches.
//!
//! With Sentinel, every new connection (pooled or pub/sub) asks the sentinels for the master
//! first, so after a failover new connections reach the new master. Connections to the old
//! one die with it (or are closed by Sentinel when it demotes a master that comes back:
//! Sentinel sends `CLIENT KILL` to instances it reconfigures); the pool also checks `ROLE` on
//! every recycle, so a connection to a demoted master is never handed out for writes.
//!
//! The lookup is our own (`SENTINEL get-master-addr-by-name`, then `ROLE` on the answer),
//! not the `redis` crate's `sentinel` feature: this way every step runs under the backend's
//! connect and command timeouts (a blackholed sentinel must cost seconds, not a hang), and
//! no further crates are linked.

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Client, Cmd, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, RedisFuture, RedisResult, Value,
};

/// The URL schemes naming a Sentinel-watched group (TLS to sentinels and servers with `rediss`).
const SENTINEL_SCHEMES: [(&str, bool); 2] = [("redis+sentinel://", false), ("rediss+sentinel://", true)];

/// What the backend connects to.
#[derive(Debug)]
pub(crate) enum Target {
    /// `redis://` or `rediss://`: one server.
    Direct(Client),
    /// `redis+sentinel://` or `rediss+sentinel://`: the master of a Sentinel group.
    Sentinel(SentinelGroup),
}

/// A master name and the sentinels to ask for it.
#[derive(Debug)]
pub(crate) struct SentinelGroup {
    sentinels: Vec<ConnectionInfo>,
    master: String,
    tls: bool,
    /// Credentials and database of the servers (not of the sentinels).
    server: RedisConnectionInfo,
    connect_timeout: Duration,
}

impl Target {
    /// Parses `url`: `redis[s]://[[USER]:PASSWORD@]HOST:PORT[/DB]` for one server, or
    /// `redis[s]+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]` for the
    /// master `MASTER` watched by the sentinels at the listed addresses. The credentials and
    /// database are the servers'; the sentinels are asked without a password.
    pub(crate) fn parse(url: &str, connect_timeout: Duration) -> RedisResult<Target> {
        let Some((rest, tls)) =
            SENTINEL_SCHEMES.iter().find_map(|(s, tls)| url.strip_prefix(s).map(|r| (r, *tls)))
        else {
            return Ok(Target::Direct(Client::open(url)?));
        };
        let invalid = |why: &str| {
            RedisError::from((ErrorKind::InvalidClientConfig, "bad Sentinel URL", why.to_owned()))
        };
        let (authority, path) =
            rest.split_once('/').ok_or_else(|| invalid("no /MASTER after the sentinels"))?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => (master, Some(db)),
            None => (path, None),
        };
        if master.is_empty() {
            return Err(invalid("an empty master name"));
        }
        let scheme = if tls { "rediss" } else { "redis" };
        let sentinels = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}").into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        if sentinels.is_empty() {
            return Err(invalid("no sentinel address"));
        }
        // The servers' credentials and database, parsed (and percent-decoded) by the redis
        // crate from an equivalent one-server URL.
        let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let db = db.filter(|d| !d.is_empty()).map(|d| format!("/{d}")).unwrap_or_default();
        let server = format!("redis://{auth}{}{db}", hosts.split(',').next().unwrap_or_default())
            .into_connection_info()?
            .redis_settings()
            .clone();
        Ok(Target::Sentinel(SentinelGroup {
            sentinels,
            master: master.to_owned(),
            tls,
            server,
            connect_timeout,
        }))
    }

    /// A client for the server to use now (with Sentinel: the master the sentinels name).
    pub(crate) async fn client(&self) -> RedisResult<Client> {
        match self {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel(group) => group.master().await,
        }
    }
}

impl SentinelGroup {
    /// Asks each sentinel in turn for the master and returns the first answer that is a
    /// reachable server in the master role (a sentinel may still name a master that died, or
    /// lag behind a failover the others completed).
    async fn master(&self) -> RedisResult<Client> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match self.ask(sentinel).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| (ErrorKind::Io, "no sentinel answered").into()))
    }

    async fn ask(&self, sentinel: &ConnectionInfo) -> RedisResult<Client> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout));
        let mut conn =
            Client::open(sentinel.clone())?.get_multiplexed_async_connection_with_config(&cfg).await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(&mut conn)
            .await?;
        let (host, port) = addr.ok_or_else(|| {
            RedisError::from((ErrorKind::Io, "the sentinel does not know the master", self.master.clone()))
        })?;
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let info = format!("{scheme}://{host}:{port}")
            .into_connection_info()?
            .set_redis_settings(self.server.clone());
        let client = Client::open(info)?;
        let mut server = client.get_multiplexed_async_connection_with_config(&cfg).await?;
        if !is_master(&mut server).await? {
            return Err((
                ErrorKind::Io,
                "the server the sentinel names is not a master (failover under way)",
            )
                .into());
        }
        Ok(client)
    }
}

/// Whether the server on `conn` is a master (`ROLE`'s first element).
async fn is_master(conn: &mut MultiplexedConnection) -> RedisResult<bool> {
    let role: Vec<Value> = redis::cmd("ROLE").query_async(conn).await?;
    Ok(matches!(role.first(), Some(Value::BulkString(b)) if b == b"master")
        || matches!(role.first(), Some(Value::SimpleString(s)) if s == "master"))
}

/// Makes and checks the pooled connections.
#[derive(Debug)]
pub(crate) struct Manager {
    target: std::sync::Arc<Target>,
    config: AsyncConnectionConfig,
}

impl Manager {
    pub(crate) fn new(target: std::sync::Arc<Target>, config: AsyncConnectionConfig) -> Self {
        Manager { target, config }
    }
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        let client = self.target.client().await?;
        client.get_multiplexed_async_connection_with_config(&self.config).await
    }

    /// Before reuse: a PING (the connection is alive) or, with Sentinel, `ROLE` (alive and
    /// still on a master).
    async fn recycle(&self, conn: &mut MultiplexedConnection, _: &Metrics) -> RecycleResult<RedisError> {
        match &*self.target {
            Target::Direct(_) => {
                let _: String = redis::cmd("PING").query_async(conn).await?;
                Ok(())
            }
            Target::Sentinel(_) if is_master(conn).await? => Ok(()),
            Target::Sentinel(_) => Err(RecycleError::message("the server is no longer the master")),
        }
    }
}

/// The pool of command connections.
pub(crate) type Pool = managed::Pool<Manager, Conn>;

/// A pooled connection: returned to the pool on drop; usable wherever the `redis` crate takes
/// a connection.
pub(crate) struct Conn(managed::Object<Manager>);

impl From<managed::Object<Manager>> for Conn {
    fn from(object: managed::Object<Manager>) -> Self {
        Conn(object)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelGroup {
        match Target::parse(url, Duration::from_secs(1)).unwrap() {
            Target::Sentinel(group) => group,
            Target::Direct(_) => panic!("{url} parsed as one server"),
        }
    }

    /// Sentinel URLs: every sentinel address, the master name, the servers' password and
    /// database (percent-decoded), TLS from the scheme.
    #[test]
    fn sentinel_urls_parse() {
        let g = sentinel("redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2:26380,sentinel-3:26379/queue/2");
        let addrs: Vec<String> = g.sentinels.iter().map(|s| s.addr().to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:26379", "10.0.0.2:26380", "sentinel-3:26379"]);
        assert_eq!(g.master, "queue");
        assert_eq!(g.server.password(), Some("p@ss"));
        assert_eq!(g.server.db(), 2);
        assert!(!g.tls);

        let g = sentinel("rediss+sentinel://s1:26379/mymaster");
        assert!(g.tls && g.server.password().is_none() && g.server.db() == 0);
        assert_eq!(g.master, "mymaster");
    }

    /// A plain URL is one server; a Sentinel URL without a master or sentinel is refused.
    #[test]
    fn other_urls() {
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379", Duration::from_secs(1)),
            Ok(Target::Direct(_))
        ));
        for bad in ["redis+sentinel://s1:26379", "redis+sentinel://s1:26379/", "redis+sentinel:///mymaster"] {
            assert!(Target::parse(bad, Duration::from_secs(1)).is_err(), "{bad} was accepted");
        }
    }
}
