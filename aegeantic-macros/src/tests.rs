use proc_macro2::Span;
use syn::{ItemFn, ItemImpl, LitStr};

use super::*;
use crate::params::is_named;

fn expand_str(function: &str) -> syn::Result<String> {
    let function: ItemFn = syn::parse_str(function).unwrap();
    expand_fn(&LitStr::new("d", Span::call_site()), function).map(|tokens| tokens.to_string())
}

fn expand_impl(block: &str) -> syn::Result<String> {
    let block: ItemImpl = syn::parse_str(block).unwrap();
    methods::expand(block).map(|tokens| tokens.to_string())
}

#[test]
fn names() {
    assert_eq!(pascal_case("get_weather"), "GetWeather");
    assert_eq!(pascal_case("add"), "Add");
    assert!(is_named(
        &syn::parse_str("aegeantic::agent::ToolContext").unwrap(),
        "ToolContext"
    ));
}

#[test]
fn sync_functions_run_on_a_blocking_thread() {
    let out = expand_str("fn f(a: i64) -> Result<i64, E> { Ok(a) }").unwrap();
    assert!(out.contains("__private :: blocking (move ||"), "{out}");
    let out = expand_str("async fn f(a: i64) -> Result<i64, E> { Ok(a) }").unwrap();
    assert!(!out.contains("blocking"), "{out}");
}

#[test]
fn functions_with_self_are_sent_to_tools() {
    let error = expand_str("async fn f(&self) -> R { Ok(1) }").unwrap_err();
    assert!(error.to_string().contains("#[tools]"), "{error}");
}

#[test]
fn parameter_docs_move_to_the_schema_struct() {
    let out = expand_str(
        "async fn f(/// The count.\n #[schemars(range(min = 1))] #[allow(unused)] n: u32) \
         -> Result<u32, E> { Ok(n) }",
    )
    .unwrap();
    let function = &out[..out.find("# [doc = concat").unwrap()];
    assert!(!function.contains("doc"), "{function}");
    assert!(!function.contains("schemars"), "{function}");
    assert!(function.contains("allow"), "{function}");
    let args = &out[out.find("struct __FArgs").unwrap()..];
    assert!(args.contains(r#"# [doc = " The count."] # [schemars (range (min = 1))] n : u32"#));
}

#[test]
fn renaming_schemars_options_are_refused() {
    for option in ["rename = \"m\"", "skip", "default"] {
        let function = format!("async fn f(#[schemars({option})] n: u32) -> R {{ Ok(n) }}");
        let error = expand_str(&function).unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
    }
    assert!(expand_str(
        "async fn f(#[schemars(length(max = 3), extend(\"x\" = 1))] s: String) -> R { Ok(s) }"
    )
    .is_ok());
}

#[test]
fn methods_become_tools_sharing_the_instance() {
    let out = expand_impl(
        "impl Api { #[tool(\"Fetch\")] async fn fetch_data(&self, url: String) -> R { x } \
         #[aegeantic::tool(\"Status\")] pub fn status(&self) -> R { x } fn helper(&self) {} }",
    )
    .unwrap();
    assert!(
        out.contains("struct ApiFetchData (:: std :: sync :: Arc < Api >)"),
        "{out}"
    );
    assert!(out.contains("pub struct ApiStatus"), "{out}");
    assert!(out.contains("fn helper"), "{out}");
    assert!(
        !out.contains("# [tool"),
        "the attributes are consumed: {out}"
    );
    assert!(
        out.contains("fetch_data (__aegeantic_param_0) . await"),
        "{out}"
    );
    assert!(
        out.contains("__aegeantic_this . status ()"),
        "a blocking method runs on a clone of the Arc: {out}"
    );
}

#[test]
fn methods_must_take_a_shared_self() {
    for receiver in ["&mut self", "self", "self: Box<Self>", ""] {
        let block = format!("impl Api {{ #[tool(\"d\")] async fn m({receiver}) -> R {{ x }} }}");
        let error = expand_impl(&block).unwrap_err();
        assert!(
            error.to_string().contains("take &self"),
            "{receiver}: {error}"
        );
    }
    let error = expand_impl("impl Api { fn m(&self) {} }").unwrap_err();
    assert!(error.to_string().contains("no #[tool"), "{error}");
    let error = expand_impl("impl<T> Api<T> { #[tool(\"d\")] fn m(&self) {} }").unwrap_err();
    assert!(error.to_string().contains("generic"), "{error}");
}
