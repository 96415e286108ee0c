//! Reading a tool call from a tool segment's content.

use std::sync::Arc;

use serde_json::Value;

use super::PatternFormat;
use crate::llm::ToolCall;

/// Why a tool segment is no tool call. Recoverable: the runner sends the message to the
/// model as the call's result, as it does for a native call with bad arguments.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolCallError {
    /// A [`PatternFormat::Json`] call that does not parse.
    #[error("the tool call is not valid JSON")]
    Json(#[source] Arc<serde_json::Error>),
    /// The call does not name a tool: no string `"name"` in a JSON call, no `Name:` line.
    #[error("the tool call does not name a tool")]
    NoName,
    /// The answer ended inside the segment, before its end tag; the call is not run.
    #[error("the tool call was not closed with {end:?}")]
    Unclosed {
        /// The end tag that was missing.
        end: String,
    },
}

/// The call in `content`; `fallback_id` is its id unless the model gave one.
pub(super) fn parse_call(
    content: &str,
    format: PatternFormat,
    fallback_id: String,
) -> Result<ToolCall, ToolCallError> {
    match format {
        PatternFormat::NameArguments => name_arguments(content, fallback_id),
        // Validation keeps `Text` off tool patterns; JSON is the format to try regardless.
        PatternFormat::Json | PatternFormat::Text => json(content, fallback_id),
    }
}

fn json(content: &str, fallback_id: String) -> Result<ToolCall, ToolCallError> {
    let value: Value = serde_json::from_str(content.trim())
        .map_err(|error| ToolCallError::Json(Arc::new(error)))?;
    let name = match value.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => return Err(ToolCallError::NoName),
    };
    let arguments = match value.get("arguments") {
        None | Some(Value::Null) => "{}".to_owned(),
        // A string holds JSON text, as in OpenAI's wire format; the tool loop parses it.
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    let id = match value.get("call_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => fallback_id,
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

fn name_arguments(content: &str, fallback_id: String) -> Result<ToolCall, ToolCallError> {
    let mut name = None;
    let mut arguments = String::new();
    let mut lines = content.lines();
    while let Some(line) = lines.next() {
        if let Some(value) = label(line, "name:") {
            name = Some(value.trim());
        } else if let Some(first) = label(line, "arguments:") {
            // The JSON runs to the end of the segment.
            arguments.push_str(first);
            for rest in lines.by_ref() {
                arguments.push('\n');
                arguments.push_str(rest);
            }
        }
    }
    let name = name
        .filter(|name| !name.is_empty())
        .ok_or(ToolCallError::NoName)?;
    let arguments = arguments.trim();
    Ok(ToolCall {
        id: fallback_id,
        name: name.to_owned(),
        arguments: if arguments.is_empty() {
            "{}"
        } else {
            arguments
        }
        .to_owned(),
    })
}

/// The rest of `line` after `label` (ASCII case-insensitive, leading spaces allowed).
fn label<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let line = line.trim_start();
    let head = line.get(..label.len())?;
    head.eq_ignore_ascii_case(label)
        .then(|| &line[label.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(content: &str, format: PatternFormat) -> Result<ToolCall, ToolCallError> {
        parse_call(content, format, "fallback".to_owned())
    }

    #[test]
    fn json_calls() {
        let parsed = call(
            r#" {"name": "add", "arguments": {"a": 1, "b": 2}, "call_id": "c7"} "#,
            PatternFormat::Json,
        )
        .unwrap();
        assert_eq!(parsed.id, "c7");
        assert_eq!(parsed.name, "add");
        assert_eq!(
            serde_json::from_str::<Value>(&parsed.arguments).unwrap(),
            serde_json::json!({"a": 1, "b": 2})
        );
        let parsed = call(r#"{"name":"now"}"#, PatternFormat::Json).unwrap();
        assert_eq!((&*parsed.id, &*parsed.arguments), ("fallback", "{}"));
        let parsed = call(
            r#"{"name":"f","arguments":"{\"x\":1"}"#,
            PatternFormat::Json,
        )
        .unwrap();
        assert_eq!(
            parsed.arguments, r#"{"x":1"#,
            "kept for the tool loop to refuse"
        );
    }

    #[test]
    fn bad_json_calls_say_why() {
        let error = call(
            r#"{"name": "add", "arguments": {"a": 1,}}"#,
            PatternFormat::Json,
        )
        .unwrap_err();
        assert!(matches!(error, ToolCallError::Json(_)));
        let cause = std::error::Error::source(&error).expect("the parser's error");
        assert!(cause.to_string().contains("line 1"), "{cause}");
        for content in [
            r#"{"arguments": {}}"#,
            r#"{"name": 3}"#,
            r#"{"name": " "}"#,
            "[1]",
        ] {
            assert!(
                matches!(
                    call(content, PatternFormat::Json),
                    Err(ToolCallError::NoName)
                ),
                "{content}"
            );
        }
    }

    #[test]
    fn name_arguments_lines() {
        let parsed = call(
            "\n  name: add\nArguments: {\"a\": 1,\n  \"b\": 2}\n",
            PatternFormat::NameArguments,
        )
        .unwrap();
        assert_eq!(parsed.name, "add");
        assert_eq!(parsed.arguments, "{\"a\": 1,\n  \"b\": 2}");
        let parsed = call("Name: now", PatternFormat::NameArguments).unwrap();
        assert_eq!(parsed.arguments, "{}");
        for content in ["Arguments: {}", "Name:   \nArguments: {}", "", "é"] {
            assert!(matches!(
                call(content, PatternFormat::NameArguments),
                Err(ToolCallError::NoName)
            ));
        }
    }
}
