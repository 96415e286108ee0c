//! Reproduces Marc Brooker's "Exponential Backoff and Jitter" study with the library's own
//! back-off and jitter: N clients contend on one row with optimistic concurrency, network
//! delay |N(10 ms, 2 ms)|, base 5 ms, cap 2 s, 100 trials per point.
//!
//! `cargo run --release --example backoff_simulation [-- --out chart.svg]`
//!
//! Prints the table at N = 50 and writes an SVG chart of calls and completion time for
//! N = 5 to 100 (default `target/backoff_simulation.svg`).

mod sim;

use std::path::PathBuf;

use aegeantic::report::Report;
use plotters::prelude::*;
use sim::{simulate, Outcome, Strategy};

const TRIALS: u32 = 100;

type Metric = fn(&Outcome) -> f64;
const SEED: u64 = 2015;

fn main() -> Result<(), Report> {
    let out = std::env::args()
        .skip_while(|arg| arg != "--out")
        .nth(1)
        .map_or_else(
            || PathBuf::from("target/backoff_simulation.svg"),
            PathBuf::from,
        );

    let sizes: Vec<usize> = (1..=20).map(|k| k * 5).collect();
    let results: Vec<Vec<Outcome>> = Strategy::ALL
        .iter()
        .map(|&strategy| {
            sizes
                .iter()
                .map(|&n| simulate(strategy, n, TRIALS, SEED + n as u64))
                .collect()
        })
        .collect();

    let at_50 = sizes.iter().position(|&n| n == 50).expect("50 is sampled");
    println!("N = 50 clients, mean of {TRIALS} trials\n");
    println!("| strategy               | total calls | completion |");
    println!("|------------------------|-------------|------------|");
    for (strategy, outcomes) in Strategy::ALL.iter().zip(&results) {
        let o = outcomes[at_50];
        println!(
            "| {:<22} | {:>11.0} | {:>8.2} s |",
            strategy.name(),
            o.calls,
            o.completion
        );
    }
    let calls = |s: Strategy| results[s as usize][at_50].calls;
    println!(
        "\nfull jitter / exponential calls: {:.2}",
        calls(Strategy::FullJitter) / calls(Strategy::Exponential)
    );

    if let Some(dir) = out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    chart(&out, &sizes, &results)?;
    println!("chart: {}", out.display());
    Ok(())
}

fn chart(out: &PathBuf, sizes: &[usize], results: &[Vec<Outcome>]) -> Result<(), Report> {
    let root = SVGBackend::new(out, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let colors = [BLACK, RED, BLUE, GREEN, MAGENTA];
    let calls: Metric = |o| o.calls;
    let completion: Metric = |o| o.completion;
    for (area, label, metric) in [
        (&left, "total calls", calls),
        (&right, "completion time (s)", completion),
    ] {
        let top = results.iter().flatten().map(metric).fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(label, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..100f64, 0f64..top * 1.05)?;
        chart.configure_mesh().x_desc("clients").draw()?;
        for ((strategy, outcomes), color) in Strategy::ALL.iter().zip(results).zip(colors) {
            let points = sizes
                .iter()
                .zip(outcomes)
                .map(|(&n, o)| (n as f64, metric(o)));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(strategy.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
