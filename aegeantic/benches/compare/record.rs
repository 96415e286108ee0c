//! Keeps every measurement of the run so that the closing table compares numbers taken
//! side by side, under the same load.
//!
//! Two kinds: criterion's samples (absolute times, one benchmark after the other), and
//! interleaved pairs, which time ours and theirs in alternating short blocks and keep the
//! median of the per-round ratios. Other work on a shared machine comes and goes over
//! seconds, so a benchmark run a few seconds after another may see a different machine;
//! blocks a few hundred microseconds apart see the same one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;

/// Samples per benchmark; the time reported is the median of the last this many.
pub const SAMPLES: usize = 20;

static RESULTS: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// A routine given an iteration count returns the time those iterations took.
pub trait Routine: FnMut(u64) -> Duration {}
impl<F: FnMut(u64) -> Duration> Routine for F {}

/// Runs `routine` under criterion and records each sample's time per operation as
/// `group/name`; each iteration does `ops` operations.
pub fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    name: &str,
    ops: u64,
    mut routine: impl Routine,
) {
    let key = format!("{group_name}/{name}");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let elapsed = routine(iters);
            let per_op = elapsed.as_nanos() as f64 / (iters.max(1) * ops) as f64;
            lock().entry(key.clone()).or_default().push(per_op);
            elapsed
        })
    });
}

/// How long [`pair`] spends on one pair, and on one block of one side.
#[derive(Clone, Copy)]
pub struct PairBudget {
    pub total: Duration,
    pub block: Duration,
}

impl PairBudget {
    /// The budget for a benchmark run, or a token one for a smoke test.
    pub fn new(benchmarking: bool, total: Duration, block: Duration) -> Self {
        if benchmarking {
            PairBudget { total, block }
        } else {
            PairBudget {
                total: Duration::from_millis(20),
                block: Duration::from_millis(1),
            }
        }
    }
}

/// Times `ours` and `theirs` in alternating blocks of equal iteration counts, the order
/// swapped every round, and records the medians of `ours / theirs` and of `ours - theirs`
/// per operation under `pair/{ours_key}|{theirs_key}`.
pub fn pair(
    ours_key: &str,
    theirs_key: &str,
    ops: u64,
    budget: PairBudget,
    mut ours: impl Routine,
    mut theirs: impl Routine,
) {
    let iters = calibrate(&mut theirs, budget.block);
    let started = Instant::now();
    let (mut ratios, mut deltas) = (Vec::new(), Vec::new());
    while started.elapsed() < budget.total || ratios.len() < 3 {
        let (a, b) = if ratios.len() % 2 == 0 {
            let a = ours(iters);
            (a, theirs(iters))
        } else {
            let b = theirs(iters);
            (ours(iters), b)
        };
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        deltas.push((a.as_nanos() as f64 - b.as_nanos() as f64) / (iters * ops) as f64);
    }
    let mut results = lock();
    let key = format!("pair/{ours_key}|{theirs_key}");
    results.insert(format!("{key}/ratio"), vec![median(ratios)]);
    results.insert(format!("{key}/delta"), vec![median(deltas)]);
}

/// Iterations that take about `block`.
fn calibrate(routine: &mut impl Routine, block: Duration) -> u64 {
    let mut iters = 1;
    loop {
        let took = routine(iters);
        if took >= block / 2 || iters >= 1 << 40 {
            let scale = block.as_secs_f64() / took.as_secs_f64().max(1e-9);
            return ((iters as f64 * scale) as u64).max(1);
        }
        iters *= 2;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Records a value measured outside criterion (the real-time runs).
pub fn put(key: &str, value: f64) {
    lock().insert(key.to_owned(), vec![value]);
}

/// The median of the last [`SAMPLES`] samples of `key`: criterion's warm-up calls come
/// first and are left out.
pub fn get(key: &str) -> Option<f64> {
    let results = lock();
    let samples = results.get(key)?;
    Some(median(
        samples[samples.len().saturating_sub(SAMPLES)..].to_vec(),
    ))
}

/// Writes every result of the run as `key<TAB>value` lines, the value being what [`get`]
/// gives, so that a later run (another build) can set its numbers beside these.
pub fn save(path: &Path) -> io::Result<()> {
    let keys: Vec<String> = lock().keys().cloned().collect();
    let mut text = String::new();
    for key in keys {
        if let Some(value) = get(&key) {
            // Writing to a String does not fail.
            let _ = writeln!(text, "{key}\t{value}");
        }
    }
    std::fs::write(path, text)
}

/// Reads what [`save`] wrote, each key under `prefix`.
pub fn load(path: &Path, prefix: &str) -> io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut results = lock();
    for (number, line) in text.lines().enumerate() {
        let parsed = line
            .split_once('\t')
            .and_then(|(key, value)| Some((key, value.parse::<f64>().ok()?)));
        let Some((key, value)) = parsed else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {} is not `key<TAB>number`: {line:?}", number + 1),
            ));
        };
        results.insert(format!("{prefix}{key}"), vec![value]);
    }
    Ok(())
}

fn lock() -> MutexGuard<'static, BTreeMap<String, Vec<f64>>> {
    RESULTS.lock().unwrap_or_else(PoisonError::into_inner)
}
