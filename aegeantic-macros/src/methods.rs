//! `#[tools]`: the `#[tool]` methods of an impl block, as tools sharing an `Arc<Self>`.

use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::{FnArg, ImplItem, ItemImpl, LitStr, Type};

use crate::generate::{pascal_case, tool_impl, ToolDef};
use crate::params;

pub(crate) fn expand(mut block: ItemImpl) -> syn::Result<TokenStream2> {
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &block.generics,
            "#[tools] impl blocks cannot be generic",
        ));
    }
    if let Some((_, path, _)) = &block.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "#[tools] goes on an inherent impl block, not a trait impl",
        ));
    }
    let self_ty = block.self_ty.clone();
    let type_name = match &*self_ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.to_string()),
        _ => None,
    }
    .ok_or_else(|| syn::Error::new_spanned(&self_ty, "#[tools] needs a named type"))?;

    let mut generated = Vec::new();
    let mut constructors = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else {
            continue;
        };
        let Some(at) = method.attrs.iter().position(is_tool_attr) else {
            continue;
        };
        let description: LitStr = method.attrs.remove(at).parse_args()?;
        let signature = &mut method.sig;
        if !signature.generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                &signature.generics,
                "#[tool] methods cannot be generic",
            ));
        }
        match signature.inputs.first() {
            Some(FnArg::Receiver(receiver))
                if receiver.reference.is_some()
                    && receiver.mutability.is_none()
                    && receiver.colon_token.is_none() => {}
            other => {
                return Err(syn::Error::new_spanned(
                    other.map_or_else(|| quote!(#signature), |input| quote!(#input)),
                    "#[tool] methods take &self (the tools share one Arc<Self>)",
                ))
            }
        }
        let blocking = signature.asyncness.is_none();
        let method_name = signature.ident.clone();
        let tool_name = method_name.to_string();
        let struct_name = format_ident!(
            "{}{}",
            type_name,
            pascal_case(&tool_name),
            span = method_name.span()
        );
        let params = params::gather(signature)?;
        let call_args = &params.call_args;
        // A blocking call moves the instance into its thread: a clone of the `Arc`.
        let (prelude, invoke) = if blocking {
            (
                quote!(let __aegeantic_this = ::std::sync::Arc::clone(&self.0);),
                quote!(__aegeantic_this.#method_name(#(#call_args),*)),
            )
        } else {
            (quote!(), quote!(self.0.#method_name(#(#call_args),*)))
        };
        let vis = &method.vis;
        let tool = tool_impl(ToolDef {
            struct_name: &struct_name,
            tool_name: &tool_name,
            description: &description,
            params,
            prelude,
            invoke,
            blocking,
        });
        let doc = format!(
            "The `{tool_name}` tool: `{type_name}::{tool_name}`, on a shared `{type_name}`."
        );
        generated.push(quote! {
            #[doc = #doc]
            #[derive(Clone)]
            #vis struct #struct_name(::std::sync::Arc<#self_ty>);

            impl #struct_name {
                /// The tool, calling the method on `this`.
                #vis fn new(this: ::std::sync::Arc<#self_ty>) -> Self {
                    #struct_name(this)
                }
            }

            #tool
        });
        constructors.push(quote! {
            ::std::sync::Arc::new(#struct_name(::std::sync::Arc::clone(&self)))
        });
    }
    if generated.is_empty() {
        return Err(syn::Error::new_spanned(
            &self_ty,
            "#[tools] found no #[tool(\"...\")] method in this block",
        ));
    }
    Ok(quote! {
        #block

        impl #self_ty {
            /// The `#[tool]` methods of this block as agent tools, in order, sharing `self`.
            pub fn tools(
                self: ::std::sync::Arc<Self>,
            ) -> ::std::vec::Vec<::std::sync::Arc<dyn ::aegeantic::agent::Tool>> {
                ::std::vec![#(#constructors),*]
            }
        }

        #(#generated)*
    })
}

/// `#[tool(...)]`, or a path ending in `tool`, such as `#[aegeantic::tool(...)]`.
fn is_tool_attr(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "tool")
}
