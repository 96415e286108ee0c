//! The Redis connection: made lazily, remade on failure, never showing the password.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use tokio::sync::OnceCell;

use super::{WindowTimes, MAX_WINDOWS};
use crate::resilience::ConfigError;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));
static ADJUST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("adjust.lua")));

/// What the script answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Reply {
    pub(crate) admitted: bool,
    pub(crate) wait_us: u64,
    pub(crate) remaining: f64,
    pub(crate) now_us: u64,
    /// When admitted, where the time the grant booked ends, per window.
    pub(crate) booked_until: WindowTimes,
    /// When admitted, each window's refund total (see `adjust.lua`).
    pub(crate) refunded: WindowTimes,
}

pub(crate) struct Connection {
    client: Client,
    /// A few multiplexed connections, used in turn: one alone caps throughput at low
    /// concurrency (each call waits its turn in one pipeline), and several keep a pipeline
    /// each at high concurrency. Each is built on first use: creating a manager needs a
    /// runtime and would otherwise fail while Redis is down.
    managers: Vec<OnceCell<ConnectionManager>>,
    next: AtomicUsize,
    key: String,
    call_timeout: Duration,
    /// `host:port/db`, for messages: the URL without credentials.
    address: String,
    /// Scrubbed from any message that might echo it.
    password: Option<String>,
}

impl Connection {
    pub(crate) fn new(
        url: &str,
        key: &str,
        call_timeout: Duration,
        connections: usize,
    ) -> Result<Self, ConfigError> {
        let client = Client::open(url).map_err(|_| ConfigError::InvalidRedisUrl)?;
        let info = client.get_connection_info();
        let address = format!("{}/{}", info.addr(), info.redis_settings().db());
        let password = info.redis_settings().password().map(str::to_owned);
        Ok(Connection {
            client,
            managers: (0..connections).map(|_| OnceCell::new()).collect(),
            next: AtomicUsize::new(0),
            // The hash tag pins the key to one cluster slot whatever else is added to it.
            key: format!("aegeantic:{{{key}}}"),
            call_timeout,
            address,
            password,
        })
    }

    /// Runs the GCRA script once (EVALSHA, loading it on NOSCRIPT), within the call timeout.
    pub(crate) async fn gcra(
        &self,
        tokens: u32,
        max_wait_us: u64,
        now_us: Option<u64>,
        windows: &[(u64, u64)],
    ) -> Result<Reply, RedisError> {
        let call = async {
            let mut manager = self.manager().await?;
            let mut invocation = GCRA.key(&self.key);
            invocation
                .arg(tokens)
                .arg(max_wait_us)
                .arg(now_us.map_or(-1, |now| now as i64));
            for &(interval, tolerance) in windows {
                invocation.arg(interval).arg(tolerance);
            }
            let reply: Vec<i64> = invocation.invoke_async(&mut manager).await?;
            let [admitted, wait_us, remaining, now_us, ref tats @ ..] = reply[..] else {
                return Err(RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "the GCRA script answered fewer than 4 numbers",
                )));
            };
            // Each window's new TAT, then each window's refund total.
            let (mut booked_until, mut refunded) = ([0; MAX_WINDOWS], [0; MAX_WINDOWS]);
            let (ends, totals) = tats.split_at(tats.len() / 2);
            for (to, from) in booked_until.iter_mut().zip(ends) {
                *to = (*from).max(0) as u64;
            }
            for (to, from) in refunded.iter_mut().zip(totals) {
                *to = (*from).max(0) as u64;
            }
            Ok(Reply {
                admitted: admitted == 1,
                wait_us: wait_us.max(0) as u64,
                remaining: remaining as f64 / 1e6,
                booked_until,
                refunded,
                now_us: now_us.max(0) as u64,
            })
        };
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
    }

    /// Runs the adjust script: `operation` of `tokens` on every window, as of the server's
    /// now; a grant's `booked_until` and `refunded` bound a refund.
    pub(crate) async fn adjust(
        &self,
        operation: &str,
        tokens: u64,
        (booked_until, refunded): (&WindowTimes, &WindowTimes),
        windows: &[(u64, u64)],
    ) -> Result<(), RedisError> {
        let call = async {
            let mut manager = self.manager().await?;
            let mut invocation = ADJUST.key(&self.key);
            invocation.arg(operation).arg(tokens);
            let bounds = booked_until.iter().zip(refunded);
            for (&(interval, tolerance), (end, mark)) in windows.iter().zip(bounds) {
                invocation.arg(interval).arg(tolerance).arg(end).arg(mark);
            }
            invocation.invoke_async::<()>(&mut manager).await
        };
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
    }

    /// Checks that every connection answers, within the call timeout.
    ///
    /// After a failure a manager keeps the failed reconnection's error and reports it to
    /// the next command, which starts a new reconnection in the background. So each
    /// connection is asked twice if need be: the second PING waits for a reconnection
    /// begun now, not for the outcome of one made while Redis was still down.
    pub(crate) async fn probe(&self) -> Result<(), RedisError> {
        let probe = async {
            for cell in &self.managers {
                let mut manager = self.init(cell).await?;
                if redis::cmd("PING")
                    .query_async::<()>(&mut manager)
                    .await
                    .is_err()
                {
                    redis::cmd("PING").query_async::<()>(&mut manager).await?;
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.call_timeout, probe)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
    }

    async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.managers.len();
        self.init(&self.managers[turn]).await
    }

    async fn init(
        &self,
        cell: &OnceCell<ConnectionManager>,
    ) -> Result<ConnectionManager, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.call_timeout))
            .set_response_timeout(Some(self.call_timeout))
            // One connection attempt per reconnection, never a series with back-off
            // delays (100 ms and more by default) that commands would wait out: while
            // Redis is down no command is sent but probes, and a probe must find a
            // restarted server at once.
            .set_number_of_retries(0);
        cell.get_or_try_init(|| async {
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
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
        write!(f, "redis://{}", self.address)
    }
}
