//! The code both attributes generate for one tool: the arguments struct and the `Tool` impl.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{Ident, LitStr};

use crate::params::Params;

/// One tool to generate.
pub(crate) struct ToolDef<'a> {
    /// The type that implements `Tool`.
    pub(crate) struct_name: &'a Ident,
    /// The name the model calls it by.
    pub(crate) tool_name: &'a str,
    pub(crate) description: &'a LitStr,
    pub(crate) params: Params,
    /// Statements run before the call, once the arguments are parsed.
    pub(crate) prelude: TokenStream2,
    /// Calls the function, evaluating to its `Result` (or, for a blocking function, to a
    /// `Result` of its `Result`).
    pub(crate) invoke: TokenStream2,
    /// Whether the function is synchronous, so `invoke` runs on a blocking thread.
    pub(crate) blocking: bool,
}

/// The arguments struct and `impl Tool for #struct_name`.
pub(crate) fn tool_impl(def: ToolDef<'_>) -> TokenStream2 {
    let ToolDef {
        struct_name,
        tool_name,
        description,
        params,
        prelude,
        invoke,
        blocking,
    } = def;
    let Params {
        fields,
        takes,
        call_args: _,
        unwrap,
    } = params;
    let krate = quote!(::aegeantic);
    let args_name = format_ident!("__{}Args", struct_name);
    let schemars_path = LitStr::new("::aegeantic::__private::schemars", Span::call_site());
    let output = if blocking {
        // The outer `?` is the blocking thread's (a panic), the inner the function's.
        quote!(#krate::__private::blocking(move || #invoke).await??)
    } else {
        quote!(#invoke.await?)
    };
    quote! {
        // The arguments object, for its schema (a doc comment would be its description).
        #[derive(#krate::__private::schemars::JsonSchema)]
        #[schemars(crate = #schemars_path)]
        #[allow(non_camel_case_types, dead_code)]
        struct #args_name { #(#fields,)* }

        impl #krate::agent::Tool for #struct_name {
            fn name(&self) -> &str {
                #tool_name
            }

            fn description(&self) -> &str {
                #description
            }

            fn parameters(&self) -> #krate::__private::serde_json::Value {
                #krate::__private::parameters::<#args_name>()
            }

            fn call(
                &self,
                __aegeantic_args: #krate::__private::serde_json::Value,
                __aegeantic_ctx: #krate::agent::ToolContext,
            ) -> #krate::agent::ToolFuture<'_> {
                ::std::boxed::Box::pin(async move {
                    let _ = &__aegeantic_ctx;
                    let mut __aegeantic_args = #krate::__private::Arguments::new(__aegeantic_args)?;
                    #(#takes)*
                    __aegeantic_args.finish()?;
                    #unwrap
                    #prelude
                    let output = #output;
                    #krate::__private::serde_json::to_value(output).map_err(|error| {
                        #krate::agent::ToolError::failed(format!("output is not JSON: {error}"))
                    })
                })
            }
        }
    }
}

pub(crate) fn pascal_case(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
