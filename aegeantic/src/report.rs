//! Showing an error to a person: its own message followed by every cause.
//!
//! Aegeantic's errors follow the Rust convention: each layer's `Display` says what went
//! wrong at that layer only, and the cause is its [`source()`](Error::source). Printing
//! just the outer error therefore hides why it happened (`model call failed` says nothing
//! about the HTTP 400 under it). [`DisplayChain`] prints the whole chain on one line;
//! [`Report`] does the same for an error returned from `main`.

use std::error::Error;
use std::fmt;

/// Causes followed beyond this are cut: a `source()` cycle must not print forever.
const MAX_CHAIN: usize = 64;

/// Displays an error and its causes, outermost first, joined by `": "`.
///
/// A cause whose message the text so far already ends with is skipped, so a layer that
/// repeats its cause in its own message is not printed twice.
///
/// ```
/// use std::io;
/// use aegeantic::report::DisplayChain;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("model call failed")]
/// struct CallFailed(#[source] io::Error);
///
/// let error = CallFailed(io::Error::other("HTTP 400: bad role"));
/// assert_eq!(error.to_string(), "model call failed");
/// assert_eq!(DisplayChain(&error).to_string(), "model call failed: HTTP 400: bad role");
/// ```
#[derive(Clone, Copy)]
pub struct DisplayChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = self.0.to_string();
        let mut cause = self.0.source();
        let mut links = 1;
        while let Some(error) = cause {
            if links == MAX_CHAIN {
                written.push_str(": …");
                break;
            }
            let text = error.to_string();
            if !text.is_empty() && !written.ends_with(&text) {
                written.push_str(": ");
                written.push_str(&text);
            }
            cause = error.source();
            links += 1;
        }
        f.write_str(&written)
    }
}

impl fmt::Debug for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Any error, shown with its whole chain: the error type for `main`.
///
/// A `main` that returns `Err` prints the error's `Debug` form; for a `Report` that is the
/// [`DisplayChain`], so the program ends with `Error: outer: cause: root cause` and exit
/// status 1.
///
/// ```
/// use std::io;
/// use aegeantic::report::Report;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("model call failed")]
/// struct CallFailed(#[source] io::Error);
///
/// fn run() -> Result<(), Report> {
///     Err(CallFailed(io::Error::other("HTTP 401: bad key")))?
/// }
///
/// // What `main` would print after `Error: `.
/// assert_eq!(format!("{:?}", run().unwrap_err()), "model call failed: HTTP 401: bad key");
/// ```
pub struct Report(Box<dyn Error + 'static>);

impl Report {
    /// The error itself.
    pub fn error(&self) -> &(dyn Error + 'static) {
        &*self.0
    }
}

impl<E: Error + 'static> From<E> for Report {
    fn from(error: E) -> Self {
        Report(Box::new(error))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DisplayChain(self.error()).fmt(f)
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DisplayChain(self.error()).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("retold: {0}")]
    struct Retold(#[source] Outer);

    #[derive(Debug)]
    struct Cycle;

    impl fmt::Display for Cycle {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("again")
        }
    }

    impl Error for Cycle {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            static CYCLE: Cycle = Cycle;
            Some(&CYCLE)
        }
    }

    #[test]
    fn every_cause_is_printed_once() {
        let root = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(
            DisplayChain(&Outer(root)).to_string(),
            "outer: connection refused"
        );
        // A layer that already repeats its cause does not get it printed again.
        let retold = Retold(Outer(io::Error::other("root")));
        assert_eq!(DisplayChain(&retold).to_string(), "retold: outer: root");
        let report = Report::from(Outer(io::Error::other("root")));
        assert_eq!(format!("{report:?}"), "outer: root");
        assert_eq!(report.to_string(), "outer: root");
    }

    #[test]
    fn a_cycle_is_cut() {
        let text = DisplayChain(&Cycle).to_string();
        assert!(text.starts_with("again"), "{text}");
        assert!(text.ends_with(": …"), "{text}");
        // Repeats of the same text are skipped, so the cycle prints once.
        assert_eq!(text, "again: …");
    }
}
