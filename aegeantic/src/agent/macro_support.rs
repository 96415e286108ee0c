//! What the code `#[tool]` generates calls: the parameters schema, argument parsing, and the
//! blocking thread of a synchronous tool.

use schemars::generate::SchemaSettings;
use schemars::transform::ReplaceUnevaluatedProperties;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::agent::ToolError;

/// Runs a synchronous tool function on tokio's blocking threads. A panic in it fails the
/// call; the function's own `Result` is the output.
pub async fn blocking<F, R>(function: F) -> Result<R, ToolError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(function)
        .await
        .map_err(|error| ToolError::failed(format!("the tool did not finish ({error})")))
}

/// The parameters schema of a tool whose arguments object is `T`, a struct with one
/// field per parameter that derives `JsonSchema`.
///
/// JSON Schema 2020-12 without `$schema` or `title`, subschemas inlined for the
/// providers that take no `$ref`. A recursive type cannot be: its schema goes under
/// `$defs` at the root, where its `#/$defs/...` references resolve, as OpenAI function
/// calling accepts. `unevaluatedProperties` (from `deny_unknown_fields` with `flatten`)
/// becomes the more widely supported `additionalProperties`. `properties` and `required`
/// are always there, if empty.
pub fn parameters<T: JsonSchema>() -> Value {
    let mut schema = SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.meta_schema = None;
            settings.inline_subschemas = true;
        })
        .with_transform(ReplaceUnevaluatedProperties::default())
        .into_generator()
        .into_root_schema_for::<T>();
    let object = schema.ensure_object();
    object.remove("title");
    object
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    object
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    schema.to_value()
}

/// The arguments of one call, taken parameter by parameter, with every problem
/// remembered for one [`ToolError::InvalidArguments`] that names the parameters.
pub struct Arguments {
    object: Map<String, Value>,
    errors: Vec<String>,
}

impl Arguments {
    /// The arguments object; `null` counts as `{}`, anything else that is not an object
    /// is an error.
    pub fn new(args: Value) -> Result<Self, ToolError> {
        let object = match args {
            Value::Object(object) => object,
            Value::Null => Map::new(),
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "the arguments must be a JSON object of named parameters, not {}",
                    kind(&other)
                )))
            }
        };
        Ok(Arguments {
            object,
            errors: Vec::new(),
        })
    }

    /// The parameter `name`, or `None` with the problem remembered. A missing parameter
    /// is read as `null`, which an `Option` parameter takes as `None`.
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        let result = match self.object.remove(name) {
            Some(value) => serde_json::from_value(value)
                .map_err(|error| format!("parameter `{name}`: {error}")),
            None => serde_json::from_value(Value::Null)
                .map_err(|_| format!("missing required parameter `{name}`")),
        };
        result.map_err(|error| self.errors.push(error)).ok()
    }

    /// Fails with every problem [`take`](Self::take) met.
    pub fn finish(self) -> Result<(), ToolError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ToolError::InvalidArguments(self.errors.join("; ")))
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
