//! `#[tool]`: schema, argument parsing and errors, and use in an agent.
#![cfg(feature = "macros")]

use aegeantic::agent::{Tool, ToolContext, ToolError};
use aegeantic::tool;
use serde_json::json;

/// Adds two integers.
#[tool("Adds two integers")]
async fn add(a: i64, b: i64) -> Result<i64, ToolError> {
    Ok(a + b)
}

#[tool("Greets someone, optionally loudly")]
pub async fn greet_person(
    name: String,
    loud: Option<bool>,
    tags: Vec<String>,
    ctx: ToolContext,
) -> Result<serde_json::Value, ToolError> {
    let greeting = format!("hello {name}");
    let greeting = if loud.unwrap_or(false) {
        greeting.to_uppercase()
    } else {
        greeting
    };
    Ok(json!({ "greeting": greeting, "tags": tags, "call": ctx.call_id() }))
}

#[test]
fn the_schema_is_derived_from_the_parameters() {
    assert_eq!(Add.name(), "add");
    assert_eq!(Add.description(), "Adds two integers");
    assert_eq!(
        Add.parameters(),
        json!({"type": "object", "required": ["a", "b"],
               "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    );
    assert_eq!(
        GreetPerson.parameters(),
        json!({"type": "object", "required": ["name", "tags"], "properties": {
            "name": {"type": "string"}, "loud": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}}}})
    );
}

#[tokio::test]
async fn arguments_are_parsed_and_bad_ones_are_tool_errors() {
    let ctx = || ToolContext::detached("c1");
    assert_eq!(
        Add.call(json!({"a": 2, "b": 3}), ctx()).await.unwrap(),
        json!(5)
    );
    let error = Add.call(json!({"a": "two"}), ctx()).await.unwrap_err();
    assert!(matches!(error, ToolError::InvalidArguments(_)), "{error}");
    let out = GreetPerson
        .call(json!({"name": "ana", "loud": true, "tags": ["x"]}), ctx())
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"greeting": "HELLO ANA", "tags": ["x"], "call": "c1"})
    );
    let out = GreetPerson
        .call(json!({"name": "bo", "tags": []}), ctx())
        .await
        .unwrap();
    assert_eq!(out["greeting"], json!("hello bo"));
    assert_eq!(add(1, 1).await.unwrap(), 2, "the function itself is kept");
}
