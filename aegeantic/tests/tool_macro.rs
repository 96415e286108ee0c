//! `#[tool]`: schema, argument parsing and errors, and use in an agent.
#![cfg(feature = "macros")]

use aegeantic::agent::{Tool, ToolContext, ToolError};
use aegeantic::schemars::JsonSchema;
use aegeantic::tool;
use serde::Deserialize;
use serde_json::{json, Value};

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

/// A place on Earth.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "aegeantic::schemars")]
struct Location {
    /// The city's name.
    city: String,
    country: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "aegeantic::schemars")]
#[serde(rename_all = "lowercase")]
enum Unit {
    Celsius,
    Fahrenheit,
}

#[tool("Forecasts the weather")]
async fn forecast(
    /// Where to forecast.
    location: Location,
    /// The temperature unit; Celsius when left out.
    unit: Option<Unit>,
    /// Days ahead to forecast, each from 1 to 7.
    #[schemars(length(min = 1))]
    days: Vec<u8>,
    /// Stops on the way.
    via: Option<Vec<Location>>,
) -> Result<Value, ToolError> {
    let unit = match unit {
        Some(Unit::Celsius) | None => "C",
        Some(Unit::Fahrenheit) => "F",
    };
    Ok(json!({
        "city": location.city,
        "country": location.country,
        "unit": unit,
        "days": days,
        "via": via.map(|via| via.into_iter().map(|stop| stop.city).collect::<Vec<_>>()),
    }))
}

#[tool("Answers with a constant")]
async fn constant(ctx: ToolContext) -> Result<&'static str, ToolError> {
    let _ = ctx;
    Ok("42")
}

#[test]
fn the_schema_is_derived_from_the_parameters() {
    assert_eq!(Add.name(), "add");
    assert_eq!(Add.description(), "Adds two integers");
    assert_eq!(
        Add.parameters(),
        json!({"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "integer", "format": "int64"},
            "b": {"type": "integer", "format": "int64"}}})
    );
    assert_eq!(
        GreetPerson.parameters(),
        json!({"type": "object", "required": ["name", "tags"], "properties": {
            "name": {"type": "string"}, "loud": {"type": ["boolean", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}}}})
    );
    assert_eq!(
        Constant.parameters(),
        json!({"type": "object", "properties": {}, "required": []}),
        "the context is not a parameter"
    );
}

#[test]
fn structs_enums_and_docs_are_in_the_schema() {
    let location = json!({
        "type": "object", "required": ["city"], "properties": {
            "city": {"description": "The city's name.", "type": "string"},
            "country": {"type": ["string", "null"]}}});
    let mut described_location = location.clone();
    described_location["description"] = json!("Where to forecast.");
    let mut via_item = location;
    via_item["description"] = json!("A place on Earth.");
    assert_eq!(
        Forecast.parameters(),
        json!({"type": "object", "required": ["location", "days"], "properties": {
            "location": described_location,
            "unit": {"description": "The temperature unit; Celsius when left out.",
                     "type": ["string", "null"], "enum": ["celsius", "fahrenheit", null]},
            "days": {"description": "Days ahead to forecast, each from 1 to 7.", "type": "array",
                     "minItems": 1,
                     "items": {"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255}},
            "via": {"description": "Stops on the way.", "type": ["array", "null"],
                    "items": via_item}}}),
        "subschemas are inlined, without $schema or title"
    );
}

#[test]
fn a_recursive_type_refers_to_defs_at_the_root() {
    let schema = CountNodes.parameters();
    let tree = &schema["properties"]["tree"];
    assert_eq!(tree["type"], "object");
    let reference = &tree["properties"]["children"]["items"]["$ref"];
    assert_eq!(reference, "#/$defs/Tree");
    let pointer = reference.as_str().unwrap().strip_prefix('#').unwrap();
    assert_eq!(schema.pointer(pointer), Some(tree), "{schema:#}");
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
        .call(json!({"name": "bo", "tags": [], "loud": null}), ctx())
        .await
        .unwrap();
    assert_eq!(out["greeting"], json!("hello bo"));
    assert_eq!(add(1, 1).await.unwrap(), 2, "the function itself is kept");
    assert_eq!(Constant.call(json!({}), ctx()).await.unwrap(), "42");
    assert_eq!(Constant.call(Value::Null, ctx()).await.unwrap(), "42");
}

#[tokio::test]
async fn structs_and_enums_are_parsed() {
    let args = json!({
        "location": {"city": "Lyon", "country": "FR"},
        "unit": "fahrenheit",
        "days": [1, 2],
        "via": [{"city": "Dijon"}],
        "unknown": "ignored",
    });
    let out = Forecast
        .call(args, ToolContext::detached("c"))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"city": "Lyon", "country": "FR", "unit": "F", "days": [1, 2], "via": ["Dijon"]})
    );
    let args = json!({"location": {"city": "Oslo"}, "days": [3]});
    let out = Forecast
        .call(args, ToolContext::detached("c"))
        .await
        .unwrap();
    assert_eq!(out["unit"], "C");
    assert_eq!(out["via"], Value::Null);
    let tree = json!({"name": "a", "children": [{"name": "b", "children": []}]});
    let out = CountNodes.call(json!({ "tree": tree }), ToolContext::detached("c"));
    assert_eq!(out.await.unwrap(), 2);
}

/// Parameters named like the generated code's locals, and like the function.
#[tool("Echoes its arguments")]
async fn echo(
    args: String,
    ctx: u8,
    echo: Option<bool>,
    r#type: String,
    context: ToolContext,
) -> Result<Value, ToolError> {
    Ok(json!([args, ctx, echo, r#type, context.call_id()]))
}

#[tokio::test]
async fn parameter_names_do_not_clash_with_generated_code() {
    assert_eq!(
        Echo.parameters()["required"],
        json!(["args", "ctx", "type"])
    );
    let args = json!({"args": "a", "ctx": 1, "type": "t"});
    let out = Echo.call(args, ToolContext::detached("c")).await.unwrap();
    assert_eq!(out, json!(["a", 1, null, "t", "c"]));
}

/// The message of the `InvalidArguments` error that `args` give.
async fn invalid(tool: &dyn Tool, args: Value) -> String {
    match tool.call(args, ToolContext::detached("c")).await {
        Err(ToolError::InvalidArguments(message)) => message,
        other => panic!("expected invalid arguments, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_arguments_name_the_parameter() {
    assert_eq!(
        invalid(&Add, json!({"a": 1})).await,
        "missing required parameter `b`"
    );
    assert_eq!(
        invalid(&Add, json!({"a": "two", "b": 2.5})).await,
        "parameter `a`: invalid type: string \"two\", expected i64; \
         parameter `b`: invalid type: floating point `2.5`, expected i64"
    );
    assert_eq!(
        invalid(&Add, json!([1, 2])).await,
        "the arguments must be a JSON object of named parameters, not an array"
    );
    assert_eq!(
        invalid(&Add, json!("{\"a\": 1, \"b\": 2}")).await,
        "the arguments must be a JSON object of named parameters, not a string"
    );
    assert_eq!(
        invalid(
            &Forecast,
            json!({"location": {"country": "FR"}, "days": [1]})
        )
        .await,
        "parameter `location`: missing field `city`"
    );
    assert_eq!(
        invalid(
            &Forecast,
            json!({"location": {"city": "Lyon"}, "days": [1], "unit": "kelvin"})
        )
        .await,
        "parameter `unit`: unknown variant `kelvin`, expected `celsius` or `fahrenheit`"
    );
    assert_eq!(
        invalid(
            &Forecast,
            json!({"location": {"city": "Lyon"}, "days": [300]})
        )
        .await,
        "parameter `days`: invalid value: integer `300`, expected u8"
    );
    assert_eq!(
        invalid(&GreetPerson, json!({"name": null, "tags": "x"})).await,
        "parameter `name`: invalid type: null, expected a string; \
         parameter `tags`: invalid type: string \"x\", expected a sequence"
    );
    let error = Add
        .call(json!({}), ToolContext::detached("c"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid arguments: missing required parameter `a`; missing required parameter `b`"
    );
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "aegeantic::schemars")]
struct Tree {
    #[allow(dead_code)]
    name: String,
    children: Vec<Tree>,
}

#[tool("Counts the nodes of a tree")]
async fn count_nodes(tree: Tree) -> Result<usize, ToolError> {
    fn count(tree: &Tree) -> usize {
        1 + tree.children.iter().map(count).sum::<usize>()
    }
    Ok(count(&tree))
}

/// Blocks its thread until it hears from the async side, or gives up after 10 s.
#[tool("Waits for a signal")]
fn wait_for_signal(ctx: ToolContext) -> Result<String, ToolError> {
    let signal = SIGNAL
        .lock()
        .unwrap()
        .take()
        .expect("one receiver per test");
    signal
        .recv_timeout(std::time::Duration::from_secs(10))
        .map_err(|error| ToolError::failed(format!("{}: {error}", ctx.call_id())))
}

static SIGNAL: std::sync::Mutex<Option<std::sync::mpsc::Receiver<String>>> =
    std::sync::Mutex::new(None);

#[tool("Panics")]
fn explode() -> Result<i64, ToolError> {
    panic!("boom")
}

#[tokio::test(flavor = "current_thread")]
async fn a_sync_tool_runs_off_the_async_thread() {
    let caller = std::thread::current().id();
    #[tool("Names the thread it runs on")]
    fn thread_name() -> Result<String, ToolError> {
        Ok(format!("{:?}", std::thread::current().id()))
    }
    let out = ThreadName
        .call(json!({}), ToolContext::detached("c"))
        .await
        .unwrap();
    assert_ne!(out, json!(format!("{caller:?}")));
    // The tool blocks until a task on the runtime's only thread sends to it: it can only
    // finish if it is not blocking that thread.
    let (send, receive) = std::sync::mpsc::channel();
    *SIGNAL.lock().unwrap() = Some(receive);
    let call = WaitForSignal.call(json!({}), ToolContext::detached("w"));
    let signal = async move {
        tokio::task::yield_now().await;
        send.send("go".to_owned()).unwrap();
    };
    let (out, ()) = tokio::join!(call, signal);
    assert_eq!(out.unwrap(), json!("go"));
    let error = Explode
        .call(json!({}), ToolContext::detached("c"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("panic"), "{error}");
}

/// A client with state of its own that its tools share.
struct Counter {
    calls: std::sync::atomic::AtomicU32,
    step: u32,
}

#[aegeantic::tools]
impl Counter {
    /// Adds `step` to the shared count.
    #[tool("Increments the counter")]
    async fn increment(
        &self,
        /// How many steps.
        times: Option<u32>,
        ctx: ToolContext,
    ) -> Result<Value, ToolError> {
        let add = self.step * times.unwrap_or(1);
        let now = self
            .calls
            .fetch_add(add, std::sync::atomic::Ordering::SeqCst)
            + add;
        Ok(json!({ "count": now, "call": ctx.call_id() }))
    }

    #[tool("Reads the counter")]
    pub fn read(&self) -> Result<u32, ToolError> {
        Ok(self.calls.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Not a tool.
    fn reset(&self) {
        self.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn methods_are_tools_sharing_one_instance() {
    let counter = std::sync::Arc::new(Counter {
        calls: 0.into(),
        step: 5,
    });
    let tools = std::sync::Arc::clone(&counter).tools();
    let names: Vec<&str> = tools.iter().map(|tool| tool.name()).collect();
    assert_eq!(names, ["increment", "read"]);
    assert_eq!(tools[0].description(), "Increments the counter");
    assert_eq!(
        tools[0].parameters(),
        json!({"type": "object", "required": [], "properties": {
            "times": {"description": "How many steps.", "type": ["integer", "null"],
                      "format": "uint32", "minimum": 0}}})
    );
    let out = tools[0]
        .call(json!({"times": 2}), ToolContext::detached("c7"))
        .await
        .unwrap();
    assert_eq!(out, json!({"count": 10, "call": "c7"}));
    let one = CounterIncrement::new(std::sync::Arc::clone(&counter));
    one.call(json!({}), ToolContext::detached("c8"))
        .await
        .unwrap();
    assert_eq!(
        tools[1]
            .call(json!({}), ToolContext::detached("c9"))
            .await
            .unwrap(),
        json!(15)
    );
    let error = tools[0]
        .call(json!({"times": "x"}), ToolContext::detached("c"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("parameter `times`"), "{error}");
    counter.reset();
    assert_eq!(
        CounterRead::new(counter)
            .call(json!({}), ToolContext::detached("c"))
            .await
            .unwrap(),
        json!(0)
    );
}
