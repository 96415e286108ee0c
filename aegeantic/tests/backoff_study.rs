//! The published ordering of the backoff study must reproduce with the library's jitter.

#[allow(dead_code)]
#[path = "../examples/backoff_simulation/sim.rs"]
mod sim;

use sim::{simulate, Strategy};

#[test]
fn full_jitter_does_the_least_work_and_plain_exponential_is_slowest() {
    let run = |s| simulate(s, 50, 30, 7);
    let outcomes: Vec<_> = Strategy::ALL.iter().map(|&s| (s, run(s))).collect();
    let get = |s: Strategy| outcomes.iter().find(|(k, _)| *k == s).unwrap().1;
    let exponential = get(Strategy::Exponential);
    let full = get(Strategy::FullJitter);
    assert!(
        full.calls <= 0.6 * exponential.calls,
        "full jitter {} calls vs exponential {}",
        full.calls,
        exponential.calls
    );
    for (strategy, outcome) in &outcomes {
        if *strategy != Strategy::Exponential {
            assert!(
                outcome.completion < exponential.completion,
                "{strategy:?} finished after plain exponential"
            );
        }
        if *strategy != Strategy::FullJitter {
            assert!(
                outcome.calls >= full.calls * 0.97,
                "{strategy:?} did less work than full jitter"
            );
        }
    }
    // Without any back-off everyone retries at once: fastest to finish, most work.
    assert!(get(Strategy::NoBackoff).calls > exponential.calls);
}
