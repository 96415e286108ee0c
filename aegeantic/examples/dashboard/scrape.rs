//! Reads a Prometheus text endpoint over HTTP, as a Prometheus server would, into samples
//! that can be summed by name and labels.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A scrape: the text as served, and its samples.
#[derive(Clone, Debug)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("could not fetch {url}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("line {line} of the exposition is not a sample: {text:?}")]
    Syntax { line: usize, text: String },
}

impl Scrape {
    /// GETs `url` and parses the body.
    pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Self, ScrapeError> {
        let fetch = |source| ScrapeError::Fetch {
            url: url.to_owned(),
            source,
        };
        let text = client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch)?
            .text()
            .await
            .map_err(fetch)?;
        Self::parse(text)
    }

    /// Parses an exposition; comment and blank lines are skipped.
    pub fn parse(text: String) -> Result<Self, ScrapeError> {
        let samples = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .map(|(index, line)| {
                sample(line).ok_or_else(|| ScrapeError::Syntax {
                    line: index + 1,
                    text: line.to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Scrape { text, samples })
    }

    /// The sum over every series named `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
            })
            // A fold from +0: an empty float `sum()` is -0.
            .fold(0.0, |sum, sample| sum + sample.value)
    }

    /// The lines of the exposition about `prefix`, comments included.
    pub fn excerpt(&self, prefix: &str) -> Vec<&str> {
        self.text
            .lines()
            .filter(|line| {
                line.trim_start_matches("# HELP ")
                    .trim_start_matches("# TYPE ")
                    .starts_with(prefix)
            })
            .collect()
    }
}

fn sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        value => value.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)?),
        None => (series, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \"quoted\""`, with the exposition's escapes (`\\`, `\"`, `\n`).
fn labels(mut rest: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}
