//! A phase's memory over time, sampled several times a second, and the figures the leak check
//! compares: means over a window right after warm-up and over one just before the phase
//! stops.

use super::heap;
use super::memory::rss_bytes;

/// The memory at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds since the phase started.
    pub at: f64,
    pub rss: u64,
    /// The live heap now, and the most it was since the sample before.
    pub heap: u64,
    pub heap_peak: u64,
    pub blocks: u64,
}

impl Sample {
    pub fn now(at: f64) -> Self {
        let (heap, blocks) = heap::live();
        Sample {
            at,
            rss: rss_bytes(),
            heap,
            heap_peak: heap::take_peak(),
            blocks,
        }
    }
}

/// Means of a window's samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Means {
    pub rss: f64,
    pub heap: f64,
    pub blocks: f64,
    pub samples: usize,
}

impl Means {
    /// By how much `later` exceeds `self`, as a fraction: RSS, heap, blocks.
    pub fn growth_to(&self, later: &Means) -> (f64, f64, f64) {
        let grew = |from: f64, to: f64| (to - from) / from.max(1.0);
        (
            grew(self.rss, later.rss),
            grew(self.heap, later.heap),
            grew(self.blocks, later.blocks),
        )
    }
}

pub struct Timeline {
    samples: Vec<Sample>,
}

impl Timeline {
    /// Room for `samples` up front, so that the record does not grow the heap it
    /// measures.
    pub fn new(samples: usize) -> Self {
        Timeline {
            samples: Vec::with_capacity(samples),
        }
    }

    pub fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// The means of the samples taken in `[from, to)` seconds.
    pub fn means(&self, from: f64, to: f64) -> Means {
        let window: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .collect();
        let n = window.len();
        let mean = |value: fn(&Sample) -> u64| {
            window.iter().map(|s| value(s) as f64).sum::<f64>() / n.max(1) as f64
        };
        Means {
            rss: mean(|s| s.rss),
            heap: mean(|s| s.heap),
            blocks: mean(|s| s.blocks),
            samples: n,
        }
    }

    pub fn peak_rss(&self) -> u64 {
        self.samples.iter().map(|s| s.rss).max().unwrap_or(0)
    }

    /// Per `step` seconds: the last RSS, the last live heap and the highest heap peak in
    /// that step.
    pub fn steps(&self, step: f64) -> Vec<Sample> {
        let mut steps: Vec<Sample> = Vec::new();
        for sample in &self.samples {
            let bucket = (sample.at / step).floor();
            match steps.last_mut() {
                Some(last) if (last.at / step).floor() == bucket => {
                    let peak = last.heap_peak.max(sample.heap_peak);
                    *last = Sample {
                        heap_peak: peak,
                        ..*sample
                    };
                }
                _ => steps.push(*sample),
            }
        }
        steps
    }
}
