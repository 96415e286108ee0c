//! What the scripted servers share: a listener on `127.0.0.1:0`, one task per connection
//! that a reply can kill and that stops with the server, the script of replies and the
//! record of requests.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::{Body, Bytes};
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use futures_core::Stream;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// The replies still to play and the requests seen, shared with the handler as its state.
pub(crate) struct Script<R, Q> {
    replies: Mutex<VecDeque<R>>,
    requests: Mutex<Vec<Q>>,
}

impl<R, Q> Script<R, Q> {
    /// Records `request` and takes the next reply, if any is left.
    pub(crate) fn answer(&self, request: Q) -> Option<R> {
        self.record(request);
        lock(&self.replies).pop_front()
    }

    /// Records `request` without taking a reply, for a request refused before the script
    /// is consulted.
    pub(crate) fn record(&self, request: Q) {
        lock(&self.requests).push(request);
    }
}

/// Closes the connection the request came on, once notified.
#[derive(Clone)]
pub(crate) struct Kill(pub(crate) Arc<Notify>);

/// A running scripted server. Dropping it stops the server and closes its connections.
pub(crate) struct ScriptedServer<R, Q> {
    addr: SocketAddr,
    script: Arc<Script<R, Q>>,
    accept: JoinHandle<()>,
    // Dropping the sender wakes every connection task, which then closes.
    _shutdown: watch::Sender<()>,
}

impl<R, Q> ScriptedServer<R, Q>
where
    R: Send + 'static,
    Q: Clone + Send + 'static,
{
    /// Serves every request with `handler`, which reads `script` through its state and may
    /// take a [`Kill`] extension.
    pub(crate) async fn start<H, T>(
        script: impl IntoIterator<Item = R>,
        handler: H,
    ) -> io::Result<Self>
    where
        H: Handler<T, Arc<Script<R, Q>>>,
        T: 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let script = Arc::new(Script {
            replies: Mutex::new(script.into_iter().collect()),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .fallback(handler)
            .with_state(Arc::clone(&script));
        let (shutdown, watcher) = watch::channel(());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let kill = Arc::new(Notify::new());
                let app = router.clone().layer(Extension(Kill(Arc::clone(&kill))));
                let mut watcher = watcher.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
                    // Dropping the connection closes the socket, whatever it was doing.
                    tokio::select! {
                        _ = connection => {}
                        _ = kill.notified() => {}
                        _ = watcher.changed() => {}
                    }
                });
            }
        });
        Ok(ScriptedServer {
            addr,
            script,
            accept,
            _shutdown: shutdown,
        })
    }

    /// The API root to give a provider: `http://127.0.0.1:PORT/v1`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Appends replies to the script.
    pub(crate) fn push(&self, replies: impl IntoIterator<Item = R>) {
        lock(&self.script.replies).extend(replies);
    }

    /// The requests received so far, in order.
    pub(crate) fn requests(&self) -> Vec<Q> {
        lock(&self.script.requests).clone()
    }
}

impl<R, Q> Drop for ScriptedServer<R, Q> {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A poisoned lock only means a handler panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error status with a body; a status that is not valid HTTP becomes a 500.
pub(crate) fn status_response(
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    with_headers((status, body).into_response(), headers)
}

/// A `200` whose body is the server-sent events `body` yields.
pub(crate) fn event_stream<S>(body: S, headers: Vec<(String, String)>) -> Response
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let response = (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response();
    with_headers(response, headers)
}

/// Adds a scripted reply's extra headers; names or values that are not valid HTTP are
/// skipped.
fn with_headers(mut response: Response, headers: Vec<(String, String)>) -> Response {
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
