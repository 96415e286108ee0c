//! A tool's parameters: the arguments struct its schema comes from, and the code that takes
//! each argument out of the model's JSON.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{Attribute, FnArg, Pat, Signature, Type};

/// What the generated `call` needs to know of a function's parameters.
pub(crate) struct Params {
    /// The arguments struct's fields, with the doc comments and `#[schemars]` attributes
    /// moved off the function's parameters.
    pub(crate) fields: Vec<TokenStream2>,
    /// One `let` per parameter, taking it out of the arguments.
    pub(crate) takes: Vec<TokenStream2>,
    /// What the function is called with, in order.
    pub(crate) call_args: Vec<TokenStream2>,
    /// Fails the call when a parameter could not be taken.
    pub(crate) unwrap: Option<TokenStream2>,
}

/// Reads the parameters of `signature`, skipping a receiver (the caller checks it), and
/// strips from them the attributes that belong to the schema.
pub(crate) fn gather(signature: &mut Signature) -> syn::Result<Params> {
    let mut fields = Vec::new();
    let mut takes = Vec::new();
    let mut locals = Vec::new();
    let mut call_args = Vec::new();
    for input in &mut signature.inputs {
        let FnArg::Typed(typed) = input else {
            continue;
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
    let unwrap = (!locals.is_empty()).then(|| {
        quote! {
            let (#(::std::option::Option::Some(#locals),)*) = (#(#locals,)*) else {
                return ::std::result::Result::Err(::aegeantic::agent::ToolError::InvalidArguments(
                    ::std::string::String::from("invalid arguments"),
                ));
            };
        }
    });
    Ok(Params {
        fields,
        takes,
        call_args,
        unwrap,
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

/// The last path segment of `ty`.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Reference(reference) => last_segment(&reference.elem),
        Type::Group(group) => last_segment(&group.elem),
        _ => None,
    }
}

pub(crate) fn is_named(ty: &Type, name: &str) -> bool {
    last_segment(ty).is_some_and(|segment| segment.ident == name)
}
