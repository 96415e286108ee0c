//! A flaky upstream on a free loopback port: most requests succeed after a short delay,
//! some fail with 503, some are throttled with 429 and a `retry-after-ms` the client
//! should honour. The pattern follows the order of arrival, so a run's mix of faults is the
//! same whatever the machine's speed.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The delay a 429 asks for, in milliseconds.
pub const RETRY_AFTER_MS: u64 = 150;
/// How long a successful request takes.
const WORK: Duration = Duration::from_millis(5);

/// The running server; dropping it stops it.
pub struct Upstream {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Upstream {
    /// Binds a free port on 127.0.0.1 and serves `GET /work`.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/work", get(work))
            .with_state(Arc::new(AtomicU64::new(0)));
        let server = tokio::spawn(async move {
            // Ends only when the task is aborted; a failed accept is retried by axum.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Upstream { addr, server })
    }

    /// The URL of the one endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/work", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn work(State(arrivals): State<Arc<AtomicU64>>) -> axum::response::Response {
    let n = arrivals.fetch_add(1, Ordering::Relaxed);
    if n % 13 == 5 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after-ms", RETRY_AFTER_MS.to_string())],
        )
            .into_response();
    }
    if n % 7 == 3 {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    tokio::time::sleep(WORK).await;
    "done".into_response()
}
