//! The process's Prometheus recorder, and `GET /metrics` on a free loopback port that
//! renders it. The recorder is global: a process installs it once.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The wait histogram's bucket bounds, in seconds.
const WAIT_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the Prometheus recorder as the process's global one. Names follow
/// Prometheus's conventions (`aegeantic_attempts_total`); the wait is a histogram with
/// buckets rather than the exporter's default summary, so that a dashboard can aggregate
/// it across processes.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(
            Matcher::Full("aegeantic.rate_limit.wait".to_owned()),
            &WAIT_BUCKETS,
        )?
        .install_recorder()
}

/// The endpoint; dropping it stops it.
pub struct Endpoint {
    addr: SocketAddr,
    tasks: [JoinHandle<()>; 2],
}

impl Endpoint {
    /// Serves `handle` at `/metrics` on a free port of 127.0.0.1, and runs the recorder's
    /// upkeep (which bounds what it buffers between scrapes) every few seconds.
    pub async fn serve(handle: PrometheusHandle) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upkeep = {
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            })
        };
        let app = Router::new().route("/metrics", get(move || async move { handle.render() }));
        let server = tokio::spawn(async move {
            // Ends only when the task is aborted.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Endpoint {
            addr,
            tasks: [upkeep, server],
        })
    }

    /// The URL to scrape.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
