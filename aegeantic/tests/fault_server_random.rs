//! The fault server's random mode over real HTTP on 127.0.0.1: each fault of the mix as a
//! client sees it, the record of what was served per key, and seeded reproducibility.
#![cfg(feature = "fault-server")]

use std::time::Duration;

use aegeantic::testing::{FaultMix, FaultServer, RandomFault, Served};
use futures::StreamExt;

/// What a client saw of one response.
#[derive(Debug)]
struct Seen {
    /// `None` when no response came (the connection closed first).
    status: Option<u16>,
    retry_after: Option<String>,
    /// The body's text as received, and how it ended.
    body: String,
    body_failed: bool,
    stalled: bool,
}

async fn ask(server: &FaultServer, key: &str) -> Seen {
    let body = serde_json::json!({ "model": "m", "stream": true,
        "messages": [{ "role": "user", "content": "hello" }, { "role": "user", "content": key }] });
    let client = reqwest::Client::new();
    let sent = client
        .post(format!("{}/chat/completions", server.base_url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    let Ok(response) = sent else {
        return Seen {
            status: None,
            retry_after: None,
            body: String::new(),
            body_failed: false,
            stalled: false,
        };
    };
    let status = Some(response.status().as_u16());
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let mut chunks = response.bytes_stream();
    let (mut body, mut body_failed, mut stalled) = (Vec::new(), false, false);
    loop {
        match tokio::time::timeout(Duration::from_secs(2), chunks.next()).await {
            Ok(Some(Ok(bytes))) => body.extend_from_slice(&bytes),
            Ok(Some(Err(_))) => {
                body_failed = true;
                break;
            }
            Ok(None) => break,
            Err(_) => {
                stalled = true;
                break;
            }
        }
    }
    Seen {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
        body_failed,
        stalled,
    }
}

/// The text of the `content` deltas in an SSE body.
fn content(body: &str) -> String {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|event| {
            event["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn only(fault: RandomFault) -> FaultMix {
    let mut mix = FaultMix::seeded(11).stall(Duration::from_secs(5));
    for other in RandomFault::ALL {
        mix = mix.weight(other, u32::from(other == fault));
    }
    mix
}

#[tokio::test]
async fn each_fault_of_the_mix_reaches_the_client_as_it_should() {
    for fault in RandomFault::ALL {
        let server = FaultServer::random(only(fault)).await.unwrap();
        let seen = ask(&server, "stream-1").await;
        let served = server.take_served("stream-1");
        assert_eq!(served.len(), 1, "{fault:?}");
        let Served { fault: drawn, text } = &served[0];
        assert_eq!(*drawn, fault);
        let done = seen.body.contains("data: [DONE]");
        match fault {
            RandomFault::Complete => {
                assert_eq!(seen.status, Some(200));
                assert!(done && !seen.body_failed, "{seen:?}");
                assert_eq!(&content(&seen.body), text);
                assert!(
                    text.len() >= 3 * 9,
                    "3 to 8 pieces of 9 characters: {text:?}"
                );
            }
            RandomFault::MissingDone => {
                assert_eq!(seen.status, Some(200));
                assert!(!done && !seen.body_failed && !seen.stalled, "{seen:?}");
                assert!(seen.body.contains("finish_reason\":\"stop"), "{seen:?}");
                assert_eq!(&content(&seen.body), text);
            }
            RandomFault::RateLimited => {
                assert_eq!(
                    (seen.status, seen.retry_after.as_deref()),
                    (Some(429), Some("1"))
                );
            }
            RandomFault::RateLimitedBare => {
                assert_eq!(
                    (seen.status, seen.retry_after.as_deref()),
                    (Some(429), None)
                );
            }
            RandomFault::Internal => assert_eq!(seen.status, Some(500)),
            RandomFault::Unavailable => assert_eq!(seen.status, Some(503)),
            RandomFault::Reset => assert_eq!(seen.status, None, "{seen:?}"),
            RandomFault::CutBody => {
                assert!(seen.body_failed, "{seen:?}");
                assert!(seen.body.ends_with("{\"cont"), "{seen:?}");
                assert_eq!(&content(&seen.body), text);
            }
            RandomFault::Stall => {
                assert!(seen.stalled && !done, "{seen:?}");
                assert_eq!(&content(&seen.body), text);
            }
            RandomFault::ErrorEvent => {
                assert!(!done && seen.body.contains("\"error\""), "{seen:?}");
                assert!(seen.body.contains("server_error"), "{seen:?}");
                assert_eq!(&content(&seen.body), text);
            }
        }
        if !matches!(
            fault,
            RandomFault::Complete
                | RandomFault::MissingDone
                | RandomFault::CutBody
                | RandomFault::Stall
                | RandomFault::ErrorEvent
        ) {
            assert!(text.is_empty(), "{fault:?}: {text:?}");
        }
        // Taken once: the record is gone, and other keys never had one.
        assert!(server.take_served("stream-1").is_empty());
        assert_eq!(server.untaken_keys(), 0);
    }
}

#[tokio::test]
async fn a_bounded_stall_ends_its_body_after_the_configured_silence() {
    let server = FaultServer::random(only(RandomFault::Stall).stall(Duration::from_millis(300)))
        .await
        .unwrap();
    let seen = ask(&server, "k").await;
    assert!(!seen.stalled && !seen.body_failed, "{seen:?}");
    assert!(!seen.body.contains("[DONE]"), "{seen:?}");
}

#[tokio::test]
async fn a_seed_serves_the_same_faults_and_the_mix_serves_every_kind_near_its_weight() {
    let mix = FaultMix::seeded(5)
        .pieces(1, 2)
        .gap(Duration::ZERO)
        .stall(Duration::ZERO);
    let (first, second) = (
        FaultServer::random(mix.clone()).await.unwrap(),
        FaultServer::random(mix).await.unwrap(),
    );
    let requests = 360;
    let mut counts = std::collections::HashMap::new();
    for n in 0..requests {
        let key = format!("k{n}");
        ask(&first, &key).await;
        ask(&second, &key).await;
        let (a, b) = (first.take_served(&key), second.take_served(&key));
        assert_eq!(a, b, "request {n}");
        *counts.entry(a[0].fault).or_insert(0u32) += 1;
    }
    // Weights 27 for complete answers and 1 for each fault, out of 36: expected 270 and 10.
    for fault in RandomFault::ALL {
        let count = counts.get(&fault).copied().unwrap_or(0);
        let (low, high) = if fault == RandomFault::Complete {
            (230, 310)
        } else {
            (1, 30)
        };
        assert!(
            (low..=high).contains(&count),
            "{fault:?}: {count} of {requests}"
        );
    }
    // Another seed, other draws.
    let other = FaultServer::random(FaultMix::seeded(6).pieces(1, 2).gap(Duration::ZERO))
        .await
        .unwrap();
    let mut differs = false;
    for n in 0..20 {
        let key = format!("k{n}");
        ask(&other, &key).await;
        ask(&first, &key).await;
        differs |= other.take_served(&key) != first.take_served(&key);
    }
    assert!(differs);
}
