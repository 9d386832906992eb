//! `#[derive(Fields)]`: the step catalogue's documentation of a `with:` block or of a step's
//! outputs, read from the struct itself so it cannot drift from what a step accepts or emits.
//!
//! For each named field the derive takes the name as serde sees it (`rename`, `rename_all`,
//! `skip`), the first paragraph of its `///` comment as the text `pgdrill steps` shows,
//! whether it is required (not an `Option`, no `#[serde(default)]`), and its catalogue type
//! inferred from the Rust type (`String` is a string, `u64` an integer, `Vec<_>` a list, a map
//! a map, `PathBuf` a path, `Duration` a duration). Where the Rust type says less than the
//! runbook author needs (a `String` that is a path), `#[field(ty = "path")]` says it; a field
//! whose presence is checked by hand rather than by its type takes `#[field(required)]`, and a
//! password or connection string with one `#[field(secret)]` (shown as type `secret`; the
//! redactor masks its value, reading the flag, never the type's name), and a key or
//! passphrase `#[field(key)]` (a secret that is also refused when too short). A PostgreSQL
//! connection string that may carry a password takes `#[field(conninfo)]` (shown as type
//! `conninfo`; the redactor masks the password inside it, from before the run's first step,
//! and leaves the rest of it readable).
//!
//! `#[fields(outputs)]` on the struct marks a step's outputs: none is "required" (they are
//! what a step hands on, not what a runbook writes) and an `Option` is shown as `T|null`,
//! because that is what a later step reads when it is absent.
//!
//! `kinds! { family::Kind, ... }` is the one list of step kinds (see `kinds` below).
//!
//! `#[step(name = "...", summary = "...", flags)]` declares a step kind and its `Step`
//! implementation from its `run` (see `step.rs`).
//!
//! The generated code names `crate::steps::...`: these macros are for the pgdrill crate only.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields as SynFields, GenericArgument, Ident, LitStr, PathArguments, Token, Type,
    Visibility,
};

mod step;

/// `#[step(name = "family.kind", summary = "...", report_log, ..)]` on `impl Kind { async fn
/// run(..) }`, or with `kind = Kind` on the free `async fn` a kind runs: `pub struct Kind;`
/// and its `impl Step`, the `with:` and outputs types read from `run`'s signature.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(args as step::StepArgs);
    let item = syn::parse_macro_input!(item as syn::Item);
    match step::expand_step(args, item) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[proc_macro_derive(Fields, attributes(field, fields))]
pub fn derive_fields(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `kinds! { backup::Create, backup::Check, pub sql::Exec, ... }`: the one list of step kinds,
/// in catalogue order, each `module::Type` of a `Step` implementation. It declares each
/// module on its first line (with that line's visibility, private by default), so a kind in
/// a file of its own is that file and one line here; and it generates `catalogue()` (what
/// `pgdrill steps`, the runbook checks, fleet and the executor look kinds up in) and
/// `visit_kinds` (each kind's type, for checks that need the types themselves, such as the
/// outputs test), so nothing else lists kinds by hand.
#[proc_macro]
pub fn kinds(input: TokenStream) -> TokenStream {
    let entries = syn::parse_macro_input!(input with Punctuated::<KindEntry, Token![,]>::parse_terminated);
    match expand_kinds(entries.into_iter().collect()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// One line of `kinds!`: `[vis] module::Type`.
struct KindEntry {
    vis: Visibility,
    module: Ident,
    ty: Ident,
}

impl Parse for KindEntry {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let vis: Visibility = input.parse()?;
        let module: Ident = input.parse()?;
        input.parse::<Token![::]>()?;
        let ty: Ident = input.parse()?;
        Ok(KindEntry { vis, module, ty })
    }
}

fn expand_kinds(entries: Vec<KindEntry>) -> syn::Result<TokenStream2> {
    let mut modules: Vec<TokenStream2> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for e in &entries {
        let name = e.module.to_string();
        if seen.contains(&name) {
            // One module, one visibility: say it where the module is declared.
            if !matches!(e.vis, Visibility::Inherited) {
                return Err(syn::Error::new(
                    e.module.span(),
                    format!("give `{name}`'s visibility on its first line only"),
                ));
            }
            continue;
        }
        seen.push(name);
        let (vis, module) = (&e.vis, &e.module);
        modules.push(quote! { #vis mod #module; });
    }
    let paths: Vec<TokenStream2> = entries
        .iter()
        .map(|e| {
            let (m, t) = (&e.module, &e.ty);
            quote! { #m::#t }
        })
        .collect();
    let n = paths.len();
    Ok(quote! {
        #(#modules)*

        /// Every step kind, in catalogue order (generated by `kinds!`).
        pub fn catalogue() -> &'static [crate::steps::StepKind] {
            static KINDS: [crate::steps::StepKind; #n] = [#(crate::steps::kind::<#paths>()),*];
            &KINDS
        }

        /// Show every step kind's type to `v`, in catalogue order (generated by `kinds!` from
        /// the same list as `catalogue`). For the unit tests: nothing else needs the types.
        #[cfg(test)]
        pub fn visit_kinds<V: crate::steps::KindVisitor>(v: &mut V) {
            #(v.visit::<#paths>();)*
        }
    })
}

/// What the struct's own attributes say.
#[derive(Default)]
struct StructAttrs {
    outputs: bool,
    /// `rename_all` for serializing (outputs) and for deserializing (`with:`), and where.
    rename_all: (Option<String>, Option<String>, Option<proc_macro2::Span>),
    default: bool,
}

/// What a field's attributes say.
#[derive(Default)]
struct FieldAttrs {
    rename: Option<String>,
    skip: bool,
    default: bool,
    ty: Option<String>,
    required: bool,
    secret: bool,
    key: bool,
    conninfo: bool,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let st = struct_attrs(&input.attrs)?;
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            SynFields::Named(named) => named.named.iter().collect::<Vec<_>>(),
            SynFields::Unit => Vec::new(),
            SynFields::Unnamed(_) => {
                return Err(syn::Error::new(input.ident.span(), "`Fields` documents named fields only"));
            }
        },
        _ => return Err(syn::Error::new(input.ident.span(), "`Fields` documents structs only")),
    };

    let mut entries = Vec::new();
    for f in fields {
        let fa = field_attrs(&f.attrs, st.outputs)?;
        if fa.skip {
            continue;
        }
        let ident = f.ident.as_ref().ok_or_else(|| syn::Error::new(f.span(), "a field without a name"))?;
        let rust_name = ident.to_string();
        let rust_name = rust_name.strip_prefix("r#").unwrap_or(&rust_name).to_string();
        let rule = if st.outputs { &st.rename_all.0 } else { &st.rename_all.1 };
        let name = match (&fa.rename, rule) {
            (Some(n), _) => n.clone(),
            (None, Some(rule)) => rename(&rust_name, rule).ok_or_else(|| {
                let span = st.rename_all.2.unwrap_or_else(proc_macro2::Span::call_site);
                syn::Error::new(span, format!("`rename_all = \"{rule}\"` is not a rule `Fields` knows"))
            })?,
            (None, None) => rust_name.clone(),
        };
        let doc = doc_of(&f.attrs).ok_or_else(|| {
            syn::Error::new(
                ident.span(),
                format!(
                    "field `{rust_name}` has no doc comment: write one (`/// ...`), it is what `pgdrill steps` shows"
                ),
            )
        })?;
        let (inferred, optional) = match infer(&f.ty) {
            Some(t) => t,
            None if fa.ty.is_some() || fa.secret || fa.conninfo => (String::new(), is_option(&f.ty)),
            None => {
                return Err(syn::Error::new(
                    f.ty.span(),
                    format!("cannot tell the catalogue type of `{rust_name}`: give it, e.g. `#[field(ty = \"map\")]`"),
                ));
            }
        };
        let ty = match fa.ty {
            Some(t) => t,
            None if fa.secret => "secret".to_string(),
            None if fa.conninfo => "conninfo".to_string(),
            None if st.outputs && optional => format!("{inferred}|null"),
            None => inferred,
        };
        let required = !st.outputs && (fa.required || !(optional || fa.default || st.default));
        let (secret, key, conninfo) = (fa.secret, fa.key, fa.conninfo);
        entries.push(quote! {
            crate::steps::Field {
                name: #name, ty: #ty, required: #required, doc: #doc, secret: #secret, key: #key, conninfo: #conninfo,
            }
        });
    }

    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics crate::steps::Fields for #ident #ty_generics #where_clause {
            const FIELDS: &'static [crate::steps::Field] = &[#(#entries),*];
        }
    })
}

fn struct_attrs(attrs: &[Attribute]) -> syn::Result<StructAttrs> {
    let mut out = StructAttrs::default();
    for a in attrs {
        if a.path().is_ident("fields") {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("outputs") {
                    out.outputs = true;
                    Ok(())
                } else {
                    Err(meta.error("expected `outputs`"))
                }
            })?;
        } else if a.path().is_ident("serde") {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename_all") {
                    let span = Some(meta.path.span());
                    out.rename_all = if meta.input.peek(Token![=]) {
                        let s: LitStr = meta.value()?.parse()?;
                        (Some(s.value()), Some(s.value()), span)
                    } else {
                        let (ser, de) = sides(&meta)?;
                        (ser, de, span)
                    };
                } else if meta.path.is_ident("default") {
                    out.default = true;
                    skip_value(&meta)?;
                } else {
                    skip_value(&meta)?;
                }
                Ok(())
            })?;
        }
    }
    Ok(out)
}

fn field_attrs(attrs: &[Attribute], outputs: bool) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for a in attrs {
        if a.path().is_ident("field") {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("ty") {
                    let s: LitStr = meta.value()?.parse()?;
                    // A secret is a flag the redactor reads, not a type name it compares.
                    if s.value() == "secret" {
                        return Err(syn::Error::new(s.span(), "write `#[field(secret)]` for a key or password"));
                    }
                    if s.value() == "conninfo" {
                        return Err(syn::Error::new(s.span(), "write `#[field(conninfo)]` for a connection string"));
                    }
                    out.ty = Some(s.value());
                    Ok(())
                } else if meta.path.is_ident("required") {
                    out.required = true;
                    Ok(())
                } else if meta.path.is_ident("secret") {
                    out.secret = true;
                    Ok(())
                } else if meta.path.is_ident("key") {
                    // A key or passphrase is a secret that must also be long enough.
                    out.secret = true;
                    out.key = true;
                    Ok(())
                } else if meta.path.is_ident("conninfo") {
                    // A connection string: the password in it is masked, not the whole value.
                    out.conninfo = true;
                    Ok(())
                } else {
                    Err(meta.error("expected `ty = \"...\"`, `required`, `secret`, `key` or `conninfo`"))
                }
            })?;
        } else if a.path().is_ident("serde") {
            a.parse_nested_meta(|meta| {
                let p = &meta.path;
                if p.is_ident("rename") {
                    if meta.input.peek(Token![=]) {
                        let s: LitStr = meta.value()?.parse()?;
                        out.rename = Some(s.value());
                    } else {
                        let (ser, de) = sides(&meta)?;
                        if let Some(n) = if outputs { ser } else { de } {
                            out.rename = Some(n);
                        }
                    }
                } else if p.is_ident("skip") {
                    out.skip = true;
                } else if p.is_ident("skip_deserializing") {
                    out.skip |= !outputs;
                } else if p.is_ident("skip_serializing") {
                    out.skip |= outputs;
                } else if p.is_ident("default") {
                    out.default = true;
                    skip_value(&meta)?;
                } else if p.is_ident("flatten") {
                    return Err(meta.error("`Fields` cannot document a flattened field: list its fields here"));
                } else {
                    skip_value(&meta)?;
                }
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// `(serialize = "..", deserialize = "..")`.
fn sides(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<(Option<String>, Option<String>)> {
    let (mut ser, mut de) = (None, None);
    meta.parse_nested_meta(|m| {
        let s: LitStr = m.value()?.parse()?;
        if m.path.is_ident("serialize") {
            ser = Some(s.value());
        } else if m.path.is_ident("deserialize") {
            de = Some(s.value());
        }
        Ok(())
    })?;
    Ok((ser, de))
}

/// Consume what follows a serde key this derive does not read (`= "path"` or `(...)`).
fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        let _: TokenStream2 = content.parse()?;
    }
    Ok(())
}

/// The first paragraph of the doc comment, its lines joined: what the catalogue shows. Later
/// paragraphs are for readers of the code.
fn doc_of(attrs: &[Attribute]) -> Option<String> {
    let mut lines = Vec::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value {
                // An empty `///` line is an empty string, which has no lines: keep it as the
                // paragraph break it is.
                let text = s.value();
                if text.trim().is_empty() {
                    lines.push(String::new());
                }
                lines.extend(text.lines().map(|l| l.trim().to_string()));
            }
        }
    }
    let first: Vec<String> = lines.into_iter().skip_while(String::is_empty).take_while(|l| !l.is_empty()).collect();
    (!first.is_empty()).then(|| first.join(" "))
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Reference(r) => last_segment(&r.elem),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

fn first_type_arg(seg: &syn::PathSegment) -> Option<&Type> {
    match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn is_option(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Option")
}

/// The catalogue type of a Rust type, and whether it is an `Option`.
fn infer(ty: &Type) -> Option<(String, bool)> {
    let seg = last_segment(ty)?;
    let name = seg.ident.to_string();
    let t = match name.as_str() {
        "Option" => return infer(first_type_arg(seg)?).map(|(t, _)| (t, true)),
        "String" | "str" | "Cow" => "string".to_string(),
        "bool" => "boolean".to_string(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => {
            "integer".to_string()
        }
        "f32" | "f64" => "number".to_string(),
        "Vec" | "VecDeque" | "BTreeSet" | "HashSet" => match first_type_arg(seg).and_then(infer) {
            Some((inner, false)) if inner == "string" => "list of strings".to_string(),
            _ => "list".to_string(),
        },
        "BTreeMap" | "HashMap" | "Map" | "Mapping" => "map".to_string(),
        "PathBuf" | "Path" => "path".to_string(),
        "Duration" => "duration".to_string(),
        _ => return None,
    };
    Some((t, false))
}

/// serde's `rename_all` rules, applied to a snake_case field name.
fn rename(field: &str, rule: &str) -> Option<String> {
    let words: Vec<&str> = field.split('_').filter(|w| !w.is_empty()).collect();
    let cap = |w: &str| {
        let mut c = w.chars();
        c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
    };
    Some(match rule {
        "lowercase" => field.to_lowercase(),
        "UPPERCASE" => field.to_uppercase(),
        "snake_case" => field.to_string(),
        "SCREAMING_SNAKE_CASE" => field.to_uppercase(),
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.replace('_', "-").to_uppercase(),
        "PascalCase" => words.iter().map(|w| cap(w)).collect(),
        "camelCase" => {
            let pascal: String = words.iter().map(|w| cap(w)).collect();
            let mut c = pascal.chars();
            c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
        }
        _ => return None,
    })
}
