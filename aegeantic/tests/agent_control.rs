//! Control over tools, against the fault server over loopback HTTP: the approval hook
//! (accept, reject, timeout), the allow-list, concurrent calls under a bound with results
//! in the model's order, and partial output.
#![cfg(all(feature = "macros", feature = "openai", feature = "fault-server"))]

mod agent_support;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::agent::{
    Agent, AgentConfig, AgentEvent, AgentRunner, ToolApproval, ToolContext, ToolDecision, ToolError,
};
use aegeantic::testing::{FaultServer, Reply};
use aegeantic::tools;
use agent_support::{kinds, openai, tool_calls, GAP};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;

/// Tools that take their time and count how many of them run at once.
struct Workers {
    running: AtomicUsize,
    most: AtomicUsize,
    /// The labels of the calls of `work` that have finished.
    finished: watch::Sender<Vec<String>>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            finished: watch::channel(Vec::new()).0,
        }
    }
}

#[tools]
impl Workers {
    #[tool("Works for `ms` milliseconds, and not before the work `after` is done")]
    async fn work(
        &self,
        ms: u64,
        label: String,
        after: Option<String>,
    ) -> Result<String, ToolError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Some(after) = after {
            let mut finished = self.finished.subscribe();
            let wait = finished.wait_for(|done| done.contains(&after));
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .map_err(|_| ToolError::failed(format!("{after} never finished")))?
                .map_err(|_| ToolError::failed("gone"))?;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.finished.send_modify(|done| done.push(label.clone()));
        Ok(format!("{label} done"))
    }

    #[tool("Reports progress, then finishes")]
    async fn crawl(&self, pages: u32, ctx: ToolContext) -> Result<String, ToolError> {
        for page in 1..=pages {
            ctx.partial(json!({ "page": page }));
            tokio::task::yield_now().await;
        }
        Ok(format!("{pages} pages"))
    }

    #[tool("Deletes everything")]
    fn wipe(&self) -> Result<String, ToolError> {
        Ok("wiped".into())
    }
}

fn agent(server: &FaultServer, config: AgentConfig) -> (Arc<Workers>, AgentRunner) {
    let workers = Arc::new(Workers::default());
    let agent = Agent::builder()
        .config(config)
        .tools(Arc::clone(&workers).tools())
        .llm_provider(openai(server))
        .build();
    (workers, AgentRunner::new(agent))
}

/// The `content` of each tool message the model was sent in `request`.
fn tool_results(server: &FaultServer, request: usize) -> Vec<(String, Value)> {
    let body = &server.requests()[request].body;
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| {
            let id = message["tool_call_id"].as_str().unwrap().to_owned();
            (id, message["content"].clone())
        })
        .collect()
}

#[tokio::test]
async fn the_hook_accepts_rejects_or_times_out() {
    let work = "{\"ms\": 1, \"label\": \"w\"}";
    let server = FaultServer::validating([
        tool_calls(&[
            ("c1", "work", work),
            ("c2", "wipe", "{}"),
            ("c3", "work", work),
        ]),
        Reply::text(&["ok"], GAP),
    ])
    .await
    .unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let approval = ToolApproval::new(move |call| {
        seen.lock()
            .unwrap()
            .push((call.id.clone(), call.arguments.clone()));
        async move {
            match &*call.id {
                "c1" => ToolDecision::Accept,
                "c2" => ToolDecision::reject("not without consent"),
                // Nobody answers.
                _ => std::future::pending().await,
            }
        }
    })
    .timeout(Duration::from_millis(100))
    .on_timeout(ToolDecision::reject("nobody approved in time"));
    let config = AgentConfig {
        on_tool_detected: Some(approval),
        ..AgentConfig::default()
    };
    let (_, mut runner) = agent(&server, config);
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    assert_eq!(
        kinds(&events),
        [
            "complete(3)",
            "decision:c1:Accept:Hook",
            "start:c1",
            "output:c1:\"w done\":false",
            "end:c1",
            "write:tool:result:1:c1",
            "decision:c2:Reject { reason: \"not without consent\" }:Hook",
            "output:c2:\"rejected: not without consent\":true",
            "write:tool:result:1:c2",
            "decision:c3:Reject { reason: \"nobody approved in time\" }:Timeout",
            "output:c3:\"rejected: nobody approved in time\":true",
            "write:tool:result:1:c3",
            "complete(0)",
            "write:response",
            "done:ok",
        ]
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [
            ("c1".to_owned(), work.to_owned()),
            ("c2".to_owned(), "{}".to_owned()),
            ("c3".to_owned(), work.to_owned())
        ]
    );
    assert_eq!(
        tool_results(&server, 1),
        [
            ("c1".to_owned(), json!("w done")),
            ("c2".to_owned(), json!("rejected: not without consent")),
            ("c3".to_owned(), json!("rejected: nobody approved in time")),
        ]
    );
}

#[tokio::test]
async fn the_allow_list_limits_what_is_offered_and_run() {
    let server = FaultServer::validating([
        tool_calls(&[("c1", "wipe", "{}")]),
        Reply::text(&["ok"], GAP),
    ])
    .await
    .unwrap();
    let config = AgentConfig {
        allowed_tools: Some(vec!["work".into(), "crawl".into()]),
        ..AgentConfig::default()
    };
    let (_, mut runner) = agent(&server, config);
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    assert_eq!(
        kinds(&events)[..4],
        [
            "complete(1)",
            "decision:c1:Reject { reason: \"the tool \\\"wipe\\\" is not allowed\" }:AllowList",
            "output:c1:\"rejected: the tool \\\"wipe\\\" is not allowed\":true",
            "write:tool:result:1:c1",
        ]
    );
    let offered: Vec<Value> = server.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].clone())
        .collect();
    assert_eq!(offered, [json!("work"), json!("crawl")]);
}

/// Three calls; the first ends only after the third (or fails after 10 s).
fn three_calls() -> Reply {
    tool_calls(&[
        (
            "c1",
            "work",
            "{\"ms\": 1, \"label\": \"one\", \"after\": \"three\"}",
        ),
        ("c2", "work", "{\"ms\": 10, \"label\": \"two\"}"),
        ("c3", "work", "{\"ms\": 10, \"label\": \"three\"}"),
    ])
}

fn position(kinds: &[String], kind: &str) -> usize {
    kinds
        .iter()
        .position(|k| k.starts_with(kind))
        .unwrap_or_else(|| panic!("{kind} not in {kinds:?}"))
}

#[tokio::test]
async fn concurrent_calls_stay_within_the_bound_and_answer_in_order() {
    let server = FaultServer::validating([three_calls(), Reply::text(&["ok"], GAP)])
        .await
        .unwrap();
    let config = AgentConfig {
        tool_concurrency: NonZeroUsize::new(2).unwrap(),
        ..AgentConfig::default()
    };
    let (workers, mut runner) = agent(&server, config);
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    let kinds = kinds(&events);
    assert_eq!(workers.most.load(Ordering::SeqCst), 2, "{kinds:?}");
    // Started in the model's order; c2 and c3 end while c1 still runs.
    assert!(position(&kinds, "start:c1") < position(&kinds, "start:c2"));
    assert!(position(&kinds, "start:c2") < position(&kinds, "start:c3"));
    assert!(
        position(&kinds, "end:c3") < position(&kinds, "end:c1"),
        "{kinds:?}"
    );
    // Each call's own events in order.
    for call in ["c1", "c2", "c3"] {
        let at = |kind: &str| position(&kinds, &format!("{kind}:{call}"));
        assert!(at("start") < at("output") && at("output") < at("end"));
        assert!(at("end") < position(&kinds, &format!("write:tool:result:1:{call}")));
    }
    let results = runner.history()[2..5].to_vec();
    let ids: Vec<&str> = results
        .iter()
        .map(|m| m.tool_call_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"], "results in the model's order");
    assert_eq!(
        tool_results(&server, 1),
        [
            ("c1".to_owned(), json!("one done")),
            ("c2".to_owned(), json!("two done")),
            ("c3".to_owned(), json!("three done")),
        ]
    );
}

#[tokio::test]
async fn calls_run_one_after_the_other_by_default() {
    let calls = tool_calls(&[
        ("c1", "work", "{\"ms\": 30, \"label\": \"one\"}"),
        ("c2", "work", "{\"ms\": 1, \"label\": \"two\"}"),
        ("c3", "work", "{\"ms\": 1, \"label\": \"three\"}"),
    ]);
    let server = FaultServer::validating([calls, Reply::text(&["ok"], GAP)])
        .await
        .unwrap();
    let (workers, mut runner) = agent(&server, AgentConfig::default());
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    assert_eq!(workers.most.load(Ordering::SeqCst), 1);

    let kinds = kinds(&events);
    let calls: Vec<&str> = kinds
        .iter()
        .filter(|k| k.starts_with("start:") || k.starts_with("end:"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        calls,
        ["start:c1", "end:c1", "start:c2", "end:c2", "start:c3", "end:c3"]
    );
}

#[tokio::test]
async fn partial_output_comes_before_the_result_and_is_not_sent_to_the_model() {
    let server = FaultServer::validating([
        tool_calls(&[("c1", "crawl", "{\"pages\": 3}")]),
        Reply::text(&["ok"], GAP),
    ])
    .await
    .unwrap();
    let (_, mut runner) = agent(&server, AgentConfig::default());
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    assert_eq!(
        kinds(&events)[..7],
        [
            "complete(1)",
            "start:c1",
            "partial:c1:{\"page\":1}:false",
            "partial:c1:{\"page\":2}:false",
            "partial:c1:{\"page\":3}:false",
            "output:c1:\"3 pages\":false",
            "end:c1",
        ]
    );
    assert_eq!(
        tool_results(&server, 1),
        [("c1".to_owned(), json!("3 pages"))]
    );
    let partial = events
        .iter()
        .find(|event| matches!(event, AgentEvent::ToolOutput { partial: true, .. }))
        .unwrap();
    let serialised = serde_json::to_value(partial).unwrap();
    assert_eq!(serialised["type"], "tool_output");
    assert_eq!(serialised["partial"], true);
}
