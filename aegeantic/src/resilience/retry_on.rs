//! Error classification: which failures are worth another attempt, and when.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{StreamTimeout, TimeoutKind};

/// What to do about a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Retry after the back-off delay.
    Retry,
    /// Retry, but not before this long: the server said so (`Retry-After`, gRPC pushback).
    /// The wait is the longer of this and the back-off delay.
    RetryAfter(Duration),
    /// Do not retry: the failure is permanent.
    DoNotRetry,
}

/// An error type that knows whether it is worth retrying, for use with
/// [`RetryOn::classified`].
///
/// ```
/// use std::time::Duration;
/// use aegeantic::resilience::{Classify, RetryDecision, RetryOn};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("HTTP {status}")]
/// struct ApiError { status: u16, retry_after: Option<Duration> }
///
/// impl Classify for ApiError {
///     fn classify(&self) -> Option<RetryDecision> {
///         Some(match (self.status, self.retry_after) {
///             (429 | 503, Some(wait)) => RetryDecision::RetryAfter(wait),
///             (429 | 500..=599, _) => RetryDecision::Retry,
///             _ => RetryDecision::DoNotRetry,
///         })
///     }
/// }
///
/// let retry_on = RetryOn::classified::<ApiError>();
/// let busy = ApiError { status: 429, retry_after: Some(Duration::from_secs(20)) };
/// assert_eq!(retry_on.decide(&busy), RetryDecision::RetryAfter(Duration::from_secs(20)));
/// assert!(!retry_on.matches(&ApiError { status: 404, retry_after: None }));
/// ```
pub trait Classify {
    /// The decision for this error, or `None` to leave it to other rules.
    fn classify(&self) -> Option<RetryDecision>;
}

type Matcher = dyn Fn(&(dyn Error + 'static)) -> Option<RetryDecision> + Send + Sync;

/// Decides which errors are retried.
///
/// Rules look at the error and at every error in its [`source`](Error::source) chain,
/// outermost first, so a timeout wrapped in a client's own error type is still recognised.
/// The first rule with an opinion on the first error that draws one decides; an error no
/// rule recognises is not retried. Rules combine with [`or`](RetryOn::or).
///
/// ```
/// use std::io;
/// use aegeantic::resilience::RetryOn;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("upstream overloaded")]
/// struct Overloaded;
///
/// let retry_on = RetryOn::transient().or(RetryOn::error::<Overloaded>());
/// assert!(retry_on.matches(&io::Error::from(io::ErrorKind::ConnectionReset)));
/// assert!(retry_on.matches(&Overloaded));
/// assert!(!retry_on.matches(&io::Error::from(io::ErrorKind::PermissionDenied)));
/// ```
#[derive(Clone)]
pub struct RetryOn {
    rules: Rules,
}

/// The default policy needs no allocation; any other list is shared, so that cloning it
/// never allocates.
#[derive(Clone)]
enum Rules {
    Transient,
    Listed(Arc<[Rule]>),
}

#[derive(Clone)]
struct Rule {
    label: Arc<str>,
    decide: Arc<Matcher>,
}

/// Error chains longer than this are cut: a `source()` cycle must not hang the classifier.
const MAX_CHAIN: usize = 64;

impl RetryOn {
    /// Timeouts and connection failures: an [`io::Error`] of kind `TimedOut`,
    /// `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`, `NotConnected`,
    /// `BrokenPipe` or `UnexpectedEof`, a [`tokio::time::error::Elapsed`], or an attempt's
    /// own [`StreamTimeout`] (other than the operation's deadline).
    pub fn transient() -> Self {
        RetryOn {
            rules: Rules::Transient,
        }
    }

    /// The rules; [`transient`](RetryOn::transient)'s one is made once per process.
    fn rules(&self) -> &[Rule] {
        static TRANSIENT: OnceLock<[Rule; 1]> = OnceLock::new();
        match &self.rules {
            Rules::Listed(rules) => rules,
            Rules::Transient => TRANSIENT.get_or_init(|| {
                [Rule {
                    label: "transient".into(),
                    decide: Arc::new(|error| is_transient(error).then_some(RetryDecision::Retry)),
                }]
            }),
        }
    }

    /// Errors of type `E`, found by downcasting.
    pub fn error<E: Error + 'static>() -> Self {
        Self::predicate(std::any::type_name::<E>(), |error| error.is::<E>())
    }

    /// Errors of type `E`, which decide for themselves through [`Classify`]: retry, retry
    /// after a server-given delay, or never.
    pub fn classified<E: Error + Classify + 'static>() -> Self {
        Self::rule(std::any::type_name::<E>(), |error| {
            error.downcast_ref::<E>().and_then(Classify::classify)
        })
    }

    /// Errors for which `predicate` returns `true`. The predicate sees each error of the
    /// chain in turn, outermost first.
    pub fn when<P>(predicate: P) -> Self
    where
        P: Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'static,
    {
        Self::predicate("when(..)", predicate)
    }

    /// Matches what either `self` or `other` matches.
    #[must_use]
    pub fn or(self, other: RetryOn) -> Self {
        RetryOn {
            rules: Rules::Listed(self.rules().iter().chain(other.rules()).cloned().collect()),
        }
    }

    /// What to do about `error`.
    pub fn decide(&self, error: &(dyn Error + 'static)) -> RetryDecision {
        chain(error)
            .find_map(|link| self.rules().iter().find_map(|rule| (rule.decide)(link)))
            .unwrap_or(RetryDecision::DoNotRetry)
    }

    /// Whether `error` should be retried at all.
    pub fn matches(&self, error: &(dyn Error + 'static)) -> bool {
        self.decide(error) != RetryDecision::DoNotRetry
    }

    fn predicate<P>(label: &str, predicate: P) -> Self
    where
        P: Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'static,
    {
        Self::rule(label, move |error| {
            predicate(error).then_some(RetryDecision::Retry)
        })
    }

    fn rule<D>(label: &str, decide: D) -> Self
    where
        D: Fn(&(dyn Error + 'static)) -> Option<RetryDecision> + Send + Sync + 'static,
    {
        RetryOn {
            rules: Rules::Listed(Arc::new([Rule {
                label: label.into(),
                decide: Arc::new(decide),
            }])),
        }
    }
}

/// What [`RetryOn::transient`] matches.
fn is_transient(error: &(dyn Error + 'static)) -> bool {
    if let Some(io) = error.downcast_ref::<io::Error>() {
        return matches!(
            io.kind(),
            io::ErrorKind::TimedOut
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::NotConnected
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        );
    }
    error.is::<tokio::time::error::Elapsed>()
        || error
            .downcast_ref::<StreamTimeout>()
            .is_some_and(|timeout| timeout.kind != TimeoutKind::Deadline)
}

/// The error and its causes, outermost first.
///
/// `io::Error::source` skips the error it wraps and goes straight to that error's source,
/// so the wrapped error is visited explicitly.
pub(crate) fn chain<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    let mut pending: Vec<&'a (dyn Error + 'static)> = vec![error];
    let mut seen = 0;
    std::iter::from_fn(move || {
        let link = pending.pop()?;
        seen += 1;
        if seen < MAX_CHAIN {
            if let Some(next) = link.source() {
                pending.push(next);
            }
            if let Some(inner) = link
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
            {
                pending.push(inner);
            }
        }
        Some(link)
    })
}

impl Default for RetryOn {
    /// [`RetryOn::transient`].
    fn default() -> Self {
        Self::transient()
    }
}

impl fmt::Debug for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<&str> = self.rules().iter().map(|rule| &*rule.label).collect();
        write!(f, "RetryOn({})", labels.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("marker")]
    struct Marker;

    #[test]
    fn finds_causes_deep_in_the_chain() {
        let wrapped = Outer(io::Error::from(io::ErrorKind::TimedOut));
        assert!(RetryOn::transient().matches(&wrapped));
        let marker_in_io = Outer(io::Error::other(Marker));
        assert!(RetryOn::error::<Marker>().matches(&marker_in_io));
    }

    #[test]
    fn elapsed_is_transient() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let elapsed = rt
            .block_on(async {
                tokio::time::timeout(std::time::Duration::ZERO, std::future::pending::<()>()).await
            })
            .unwrap_err();
        assert!(RetryOn::transient().matches(&elapsed));
    }

    #[test]
    fn non_matching_errors_are_not_retried() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(!RetryOn::transient().matches(&denied));
        assert!(!RetryOn::when(|e| e.to_string().contains("429")).matches(&denied));
        assert_eq!(
            format!("{:?}", RetryOn::transient().or(RetryOn::error::<Marker>())),
            format!("RetryOn(transient | {})", std::any::type_name::<Marker>())
        );
    }
}
