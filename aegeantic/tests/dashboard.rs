//! The dashboard example's fleet, run for a few seconds against its flaky loopback
//! upstream, with the Prometheus endpoint scraped over real HTTP during and after the run:
//! the counters equal what the inline events said (attempts, retries, waits, and the wait
//! histogram's sum to the millisecond). Real time; the checks are equalities of counts,
//! which load cannot move.
//!
//! A Prometheus recorder is the process's global one, so one test installs it and does
//! everything that needs it; the other test here only parses text.

#[path = "../examples/dashboard/agreement.rs"]
mod agreement;
#[path = "../examples/dashboard/exporter.rs"]
mod exporter;
#[path = "../examples/dashboard/fleet.rs"]
mod fleet;
#[path = "../examples/dashboard/scrape.rs"]
mod scrape;
#[path = "../examples/dashboard/upstream.rs"]
mod upstream;

use std::time::Duration;

use exporter::Endpoint;
use fleet::{Fleet, LIMITER};
use scrape::Scrape;
use upstream::Upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scraped_counters_equal_what_the_inline_events_said() {
    let endpoint = Endpoint::serve(exporter::install().unwrap()).await.unwrap();
    let upstream = Upstream::start().await.unwrap();
    let fleet = Fleet {
        tasks: 12,
        rate: 40.0,
        burst: 5,
        run_for: Duration::from_secs(3),
        ramp: Duration::from_millis(500),
        think: Duration::from_millis(50),
    };
    let (rate, burst) = (fleet.rate, fleet.burst);
    let client = reqwest::Client::new();
    let url = upstream.url();
    let run = tokio::spawn(async move { fleet::run(&fleet, &url).await });

    // During the run: the endpoint already counts, and the fleet is still going.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = Scrape::fetch(&client, &endpoint.url()).await.unwrap();
    assert!(!run.is_finished(), "a 3 s run ended within 1.5 s");
    let attempts_during = during.sum("aegeantic_attempts_total", &[]);
    assert!(attempts_during > 0.0, "{}", during.text);

    let tally = run.await.unwrap().unwrap();
    let after = Scrape::fetch(&client, &endpoint.url()).await.unwrap();
    assert!(after.sum("aegeantic_attempts_total", &[]) > attempts_during);

    // The run did what the comparison needs: retries of both kinds, and waits.
    let server_directed = tally.retries.iter().filter(|r| r.server_directed).count();
    assert!(server_directed > 0, "{}", summary(&tally));
    assert!(tally.retries.len() > server_directed, "{}", summary(&tally));
    assert!(
        tally.waited() > Duration::from_secs(1),
        "{}",
        summary(&tally)
    );
    // One token, so one rate-limit event, before every attempt.
    assert_eq!(tally.grants.len() as u64, tally.attempts);

    // What the chart draws: no second admits more than the rate and the burst (twice the
    // burst: an event is timed when the task sees it, a little after its grant); and every
    // retry is followed by an attempt, so by a grant.
    let mut per_second = std::collections::BTreeMap::<u64, f64>::new();
    for grant in &tally.grants {
        *per_second.entry(grant.at.as_secs()).or_default() += 1.0;
    }
    let busiest = per_second.values().copied().fold(0.0, f64::max);
    assert!(busiest <= rate + 2.0 * f64::from(burst), "{per_second:?}");
    let last_grant = tally.grants.iter().map(|g| g.at).max().unwrap();
    assert!(
        tally.retries.iter().all(|r| r.at <= last_grant),
        "{}",
        summary(&tally)
    );

    let facts = agreement::facts(&tally, &after);
    let wrong: Vec<String> = facts
        .iter()
        .filter(|f| !f.agrees())
        .map(|f| f.to_string())
        .collect();
    assert!(
        wrong.is_empty(),
        "{wrong:#?}\n\n{}",
        after.excerpt("aegeantic_").join("\n")
    );

    // The wait sum to the millisecond, stated on its own.
    let waited_ms = (after.sum("aegeantic_rate_limit_wait_sum", &[]) * 1e3).round();
    assert_eq!(waited_ms, (tally.waited().as_secs_f64() * 1e3).round());
    // The histogram's +Inf bucket holds every grant.
    let inf = after.sum(
        "aegeantic_rate_limit_wait_bucket",
        &[("limiter", LIMITER), ("le", "+Inf")],
    );
    assert_eq!(inf, tally.grants.len() as f64);
    // No URL and no error text in any label.
    for sample in after
        .samples
        .iter()
        .filter(|s| s.name.starts_with("aegeantic_"))
    {
        for value in sample.labels.values() {
            assert!(
                !value.contains("127.0.0.1") && !value.contains("HTTP"),
                "{sample:?}"
            );
        }
    }
}

/// A tally's counts, for a failure message.
fn summary(tally: &fleet::Tally) -> String {
    format!(
        "{} attempts, {} grants waiting {:?} in all, {} retries ({} server-directed), {} calls succeeded, {} failed",
        tally.attempts,
        tally.grants.len(),
        tally.waited(),
        tally.retries.len(),
        tally.retries.iter().filter(|r| r.server_directed).count(),
        tally.succeeded,
        tally.failed
    )
}

#[test]
fn the_exposition_s_samples_parse_with_their_escapes() {
    let text =
        "# TYPE x counter\nx_total{a=\"1\",b=\"say \\\"hi\\\"\\n\"} 3\ny 2.5\nz{le=\"+Inf\"} 4\n";
    let scrape = Scrape::parse(text.to_owned()).unwrap();
    assert_eq!(scrape.samples.len(), 3);
    assert_eq!(scrape.samples[0].labels["b"], "say \"hi\"\n");
    assert_eq!(scrape.sum("x_total", &[("a", "1")]), 3.0);
    assert_eq!(scrape.sum("x_total", &[("a", "2")]), 0.0);
    assert_eq!(scrape.sum("z", &[("le", "+Inf")]), 4.0);
    assert!(Scrape::parse("x{a=\"1} 3".to_owned()).is_err());
}
