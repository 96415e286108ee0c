//! The spans of an operation, written down by a subscriber layer: the operation's, one per
//! attempt inside it (with `attempt` and, on retries, `http.request.resend_count`), one per
//! wait for a token inside its attempt; events and the user's own code inside the attempt.
#![cfg(feature = "tracing")]

mod common;

use std::fmt::Write as _;
use std::future::ready;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::resilience::{resilient_stream, retry, RateLimitConfig, RateLimiter, RetryConfig};
use common::reset;
use futures::{stream, StreamExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One line a span opened, recorded, closed, or an event, with the span it is in.
#[derive(Clone, Default)]
struct Tree(Arc<Mutex<Vec<String>>>);

#[derive(Default)]
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() != "message" {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Tree {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let parent = span.parent().map_or("-", |p| p.name());
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        self.push(format!("open {} in {parent}:{}", span.name(), fields.0));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        self.push(format!(
            "record {}:{}",
            ctx.span(id).unwrap().name(),
            fields.0
        ));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx
            .event_span(event)
            .map_or("-".to_owned(), |s| s.name().to_owned());
        self.push(format!("event {} in {span}", event.metadata().target()));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.push(format!("close {}", ctx.span(&id).unwrap().name()));
    }
}

impl Tree {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    /// Runs `body` on a paused runtime under a subscriber with this layer.
    fn run<F: std::future::Future>(&self, body: F) -> Vec<String> {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::with_default(subscriber, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
                .block_on(body)
        });
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn attempts_and_waits_are_spans_inside_the_operation() {
    let tree = Tree::default();
    let lines = tree.run(async {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests_per_second: Some(10.0),
            burst_size: 1,
            ..RateLimitConfig::default()
        })
        .unwrap();
        let config = RetryConfig::builder()
            .base_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        let mut calls = 0;
        let factory = move || {
            calls += 1;
            // The user's own code runs inside the attempt's span.
            tracing::info!(target: "user", "opening");
            let items: Vec<Result<&str, io::Error>> = if calls == 1 {
                vec![Err(reset())]
            } else {
                vec![Ok("a")]
            };
            stream::iter(items)
        };
        let mut stream = resilient_stream(factory, Some(config), Some(limiter), "chat", "llm");
        while let Some(item) = stream.next().await {
            item.unwrap();
        }
    });
    let shown: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|line| !line.starts_with("close"))
        .collect();
    assert_eq!(
        shown,
        [
            "open aegeantic.operation in -: operation_name=\"chat\" operation_type=\"llm\"",
            "open aegeantic.attempt in aegeantic.operation: attempt=1",
            "open aegeantic.rate_limit.wait in aegeantic.attempt: tokens=1",
            // The grant.
            "event aegeantic::events in aegeantic.rate_limit.wait",
            "event user in aegeantic.attempt",
            // The retry.
            "event aegeantic::events in aegeantic.attempt",
            "open aegeantic.attempt in aegeantic.operation: attempt=2",
            "record aegeantic.attempt: http.request.resend_count=1",
            "open aegeantic.rate_limit.wait in aegeantic.attempt: tokens=1",
            // The bucket of one was empty: the limiter's own record of the wait.
            "event aegeantic::resilience::limiter::acquire in aegeantic.rate_limit.wait",
            "event aegeantic::events in aegeantic.rate_limit.wait",
            "event user in aegeantic.attempt",
        ],
        "{lines:#?}"
    );
    let closed = |name: &str| {
        lines
            .iter()
            .filter(|line| *line == &format!("close {name}"))
            .count()
    };
    assert_eq!(closed("aegeantic.rate_limit.wait"), 2, "{lines:#?}");
    assert_eq!(closed("aegeantic.attempt"), 2, "{lines:#?}");
    assert_eq!(closed("aegeantic.operation"), 1, "{lines:#?}");
    assert_eq!(
        lines.last().unwrap(),
        "close aegeantic.operation",
        "the operation's span closes last"
    );
}

#[test]
fn a_call_s_plain_first_attempt_has_its_spans_too() {
    let tree = Tree::default();
    let lines = tree.run(async {
        let config = RetryConfig::builder()
            .base_delay(Duration::from_millis(10))
            .build()
            .unwrap();
        let mut calls = 0;
        let call = move || {
            calls += 1;
            tracing::info!(target: "user", "calling");
            ready(if calls == 1 { Err(reset()) } else { Ok(calls) })
        };
        assert_eq!(retry(call, config).await.unwrap(), 2);
    });
    let opened: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|line| line.starts_with("open") || line.starts_with("event user"))
        .collect();
    assert_eq!(
        opened,
        [
            "open aegeantic.operation in -: operation_name=\"call\" operation_type=\"custom\"",
            "open aegeantic.attempt in aegeantic.operation: attempt=1",
            "event user in aegeantic.attempt",
            "open aegeantic.attempt in aegeantic.operation: attempt=2",
            "event user in aegeantic.attempt",
        ],
        "{lines:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.starts_with("close"))
            .count(),
        3,
        "every span closed: {lines:#?}"
    );
}
