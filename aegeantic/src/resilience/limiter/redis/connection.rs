//! The Redis connection, to one node or to a cluster: made lazily, remade on failure,
//! never showing the password.
//!
//! Every call runs a Lua script on one key. On a cluster the client sends it to the master
//! of the key's slot and follows `MOVED`/`ASK` redirections; a script a node has not seen
//! (a promoted replica, a restarted or flushed node) is sent in full there, by `EVAL` on
//! the same key, so script loading never depends on reaching every node.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, Script, ServerErrorKind, Value,
};
use tokio::sync::OnceCell;

use crate::resilience::ConfigError;

/// Where the shared state lives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    /// One server, by URL.
    Node(&'a str),
    /// A cluster, by the URLs of some of its nodes (the client discovers the rest).
    Cluster(&'a [&'a str]),
}

/// A Lua script: its SHA1 for `EVALSHA`, its source for a node that lacks it.
pub(crate) struct Lua {
    script: Script,
    source: &'static str,
    // The script's name in the Redis call metrics.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    name: &'static str,
}

impl Lua {
    pub(crate) fn new(name: &'static str, source: &'static str) -> Self {
        Lua {
            script: Script::new(source),
            source,
            name,
        }
    }
}

enum Clients {
    Node(Client),
    Cluster(Box<ClusterClient>),
}

/// One multiplexed connection of either kind.
#[derive(Clone)]
pub(crate) enum Link {
    Node(ConnectionManager),
    /// A connection for blocking commands alone, dropped on failure.
    Dedicated(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Node(link) => link.req_packed_command(cmd),
            Link::Dedicated(link) => link.req_packed_command(cmd),
            Link::Cluster(link) => link.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Node(link) => link.req_packed_commands(pipeline, offset, count),
            Link::Dedicated(link) => link.req_packed_commands(pipeline, offset, count),
            Link::Cluster(link) => link.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Node(link) => link.get_db(),
            Link::Dedicated(link) => link.get_db(),
            Link::Cluster(link) => link.get_db(),
        }
    }
}

pub(crate) struct Connection {
    clients: Clients,
    /// A few multiplexed connections, used in turn: one alone caps throughput at low
    /// concurrency (each call waits its turn in one pipeline), and several keep a pipeline
    /// each at high concurrency. Each is built on first use: creating one needs a runtime,
    /// and a cluster connection needs the cluster to answer.
    links: Vec<OnceCell<Link>>,
    next: AtomicUsize,
    key: String,
    call_timeout: Duration,
    /// `host:port/db` (or the cluster's nodes), for messages: no credentials.
    address: String,
    /// Scrubbed from any message that might echo it.
    password: Option<String>,
}

impl Connection {
    /// A connection whose scripts all run on `key`.
    pub(crate) fn new(
        target: Target<'_>,
        key: String,
        call_timeout: Duration,
        connections: usize,
    ) -> Result<Self, ConfigError> {
        let (clients, address, password) = match target {
            Target::Node(url) => {
                let client = Client::open(url).map_err(|_| ConfigError::InvalidRedisUrl)?;
                let info = client.get_connection_info();
                let address = format!("{}/{}", info.addr(), info.redis_settings().db());
                let password = info.redis_settings().password().map(str::to_owned);
                (Clients::Node(client), address, password)
            }
            Target::Cluster(urls) => {
                let infos = urls
                    .iter()
                    .map(|url| url.into_connection_info())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ConfigError::InvalidRedisUrl)?;
                let Some(first) = infos.first() else {
                    return Err(ConfigError::NoClusterNodes);
                };
                let password = first.redis_settings().password().map(str::to_owned);
                let nodes: Vec<String> = infos.iter().map(|info| info.addr().to_string()).collect();
                let client = ClusterClient::builder(infos)
                    .connection_timeout(call_timeout)
                    .response_timeout(call_timeout)
                    // A call gets one round of redirections and retries within the call
                    // timeout; past it, the outage logic takes over and probes.
                    .retries(2)
                    .min_retry_wait(1)
                    .max_retry_wait(20)
                    .build()
                    .map_err(|_| ConfigError::InvalidRedisUrl)?;
                (
                    Clients::Cluster(Box::new(client)),
                    format!("cluster {}", nodes.join(",")),
                    password,
                )
            }
        };
        Ok(Connection {
            clients,
            links: (0..connections).map(|_| OnceCell::new()).collect(),
            next: AtomicUsize::new(0),
            key,
            call_timeout,
            address,
            password,
        })
    }

    /// Runs `lua` on the keys named by the connection's key plus each of `suffixes` (one
    /// slot: the key's hash tag covers them all), with the arguments `args` appends
    /// (EVALSHA, the full source where the node lacks it), within the call timeout.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        lua: &Lua,
        suffixes: &[&str],
        args: impl Fn(&mut Cmd),
    ) -> Result<T, RedisError> {
        let keys = |cmd: &mut Cmd| {
            cmd.arg(suffixes.len());
            for suffix in suffixes {
                cmd.arg(format!("{}{suffix}", self.key));
            }
        };
        let call = async {
            let mut link = self.link().await?;
            let mut by_hash = redis::cmd("EVALSHA");
            by_hash.arg(lua.script.get_hash());
            keys(&mut by_hash);
            args(&mut by_hash);
            match by_hash.query_async(&mut link).await {
                Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    let mut in_full = redis::cmd("EVAL");
                    in_full.arg(lua.source);
                    keys(&mut in_full);
                    args(&mut in_full);
                    in_full.query_async(&mut link).await
                }
                result => result,
            }
        };
        #[cfg(feature = "metrics")]
        let started = tokio::time::Instant::now();
        let result = self.within_timeout(call).await;
        #[cfg(feature = "metrics")]
        crate::observe::metrics::redis_call(lua.name, started.elapsed(), result.is_ok());
        result
    }

    /// Checks that every connection answers for the key, within the call timeout.
    ///
    /// After a failure a connection manager keeps the failed reconnection's error and
    /// reports it to the next command, which starts a new reconnection in the background.
    /// So each connection is asked twice if need be: the second request waits for a
    /// reconnection begun now, not for the outcome of one made while Redis was still down.
    /// The request names the key, so on a cluster it reaches the node that serves it.
    pub(crate) async fn probe(&self) -> Result<(), RedisError> {
        let probe = async {
            for cell in &self.links {
                let mut link = self.init(cell).await?;
                let mut exists = redis::cmd("EXISTS");
                exists.arg(&self.key);
                if exists.query_async::<()>(&mut link).await.is_err() {
                    exists.query_async::<()>(&mut link).await?;
                }
            }
            Ok(())
        };
        self.within_timeout(probe).await
    }

    /// Pops the head of the list at the key plus `suffix`, waiting up to `wait` for one
    /// (`BLPOP`). A blocking command would hold up every call behind it on a shared
    /// connection, so it runs on `dedicated`, a connection of its own made on first use.
    pub(crate) async fn blocking_pop(
        &self,
        dedicated: &mut Option<Link>,
        suffix: &str,
        wait: Duration,
    ) -> Result<Option<String>, RedisError> {
        let patience = wait.saturating_add(self.call_timeout);
        let link = match dedicated {
            Some(link) => link,
            None => {
                let made = match &self.clients {
                    Clients::Node(client) => {
                        let config = AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(self.call_timeout))
                            .set_response_timeout(Some(patience));
                        let made = client.get_multiplexed_async_connection_with_config(&config);
                        Link::Dedicated(self.within_timeout(made).await?)
                    }
                    Clients::Cluster(client) => {
                        let config = ClusterConfig::new()
                            .set_connection_timeout(self.call_timeout)
                            .set_response_timeout(patience);
                        let made = client.get_async_connection_with_config(config);
                        Link::Cluster(self.within_timeout(made).await?)
                    }
                };
                dedicated.insert(made)
            }
        };
        let mut pop = redis::cmd("BLPOP");
        pop.arg(format!("{}{suffix}", self.key))
            .arg(wait.as_secs_f64());
        let popped: Option<(String, String)> =
            tokio::time::timeout(patience, pop.query_async(link))
                .await
                .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
                .inspect_err(|_| *dedicated = None)?;
        Ok(popped.map(|(_, value)| value))
    }

    async fn within_timeout<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
    }

    async fn link(&self) -> Result<Link, RedisError> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.links.len();
        self.init(&self.links[turn]).await
    }

    async fn init(&self, cell: &OnceCell<Link>) -> Result<Link, RedisError> {
        cell.get_or_try_init(|| async {
            match &self.clients {
                Clients::Node(client) => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.call_timeout))
                        .set_response_timeout(Some(self.call_timeout))
                        // One connection attempt per reconnection, never a series with
                        // back-off delays (100 ms and more by default) that commands would
                        // wait out: while Redis is down no command is sent but probes, and
                        // a probe must find a restarted server at once.
                        .set_number_of_retries(0);
                    ConnectionManager::new_lazy_with_config(client.clone(), config).map(Link::Node)
                }
                Clients::Cluster(client) => client.get_async_connection().await.map(Link::Cluster),
            }
        })
        .await
        .cloned()
    }

    /// The error as text, with the password scrubbed should the server or driver echo it.
    pub(crate) fn describe(&self, error: &RedisError) -> String {
        let text = format!("redis at {}: {error}", self.address);
        match &self.password {
            Some(password) if !password.is_empty() => text.replace(password.as_str(), "***"),
            _ => text,
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.clients {
            Clients::Node(_) => write!(f, "redis://{}", self.address),
            Clients::Cluster(_) => write!(f, "redis {}", self.address),
        }
    }
}
