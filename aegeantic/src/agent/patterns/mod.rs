//! Tool calls and other segments in a model's plain text, for models and servers without
//! native function calling.
//!
//! A [`PatternSet`] says which tags open and close which [`SegmentKind`] (a tool call,
//! reasoning, the response) and how a call is written ([`PatternFormat`]); an
//! [`Extractor`] finds the segments while the answer streams.
//!
//! | file         | concern                                                      |
//! |--------------|--------------------------------------------------------------|
//! | `pattern`    | [`Pattern`], [`SegmentKind`], [`PatternFormat`]              |
//! | `set`        | [`PatternSet`], its validation and built-in sets            |
//! | `matcher`    | the first tag in text that may continue in the next chunk    |
//! | `call`       | reading a call from a tool segment: [`ToolCallError`]        |
//! | `extractor`  | the streaming [`Extractor`] and its [`SegmentEvent`]s         |
//! | `extraction` | a whole answer's segments: [`Extraction`]                    |
//! | `prompt`     | telling the model the syntax, and sending results back       |
//! | `text_tools` | what the runner keeps of one model call's segments           |

mod call;
mod extraction;
mod extractor;
mod matcher;
mod pattern;
mod prompt;
mod set;
mod text_tools;

pub use call::ToolCallError;
pub use extraction::Extraction;
pub use extractor::{ExtractError, Extractor, SegmentEnd, SegmentEvent};
pub use pattern::{Pattern, PatternFormat, SegmentKind};
pub use set::{OutsideText, PatternSet, PatternSetError, DEFAULT_INPUT_CAP};
pub(crate) use text_tools::{TextCall, TextTools};
