//! The `#[tool("description")]` attribute for `aegeantic` agents; use it through
//! `aegeantic::tool` (feature `macros`).
//!
//! The JSON schema of the parameters comes from `schemars`, through the copy that
//! `aegeantic` re-exports: the macro gathers the parameters into a struct that derives
//! `JsonSchema`, so any parameter type that implements `JsonSchema` and `Deserialize` works,
//! and doc comments on the parameters become their descriptions. The arguments are parsed
//! parameter by parameter, so that an error names the parameter.
#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{parse_macro_input, Attribute, FnArg, Ident, ItemFn, LitStr, Pat, Type};

/// Makes an `async fn` an agent tool.
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
/// schema. The function must return `Result<T, ToolError>` with `T: Serialize`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let description = parse_macro_input!(attr as LitStr);
    let function = parse_macro_input!(item as ItemFn);
    expand(&description, function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand(description: &LitStr, mut function: ItemFn) -> syn::Result<TokenStream2> {
    let signature = &mut function.sig;
    if signature.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            signature.fn_token,
            "#[tool] needs an async fn",
        ));
    }
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &signature.generics,
            "#[tool] functions cannot be generic",
        ));
    }
    let fn_name = signature.ident.clone();
    let tool_name = fn_name.to_string();
    let struct_name = Ident::new(&pascal_case(&tool_name), fn_name.span());
    let args_name = format_ident!("__{}Args", struct_name);
    let vis = function.vis.clone();

    let mut fields = Vec::new();
    let mut takes = Vec::new();
    let mut locals = Vec::new();
    let mut call_args = Vec::new();
    for input in &mut signature.inputs {
        let FnArg::Typed(typed) = input else {
            return Err(syn::Error::new_spanned(
                input,
                "#[tool] functions cannot take self",
            ));
        };
        // Doc comments and `#[schemars]` belong to the schema; the function keeps the rest.
        let (field_attrs, kept) = typed.attrs.drain(..).partition::<Vec<_>, _>(|attr| {
            attr.path().is_ident("doc") || attr.path().is_ident("schemars")
        });
        typed.attrs = kept;
        if is_named(&typed.ty, "ToolContext") {
            if let Some(attr) = field_attrs.first() {
                return Err(syn::Error::new_spanned(
                    attr,
                    "the ToolContext parameter is not in the schema",
                ));
            }
            call_args.push(quote!(__aegeantic_ctx.clone()));
            continue;
        }
        let Pat::Ident(pat) = &*typed.pat else {
            return Err(syn::Error::new_spanned(
                &typed.pat,
                "#[tool] parameters must be plain names",
            ));
        };
        for attr in &field_attrs {
            check_schemars_attr(attr)?;
        }
        let ident = &pat.ident;
        let ty = &typed.ty;
        let key = ident.to_string();
        let key = key.strip_prefix("r#").unwrap_or(&key).to_owned();
        fields.push(quote!(#(#field_attrs)* #ident: #ty));
        // Locals of their own, so that no parameter name shadows the generated code's.
        let local = format_ident!("__aegeantic_param_{}", locals.len());
        takes.push(quote!(let #local = __aegeantic_args.take::<#ty>(#key);));
        call_args.push(quote!(#local));
        locals.push(local);
    }
    let krate = quote!(::aegeantic);
    let unwrap = (!locals.is_empty()).then(|| {
        quote! {
            let (#(::std::option::Option::Some(#locals),)*) = (#(#locals,)*) else {
                return ::std::result::Result::Err(#krate::agent::ToolError::InvalidArguments(
                    ::std::string::String::from("invalid arguments"),
                ));
            };
        }
    });

    let schemars_path = LitStr::new("::aegeantic::__private::schemars", Span::call_site());
    Ok(quote! {
        #function

        #[doc = concat!("The `", #tool_name, "` tool: ", #description)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #struct_name;

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
                    let output = #fn_name(#(#call_args),*).await?;
                    #krate::__private::serde_json::to_value(output).map_err(|error| {
                        #krate::agent::ToolError::failed(format!("output is not JSON: {error}"))
                    })
                })
            }
        }
    })
}

/// Refuses `#[schemars(...)]` options that would part a parameter's property from its name.
fn check_schemars_attr(attr: &Attribute) -> syn::Result<()> {
    if !attr.path().is_ident("schemars") {
        return Ok(());
    }
    attr.parse_nested_meta(|meta| {
        for refused in ["rename", "skip", "skip_deserializing", "flatten", "default"] {
            if meta.path.is_ident(refused) {
                return Err(meta.error(format!(
                    "#[schemars({refused})] is not supported on #[tool] parameters"
                )));
            }
        }
        // Skip the option's value, whatever its form.
        if meta.input.peek(syn::Token![=]) {
            meta.value()?.parse::<syn::Expr>()?;
        } else if meta.input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in meta.input);
            content.parse::<TokenStream2>()?;
        }
        Ok(())
    })
}

fn pascal_case(name: &str) -> String {
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

/// The last path segment of `ty`, and its generic arguments.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Reference(reference) => last_segment(&reference.elem),
        Type::Group(group) => last_segment(&group.elem),
        _ => None,
    }
}

fn is_named(ty: &Type, name: &str) -> bool {
    last_segment(ty).is_some_and(|segment| segment.ident == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(function: &str) -> syn::Result<String> {
        let function: ItemFn = syn::parse_str(function).unwrap();
        expand(&LitStr::new("d", Span::call_site()), function).map(|tokens| tokens.to_string())
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
    fn sync_functions_are_refused() {
        let error = expand_str("fn f(a: i64) -> Result<i64, E> { Ok(a) }").unwrap_err();
        assert!(error.to_string().contains("async"));
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
}
