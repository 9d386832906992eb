//! The step catalogue: one module per step kind, each a typed `with:` struct and an async
//! `run` that returns typed outputs.
//!
//! Steps never print: what they want to say goes to `StepCtx::log`, which the executor turns
//! into events. They never touch the runbook's YAML either: they receive their `with:` block
//! already rendered, and deserialize it into their own struct.

pub mod de;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml::Value as Yaml;
use tokio_util::sync::CancellationToken;

use crate::error::{Class, Classified, Failure};
use crate::redact::Redactor;
use crate::template;

/// `#[derive(Fields)]` documents a `with:` block or an outputs struct from its own fields and
/// doc comments (see the `pgdrill-derive` crate for what it reads).
pub use pgdrill_derive::Fields;

/// `#[step(name = "..", flags)]` declares a step kind, `pub struct Kind;` and its `Step`
/// implementation, from its doc comment (the summary) and its `run`: on `impl Kind { async
/// fn run(..) }`, or with `kind = Kind` on the free `async fn` the kind runs (see the
/// `pgdrill-derive` crate).
pub use pgdrill_derive::step;

/// Outputs a step hands to later steps as `steps.<id>.<name>`.
pub type Outputs = serde_json::Map<String, serde_json::Value>;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a step did not pass: a [`Failure`], whose class decides the report entry and the
/// exit code, or a step that does not apply, which is no error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// A check that did not hold (JUnit `<failure>`, exit 1), a broken environment
    /// (unreachable server, missing tool: JUnit `<error>`, exit 3) or invalid input (JUnit
    /// `<error>`, exit 2). A failure about a field of the rendered `with:` block carries its
    /// path (`Failure::field`): the executor locates it in the runbook by that path, never by
    /// reading the message.
    Failure(Failure),
    /// The step does not apply here (for example a comparison without a source fingerprint):
    /// reported as skipped with this reason, never as passed, and the run goes on.
    Skipped(String),
}

impl StepError {
    /// An error of `class` with `message`.
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        StepError::Failure(Failure::new(class, message))
    }

    /// A check that did not hold.
    pub fn failed(message: impl Into<String>) -> Self {
        StepError::new(Class::Failed, message)
    }

    /// The environment failed.
    pub fn environment(message: impl Into<String>) -> Self {
        StepError::new(Class::Environment, message)
    }

    /// The invocation or the runbook is invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        StepError::new(Class::Invalid, message)
    }

    /// An invalid field at `path` inside the `with:` block (empty for the block itself).
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::Failure(Failure::invalid(message).at_field(path))
    }

    /// Its class; `None` for `Skipped`, which is no error.
    pub fn class(&self) -> Option<Class> {
        match self {
            StepError::Failure(f) => Some(f.class),
            StepError::Skipped(_) => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StepError::Failure(f) => &f.message,
            StepError::Skipped(m) => m,
        }
    }

    /// Whether the error is about input (exit 2), which trying again cannot change.
    pub fn is_invalid(&self) -> bool {
        self.class() == Some(Class::Invalid)
    }

    /// The text shown to the user; `with` names the `with:` block of the step in the runbook
    /// and locates a field error.
    pub fn describe(&self, with: impl FnOnce() -> String) -> String {
        match self {
            StepError::Failure(Failure { field: Some(path), message, .. }) if !path.is_empty() => {
                format!("{}: field `{path}`: {message}", with())
            }
            e => e.message().to_string(),
        }
    }
}

/// The library's errors keep their class, their field and their source on the way to a
/// step's error: a backup's invalid input, environment or failed check; an unreachable
/// server or refused login (environment); a throwaway server that cannot start; a damaged
/// restore journal (failed).
impl From<Failure> for StepError {
    fn from(f: Failure) -> Self {
        StepError::Failure(f)
    }
}

/// A typed error of a lower layer (a held restore lock, a damaged archive, an untrusted
/// ledger) by the class it states.
impl<E: Classified> From<E> for StepError {
    fn from(e: E) -> Self {
        StepError::Failure(e.into_failure())
    }
}

/// A server error while a step talks to a database it reached: the environment's failure,
/// with the server's message, detail and hint. Steps that treat an error as a failed check
/// map it themselves.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StepError {
    Failure::environment(crate::pg::describe(&e)).with_source(e).into()
}

// A timestamp as RFC 3339, as every step output, listing and report writes it: one helper.
pub(crate) use crate::util::rfc3339;

/// A documented field of a step's `with:` block or of its outputs.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: &'static str,
    pub required: bool,
    pub doc: &'static str,
    /// A password, a key or anything that holds one (`#[field(secret)]`, `#[field(key)]`):
    /// the redactor masks its value.
    pub secret: bool,
    /// A key or passphrase (`#[field(key)]`, also `secret`): refused below
    /// `redact::MIN_KEY_CHARS`.
    pub key: bool,
    /// A PostgreSQL connection string that may carry a password (`#[field(conninfo)]`, type
    /// `conninfo`): the redactor masks the password inside it (as userinfo, `password=` or a
    /// query parameter) from before the run's first step, and leaves the rest readable.
    pub conninfo: bool,
}

/// The documented fields of a `with:` block or of a step's outputs, in the order they are
/// declared. Derived (`#[derive(Fields)]`), never written by hand, so the catalogue states
/// what the struct really holds.
pub trait Fields {
    const FIELDS: &'static [Field];
}

/// The outputs of a step that hands on one of two shapes: the first, what the catalogue
/// documents and the default, or the second, the fewer fields of a case that has no more
/// (another tool's file, nothing dropped). Serialized as whichever it is.
macro_rules! one_of_outputs {
    ($(#[$doc:meta])* $name:ident { $full:ident($full_ty:ty), $less:ident($less_ty:ty) $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, serde::Serialize)]
        #[serde(untagged)]
        pub enum $name {
            $full($full_ty),
            $less($less_ty),
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$full(<$full_ty>::default())
            }
        }

        /// The catalogue documents the first shape's outputs.
        impl $crate::steps::Fields for $name {
            const FIELDS: &'static [$crate::steps::Field] = <$full_ty as $crate::steps::Fields>::FIELDS;
        }
    };
}
pub(crate) use one_of_outputs;

/// A step without outputs documents none.
impl Fields for () {
    const FIELDS: &'static [Field] = &[];
}

/// A problem in a `with:` block found before running, relative to the block.
#[derive(Debug, Clone)]
pub struct WithError {
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl WithError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        WithError { path: path.to_string(), message: message.into(), help: None }
    }
}

/// One step kind in the catalogue.
pub struct StepKind {
    pub name: &'static str,
    pub summary: &'static str,
    pub fields: &'static [Field],
    pub outputs: &'static [Field],
    /// Check a `with:` block as written (templated values are checked when rendered).
    pub check: fn(&Yaml) -> Result<(), WithError>,
    /// Whether the terminal shows this step's log (for steps whose log is the result, such
    /// as retention's keep/delete list).
    pub report_log: bool,
    /// Whether the step talks to the operator on the terminal (no spinner over it).
    pub interactive: bool,
    /// Whether the step changes or replaces a database: `fleet run` runs a runbook using one
    /// for exactly one named target.
    pub destructive: bool,
    /// Whether the step, once started, must be told to stop (cancelled) and left to finish,
    /// never dropped half-way on a timeout or signal: a nested runbook, whose rollbacks and
    /// `finally` a dropped future would skip.
    pub finishes_itself: bool,
    /// Whether the step measures the recovery time from a disaster: `pgdrill run --rto`
    /// replaces its target (`StepCtx::rto_objective`) instead of being the run's budget.
    pub measures_rto: bool,
    /// Whether the step runs another runbook, named by its `with:` block's `path:` and given
    /// its `vars:`: the loader follows it to refuse a runbook that nests itself and to check
    /// the variables it hands down before anything runs (`runbook::load`).
    pub nests: bool,
    /// Run with a rendered `with:` block.
    pub run: fn(StepCtx, Yaml) -> BoxFuture<'static, Result<Outputs, StepError>>,
}

/// Runs nested runbooks on behalf of the `runbook` step (implemented by the executor).
pub trait NestedRunner: Send + Sync {
    fn run_nested(
        &self,
        ctx: StepCtx,
        path: PathBuf,
        vars: serde_yaml::Mapping,
        secrets: Outputs,
    ) -> BoxFuture<'static, Result<Outputs, StepError>>;
}

/// The operator, as a step may ask them something (implemented on the executor's side,
/// `exec::operator`): steps never read stdin or write to the terminal themselves.
pub trait Operator: Send + Sync {
    /// Show `prompt` and read one line of answer; `None` when no one can answer (stdin is
    /// not a terminal). An error is the environment's (the terminal could not be read).
    fn ask(&self, prompt: String) -> BoxFuture<'static, Result<Option<String>, Failure>>;
}

/// Something a step started that must outlive the step and end with the runbook.
pub trait Teardown: Send {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()>;

    /// Whether it may end beside the others, which are ended one after another, newest
    /// first: true for what nothing else depends on and that depends on nothing (a staged
    /// dump's removal, which at 2.5 GB takes as long as stopping a server and removing its
    /// files).
    fn ends_beside_others(&self) -> bool {
        false
    }
}

/// Resources of one runbook run, torn down in reverse order when it ends.
#[derive(Clone, Default)]
pub struct Resources(Arc<std::sync::Mutex<Vec<Resource>>>);

/// A resource and what to call it in logs.
pub type Resource = (String, Box<dyn Teardown>);

impl Resources {
    pub fn push(&self, what: String, r: Box<dyn Teardown>) {
        if let Ok(mut list) = self.0.lock() {
            list.push((what, r));
        }
    }

    /// Take everything, newest first.
    pub fn drain(&self) -> Vec<Resource> {
        let mut list = self.0.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
        list.reverse();
        list
    }

    /// End everything (`log` told the name of each as it starts to end): one after another,
    /// newest first, and those that end beside the others (`Teardown::ends_beside_others`)
    /// started first and waited for last.
    pub async fn end_all(&self, log: impl Fn(&str)) {
        let (beside, in_turn): (Vec<_>, Vec<_>) = self.drain().into_iter().partition(|(_, r)| r.ends_beside_others());
        let mut started = Vec::new();
        for (what, r) in beside {
            log(&what);
            started.push(tokio::spawn(r.teardown()));
        }
        for (what, r) in in_turn {
            log(&what);
            r.teardown().await;
        }
        for ended in started {
            let _ = ended.await;
        }
    }
}

/// Stops a step's progress reports when dropped.
pub struct Watch(CancellationToken);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What a running step may use.
#[derive(Clone)]
pub struct StepCtx {
    pub base_dir: PathBuf,
    pub step: String,
    pub suite: usize,
    pub log: Arc<dyn Fn(String) + Send + Sync>,
    /// Reports bytes moved so far (see `watch`).
    pub progress: Arc<dyn Fn(u64, Option<u64>) + Send + Sync>,
    /// Cancelled when the step must stop: a signal, a failing sibling, or its own `timeout:`.
    pub cancel: CancellationToken,
    /// In a `parallel` group, each sibling step's id and a token cancelled when it has ended
    /// (see `ended`); empty elsewhere.
    pub siblings: Arc<std::collections::HashMap<String, CancellationToken>>,
    /// How each sibling of the `parallel` group that has ended ended (see `ended`).
    pub sibling_outcomes: Arc<std::sync::Mutex<std::collections::HashMap<String, crate::facts::Outcome>>>,
    /// The operator confirmed in advance (`pgdrill run --yes`).
    pub assume_yes: bool,
    /// Whom to ask (see `ask`).
    pub operator: Arc<dyn Operator>,
    /// `pgdrill run --rto D`: the recovery time objective every `drill.rto` step is held to
    /// instead of its own `target`.
    pub rto_objective: Option<std::time::Duration>,
    /// The head of the run's evidence log as the run found it (`pgdrill run --evidence`): a
    /// backup's manifest carries it, an anchor of the log under the backup key.
    pub evidence_head: Option<crate::backup::EvidenceHead>,
    pub redactor: Redactor,
    pub nested: Arc<dyn NestedRunner>,
    /// Where to put resources that live until the runbook ends.
    pub resources: Resources,
    /// The object stores the run opened (see `store`, `object`): the run's own, shared by
    /// its steps and nested runbooks, never a process-wide table.
    pub stores: crate::storage::Opened,
    /// Outputs kept even when the step fails (see `keep`).
    pub kept: Arc<std::sync::Mutex<Outputs>>,
    /// What the run's final message must say about this step (see `notice`).
    pub notice: Arc<std::sync::Mutex<Option<String>>>,
    /// What the step established for the reports (see `fact`).
    pub facts: Arc<std::sync::Mutex<Vec<crate::facts::Fact>>>,
}

impl StepCtx {
    /// A token cancelled when the step `id` of the same `parallel` group has ended, whatever
    /// its outcome (a failure also cancels this step through `cancel`): for a step that works
    /// beside another one, such as amcheck checking each index while the restore builds them.
    /// How the sibling `id` ended, once it has (see `ended`).
    pub fn sibling_outcome(&self, id: &str) -> Option<crate::facts::Outcome> {
        self.sibling_outcomes.lock().ok().and_then(|o| o.get(id).copied())
    }

    pub fn ended(&self, id: &str) -> Result<CancellationToken, StepError> {
        self.siblings.get(id).cloned().ok_or_else(|| {
            StepError::invalid(format!(
                "`{id}` is not the id of another step of the same `parallel` group: follow names a step running beside this one"
            ))
        })
    }

    /// Report a fact (a server used, a backup written or tested, an objective measured):
    /// reporters read facts, not step kinds. Facts stand whether the step then passes or
    /// fails (an RTO over its target is still reported).
    pub fn fact(&self, f: crate::facts::Fact) {
        if let Ok(mut l) = self.facts.lock() {
            l.push(f);
        }
    }

    /// A backup fact from a step's outputs (`path`, `sha256`, `size`, `created`, `age_s`).
    pub fn backup_fact(&self, role: crate::facts::BackupRole, o: &Outputs) {
        let v = |k: &str| o.get(k).cloned().unwrap_or(serde_json::Value::Null);
        if o.get("path").is_some_and(|p| p.is_string()) {
            self.fact(crate::facts::Fact::Backup {
                role,
                path: v("path"),
                sha256: v("sha256"),
                size: v("size"),
                created: v("created"),
                age_s: v("age_s"),
            });
        }
    }

    /// Keep an output that is reported even if the step then fails (a measurement over its
    /// target). Outputs of a passing step are what it returns.
    pub fn keep(&self, name: &str, value: serde_json::Value) {
        if let Ok(mut k) = self.kept.lock() {
            k.insert(name.to_string(), value);
        }
    }

    /// Tell the executor a fact for the run's final message, whether the step passes or
    /// fails: a rollback that put a database back, or one that could not and says how to.
    pub fn notice(&self, text: impl Into<String>) {
        if let Ok(mut n) = self.notice.lock() {
            *n = Some(text.into());
        }
    }

    pub fn log(&self, line: impl Into<String>) {
        (self.log)(line.into());
    }

    /// Warn of something the operator must act on (`Fact::Warning`): the step's log says
    /// `warning: TEXT` as it always did, and the reports know it as a warning by its kind, so
    /// a plain line that happens to begin with `warning: ` (a script's output) is not one.
    pub fn warn(&self, text: impl Into<String>) {
        let text = text.into();
        self.log(format!("warning: {text}"));
        self.fact(crate::facts::Fact::Warning { text });
    }

    /// Ask the operator: `prompt` shown, one line of answer read; `None` when no one can
    /// answer (stdin is not a terminal). A kind that asks sets `Step::INTERACTIVE`, so the
    /// terminal keeps its spinners off the prompt.
    pub async fn ask(&self, prompt: impl Into<String>) -> Result<Option<String>, StepError> {
        Ok(self.operator.ask(prompt.into()).await?)
    }

    /// Report `meter` as this step's progress until the returned guard drops (a few times a
    /// second; the terminal decides how often it shows it).
    pub fn watch(&self, meter: &crate::progress::Meter) -> Watch {
        let (meter, report) = (meter.clone(), self.progress.clone());
        // Often enough for a bar, and for the plain lines' interval when that is shorter.
        let tick = crate::progress::plain_interval().min(std::time::Duration::from_millis(200));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {
                        let (done, total) = meter.get();
                        report(done, total);
                    }
                }
            }
        });
        Watch(stop)
    }

    /// A path or location from the runbook: a local path resolved against the runbook's
    /// directory, or an object's URL as it is (see `object` to read it), never a `PathBuf`
    /// standing for a URL.
    pub fn resolve(&self, p: &str) -> Place {
        match crate::storage::local_dir_in(p, &self.base_dir) {
            Some(path) => Place::Local(path),
            None => Place::Object(p.trim().to_string()),
        }
    }

    /// `resolve`, for the field `field` that takes a local path only (a file to read, a
    /// directory to work in, a program): an object's URL there is invalid input naming the
    /// field, never a relative path named like the URL (`s3:/bucket/...`, made in the
    /// process's working directory).
    pub fn local(&self, field: &str, p: &str) -> Result<PathBuf, StepError> {
        match self.resolve(p) {
            Place::Local(path) => Ok(path),
            Place::Object(url) => Err(StepError::field(
                field,
                format!(
                    "`{field}` takes a local path, not the object store location `{}`",
                    url.split('?').next().unwrap_or_default()
                ),
            )),
        }
    }

    /// The store a location names: an object store by its scheme, else a local directory
    /// (relative to the runbook's directory). A bad location is invalid.
    pub fn store(&self, location: &str) -> Result<std::sync::Arc<dyn crate::storage::Store>, StepError> {
        self.stores.open_in(location, &self.base_dir).map_err(StepError::invalid)
    }

    /// `store` as a directory tree to list (`backup::ledger::view`, its ledger's records
    /// gathered), what its listing had to leave out told as this step's warnings (an object
    /// whose name no local file can have), so they reach the reports like any other.
    pub async fn view(&self, store: &dyn crate::storage::Store) -> Result<crate::storage::tree::Tree, StepError> {
        let (tree, warnings) = crate::backup::ledger::view(store).await.map_err(StepError::environment)?;
        for w in warnings {
            self.warn(w);
        }
        Ok(tree)
    }

    /// The one object `p` names (a backup's path, relative to the runbook's directory, or
    /// its URL in an object store): ask it for what the step needs, its whole bytes as a
    /// file, its header, a stream (`stream_of`) or its folder's store (`storage::Named`).
    /// A URL that names no object is invalid.
    pub fn object(&self, p: &str) -> Result<crate::storage::Named, StepError> {
        self.stores.named_in(p, &self.base_dir).map_err(StepError::invalid)
    }

    /// A location that must be a local directory (a safety snapshot: a rollback must not
    /// wait on a download).
    pub fn local_only(&self, location: &str, what: &str) -> Result<PathBuf, StepError> {
        crate::storage::local_dir_in(location, &self.base_dir).ok_or_else(|| {
            StepError::invalid(format!(
                "{what} must be a local directory, not `{}`: a rollback must not depend on a download (give a local path)",
                location.split('?').next().unwrap_or_default()
            ))
        })
    }
}

/// What a path or location in a runbook names (`StepCtx::resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A path on this machine, resolved against the runbook's directory.
    Local(PathBuf),
    /// An object's URL in a store, as written.
    Object(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Local(p) => write!(f, "{}", p.display()),
            Place::Object(url) => f.write_str(url),
        }
    }
}

/// A context for running one step in a unit test: `operator` answers its questions, its log
/// lines are collected in the returned list, nothing else is connected (a nested runbook
/// is refused).
#[cfg(test)]
pub(crate) fn test_ctx(operator: Arc<dyn Operator>) -> (StepCtx, Arc<std::sync::Mutex<Vec<String>>>) {
    struct NoNesting;
    impl NestedRunner for NoNesting {
        fn run_nested(
            &self,
            _: StepCtx,
            _: PathBuf,
            _: serde_yaml::Mapping,
            _: Outputs,
        ) -> BoxFuture<'static, Result<Outputs, StepError>> {
            Box::pin(async { Err(StepError::invalid("no nested runbooks in a unit test")) })
        }
    }
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = lines.clone();
    let ctx = StepCtx {
        base_dir: PathBuf::from("."),
        step: "test".into(),
        suite: 0,
        log: Arc::new(move |l: String| log.lock().map(|mut v| v.push(l)).unwrap_or_default()),
        progress: Arc::new(|_, _| {}),
        cancel: CancellationToken::new(),
        siblings: Arc::default(),
        sibling_outcomes: Arc::default(),
        assume_yes: false,
        operator,
        rto_objective: None,
        evidence_head: None,
        redactor: Redactor::default(),
        nested: Arc::new(NoNesting),
        resources: Resources::default(),
        stores: crate::storage::Opened::default(),
        kept: Arc::default(),
        notice: Arc::default(),
        facts: Arc::default(),
    };
    (ctx, lines)
}

/// Bytes of an archive's head read to tell it: its header (which its manifest's MAC is
/// bound to) and the first bytes after it.
pub(crate) const HEAD: u64 = crate::archive::MAX_HEADER as u64 + 64;

/// A backup in an object store, to be read as a stream: a pgdrill archive (read once, its
/// sha256 compared with its manifest's) or another tool's file (an opener: openssl's key
/// derivations each read it from the start). Everything is asked of its store, and nothing
/// of it becomes a local file: its size and version from a `head` (pinned to the version
/// this run first saw), its first bytes by a range of that version (its kind, and a pgdrill
/// archive's header), its manifest read beside it. `None` for a local file, one already
/// downloaded, and what needs a local file (a directory dump, an unknown kind).
pub async fn stream_of(named: &crate::storage::Named) -> Result<Option<FromStore>, StepError> {
    stream_with(named, None).await
}

/// `stream_of`, with the manifest beside it already read through its store (`read`: the
/// manifest and its bytes, as `backup.pick` read them when it chose the backup from a
/// listing), so that it is not read a second time; `None`: read it now.
pub async fn stream_with(
    named: &crate::storage::Named,
    read: Option<(crate::backup::Manifest, Vec<u8>)>,
) -> Result<Option<FromStore>, StepError> {
    use crate::backup::source::{self, Origin};
    let Some(object) = named.streamed(HEAD).await.map_err(StepError::environment)? else { return Ok(None) };
    let origin = if object.key().ends_with(".pgdrill") {
        if !object.first.starts_with(crate::archive::MAGIC) {
            return Ok(None);
        }
        Origin::Pgdrill
    } else {
        if !source::streamable_head(&object.first) {
            return Ok(None);
        }
        Origin::Foreign
    };
    // Fails closed: a manifest beside it that does not parse is a failed check, as it is
    // beside a file here (`backup::sidecar_in`).
    let manifest = match read {
        Some(read) => Some(read),
        None => crate::backup::manifest_at(object.store(), object.key()).await?,
    };
    Ok(Some(FromStore { object, origin, manifest }))
}

/// A backup in an object store read as a stream (see `stream_of`): what its store said of it,
/// never a local path.
pub struct FromStore {
    /// Its size, version and first bytes, and its readers.
    pub object: crate::storage::Streamed,
    /// pgdrill's own archive, or another tool's file (a team's own format pgdrill wrote, with
    /// its sidecar manifest, among them).
    pub origin: crate::backup::source::Origin,
    /// The manifest beside it, read through its store, with the bytes it was read from
    /// (what its MAC covers): `None` when there is none.
    manifest: Option<(crate::backup::Manifest, Vec<u8>)>,
}

impl FromStore {
    /// How it is shown: its URL.
    pub fn shown(&self) -> String {
        self.object.shown()
    }

    /// The manifest beside it (a pgdrill archive's, or a team's own format's sidecar).
    pub fn manifest(&self) -> Option<&crate::backup::Manifest> {
        self.manifest.as_ref().map(|(m, _)| m)
    }

    /// The manifest pgdrill wrote beside another tool's file (a team's own format), `None`
    /// when there is none (and for pgdrill's own archive); one that says it is a pgdrill
    /// archive's belongs to another file: a failed check, as `backup::sidecar_in` says beside
    /// a file here.
    pub fn sidecar(&self) -> Result<Option<crate::backup::Manifest>, StepError> {
        match self.manifest() {
            _ if self.origin == crate::backup::source::Origin::Pgdrill => Ok(None),
            Some(m) if m.envelope == crate::archive::Envelope::Pgdrill => Err(StepError::failed(format!(
                "{}: says it is the manifest of a pgdrill archive, but {} is not one: the manifest belongs to another file",
                self.object.store().url_of(&crate::backup::layout::manifest_key(self.object.key())),
                self.shown()
            ))),
            m => Ok(m.cloned()),
        }
    }

    /// A pgdrill archive's manifest, judged against the archive's header (the version its
    /// stream reads) under `key` before anything in it is used; a missing manifest is a
    /// failed check.
    pub async fn judged(
        &self,
        key: Option<&crate::archive::KeySource>,
    ) -> Result<(crate::backup::Manifest, crate::backup::ManifestTrust), StepError> {
        let Some((m, text)) = &self.manifest else {
            let mk = crate::backup::layout::manifest_key(self.object.key());
            return Err(StepError::failed(format!("missing manifest {}", self.object.store().url_of(&mk))));
        };
        let (store, key_of) = (self.object.store(), self.object.key());
        let trust = crate::backup::authenticate_manifest_seen(store, key_of, &self.object.seen, text, key).await?;
        Ok((m.clone(), trust))
    }

    /// Its bytes, as the stream its kind is read from: a pgdrill archive's reader, or
    /// another tool's file's opener.
    pub async fn stream(&self) -> Result<crate::backup::restore::Streamed, StepError> {
        use crate::backup::restore::Streamed;
        Ok(match self.origin {
            crate::backup::source::Origin::Pgdrill => {
                Streamed::Archive(self.object.reader().await.map_err(StepError::environment)?)
            }
            crate::backup::source::Origin::Foreign => Streamed::Foreign(self.object.opener()),
        })
    }
}

/// A typed `with:` block.
pub trait With: DeserializeOwned + Send + 'static {
    /// Checks beyond types; must accept templated strings, which are checked after rendering.
    fn check(&self) -> Result<(), WithError> {
        Ok(())
    }
}

/// A step kind stated by its types: its name, its `with:` block and its outputs. One
/// implementation and one line in `kinds!` make a new step; the adapter does the YAML and
/// JSON around it, so a step's `run` works on typed values only. Kinds implement it through
/// `#[step]`, which reads the `With` and `Outputs` types from `run`'s signature.
pub trait Step: 'static {
    /// The kind's name in runbooks (`shell.run`).
    const NAME: &'static str;
    /// One line for `pgdrill steps`.
    const SUMMARY: &'static str;
    /// Whether the terminal shows this step's log (see `StepKind::report_log`).
    const REPORT_LOG: bool = false;
    /// Whether the step talks to the operator (see `StepKind::interactive`).
    const INTERACTIVE: bool = false;
    /// Whether the step changes or replaces a database (see `StepKind::destructive`).
    const DESTRUCTIVE: bool = false;
    /// Whether the step must be told to stop rather than dropped (see
    /// `StepKind::finishes_itself`).
    const FINISHES_ITSELF: bool = false;
    /// Whether the step measures the run's recovery time (see `StepKind::measures_rto`).
    const MEASURES_RTO: bool = false;
    /// Whether the step runs another runbook by its `path:` and `vars:` (see
    /// `StepKind::nests`).
    const NESTS: bool = false;
    /// The `with:` block; its `Fields` are the catalogue's `with:` list.
    type With: With + Fields;
    /// Serialized to a JSON object for `steps.<id>.<name>`; `()` for none. Its `Fields` are
    /// the catalogue's outputs, which must be exactly what it serializes to (tested).
    type Outputs: serde::Serialize + Default + Send + Fields;
    fn run(ctx: StepCtx, with: Self::With) -> impl Future<Output = Result<Self::Outputs, StepError>> + Send;
}

/// The catalogue entry of a typed step.
pub const fn kind<S: Step>() -> StepKind {
    StepKind {
        name: S::NAME,
        summary: S::SUMMARY,
        fields: <S::With as Fields>::FIELDS,
        outputs: <S::Outputs as Fields>::FIELDS,
        check: check_with::<S::With>,
        report_log: S::REPORT_LOG,
        interactive: S::INTERACTIVE,
        destructive: S::DESTRUCTIVE,
        finishes_itself: S::FINISHES_ITSELF,
        measures_rto: S::MEASURES_RTO,
        nests: S::NESTS,
        run: run_typed::<S>,
    }
}

fn run_typed<S: Step>(ctx: StepCtx, with: Yaml) -> BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: S::With = typed(with)?;
        outputs_of(&S::run(ctx, w).await?)
    })
}

/// Typed outputs as the map templates read.
fn outputs_of<O: serde::Serialize>(o: &O) -> Result<Outputs, StepError> {
    match serde_json::to_value(o) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(serde_json::Value::Null) => Ok(Outputs::new()),
        Ok(other) => Err(StepError::environment(format!("step outputs are not a map: {other}"))),
        Err(e) => Err(StepError::environment(format!("step outputs cannot be serialized: {e}"))),
    }
}

/// The output names a typed step emits, for the catalogue test.
#[cfg(test)]
fn emitted<S: Step>() -> Vec<String> {
    let mut names: Vec<String> =
        outputs_of(&S::Outputs::default()).map(|m| m.keys().cloned().collect()).unwrap_or_default();
    names.sort();
    names
}

/// Type-check a `with:` block as written. An error at a templated value is deferred to run
/// time, because only the rendered value has a type.
pub fn check_with<W: With>(v: &Yaml) -> Result<(), WithError> {
    let mut templated = Vec::new();
    template::templated_strings(v, "", &mut templated);
    match serde_path_to_error::deserialize::<_, W>(v.clone()) {
        Ok(w) => w.check(),
        Err(e) => {
            let path = normalize_path(&e.path().to_string());
            if templated.iter().any(|(p, _)| *p == path) {
                return Ok(());
            }
            Err(WithError::new(&path, e.into_inner().to_string()))
        }
    }
}

/// Deserialize a rendered `with:` block.
pub fn typed<W: With>(v: Yaml) -> Result<W, StepError> {
    let w: W = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = normalize_path(&e.path().to_string());
        StepError::field(path, e.into_inner().to_string())
    })?;
    w.check().map_err(|e| StepError::field(e.path, e.message))?;
    Ok(w)
}

fn normalize_path(p: &str) -> String {
    if p == "." || p == "?" {
        String::new()
    } else {
        p.to_string()
    }
}

// The one list of step kinds, in catalogue order: it declares each kind's module (on the
// module's first line, with its visibility) and generates `catalogue()` and `visit_kinds`, so
// a new kind is its file and one line here (see ARCHITECTURE.md, "Adding a step kind").
pgdrill_derive::kinds! {
    ephemeral::Start,
    backup::Create,
    backup::Check,
    backup::List,
    backup::Latest,
    base::Base,
    pub wal::WalCheck,
    wal::WalPrune,
    verify::Pick,
    verify::Restore,
    verify::Freshness,
    verify::FingerprintCheck,
    globals::Restore,
    verify::Amcheck,
    verify::Record,
    journal::Lock,
    journal::WriteJournal,
    database::Preflight,
    database::Confirm,
    database::Snapshot,
    database::Terminate,
    database::DropDatabase,
    database::Create,
    database::RestoreSnapshot,
    database::Settings,
    journal::Finish,
    retention::Prune,
    copy::Copy,
    copy::CopyAll,
    deploy::Record,
    deploy::Read,
    gates::Space,
    gates::SizeChange,
    drill::FixturesLoad,
    drill::Workspace,
    drill::Heartbeat,
    drill::Disaster,
    drill::Rto,
    drill::Rpo,
    pitr::Restore,
    pitr::Source,
    pitr::MarkStep,
    pub sql::Exec,
    sql::Assert,
    ping::Ping,
    size::Size,
    shell::Run,
    http::Check,
    sleep::Sleep,
    pub(crate) nested::Runbook,
    physical::Verify,
}

/// Something that needs each step kind's types rather than its catalogue entry (the outputs
/// test): `visit_kinds` calls `visit` once per kind, in catalogue order.
#[cfg(test)]
pub trait KindVisitor {
    fn visit<S: Step>(&mut self);
}

pub fn find(name: &str) -> Option<&'static StepKind> {
    catalogue().iter().find(|k| k.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    catalogue().iter().map(|k| k.name)
}

/// `pgdrill steps --json`: the catalogue for tools and editors, from the same entries as the
/// text form.
pub fn catalogue_json(only: Option<&str>) -> serde_json::Value {
    let fields = |fs: &[Field]| -> serde_json::Value {
        fs.iter()
            .map(|f| serde_json::json!({"name": f.name, "type": f.ty, "required": f.required, "doc": f.doc}))
            .collect()
    };
    catalogue()
        .iter()
        .filter(|k| only.is_none_or(|n| n == k.name))
        .map(|k| serde_json::json!({"name": k.name, "summary": k.summary, "with": fields(k.fields), "outputs": fields(k.outputs)}))
        .collect()
}

/// `pgdrill steps` output.
pub fn describe_catalogue(only: Option<&str>) -> String {
    let mut out = String::new();
    for k in catalogue().iter().filter(|k| only.is_none_or(|n| n == k.name)) {
        out.push_str(&format!("{}\n    {}\n", k.name, k.summary));
        if !k.fields.is_empty() {
            out.push_str("  with:\n");
            for f in k.fields {
                let req = if f.required { " (required)" } else { "" };
                out.push_str(&format!("    {:<18} {:<22} {}{req}\n", f.name, f.ty, f.doc));
            }
        }
        if !k.outputs.is_empty() {
            out.push_str("  outputs:\n");
            for f in k.outputs {
                out.push_str(&format!("    {:<18} {:<22} {}\n", f.name, f.ty, f.doc));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource that records when its teardown starts and ends; `waits_for` makes it wait
    /// (at most 10 s) until that other one has started.
    struct Marked {
        name: &'static str,
        beside: bool,
        seen: Arc<std::sync::Mutex<Vec<String>>>,
        waits_for: Option<(&'static str, Arc<tokio::sync::Notify>)>,
        starts: Option<Arc<tokio::sync::Notify>>,
    }

    impl Teardown for Marked {
        fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                let note = |w: String| self.seen.lock().map(|mut s| s.push(w)).unwrap_or_default();
                note(format!("{} starts", self.name));
                if let Some(n) = &self.starts {
                    n.notify_one();
                }
                if let Some((other, n)) = &self.waits_for {
                    let ok = tokio::time::timeout(std::time::Duration::from_secs(10), n.notified()).await.is_ok();
                    note(format!("{} {} {other}", self.name, if ok { "saw" } else { "never saw" }));
                }
                note(format!("{} ends", self.name));
            })
        }

        fn ends_beside_others(&self) -> bool {
            self.beside
        }
    }

    /// Found measuring verify (issue 41): the staged dump's removal (0.7 s at 2.5 GB) waited
    /// for the server's stop when it was older, the two one after the other on the run's
    /// critical path. A resource that ends beside the others starts first whatever its age,
    /// is waited for before the run ends, and the others still end newest first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staged_dumps_removal_ends_beside_the_server_not_after_it() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = Arc::new(tokio::sync::Notify::new());
        let r = Resources::default();
        let mark =
            |name, beside, waits_for, starts| Box::new(Marked { name, beside, seen: seen.clone(), waits_for, starts });
        // Oldest first: the staged dump, then two servers; the newer server waits for the
        // staged dump's removal to have started.
        r.push("staged dump".into(), mark("staged", true, None, Some(started.clone())));
        r.push("server a".into(), mark("a", false, None, None));
        r.push("server b".into(), mark("b", false, Some(("staged", started.clone())), None));
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = told.clone();
        r.end_all(move |w| t.lock().map(|mut l| l.push(w.to_string())).unwrap_or_default()).await;
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(
            seen.contains(&"b saw staged".to_string()),
            "the staged dump's removal waited for the servers: {seen:?}"
        );
        assert!(seen.contains(&"staged ends".to_string()), "{seen:?}");
        let at = |w: &str| seen.iter().position(|s| s == w);
        assert!(at("b ends") < at("a starts"), "servers end newest first: {seen:?}");
        assert_eq!(told.lock().map(|l| l.clone()).unwrap_or_default(), ["staged dump", "server b", "server a"]);
        assert!(r.drain().is_empty());
    }

    /// Every lower layer's error keeps its class on the way to a step's error and to the
    /// command line's, and so its exit code.
    #[test]
    fn lower_errors_keep_their_class_through_question_mark() {
        use crate::error::Error;
        use crate::pg::native::ServerError;
        use crate::restore::JournalError;
        let cases: Vec<(StepError, Error, Class)> = vec![
            (Failure::failed("f").into(), Failure::failed("f").into(), Class::Failed),
            (Failure::invalid("i").into(), Failure::invalid("i").into(), Class::Invalid),
            (Failure::environment("e").into(), Failure::environment("e").into(), Class::Environment),
            (ServerError::invalid("i").into(), ServerError::invalid("i").into(), Class::Invalid),
            (JournalError::failed("d").into(), JournalError::failed("d").into(), Class::Failed),
            (JournalError::environment("o").into(), JournalError::environment("o").into(), Class::Environment),
        ];
        for (step, cli, class) in cases {
            assert_eq!(step.class(), Some(class), "{step:?}");
            assert_eq!(cli.class(), class, "{cli:?}");
            assert_eq!(cli.exit_code(), class.exit_code());
            assert_eq!(step.message(), cli.to_string());
        }
        assert_eq!(StepError::Skipped("n/a".into()).class(), None);
        let at = StepError::from(crate::error::Failure::invalid("not a number").at_field("jobs"));
        assert_eq!(at, StepError::field("jobs", "not a number"));
        assert!(StepError::field("jobs", "not a number").is_invalid());
    }

    /// Each output of every kind is documented, and each documented output is emitted: the
    /// kinds come from the one generated list, so a new kind cannot be left out of the check.
    #[test]
    fn typed_steps_document_exactly_the_outputs_they_emit() {
        struct Outputs(Vec<&'static str>, Vec<String>);
        impl KindVisitor for Outputs {
            fn visit<S: Step>(&mut self) {
                let mut documented: Vec<String> =
                    <S::Outputs as Fields>::FIELDS.iter().map(|f| f.name.to_string()).collect();
                documented.sort();
                let emitted = emitted::<S>();
                if emitted != documented {
                    self.1.push(format!("`{}` emits {emitted:?} but documents {documented:?}", S::NAME));
                }
                self.0.push(S::NAME);
            }
        }
        let mut seen = Outputs(Vec::new(), Vec::new());
        visit_kinds(&mut seen);
        assert_eq!(seen.0, names().collect::<Vec<_>>(), "the visited kinds are the catalogue's");
        assert!(seen.1.is_empty(), "outputs and their documentation differ:\n{}", seen.1.join("\n"));
    }

    /// What the derive reads: serde's names, `Option` and `default` for "required", the
    /// Rust type for the catalogue type unless overridden, the first doc paragraph.
    #[test]
    fn fields_are_derived_from_the_struct() {
        #[derive(Fields, serde::Deserialize)]
        #[allow(dead_code)]
        #[serde(rename_all = "kebab-case")]
        struct Probe {
            /// where to look
            ///
            /// (a second paragraph is for readers of the code only)
            #[field(ty = "path")]
            target_dir: String,
            /// how long
            wait_for: Option<std::time::Duration>,
            /// how many
            #[serde(default)]
            tries: u32,
            /// called so
            #[serde(rename = "names")]
            list: Vec<String>,
            #[serde(skip)]
            hidden: bool,
            /// one of two, checked by `With::check`
            #[field(required)]
            either: Option<String>,
            /// the key
            #[field(key)]
            key: Option<String>,
            /// the password
            #[field(secret)]
            password: Option<String>,
            /// the server
            #[field(conninfo)]
            url: String,
        }
        #[derive(Fields)]
        #[fields(outputs)]
        #[allow(dead_code)]
        struct ProbeOutputs {
            /// the size, when known
            size: Option<u64>,
            /// the ratio
            ratio: f64,
        }
        let show = |fs: &[Field]| {
            fs.iter()
                .map(|f| {
                    let flags = match (f.secret, f.key) {
                        (true, true) => " (secret, key)",
                        (true, false) => " (secret)",
                        (false, true) => " (key, not secret)",
                        (false, false) if f.conninfo => " (conninfo)",
                        (false, false) => "",
                    };
                    format!("{} {} {} {}{flags}", f.name, f.ty, f.required, f.doc)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            show(<Probe as Fields>::FIELDS),
            [
                "target-dir path true where to look",
                "wait-for duration false how long",
                "tries integer false how many",
                "names list of strings true called so",
                "either string true one of two, checked by `With::check`",
                "key secret false the key (secret, key)",
                "password secret false the password (secret)",
                "url conninfo true the server (conninfo)",
            ]
        );
        assert_eq!(
            show(<ProbeOutputs as Fields>::FIELDS),
            ["size integer|null false the size, when known", "ratio number false the ratio"]
        );
    }

    /// `#[step]` makes a kind of what differs: the name and flags it is given, the summary
    /// from the first paragraph of its doc comment (lines joined, later paragraphs left to
    /// readers of the code), the `with:` and outputs types from `run`'s signature, on an
    /// `impl` block or on the free function a kind runs.
    #[test]
    fn step_declares_a_kind_from_its_doc_comment_its_flags_and_its_run() {
        #[derive(Debug, serde::Deserialize, Fields)]
        #[allow(dead_code)]
        pub struct ProbeWith {
            /// what to probe
            what: String,
        }
        impl With for ProbeWith {}
        #[derive(Debug, Default, serde::Serialize, Fields)]
        #[fields(outputs)]
        pub struct ProbeOutputs {
            /// how many
            found: u64,
        }

        /// Probe something,
        /// on two lines.
        ///
        /// Not the summary: for readers of the code.
        #[step(name = "test.probe", report_log, measures_rto)]
        impl Probe {
            async fn run(_ctx: StepCtx, _w: ProbeWith) -> Result<ProbeOutputs, StepError> {
                Ok(ProbeOutputs { found: 1 })
            }
        }

        /// Probe through a function.
        #[step(kind = Through, name = "test.through", destructive, interactive, finishes_itself)]
        async fn through(_ctx: StepCtx, _w: ProbeWith) -> Result<(), StepError> {
            Ok(())
        }

        let probe = kind::<Probe>();
        assert_eq!((probe.name, probe.summary), ("test.probe", "Probe something, on two lines."));
        assert_eq!(
            (probe.report_log, probe.measures_rto, probe.destructive, probe.interactive, probe.finishes_itself),
            (true, true, false, false, false)
        );
        assert_eq!(probe.fields.iter().map(|f| f.name).collect::<Vec<_>>(), ["what"]);
        assert_eq!(probe.outputs.iter().map(|f| f.name).collect::<Vec<_>>(), ["found"]);
        let through = kind::<Through>();
        assert_eq!((through.name, through.summary), ("test.through", "Probe through a function."));
        assert_eq!(
            (
                through.report_log,
                through.measures_rto,
                through.destructive,
                through.interactive,
                through.finishes_itself
            ),
            (false, false, true, true, true)
        );
        assert!(through.outputs.is_empty());
        // Each runs its own `run`: the block's as written, the function through the kind.
        struct NoOperator;
        impl Operator for NoOperator {
            fn ask(&self, _: String) -> BoxFuture<'static, Result<Option<String>, Failure>> {
                Box::pin(async { Ok(None) })
            }
        }
        let (ctx, _) = test_ctx(Arc::new(NoOperator));
        let with: Yaml = serde_yaml::from_str("what: x").expect("yaml");
        let ran = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(async { ((probe.run)(ctx.clone(), with.clone()).await, (through.run)(ctx, with).await) });
        assert_eq!(ran.0.map(|o| o.get("found").cloned()), Ok(Some(serde_json::json!(1))));
        assert_eq!(ran.1, Ok(Outputs::new()));
    }

    /// Steps talk to the operator through their context (`StepCtx::log`, `StepCtx::ask`),
    /// never on the terminal themselves: `operator.confirm` used to prompt on stderr and read
    /// stdin on its own.
    #[test]
    fn steps_never_print_or_read_stdin() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/steps");
        // Spelled in two halves so this file does not find itself.
        let banned = [
            concat!("print", "ln!"),
            concat!("eprint", "!"),
            concat!("print", "!("),
            concat!("dbg", "!("),
            concat!("io::std", "in"),
            concat!("io::std", "out"),
            concat!("io::std", "err"),
        ];
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let mut files = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            files += 1;
            for (n, line) in text.lines().enumerate() {
                for b in banned.iter().filter(|b| line.contains(**b)) {
                    found.push(format!("{}:{}: `{b}`", path.display(), n + 1));
                }
            }
        }
        assert!(files > 10, "found only {files} step files in {}", dir.display());
        assert!(
            found.is_empty(),
            "steps must say things through StepCtx::log and ask through StepCtx::ask:\n{}",
            found.join("\n")
        );
    }

    /// The flags other layers act on are declared by the kinds themselves: fleet's
    /// one-target rule (destructive), the executor's way of stopping a step (finishes
    /// itself), the terminal's (interactive, report log) and the redactor's (secret fields).
    #[test]
    fn kinds_declare_what_the_other_layers_act_on() {
        let with = |flag: fn(&StepKind) -> bool| names().filter(|n| find(n).is_some_and(flag)).collect::<Vec<_>>();
        assert_eq!(with(|k| k.destructive), ["operator.confirm", "database.drop", "database.restore_snapshot"]);
        assert_eq!(with(|k| k.finishes_itself), ["runbook"]);
        assert_eq!(with(|k| k.interactive), ["operator.confirm"]);
        assert_eq!(with(|k| k.measures_rto), ["drill.rto"]);
        assert_eq!(with(|k| k.nests), ["runbook"]);
        // Every key and password the catalogue shows is a secret the redactor masks.
        for k in catalogue() {
            for f in k.fields {
                assert_eq!(f.secret, f.ty == "secret", "`{}`'s `{}`", k.name, f.name);
                assert_eq!(f.conninfo, f.ty == "conninfo", "`{}`'s `{}`", k.name, f.name);
                if f.name == "password" {
                    assert!(f.secret, "`{}`'s `{}` is not declared #[field(secret)]", k.name, f.name);
                }
                if f.name == "key" {
                    assert!(f.key, "`{}`'s `{}` is not declared #[field(key)]", k.name, f.name);
                }
            }
        }
    }

    #[test]
    fn catalogue_names_are_unique_and_found() {
        let mut seen = std::collections::BTreeSet::new();
        for k in catalogue() {
            assert!(seen.insert(k.name), "`{}` is in the catalogue twice", k.name);
            assert_eq!(find(k.name).map(|f| f.name), Some(k.name));
        }
    }
}
