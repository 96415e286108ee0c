//! The limiter's two scripts over a [`Connection`]: admission (`gcra.lua`) and changes
//! outside admission (`adjust.lua`).

use std::sync::LazyLock;

use redis::RedisError;

use super::connection::{Connection, Lua};
use super::{WindowTimes, MAX_WINDOWS};

static GCRA: LazyLock<Lua> = LazyLock::new(|| Lua::new("gcra", include_str!("gcra.lua")));
static ADJUST: LazyLock<Lua> = LazyLock::new(|| Lua::new("adjust", include_str!("adjust.lua")));

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

/// Runs the GCRA script once.
pub(crate) async fn gcra(
    connection: &Connection,
    tokens: u32,
    max_wait_us: u64,
    now_us: Option<u64>,
    windows: &[(u64, u64)],
) -> Result<Reply, RedisError> {
    let reply: Vec<i64> = connection
        .eval(&GCRA, &[""], |invocation| {
            invocation
                .arg(tokens)
                .arg(max_wait_us)
                .arg(now_us.map_or(-1, |now| now as i64));
            for &(interval, tolerance) in windows {
                invocation.arg(interval).arg(tolerance);
            }
        })
        .await?;
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
}

/// Runs the adjust script: `operation` of `tokens` on every window, as of the server's
/// now; a grant's `booked_until` and `refunded` bound a refund.
pub(crate) async fn adjust(
    connection: &Connection,
    operation: &str,
    tokens: u64,
    (booked_until, refunded): (&WindowTimes, &WindowTimes),
    windows: &[(u64, u64)],
) -> Result<(), RedisError> {
    connection
        .eval(&ADJUST, &[""], |invocation| {
            invocation.arg(operation).arg(tokens);
            let bounds = booked_until.iter().zip(refunded);
            for (&(interval, tolerance), (end, mark)) in windows.iter().zip(bounds) {
                invocation.arg(interval).arg(tolerance).arg(end).arg(mark);
            }
        })
        .await
}
