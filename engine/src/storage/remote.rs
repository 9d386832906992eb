//! Object-store locations: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
//! (and `azure://`), through the `object_store` crate: the `Store` of those schemes.
//!
//! An object store has no rename and no append: a written object is a multipart upload,
//! which nobody sees until it completes, and an interrupted upload is aborted (uploads are
//! recorded under `.pgdrill-uploads/` so a killed run's can be found and ended later). What
//! the objects mean (backups, manifests, ledger records) is backup/'s business.
//!
//! Steps still work on local paths: a location is mirrored into a private directory of
//! this process from one pass of LIST pages (each object a sparse file of its size and
//! time; a manifest's bytes and another tool's file's first bytes are read when something
//! reads them, `materialize`). An object's contents are only downloaded when a step reads
//! it (`fetch`). Steps show the object's URL, never the mirror.
//!
//! Credentials come from the environment, as each ecosystem expects (see `open`); a location
//! carries only options (`?endpoint=...&region=...&path_style=true&storage_class=...`), never
//! a secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use super::private_dir;
use crate::error::Failure;
use crate::on_exit::track;
use crate::util::percent_decode;

/// `file:///srv/backups` -> `/srv/backups`; anything else unchanged.
pub fn local_path(location: &str) -> &str {
    location.strip_prefix("file://").unwrap_or(location)
}

/// Bytes of each multipart part, and how many parts are in flight at once: the upload's
/// memory is bounded by about `PART * (INFLIGHT + 1)`.
const PART: usize = 8 << 20;
const INFLIGHT: usize = 2;
/// Ranges in flight when an upload is read back.
const READBACK_INFLIGHT: usize = 3;
/// Range size of a streamed read (`Remote::reader`), and how many are in flight.
const STREAM_PART: usize = 4 << 20;
const STREAM_INFLIGHT: usize = 2;
/// The longest file name (bytes) the local mirror can hold: Linux's NAME_MAX.
const NAME_MAX: usize = 255;

/// Whether a mirror file could not be made because of the object's name (too long, or a
/// name the filesystem refuses), not because the disk or the directory failed.
fn unmirrorable(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::errno::Errno::ENAMETOOLONG as i32) || e.kind() == std::io::ErrorKind::InvalidFilename
}

/// Bytes of each foreign object read into its sparse mirror, to tell its kind.
const HEAD_BYTES: u64 = 4096;

/// A listing of a location, page by page, as the store answers it.
type Listing = futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>;

/// An opened location.
#[derive(Clone)]
pub struct Remote {
    /// `scheme://bucket/prefix`, without options: what is shown.
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The same store's multipart calls: uploads pgdrill can name, to abort them later.
    parts: Arc<dyn object_store::multipart::MultipartStore>,
    prefix: String,
    storage_class: Option<String>,
    /// Azure Blob: an unfinished upload is uncommitted blocks, which no abort drops (see
    /// `abort_upload`).
    blocks: bool,
    /// The private local mirror.
    cache: PathBuf,
    /// How long one request may take.
    timeout: std::time::Duration,
    /// How long a read may wait for its answer to begin, in milliseconds (kept small: a
    /// `Remote` travels inside readers' enums).
    first_byte_ms: u32,
    /// What this location's objects looked like to this run (shared by its clones).
    seen: Arc<Seen>,
}

/// A location's state in this run.
#[derive(Default)]
struct Seen {
    /// Mirror files whose contents were really downloaded.
    fetched: Mutex<HashSet<PathBuf>>,
    /// The version (ETag) of each object as pgdrill first saw it in this run, by key: every
    /// later read of it asks for that version (If-Match), so an object replaced in the middle
    /// of a run fails to read ("changed") instead of mixing two versions' bytes into
    /// something that looks damaged.
    etags: Mutex<HashMap<String, String>>,
    /// Stand-ins whose archive header (and manifest) were already read from the store in
    /// this run: pick, preflight, the check and the restore each need them, and fetch them
    /// once.
    headed: Mutex<HashSet<PathBuf>>,
    /// Multipart uploads in flight, aborted if the process is stopped (`abort_uploads`).
    uploads: Arc<Mutex<Vec<Upload>>>,
    /// Mirror files a listing made without reading the object (issue 41: a listing costs one
    /// pass of LIST pages and nothing per object): a manifest whose bytes, or another tool's
    /// file whose first bytes, are read from the store only when something reads the file
    /// (`materialize`), by its key.
    lazy: Mutex<HashMap<PathBuf, (String, Lazy)>>,
    /// The ETag of each manifest whose bytes the mirror holds, by key: a later listing that
    /// sees the same ETag keeps them instead of reading them again.
    manifests: Mutex<HashMap<String, String>>,
    /// What the last `mirror` listed (keys relative to the location, hidden ones included):
    /// the ledger's records are found in it, without a second pass (`listed`).
    listed: Mutex<Vec<super::Meta>>,
    /// Mirror paths the last listing saw and no file stands in for yet, with what the LIST
    /// answer said of each (issue 41: a file per listed object, made and unlinked, was most
    /// of a listing's cost). `storage::tree` answers for them; the stand-in is made when
    /// something reads the object (`realize`), so listing, prune and pick make none.
    unmade: Mutex<std::collections::BTreeMap<PathBuf, Unmade>>,
    /// Mirror files written in this run (stand-ins made, manifests read): the only ones a
    /// listing stats to see whether they still are the object listed.
    written: Mutex<HashSet<PathBuf>>,
}

/// A listed object no mirror file stands in for yet.
#[derive(Debug, Clone)]
struct Unmade {
    size: u64,
    modified: std::time::SystemTime,
}

/// What a lazy mirror file still lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lazy {
    /// All of it (a manifest: small).
    Whole,
    /// Its first `HEAD_BYTES` (what tells another tool's file's kind).
    Head,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

type Upload = Arc<tokio::sync::Mutex<Option<Box<dyn object_store::MultipartUpload>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The settings given for one store whose names start with `prefix`, lower-cased as the
/// builders parse them (see `open_given`).
fn given(settings: &[(String, String)], prefix: &str) -> Vec<(String, String)> {
    settings.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()
}

/// A setting from the given ones, else the environment.
fn given_or_env(settings: &[(String, String)], name: &str) -> Option<String> {
    settings.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| std::env::var(name).ok())
}

/// The option keys a location may carry after `?`.
const OPTIONS: &str =
    "endpoint, region, path_style, allow_http, storage_class, account, use_emulator, timeout, first_byte_timeout";

/// How long one request may take (connect, answer and body), unless the location's
/// `timeout=` or PGDRILL_STORE_TIMEOUT says otherwise; connecting alone gets at most
/// `CONNECT_TIMEOUT`. A store that accepts connections and never answers is then an error
/// within seconds, not after object_store's three minutes of retries.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a read waits for the store's answer to begin (its headers), unless the
/// location's `first_byte_timeout=` says otherwise; never longer than the request timeout.
/// A read is a part of at most 8 MiB, so the request timeout must leave room for its bytes;
/// a store that takes the request and then says nothing is caught sooner by this.
const FIRST_BYTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The request timeout of a location: its `timeout=` option, else PGDRILL_STORE_TIMEOUT,
/// else `REQUEST_TIMEOUT` (`30s`, `2m` or plain seconds).
fn request_timeout(opts: &BTreeMap<String, String>) -> Result<std::time::Duration, String> {
    let (v, from) = match (opts.get("timeout"), std::env::var("PGDRILL_STORE_TIMEOUT").ok().filter(|v| !v.is_empty())) {
        (Some(v), _) => (v.clone(), "the location's `timeout`"),
        (None, Some(v)) => (v, "PGDRILL_STORE_TIMEOUT"),
        (None, None) => return Ok(REQUEST_TIMEOUT),
    };
    parse_timeout(&v, from)
}

/// The first-byte timeout of a location: its `first_byte_timeout=` option, else
/// `FIRST_BYTE_TIMEOUT`, at most `request`.
fn first_byte_timeout(
    opts: &BTreeMap<String, String>,
    request: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let d = match opts.get("first_byte_timeout") {
        Some(v) => parse_timeout(v, "the location's `first_byte_timeout`")?,
        None => FIRST_BYTE_TIMEOUT,
    };
    Ok(d.min(request))
}

fn parse_timeout(v: &str, from: &str) -> Result<std::time::Duration, String> {
    let d = v
        .parse::<u64>()
        .map(std::time::Duration::from_secs)
        .or_else(|_| humantime::parse_duration(v))
        .map_err(|_| format!("{from} `{}` is not a duration: write `20s` or `2m`", crate::util::visible(v)))?;
    if d.is_zero() {
        return Err(format!("{from} is 0: a request needs some time"));
    }
    Ok(d)
}

/// Open `location`: a store of its own, with a mirror of its own. Nothing is shared with
/// another opening of the same text; a run shares what it opened across its steps through
/// the set of stores it owns (`storage::Opened`). With object-store settings given from a
/// file instead of the environment
/// (`NAME`, value; only AWS_*, AZURE_* and GOOGLE_* names are used), applied over the
/// environment's: `wal fetch` as a throwaway server's restore_command runs with a clean
/// environment and reads them from its 0600 config. They are this store's alone, never a
/// process-wide setting another store would pick up.
pub fn open_given(location: &str, settings: &[(String, String)]) -> Result<Remote, String> {
    let location = location.trim();
    let Location { scheme, bucket, prefix, opts } = parse_location(location)?;
    let (bucket, prefix) = (bucket.as_str(), prefix.as_str());
    let flag = |k: &str| opts.get(k).map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    let timeout = request_timeout(&opts)?;
    let first_byte = first_byte_timeout(&opts, timeout)?;
    // Set key by key: the builders' other client settings (AWS_ALLOW_HTTP...) come from the
    // environment and must stay.
    let timeouts = client_timeouts(timeout);
    // Retries stop after half the first-byte timeout: a store that refuses connections (or
    // answers with errors) is then said with its own error, before the first-byte bound of
    // `bounded.rs` would call it silent.
    let retry = object_store::RetryConfig { retry_timeout: first_byte / 2, ..Default::default() };
    let (store, parts): (Arc<dyn ObjectStore>, Arc<dyn object_store::multipart::MultipartStore>) = match scheme.as_str()
    {
        "s3" => {
            let b = s3_builder(bucket, &opts, settings, &timeouts)?.with_retry(retry.clone());
            let built = Arc::new(b.build().map_err(|e| describe(&e))?);
            (built.clone(), built)
        }
        "az" | "azure" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(retry.clone());
            for (k, v) in given(settings, "AZURE_") {
                if let Ok(key) = k.parse::<object_store::azure::AzureConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            for (k, v) in &timeouts {
                b = b.with_config(object_store::azure::AzureConfigKey::Client(*k), v);
            }
            if let Some(cs) = given_or_env(settings, "AZURE_STORAGE_CONNECTION_STRING") {
                for part in cs.split(';').filter(|p| !p.is_empty()) {
                    let Some((k, v)) = part.split_once('=') else { continue };
                    b = match k.trim() {
                        "AccountName" => b.with_account(v),
                        "AccountKey" => b.with_access_key(v),
                        "BlobEndpoint" => b.with_endpoint(v.to_string()),
                        "DefaultEndpointsProtocol" if v.eq_ignore_ascii_case("http") => b.with_allow_http(true),
                        _ => b,
                    };
                }
            }
            if let Some(a) = opts.get("account") {
                b = b.with_account(a);
            }
            if let Some(e) = opts.get("endpoint") {
                b = b.with_endpoint(e.clone());
            }
            if let Some(h) = flag("allow_http") {
                b = b.with_allow_http(h);
            }
            if let Some(u) = flag("use_emulator") {
                b = b.with_use_emulator(u);
            }
            let built = Arc::new(b.build().map_err(|e| describe(&e))?);
            (built.clone(), built)
        }
        "gs" => {
            // Google's JSON API (gcs.rs), not object_store's XML client: see gcs.rs for why.
            let emulator = gcs_emulator(&opts)?;
            let built =
                Arc::new(super::gcs::Gcs::open(bucket, emulator, settings, timeout, CONNECT_TIMEOUT.min(timeout))?);
            (built.clone(), built)
        }
        other => return Err(format!("unknown storage scheme `{other}://`: use s3://, gs://, az:// or a local path")),
    };
    // Every call, not only ranged reads, ends within its bound, retries included (bounded.rs).
    let bounds = super::bounded::Bounds { first_byte, request: timeout };
    let store: Arc<dyn ObjectStore> = Arc::new(super::bounded::Bounded::new(store, bounds));
    let parts: Arc<dyn object_store::multipart::MultipartStore> = Arc::new(super::bounded::Bounded::new(parts, bounds));
    let parent = std::env::temp_dir().join("pgdrill-mirror");
    // Another user's pgdrill may have made the shared folder (root's runs, then `wal push` or
    // `wal fetch` as the server's user): then a folder of this user's own.
    let cache = private_dir(&parent, "mirror")
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                private_dir(&std::env::temp_dir().join(format!("pgdrill-mirror-{}", nix::unistd::geteuid())), "mirror")
            }
            _ => Err(e),
        })
        .map_err(|e| format!("cannot make a private directory in {}: {e}", parent.display()))?;
    track(&cache);
    let r = Remote {
        url: format!("{scheme}://{bucket}{}{prefix}", if prefix.is_empty() { "" } else { "/" }),
        store,
        parts,
        prefix: prefix.to_string(),
        storage_class: opts.get("storage_class").cloned(),
        blocks: matches!(scheme.as_str(), "az" | "azure"),
        cache,
        timeout,
        first_byte_ms: u32::try_from(first_byte.as_millis()).unwrap_or(u32::MAX),
        seen: Arc::default(),
    };
    Ok(r)
}

/// The request timeout and the connect timeout of a location's requests.
fn client_timeouts(timeout: std::time::Duration) -> [(object_store::ClientConfigKey, String); 2] {
    [
        (object_store::ClientConfigKey::Timeout, humantime::format_duration(timeout).to_string()),
        (
            object_store::ClientConfigKey::ConnectTimeout,
            humantime::format_duration(CONNECT_TIMEOUT.min(timeout)).to_string(),
        ),
    ]
}

/// The one configuration of an S3 location's client: the environment, the settings given
/// for it (see `open_given`), its timeouts, AWS_PROFILE and the location's options. What the
/// store is built with, and what `s3_access` reads for the requests object_store has no call
/// for, so that credentials, endpoint, region and timeouts are set in one place.
fn s3_builder(
    bucket: &str,
    opts: &BTreeMap<String, String>,
    settings: &[(String, String)],
    timeouts: &[(object_store::ClientConfigKey, String)],
) -> Result<object_store::aws::AmazonS3Builder, String> {
    let flag = |k: &str| opts.get(k).map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (k, v) in given(settings, "AWS_") {
        if let Ok(key) = k.parse::<object_store::aws::AmazonS3ConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    for (k, v) in timeouts {
        b = b.with_config(object_store::aws::AmazonS3ConfigKey::Client(*k), v);
    }
    b = aws_profile(b)?;
    if let Some(e) = opts.get("endpoint") {
        b = b.with_endpoint(e);
    }
    if let Some(r) = opts.get("region") {
        b = b.with_region(r);
    }
    if let Some(p) = flag("path_style") {
        b = b.with_virtual_hosted_style_request(!p);
    }
    if let Some(h) = flag("allow_http") {
        b = b.with_allow_http(h);
    }
    Ok(b)
}

/// What an `s3://` location's store sends its requests with (`s3_builder`, as `open_given`
/// builds it), for the requests object_store has no call for (Object Lock:
/// `storage::lock`): its bucket and prefix, where its requests go, its credentials and its
/// timeouts.
pub(super) struct S3Access {
    pub bucket: String,
    pub prefix: String,
    /// `http[s]://host[:port]` with no path.
    pub endpoint: String,
    /// The bucket goes in the path (else in the endpoint's host).
    pub path_style: bool,
    pub region: String,
    pub allow_http: bool,
    pub access_key: Option<String>,
    pub secret: Option<String>,
    pub token: Option<String>,
    pub timeout: std::time::Duration,
    pub connect_timeout: std::time::Duration,
}

/// `S3Access` of an `s3://BUCKET/PREFIX` location, its options checked as a store's are
/// (`parse_location`: no credentials in it, no unknown option).
pub(super) fn s3_access(location: &str) -> Result<S3Access, String> {
    use object_store::aws::AmazonS3ConfigKey as K;
    let Location { scheme, bucket, prefix, opts } = parse_location(location.trim())?;
    if scheme != "s3" {
        return Err(format!("`{scheme}://` is not S3: give s3://BUCKET/PREFIX"));
    }
    let timeout = request_timeout(&opts)?;
    let b = s3_builder(&bucket, &opts, &[], &client_timeouts(timeout))?;
    let value = |k: K| b.get_config_value(&k).filter(|v| !v.is_empty());
    let yes = |k: K| value(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    // object_store's own default region.
    let region = value(K::Region).unwrap_or_else(|| "us-east-1".into());
    let virtual_hosted = yes(K::VirtualHostedStyleRequest);
    // As object_store addresses it: a given endpoint holds the bucket when requests are
    // virtual-hosted; AWS's own, path-style unless asked otherwise.
    let (endpoint, path_style) = match (value(K::Endpoint), virtual_hosted) {
        (Some(e), v) => (e.trim_end_matches('/').to_string(), !v),
        (None, false) => (format!("https://s3.{region}.amazonaws.com"), true),
        (None, true) => (format!("https://{bucket}.s3.{region}.amazonaws.com"), false),
    };
    Ok(S3Access {
        endpoint,
        path_style,
        allow_http: yes(K::Client(object_store::ClientConfigKey::AllowHttp)),
        access_key: value(K::AccessKeyId),
        secret: value(K::SecretAccessKey),
        token: value(K::Token),
        region,
        bucket,
        prefix,
        timeout,
        connect_timeout: CONNECT_TIMEOUT.min(timeout),
    })
}

/// A location's parts: scheme (lowercased), bucket, prefix (no leading or trailing `/`),
/// options (values percent-decoded).
#[derive(Debug)]
struct Location {
    scheme: String,
    bucket: String,
    prefix: String,
    opts: BTreeMap<String, String>,
}

/// Split and check a location without opening anything.
fn parse_location(location: &str) -> Result<Location, String> {
    let (base, query) = match location.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (location, None),
    };
    let (scheme, rest) = base.split_once("://").ok_or_else(|| format!("`{base}` is not a storage URL"))?;
    let scheme = scheme.to_ascii_lowercase();
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p.trim_matches('/')),
        None => (rest, ""),
    };
    if bucket.is_empty() {
        return Err(format!("`{base}` names no bucket: write {scheme}://BUCKET/PREFIX"));
    }
    if prefix.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("`{base}`: a prefix may not hold `.` or `..` components"));
    }
    let mut opts = BTreeMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        let k = k.to_ascii_lowercase();
        let v = percent_decode(v);
        if ["key", "secret", "token", "password", "sas", "credential"].iter().any(|s| k.contains(s)) {
            return Err(format!(
                "`{k}` in a storage location: credentials never go in a location (it is shown and logged); set them in the environment ({})",
                env_hint(&scheme)
            ));
        }
        if !OPTIONS.split(", ").any(|o| o == k) {
            return Err(format!("unknown storage option `{k}` in `{base}`: the options are {OPTIONS}"));
        }
        opts.insert(k, v);
    }
    Ok(Location { scheme, bucket: bucket.to_string(), prefix: prefix.to_string(), opts })
}

/// A gs:// location's emulator: its `endpoint` when `use_emulator=true` is given too.
/// The gs:// client (gcs.rs) reaches another address than Google's only without credentials
/// (or through a service-account file that names it, `gcs_base_url`), so an endpoint alone is refused
/// rather than sent unsigned requests a real server would take for anonymous ones.
/// A location without options (a ledger's URL, which takes none) finds the emulator where
/// Google's own clients do, in STORAGE_EMULATOR_HOST (`http://HOST:PORT` or `HOST:PORT`).
fn gcs_emulator(opts: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let emulator =
        opts.get("use_emulator").is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    match (opts.get("endpoint"), emulator) {
        (None, false) => Ok(std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|h| !h.trim().is_empty()).map(|h| {
            let h = h.trim().trim_end_matches('/');
            if h.starts_with("http://") || h.starts_with("https://") {
                h.to_string()
            } else {
                format!("http://{h}")
            }
        })),
        (None, true) => Err("`use_emulator` on a gs:// location needs the emulator's `endpoint=http://HOST:PORT`".into()),
        (Some(_), false) => Err("`endpoint` on a gs:// location is for an emulator (add `use_emulator=true`: requests are then sent without credentials); for another address with credentials, put `gcs_base_url` in the service-account file named by GOOGLE_SERVICE_ACCOUNT_PATH, or use the server's S3-compatible endpoint with s3://".into()),
        (Some(e), true) if e.starts_with("http://") || e.starts_with("https://") => Ok(Some(e.trim_end_matches('/').to_string())),
        (Some(e), true) => Err(format!("the gs:// `endpoint` `{}` is not an http:// or https:// URL", crate::util::visible(e))),
    }
}

fn env_hint(scheme: &str) -> &'static str {
    match scheme {
        "s3" => "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE",
        "gs" => "GOOGLE_APPLICATION_CREDENTIALS",
        _ => "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_CONNECTION_STRING",
    }
}

/// AWS_PROFILE: the keys and region of that profile in ~/.aws/credentials and ~/.aws/config
/// (or AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE), for what the environment left unset.
fn aws_profile(mut b: object_store::aws::AmazonS3Builder) -> Result<object_store::aws::AmazonS3Builder, String> {
    use object_store::aws::AmazonS3ConfigKey as K;
    let Ok(profile) = std::env::var("AWS_PROFILE") else { return Ok(b) };
    let home = std::env::var("HOME").unwrap_or_default();
    let creds = std::env::var("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|_| format!("{home}/.aws/credentials"));
    let config = std::env::var("AWS_CONFIG_FILE").unwrap_or_else(|_| format!("{home}/.aws/config"));
    let mut found = false;
    for (file, section) in [(creds.as_str(), profile.clone()), (config.as_str(), format!("profile {profile}"))] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        let mut inside = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                let name = line.trim_matches(['[', ']']).trim();
                inside = name == section || (file == config && name == profile && profile == "default");
                found |= inside;
                continue;
            }
            let Some((k, v)) = line.split_once('=').filter(|_| inside) else { continue };
            let (k, v) = (k.trim(), v.trim());
            let key = match k {
                "aws_access_key_id" => K::AccessKeyId,
                "aws_secret_access_key" => K::SecretAccessKey,
                "aws_session_token" => K::Token,
                "region" => K::Region,
                "endpoint_url" => K::Endpoint,
                _ => continue,
            };
            if b.get_config_value(&key).is_none() {
                b = b.with_config(key, v);
            }
        }
    }
    if !found {
        return Err(format!("AWS_PROFILE `{profile}` is in neither {creds} nor {config}"));
    }
    Ok(b)
}

/// Whether a request got no answer at all (its connection or request failed, or timed out).
fn no_answer(e: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<HttpError>().is_some_and(|h| {
            matches!(
                h.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            )
        }) {
            return true;
        }
        cause = c.source();
    }
    // A retried request's error keeps only the client's words.
    let text = e.to_string().to_ascii_lowercase();
    ["error sending request", "connection refused", "timed out"].iter().any(|w| text.contains(w))
}

/// One line for an object-store error: the class first, what to change, never a credential
/// (the crate's messages carry no secrets, and the run's redactor masks them anyway).
///
/// The class comes from the error's types where the crate gives them (a 401/403 status is
/// `PermissionDenied`/`Unauthenticated`; a request that never got an answer is an
/// `HttpError` of kind connect, request, timeout or interrupted), and from its text only for
/// the rest, with every URL taken out first: a port such as `:37403` or an object named
/// `forbidden.dump` once read as a refused credential, when the store was simply gone.
pub fn describe(e: &object_store::Error) -> String {
    use object_store::client::{HttpError, HttpErrorKind};
    const CREDENTIALS: &str = "the store refused the credentials: check the environment's keys for this location; ";
    const UNREACHABLE: &str = "the store cannot be reached: check the endpoint and the network; ";
    const NO_BUCKET: &str = "the bucket (container) does not exist: create it or fix the location; ";
    if let object_store::Error::Precondition { .. } = e {
        return "the object changed while it was read (replaced in the store since pgdrill listed it): nothing was judged; run again".into();
    }
    let text = e.to_string();
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // S3 answers a read of an object in GLACIER or DEEP_ARCHIVE with 403, which reads as a
    // refused credential unless its code is looked at; Azure's archive tier says
    // BlobArchived (409). Neither is about keys: the object must be brought back first.
    let lower = flat.to_ascii_lowercase();
    if lower.contains("invalidobjectstate") {
        return format!("{ARCHIVED} (the store answered InvalidObjectState)");
    }
    if lower.contains("blobarchived") {
        return format!("{ARCHIVED} (the store answered BlobArchived)");
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut unanswered = false;
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            unanswered |= matches!(
                h.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            );
        }
        cause = c.source();
    }
    // What the store said, without the addresses it was said about.
    let said: String =
        flat.split(' ').filter(|w| !w.contains("://")).collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    let hint =
        if matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) {
            CREDENTIALS
        } else if said.contains("nosuchbucket")
            || said.contains("containernotfound")
            || said.contains("the specified container does not exist")
        {
            NO_BUCKET
        } else if unanswered {
            UNREACHABLE
        } else if said.contains("403 forbidden")
            || said.contains("401 unauthorized")
            || said.contains("authorizationfailure")
            || said.contains("signaturedoesnotmatch")
            || said.contains("invalidaccesskeyid")
        {
            CREDENTIALS
        } else if said.contains("error sending request")
            || said.contains("connection refused")
            || said.contains("dns error")
            || said.contains("timed out")
        {
            UNREACHABLE
        } else {
            ""
        };
    let mut short: String = flat.chars().take(300).collect();
    if flat.chars().count() > 300 {
        short.push('…');
    }
    format!("{hint}{short}")
}

/// What a read of an object in an archive storage class is told.
pub const ARCHIVED: &str = "the object is in an archive storage class (GLACIER, DEEP_ARCHIVE or Azure's Archive tier) and cannot be read until it is restored: restore it from the archive tier first (`aws s3api restore-object`, or set the blob's tier to Hot or Cool), then run again; nothing was judged";

impl Remote {
    /// The storage class uploads go to when objects in it cannot be read back at once
    /// (S3 GLACIER and DEEP_ARCHIVE, Azure's Archive tier): an upload there is checked from
    /// the store's metadata (`check_archived`) instead of a read-back. GLACIER_IR, and GCS's
    /// ARCHIVE class, are read at once like any other.
    pub fn archival_class(&self) -> Option<&str> {
        let c = self.storage_class.as_deref()?;
        let up = c.to_ascii_uppercase();
        let archival = matches!(up.as_str(), "GLACIER" | "DEEP_ARCHIVE") || (self.blocks && up == "ARCHIVE");
        archival.then_some(c)
    }

    /// An object just uploaded into an archive class, checked by what the store says of it
    /// (a read-back would be refused until it is restored): its size, and on S3 its ETag,
    /// which for a multipart upload is the MD5 of the MD5s of the parts the store received,
    /// against `etag`, computed from the parts as they were sent. Azure keeps no such digest
    /// of a block list: there the size alone is compared, and the line says so.
    pub async fn check_archived(&self, rel: &str, size: u64, etag: &str) -> Result<String, String> {
        let meta = self
            .store
            .head(&self.key(rel))
            .await
            .map_err(|e| format!("reading the metadata of {}: {}", self.url_of(rel), describe(&e)))?;
        let class = self.archival_class().unwrap_or_default();
        if meta.size != size {
            return Err(format!(
                "{} holds {} bytes by the store's metadata, but {size} bytes were written",
                self.url_of(rel),
                meta.size
            ));
        }
        if self.blocks {
            return Ok(format!(
                "stored in {class}, which cannot be read back until restored: checked by the store's metadata only, size {size} bytes (Azure keeps no checksum of a block list to compare)"
            ));
        }
        let there = meta.e_tag.as_deref().unwrap_or_default().trim_matches('"').to_ascii_lowercase();
        if there != etag {
            return Err(format!(
                "{} has ETag {there} by the store's metadata, but the parts sent make {etag}",
                self.url_of(rel)
            ));
        }
        Ok(format!(
            "stored in {class}, which cannot be read back until restored: checked by the store's metadata instead, size {size} bytes and ETag {etag} (the MD5 of the MD5s of the parts as sent) match; not read back"
        ))
    }

    /// The local mirror's root.
    #[cfg(test)]
    pub fn mirror_root(&self) -> &Path {
        &self.cache
    }

    fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// `rel` relative to the prefix, or None for a key outside it.
    fn rel_of<'a>(&self, key: &'a Key) -> Option<&'a str> {
        let k = key.as_ref();
        if self.prefix.is_empty() {
            Some(k)
        } else {
            k.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }

    /// The URL of `rel`.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn mirror_of(&self, rel: &str) -> PathBuf {
        self.cache.join(rel)
    }

    /// Whether the store answers: one listing request (the bucket exists, the credentials
    /// are taken) whose answer must begin within the first-byte timeout, retries included
    /// (the request timeout stays as a backstop). Called before anything that holds a
    /// resource while it waits (pg_dump's snapshot).
    pub async fn probe(&self) -> Result<(), String> {
        match self.first_page().await?.1 {
            Some(Err(e)) => Err(format!("cannot list {}: {}", self.url, describe(&e))),
            _ => Ok(()),
        }
    }

    /// A listing of the location and its first answer, which must begin within the request
    /// timeout: `probe`'s question and `list_pass`'s first page, one verdict for both.
    async fn first_page(&self) -> Result<(Listing, Option<object_store::Result<object_store::ObjectMeta>>), String> {
        let prefix = (!self.prefix.is_empty()).then(|| Key::from(self.prefix.as_str()));
        let mut listing = self.store.list(prefix.as_ref());
        let first = tokio::time::timeout(self.timeout, listing.next()).await.map_err(|_| self.silent(self.timeout))?;
        if let Some(Err(e)) = &first {
            if super::bounded::unanswered(e) {
                return Err(self.silent(self.first_byte()));
            }
            // Retries ended before the bound (a refused connection, a request that failed):
            // the same verdict, with the client's own words, which name the endpoint.
            if no_answer(e) {
                return Err(format!("{}: {}", self.silent(self.first_byte()), describe(e)));
            }
        }
        Ok((listing, first))
    }

    /// The store did not answer within `d`.
    fn silent(&self, d: std::time::Duration) -> String {
        format!(
            "the store cannot be reached: {} did not answer within {} (set the location's `first_byte_timeout=`, `timeout=` or PGDRILL_STORE_TIMEOUT for a slower store)",
            self.url,
            humantime::format_duration(d)
        )
    }

    /// Mirror the location in one pass of LIST pages, no request per object and no file per
    /// object (issue 41): each object is known from the LIST answer (size, time, ETag) and
    /// answered for by `storage::tree`; a sparse stand-in of its size and time is made only
    /// when something reads it (`realize`), its bytes read from the store then. A manifest's
    /// bytes, and another tool's file's first bytes, are fetched on first read
    /// (`materialize`), once per process while the store's ETag stays the same; a listing
    /// takes what it shows from names and the LIST answer. Hidden objects (`.ledger/`,
    /// uploads) are left to their owners (see `backup::ledger::gather`, which reads the
    /// ledger's records from this same pass, `listed`). Returns the mirror's root, to be
    /// listed as a local store through `storage::tree`, and a warning for each object the
    /// mirror had to leave out (`skipped`), for the caller to tell.
    pub async fn mirror(&self) -> Result<(PathBuf, Vec<String>), String> {
        let objects = self.list_pass().await?;
        let mut warnings = Vec::new();
        // What the mirror held that the store no longer has goes (a prune elsewhere), and so
        // does a file of an object that changed since it was made.
        let mut keep: HashSet<PathBuf> = HashSet::new();
        let mut unmade = std::collections::BTreeMap::new();
        let mut listed = Vec::with_capacity(objects.len());
        for m in &objects {
            let Some(rel) = self.rel_of(&m.location).map(str::to_string) else { continue };
            listed.push(super::Meta {
                key: rel.clone(),
                size: m.size,
                modified: m.last_modified.into(),
                version: m.e_tag.clone(),
            });
            let parts: Vec<&str> = rel.split('/').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.starts_with('.') || p.is_empty()) {
                continue;
            }
            // One object whose name no local file can have must not hide every other one.
            if let Some(p) = parts.iter().find(|p| p.len() > NAME_MAX) {
                warnings.push(
                    self.skipped(
                        &rel,
                        &format!("a key part of {} bytes (a file name has at most {NAME_MAX})", p.len()),
                    ),
                );
                continue;
            }
            let local = self.mirror_of(&rel);
            self.pin(&rel, m.e_tag.as_deref());
            let modified: std::time::SystemTime = m.last_modified.into();
            // A file is only there when something read the object in this run: then see
            // whether it is still this object (a stat; none for the objects never read).
            let made = self.made(&local);
            let on_disk = if made { std::fs::metadata(&local).ok() } else { None };
            let same_size = on_disk.as_ref().map(|md| md.len()) == Some(m.size);
            // Made by an earlier listing of this run from the same object (its time): kept,
            // with whatever of it was read since.
            let same_object = same_size && on_disk.and_then(|md| md.modified().ok()) == Some(modified);
            let kept = if rel.ends_with(".manifest.json") {
                // Bytes already read at this ETag: kept (the cache of manifests by ETag).
                let cached = lock(&self.seen.manifests).get(&rel).cloned();
                let kept =
                    same_size && cached.is_some() && cached == m.e_tag && !lock(&self.seen.lazy).contains_key(&local);
                if !kept {
                    lock(&self.seen.manifests).remove(&rel);
                }
                kept
            } else {
                same_object
                    || (same_size
                        && (lock(&self.seen.fetched).contains(&local) || lock(&self.seen.headed).contains(&local)))
            };
            if kept {
                keep.insert(local);
                continue;
            }
            lock(&self.seen.headed).remove(&local);
            lock(&self.seen.fetched).remove(&local);
            // A pgdrill archive's header is read by the step that needs it (`fill_head`).
            let lazy = if rel.ends_with(".manifest.json") {
                Some(Lazy::Whole)
            } else if !rel.ends_with(".pgdrill") && m.size > 0 {
                Some(Lazy::Head)
            } else {
                None
            };
            match lazy {
                Some(what) => lock(&self.seen.lazy).insert(local.clone(), (rel, what)),
                None => lock(&self.seen.lazy).remove(&local),
            };
            unmade.insert(local, Unmade { size: m.size, modified });
        }
        *lock(&self.seen.listed) = listed;
        *lock(&self.seen.unmade) = unmade;
        self.prune_mirror(&self.cache, &keep);
        Ok((self.cache.clone(), warnings))
    }

    /// Whether a file was written at `local` in this run (a stand-in made, an object
    /// fetched, a manifest read), so a listing must stat it.
    fn made(&self, local: &Path) -> bool {
        lock(&self.seen.fetched).contains(local)
            || lock(&self.seen.headed).contains(local)
            || lock(&self.seen.written).contains(local)
    }

    /// Make the stand-in of a listed object no file stands in for yet (see `mirror`): from
    /// here on it is a file, read through `materialize`/`fill_head` like any. Returns
    /// whether one was made.
    fn realize(&self, local: &Path) -> Result<bool, String> {
        let Some(u) = lock(&self.seen.unmade).remove(local) else { return Ok(false) };
        self.make_stand_in(local, &[], u.size, u.modified).map_err(|e| {
            if unmirrorable(&e) {
                format!("{} cannot be mirrored locally: {e}", self.url_of(&self.rel_of_local(local)))
            } else {
                format!("mirroring {}: {e}", local.display())
            }
        })?;
        Ok(true)
    }

    /// The key of a mirror path, relative to the location.
    fn rel_of_local(&self, local: &Path) -> String {
        local.strip_prefix(&self.cache).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Every object of the location, in one pass of LIST pages: the first page must answer
    /// within the request timeout (the probe's promise, without a request of its own).
    async fn list_pass(&self) -> Result<Vec<object_store::ObjectMeta>, String> {
        let (mut listing, mut next) = self.first_page().await?;
        let mut objects = Vec::new();
        while let Some(m) = next {
            objects.push(m.map_err(|e| format!("cannot list {}: {}", self.url, describe(&e)))?);
            next = listing.next().await;
        }
        Ok(objects)
    }

    /// What the last `mirror` listed (keys relative to the location, hidden ones too).
    pub fn listed(&self) -> Vec<super::Meta> {
        lock(&self.seen.listed).clone()
    }

    /// Read from the store what the lazy mirror file `local` (of `rel`) still lacks.
    async fn materialize_at(&self, rel: &str, local: &Path, what: Lazy) -> Result<(), String> {
        use std::io::{Seek, SeekFrom};
        self.realize(local)?;
        let size = match std::fs::metadata(local) {
            Ok(m) => m.len(),
            // Gone from the mirror (a later listing no longer saw it): nothing to fill.
            Err(_) => {
                lock(&self.seen.lazy).remove(local);
                return Ok(());
            }
        };
        let tag = self.pin(rel, None);
        let n = match what {
            Lazy::Whole => size,
            Lazy::Head => size.min(HEAD_BYTES),
        };
        let bytes = if n == 0 {
            Vec::new()
        } else {
            get_range_of(&self.store, &self.key(rel), 0..n, tag.clone(), self.first_byte())
                .await
                .map_err(|e| format!("reading {}: {}", self.url_of(rel), describe(&e)))?
                .to_vec()
        };
        match what {
            Lazy::Whole => {
                super::write_replace(local, &bytes).map_err(|e| format!("mirroring {}: {e}", local.display()))?;
                lock(&self.seen.written).insert(local.to_path_buf());
                if let Some(t) = tag {
                    lock(&self.seen.manifests).insert(rel.to_string(), t);
                }
            }
            Lazy::Head => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(local)
                    .map_err(|e| format!("{}: {e}", local.display()))?;
                f.seek(SeekFrom::Start(0))
                    .and_then(|_| f.write_all(&bytes))
                    .map_err(|e| format!("{}: {e}", local.display()))?;
            }
        }
        lock(&self.seen.lazy).remove(local);
        Ok(())
    }

    /// A manifest written into the mirror by a read of its backup: no longer lazy.
    fn mirrored_manifest(&self, rel: &str) {
        let local = self.mirror_of(rel);
        lock(&self.seen.unmade).remove(&local);
        lock(&self.seen.lazy).remove(&local);
        lock(&self.seen.written).insert(local);
    }

    /// The warning that an object is left out of the listing, and why (the run goes on
    /// without it): the step that listed tells it (`View::warnings`), never stderr, so it
    /// reaches the run's reports as its other warnings do.
    fn skipped(&self, rel: &str, why: &str) -> String {
        format!(
            "{} cannot be mirrored locally ({}): left out of the listing; rename it in the store to list it",
            crate::util::visible(&self.url_of(rel)),
            crate::util::visible(why)
        )
    }

    async fn get_bytes(&self, key: &Key) -> Result<Vec<u8>, String> {
        let r = self.store.get(key).await.map_err(|e| format!("reading {}: {}", key, describe(&e)))?;
        r.bytes().await.map(|b| b.to_vec()).map_err(|e| format!("reading {}: {}", key, describe(&e)))
    }

    /// Download `rel` (and its manifest, and its folder's ledger) into the mirror, unless
    /// already there. Returns the local path.
    pub async fn fetch(&self, rel: &str) -> Result<PathBuf, String> {
        let local = self.mirror_of(rel);
        if lock(&self.seen.fetched).contains(&local) && local.exists() {
            return Ok(local);
        }
        let key = self.key(rel);
        let meta = self.head_of(rel, &key).await?;
        let modified: std::time::SystemTime = meta.last_modified.into();
        let size = meta.size;
        let tag = self.pin(rel, meta.e_tag.as_deref());
        let dir = local.parent().unwrap_or(&self.cache).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempfile_in(&dir)
            .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        // Ranges, a few in flight, written in order: memory stays bounded.
        let mut parts = parts_of(self.store.clone(), key.clone(), size, tag, self.first_byte());
        let mut n = 0u64;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            while let Some(chunk) = parts.next().await {
                let chunk = chunk.map_err(|e| format!("downloading {}: {}", self.url_of(rel), describe(&e)))?;
                n += chunk.len() as u64;
                tokio::task::block_in_place(|| w.write_all(&chunk))
                    .map_err(|e| format!("writing {}: {e}", dir.display()))?;
            }
            w.flush().map_err(|e| format!("writing {}: {e}", dir.display()))?;
        }
        if n != size {
            return Err(format!("downloading {}: got {n} bytes of {size}", self.url_of(rel)));
        }
        let _ = tmp.as_file().set_modified(modified);
        tmp.persist(&local).map_err(|e| format!("cannot write {}: {}", local.display(), e.error))?;
        lock(&self.seen.unmade).remove(&local);
        lock(&self.seen.fetched).insert(local.clone());
        // Its manifest and ledger, for a backup named directly rather than listed.
        let manifest = format!("{rel}.manifest.json");
        if let Ok(r) = self.store.get(&self.key(&manifest)).await {
            if let Ok(b) = r.bytes().await {
                if super::write_replace(&self.mirror_of(&manifest), &b).is_ok() {
                    self.mirrored_manifest(&manifest);
                }
            }
        }
        lock(&self.seen.lazy).remove(&local);
        Ok(local)
    }

    /// Whether `rel`'s contents were downloaded into the mirror.
    pub fn is_fetched(&self, rel: &str) -> bool {
        let local = self.mirror_of(rel);
        lock(&self.seen.fetched).contains(&local) && local.exists()
    }

    /// The mirror's stand-in of `rel` with its first `head` bytes (an archive's header, for
    /// the authentication of its manifest), and its manifest beside it: what a streamed read
    /// needs locally. Made when the location was never listed (a backup named by URL).
    pub async fn stand_in(&self, rel: &str, head: u64) -> Result<PathBuf, String> {
        let local = self.mirror_of(rel);
        if lock(&self.seen.headed).contains(&local) && self.is_stand_in(&local) {
            return Ok(local);
        }
        let key = self.key(rel);
        let meta = self.head_of(rel, &key).await?;
        let tag = self.pin(rel, meta.e_tag.as_deref());
        let bytes = get_range_of(&self.store, &key, 0..head.min(meta.size), tag, self.first_byte())
            .await
            .map_err(|e| format!("reading {}: {}", self.url_of(rel), describe(&e)))?;
        self.make_stand_in(&local, &bytes, meta.size, meta.last_modified.into())
            .map_err(|e| format!("mirroring {}: {e}", local.display()))?;
        let manifest = format!("{rel}.manifest.json");
        if let Ok(r) = self.store.get(&self.key(&manifest)).await {
            if let Ok(b) = r.bytes().await {
                super::write_replace(&self.mirror_of(&manifest), &b)
                    .map_err(|e| format!("mirroring {}: {e}", self.mirror_of(&manifest).display()))?;
                self.mirrored_manifest(&manifest);
            }
        }
        lock(&self.seen.headed).insert(local.clone());
        Ok(local)
    }

    /// `rel` as a blocking reader, for a thread off the runtime: ranges of `STREAM_PART`
    /// bytes, a few in flight, handed over in order through a bounded channel, so memory stays
    /// bounded and nothing is written locally. A store that fails mid-read is an
    /// environment error (`store_failure`), never a verdict on the backup.
    pub async fn reader(&self, rel: &str) -> Result<(Box<dyn std::io::Read + Send>, u64), String> {
        let key = self.key(rel);
        // A stand-in already has the object's size (its HEAD was just made).
        let local = self.mirror_of(rel);
        let unmade = lock(&self.seen.unmade).get(&local).map(|u| u.size);
        let known = match unmade {
            Some(n) => Some(n),
            None if self.is_stand_in(&local) => std::fs::metadata(&local).ok().map(|m| m.len()),
            None => None,
        };
        let (size, tag) = match known {
            Some(n) => (n, self.pin(rel, None)),
            None => {
                let meta = self
                    .store
                    .head(&key)
                    .await
                    .map_err(|e| format!("reading {}: {}", self.url_of(rel), describe(&e)))?;
                (meta.size, self.pin(rel, meta.e_tag.as_deref()))
            }
        };
        Ok((self.ranges(rel, 0..size, tag), size))
    }

    /// `range` of `rel` (of the version `tag` when given) as a blocking reader: see `reader`.
    fn ranges(&self, rel: &str, range: std::ops::Range<u64>, tag: Option<String>) -> Box<dyn std::io::Read + Send> {
        let key = self.key(rel);
        let size = range.end.saturating_sub(range.start);
        // Smaller ranges than an upload's parts, one waiting in the channel, each handed on
        // without a copy: at most about 4 x 4 MiB in memory (in flight, queued, being read).
        let ranges: Vec<std::ops::Range<u64>> = (range.start..range.end)
            .step_by(STREAM_PART)
            .map(|start| start..(start + STREAM_PART as u64).min(range.end))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Chunk, Failure>>(1);
        let (store, url, first_byte) = (self.store.clone(), self.url_of(rel), self.first_byte());
        tokio::spawn(async move {
            let mut parts = futures_util::stream::iter(ranges)
                .map(|r| {
                    let (store, key, tag) = (store.clone(), key.clone(), tag.clone());
                    async move { get_range_of(&store, &key, r, tag, first_byte).await }
                })
                .buffered(STREAM_INFLIGHT);
            while let Some(chunk) = parts.next().await {
                let item = chunk
                    .map(|b| Box::new(b) as Chunk)
                    .map_err(|e| Failure::environment(format!("downloading {url}: {}", describe(&e))).with_source(e));
                let failed = item.is_err();
                // The reader was dropped (the check stopped): stop downloading.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Box::new(ObjectReader { rx, chunk: Box::new(Vec::new()), at: 0, got: 0, size })
    }

    /// Write the first `n` bytes of `rel` into its stand-in (an archive's header, for a
    /// check of its manifest), leaving it a stand-in: a step that reads more downloads it.
    /// `beside` is the mirror file a check of this head reads with it (an archive's manifest,
    /// named by the backup layout, not here): with it listed or read, the stand-in counts as
    /// headed, so `stand_in` needs no second read.
    pub async fn fill_head(&self, rel: &str, n: u64, beside: &Path) -> Result<(), String> {
        use std::io::{Seek, SeekFrom};
        let local = self.mirror_of(rel);
        if !self.is_stand_in(&local) {
            return Ok(());
        }
        self.realize(&local)?;
        let size = std::fs::metadata(&local).map(|m| m.len()).map_err(|e| format!("{}: {e}", local.display()))?;
        let head = get_range_of(&self.store, &self.key(rel), 0..n.min(size), self.pin(rel, None), self.first_byte())
            .await
            .map_err(|e| format!("reading {}: {}", self.url_of(rel), describe(&e)))?;
        let mut f =
            std::fs::OpenOptions::new().write(true).open(&local).map_err(|e| format!("{}: {e}", local.display()))?;
        f.seek(SeekFrom::Start(0)).and_then(|_| f.write_all(&head)).map_err(|e| format!("{}: {e}", local.display()))?;
        if n >= HEAD_BYTES {
            lock(&self.seen.lazy).remove(&local);
        }
        // A listed stand-in has its manifest beside it already.
        // Listed (no file yet) or read: what `tree::is_file` asks, here where the listing
        // lives (tree reads this module, not the other way round).
        if self.unmade_at(beside).is_some() || beside.is_file() {
            lock(&self.seen.headed).insert(local);
        }
        Ok(())
    }

    /// Create `rel` with `bytes`; never replaces an object (conditional create).
    pub async fn create(&self, rel: &str, bytes: Vec<u8>) -> Result<(), String> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        self.store.put_opts(&self.key(rel), PutPayload::from(bytes), opts).await.map(|_| ()).map_err(|e| match e {
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                format!("{} already exists: nothing was replaced", self.url_of(rel))
            }
            e => format!("writing {}: {}", self.url_of(rel), describe(&e)),
        })
    }

    /// Size of `rel`.
    pub async fn size(&self, rel: &str) -> Result<u64, String> {
        self.store
            .head(&self.key(rel))
            .await
            .map(|m| m.size)
            .map_err(|e| format!("reading {}: {}", self.url_of(rel), describe(&e)))
    }

    /// Write `rel`, replacing what is there: only for views meant to be the latest (a
    /// report's `report.html`), never for backups, manifests or ledger records.
    pub async fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.store
            .put(&self.key(rel), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| format!("writing {}: {}", self.url_of(rel), describe(&e)))
    }

    /// The whole of `rel`.
    pub async fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
        self.get_bytes(&self.key(rel)).await.map_err(|e| e.replace(self.key(rel).as_ref(), &self.url_of(rel)))
    }

    /// Delete `rel` (a missing object is not an error).
    pub async fn delete(&self, rel: &str) -> Result<(), String> {
        match self.store.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                let local = self.mirror_of(rel);
                let _ = std::fs::remove_file(&local);
                lock(&self.seen.fetched).remove(&local);
                Ok(())
            }
            Err(e) => Err(format!("deleting {}: {}", self.url_of(rel), describe(&e))),
        }
    }

    /// sha256 and size of `rel`, read back from the store: ranges of `PART` bytes, a few in
    /// flight and hashed in order (memory stays bounded), so one slow response does not
    /// leave the line idle.
    pub async fn digest(&self, rel: &str) -> Result<(String, u64), String> {
        use sha2::Digest;
        let key = self.key(rel);
        let meta =
            self.store.head(&key).await.map_err(|e| format!("reading {}: {}", self.url_of(rel), describe(&e)))?;
        let (size, tag) = (meta.size, self.pin(rel, meta.e_tag.as_deref()));
        let mut parts = parts_of(self.store.clone(), key.clone(), size, tag, self.first_byte());
        let mut h = sha2::Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = parts.next().await {
            let chunk = chunk.map_err(|e| format!("reading {}: {}", self.url_of(rel), describe(&e)))?;
            n += chunk.len() as u64;
            h.update(&*chunk);
        }
        Ok((crate::archive::hex(&h.finalize()), n))
    }

    /// Start a streamed upload of `rel`: bytes written to the returned writer (from a
    /// blocking thread) go up in parts as they come. Nothing is visible under `rel` until
    /// `Uploading::finish`; dropped or failed, the upload is aborted.
    pub async fn upload(&self, rel: &str) -> Result<(UploadWriter, Uploading), String> {
        let up: Box<dyn object_store::MultipartUpload> = match &self.storage_class {
            Some(c) => {
                // The multipart calls that name an upload take no storage class: this upload
                // cannot be tracked, a lifecycle rule removes it if pgdrill is killed.
                let mut opts = object_store::PutMultipartOptions::default();
                opts.attributes.insert(object_store::Attribute::StorageClass, c.clone().into());
                self.store
                    .put_multipart_opts(&self.key(rel), opts)
                    .await
                    .map_err(|e| format!("starting the upload of {}: {}", self.url_of(rel), describe(&e)))?
            }
            None => Box::new(self.tracked(rel).await?),
        };
        let up: Upload = Arc::new(tokio::sync::Mutex::new(Some(up)));
        lock(&self.seen.uploads).push(up.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
        let url = self.url_of(rel);
        let task_up = up.clone();
        // The uploader's error, for the writer, which only sees the uploader stop: set before
        // the parts' channel closes, so a write that fails always finds it.
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let task_failed = failed.clone();
        let task = tokio::spawn(async move {
            let sent: Result<(u64, String), String> = async {
                let mut inflight = futures_util::stream::FuturesUnordered::new();
                let mut total = 0u64;
                // The MD5 of each part, in the order sent: S3's ETag of the completed object is
                // the MD5 of these, which is how an upload nothing can read back is checked.
                let mut md5s = Vec::new();
                while let Some(part) = rx.recv().await {
                    total += part.len() as u64;
                    let d =
                        openssl::hash::hash(openssl::hash::MessageDigest::md5(), &part).map_err(|e| e.to_string())?;
                    md5s.extend_from_slice(&d);
                    let fut = {
                        let mut g = task_up.lock().await;
                        let Some(u) = g.as_mut() else { return Err("the upload was aborted".to_string()) };
                        u.put_part(PutPayload::from(part))
                    };
                    inflight.push(fut);
                    while inflight.len() >= INFLIGHT {
                        if let Some(r) = inflight.next().await {
                            r.map_err(|e| describe(&e))?;
                        }
                    }
                }
                while let Some(r) = inflight.next().await {
                    r.map_err(|e| describe(&e))?;
                }
                let all = openssl::hash::hash(openssl::hash::MessageDigest::md5(), &md5s).map_err(|e| e.to_string())?;
                Ok::<_, String>((total, format!("{}-{}", crate::archive::hex(&all), md5s.len() / 16)))
            }
            .await;
            if let Err(e) = &sent {
                *lock(&task_failed) = Some(e.clone());
            }
            // Only now is the channel closed (`rx` dropped).
            drop(rx);
            sent
        });
        Ok((
            UploadWriter { tx: Some(tx), buf: Vec::with_capacity(PART), failed, url: self.url_of(rel) },
            Uploading { up, inflight: self.seen.uploads.clone(), task: Some(task), url, done: false },
        ))
    }
}

/// How long an abort waits for the part requests still running (at most two parts of
/// 8 MiB): long enough for them at a few MB/s, short enough that a stopped run whose store
/// went away still exits soon (the abort itself then fails, and the record stays for prune).
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Where unfinished uploads are recorded, under the location: one object per upload, removed
/// when it completes or is aborted. One left behind names an upload a killed pgdrill could
/// not abort; `abandoned` finds them and `abort_abandoned` ends them.
const UPLOADS_DIR: &str = ".pgdrill-uploads";

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    key: String,
    id: String,
    started: String,
    pid: u32,
}

pub use super::store::Abandoned;

/// The whole object `key` (`size` bytes, of the version `etag` when given) as its parts of
/// `PART` bytes, a few fetched at a time and handed on in order: memory stays bounded.
fn parts_of(
    store: Arc<dyn ObjectStore>,
    key: Key,
    size: u64,
    etag: Option<String>,
    first_byte: std::time::Duration,
) -> impl futures_util::Stream<Item = object_store::Result<impl std::ops::Deref<Target = [u8]> + Send + 'static>> {
    let ranges: Vec<std::ops::Range<u64>> =
        (0..size).step_by(PART).map(|start| start..(start + PART as u64).min(size)).collect();
    futures_util::stream::iter(ranges)
        .map(move |r| {
            let (store, key, tag) = (store.clone(), key.clone(), etag.clone());
            async move { get_range_of(&store, &key, r, tag, first_byte).await }
        })
        .buffered(READBACK_INFLIGHT)
}

/// A range of an object, of the version `etag` when given.
async fn get_range_of(
    store: &Arc<dyn ObjectStore>,
    key: &Key,
    range: std::ops::Range<u64>,
    etag: Option<String>,
    first_byte: std::time::Duration,
) -> object_store::Result<impl std::ops::Deref<Target = [u8]> + Send + 'static> {
    let opts = object_store::GetOptions {
        range: Some(object_store::GetRange::Bounded(range)),
        if_match: etag,
        ..Default::default()
    };
    // The answer's head within `first_byte` (retries included), its body within the
    // request timeout.
    let answer = tokio::time::timeout(first_byte, store.get_opts(key, opts)).await.map_err(|_| {
        object_store::Error::Generic {
            store: "pgdrill",
            source: format!(
                "no answer began within the first-byte timeout of {} (the store took the request and sent nothing; set the location's `first_byte_timeout=` for a slower store)",
                humantime::format_duration(first_byte)
            )
            .into(),
        }
    })??;
    answer.bytes().await
}

impl Remote {
    fn first_byte(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.first_byte_ms))
    }

    /// What the store says of `rel` (stored under `key`): its size, time and version; an
    /// error that says whether it is missing or could not be read.
    async fn head_of(&self, rel: &str, key: &Key) -> Result<object_store::ObjectMeta, String> {
        self.store.head(key).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => format!("{} does not exist", self.url_of(rel)),
            e => format!("reading {}: {}", self.url_of(rel), describe(&e)),
        })
    }

    /// The version of `rel` first seen in this run; the first call records `seen`.
    fn pin(&self, rel: &str, seen: Option<&str>) -> Option<String> {
        let mut tags = lock(&self.seen.etags);
        if let (None, Some(t)) = (tags.get(rel), seen) {
            tags.insert(rel.to_string(), t.to_string());
        }
        tags.get(rel).cloned()
    }

    async fn tracked(&self, rel: &str) -> Result<Tracked, String> {
        let key = self.key(rel);
        let id = self
            .parts
            .create_multipart(&key)
            .await
            .map_err(|e| format!("starting the upload of {}: {}", self.url_of(rel), describe(&e)))?;
        let now = time::OffsetDateTime::now_utc();
        let marker = format!(
            "{UPLOADS_DIR}/{}-{}.json",
            now.unix_timestamp(),
            crate::archive::hex(&crate::archive::crypto::random::<6>())
        );
        let m = Marker {
            key: key.to_string(),
            id: id.clone(),
            started: crate::util::rfc3339(now),
            pid: std::process::id(),
        };
        let body = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
        if let Err(e) = self.create(&marker, body).await {
            let _ = abort_upload(&self.store, &self.parts, &key, &id, self.blocks).await;
            // Named by the upload it is for: the record's own name says nothing to a reader.
            return Err(format!("uploading {}: keeping the upload's record: {e}", self.url_of(rel)));
        }
        Ok(Tracked {
            store: self.store.clone(),
            parts: self.parts.clone(),
            blocks: self.blocks,
            inflight: Arc::default(),
            key,
            id,
            marker: self.key(&marker),
            done: Arc::new(Mutex::new(Vec::new())),
            next: 0,
        })
    }

    /// Uploads recorded as started more than `older_than` ago and never finished.
    pub async fn abandoned(&self, older_than: std::time::Duration) -> Result<Vec<Abandoned>, String> {
        let prefix = self.key(UPLOADS_DIR);
        let mut listing = self.store.list(Some(&prefix));
        let cutoff = time::OffsetDateTime::now_utc() - older_than;
        let mut out = Vec::new();
        while let Some(m) = listing.next().await {
            let m = m.map_err(|e| format!("cannot list {}: {}", self.url_of(UPLOADS_DIR), describe(&e)))?;
            let bytes = self.get_bytes(&m.location).await?;
            let Ok(marker) = serde_json::from_slice::<Marker>(&bytes) else { continue };
            let started = time::OffsetDateTime::parse(&marker.started, &time::format_description::well_known::Rfc3339)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            if started > cutoff {
                continue;
            }
            let shown =
                self.rel_of(&Key::from(marker.key.as_str())).map(|r| self.url_of(r)).unwrap_or(marker.key.clone());
            let completed = match self.store.head(&Key::from(marker.key.as_str())).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(format!("reading {shown}: {}", describe(&e))),
            };
            out.push(Abandoned {
                url: shown,
                started: marker.started,
                completed,
                marker: m.location.to_string(),
                key: marker.key,
                id: marker.id,
            });
        }
        Ok(out)
    }

    /// Abort an abandoned upload: the store drops its parts, and its record goes.
    pub async fn abort_abandoned(&self, a: &Abandoned) -> Result<(), String> {
        if a.completed {
            // Nothing to abort, and the object is never deleted here: only its record goes.
        } else if let Err(e) =
            abort_upload(&self.store, &self.parts, &Key::from(a.key.as_str()), &a.id, self.blocks).await
        {
            return Err(format!("aborting the upload of {}: {}", a.url, describe(&e)));
        }
        match self.store.delete(&Key::from(a.marker.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("removing {}: {}", a.marker, describe(&e))),
        }
    }
}

/// A multipart upload pgdrill started by id and recorded, so it can be aborted even after a
/// crash (see `UPLOADS_DIR`).
struct Tracked {
    store: Arc<dyn ObjectStore>,
    parts: Arc<dyn object_store::multipart::MultipartStore>,
    blocks: bool,
    /// Part requests still running (each is its own task, so one the uploader stops
    /// waiting for still ends): an abort waits for them, or a part landing after it would
    /// leave stored parts again (on Azure, recreate the blob's uncommitted blocks).
    inflight: Arc<std::sync::atomic::AtomicUsize>,
    key: Key,
    id: String,
    marker: Key,
    done: Arc<Mutex<Vec<Option<object_store::multipart::PartId>>>>,
    next: usize,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upload of {}", self.key)
    }
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for Tracked {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let idx = self.next;
        self.next += 1;
        let (parts, key, id, done) = (self.parts.clone(), self.key.clone(), self.id.clone(), self.done.clone());
        let inflight = self.inflight.clone();
        inflight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let sent = tokio::spawn(async move {
            let r = parts.put_part(&key, &id, idx, data).await;
            inflight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            let part = r?;
            let mut d = lock(&done);
            if d.len() <= idx {
                d.resize(idx + 1, None);
            }
            d[idx] = Some(part);
            Ok(())
        });
        Box::pin(async move {
            sent.await.map_err(|e| object_store::Error::Generic { store: "pgdrill", source: Box::new(e) })?
        })
    }

    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        let parts: Option<Vec<_>> = lock(&self.done).iter().cloned().collect();
        let parts = parts.ok_or_else(|| object_store::Error::Generic {
            store: "pgdrill",
            source: "a part of the upload is missing".into(),
        })?;
        let r = self.parts.complete_multipart(&self.key, &self.id, parts).await?;
        let _ = self.store.delete(&self.marker).await;
        Ok(r)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let waited = std::time::Instant::now();
        while self.inflight.load(std::sync::atomic::Ordering::SeqCst) > 0 && waited.elapsed() < ABORT_WAIT {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let r = abort_upload(&self.store, &self.parts, &self.key, &self.id, self.blocks).await;
        let _ = self.store.delete(&self.marker).await;
        r
    }
}

/// End an unfinished upload so that the store keeps none of its parts. Azure Blob has no
/// abort (object_store's is a no-op): the parts are uncommitted blocks, unseen but stored
/// until Azure drops them after 7 days. Deleting the blob drops them now, and only when
/// nothing is committed under its name (a HEAD finds no blob), so a backup whose upload did
/// complete is never removed here.
async fn abort_upload(
    store: &Arc<dyn ObjectStore>,
    parts: &Arc<dyn object_store::multipart::MultipartStore>,
    key: &Key,
    id: &str,
    blocks: bool,
) -> object_store::Result<()> {
    match parts.abort_multipart(key, &id.to_string()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    if blocks {
        if let Err(object_store::Error::NotFound { .. }) = store.head(key).await {
            match store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

impl Remote {
    /// Replace `path` with a sparse stand-in: `head` then zeros up to `size`, with `mtime`.
    fn make_stand_in(&self, path: &Path, head: &[u8], size: u64, mtime: std::time::SystemTime) -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
        f.write_all(head)?;
        f.set_len(size)?;
        f.set_modified(mtime)?;
        lock(&self.seen.fetched).remove(path);
        lock(&self.seen.unmade).remove(path);
        lock(&self.seen.written).insert(path.to_path_buf());
        Ok(())
    }

    /// Whether `path`, in this location's mirror, is a stand-in whose contents were not
    /// downloaded.
    fn is_stand_in(&self, path: &Path) -> bool {
        path.starts_with(&self.cache) && !lock(&self.seen.fetched).contains(path)
    }

    /// Remove mirror files not in `keep` (left from an earlier listing).
    fn prune_mirror(&self, dir: &Path, keep: &HashSet<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            // Hidden entries are in use by this run: downloads in progress, and the private
            // directories a check stages a dump in (a later listing must not take them away).
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                self.prune_mirror(&p, keep);
            } else if !keep.contains(&p) {
                let _ = std::fs::remove_file(&p);
                lock(&self.seen.fetched).remove(&p);
            }
        }
    }
}

/// An object read through `Remote::reader`.
/// A downloaded range, as the store's client returned it (no copy).
type Chunk = Box<dyn std::ops::Deref<Target = [u8]> + Send>;

struct ObjectReader {
    rx: tokio::sync::mpsc::Receiver<Result<Chunk, Failure>>,
    chunk: Chunk,
    at: usize,
    got: u64,
    size: u64,
}

impl std::io::Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    self.got += c.len() as u64;
                    self.chunk = c;
                    self.at = 0;
                }
                Some(Err(f)) => return Err(std::io::Error::other(f)),
                None if self.got == self.size => return Ok(0),
                None => {
                    return Err(std::io::Error::other(Failure::environment(format!(
                        "the download stopped after {} of {} bytes",
                        self.got, self.size
                    ))))
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Open `location` as a `Store` (see `storage::store::BACKENDS`).
pub fn open_store(location: &str, settings: &[(String, String)]) -> Result<Arc<dyn super::Store>, String> {
    Ok(Arc::new(open_given(location, settings)?))
}

/// An upload as a `Writer`: parts go up as they fill, the object appears on `publish`.
struct ObjectWriter {
    w: UploadWriter,
    up: Uploading,
    /// Relative to the location.
    key: String,
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.w.write(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter {
    /// Send the last part, without blocking the runtime, then end the parts: the upload is
    /// left to complete.
    async fn last_part(w: &mut UploadWriter, up: &mut Uploading) -> Result<(), String> {
        let last = std::mem::take(&mut w.buf);
        if let Some(tx) = w.tx.take() {
            if !last.is_empty() && tx.send(last).await.is_err() {
                let why = up.failure().await.unwrap_or_else(|| format!("uploading {}: the upload stopped", up.url));
                up.abort().await;
                return Err(why);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl super::store::Writer for ObjectWriter {
    async fn publish(self: Box<Self>) -> Result<u64, String> {
        let ObjectWriter { mut w, mut up, .. } = *self;
        ObjectWriter::last_part(&mut w, &mut up).await?;
        up.finish().await
    }

    async fn abort(self: Box<Self>) {
        let ObjectWriter { w, mut up, .. } = *self;
        drop(w);
        up.abort().await;
    }

    async fn publish_new(self: Box<Self>, _others: &[String]) -> Result<super::store::Published, String> {
        // The upload was started under its key: the caller checked it was free.
        let ObjectWriter { mut w, mut up, key } = *self;
        ObjectWriter::last_part(&mut w, &mut up).await?;
        let (size, etag) = up.finish_tagged().await?;
        Ok(super::store::Published { key, size, etag: Some(etag) })
    }
}

#[async_trait::async_trait]
impl super::Store for Remote {
    fn url(&self) -> String {
        self.url.clone()
    }

    async fn probe(&self) -> Result<(), String> {
        Remote::probe(self).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<super::Meta>, String> {
        // Only the folder the prefix is in is listed (`wal/` lists the WAL archive's pages,
        // not the whole location's): a LIST pass costs what it returns. At a bucket's root
        // the listing keeps sending no prefix, as it always did: some S3-compatible servers
        // (moto with signatures checked) refuse the signature of a prefix holding an encoded
        // `/`, and a location at the root would then list nothing at all.
        let base = match prefix.rsplit_once('/') {
            Some((dir, _)) if !self.prefix.is_empty() && !dir.is_empty() && !dir.split('/').any(str::is_empty) => {
                Some(self.key(dir))
            }
            _ => (!self.prefix.is_empty()).then(|| Key::from(self.prefix.as_str())),
        };
        let mut listing = self.store.list(base.as_ref());
        let mut out = Vec::new();
        while let Some(m) = listing.next().await {
            let m = m.map_err(|e| format!("cannot list {}: {}", self.url, describe(&e)))?;
            let Some(rel) = self.rel_of(&m.location) else { continue };
            if !rel.starts_with(prefix) || rel.split('/').any(|p| p.starts_with(UPLOADS_DIR)) {
                continue;
            }
            out.push(super::Meta {
                key: rel.to_string(),
                size: m.size,
                modified: m.last_modified.into(),
                version: m.e_tag.clone(),
            });
        }
        Ok(out)
    }

    async fn children(&self, dir: &str) -> Result<super::Children, String> {
        // One LIST with a delimiter: the folder's own page, not the keys below its folders.
        let dir = dir.trim_end_matches('/');
        let listed = self
            .store
            .list_with_delimiter(Some(&self.key(dir)))
            .await
            .map_err(|e| format!("cannot list {}: {}", self.url_of(dir), describe(&e)))?;
        // pgdrill's own working objects (`.pgdrill-uploads/`) are not the location's.
        let names = |paths: Vec<&Key>| -> Vec<String> {
            let mut names: Vec<String> = paths
                .into_iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .filter(|n| !n.starts_with(".pgdrill-"))
                .collect();
            names.sort();
            names
        };
        Ok(super::Children {
            folders: names(listed.common_prefixes.iter().collect()),
            objects: names(listed.objects.iter().map(|m| &m.location).collect()),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<super::Meta>, String> {
        match self.store.head(&self.key(key)).await {
            Ok(m) => Ok(Some(super::Meta {
                key: key.to_string(),
                size: m.size,
                modified: m.last_modified.into(),
                version: m.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("reading {}: {}", self.url_of(key), describe(&e))),
        }
    }

    async fn head_pinned(&self, key: &str) -> Result<Option<super::Meta>, String> {
        // Listed in this run: what the LIST answer said, with no request of its own (issue
        // 41: a pick makes no HEAD); else asked now.
        let listed = lock(&self.seen.listed).iter().find(|m| m.key == key).cloned();
        let seen = match listed {
            Some(m) => Some(m),
            None => super::Store::head(self, key).await?,
        };
        Ok(seen.map(|mut m| {
            m.version = self.pin(key, m.version.as_deref());
            m
        }))
    }

    async fn open(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        version: Option<&str>,
    ) -> Result<Box<dyn std::io::Read + Send>, String> {
        let range = match range {
            Some(r) => r,
            None => 0..self.size(key).await?,
        };
        Ok(self.ranges(key, range, version.map(str::to_string)))
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>, String> {
        Remote::read(self, key).await
    }

    async fn create(&self, key: &str) -> Result<Box<dyn super::store::Writer>, String> {
        let (w, up) = self.upload(key).await?;
        Ok(Box::new(ObjectWriter { w, up, key: key.to_string() }))
    }

    async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        Remote::create(self, key, bytes).await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        Remote::put(self, key, bytes).await
    }

    async fn delete(&self, key: &str) -> Result<(), String> {
        Remote::delete(self, key).await
    }

    fn archival_class(&self) -> Option<String> {
        Remote::archival_class(self).map(str::to_string)
    }

    fn local_mirror(&self) -> Option<Arc<dyn super::tree::Mirror>> {
        Some(Arc::new(self.clone()))
    }

    async fn abort_uploads(&self) {
        Remote::abort_uploads(self).await
    }

    async fn local_view(&self) -> Result<super::store::View, String> {
        let (root, warnings) = self.mirror().await?;
        let tree = super::tree::Tree::mirrored(Arc::new(self.clone()));
        debug_assert_eq!(tree.root(), root);
        Ok(super::store::View { root, listed: self.listed(), tree, warnings })
    }

    async fn check_published(
        &self,
        p: &super::store::Published,
        size: u64,
        sha256: &str,
    ) -> Result<Option<String>, super::store::Unproven> {
        use super::store::Unproven;
        let rel = p.key.as_str();
        if self.archival_class().is_some() {
            // Nothing in an archive class can be read back until it is restored: what the
            // store says of the object (size, ETag) is compared with what was sent instead.
            let etag = p.etag.as_deref().unwrap_or_default();
            let line = Remote::check_archived(self, rel, size, etag).await.map_err(Unproven::Differs)?;
            if p.size != size {
                return Err(Unproven::Differs(format!("{} bytes were sent, but the archive is {size} bytes", p.size)));
            }
            return Ok(Some(line));
        }
        // What the store holds is what was written: size and sha256, read back.
        let t = std::time::Instant::now();
        let (back, n) = self.digest(rel).await.map_err(Unproven::Unread)?;
        if n != size || p.size != size || back != sha256 {
            return Err(Unproven::Differs(format!(
                "{} holds {n} bytes with sha256 {back}, but {size} bytes with sha256 {sha256} were written",
                self.url_of(rel)
            )));
        }
        Ok(Some(format!(
            "read back {} from the store in {:.1} s: size and sha256 match what was written",
            crate::util::human_bytes(n),
            t.elapsed().as_secs_f64()
        )))
    }

    async fn abandoned(&self, older_than: std::time::Duration) -> Result<Vec<Abandoned>, String> {
        Remote::abandoned(self, older_than).await
    }

    async fn abort_abandoned(&self, a: &Abandoned) -> Result<(), String> {
        Remote::abort_abandoned(self, a).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), String> {
        // A server-side copy: the object appears whole or not at all.
        self.store
            .copy(&self.key(from), &self.key(to))
            .await
            .map_err(|e| format!("copying {} to {}: {}", self.url_of(from), self.url_of(to), describe(&e)))
    }
}

/// The writing end of an upload: fills parts of `PART` bytes and hands each to the uploader,
/// waiting while `INFLIGHT` parts are in flight (memory stays bounded).
pub struct UploadWriter {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    buf: Vec<u8>,
    /// Why the uploader stopped, once it has (see `upload`).
    failed: Arc<Mutex<Option<String>>>,
    url: String,
}

impl UploadWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART));
        let tx = self.tx.as_ref().ok_or_else(|| std::io::Error::other("the upload is closed"))?;
        // The uploader's own error is the cause: the closed channel only says it stopped.
        tx.blocking_send(part).map_err(|_| match lock(&self.failed).clone() {
            Some(e) => std::io::Error::other(format!("uploading {}: {e}", self.url)),
            None => std::io::Error::other(format!("uploading {}: the upload stopped", self.url)),
        })
    }
}

impl Write for UploadWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PART - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An upload in progress.
pub struct Uploading {
    up: Upload,
    /// The location's uploads in flight, this one among them until it ends.
    inflight: Arc<Mutex<Vec<Upload>>>,
    task: Option<tokio::task::JoinHandle<Result<(u64, String), String>>>,
    url: String,
    done: bool,
}

impl Uploading {
    /// Wait for the parts, then complete: the object appears under its name. Returns the
    /// bytes uploaded. On error the upload is aborted.
    pub async fn finish(self) -> Result<u64, String> {
        self.finish_tagged().await.map(|(n, _)| n)
    }

    /// `finish`, with the ETag S3 gives the completed object: `MD5(MD5 of each part)-N`.
    pub async fn finish_tagged(mut self) -> Result<(u64, String), String> {
        let task = self.task.take();
        let sent = match task {
            Some(t) => t.await.map_err(|e| e.to_string()).and_then(|r| r),
            None => Err("no upload".into()),
        };
        let sent = match sent {
            Ok(n) => n,
            Err(e) => {
                self.abort().await;
                return Err(format!("uploading {}: {e}", self.url));
            }
        };
        let mut g = self.up.lock().await;
        let Some(mut u) = g.take() else { return Err(format!("uploading {}: aborted", self.url)) };
        drop(g);
        match u.complete().await {
            Ok(_) => {
                self.done = true;
                forget(&self.inflight, &self.up);
                Ok(sent)
            }
            Err(e) => {
                let _ = u.abort().await;
                forget(&self.inflight, &self.up);
                Err(format!("completing the upload of {}: {}", self.url, describe(&e)))
            }
        }
    }

    /// Why the uploader stopped, when it stopped on an error (the writer then only knows
    /// that it is gone).
    pub async fn failure(&mut self) -> Option<String> {
        // The writer is gone, so the uploader ends soon: with its error, or after its last part.
        let task = self.task.take()?;
        match tokio::time::timeout(std::time::Duration::from_secs(10), task).await {
            Ok(Ok(Err(e))) => Some(format!("uploading {}: {e}", self.url)),
            _ => None,
        }
    }

    /// Abort: nothing stays under the name, and the store drops the parts.
    pub async fn abort(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(mut u) = self.up.lock().await.take() {
            let _ = u.abort().await;
        }
        forget(&self.inflight, &self.up);
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        // Dropped unfinished (the step was cancelled): abort in the background; if the
        // process exits first, `abort_uploads` does it.
        let (up, inflight) = (self.up.clone(), self.inflight.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(mut u) = up.lock().await.take() {
                    let _ = u.abort().await;
                }
                forget(&inflight, &up);
            });
        }
    }
}

fn forget(inflight: &Mutex<Vec<Upload>>, up: &Upload) {
    lock(inflight).retain(|u| !Arc::ptr_eq(u, up));
}

impl Remote {
    /// Abort every multipart upload of this location still in flight (a stopped run, before
    /// the process exits: see `storage::Opened::abort_uploads`).
    pub(super) async fn abort_uploads(&self) {
        let ups: Vec<Upload> = lock(&self.seen.uploads).drain(..).collect();
        for up in ups {
            if let Some(mut u) = up.lock().await.take() {
                let _ = tokio::time::timeout(ABORT_WAIT + std::time::Duration::from_secs(10), u.abort()).await;
            }
        }
    }
}

impl Remote {
    /// `path`'s key relative to the location when it is in this location's mirror.
    pub(super) fn rel_of_mirror(&self, path: &Path) -> Option<String> {
        path.strip_prefix(&self.cache).ok().map(|rel| rel.to_string_lossy().into_owned())
    }

    /// `materialize` for a path of this location's mirror, from this location's own state.
    fn materialize_path(&self, path: &Path) -> Result<bool, String> {
        let lazy = lock(&self.seen.lazy).get(path).cloned();
        let Some((rel, what)) = lazy else {
            // A listed archive whose header the reader fills itself: its stand-in, of its size.
            self.realize(path)?;
            return Ok(false);
        };
        let handle = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .ok_or_else(|| format!("reading {}: no runtime to read it from the store with", self.url_of(&rel)))?;
        tokio::task::block_in_place(|| handle.block_on(self.materialize_at(&rel, path, what)))?;
        Ok(true)
    }

    fn unmade_at(&self, path: &Path) -> Option<(u64, std::time::SystemTime)> {
        let u = lock(&self.seen.unmade).get(path).cloned()?;
        Some((u.size, u.modified))
    }

    fn unmade_below(&self, dir: &Path) -> Vec<(String, bool)> {
        let unmade = lock(&self.seen.unmade);
        let mut out: Vec<(String, bool)> = Vec::new();
        // Paths order by component, so everything below `dir` follows it in one run.
        for p in unmade.range::<Path, _>((std::ops::Bound::Excluded(dir), std::ops::Bound::Unbounded)).map(|(p, _)| p) {
            let Ok(below) = p.strip_prefix(dir) else { break };
            let mut parts = below.components();
            let Some(first) = parts.next() else { continue };
            let name = first.as_os_str().to_string_lossy().into_owned();
            let is_dir = parts.next().is_some();
            match out.last_mut() {
                Some((last, d)) if *last == name => *d |= is_dir,
                _ => out.push((name, is_dir)),
            }
        }
        out
    }
}

/// The mirror as a `storage::tree::Tree` asks it: from this location's own state, the
/// location itself in hand (no lookup by path).
#[async_trait::async_trait]
impl super::tree::Mirror for Remote {
    fn root(&self) -> &Path {
        &self.cache
    }

    async fn fill_head(&self, path: &Path, n: u64, beside: &Path) -> Result<(), String> {
        let rel = self.rel_of_mirror(path).ok_or_else(|| format!("{} is not in {}", path.display(), self.url))?;
        Remote::fill_head(self, &rel, n, beside).await
    }

    async fn fetch(&self, path: &Path) -> Result<PathBuf, String> {
        let rel = self.rel_of_mirror(path).ok_or_else(|| format!("{} is not in {}", path.display(), self.url))?;
        Remote::fetch(self, &rel).await
    }

    async fn digest(&self, path: &Path) -> Result<String, String> {
        let rel = self.rel_of_mirror(path).ok_or_else(|| format!("{} is not in {}", path.display(), self.url))?;
        Remote::digest(self, &rel).await.map(|(sha, _)| sha)
    }

    fn is_fetched(&self, path: &Path) -> bool {
        self.rel_of_mirror(path).is_some_and(|rel| Remote::is_fetched(self, &rel))
    }

    async fn stand_in(&self, path: &Path, head: u64) -> Result<PathBuf, String> {
        let rel = self.rel_of_mirror(path).ok_or_else(|| format!("{} is not in {}", path.display(), self.url))?;
        Remote::stand_in(self, &rel, head).await
    }

    async fn reader(&self, path: &Path) -> Result<Box<dyn std::io::Read + Send>, String> {
        let rel = self.rel_of_mirror(path).ok_or_else(|| format!("{} is not in {}", path.display(), self.url))?;
        Remote::reader(self, &rel).await.map(|(r, _)| r)
    }

    fn object_of(&self, path: &Path) -> Option<(Arc<dyn super::Store>, String)> {
        let rel = self.rel_of_mirror(path)?;
        Some((Arc::new(self.clone()), rel))
    }

    fn materialize(&self, path: &Path) -> Result<bool, String> {
        self.materialize_path(path)
    }

    fn is_lazy(&self, path: &Path) -> bool {
        lock(&self.seen.lazy).contains_key(path)
    }

    fn is_stand_in(&self, path: &Path) -> bool {
        Remote::is_stand_in(self, path)
    }

    fn unmade(&self, path: &Path) -> Option<(u64, std::time::SystemTime)> {
        self.unmade_at(path)
    }

    fn unmade_children(&self, dir: &Path) -> Vec<(String, bool)> {
        self.unmade_below(dir)
    }
}

/// Values of the object stores' credential variables, for the redactor.
pub fn credential_values() -> Vec<String> {
    credential_values_of(&[])
}

/// As `credential_values`, `settings` (given for a store, see `open_given`) taken over the
/// environment's.
pub fn credential_values_of(settings: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for k in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_SAS_KEY",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_CLIENT_SECRET",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
    ] {
        if let Some(v) = given_or_env(settings, k) {
            if k == "AZURE_STORAGE_CONNECTION_STRING" {
                out.extend(v.split(';').filter_map(|p| p.strip_prefix("AccountKey=")).map(str::to_string));
            }
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Regression (issue 41): a listing made a sparse file per listed object. Objects only
    /// listed are now answered for by `storage::tree` from what the LIST answer said, with no
    /// file in the mirror; reading one (`materialize`) makes its stand-in, of its size.
    #[test]
    fn listed_objects_are_seen_through_the_tree_without_a_file_until_one_is_read() {
        let r = open_given("s3://tree-test-bucket/p?endpoint=http://127.0.0.1:9&allow_http=true&region=us-east-1", &[])
            .expect("opens without a request");
        let root = r.mirror_root().to_path_buf();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        {
            let mut u = lock(&r.seen.unmade);
            for (rel, size) in
                [("app/a.dump.pgdrill", 7), ("app/b.sql.gz", 9), ("app.d/c.sql.gz", 1), ("top.sql.gz", 3)]
            {
                u.insert(root.join(rel), Unmade { size, modified: t });
            }
        }
        let tree = super::super::tree::Tree::mirrored(Arc::new(r.clone()));
        let mut top: Vec<(String, super::super::tree::Kind)> =
            tree.read_dir(&root).expect("root").into_iter().map(|n| (n.name, n.kind)).collect();
        top.sort_by(|a, b| a.0.cmp(&b.0));
        use super::super::tree::Kind;
        assert_eq!(
            top,
            vec![("app".into(), Kind::Dir), ("app.d".into(), Kind::Dir), ("top.sql.gz".into(), Kind::File)]
        );
        let app: Vec<String> = tree.read_dir(&root.join("app")).expect("app").into_iter().map(|n| n.name).collect();
        assert_eq!(app.len(), 2, "{app:?}");
        let a = root.join("app/a.dump.pgdrill");
        let st = tree.stat(&a).expect("listed");
        assert_eq!((st.size, st.modified, st.kind), (7, t, Kind::File));
        assert!(!a.exists(), "no file for an object only listed");
        assert!(tree.is_dir(&root.join("app")) && tree.is_file(&a));
        assert!(tree.stat(&root.join("app/none")).is_none());
        // An archive is read by its reader, which fills its header: its stand-in is made.
        assert_eq!(tree.materialize(&a), Ok(false));
        assert_eq!(std::fs::metadata(&a).map(|m| m.len()).ok(), Some(7));
        assert_eq!(std::fs::metadata(&a).and_then(|m| m.modified()).ok(), Some(t));
        assert!(lock(&r.seen.unmade).get(&a).is_none());
        assert_eq!(tree.read_dir(&root.join("app")).expect("app").len(), 2, "not listed twice");
    }

    /// Issue 37: a mirror path found its store again through the process-wide table of
    /// opened locations (`OPEN`, now gone). A `Tree` holds its store: it answers for its
    /// paths (shown as URLs, listed, stat'ed, lazy or not); the same path handed over bare
    /// is a local path, found through nothing.
    #[test]
    fn a_tree_answers_for_its_mirror_from_the_store_it_holds_not_from_the_table_of_opened_locations() {
        let location = "s3://tree-held-bucket/p?endpoint=http://127.0.0.1:9&allow_http=true&region=us-east-1";
        let r = open_given(location, &[]).expect("opens without a request");
        let root = r.mirror_root().to_path_buf();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let (archive, manifest) = (root.join("app/a.dump.pgdrill"), root.join("app/a.dump.pgdrill.manifest.json"));
        {
            let mut u = lock(&r.seen.unmade);
            u.insert(archive.clone(), Unmade { size: 7, modified: t });
            u.insert(manifest.clone(), Unmade { size: 2, modified: t });
        }
        lock(&r.seen.lazy).insert(manifest.clone(), ("app/a.dump.pgdrill.manifest.json".into(), Lazy::Whole));
        let tree = super::super::tree::Tree::mirrored(Arc::new(r.clone()));
        let bare = super::super::tree::Tree::from(archive.as_path());
        assert_eq!(bare.display(&archive), archive.display().to_string(), "a bare path finds no store");
        assert!(!bare.is_mirror() && bare.stat(&archive).is_none(), "a bare path finds no listing");
        assert_eq!(tree.display(&archive), "s3://tree-held-bucket/p/app/a.dump.pgdrill");
        assert_eq!(tree.display(&root), "s3://tree-held-bucket/p");
        let (store, key) = tree.object(&archive).expect("an object");
        assert_eq!((store.url(), key.as_str()), ("s3://tree-held-bucket/p".to_string(), "app/a.dump.pgdrill"));
        assert!(tree.is_mirror() && tree.is_dir(&root.join("app")) && tree.is_file(&archive));
        assert_eq!(tree.size(&archive), 7);
        assert_eq!(tree.stat(&manifest).map(|s| s.modified), Some(t));
        assert_eq!(tree.read_dir(&root.join("app")).expect("app").len(), 2);
        assert!(tree.is_lazy(&manifest) && !tree.is_lazy(&archive) && tree.is_stand_in(&archive));
        // An archive is read by its reader, which fills its header: its stand-in is made.
        assert_eq!(tree.materialize(&archive), Ok(false));
        assert_eq!(std::fs::metadata(&archive).map(|m| m.len()).ok(), Some(7));
        // A local tree is the filesystem's, whatever the table holds.
        let local = super::super::tree::Tree::local(root.clone());
        assert_eq!(local.display(&archive), archive.display().to_string());
        assert!(!local.is_mirror() && local.stat(&manifest).is_none());
    }

    #[test]
    fn a_file_url_is_its_local_path() {
        assert_eq!(local_path("file:///srv/b"), "/srv/b");
    }

    /// The error of a request that never got an answer, as object_store builds it, inside a
    /// message that names the endpoint (whose port holds "403").
    #[derive(Debug)]
    struct Performing(object_store::client::HttpError);
    impl std::fmt::Display for Performing {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Error performing GET http://127.0.0.1:37403/bkt/p/forbidden.dump after 10 retries - {}", self.0)
        }
    }
    impl std::error::Error for Performing {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_connection_error_is_unreachable_whatever_the_url_holds() {
        use object_store::client::{HttpError, HttpErrorKind};
        // A real refused connection: a port bound, then closed.
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("its address").port();
        let refused = std::net::TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens");
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Performing(HttpError::new(HttpErrorKind::Connect, refused))),
        };
        let d = describe(&e);
        assert!(d.starts_with("the store cannot be reached"), "{d}");
        // Without the type, the text alone: the URL's "403" and "forbidden" are not the store's words.
        let e = object_store::Error::Generic {
            store: "S3",
            source:
                "Error performing GET http://127.0.0.1:37403/bkt/forbidden.dump - HTTP error: error sending request"
                    .into(),
        };
        assert!(describe(&e).starts_with("the store cannot be reached"), "{}", describe(&e));
        // A status the store answered is still a refused credential.
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://127.0.0.1:9000/b/k - Server returned non-2xx status code: 403 Forbidden: <Code>InvalidAccessKeyId</Code>".into(),
        };
        assert!(describe(&e).starts_with("the store refused the credentials"), "{}", describe(&e));
    }

    fn refused(location: &str) -> String {
        match open_given(location, &[]) {
            Ok(_) => panic!("{location} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_credential_in_a_location_is_refused_without_echoing_it() {
        let e = refused("s3://bucket/p?secret_access_key=hunter2hunter2");
        assert!(e.contains("credentials never go in a location"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = refused("s3://bucket/p?colour=blue");
        assert!(e.contains("unknown storage option `colour`"), "{e}");
        let e = refused("s3:///p");
        assert!(e.contains("names no bucket"), "{e}");
        let e = refused("s3://b/a/../c");
        assert!(e.contains("`..`"), "{e}");
    }

    /// No parser in storage/ panics on any hostile input, whatever its byte offsets;
    /// decoding works on bytes.
    #[test]
    fn hostile_locations_paths_and_keys_never_panic_any_storage_parser() {
        for t in &super::super::tests::hostile_inputs() {
            let _ = local_path(t);
            let _ = percent_decode(t);
            if let Ok(l) = parse_location(t) {
                assert!(!l.bucket.is_empty(), "{t:?}");
            }
        }
        // Paths that are not UTF-8 at all (a report or storage directory given as bytes).
        use std::os::unix::ffi::OsStrExt;
        for bytes in [&b"/tmp/\xff\xfe"[..], b"\xc3", b"s3://b/\xe2\x82", b"/tmp/\xc3\xa7\xc3"] {
            let p = Path::new(std::ffi::OsStr::from_bytes(bytes));
            let lossy = p.to_string_lossy();
            let _ = parse_location(&lossy);
        }
        assert_eq!(percent_decode("%C3%A7%zz%c3"), "ç%zz\u{fffd}");
    }
}
