//! The `#[tool("description")]` attribute for `aegeantic` agents; use it through
//! `aegeantic::tool` (feature `macros`).
//!
//! The JSON schema is derived by hand from the parameter types rather than with
//! `schemars`: tool arguments are nearly always primitives, strings, options and
//! lists, which this covers exactly, and it keeps `schemars` and a `JsonSchema` derive out
//! of users' builds. Any other type gets the permissive schema `{}` and is still parsed
//! with its own `Deserialize`.
#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{
    parse_macro_input, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, Type,
};

/// Makes an `async fn` an agent tool.
///
/// `#[tool("Adds two integers")] async fn add(a: i64, b: i64) -> Result<i64, ToolError>`
/// keeps `add` and generates a unit struct `Add` that implements `aegeantic::agent::Tool`
/// with the name `"add"`, the description, a JSON schema of the parameters (an `Option`
/// parameter is not required), and a `call` that parses the arguments into a struct —
/// bad arguments become `ToolError::InvalidArguments`, which the model sees. A parameter
/// of type `ToolContext` receives the call's context and is left out of the schema. The
/// function must return `Result<T, ToolError>` with `T: Serialize`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let description = parse_macro_input!(attr as LitStr);
    let function = parse_macro_input!(item as ItemFn);
    expand(&description, &function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand(description: &LitStr, function: &ItemFn) -> syn::Result<TokenStream2> {
    let signature = &function.sig;
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
    let fn_name = &signature.ident;
    let tool_name = fn_name.to_string();
    let struct_name = Ident::new(&pascal_case(&tool_name), fn_name.span());
    let args_name = format_ident!("__{}Args", struct_name);
    let vis = &function.vis;

    let mut fields = Vec::new();
    let mut properties = Vec::new();
    let mut required = Vec::new();
    let mut call_args = Vec::new();
    for input in &signature.inputs {
        let FnArg::Typed(typed) = input else {
            return Err(syn::Error::new_spanned(
                input,
                "#[tool] functions cannot take self",
            ));
        };
        if is_named(&typed.ty, "ToolContext") {
            call_args.push(quote!(ctx.clone()));
            continue;
        }
        let Pat::Ident(pat) = &*typed.pat else {
            return Err(syn::Error::new_spanned(
                &typed.pat,
                "#[tool] parameters must be plain names",
            ));
        };
        let ident = &pat.ident;
        let ty = &typed.ty;
        let key = ident.to_string();
        fields.push(quote!(#ident: #ty));
        let schema = schema(ty);
        properties.push(quote!(properties.insert(#key.to_owned(), #schema);));
        if option_inner(ty).is_none() {
            required.push(key);
        }
        call_args.push(quote!(args.#ident));
    }

    let krate = quote!(::aegeantic);
    let serde_path = LitStr::new("::aegeantic::__private::serde", Span::call_site());
    Ok(quote! {
        #function

        #[doc = concat!("The `", #tool_name, "` tool: ", #description)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #struct_name;

        #[derive(#krate::__private::serde::Deserialize)]
        #[serde(crate = #serde_path)]
        #[allow(non_camel_case_types)]
        struct #args_name { #(#fields,)* }

        impl #krate::agent::Tool for #struct_name {
            fn name(&self) -> &str {
                #tool_name
            }

            fn description(&self) -> &str {
                #description
            }

            fn parameters(&self) -> #krate::__private::serde_json::Value {
                use #krate::__private::serde_json::{json, Map, Value};
                let mut properties = Map::new();
                #(#properties)*
                json!({
                    "type": "object",
                    "properties": Value::Object(properties),
                    "required": [#(#required),*],
                })
            }

            fn call(
                &self,
                args: #krate::__private::serde_json::Value,
                ctx: #krate::agent::ToolContext,
            ) -> #krate::agent::ToolFuture<'_> {
                ::std::boxed::Box::pin(async move {
                    let _ = &ctx;
                    let args: #args_name = #krate::__private::serde_json::from_value(args)
                        .map_err(|error| #krate::agent::ToolError::InvalidArguments(error.to_string()))?;
                    let output = #fn_name(#(#call_args),*).await?;
                    #krate::__private::serde_json::to_value(output).map_err(|error| {
                        #krate::agent::ToolError::failed(format!("output is not JSON: {error}"))
                    })
                })
            }
        }
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

/// The single type argument of `Name<T>`, when `ty` is one.
fn generic_inner<'a>(ty: &'a Type, names: &[&str]) -> Option<&'a Type> {
    let segment = last_segment(ty)?;
    if !names.iter().any(|name| segment.ident == name) {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &segment.arguments else {
        return None;
    };
    match arguments.args.first()? {
        GenericArgument::Type(inner) => Some(inner),
        _ => None,
    }
}

fn option_inner(ty: &Type) -> Option<&Type> {
    generic_inner(ty, &["Option"])
}

/// A JSON-schema expression for `ty`.
fn schema(ty: &Type) -> TokenStream2 {
    if let Some(inner) = option_inner(ty) {
        return schema(inner);
    }
    if let Some(item) = generic_inner(ty, &["Vec", "VecDeque", "HashSet", "BTreeSet"]) {
        let item = schema(item);
        return quote!(json!({ "type": "array", "items": #item }));
    }
    if let Type::Slice(slice) = ty {
        let item = schema(&slice.elem);
        return quote!(json!({ "type": "array", "items": #item }));
    }
    let kind = last_segment(ty).and_then(|segment| {
        Some(match segment.ident.to_string().as_str() {
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64"
            | "u128" | "usize" => "integer",
            "f32" | "f64" => "number",
            "bool" => "boolean",
            "String" | "str" | "char" | "PathBuf" => "string",
            _ => return None,
        })
    });
    match kind {
        Some(kind) => quote!(json!({ "type": #kind })),
        None => quote!(json!({})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(ty: &str) -> String {
        schema(&syn::parse_str(ty).unwrap())
            .to_string()
            .replace(' ', "")
    }

    #[test]
    fn schemas_of_common_types() {
        assert_eq!(schema_of("i64"), r#"json!({"type":"integer"})"#);
        assert_eq!(schema_of("Option<f32>"), r#"json!({"type":"number"})"#);
        assert_eq!(
            schema_of("std::string::String"),
            r#"json!({"type":"string"})"#
        );
        assert_eq!(
            schema_of("Vec<bool>"),
            r#"json!({"type":"array","items":json!({"type":"boolean"})})"#
        );
        assert_eq!(schema_of("MyStruct"), "json!({})");
    }

    #[test]
    fn names() {
        assert_eq!(pascal_case("get_weather"), "GetWeather");
        assert_eq!(pascal_case("add"), "Add");
        assert!(option_inner(&syn::parse_str("Option<String>").unwrap()).is_some());
        assert!(is_named(
            &syn::parse_str("aegeantic::agent::ToolContext").unwrap(),
            "ToolContext"
        ));
    }

    #[test]
    fn sync_functions_are_refused() {
        let function: ItemFn = syn::parse_str("fn f(a: i64) -> Result<i64, E> { Ok(a) }").unwrap();
        let error = expand(&LitStr::new("d", Span::call_site()), &function).unwrap_err();
        assert!(error.to_string().contains("async"));
    }
}
