//! What the model is told: how to write a call in the set's style, and how results come
//! back.

use serde_json::{json, Value};

use super::{PatternFormat, PatternSet, SegmentKind};
use crate::llm::{ToolCall, ToolSpec};

impl PatternSet {
    /// Instructions for a model without native function calling: the syntax of the set's
    /// first tool pattern, where results come back, and each tool with its description and
    /// parameters' schema. `None` when the set has no tool pattern or there are no tools.
    ///
    /// ```
    /// use aegeantic::agent::PatternSet;
    /// use aegeantic::llm::ToolSpec;
    ///
    /// let tools = [ToolSpec {
    ///     name: "add".into(),
    ///     description: "Adds two integers".into(),
    ///     parameters: serde_json::json!({"type": "object"}),
    /// }];
    /// let prompt = PatternSet::tool_tags().tool_instructions(&tools).unwrap();
    /// assert!(prompt.contains(r#"<tool>{"name": "TOOL_NAME", "arguments": {...}}</tool>"#));
    /// assert!(prompt.contains("- add: Adds two integers"));
    /// ```
    pub fn tool_instructions(&self, tools: &[ToolSpec]) -> Option<String> {
        let pattern = self
            .patterns()
            .iter()
            .find(|pattern| pattern.kind == SegmentKind::Tool)?;
        if tools.is_empty() {
            return None;
        }
        let body = match pattern.format {
            PatternFormat::NameArguments => "\nName: TOOL_NAME\nArguments: {...}\n".to_owned(),
            PatternFormat::Json | PatternFormat::Text => {
                let call = r#"{"name": "TOOL_NAME", "arguments": {...}}"#;
                line_after(&pattern.start, call)
            }
        };
        let (result_start, result_end) = self.result_tags();
        let mut prompt = format!(
            "You can call tools. To call one, write exactly\n{}{body}{}\nwith the arguments \
             as a JSON object that fits the tool's parameters. You may call several tools in \
             one answer. Each result comes back in the next message as \
             {result_start}...{result_end}.\nTools:\n",
            pattern.start, pattern.end
        );
        for tool in tools {
            prompt.push_str(&format!(
                "- {}: {} Parameters: {}\n",
                tool.name, tool.description, tool.parameters
            ));
        }
        Some(prompt)
    }

    /// A tool call's result as the set sends it back to the model, between its
    /// [`result_tags`](PatternSet::result_tags): for a call in [`PatternFormat::Json`],
    /// `{"call_id": ..., "name": ..., "result": ...}` (`"error"` instead of `"result"` for a
    /// failed call, `output` then being the message); for
    /// [`PatternFormat::NameArguments`], lines `Name:` and `Result:` (or `Error:`).
    ///
    /// ```
    /// use aegeantic::agent::{PatternFormat, PatternSet};
    /// use aegeantic::llm::ToolCall;
    /// use serde_json::json;
    ///
    /// let call = ToolCall { id: "c1".into(), name: "add".into(), arguments: "{}".into() };
    /// let set = PatternSet::tool_tags();
    /// assert_eq!(
    ///     set.format_result(PatternFormat::Json, &call, &json!(5), false),
    ///     r#"<tool_result>{"call_id":"c1","name":"add","result":5}</tool_result>"#
    /// );
    /// assert_eq!(
    ///     set.format_result(PatternFormat::NameArguments, &call, &json!("error: no"), true),
    ///     "<tool_result>\nName: add\nError: error: no\n</tool_result>"
    /// );
    /// ```
    pub fn format_result(
        &self,
        format: PatternFormat,
        call: &ToolCall,
        output: &Value,
        is_error: bool,
    ) -> String {
        let (start, end) = self.result_tags();
        let body = match format {
            PatternFormat::NameArguments => {
                let label = if is_error { "Error" } else { "Result" };
                let text = match output {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                format!("\nName: {}\n{label}: {text}\n", call.name)
            }
            PatternFormat::Json | PatternFormat::Text => {
                let key = if is_error { "error" } else { "result" };
                let body = json!({ "call_id": call.id, "name": call.name, key: output });
                line_after(start, &body.to_string())
            }
        };
        format!("{start}{body}{end}")
    }
}

/// `text`, on a line of its own when the tag before it ends one (a code fence).
fn line_after(tag: &str, text: &str) -> String {
    if tag.ends_with('\n') {
        format!("{text}\n")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ToolSpec {
        ToolSpec {
            name: "add".into(),
            description: "Adds.".into(),
            parameters: json!({"type": "object"}),
        }
    }

    #[test]
    fn instructions_follow_the_first_tool_pattern() {
        let lines = PatternSet::name_arguments()
            .tool_instructions(&[spec()])
            .unwrap();
        assert!(
            lines.contains("<tool>\nName: TOOL_NAME\nArguments: {...}\n</tool>"),
            "{lines}"
        );
        assert!(lines.contains("<tool_result>...</tool_result>"), "{lines}");
        let fenced = PatternSet::fenced().tool_instructions(&[spec()]).unwrap();
        assert!(fenced.contains("```tool\n{\"name\": \"TOOL_NAME\", \"arguments\": {...}}\n```"));
        assert!(
            fenced.contains(r#"- add: Adds. Parameters: {"type":"object"}"#),
            "{fenced}"
        );
        assert_eq!(PatternSet::tool_tags().tool_instructions(&[]), None);
        let no_tools = PatternSet::new([super::super::Pattern::reasoning("<r>", "</r>")]).unwrap();
        assert_eq!(no_tools.tool_instructions(&[spec()]), None);
    }

    #[test]
    fn a_fenced_result_is_a_fenced_block() {
        let call = ToolCall {
            id: "c".into(),
            name: "add".into(),
            arguments: "{}".into(),
        };
        assert_eq!(
            PatternSet::fenced().format_result(PatternFormat::Json, &call, &json!("boom"), true),
            "```tool_result\n{\"call_id\":\"c\",\"error\":\"boom\",\"name\":\"add\"}\n```"
        );
    }
}
