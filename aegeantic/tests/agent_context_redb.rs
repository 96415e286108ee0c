//! `RedbContext` on a real file: agents in child processes (this test binary, run again)
//! write to it over loopback HTTP steps; the file is reopened after they have ended, and
//! two processes, each with two runners, share one file at once.
#![cfg(all(feature = "context-redb", feature = "openai", feature = "fault-server"))]

mod agent_support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use aegeantic::agent::{Agent, AgentRunner, Context, ContextValue, RedbContext};
use aegeantic::testing::{FaultServer, Reply};
use agent_support::{child_ok, openai, run_child, tool_calls, Add, GAP};
use serde_json::json;

fn temp_store(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "aegeantic-{name}-{}-{:x}.redb",
        std::process::id(),
        rand::random::<u64>()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs `STEPS` steps in each of two runners sharing the store at `STORE`, every step a
/// tool call and an answer naming `NAME`, the runner and the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the tests below"]
async fn child_runs_steps_on_a_store() {
    let path = std::env::var("STORE").unwrap();
    let steps: u32 = std::env::var("STEPS").unwrap().parse().unwrap();
    let name = std::env::var("NAME").unwrap();
    let store = Arc::new(RedbContext::open(&path).unwrap());
    let run = |runner_name: String| {
        let store = Arc::clone(&store);
        async move {
            let mut script = Vec::new();
            for step in 0..steps {
                let id = format!("call-{runner_name}-{step}");
                script.push(tool_calls(&[(&id, "add", "{\"a\": 2, \"b\": 3}")]));
                script.push(Reply::text(
                    &["answer ", &format!("{runner_name}-{step}")],
                    GAP,
                ));
            }
            let server = FaultServer::start(script).await.unwrap();
            let agent = Agent::builder()
                .context(store)
                .tool(Add)
                .llm_provider(openai(&server))
                .build();
            let mut runner = AgentRunner::new(agent);
            for step in 0..steps {
                let result = runner.step(format!("step {step}")).await.unwrap();
                assert_eq!(result.response, format!("answer {runner_name}-{step}"));
            }
        }
    };
    tokio::join!(run(format!("{name}a")), run(format!("{name}b")));
    println!("CHILD DONE");
}

fn child(path: &PathBuf, steps: u32, name: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_runs_steps_on_a_store",
            "--nocapture",
        ])
        .env("STORE", path)
        .env("STEPS", steps.to_string())
        .env("NAME", name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Everything the runners of `names` wrote in `steps` steps each is in the store, once.
fn check_store(store: &RedbContext, names: &[&str], steps: u32) {
    let runners: Vec<String> = names
        .iter()
        .flat_map(|name| [format!("{name}a"), format!("{name}b")])
        .collect();
    let total = runners.len() as u64 * u64::from(steps);
    assert_eq!(store.iteration().unwrap(), total);
    let answers = store.history("response", usize::MAX).unwrap();
    let versions: Vec<u64> = answers.iter().map(|entry| entry.version).collect();
    assert_eq!(
        versions,
        (1..=total).rev().collect::<Vec<_>>(),
        "no version lost or doubled"
    );
    let answers: BTreeSet<String> = answers
        .iter()
        .map(|entry| entry.value.as_ref().unwrap().to_text())
        .collect();
    let expected: BTreeSet<String> = runners
        .iter()
        .flat_map(|runner| (0..steps).map(move |step| format!("answer {runner}-{step}")))
        .collect();
    assert_eq!(answers, expected);
    let keys = store.list_keys("tool:result:").unwrap();
    assert_eq!(keys.len() as u64, total);
    let iterations: BTreeSet<u64> = keys
        .iter()
        .map(|key| key.split(':').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(iterations, (1..=total).collect(), "one step per iteration");
    for key in &keys {
        let value = store.get(key).unwrap().unwrap();
        assert_eq!(value.as_json().unwrap()["output"], json!(5), "{key}");
        assert_eq!(store.history(key, 10).unwrap().len(), 1, "{key}");
    }
}

#[tokio::test]
async fn a_store_reopened_after_its_process_ended_has_everything() {
    let path = temp_store("reopen");
    let out = run_child(
        "child_runs_steps_on_a_store",
        &[
            ("STORE", path.to_str().unwrap()),
            ("STEPS", "3"),
            ("NAME", "p"),
        ],
    );
    assert!(child_ok(out).contains("CHILD DONE"));
    let store = RedbContext::open(&path).unwrap();
    check_store(&store, &["p"], 3);
    // Written here, read by a process to come: the file stays usable.
    store
        .set("note", ContextValue::Bytes(vec![1, 2, 3]))
        .unwrap();
    drop(store);
    let store = RedbContext::open(&path).unwrap();
    assert_eq!(
        store.get("note").unwrap(),
        Some(ContextValue::Bytes(vec![1, 2, 3]))
    );
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn two_processes_with_two_runners_each_share_a_store() {
    let path = temp_store("shared");
    let children = [child(&path, 8, "x"), child(&path, 8, "y")];
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(child_ok(out).contains("CHILD DONE"));
    }
    let store = RedbContext::open(&path).unwrap();
    check_store(&store, &["x", "y"], 8);
    std::fs::remove_file(path).unwrap();
}
