//! The `anthropic-ratelimit-*` headers, whose resets are RFC 3339 timestamps.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use super::super::http_util::header;
use super::super::{Quota, QuotaWindow};

/// The rate-limit headers of a response, with resets measured from `now`.
///
/// Tokens come from `anthropic-ratelimit-tokens-*` (the server's most restrictive token
/// limit) when sent, otherwise from whichever of the input and output token windows has
/// less left.
pub(in crate::llm) fn quota(headers: &HeaderMap, now: SystemTime) -> Quota {
    let window = |kind: &str| {
        let field = |name: &str| header(headers, &format!("anthropic-ratelimit-{kind}-{name}"));
        Some(QuotaWindow {
            limit: field("limit").and_then(|value| value.parse().ok()),
            remaining: field("remaining")?.parse().ok()?,
            reset: field("reset").and_then(|value| until(value, now)),
        })
    };
    let tokens =
        window("tokens").or_else(|| match (window("input-tokens"), window("output-tokens")) {
            (Some(input), Some(output)) if output.remaining < input.remaining => Some(output),
            (input, output) => input.or(output),
        });
    Quota::new(window("requests"), tokens)
}

/// The time from `now` until `timestamp`, zero when it has passed.
fn until(timestamp: &str, now: SystemTime) -> Option<Duration> {
    let at = parse_rfc3339(timestamp)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an RFC 3339 timestamp, `2024-10-08T22:00:13Z` or with fractional seconds and a
/// `±hh:mm` offset. Times before 1970 give `None`; nothing this API sends is that old.
pub(super) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let number = |from, to| number_in(text, from, to);
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if bytes.len() < 20
        || separators.iter().any(|&(at, byte)| bytes[at] != byte)
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    // 60 is a leap second, which RFC 3339 allows.
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        // Digits past nanoseconds are dropped, not rounded.
        let digits = &fraction[..end.min(9)];
        nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
        rest = &fraction[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (hours, minutes) = (number_in(rest, 1, 3)?, number_in(rest, 4, 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let seconds = u64::try_from(seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

fn number_in(text: &str, from: usize, to: usize) -> Option<i64> {
    let digits = text.get(from..to)?;
    digits
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| digits.parse().ok())?
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
