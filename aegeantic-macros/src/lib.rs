//! The `#[tool("description")]` and `#[tools]` attributes for `aegeantic` agents; use them
//! through `aegeantic::tool` and `aegeantic::tools` (feature `macros`).
//!
//! The JSON schema of the parameters comes from `schemars`, through the copy that
//! `aegeantic` re-exports: the macro gathers the parameters into a struct that derives
//! `JsonSchema`, so any parameter type that implements `JsonSchema` and `Deserialize` works,
//! and doc comments on the parameters become their descriptions. The arguments are parsed
//! parameter by parameter, so that an error names the parameter.
#![warn(missing_docs)]

mod generate;
mod methods;
mod params;

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Ident, ItemFn, ItemImpl, LitStr};

use generate::{pascal_case, tool_impl, ToolDef};

/// Makes a function an agent tool.
///
/// ```ignore
/// #[tool("Adds two integers")]
/// async fn add(
///     /// The first addend.
///     a: i64,
///     b: i64,
/// ) -> Result<i64, ToolError> {
///     Ok(a + b)
/// }
/// ```
///
/// keeps `add` and generates a unit struct `Add` that implements `aegeantic::agent::Tool`
/// with the name `"add"`, the description, and:
///
/// - a JSON schema of the parameters from `schemars`: an object with one property per
///   parameter, every parameter but the `Option`s required. A parameter's type must
///   implement `schemars::JsonSchema` and `serde::Deserialize`: derive both on your own
///   structs and enums, `JsonSchema` with a `schemars` 1 dependency of your own or through
///   `aegeantic::schemars` (`#[derive(aegeantic::schemars::JsonSchema)]` and
///   `#[schemars(crate = "aegeantic::schemars")]`). Doc comments on a parameter become its
///   `description`, and `#[schemars(...)]` attributes on it (`range`, `length`, `regex`,
///   `example`, ...) are passed on; those that rename or drop it are refused. Subschemas are
///   inlined, but for recursive types, which go under `$defs` at the root of the schema.
/// - a `call` that parses the arguments parameter by parameter: a missing parameter, a
///   value of the wrong shape, or arguments that are not an object become
///   `ToolError::InvalidArguments`, naming the parameters, which the model sees. A missing
///   `Option` parameter is `None`.
///
/// A parameter of type `ToolContext` receives the call's context and is left out of the
/// schema. The function must return `Result<T, E>` with `T: Serialize` and
/// `ToolError: From<E>`.
///
/// A synchronous `fn` is run on tokio's blocking threads (`spawn_blocking`), so that it
/// may block without stalling the agent; a panic in it fails the call. A timeout in the
/// tool's policy ends the call, but cannot stop the thread, which runs the function to its
/// end.
///
/// On methods, use `#[tools]` on their impl block.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let description = parse_macro_input!(attr as LitStr);
    let function = parse_macro_input!(item as ItemFn);
    expand_fn(&description, function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes the `#[tool("...")]` methods of an impl block agent tools that share the instance.
///
/// ```ignore
/// struct ApiTool {
///     retry: RetryConfig,
/// }
///
/// #[tools]
/// impl ApiTool {
///     #[tool("Fetch data from external API")]
///     async fn fetch_data(&self, url: String, ctx: ToolContext) -> Result<String, ToolError> {
///         // uses self.retry
///     }
///
///     #[tool("The API's status")]
///     fn status(&self) -> Result<String, ToolError> { Ok("up".into()) }
/// }
///
/// let tools: Vec<Arc<dyn Tool>> = Arc::new(ApiTool { retry }).tools();
/// ```
///
/// Each `#[tool]` method must take `&self`; its parameters and return type follow the
/// rules of `#[tool]` on a function, a synchronous method runs on a blocking thread. For
/// each, a struct named after the type and the method (`ApiToolFetchData`, with the
/// method's visibility) holds an `Arc<ApiTool>` and implements `Tool` with the method's
/// name (`"fetch_data"`); `ApiToolFetchData::new(arc)` makes one. The block gains
/// `pub fn tools(self: Arc<Self>) -> Vec<Arc<dyn Tool>>`, every tool of the block in order,
/// all sharing the one instance. Methods without `#[tool]` are left as they are.
#[proc_macro_attribute]
pub fn tools(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new_spanned(attr, "#[tools] takes no arguments")
            .into_compile_error()
            .into();
    }
    let block = parse_macro_input!(item as ItemImpl);
    methods::expand(block)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand_fn(description: &LitStr, mut function: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let signature = &mut function.sig;
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &signature.generics,
            "#[tool] functions cannot be generic",
        ));
    }
    if let Some(receiver) = signature.receiver() {
        return Err(syn::Error::new_spanned(
            receiver,
            "#[tool] functions cannot take self; on methods, put #[tools] on the impl block",
        ));
    }
    let blocking = signature.asyncness.is_none();
    let fn_name = signature.ident.clone();
    let tool_name = fn_name.to_string();
    let struct_name = Ident::new(&pascal_case(&tool_name), fn_name.span());
    let vis = function.vis.clone();
    let params = params::gather(signature)?;
    let call_args = &params.call_args;
    let invoke = quote!(#fn_name(#(#call_args),*));
    let tool = tool_impl(ToolDef {
        struct_name: &struct_name,
        tool_name: &tool_name,
        description,
        params,
        prelude: quote!(),
        invoke,
        blocking,
    });
    Ok(quote! {
        #function

        #[doc = concat!("The `", #tool_name, "` tool: ", #description)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #struct_name;

        #tool
    })
}

#[cfg(test)]
mod tests;
