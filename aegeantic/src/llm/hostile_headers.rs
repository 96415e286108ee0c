//! The providers' readers of response headers take anything a server sends: arbitrary
//! bytes, and numbers of every shape (huge, negative, NaN, `inf`, fractional, empty).

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{anthropic, http_util, openai};

fn value() -> impl Strategy<Value = Vec<u8>> {
    let shaped = prop_oneof![
        Just(String::new()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        Just("NaN".to_owned()),
        Just("1e309".to_owned()),
        Just("-0".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("1h2m3.5s".to_owned()),
        Just("9999999999999999h".to_owned()),
        Just("1e300ms".to_owned()),
        Just("2024-10-08T22:00:13.123456789123Z".to_owned()),
        Just("9999-12-31T23:59:60+23:59".to_owned()),
        Just("0000-01-01T00:00:00-23:59".to_owned()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "[0-9]{1,30}(\\.[0-9]{0,12})?(ms|s|m|h)?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,20})?(Z|[+-][0-9]{2}:[0-9]{2})?",
    ];
    prop_oneof![
        shaped.prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..32),
    ]
}

const NAMES: &[&str] = &[
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
];

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((prop::sample::select(NAMES), value()), 0..12).prop_map(|pairs| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(HeaderName::from_static(name), value);
            }
        }
        headers
    })
}

fn now() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        Just(SystemTime::UNIX_EPOCH),
        (0u64..1 << 40).prop_map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn quota_and_delay_headers_never_panic(headers in headers(), now in now()) {
        let _ = openai::quota(&headers);
        let _ = anthropic::headers::quota(&headers, now);
        let _ = http_util::server_delay(&headers, now);
    }
}
