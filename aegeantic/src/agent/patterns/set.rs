//! A validated group of patterns, and the built-in ones for common tool-call styles.

use super::{Pattern, PatternFormat, SegmentKind};

/// The input cap of a new [`PatternSet`]: 1 MiB.
pub const DEFAULT_INPUT_CAP: usize = 1 << 20;

/// What becomes of the model's text outside every pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OutsideText {
    /// It is the response (the default).
    #[default]
    Response,
    /// It is dropped: only explicit [`SegmentKind::Response`] segments make the response.
    Ignored,
}

/// Why a [`PatternSet`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternSetError {
    /// The set has no pattern.
    #[error("a pattern set needs at least one pattern")]
    Empty,
    /// A tag is the empty string, which would match everywhere.
    #[error("pattern {pattern}: the {which} tag is empty")]
    EmptyTag {
        /// The pattern's index in the set.
        pattern: usize,
        /// `"start"` or `"end"`.
        which: &'static str,
    },
    /// A tool pattern without a call format, or a reasoning or response pattern with one.
    #[error("pattern {pattern}: a {kind:?} segment cannot be in the {format:?} format")]
    Format {
        /// The pattern's index in the set.
        pattern: usize,
        /// Its kind.
        kind: SegmentKind,
        /// Its format.
        format: PatternFormat,
    },
    /// One start tag is a prefix of another (or equal to it), so which segment opens
    /// would depend on what follows.
    #[error("the start tags {first_tag:?} (pattern {first}) and {second_tag:?} (pattern {second}) overlap: one is a prefix of the other")]
    OverlappingStarts {
        /// The first pattern's index.
        first: usize,
        /// Its start tag.
        first_tag: String,
        /// The second pattern's index.
        second: usize,
        /// Its start tag.
        second_tag: String,
    },
    /// A tag around tool results is the empty string.
    #[error("the {which} tag around tool results is empty")]
    EmptyResultTag {
        /// `"start"` or `"end"`.
        which: &'static str,
    },
}

/// The patterns an agent looks for in a model's plain text, for models and servers without
/// native function calling.
///
/// A set is validated when it is made: no empty tags, no start tag that is a prefix of
/// another, tool patterns in a call format and the others in [`PatternFormat::Text`].
/// Besides its patterns it says what the text outside them is ([`OutsideText`]) and between
/// which tags tool results are sent back to the model.
///
/// ```
/// use aegeantic::agent::{Pattern, PatternFormat, PatternSet, PatternSetError};
///
/// let set = PatternSet::new([
///     Pattern::tool("<call>", "</call>", PatternFormat::NameArguments),
///     Pattern::reasoning("<think>", "</think>"),
/// ])?
/// .explicit_only();
/// assert_eq!(set.patterns().len(), 2);
///
/// let ambiguous = PatternSet::new([
///     Pattern::tool("```tool", "```", PatternFormat::Json),
///     Pattern::response("```", "```"),
/// ]);
/// assert!(matches!(ambiguous, Err(PatternSetError::OverlappingStarts { .. })));
/// # Ok::<(), PatternSetError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    outside: OutsideText,
    result_start: String,
    result_end: String,
    input_cap: usize,
}

impl PatternSet {
    /// A set of `patterns`, the text outside them the response, tool results sent back
    /// between `<tool_result>` and `</tool_result>`, answers capped at
    /// [`DEFAULT_INPUT_CAP`].
    ///
    /// # Errors
    /// When the set is empty or a pattern is invalid (see [`PatternSetError`]).
    pub fn new(patterns: impl IntoIterator<Item = Pattern>) -> Result<Self, PatternSetError> {
        let patterns: Vec<Pattern> = patterns.into_iter().collect();
        validate(&patterns)?;
        Ok(PatternSet {
            patterns,
            outside: OutsideText::Response,
            result_start: "<tool_result>".to_owned(),
            result_end: "</tool_result>".to_owned(),
            input_cap: DEFAULT_INPUT_CAP,
        })
    }

    /// The default style: `<tool>{"name": ..., "arguments": {...}}</tool>` and reasoning in
    /// `<think>...</think>`.
    pub fn tool_tags() -> Self {
        builtin([
            Pattern::tool("<tool>", "</tool>", PatternFormat::Json),
            Pattern::reasoning("<think>", "</think>"),
        ])
    }

    /// The style of Hermes- and Qwen-like chat templates: `<tool_call>{"name": ...,
    /// "arguments": {...}}</tool_call>`, reasoning in `<think>...</think>`, results in
    /// `<tool_response>...</tool_response>`.
    pub fn xml_tags() -> Self {
        builtin([
            Pattern::tool("<tool_call>", "</tool_call>", PatternFormat::Json),
            Pattern::reasoning("<think>", "</think>"),
        ])
        .with_builtin_results("<tool_response>", "</tool_response>")
    }

    /// Lines in tags: `<tool>` / `Name: tool_name` / `Arguments: {...}` / `</tool>`, and
    /// reasoning in `<think>...</think>`.
    pub fn name_arguments() -> Self {
        builtin([
            Pattern::tool("<tool>", "</tool>", PatternFormat::NameArguments),
            Pattern::reasoning("<think>", "</think>"),
        ])
    }

    /// Calls in fenced code blocks: a line `` ```tool ``, the JSON object, then `` ``` ``;
    /// results sent back in a `` ```tool_result `` block.
    pub fn fenced() -> Self {
        builtin([Pattern::tool("```tool\n", "```", PatternFormat::Json)])
            .with_builtin_results("```tool_result\n", "```")
    }

    /// The same set, with the text outside every pattern dropped: the response is made of
    /// [`SegmentKind::Response`] segments only.
    #[must_use]
    pub fn explicit_only(mut self) -> Self {
        self.outside = OutsideText::Ignored;
        self
    }

    /// The same set, with tool results sent back to the model between `start` and `end`.
    ///
    /// # Errors
    /// [`PatternSetError::EmptyResultTag`] for an empty tag.
    pub fn with_result_tags(
        self,
        start: impl Into<String>,
        end: impl Into<String>,
    ) -> Result<Self, PatternSetError> {
        let (start, end) = (start.into(), end.into());
        for (tag, which) in [(&start, "start"), (&end, "end")] {
            if tag.is_empty() {
                return Err(PatternSetError::EmptyResultTag { which });
            }
        }
        Ok(self.with_builtin_results(start, end))
    }

    fn with_builtin_results(mut self, start: impl Into<String>, end: impl Into<String>) -> Self {
        self.result_start = start.into();
        self.result_end = end.into();
        self
    }

    /// The same set, with answers capped at `bytes`: an [`Extractor`](super::Extractor)
    /// refuses a chunk that would take the answer past it
    /// ([`ExtractError::InputCap`](super::ExtractError::InputCap)), and the agent's step
    /// then fails.
    #[must_use]
    pub fn with_input_cap(mut self, bytes: usize) -> Self {
        self.input_cap = bytes;
        self
    }

    /// The most bytes of one answer an extractor takes in.
    pub fn input_cap(&self) -> usize {
        self.input_cap
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// What the text outside every pattern is.
    pub fn outside(&self) -> OutsideText {
        self.outside
    }

    /// The tags tool results are sent back between.
    pub fn result_tags(&self) -> (&str, &str) {
        (&self.result_start, &self.result_end)
    }
}

impl Default for PatternSet {
    /// [`PatternSet::tool_tags`].
    fn default() -> Self {
        PatternSet::tool_tags()
    }
}

/// A built-in set, valid by construction (its tests check).
fn builtin<const N: usize>(patterns: [Pattern; N]) -> PatternSet {
    PatternSet {
        patterns: patterns.into(),
        outside: OutsideText::Response,
        result_start: "<tool_result>".to_owned(),
        result_end: "</tool_result>".to_owned(),
        input_cap: DEFAULT_INPUT_CAP,
    }
}

fn validate(patterns: &[Pattern]) -> Result<(), PatternSetError> {
    if patterns.is_empty() {
        return Err(PatternSetError::Empty);
    }
    for (index, pattern) in patterns.iter().enumerate() {
        for (tag, which) in [(&pattern.start, "start"), (&pattern.end, "end")] {
            if tag.is_empty() {
                return Err(PatternSetError::EmptyTag {
                    pattern: index,
                    which,
                });
            }
        }
        let is_call_format = pattern.format != PatternFormat::Text;
        if is_call_format != (pattern.kind == SegmentKind::Tool) {
            return Err(PatternSetError::Format {
                pattern: index,
                kind: pattern.kind,
                format: pattern.format,
            });
        }
        for (earlier, other) in patterns[..index].iter().enumerate() {
            if other.start.starts_with(&pattern.start) || pattern.start.starts_with(&other.start) {
                return Err(PatternSetError::OverlappingStarts {
                    first: earlier,
                    first_tag: other.start.clone(),
                    second: index,
                    second_tag: pattern.start.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_sets_are_valid() {
        for set in [
            PatternSet::tool_tags(),
            PatternSet::xml_tags(),
            PatternSet::name_arguments(),
            PatternSet::fenced(),
        ] {
            assert_eq!(validate(set.patterns()), Ok(()), "{set:?}");
            let (start, end) = set.result_tags();
            assert!(!start.is_empty() && !end.is_empty());
        }
    }

    #[test]
    fn invalid_sets_are_refused_with_the_pattern_at_fault() {
        let json = PatternFormat::Json;
        assert_eq!(PatternSet::new([]), Err(PatternSetError::Empty));
        assert_eq!(
            PatternSet::new([
                Pattern::reasoning("<a>", "</a>"),
                Pattern::tool("<b>", "", json)
            ]),
            Err(PatternSetError::EmptyTag {
                pattern: 1,
                which: "end"
            })
        );
        assert_eq!(
            PatternSet::new([Pattern::tool("", "x", json)]),
            Err(PatternSetError::EmptyTag {
                pattern: 0,
                which: "start"
            })
        );
        assert_eq!(
            PatternSet::new([Pattern::tool("<t>", "</t>", PatternFormat::Text)]),
            Err(PatternSetError::Format {
                pattern: 0,
                kind: SegmentKind::Tool,
                format: PatternFormat::Text
            })
        );
        let mut json_reasoning = Pattern::reasoning("<r>", "</r>");
        json_reasoning.format = json;
        assert!(matches!(
            PatternSet::new([json_reasoning]),
            Err(PatternSetError::Format { pattern: 0, .. })
        ));
        for (a, b) in [("<t>", "<t>"), ("<t", "<t>"), ("<tool>", "<to")] {
            let error = PatternSet::new([
                Pattern::response("<x>", "</x>"),
                Pattern::tool(a, "</t>", json),
                Pattern::reasoning(b, "</r>"),
            ])
            .unwrap_err();
            assert_eq!(
                error,
                PatternSetError::OverlappingStarts {
                    first: 1,
                    first_tag: a.into(),
                    second: 2,
                    second_tag: b.into()
                }
            );
            assert!(error.to_string().contains("overlap"), "{error}");
        }
        // Tags that merely share a prefix are fine.
        assert!(PatternSet::new([
            Pattern::tool("<tool>", "</tool>", json),
            Pattern::tool("<tool_call>", "</tool_call>", json),
        ])
        .is_ok());
        assert_eq!(
            PatternSet::tool_tags().with_result_tags("", "</r>"),
            Err(PatternSetError::EmptyResultTag { which: "start" })
        );
    }
}
