//! The closing table: one row per target, ours against theirs from this run.

use crate::record::get;

/// Where a loaded baseline run's results live (see `record::load`).
pub const BASELINE_PREFIX: &str = "off/";

/// How a row is judged.
enum Goal {
    /// `ours / theirs` at most this.
    Ratio(f64),
    /// `ours - theirs` at most this many nanoseconds.
    Delta(f64),
    /// `ours` alone at most this.
    AtMost(f64),
    /// No target: `ours / theirs`, reported.
    Report,
    /// `pair`'s delta (an interleaved pair's median `ours - theirs`) in this run minus the
    /// same pair's in the baseline run, at most this many nanoseconds.
    Added { max: f64, pair: &'static str },
}

struct Row {
    target: &'static str,
    ours: &'static str,
    theirs: Option<&'static str>,
    goal: Goal,
}

const fn ratio(target: &'static str, ours: &'static str, theirs: &'static str, max: f64) -> Row {
    Row {
        target,
        ours,
        theirs: Some(theirs),
        goal: Goal::Ratio(max),
    }
}

const fn allocs(target: &'static str, key: &'static str) -> Row {
    Row {
        target,
        ours: key,
        theirs: None,
        goal: Goal::AtMost(0.0),
    }
}

/// The cost the metrics add to `ours`, in a build with them beside the baseline run
/// without: the interleaved pair `ours` minus `reference` (a part the feature does not
/// touch) here, minus the same pair there. Subtracting the reference in each run first
/// takes out the difference in load between the two runs.
macro_rules! added {
    ($target:expr, $ours:literal, $reference:literal, $max:expr $(,)?) => {
        Row {
            target: $target,
            ours: $ours,
            // `BASELINE_PREFIX`, which `concat!` cannot take by name.
            theirs: Some(concat!("off/", $ours)),
            goal: Goal::Added {
                max: $max,
                pair: concat!("pair/", $ours, "|", $reference, "/delta"),
            },
        }
    };
}

const ROWS: &[Row] = &[
    ratio(
        "try_acquire(1) admitted vs governor check()",
        "try_acquire_admitted/ours",
        "try_acquire_admitted/governor",
        1.0,
    ),
    ratio(
        "try_acquire(1) refused vs governor check()",
        "try_acquire_refused/ours",
        "try_acquire_refused/governor",
        1.0,
    ),
    ratio(
        "try_acquire(4) admitted vs governor check_n(4)",
        "try_acquire_admitted/ours_n4",
        "try_acquire_admitted/governor_n4",
        1.0,
    ),
    ratio(
        "try_acquire(1) admitted vs governor, std clock",
        "try_acquire_admitted/ours",
        "try_acquire_admitted/governor_std_clock",
        1.0,
    ),
    ratio(
        "try_acquire(1) admitted vs leaky-bucket",
        "try_acquire_admitted/ours",
        "try_acquire_admitted/leaky_bucket",
        1.0,
    ),
    ratio(
        "try_acquire(1) refused vs leaky-bucket",
        "try_acquire_refused/ours",
        "try_acquire_refused/leaky_bucket",
        1.0,
    ),
    ratio(
        "2 threads, time per grant vs governor",
        "contended_2_threads/ours",
        "contended_2_threads/governor",
        1.0,
    ),
    ratio(
        "acquire().await ready vs our try_acquire",
        "acquire_ready/ours",
        "acquire_ready/ours_try_acquire",
        1.5,
    ),
    ratio(
        "acquire().await ready vs governor until_ready",
        "acquire_ready/ours",
        "acquire_ready/governor_until_ready",
        1.0,
    ),
    ratio(
        "acquire().await ready vs leaky-bucket acquire",
        "acquire_ready/ours",
        "acquire_ready/leaky_bucket",
        1.0,
    ),
    Row {
        target: "resilient_stream per item, minus bare stream (ns)",
        ours: "stream_per_item/resilient_stream",
        theirs: Some("stream_per_item/bare"),
        goal: Goal::Delta(10.0),
    },
    ratio(
        "resilient_stream per item vs governor ratelimit_stream",
        "stream_per_item/resilient_stream",
        "stream_per_item/governor_ratelimit_stream",
        1.0,
    ),
    ratio(
        "retry_stream one-shot vs backon retry",
        "retry_one_shot/ours_retry_stream",
        "retry_one_shot/backon",
        1.0,
    ),
    ratio(
        "retry_stream one-shot, &str name, vs backon",
        "retry_one_shot/ours_str_name",
        "retry_one_shot/backon",
        1.0,
    ),
    ratio(
        "retry future one-shot vs backon retry",
        "retry_one_shot/ours_retry_future",
        "retry_one_shot/backon",
        1.0,
    ),
    Row {
        target: "resilient_stream one-shot with a limiter vs backon retry",
        ours: "retry_one_shot/ours_limited",
        theirs: Some("retry_one_shot/backon"),
        goal: Goal::Report,
    },
    Row {
        target: "10k waiters: CPU per admission vs governor",
        ours: "waiting/ours/cpu_ns",
        theirs: Some("waiting/governor/cpu_ns"),
        goal: Goal::Report,
    },
    Row {
        target: "10k waiters: CPU per admission vs leaky-bucket",
        ours: "waiting/ours/cpu_ns",
        theirs: Some("waiting/leaky_bucket/cpu_ns"),
        goal: Goal::Report,
    },
    Row {
        target: "10k waiters: wake-ups per admission",
        ours: "waiting/ours/wakeups",
        theirs: None,
        goal: Goal::AtMost(1.05),
    },
    allocs("allocations per try_acquire", "allocs/try_acquire"),
    allocs(
        "allocations per ready acquire().await",
        "allocs/acquire_ready",
    ),
    allocs(
        "allocations per resilient_stream item",
        "allocs/stream_item",
    ),
    allocs(
        "allocations per one-shot retry_stream",
        "allocs/retry_one_shot",
    ),
    allocs(
        "allocations per one-shot retry future",
        "allocs/retry_future",
    ),
    added!(
        "metrics on, per resilient_stream item (ns)",
        "stream_per_item/resilient_stream",
        "stream_per_item/bare",
        5.0,
    ),
    added!(
        "metrics on, per one-shot retry future (ns)",
        "retry_one_shot/ours_retry_future",
        "retry_one_shot/backon",
        100.0,
    ),
    added!(
        "metrics on, per one-shot retry_stream (ns)",
        "retry_one_shot/ours_retry_stream",
        "retry_one_shot/backon",
        100.0,
    ),
    added!(
        "metrics on, per one-shot resilient_stream with a limiter (ns)",
        "retry_one_shot/ours_limited",
        "retry_one_shot/backon",
        100.0,
    ),
    Row {
        target: "metrics run vs baseline: bare stream per item (drift)",
        ours: "stream_per_item/bare",
        theirs: Some("off/stream_per_item/bare"),
        goal: Goal::Report,
    },
    Row {
        target: "metrics run vs baseline: backon one-shot (drift)",
        ours: "retry_one_shot/backon",
        theirs: Some("off/retry_one_shot/backon"),
        goal: Goal::Report,
    },
    Row {
        target: "100/s accuracy: p99 \\|release - ideal\\| (µs)",
        ours: "accuracy/ours/p99_us",
        theirs: None,
        goal: Goal::AtMost(1000.0),
    },
    Row {
        target: "100/s accuracy: p99 vs tokio sleep_until to the ideal instants, no limiter",
        ours: "accuracy/ours/p99_us",
        theirs: Some("accuracy/tokio_sleep/p99_us"),
        goal: Goal::Report,
    },
];

/// Context rows: what the competitors measured in the same run, for the record.
const CONTEXT: &[(&str, &str)] = &[
    (
        "governor wake-ups per admission",
        "waiting/governor/wakeups",
    ),
    (
        "leaky-bucket wake-ups per admission",
        "waiting/leaky_bucket/wakeups",
    ),
    ("accuracy p50 ours (µs)", "accuracy/ours/p50_us"),
    (
        "accuracy p50 / p99 governor (µs)",
        "accuracy/governor/p50_us",
    ),
    ("", "accuracy/governor/p99_us"),
    (
        "accuracy p50 / p99 leaky-bucket (µs)",
        "accuracy/leaky_bucket/p50_us",
    ),
    ("", "accuracy/leaky_bucket/p99_us"),
    (
        "accuracy p50 / p99 tokio sleep_until, no limiter (µs)",
        "accuracy/tokio_sleep/p50_us",
    ),
    ("", "accuracy/tokio_sleep/p99_us"),
    (
        "accuracy p50 / p99 std::thread::sleep, no limiter (µs)",
        "accuracy/thread_sleep/p50_us",
    ),
    ("", "accuracy/thread_sleep/p99_us"),
];

/// Prints the table; `benchmarking` is false for the smoke test under `cargo test`.
pub fn print(benchmarking: bool) {
    println!();
    if !benchmarking {
        println!("Smoke test (cargo test): an unoptimised build and token samples; the");
        println!("numbers below only show that every part ran.\n");
    }
    if cfg!(feature = "metrics") {
        println!("This build records aegeantic's metrics into the no-op recorder. Rows");
        println!("\"metrics on\": added ns against the baseline run without them (theirs).\n");
    }
    println!("| target | ours | theirs | ours/theirs | goal | met |");
    println!("|---|---:|---:|---:|---|---|");
    for row in ROWS {
        let Some(ours) = get(row.ours) else { continue };
        let theirs = row.theirs.and_then(get);
        // The interleaved pair when there is one; criterion's two medians otherwise.
        let paired = |what: &str| {
            let theirs = row.theirs?;
            get(&format!("pair/{}|{theirs}/{what}", row.ours))
        };
        let (shown, goal, met) = match (&row.goal, theirs) {
            (Goal::Ratio(max), Some(theirs)) => {
                let r = paired("ratio").unwrap_or(ours / theirs);
                (format!("{r:.3}"), format!("≤ {max:.2}×"), r <= *max)
            }
            (Goal::Delta(max), Some(theirs)) => {
                let d = paired("delta").unwrap_or(ours - theirs);
                (format!("{d:+.2} ns"), format!("≤ +{max} ns"), d <= *max)
            }
            (Goal::AtMost(max), _) => (String::from("—"), format!("≤ {max}"), ours <= *max),
            (Goal::Added { max, pair }, Some(theirs)) => {
                let baseline = get(&format!("{BASELINE_PREFIX}{pair}"));
                let d = get(pair)
                    .zip(baseline)
                    .map_or(ours - theirs, |(here, there)| here - there);
                (format!("{d:+.2} ns"), format!("≤ +{max} ns"), d <= *max)
            }
            (Goal::Report, Some(theirs)) => {
                let r = paired("ratio").unwrap_or(ours / theirs);
                (format!("{r:.3}"), String::from("report"), true)
            }
            (_, None) => continue,
        };
        let theirs = theirs.map_or(String::from("—"), |t| format!("{t:.2}"));
        let met = match (&row.goal, met) {
            (Goal::Report, _) => "—",
            (_, true) => "yes",
            (_, false) => "**no**",
        };
        println!(
            "| {} | {ours:.2} | {theirs} | {shown} | {goal} | {met} |",
            row.target
        );
    }
    let context: Vec<String> = CONTEXT
        .iter()
        .filter_map(|(label, key)| get(key).map(|v| (label, v)))
        .map(|(label, v)| {
            if label.is_empty() {
                format!(" / {v:.2}")
            } else {
                format!("\n  {label}: {v:.2}")
            }
        })
        .collect();
    if !context.is_empty() {
        println!("\nFor the record:{}", context.concat());
    }
    println!(
        "\nours, theirs: criterion medians, ns per operation (stream rows: per item) unless \
         marked. ours/theirs: the median ratio of interleaved blocks (see record.rs), which \
         later load on a shared machine cannot skew; real-time rows: one run each."
    );
}
