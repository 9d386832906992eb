//! `#[step(...)]`: a step kind's `Step` implementation from what differs between kinds (its
//! name, flags and summary) and its `run`, whose signature already says the `with:` block and
//! the outputs. Every kind repeated the same dozen lines (a unit struct, `impl Step`, `NAME`,
//! `SUMMARY`, `type With`, `type Outputs`, and for most a `fn run` handing over to a free
//! function); a slip in one (an outputs type not the one `run` returns) compiled as long as
//! the types lined up.
//!
//! Two places to put it:
//! - on an `impl Kind { async fn run(ctx: StepCtx, w: KindWith) -> Result<KindOutputs, StepError> { .. } }`
//!   block: the block becomes `impl Step for Kind`, `run` as written;
//! - on the free `async fn` that does the work, with `kind = Kind`: the function stays as it
//!   is and `Kind`'s `run` calls it.
//!
//! Either way it declares `pub struct Kind;`. Arguments: `name = "family.kind"`, and the
//! flags that are true for this kind: `report_log`, `interactive`, `destructive`,
//! `finishes_itself`, `measures_rto`, `nests` (see `Step` in `engine/src/steps/mod.rs`). The summary
//! `pgdrill steps` shows is the first paragraph of the doc comment above it, its lines joined
//! with one space, as a field's documentation is.

use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, Ident, Item, ItemFn, ItemImpl, PathArguments, ReturnType, Token, Type,
};

/// The flags a kind may declare, as the attribute spells them and as `Step` names them.
const FLAGS: [(&str, &str); 6] = [
    ("report_log", "REPORT_LOG"),
    ("interactive", "INTERACTIVE"),
    ("destructive", "DESTRUCTIVE"),
    ("finishes_itself", "FINISHES_ITSELF"),
    ("measures_rto", "MEASURES_RTO"),
    ("nests", "NESTS"),
];

/// What `#[step(...)]` says.
pub struct StepArgs {
    name: Option<Expr>,
    kind: Option<Ident>,
    flags: Vec<Ident>,
}

impl Parse for StepArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = StepArgs { name: None, kind: None, flags: Vec::new() };
        let items = Punctuated::<StepArg, Token![,]>::parse_terminated(input)?;
        for item in items {
            match item {
                StepArg::Value(key, value) => {
                    let slot = match key.to_string().as_str() {
                        "name" => &mut args.name,
                        "kind" => {
                            let Expr::Path(p) = &value else {
                                return Err(syn::Error::new(value.span(), "`kind = ` takes the kind's type name"));
                            };
                            let ident =
                                p.path.get_ident().cloned().ok_or_else(|| {
                                    syn::Error::new(value.span(), "`kind = ` takes a plain type name")
                                })?;
                            if args.kind.replace(ident).is_some() {
                                return Err(syn::Error::new(key.span(), "`kind` given twice"));
                            }
                            continue;
                        }
                        other => {
                            return Err(syn::Error::new(
                                key.span(),
                                format!("`{other}` is not a step argument: expected `name` or `kind` (the summary is the doc comment)"),
                            ));
                        }
                    };
                    if slot.replace(value).is_some() {
                        return Err(syn::Error::new(key.span(), format!("`{key}` given twice")));
                    }
                }
                StepArg::Flag(flag) => {
                    if !FLAGS.iter().any(|(f, _)| flag == f) {
                        let known: Vec<&str> = FLAGS.iter().map(|(f, _)| *f).collect();
                        return Err(syn::Error::new(
                            flag.span(),
                            format!("`{flag}` is not a step flag: expected one of {}", known.join(", ")),
                        ));
                    }
                    if args.flags.contains(&flag) {
                        return Err(syn::Error::new(flag.span(), format!("`{flag}` given twice")));
                    }
                    args.flags.push(flag);
                }
            }
        }
        Ok(args)
    }
}

/// `key = value` or a bare flag.
enum StepArg {
    Value(Ident, Expr),
    Flag(Ident),
}

impl Parse for StepArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Ok(StepArg::Value(key, input.parse()?))
        } else {
            Ok(StepArg::Flag(key))
        }
    }
}

pub fn expand_step(args: StepArgs, item: Item) -> syn::Result<TokenStream2> {
    let span = proc_macro2::Span::call_site();
    let name = args.name.as_ref().ok_or_else(|| syn::Error::new(span, "a step needs `name = \"family.kind\"`"))?;
    let flags: Vec<TokenStream2> = FLAGS
        .iter()
        .filter(|(f, _)| args.flags.iter().any(|g| g == f))
        .map(|(_, konst)| {
            let konst = Ident::new(konst, span);
            quote! { const #konst: bool = true; }
        })
        .collect();
    let declare = |kind: &Ident, docs: &[Attribute], with: &Type, outputs: &Type, run: TokenStream2| {
        let summary = crate::doc_of(docs).ok_or_else(|| {
            syn::Error::new(
                span,
                "a step needs a doc comment (`/// ...`): its first paragraph is the summary `pgdrill steps` shows",
            )
        })?;
        Ok(quote! {
            #(#docs)*
            pub struct #kind;

            impl crate::steps::Step for #kind {
                const NAME: &'static str = #name;
                const SUMMARY: &'static str = #summary;
                #(#flags)*
                type With = #with;
                type Outputs = #outputs;
                #run
            }
        })
    };
    match item {
        Item::Impl(block) => {
            if let Some(kind) = &args.kind {
                return Err(syn::Error::new(
                    kind.span(),
                    "on an `impl` block the kind is the block's type: drop `kind`",
                ));
            }
            let (kind, run) = impl_parts(&block)?;
            let (with, outputs) = signature(&run)?;
            // The block's doc comment documents the kind; anything else on it is refused
            // rather than silently dropped.
            if let Some(other) = block.attrs.iter().find(|a| !a.path().is_ident("doc")) {
                return Err(syn::Error::new(other.span(), "a `#[step]` block takes doc comments only"));
            }
            declare(&kind, &block.attrs, &with, &outputs, quote! { #run })
        }
        Item::Fn(f) => {
            let kind = args.kind.as_ref().ok_or_else(|| {
                syn::Error::new(f.sig.ident.span(), "on a function `#[step]` needs `kind = TypeName`, the kind it runs")
            })?;
            let (with, outputs) = signature(&f)?;
            let func = &f.sig.ident;
            let run = quote_spanned! {f.sig.span()=>
                fn run(
                    ctx: crate::steps::StepCtx,
                    with: #with,
                ) -> impl ::std::future::Future<Output = ::std::result::Result<#outputs, crate::steps::StepError>> + Send {
                    #func(ctx, with)
                }
            };
            let docs: Vec<Attribute> = f.attrs.iter().filter(|a| a.path().is_ident("doc")).cloned().collect();
            let declared = declare(kind, &docs, &with, &outputs, run)?;
            Ok(quote! { #f #declared })
        }
        other => Err(syn::Error::new(
            other.span(),
            "`#[step]` goes on `impl Kind { async fn run(..) }` or on the `async fn` a kind runs",
        )),
    }
}

/// The kind and its one `run` of `impl Kind { fn run .. }`.
fn impl_parts(block: &ItemImpl) -> syn::Result<(Ident, ItemFn)> {
    if let Some((_, path, _)) = &block.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "write `impl Kind { .. }`: `#[step]` makes it the `Step` implementation",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new(block.generics.span(), "a step kind has no generics"));
    }
    let kind = match &*block.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
        _ => None,
    }
    .ok_or_else(|| syn::Error::new(block.self_ty.span(), "`#[step]` declares the kind: give a plain type name"))?;
    let mut run = None;
    for item in &block.items {
        match item {
            syn::ImplItem::Fn(f) if f.sig.ident == "run" && run.is_none() => {
                run = Some(ItemFn {
                    attrs: f.attrs.clone(),
                    vis: syn::Visibility::Inherited,
                    sig: f.sig.clone(),
                    block: Box::new(f.block.clone()),
                });
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "a `#[step]` block holds its `run` only: put helpers in free functions",
                ));
            }
        }
    }
    let run = run.ok_or_else(|| syn::Error::new(block.span(), "a `#[step]` block needs `fn run(ctx, with)`"))?;
    Ok((kind, run))
}

/// The `with:` type and the outputs type a run's signature states: its second argument, and
/// `T` of the `Result<T, StepError>` it returns (or of `impl Future<Output = Result<T, _>>`).
fn signature(f: &ItemFn) -> syn::Result<(Type, Type)> {
    let args: Vec<&FnArg> = f.sig.inputs.iter().collect();
    let with = match args.as_slice() {
        [FnArg::Typed(_), FnArg::Typed(w)] => (*w.ty).clone(),
        _ => {
            return Err(syn::Error::new(
                f.sig.inputs.span(),
                "a step's run takes two arguments: `(ctx: StepCtx, w: TheWith)`",
            ))
        }
    };
    let ReturnType::Type(_, ret) = &f.sig.output else {
        return Err(syn::Error::new(f.sig.span(), "a step's run returns `Result<Outputs, StepError>`"));
    };
    let outputs = ok_type(ret).ok_or_else(|| {
        syn::Error::new(
            ret.span(),
            "a step's run returns `Result<Outputs, StepError>` (or `impl Future<Output = Result<Outputs, StepError>>`)",
        )
    })?;
    Ok((with, outputs))
}

/// `T` of `Result<T, E>`, looking through `impl Future<Output = ..>`.
fn ok_type(ty: &Type) -> Option<Type> {
    match ty {
        Type::Path(p) => {
            let seg = p.path.segments.last()?;
            if seg.ident != "Result" {
                return None;
            }
            let PathArguments::AngleBracketed(a) = &seg.arguments else { return None };
            a.args.iter().find_map(|g| match g {
                GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            })
        }
        Type::ImplTrait(it) => it.bounds.iter().find_map(|b| {
            let syn::TypeParamBound::Trait(t) = b else { return None };
            let seg = t.path.segments.last()?;
            let PathArguments::AngleBracketed(a) = &seg.arguments else { return None };
            a.args.iter().find_map(|g| match g {
                GenericArgument::AssocType(at) if at.ident == "Output" => ok_type(&at.ty),
                _ => None,
            })
        }),
        Type::Paren(p) => ok_type(&p.elem),
        Type::Group(g) => ok_type(&g.elem),
        _ => None,
    }
}
