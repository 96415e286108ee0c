//! The closing picture: three panels over the run's seconds, from the inline events.
//! Requests admitted per second against the configured rate, the wait for a token (mean
//! and longest per second), and retries per second (all, and those whose delay the server
//! chose).

use std::path::Path;
use std::time::Duration;

use aegeantic::report::Report;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::fleet::Tally;

/// Per-second series of a run.
struct Seconds {
    admitted: Vec<f64>,
    mean_wait_ms: Vec<f64>,
    max_wait_ms: Vec<f64>,
    retries: Vec<f64>,
    server_directed: Vec<f64>,
}

impl Seconds {
    fn of(tally: &Tally) -> Self {
        let last = tally
            .grants
            .iter()
            .map(|grant| grant.at)
            .chain(tally.retries.iter().map(|retry| retry.at))
            .max()
            .unwrap_or_default();
        let bins = usize::try_from(last.as_secs()).unwrap_or(usize::MAX - 1) + 1;
        let bin = |at: Duration| usize::try_from(at.as_secs()).unwrap_or(usize::MAX);
        let mut seconds = Seconds {
            admitted: vec![0.0; bins],
            mean_wait_ms: vec![0.0; bins],
            max_wait_ms: vec![0.0; bins],
            retries: vec![0.0; bins],
            server_directed: vec![0.0; bins],
        };
        for grant in &tally.grants {
            let i = bin(grant.at);
            let ms = grant.waited.as_secs_f64() * 1e3;
            seconds.admitted[i] += 1.0;
            seconds.mean_wait_ms[i] += ms;
            seconds.max_wait_ms[i] = seconds.max_wait_ms[i].max(ms);
        }
        for (total, count) in seconds.mean_wait_ms.iter_mut().zip(&seconds.admitted) {
            if *count > 0.0 {
                *total /= count;
            }
        }
        for retry in &tally.retries {
            let i = bin(retry.at);
            seconds.retries[i] += 1.0;
            if retry.server_directed {
                seconds.server_directed[i] += 1.0;
            }
        }
        seconds
    }
}

/// A line: its legend, its points, its colour.
type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// Writes the chart of `tally`, whose limiter was configured at `rate` per second, to `out`.
pub fn write(out: &Path, tally: &Tally, rate: f64) -> Result<(), Report> {
    let seconds = Seconds::of(tally);
    let span = seconds.admitted.len() as f64;
    let root = SVGBackend::new(out, (1000, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let admitted = [
        ("admitted", per_second(&seconds.admitted), BLUE),
        ("configured rate", vec![(0.0, rate), (span, rate)], RED),
    ];
    panel(&panels[0], "requests admitted per second", span, &admitted)?;
    let waits = [
        ("mean wait (ms)", per_second(&seconds.mean_wait_ms), BLUE),
        (
            "longest wait (ms)",
            per_second(&seconds.max_wait_ms),
            MAGENTA,
        ),
    ];
    panel(&panels[1], "wait for a token", span, &waits)?;
    let retries = [
        ("retries", per_second(&seconds.retries), BLACK),
        (
            "server-directed",
            per_second(&seconds.server_directed),
            GREEN,
        ),
    ];
    panel(&panels[2], "retries per second", span, &retries)?;
    root.present()?;
    Ok(())
}

/// Each second's value at the middle of its second.
fn per_second(values: &[f64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(second, &value)| (second as f64 + 0.5, value))
        .collect()
}

/// One panel of `span` seconds, a line per series.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    span: f64,
    lines: &[Line<'_>],
) -> Result<(), Report> {
    let top = lines
        .iter()
        .flat_map(|(_, points, _)| points.iter().map(|&(_, y)| y))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..span, 0f64..top * 1.1)?;
    chart.configure_mesh().x_desc("seconds").draw()?;
    for (label, points, color) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}
