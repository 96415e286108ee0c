//! Error classification: which failures are worth another attempt.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;

type Predicate = dyn Fn(&(dyn Error + 'static)) -> bool + Send + Sync;

/// Decides which errors are retried.
///
/// A `RetryOn` matches an error when any of its rules matches the error itself or any error
/// in its [`source`](Error::source) chain, so a timeout wrapped in a client's own error
/// type is still recognised. Rules combine with [`or`](RetryOn::or).
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

/// A retry config is cloned for every stream it wraps, so the common single rule is held
/// inline: cloning [`RetryOn::transient`] or [`RetryOn::error`] copies a few words and
/// touches no shared counter.
#[derive(Clone)]
enum Rules {
    One(Rule),
    Many(Arc<[Rule]>),
}

#[derive(Clone)]
struct Rule {
    label: &'static str,
    matches: Matcher,
}

#[derive(Clone)]
enum Matcher {
    /// The built-in rules: a plain function, no allocation.
    Builtin(fn(&(dyn Error + 'static)) -> bool),
    /// A caller's predicate.
    Custom(Arc<Predicate>),
}

impl Rule {
    fn matches(&self, error: &(dyn Error + 'static)) -> bool {
        match &self.matches {
            Matcher::Builtin(matches) => matches(error),
            Matcher::Custom(matches) => matches(error),
        }
    }
}

impl Rules {
    fn as_slice(&self) -> &[Rule] {
        match self {
            Rules::One(rule) => std::slice::from_ref(rule),
            Rules::Many(rules) => rules,
        }
    }
}

/// Error chains longer than this are cut: a `source()` cycle must not hang the classifier.
const MAX_CHAIN: usize = 64;

impl RetryOn {
    /// Timeouts and connection failures: an [`io::Error`] of kind `TimedOut`,
    /// `ConnectionRefused`, `ConnectionReset`, `ConnectionAborted`, `NotConnected`,
    /// `BrokenPipe` or `UnexpectedEof`, or a [`tokio::time::error::Elapsed`].
    pub fn transient() -> Self {
        Self::rule("transient", Matcher::Builtin(is_transient))
    }

    /// Errors of type `E`, found by downcasting.
    pub fn error<E: Error + 'static>() -> Self {
        Self::rule(
            std::any::type_name::<E>(),
            Matcher::Builtin(|error| error.is::<E>()),
        )
    }

    /// Errors for which `predicate` returns `true`. The predicate sees each error of the
    /// chain in turn, outermost first.
    pub fn when<P>(predicate: P) -> Self
    where
        P: Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'static,
    {
        Self::rule("when(..)", Matcher::Custom(Arc::new(predicate)))
    }

    /// Matches what either `self` or `other` matches.
    #[must_use]
    pub fn or(self, other: RetryOn) -> Self {
        let rules: Vec<Rule> = [self.rules.as_slice(), other.rules.as_slice()].concat();
        RetryOn {
            rules: Rules::Many(rules.into()),
        }
    }

    /// Whether `error` should be retried.
    pub fn matches(&self, error: &(dyn Error + 'static)) -> bool {
        let rules = self.rules.as_slice();
        chain(error).any(|link| rules.iter().any(|rule| rule.matches(link)))
    }

    fn rule(label: &'static str, matches: Matcher) -> Self {
        RetryOn {
            rules: Rules::One(Rule { label, matches }),
        }
    }
}

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
}

/// The error and its causes, outermost first.
///
/// `io::Error::source` skips the error it wraps and goes straight to that error's source,
/// so the wrapped error is visited explicitly.
fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
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
        let labels: Vec<&str> = self
            .rules
            .as_slice()
            .iter()
            .map(|rule| rule.label)
            .collect();
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
