//! barman-cloud's object layout (S3, Azure, GCS; what CloudNativePG writes) as a source of
//! physical backups: listed with `barman-cloud-backup-list --format json`, restored with
//! `barman-cloud-restore` into the throwaway's data directory, its WAL fetched by
//! `barman-cloud-wal-restore` as the throwaway's restore_command. The layout is
//! `<url>/<server>/base/<backup id>/backup.info` + `data.tar*` and `<url>/<server>/wals/`.
//!
//! Credentials reach the tools from the environment only (`AWS_*`, `AZURE_*`,
//! `GOOGLE_APPLICATION_CREDENTIALS`: `tools::tool_env`), never argv, never a log line; a
//! location that holds one is refused.
//!
//! A Barman server (`barman://SERVER?config=PATH`) is the other source here: listed with
//! `barman -f json list-backups` and `show-backup`, restored with `barman recover` (local,
//! no target: the base backup and the WAL after it, which the throwaway then fetches from a
//! folder of its own and replays to the target). A catalogue this machine's barman cannot
//! list completely (a newer Barman wrote it) is served by the newer barman of a Docker image,
//! and a backup of a major without server binaries here recovers in an image of that major.
//!
//! This module must not read barman-cloud's objects nor Barman's catalogue itself: Barman's
//! tools are the readers of their format (compression, encryption, tablespaces). The
//! exceptions: evidence, a barman-cloud backup's `backup.info` object hashed as the store
//! holds it (never parsed), so a signed statement names the backup by its sha256; the names
//! of the WAL objects under `<server>/wals/` (never their bytes), barman-cloud's archive end
//! that "latest" must reach (`wal_end`); and the names of a Barman catalogue's
//! `meta/<id>-backup.info` files, to know whether this machine's barman listed every backup
//! (`Server::unlisted`).

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::Value;

use super::barman_image::{Identity, Session};
use super::source::{
    ArchiveEnd, BaseBackup, InImage, Lsn, MaterializeInto, Materialized, PhysicalSource, ShortOfEnd, Tool,
};
use super::tools::{self, Binary};
use crate::error::Failure;

/// How a barman-cloud source is written: `barman-cloud:s3://BUCKET/PATH?server=NAME`
/// (`&endpoint=URL`, `&provider=aws-s3|azure-blob-storage|google-cloud-storage`,
/// `&bin=DIR`); `gs://BUCKET/PATH` is Google's, with no `provider` needed.
pub const CLOUD_SCHEME: &str = "barman-cloud:";

/// Google's console URL of a bucket, which barman-cloud also takes for `gs://`.
const GCS_CONSOLE: &str = "https://console.cloud.google.com/storage/browser/";

/// The Debian package holding the barman-cloud tools (named when they are missing).
pub const CLOUD_PACKAGE: &str = "barman-cli-cloud";

/// A server's backups in a barman-cloud destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// The destination as barman-cloud takes it: `s3://bucket/path`, `azure://...`, `gs://...`.
    pub url: String,
    /// The server name the backups were taken under (barman-cloud-backup's `SERVER_NAME`).
    pub server: String,
    /// `--endpoint-url`, for an S3-compatible store other than AWS.
    pub endpoint: Option<String>,
    /// `--cloud-provider` (barman-cloud's default is aws-s3).
    pub provider: Option<String>,
    /// The directory holding the barman-cloud-* binaries (default: PATH).
    pub bin_dir: Option<PathBuf>,
}

/// One backup as `barman-cloud-backup-list` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The backup id (`20261206T065035`) is the id.
    pub base: BaseBackup,
    /// `DONE`, `FAILED`, `STARTED`, ... as barman-cloud wrote it.
    pub status: String,
    /// The error barman-cloud recorded for a backup that did not finish.
    pub error: Option<String>,
    /// Each tablespace's name and OID (barman-cloud-restore maps them by name).
    pub tablespaces: Vec<(String, u32)>,
}

impl Cloud {
    /// Parse `barman-cloud:s3://BUCKET/PATH?server=NAME&endpoint=URL&provider=P&bin=DIR`.
    pub fn parse(location: &str) -> Result<Cloud, Failure> {
        let shown = crate::util::visible(location);
        let rest = location.strip_prefix(CLOUD_SCHEME).ok_or_else(|| {
            Failure::invalid(format!(
                "`{shown}` is not a barman-cloud source (barman-cloud:s3://BUCKET/PATH?server=NAME)"
            ))
        })?;
        let (url, query) = rest.split_once('?').unwrap_or((rest, ""));
        // `http://HOST:PORT/ACCOUNT/CONTAINER/PATH`: Azure's emulator (Azurite), as barman-cloud
        // reads it with `--cloud-provider azure-blob-storage` and a connection string.
        let scheme_ok = ["s3://", "azure://", "gs://", "https://", "http://"].iter().any(|s| url.starts_with(s));
        let host = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
        if !scheme_ok || host.is_empty() {
            return Err(Failure::invalid(format!(
                "the barman-cloud source `{shown}` names no destination: write barman-cloud:s3://BUCKET/PATH?server=NAME"
            )));
        }
        if host.split('/').next().is_some_and(|h| h.contains('@')) {
            return Err(Failure::invalid(format!(
                "the barman-cloud source `{shown}` holds credentials: give them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_*, GOOGLE_APPLICATION_CREDENTIALS)"
            )));
        }
        let mut c =
            Cloud { url: url.to_string(), server: String::new(), endpoint: None, provider: None, bin_dir: None };
        for (k, v) in tools::options(query, &["server", "endpoint", "provider", "bin"], location)? {
            match k.as_str() {
                "server" => c.server = v,
                "endpoint" => c.endpoint = Some(v),
                "provider" => c.provider = Some(v),
                _ => c.bin_dir = Some(PathBuf::from(v)),
            }
        }
        if c.server.is_empty() || c.server.contains('/') || c.server.chars().any(char::is_control) {
            return Err(Failure::invalid(format!(
                "the barman-cloud source `{shown}` names no server: add ?server=NAME (the SERVER_NAME barman-cloud-backup was given)"
            )));
        }
        Ok(c)
    }

    fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    fn find(&self, name: &str, stop: &tools::Interrupt) -> Result<Binary, Failure> {
        let explicit = self.bin_dir.as_ref().map(|_| self.program(name));
        tools::find(name, explicit.as_deref(), &["-V"], CLOUD_PACKAGE, stop)
    }

    /// The binary that restores (`barman-cloud-restore`) and its version; the listing and
    /// WAL tools come from the same package and directory. The probes run through `stop`.
    pub fn binary(&self, stop: &tools::Interrupt) -> Result<Binary, Failure> {
        self.find("barman-cloud-wal-restore", stop)?;
        self.find("barman-cloud-backup-list", stop)?;
        self.find("barman-cloud-restore", stop)
    }

    /// `--cloud-provider`: as given, else google-cloud-storage for a Google destination
    /// (`gs://`, or Google's console URL): barman-cloud's default, aws-s3, cannot read one.
    fn provider(&self) -> Option<&str> {
        let google = self.url.starts_with("gs://") || self.url.starts_with(GCS_CONSOLE);
        self.provider.as_deref().or(google.then_some("google-cloud-storage"))
    }

    /// The options every barman-cloud command gets before its positional arguments.
    fn common(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(p) = self.provider() {
            a.push(format!("--cloud-provider={p}"));
        }
        if let Some(e) = &self.endpoint {
            a.push(format!("--endpoint-url={e}"));
        }
        a
    }

    /// The destination for messages: its URL, and the endpoint (scheme, host and port only)
    /// where one is given. Never a credential: the URL holds none (`parse`), and a user or
    /// password in the endpoint is left out.
    fn shown_store(&self) -> String {
        let url = crate::util::visible(&self.url);
        match self.endpoint.as_deref().and_then(endpoint_parts) {
            Some(at) => format!("{url} (endpoint {})", at.shown()),
            None => url.into_owned(),
        }
    }

    /// The endpoint barman-cloud's requests go to where something names it, and what named
    /// it: `endpoint=`; for S3, `AWS_ENDPOINT_URL_S3` or else `AWS_ENDPOINT_URL` in the tools'
    /// environment `env` (botocore's order; none when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`
    /// is true); a Google emulator (`STORAGE_EMULATOR_HOST`); or an Azure destination written
    /// as `http(s)://HOST/ACCOUNT/...`. `None` for a cloud's own endpoint.
    fn probe_target(&self, env: &[(OsString, OsString)]) -> Option<(String, &'static str)> {
        if let Some(e) = &self.endpoint {
            return Some((e.clone(), "the source's `endpoint=`"));
        }
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.to_str())
                .filter(|v| !v.trim().is_empty())
                .map(str::to_string)
        };
        match self.provider() {
            Some("google-cloud-storage") => {
                return var("STORAGE_EMULATOR_HOST").map(|v| (v, "the environment's STORAGE_EMULATOR_HOST"))
            }
            None | Some("aws-s3") if self.url.starts_with("s3://") => {
                if var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
                    return None;
                }
                return var("AWS_ENDPOINT_URL_S3")
                    .map(|v| (v, "the environment's AWS_ENDPOINT_URL_S3"))
                    .or_else(|| var("AWS_ENDPOINT_URL").map(|v| (v, "the environment's AWS_ENDPOINT_URL")));
            }
            _ => {}
        }
        (self.url.starts_with("http://") || self.url.starts_with("https://"))
            .then(|| (self.url.clone(), "the source's destination URL"))
    }

    /// Whether the store answers, asked once before any barman-cloud call: at the endpoint
    /// its requests go to (`probe_target`), a connection and an HTTP request (`answers`), each
    /// address given `PROBE_TIMEOUT` to accept and as long to answer. A store that does not
    /// answer cost every barman-cloud call its client's retries (Google's: two minutes; one
    /// that accepts and never answers, boto's read timeouts too) before the same exit 3; now
    /// it is the environment's failure at once, naming the endpoint and what named it. Any
    /// answer passes, a refusal (403, 404) too: barman-cloud then says what it is. The tools
    /// reach the store directly (their environment holds no proxy), as the probe does. A
    /// destination on its cloud's own endpoint is not probed.
    pub fn probe(&self, env: &[(OsString, OsString)]) -> Result<(), Failure> {
        use std::net::ToSocketAddrs as _;
        let Some((url, named_by)) = self.probe_target(env) else { return Ok(()) };
        let Some(at) = endpoint_parts(&url) else { return Ok(()) };
        let dead = |why: String| {
            Failure::environment(format!(
                "the store of the barman-cloud server `{}` at {} does not answer at {} ({why}): no barman-cloud call was made; start the store, or correct the endpoint {named_by} names",
                crate::util::visible(&self.server),
                crate::util::visible(&self.url),
                at.shown()
            ))
        };
        let addrs: Vec<std::net::SocketAddr> = (at.host.as_str(), at.port)
            .to_socket_addrs()
            .map_err(|e| dead(format!("its name does not resolve: {e}")))?
            .collect();
        let mut last = "its name resolves to no address".to_string();
        for a in addrs {
            match answers(&a, &at) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(dead(last))
    }

    /// The destination as a pgdrill store location, for reading a backup's `backup.info` back
    /// to hash it: an S3 destination (its URL is the same, the endpoint an option), or an
    /// Azure one as barman-cloud writes it (`azure://ACCOUNT.blob.core.windows.net/CONTAINER
    /// /PATH`, or with `provider=azure-blob-storage` an `http(s)://HOST/ACCOUNT/CONTAINER/PATH`
    /// endpoint such as Azurite's) as `az://CONTAINER/PATH` with its account and endpoint, or a
    /// Google one as `gs://BUCKET/PATH` (`gcs_location`).
    fn store_location(&self) -> Option<String> {
        if let Some(az) = self.azure_location() {
            return Some(az);
        }
        if let Some(gs) = self.gcs_location() {
            return Some(gs);
        }
        if !self.url.starts_with("s3://") || self.provider.as_deref().is_some_and(|p| p != "aws-s3") {
            return None;
        }
        let mut loc = self.url.trim_end_matches('/').to_string();
        if let Some(e) = &self.endpoint {
            loc.push_str(&format!("?endpoint={}&path_style=true", crate::util::percent_encode(e)));
            if e.starts_with("http://") {
                loc.push_str("&allow_http=true");
            }
        }
        Some(loc)
    }

    /// A Google destination (`gs://BUCKET/PATH` or `GCS_CONSOLE` + `BUCKET/PATH`, as
    /// barman-cloud's Google provider takes them) as `gs://BUCKET/PATH`, with no options: the
    /// store finds an emulator where barman-cloud's Google client does (STORAGE_EMULATOR_HOST)
    /// and a key file in GOOGLE_APPLICATION_CREDENTIALS, so both read the same bucket.
    fn gcs_location(&self) -> Option<String> {
        if self.provider() != Some("google-cloud-storage") {
            return None;
        }
        let url = self.url.trim_end_matches('/');
        let rest = url.strip_prefix("gs://").or_else(|| url.strip_prefix(GCS_CONSOLE))?;
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = path.trim_matches('/');
        match (bucket, path) {
            ("", _) => None,
            (b, "") => Some(format!("gs://{b}")),
            (b, p) => Some(format!("gs://{b}/{p}")),
        }
    }

    /// An Azure destination as `az://CONTAINER/PATH?account=ACCOUNT[&endpoint=..]`.
    fn azure_location(&self) -> Option<String> {
        let enc = crate::util::percent_encode;
        let (scheme, rest) = self.url.trim_end_matches('/').split_once("://")?;
        let azure = self.provider.as_deref() == Some("azure-blob-storage");
        let (account, container_path, endpoint) = match scheme {
            // The account is the host's first label: ACCOUNT.blob.core.windows.net.
            "azure" | "https" if !rest.starts_with('/') && (scheme == "azure" || azure) => {
                let (host, path) = rest.split_once('/')?;
                match host.strip_suffix(".blob.core.windows.net") {
                    Some(account) if !account.contains('.') => (account.to_string(), path.to_string(), None),
                    // Another host (an emulator, a private endpoint): the account is the path's
                    // first part, as Azurite takes it.
                    _ if azure => {
                        let (account, path) = path.split_once('/')?;
                        (account.to_string(), path.to_string(), Some(format!("{scheme}://{host}/{account}")))
                    }
                    _ => return None,
                }
            }
            "http" if azure => {
                let (host, path) = rest.split_once('/')?;
                let (account, path) = path.split_once('/')?;
                (account.to_string(), path.to_string(), Some(format!("http://{host}/{account}")))
            }
            _ => return None,
        };
        if account.is_empty() || container_path.is_empty() || container_path.starts_with('/') {
            return None;
        }
        let mut loc = format!("az://{container_path}?account={}", enc(&account));
        if let Some(e) = endpoint {
            loc.push_str(&format!("&endpoint={}", enc(&e)));
            if e.starts_with("http://") {
                loc.push_str("&allow_http=true");
            }
        }
        Some(loc)
    }

    /// The sha256 of the backup's `backup.info` object, and its name: barman-cloud's record of
    /// the backup (id, status, WAL range, LSNs, sizes), read back from the store and hashed
    /// byte for byte. `None` for a destination pgdrill's stores cannot read (`store_location`).
    /// The store is opened among the command's `stores` (as a physical source's ledger is),
    /// never on its own: the run owns what it opened, and one it already opened is reused.
    pub fn info_sha256(&self, id: &str, stores: &crate::storage::Opened) -> Result<Option<(String, String)>, Failure> {
        use sha2::Digest as _;
        let Some(location) = self.store_location() else { return Ok(None) };
        let key = format!("{}/base/{id}/backup.info", self.server);
        let name = format!("barman-cloud:{}/{key}", self.url.trim_end_matches('/'));
        let store = stores.open_in(&location, std::path::Path::new("")).map_err(|e| {
            Failure::environment(format!("reading {} to name the backup: {e}", crate::util::visible(&name)))
        })?;
        let bytes = store_call(store.read(&key))
            .map_err(|e| Failure::environment(format!("reading {}: {e}", crate::util::visible(&name))))?;
        let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Some((name, sha)))
    }

    /// The objects under the server's `wals/` in the store, as one listing (LIST pages, no
    /// request per object) through pgdrill's store of the destination, opened among the
    /// command's `stores` as `info_sha256` opens it. `None` for a destination pgdrill's
    /// stores cannot read (`store_location`). A listing that fails is the environment's.
    pub fn wal_objects(&self, stores: &crate::storage::Opened) -> Result<Option<Vec<crate::storage::Meta>>, Failure> {
        let Some(location) = self.store_location() else { return Ok(None) };
        let prefix = format!("{}/wals/", self.server);
        let shown = format!("barman-cloud:{}/{prefix}", self.url.trim_end_matches('/'));
        let failed =
            |e: String| Failure::environment(format!("listing the WAL archive {}: {e}", crate::util::visible(&shown)));
        let store = stores.open_in(&location, std::path::Path::new("")).map_err(failed)?;
        store_call(store.list(&prefix)).map(Some).map_err(failed)
    }

    fn sibling(tool: &Binary, name: &str) -> PathBuf {
        tool.path.parent().map(|d| d.join(name)).unwrap_or_else(|| PathBuf::from(name))
    }

    /// The server's backups, oldest first. A destination barman-cloud cannot read (no
    /// bucket, no credentials, no such server) is the environment's failure with its words.
    pub fn list(&self, tool: &Binary) -> Result<Vec<Backup>, Failure> {
        self.list_by(tool, None, &Default::default()).map(|(v, _)| v)
    }

    /// `list` by `tool` here, or in `image` (on the host's network), and whether
    /// barman-cloud said it could not read some backup's backup.info: one a newer
    /// barman-cloud wrote (3.4 cannot read 3.13's), which it then leaves out of the list.
    fn list_by(
        &self,
        tool: &Binary,
        image: Option<&str>,
        stop: &tools::Interrupt,
    ) -> Result<(Vec<Backup>, bool), Failure> {
        let program = Self::sibling(tool, "barman-cloud-backup-list");
        let (mut cmd, _env) = match image {
            Some(i) => {
                let (c, e) = tools::image_command(&program.display().to_string(), i, &env_files(), &[], true)?;
                (c, Some(e))
            }
            None => (tools::tool_command(&program), None),
        };
        cmd.args(self.common()).args(["--format", "json"]).arg(&self.url).arg(&self.server);
        let out = stop.run(&mut cmd, "barman-cloud-backup-list")?;
        if !out.status.success() {
            return Err(Failure::environment(format!(
                "barman-cloud-backup-list cannot read the server `{}` at {}: {}",
                self.server,
                crate::util::visible(&self.url),
                tools::last_lines(&tools::both(&out), 3)
            )));
        }
        let mut v = parse_list(&String::from_utf8_lossy(&out.stdout))?;
        v.sort_by(|a, b| (a.base.started, &a.base.id).cmp(&(b.base.started, &b.base.id)));
        let unreadable = String::from_utf8_lossy(&out.stderr).contains("Unable to open backup.info");
        Ok((v, unreadable))
    }

    /// Restore the backup `id` into the empty directory `data` with `barman-cloud-restore`
    /// (files only: the caller writes the recovery settings). A backup barman-cloud cannot
    /// restore is a failed verification. `stop` ends it when the run is interrupted or the
    /// step times out.
    pub fn restore(
        &self,
        tool: &Binary,
        backup: &Backup,
        into: &MaterializeInto,
        stop: &tools::Interrupt,
    ) -> Result<(), Failure> {
        let mut cmd = tools::tool_command(&tool.path);
        cmd.args(self.restore_args(backup, into));
        let out = stop.run(&mut cmd, "barman-cloud-restore")?;
        self.restored(backup, &out)
    }

    /// `restore` by the barman-cloud of an image, as the throwaway's user, on the host's
    /// network (the destination is a store), the throwaway's directories mounted read-write.
    fn restore_in_image(
        &self,
        at: &InImage,
        tool: &Binary,
        backup: &Backup,
        into: &MaterializeInto,
        stop: &tools::Interrupt,
    ) -> Result<(), Failure> {
        let rw = [into.data_dir.clone(), into.tablespaces_dir.clone()];
        let (mut cmd, _env) =
            tools::image_command(&tool.path.display().to_string(), &at.image, &env_files(), &rw, at.network)?;
        cmd.args(self.restore_args(backup, into));
        let out = stop.run(&mut cmd, &format!("barman-cloud-restore in {}", at.image))?;
        self.restored(backup, &out)
    }

    /// `barman-cloud-restore`'s arguments after the binary.
    fn restore_args(&self, backup: &Backup, into: &MaterializeInto) -> Vec<String> {
        let mut a = self.common();
        // Every tablespace under the throwaway's directory, never where the team's server had it.
        for (name, oid) in &backup.tablespaces {
            a.push(format!("--tablespace={name}:{}", into.tablespaces_dir.join(oid.to_string()).display()));
        }
        a.extend([self.url.clone(), self.server.clone(), backup.base.id.clone()]);
        a.push(into.data_dir.display().to_string());
        a
    }

    /// Whether barman-cloud-restore ended well; a failure is the backup's.
    fn restored(&self, backup: &Backup, out: &std::process::Output) -> Result<(), Failure> {
        let id = &backup.base.id;
        if !out.status.success() {
            return Err(Failure::failed(format!(
                "barman-cloud-restore of the backup `{id}` of the server `{}` failed (exit {}): {}",
                self.server,
                out.status.code().unwrap_or(-1),
                tools::last_lines(&tools::both(out), 4)
            )));
        }
        Ok(())
    }

    /// The words of the command a throwaway server fetches WAL with:
    /// `barman-cloud-wal-restore` with the same destination and server; the segment's name
    /// and path follow them.
    pub fn wal_restore(&self, tool: &Binary) -> Vec<String> {
        let mut words = vec![Self::sibling(tool, "barman-cloud-wal-restore").display().to_string()];
        words.extend(self.common());
        words.push(self.url.clone());
        words.push(self.server.clone());
        words
    }
}

/// How long the probe of a store (`Cloud::probe`) waits for each address to accept a
/// connection, and then for an answer to its request: a store that answers does so at once.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the endpoint `at` answers at the address `a`: a TCP connection, then `HEAD /`
/// (over TLS for https, its certificate not checked: only whether something answers, and
/// nothing secret is sent) and at least one byte back, each within `PROBE_TIMEOUT`. `Err`
/// says why not: refused, or accepted and silent. A TLS client that cannot even be set up
/// here is no answer about the store: it passes, and barman-cloud says what it finds.
fn answers(a: &std::net::SocketAddr, at: &Endpoint) -> Result<(), String> {
    let silent = format!("it accepted the connection but did not answer within {} s", PROBE_TIMEOUT.as_secs());
    let mut tcp = std::net::TcpStream::connect_timeout(a, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    for set in [tcp.set_read_timeout(Some(PROBE_TIMEOUT)), tcp.set_write_timeout(Some(PROBE_TIMEOUT))] {
        set.map_err(|e| e.to_string())?;
    }
    let host = if at.host.contains(':') { format!("[{}]", at.host) } else { at.host.clone() };
    let request =
        format!("HEAD / HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: pgdrill\r\nConnection: close\r\n\r\n", at.port);
    if at.scheme != "https" {
        return first_byte(&mut tcp, &request, &silent);
    }
    let connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).map(|mut b| {
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
        b.build()
    });
    let Ok(config) = connector.and_then(|c| c.configure()) else { return Ok(()) };
    match config.verify_hostname(false).connect(&at.host, tcp) {
        Ok(mut tls) => first_byte(&mut tls, &request, &silent),
        Err(openssl::ssl::HandshakeError::WouldBlock(_)) => Err(silent),
        Err(openssl::ssl::HandshakeError::Failure(m)) => match m.error().io_error() {
            Some(e) if timed_out(e) => Err(silent),
            // Something spoke, if not the TLS the endpoint's scheme says: barman-cloud names it.
            _ => Ok(()),
        },
        Err(openssl::ssl::HandshakeError::SetupFailure(_)) => Ok(()),
    }
}

/// `request` written to `s` and at least one byte read back (`answers`); `silent` is why
/// not when the time runs out.
fn first_byte(s: &mut (impl std::io::Read + std::io::Write), request: &str, silent: &str) -> Result<(), String> {
    let why = |e: std::io::Error| if timed_out(&e) { silent.to_string() } else { e.to_string() };
    s.write_all(request.as_bytes()).map_err(why)?;
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => Err("it closed the connection without an answer".to_string()),
        Ok(_) => Ok(()),
        Err(e) => Err(why(e)),
    }
}

/// A socket's timeout as the standard library reports it (`WouldBlock` on Linux).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// An endpoint's scheme, host and port, for the probe and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    scheme: String,
    host: String,
    port: u16,
}

impl Endpoint {
    /// `http://HOST:PORT`, safe to show.
    fn shown(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        crate::util::visible(&format!("{}://{host}:{}", self.scheme, self.port)).into_owned()
    }
}

/// An endpoint URL (`http://HOST:PORT/...`; without a scheme, http as Google's emulator
/// variable is read; without a port, the scheme's) as scheme, host and port, the user and
/// password a URL may hold left out. `None` for another scheme or no host.
fn endpoint_parts(url: &str) -> Option<Endpoint> {
    let (scheme, rest) = url.trim().split_once("://").unwrap_or(("http", url.trim()));
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    (!host.is_empty()).then(|| Endpoint { scheme, host: host.to_string(), port })
}

/// What Python's decompressors say of bytes that do not decompress (gzip, zlib, bzip2,
/// python-snappy): the words that make a failed fetch the archive's damage.
const DAMAGE_WORDS: &[&str] = &[
    "decompressing",
    "Not a gzipped file",
    "CRC check failed",
    "Compressed file ended before the end-of-stream marker",
    "Invalid data stream",
    "Incorrect length of data produced",
];

/// What barman-cloud-wal-restore says when its exit 1 is not a segment the store lacks (that
/// one it logs at INFO, below its default level: it says nothing). barman/clients/
/// cloud_walrestore.py, 3.4 to 3.13: its bucket or container is gone ("Bucket NAME does not
/// exist", for S3, Azure and Google alike, after the connectivity check passed); and Python
/// itself exits 1 on an exception nothing caught (a module that does not load). Either read
/// as "no such segment" ended recovery early and promoted a server missing the rest.
const NOT_ABSENT: &[&str] = &["ERROR: Bucket ", "Traceback (most recent call last):"];

/// The class and the reason of a `barman-cloud-wal-restore` that failed fetching
/// `f.segment` inside the restore_command, `store` naming the destination. Its exit codes
/// (barman/clients/cloud_cli.py, 3.4 to 3.13): 1 no such WAL object (the server reads it as
/// the archive's end; recorded only where its words say otherwise, `NOT_ABSENT`: the bucket
/// gone, Python crashed), 2 the store did not answer its connectivity check
/// (boto's connection error; Google's and Azure's refusals too), 3 its arguments refused,
/// 4 any other error, logged as "Barman cloud WAL restore exception: ...": the archive's
/// damage only when those are a decompressor's words about the object's bytes, else the
/// environment's (credentials S3 refused, a request that failed, a local write).
fn cloud_fetch_verdict(f: &tools::FetchFailed, store: &str) -> (crate::error::Class, String) {
    use crate::error::Class;
    let segment = crate::util::visible(&f.segment);
    if f.code == 4 && DAMAGE_WORDS.iter().any(|w| f.said.contains(w)) {
        return (
            Class::Failed,
            format!("the store's copy of the WAL segment {segment} does not decompress: the archive is damaged"),
        );
    }
    let why = match f.code {
        1 if f.said.contains("Traceback (most recent call last):") => {
            "barman-cloud-wal-restore crashed (a Python exception, exit 1), which is not a segment the store lacks"
                .to_string()
        }
        1 => format!(
            "the store {store} answered that its bucket (or container) does not exist: removed, or not the one the source names; not the end of the WAL"
        ),
        2 => format!("the store {store} did not answer barman-cloud-wal-restore, or refused it"),
        3 => "barman-cloud-wal-restore refused its arguments".to_string(),
        4 => format!(
            "barman-cloud-wal-restore could not read the store {store} (refused credentials, a failed request or a local error: not damage to the segment)"
        ),
        _ => "barman-cloud-wal-restore failed in a way pgdrill does not read as damage".to_string(),
    };
    (Class::Environment, format!("{why}; no verdict on the backup"))
}

/// barman-cloud's log lines without their time and process (`2026-12-07 09:50:00,123
/// [4242] ERROR: ...` -> `ERROR: ...`).
fn tool_words(said: &str) -> String {
    said.lines()
        .map(|l| match l.split_once("] ") {
            Some((head, rest)) if head.contains(" [") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A call of pgdrill's own store run to its end from blocking code: in a blocking section of
/// pgdrill's runtime (`block_in_place`) on that runtime, else on a runtime of its own.
fn store_call<T>(call: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(call),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a runtime: {e}"))?
            .block_on(call),
    }
}

/// barman-cloud's compressions of a WAL object, by the suffix barman-cloud-wal-archive gives
/// its name and barman-cloud-wal-restore strips (barman/cloud.py's `ALLOWED_COMPRESSIONS`:
/// .gz, .bz2 and .snappy in 3.4; .xz, .zst and .lz4 added by later versions).
const WAL_SUFFIXES: &[&str] = &[".gz", ".bz2", ".xz", ".snappy", ".zst", ".lz4"];

/// The WAL segment an object under `<server>/wals/<16 hex>/` holds, by its name with one
/// compression suffix stripped: its name, timeline and start. `None` for a history file, a
/// backup label (`.backup`), a partial segment (`.partial`) and anything else.
fn wal_segment(key: &str) -> Option<(String, u32, Lsn)> {
    let name = key.rsplit('/').next()?;
    let name = WAL_SUFFIXES.iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
    let (timeline, start) = super::source::parse_segment_name(name, super::source::DEFAULT_SEGMENT_SIZE)?;
    Some((name.to_string(), timeline, start))
}

/// The archive's end in a listing of `<server>/wals/`: the newest segment of the newest
/// timeline at or after `timeline` (recovery follows the newest timeline, so what an old
/// primary archived on its own timeline after a failover is not the end), dated by its
/// object's last change.
fn wal_end(listed: &[crate::storage::Meta], timeline: u32) -> Option<ArchiveEnd> {
    listed
        .iter()
        .filter_map(|m| wal_segment(&m.key).map(|(name, t, start)| (t, start, name, m.modified)))
        .filter(|(t, ..)| *t >= timeline)
        .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
        .map(|(_, start, segment, modified)| ArchiveEnd {
            segment,
            segment_start: start,
            archived: Some(time::OffsetDateTime::from(modified)),
        })
}

/// Files the cloud SDKs' variables name (`AWS_CA_BUNDLE`, `GOOGLE_APPLICATION_CREDENTIALS`,
/// ...) that exist here: a container of the tools mounts them read-only at their own paths,
/// so the same variables work inside it.
fn env_files() -> Vec<PathBuf> {
    tools::tool_env().into_iter().map(|(_, v)| PathBuf::from(v)).filter(|p| p.is_absolute() && p.is_file()).collect()
}

/// An image serving a backup, with its barman-cloud-restore.
type Imaged = (InImage, Binary);

/// A barman-cloud destination's server as a [`PhysicalSource`].
#[derive(Debug)]
pub struct BarmanCloud {
    cloud: Cloud,
    bin: Binary,
    list: std::sync::Mutex<Vec<Backup>>,
    scripts: tools::Scripts,
    /// Where the last backup asked about is served: its id, and the image (with its
    /// barman-cloud-restore) when not here.
    placed: std::sync::Mutex<Option<(String, Option<Imaged>)>>,
    /// The image whose barman-cloud lists the destination, when this machine's cannot read
    /// a backup's backup.info, and its barman-cloud-backup-list.
    lister: std::sync::Mutex<Option<(String, Binary)>>,
    /// The stores the command opened, where `digest` reads a backup's backup.info.
    stores: crate::storage::Opened,
    /// Whether `list` asked barman-cloud already (its answer is kept in `list`).
    asked: std::sync::atomic::AtomicBool,
    /// The data directory of the last materialize: its workspace keeps the restore_command's
    /// failure (`tools::FETCH_FAILED`) for `judge_fetch`.
    data_dir: std::sync::Mutex<Option<PathBuf>>,
    /// Ends the running barman-cloud call (and its container) when the run is interrupted
    /// or the step times out: a restore ran to its end before pgdrill stopped.
    interrupt: tools::Interrupt,
    /// The WAL segments the last `archive_end` listed in the store, by name: what a failed
    /// recovery, whatever its target, finds gone, or not, when `judge_fetch` lists again.
    /// `pitr::run` asks `archive_end` once before every recovery (latest or a target), so
    /// this is that recovery's listing before, and no LIST pass more is made for it.
    wal_seen: std::sync::Mutex<Vec<String>>,
}

impl BarmanCloud {
    /// The source, with its binaries found and barman-cloud-restore's version asked; what it
    /// reads through pgdrill's own stores is opened among the command's `stores`.
    /// The store is probed first (`Cloud::probe`): an endpoint that does not answer is the
    /// environment's failure before any barman-cloud call. Every call, the version probes
    /// here among them, runs through `stop`, the source's interrupt.
    pub fn open(cloud: Cloud, stores: &crate::storage::Opened, stop: tools::Interrupt) -> Result<BarmanCloud, Failure> {
        cloud.probe(&tools::tool_env())?;
        let bin = cloud.binary(&stop)?;
        Ok(BarmanCloud {
            cloud,
            bin,
            list: Default::default(),
            scripts: Default::default(),
            placed: Default::default(),
            lister: Default::default(),
            stores: stores.clone(),
            asked: Default::default(),
            data_dir: Default::default(),
            interrupt: stop,
            wal_seen: Default::default(),
        })
    }

    /// The server's backups, as this machine's barman-cloud lists them, or, when it cannot
    /// read some backup's backup.info (a newer barman-cloud wrote it), as the barman-cloud of
    /// an image of PostgreSQL that Docker has here and that is newer lists them. Never a
    /// list with a backup left out: with no such image it is the environment's failure.
    fn list_all(&self) -> Result<Vec<Backup>, Failure> {
        if let Some((image, bin)) = self.lister.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(self.cloud.list_by(&bin, Some(&image), &self.interrupt)?.0);
        }
        let (v, unreadable) = self.cloud.list_by(&self.bin, None, &self.interrupt)?;
        if !unreadable {
            return Ok(v);
        }
        let mine = tools::version_numbers(&self.bin.version);
        let newer = (12..=18).rev().flat_map(super::recover::docker_images_for).find_map(|image| {
            let bin = tools::find_in_image("barman-cloud-backup-list", &["-V"], &image, &self.interrupt)?;
            (tools::version_numbers(&bin.version) > mine).then_some((image, bin))
        });
        let Some((image, bin)) = newer else {
            // A probe the interrupt ended found nothing: said as stopped, not as absent.
            self.interrupt.check("the search for barman-cloud in Docker's images")?;
            return Err(Failure::environment(format!(
                "{} ({}) cannot read the backup.info of some of the server `{}`'s backups (a newer barman-cloud wrote them), nor has Docker an image with a newer barman-cloud: install a newer barman-cli-cloud, or build the image of the backups' PostgreSQL major (`bash ci/setup.sh` builds pgdrill/postgres-local:17 with barman-cli-cloud)",
                self.bin.version,
                self.bin.path.display(),
                self.cloud.server
            )));
        };
        let v = self.cloud.list_by(&bin, Some(&image), &self.interrupt)?.0;
        *self.lister.lock().unwrap_or_else(|e| e.into_inner()) = Some((image, bin));
        Ok(v)
    }

    /// The image serving the backup `id`, when `placement` put it in one.
    fn imaged(&self, id: &str) -> Option<(InImage, Binary)> {
        match &*self.placed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((placed, imaged)) if placed == id => imaged.clone(),
            _ => None,
        }
    }

    fn listed(&self, id: &str) -> Result<Backup, Failure> {
        cached(&self.list, |b: &Backup| b.base.id == id, || self.list_all())?
            .ok_or_else(|| Failure::failed(format!("barman-cloud-backup-list no longer lists the backup `{id}`")))
    }
}

/// The backup of a listing kept in `list` that `is` picks, the listing asked again
/// (`relist`) when it does not hold it: a backup taken since the last listing.
fn cached<B: Clone>(
    list: &std::sync::Mutex<Vec<B>>,
    is: impl Fn(&B) -> bool,
    relist: impl FnOnce() -> Result<Vec<B>, Failure>,
) -> Result<Option<B>, Failure> {
    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(&is) {
        *list = relist()?;
    }
    Ok(list.iter().find(|b| is(b)).cloned())
}

impl PhysicalSource for BarmanCloud {
    fn tool(&self) -> Tool {
        let placed = self.placed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let version = match placed.and_then(|(_, i)| i) {
            Some((at, bin)) => format!("{} in {}", bin.version, at.image),
            None => format!("{} ({})", self.bin.version, self.bin.path.display()),
        };
        Tool { name: "barman-cloud".into(), version }
    }

    /// This machine, unless it has no server binaries of the backup's major, or its
    /// barman-cloud could not list the backup (`list_all`): the throwaway then runs in an
    /// image of that major, and so must barman-cloud-wal-restore (its restore_command) and,
    /// the same package, barman-cloud-restore: the first image Docker has here that holds
    /// them, at least as new as the one that listed. `&bin=DIR` keeps the team's tools.
    fn placement(&self, backup: &BaseBackup) -> Result<Option<InImage>, Failure> {
        if let Some((id, imaged)) = &*self.placed.lock().unwrap_or_else(|e| e.into_inner()) {
            if *id == backup.id {
                return Ok(imaged.as_ref().map(|(at, _)| at.clone()));
            }
        }
        let lister = self.lister.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let no_binaries = backup.pg_major.filter(|m| crate::pg::native::find_bin_dir(None, Some(*m)).is_err());
        let major = no_binaries.or(lister.as_ref().and(backup.pg_major));
        let imaged = match major {
            Some(major) if self.cloud.bin_dir.is_none() => {
                let least = lister.as_ref().map(|(_, b)| tools::version_numbers(&b.version)).unwrap_or_default();
                let found = super::recover::docker_images_for(major).into_iter().find_map(|image| {
                    // barman-cloud-wal-restore comes in the same package (barman-cli-cloud).
                    let bin = tools::find_in_image("barman-cloud-restore", &["-V"], &image, &self.interrupt)?;
                    (tools::version_numbers(&bin.version) >= least).then_some((image, bin))
                });
                let Some((image, bin)) = found else {
                    self.interrupt.check("the search for barman-cloud in Docker's images")?;
                    let local = crate::pg::docker::LOCAL_IMAGE.replace("{major}", &major.to_string());
                    return Err(Failure::environment(format!(
                        "the backup `{}` is of PostgreSQL {major}, and this machine has no PostgreSQL {major} server binaries, nor Docker an image of it with barman-cloud: build the image {local} (`bash ci/setup.sh` builds PostgreSQL {major} with barman-cli-cloud), or install postgresql-{major}",
                        backup.id
                    )));
                };
                let why = match (no_binaries, &lister) {
                    (Some(_), _) => format!("this machine has no PostgreSQL {major} server binaries"),
                    (None, Some((image, b))) => format!(
                        "this machine's barman-cloud ({}) cannot read its backup.info, which {} in {image} lists",
                        self.bin.version, b.version
                    ),
                    (None, None) => String::new(),
                };
                Some((InImage { image, network: true, why }, bin))
            }
            _ => None,
        };
        let at = imaged.as_ref().map(|(at, _)| at.clone());
        *self.placed.lock().unwrap_or_else(|e| e.into_inner()) = Some((backup.id.clone(), imaged));
        Ok(at)
    }

    fn describe(&self) -> String {
        format!(
            "barman-cloud server `{}` at {}",
            crate::util::visible(&self.cloud.server),
            crate::util::visible(&self.cloud.url)
        )
    }

    /// barman-cloud is asked once per source opened (a command's, a step's): each listing is a
    /// Python start and a LIST of the destination, and a verify asked three times (its pick,
    /// the recovery's pick, freshness). A backup that ends after the first listing is not
    /// seen by the later ones: it was not picked either, and freshness judged from the
    /// listing before it is older, never younger, than the destination's.
    fn list(&self) -> Result<Vec<BaseBackup>, Failure> {
        let mut kept = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if !self.asked.load(std::sync::atomic::Ordering::SeqCst) {
            *kept = self.list_all()?;
            self.asked.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(kept.iter().map(|b| b.base.clone()).collect())
    }

    /// A backup barman-cloud did not finish (`FAILED`, `STARTED`, ...) never passes.
    fn verify(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let b = self.listed(&backup.id)?;
        if b.status != "DONE" {
            return Err(Failure::failed(format!(
                "barman-cloud marks the backup `{}` {}{}",
                b.base.id,
                crate::util::visible(&b.status),
                b.error.as_deref().map(|e| format!(": {}", crate::util::visible(e))).unwrap_or_default()
            )));
        }
        Ok(Some(format!("barman-cloud backup `{}` is DONE", b.base.id)))
    }

    fn materialize(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Materialized, Failure> {
        let b = self.listed(&backup.id)?;
        match self.imaged(&backup.id) {
            Some((at, bin)) => {
                let run_as = crate::pg::native::RunAs::detect()?;
                for d in [&into.data_dir, &into.tablespaces_dir] {
                    run_as.own(d)?;
                }
                self.cloud.restore_in_image(&at, &bin, &b, into, &self.interrupt)?;
            }
            None => self.cloud.restore(&self.bin, &b, into, &self.interrupt)?,
        }
        *self.data_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(into.data_dir.clone());
        Ok(Materialized {
            bytes: tools::tree_bytes(&into.data_dir) + tools::tree_bytes(&into.tablespaces_dir),
            tablespaces: tools::tablespaces(&into.data_dir),
        })
    }

    fn restore_command(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        // In an image its barman-cloud-wal-restore, found on the image's PATH.
        let bin = self.imaged(&backup.id).map(|(_, b)| b).unwrap_or_else(|| self.bin.clone());
        let words = self.cloud.wal_restore(&bin);
        // The throwaway's workspace keeps barman-cloud-wal-restore's failure for `judge_fetch`.
        let data = self.data_dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match data.as_deref().and_then(std::path::Path::parent) {
            Some(workspace) => {
                let how = tools::Reading { not_absent: NOT_ABSENT, local: false };
                self.scripts.restore_command_read("barman-cloud-wal-restore", &words, workspace, how).map(Some)
            }
            None => self.scripts.restore_command("barman-cloud-wal-restore", &words).map(Some),
        }
    }

    /// A recovery stopped by `barman-cloud-wal-restore` failing inside the restore_command
    /// (its script recorded the exit code and the tool's last lines): judged by what the
    /// tool said (`cloud_fetch_verdict`). Before, every such stop was a failed recovery
    /// (exit 1, "exit code 126"), a store that stopped answering too (issue 39).
    ///
    /// Any recovery that failed then (class Failed, whatever its target: "latest" short of
    /// the archive's end, a time, restore point, LSN, transaction or `immediate` not
    /// reached, the fetch above judged the archive's damage) is judged by listing the store
    /// again (`relisted`): barman-cloud-wal-restore's exit 1 is silent for a segment removed
    /// during recovery too (the server's prefix deleted), which the server took for the end
    /// of the WAL. Before, only a "latest" was listed again: a time target whose WAL was
    /// removed while it ran failed the backup (exit 1, "recovery ended before configured
    /// recovery target was reached").
    fn judge_fetch(&self, backup: &BaseBackup, recovery: Failure) -> Failure {
        let judged = match recovery.source.as_deref().and_then(|s| s.downcast_ref::<tools::FetchFailed>()).cloned() {
            Some(f) => {
                let (class, why) = cloud_fetch_verdict(&f, &self.cloud.shown_store());
                Failure::new(
                    class,
                    format!(
                        "recovery of the backup `{}` stopped: barman-cloud-wal-restore failed fetching {} (exit {}): {}: {why}",
                        backup.id,
                        crate::util::visible(&f.segment),
                        f.code,
                        tools::last_lines(&tool_words(&f.said), 3)
                    ),
                )
                .with_source(f)
            }
            None => recovery,
        };
        if judged.class != crate::error::Class::Failed {
            return judged;
        }
        let before = self.wal_seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Nothing listed before the recovery: nothing can have been removed since, and a
        // second listing could only turn the backup's failure into the store's.
        if before.is_empty() {
            return judged;
        }
        let now =
            self.cloud.wal_objects(&self.stores).map(|l| l.map(|listed| segment_names(&listed).into_iter().collect()));
        let read_from = backup.start_lsn.map(|l| (backup.timeline.unwrap_or(1), l));
        relisted(&backup.id, judged, &before, now, read_from, &self.cloud.shown_store())
    }

    /// For a throwaway in Docker: the restore_command's script and the files the cloud
    /// SDKs' variables name.
    fn paths(&self) -> Vec<PathBuf> {
        let mut p = self.scripts.dirs();
        p.extend(env_files());
        p
    }

    /// barman-cloud keeps no manifest of its own: a backup is named by the sha256 of its
    /// `backup.info` object, for signed evidence.
    fn digest(&self, backup: &BaseBackup) -> Result<Option<(String, String)>, Failure> {
        self.cloud.info_sha256(&backup.id, &self.stores)
    }

    /// barman-cloud keeps no archive end of its own: it is the newest segment listed under
    /// `<server>/wals/` in the store (`wal_end`), which "latest" must replay. Before, a
    /// recovery that ran out early (a segment missing in between, its exit 1 silent) passed.
    fn archive_end(&self, timeline: u32) -> Result<Option<ArchiveEnd>, Failure> {
        let listed = self.cloud.wal_objects(&self.stores)?;
        // A store pgdrill cannot list leaves nothing seen: never an older listing's segments,
        // which a later recovery would find "removed".
        *self.wal_seen.lock().unwrap_or_else(|e| e.into_inner()) =
            listed.as_deref().map(segment_names).unwrap_or_default();
        Ok(listed.and_then(|l| wal_end(&l, timeline)))
    }

    fn interrupt(&self) -> Option<tools::Interrupt> {
        Some(self.interrupt.clone())
    }
}

/// The names of the WAL segments a listing of `<server>/wals/` holds (`wal_segment`).
fn segment_names(listed: &[crate::storage::Meta]) -> Vec<String> {
    listed.iter().filter_map(|m| wal_segment(&m.key)).map(|(name, ..)| name).collect()
}

/// A failed recovery of the backup `id`, judged by the store's WAL listed again (`now`)
/// against the segments listed before it (`before`): segments gone now that the recovery
/// could read (from `read_from`, the backup's timeline and start, when known: WAL older
/// than the backup that a retention run removes meanwhile is no reason) were removed while
/// it ran, which the server, told "no such segment", took for the end of the WAL: the
/// environment's, no verdict. Nothing gone: the recovery's failure as it was (a gap the
/// archive held all along, a target its WAL never reached). A store that cannot be listed
/// again cannot tell the two apart: the environment's too. A "latest" short of the
/// archive's end (`ShortOfEnd`) says where replay ended; any other failure keeps the
/// recovery's own words, which name the target it did not reach.
fn relisted(
    id: &str,
    recovery: Failure,
    before: &[String],
    now: Result<Option<std::collections::HashSet<String>>, Failure>,
    read_from: Option<(u32, Lsn)>,
    store: &str,
) -> Failure {
    // The recovery's cause (`ShortOfEnd`, a `FetchFailed`) stays the source of the verdict.
    let no_verdict =
        |recovery: Failure, message: String| Failure { source: recovery.source, ..Failure::environment(message) };
    let now = match now {
        Ok(Some(now)) => now,
        Ok(None) => return recovery,
        Err(e) => {
            let message = format!(
                "{}; the store {store} cannot be listed again to tell a gap in the archive from WAL removed during recovery ({}): no verdict on the backup",
                recovery.message, e.message
            );
            return no_verdict(recovery, message);
        }
    };
    let readable =
        |name: &str| match (read_from, super::source::parse_segment_name(name, super::source::DEFAULT_SEGMENT_SIZE)) {
            (Some((timeline, start)), Some((t, at))) => {
                t >= timeline && at.0 + super::source::DEFAULT_SEGMENT_SIZE > start.0
            }
            _ => true,
        };
    let gone: Vec<&str> = before.iter().map(String::as_str).filter(|n| !now.contains(*n) && readable(n)).collect();
    if gone.is_empty() {
        return recovery;
    }
    let mut named = gone.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    if gone.len() > 3 {
        named.push_str(", ...");
    }
    let removed = format!(
        "{} of the {} WAL segments the store {store} listed before the recovery ({named}) were removed from the store during recovery: no verdict on the backup",
        gone.len(),
        before.len()
    );
    let short = recovery.source.as_deref().and_then(|s| s.downcast_ref::<ShortOfEnd>()).cloned();
    let message = match short {
        Some(short) => format!(
            "recovery of the backup `{id}` to the end of the archive ended at {}, before the archive's newest segment {}: {removed}",
            short.replayed, short.end.segment
        ),
        None => format!("the backup `{id}`: {}; {removed}", recovery.message),
    };
    no_verdict(recovery, message)
}

/// Read `barman-cloud-backup-list --format json`'s answer.
pub fn parse_list(json: &str) -> Result<Vec<Backup>, Failure> {
    let v: Value = serde_json::from_str(json).map_err(|e| {
        Failure::environment(format!("barman-cloud-backup-list --format json did not answer JSON ({e})"))
    })?;
    let list = v["backups_list"]
        .as_array()
        .ok_or_else(|| Failure::environment("barman-cloud-backup-list's JSON holds no `backups_list`"))?;
    let mut out = Vec::new();
    for b in list {
        let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
        let id = text("backup_id");
        if id.is_empty() {
            return Err(Failure::environment("barman-cloud-backup-list lists a backup without a backup_id"));
        }
        // begin_time and end_time are printed without a zone (Python's ctime() of the backup
        // host's time); the backup label's START TIME has one, so the begin time read both
        // ways gives the offset to apply to the end time.
        let begin_naive = b["begin_time"].as_str().and_then(parse_ctime);
        let end_naive = b["end_time"].as_str().and_then(parse_ctime);
        let label_start = b["backup_label"].as_str().and_then(label_start_time);
        let offset = match (label_start, begin_naive) {
            // The label's START TIME is taken a moment after begin_time: round the offset to
            // whole quarter hours, the granularity of every zone in use.
            (Some(l), Some(n)) => ((n - l) as f64 / 900.0).round() as i64 * 900,
            _ => 0,
        };
        let started = label_start.or(begin_naive.map(|n| n - offset)).unwrap_or_default();
        let stopped = end_naive.map(|n| n - offset).unwrap_or(started);
        let wal_start = text("begin_wal");
        let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).ok();
        let tablespaces = b["tablespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t[0].as_str()?.to_string(), t[1].as_u64()? as u32)))
            .collect();
        out.push(Backup {
            base: BaseBackup {
                id,
                started: at(started),
                ended: at(stopped),
                start_lsn: b["begin_xlog"].as_str().and_then(Lsn::parse),
                stop_lsn: b["end_xlog"].as_str().and_then(Lsn::parse),
                timeline: b["timeline"].as_u64().map(|t| t as u32).or_else(|| {
                    super::source::parse_segment_name(&wal_start, super::source::DEFAULT_SEGMENT_SIZE).map(|(t, _)| t)
                }),
                system_identifier: b["systemid"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| b["systemid"].as_u64()),
                pg_major: b["version"].as_u64().map(|v| (v / 10000) as u32),
                size: b["size"].as_u64(),
                has_manifest: false,
                wal_included: false,
            },
            status: text("status"),
            error: b["error"].as_str().map(str::to_string),
            tablespaces,
        });
    }
    Ok(out)
}

/// `Sun Dec  6 06:50:35 2026` (no zone) as Unix seconds read as UTC.
fn parse_ctime(s: &str) -> Option<i64> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let [_, month, day, clock, year] = words.as_slice() else { return None };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = months.iter().position(|m| m == month)? as u8 + 1;
    let mut hms = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let date =
        time::Date::from_calendar_date(year.parse().ok()?, time::Month::try_from(month).ok()?, day.parse().ok()?)
            .ok()?;
    let t = time::Time::from_hms(h, m, sec).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp())
}

/// The `START TIME: 2026-12-06 06:50:36 UTC` line of a backup label, as Unix seconds, when
/// its zone is UTC/GMT or a numeric offset.
fn label_start_time(label: &str) -> Option<i64> {
    let line = label
        .split("\\n")
        .chain(label.lines())
        .find_map(|l| l.trim_start_matches('\'').strip_prefix("START TIME: "))?;
    let mut parts = line.trim().splitn(3, ' ');
    let (date, clock, zone) = (parts.next()?, parts.next()?, parts.next().unwrap_or("UTC"));
    let d: Vec<&str> = date.split('-').collect();
    let c: Vec<&str> = clock.split(':').collect();
    let [y, mo, da] = d.as_slice() else { return None };
    let [h, mi, s] = c.as_slice() else { return None };
    let date = time::Date::from_calendar_date(
        y.parse().ok()?,
        time::Month::try_from(mo.parse::<u8>().ok()?).ok()?,
        da.parse().ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(h.parse().ok()?, mi.parse().ok()?, s.parse().ok()?).ok()?;
    let utc = time::PrimitiveDateTime::new(date, t).assume_utc().unix_timestamp();
    let zone = zone.trim().trim_end_matches('\'');
    if zone == "UTC" || zone == "GMT" {
        return Some(utc);
    }
    // `+01`, `-0530`, `+05:30`
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(char::is_ascii_digit).collect();
    let (hh, mm) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?),
        _ => return None,
    };
    Some(utc - sign * (hh * 3600 + mm * 60))
}

/// How a Barman server is written: `barman://SERVER?config=PATH&bin=PATH`.
pub const SERVER_SCHEME: &str = "barman://";

/// The Debian package holding `barman` (named when it is missing).
pub const SERVER_PACKAGE: &str = "barman";

/// A server of a Barman installation, as the team configured it (`barman.conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The server's section name in Barman's configuration.
    pub name: String,
    /// `-c`: the team's barman.conf (default: Barman's own search, ~/.barman.conf,
    /// /etc/barman.conf, /etc/barman/barman.conf).
    pub config: Option<PathBuf>,
    /// The barman binary to run (default: `barman` on PATH).
    pub bin: Option<PathBuf>,
}

/// One backup as `barman show-backup` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerBackup {
    pub base: BaseBackup,
    /// `DONE`, `FAILED`, `WAITING_FOR_WALS`, `STARTED`, ... as Barman recorded it.
    pub status: String,
    /// Each tablespace's name and OID (barman recover maps them by name).
    pub tablespaces: Vec<(String, u32)>,
}

impl Server {
    /// Parse `barman://SERVER?config=PATH&bin=PATH`.
    pub fn parse(location: &str) -> Result<Server, Failure> {
        let shown = crate::util::visible(location);
        let rest = location.strip_prefix(SERVER_SCHEME).ok_or_else(|| {
            Failure::invalid(format!("`{shown}` is not a Barman server (barman://SERVER?config=/etc/barman.conf)"))
        })?;
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        let name = crate::util::percent_decode_strict(name).unwrap_or_default();
        // Barman names a server by its configuration section: no path, no control character,
        // and never `all` (barman's word for every server).
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) || name == "all" {
            return Err(Failure::invalid(format!(
                "the Barman source `{shown}` names no server: write barman://SERVER?config=/etc/barman.conf"
            )));
        }
        let mut s = Server { name, config: None, bin: None };
        for (k, v) in tools::options(query, &["config", "bin"], location)? {
            let v = Some(PathBuf::from(v));
            match k.as_str() {
                "config" => s.config = v,
                _ => s.bin = v,
            }
        }
        Ok(s)
    }

    /// The binary that serves this source and its version (`barman 3.4.0`), asked through
    /// `stop`.
    pub fn binary(&self, stop: &tools::Interrupt) -> Result<Binary, Failure> {
        let mut b = tools::find("barman", self.bin.as_deref(), &["-v"], SERVER_PACKAGE, stop)?;
        // `barman -v` prints `3.4.0 Barman by EnterpriseDB (...)`.
        let v = b.version.split_whitespace().next().unwrap_or_default().to_string();
        b.version = format!("barman {v}");
        Ok(b)
    }

    /// The configuration file barman reads: the one given, else the first of Barman's own
    /// search that exists.
    fn config_file(&self) -> Option<PathBuf> {
        if let Some(c) = &self.config {
            return Some(c.clone());
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        [home.join(".barman.conf"), "/etc/barman.conf".into(), "/etc/barman/barman.conf".into()]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// A barman command: this machine's barman, or the one of `tool`'s image, run in its
    /// session's container (`barman_image`: barman_user with the ids of the catalogue's owner
    /// here, the configuration read-only, the catalogue and `rw` (a throwaway's directories)
    /// read-write at their own paths, no network, labelled as pgdrill's). The env file, if
    /// any, must live until the child ends.
    fn command(
        &self,
        tool: &Barman,
        rw: &[PathBuf],
    ) -> Result<(std::process::Command, Option<crate::pg::image_tools::EnvFile>), Failure> {
        let Some(session) = &tool.session else {
            let mut cmd = tools::tool_command(&tool.bin.path);
            if let Some(c) = &self.config {
                cmd.arg("-c").arg(c);
            }
            return Ok((cmd, None));
        };
        let mut cmd = session.command(rw)?;
        cmd.arg("-c").arg(self.config_file().unwrap_or_default());
        Ok((cmd, None))
    }

    /// A session of `image`'s barman for this server (`barman_image::Session`, nothing runs
    /// yet): what barman reads and writes besides the configuration (its home: catalogue,
    /// locks, log; a server's own folder; the folder of further configuration files) and who
    /// it runs as.
    fn session(&self, image: &str) -> Result<Session, Failure> {
        let config = self.config_file().ok_or_else(|| {
            Failure::environment(
                "no Barman configuration here (~/.barman.conf, /etc/barman.conf, /etc/barman/barman.conf): give ?config=PATH",
            )
        })?;
        let text = std::fs::read_to_string(&config).unwrap_or_default();
        let mut writes: Vec<PathBuf> =
            vec![ini_value(&text, "barman", "barman_home").unwrap_or_else(|| "/var/lib/barman".into()).into()];
        writes.extend(ini_value(&text, &self.name, "backup_directory").map(PathBuf::from));
        let mut reads = vec![config.clone()];
        reads.extend(ini_value(&text, "barman", "configuration_files_directory").map(PathBuf::from));
        writes.retain(|p| p.is_absolute() && p.exists());
        reads.retain(|p| p.is_absolute() && p.exists());
        Session::new(image, self.identity(&text)?, reads, writes, &tools::tool_env())
    }

    /// Who barman runs as in an image: `barman_user` by name (barman refuses to run unless
    /// that name's uid is its own), with the ids of the catalogue's owner here: this
    /// machine's `barman_user` when pgdrill runs as root (this machine's barman drops to it
    /// too), the owner of barman_home when this machine has no such user (a catalogue
    /// brought from the Barman machine), pgdrill's own user otherwise. Never the image's uid
    /// of that name (the 17 image's `barman` is 101, this machine's 103): what barman writes
    /// in the catalogue stays its owner's. `text`: the configuration.
    fn identity(&self, text: &str) -> Result<Identity, Failure> {
        let user = self.barman_user();
        let home = PathBuf::from(ini_value(text, "barman", "barman_home").unwrap_or_else(|| "/var/lib/barman".into()));
        if !nix::unistd::geteuid().is_root() {
            let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
            return Ok(Identity { user, uid, gid, home });
        }
        if let Some(u) = nix::unistd::User::from_name(&user).ok().flatten() {
            return Ok(Identity { user, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home });
        }
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&home) {
            Ok(m) if m.uid() != 0 => Ok(Identity { user, uid: m.uid(), gid: m.gid(), home }),
            _ => Err(Failure::environment(format!(
                "Barman's barman_user `{}` does not exist on this machine and barman_home {} is not owned by another user to run barman as: create the user `{}` with the uid that owns the catalogue",
                crate::util::visible(&user),
                home.display(),
                crate::util::visible(&user)
            ))),
        }
    }

    /// One barman command with JSON output, its answer for this server. Barman answers
    /// `{"_ERROR": [...]}` (and exit 1) when it cannot: that is the environment's failure
    /// with its words (no such server, a configuration it cannot read, the wrong user).
    fn json(&self, tool: &Barman, args: &[&str]) -> Result<Value, Failure> {
        let (mut cmd, _env) = self.command(tool, &[])?;
        cmd.args(["-f", "json"]).args(args);
        let out = tool.interrupt.run(&mut cmd, &format!("barman {}", args.first().copied().unwrap_or_default()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Option<Value> = serde_json::from_str(&text).ok();
        let errors = v
            .as_ref()
            .and_then(|v| v["_ERROR"].as_array())
            .map(|a| a.iter().filter_map(Value::as_str).map(crate::util::visible).collect::<Vec<_>>().join(" / "));
        match v {
            Some(v) if out.status.success() && errors.is_none() => Ok(v[self.name.as_str()].clone()),
            _ => Err(Failure::environment(format!(
                "barman {} cannot read the server `{}`: {}",
                args.first().copied().unwrap_or_default(),
                crate::util::visible(&self.name),
                errors.unwrap_or_else(|| tools::last_lines(&tools::both(&out), 3))
            ))),
        }
    }

    /// The server's backups, oldest first, each as `show-backup` describes it.
    pub fn list(&self, tool: &Barman) -> Result<Vec<ServerBackup>, Failure> {
        let listed = self.json(tool, &["list-backups", &self.name])?;
        let mut out = Vec::new();
        for b in listed.as_array().into_iter().flatten() {
            let Some(id) = b["backup_id"].as_str() else {
                return Err(Failure::environment("barman list-backups lists a backup without a backup_id"));
            };
            out.push(parse_show_backup(&self.json(tool, &["show-backup", &self.name, id])?)?);
        }
        out.sort_by(|a, b| (a.base.started, &a.base.id).cmp(&(b.base.started, &b.base.id)));
        Ok(out)
    }

    /// The user Barman switches to (`barman_user` in the `[barman]` section, default
    /// `barman`): barman drops to it when started as root and refuses to run as anyone else.
    pub fn barman_user(&self) -> String {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let candidates = match &self.config {
            Some(c) => vec![c.clone()],
            None => vec![home.join(".barman.conf"), "/etc/barman.conf".into(), "/etc/barman/barman.conf".into()],
        };
        let text = candidates.iter().find_map(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        ini_value(&text, "barman", "barman_user").unwrap_or_else(|| "barman".into())
    }

    /// `barman recover` of the backup into the empty `into.data_dir`, with no target: Barman
    /// copies the base backup and every WAL segment after it (decompressed) into `pg_wal`,
    /// and disables the backed-up archive_command. A backup Barman cannot restore (a file or
    /// a WAL segment missing from its catalogue) is a failed verification.
    pub fn recover(&self, tool: &Barman, backup: &ServerBackup, into: &MaterializeInto) -> Result<(), Failure> {
        let id = &backup.base.id;
        // Started as root, barman drops to barman_user, which must write the throwaway's
        // directories: they are handed to it, and the workspace above them made traversable
        // (not listable); recover.rs hands all of it to the server's user afterwards.
        if nix::unistd::geteuid().is_root() {
            // In an image, barman runs with its session's ids; here, as this machine's user.
            let (user, uid, gid) = match &tool.session {
                Some(s) => (s.identity().user.clone(), s.identity().uid, s.identity().gid),
                None => {
                    let user = self.barman_user();
                    let u = nix::unistd::User::from_name(&user).ok().flatten().ok_or_else(|| {
                        Failure::environment(format!(
                            "Barman's barman_user `{}` does not exist",
                            crate::util::visible(&user)
                        ))
                    })?;
                    (user, u.uid.as_raw(), u.gid.as_raw())
                }
            };
            if uid != 0 {
                use std::os::unix::fs::PermissionsExt;
                if let Some(top) = into.data_dir.parent() {
                    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o711))
                        .map_err(|e| Failure::environment(format!("chmod {}: {e}", top.display())))?;
                }
                let ids = (Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
                for d in [&into.data_dir, &into.tablespaces_dir] {
                    nix::unistd::chown(d.as_path(), ids.0, ids.1)
                        .map_err(|e| Failure::environment(format!("chown {} to {user}: {e}", d.display())))?;
                }
            }
        }
        let (mut cmd, _env) = self.command(tool, &[into.data_dir.clone(), into.tablespaces_dir.clone()])?;
        cmd.arg("recover");
        // Every tablespace under the throwaway's directory, never where the team's server had it.
        for (name, oid) in &backup.tablespaces {
            cmd.arg(format!("--tablespace={name}:{}", into.tablespaces_dir.join(oid.to_string()).display()));
        }
        cmd.arg(&self.name).arg(id).arg(&into.data_dir);
        let out = tool.interrupt.run(&mut cmd, "barman recover")?;
        if !out.status.success() {
            let said = tools::both(&out);
            let (class, why) = match recover_environment(&said) {
                Some(why) => (crate::error::Class::Environment, format!(": {why}; no verdict on the backup")),
                None => (crate::error::Class::Failed, String::new()),
            };
            return Err(Failure::new(
                class,
                format!(
                    "barman recover{} of the backup `{id}` of the server `{}` failed (exit {}): {}{why}",
                    tool.image.as_deref().map(|i| format!(" in {i}")).unwrap_or_default(),
                    crate::util::visible(&self.name),
                    out.status.code().unwrap_or(-1),
                    tools::last_lines(&said, 4)
                ),
            ));
        }
        Ok(())
    }
}

impl Server {
    /// The ids of backups the catalogue holds that `listed` lacks: Barman 3.13.2 and later
    /// keep each backup's `backup.info` as `<backup_directory>/meta/<id>-backup.info`, where an
    /// older barman does not look (it lists none of them, and says nothing). Only the names
    /// are read: whether a backup is whole stays the serving barman's word.
    pub fn unlisted(&self, listed: &[ServerBackup]) -> Vec<String> {
        let text = self.config_file().and_then(|c| std::fs::read_to_string(c).ok()).unwrap_or_default();
        // The server's section may be in the main file or in the configuration folder's files.
        let mut texts = vec![text.clone()];
        if let Some(dir) = ini_value(&text, "barman", "configuration_files_directory") {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_name().to_str().is_some_and(|n| n.ends_with(".conf")) {
                    texts.extend(std::fs::read_to_string(e.path()).ok());
                }
            }
        }
        let home = ini_value(&text, "barman", "barman_home").unwrap_or_else(|| "/var/lib/barman".into());
        let dir = texts
            .iter()
            .find_map(|t| ini_value(t, &self.name, "backup_directory"))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(home).join(&self.name));
        let mut out: Vec<String> = std::fs::read_dir(dir.join("meta"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix("-backup.info").map(str::to_string))
            .filter(|id| !listed.iter().any(|b| &b.base.id == id))
            .collect();
        out.sort();
        out
    }

    /// When Barman archived `segment` (the time of its file in Barman's catalogue, as
    /// `barman list-files --target wal` names it), `None` when Barman does not list it.
    /// Not the time of the copy `barman recover` made: that is now, whatever the archive's age.
    pub fn wal_archived_at(&self, tool: &Barman, backup_id: &str, segment: &str) -> Option<time::OffsetDateTime> {
        let (mut cmd, _env) = self.command(tool, &[]).ok()?;
        cmd.args(["list-files", "--target", "wal"]).arg(&self.name).arg(backup_id);
        let out = tool.interrupt.run(&mut cmd, "barman list-files").ok().filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let path = text.lines().map(str::trim).find(|l| {
            std::path::Path::new(l).file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(segment))
        })?;
        std::fs::metadata(path).ok()?.modified().ok().map(time::OffsetDateTime::from)
    }
}

/// `barman recover`'s words that make its failure the environment's: Barman copies the WAL
/// after the backup (decompressing it) during `recover`, and reports a file it could not
/// read with the command's own words (`/bin/sh: 1: cannot open …/wals/…: Permission
/// denied`) and a configuration it cannot read with Python's. A file of the catalogue
/// missing or whose bytes do not decompress (`gzip: stdin: invalid compressed data`) stays
/// the backup's failure; a permission, a full or read-only disk, and a configuration Barman
/// cannot read (or that no longer names the server or its user) are never a verdict on it.
const RECOVER_ENVIRONMENT: &[(&str, &str)] = &[
    ("Permission denied", "Barman may not read a file of its catalogue or write the throwaway's (permission denied)"),
    ("Operation not permitted", "Barman may not read a file of its catalogue or write the throwaway's"),
    ("No space left on device", "the disk is full"),
    ("Read-only file system", "a file system Barman writes is read-only"),
    ("contains parsing errors", "Barman cannot read its configuration"),
    ("contains no section headers", "Barman cannot read its configuration"),
    ("Configuration file '", "Barman's configuration file is gone"),
    ("Unknown server", "Barman's configuration no longer names the server"),
    ("the configured user", "Barman's configured barman_user does not exist here"),
    ("please run barman as", "Barman refuses to run as this user"),
];

/// Why `barman recover`'s output `said` is the environment's failure, if it is
/// (`RECOVER_ENVIRONMENT`).
fn recover_environment(said: &str) -> Option<&'static str> {
    RECOVER_ENVIRONMENT.iter().find(|(words, _)| said.contains(words)).map(|(_, why)| *why)
}

/// A value of `key` in `[section]` of an INI text as Python's configparser reads it (`=` or
/// `:`, keys case-insensitive, `#` and `;` comment lines).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if !inside {
            continue;
        }
        let Some(cut) = line.find(['=', ':']) else { continue };
        if line[..cut].trim().eq_ignore_ascii_case(key) {
            return Some(line[cut + 1..].trim().to_string()).filter(|v| !v.is_empty());
        }
    }
    None
}

/// Read `barman -f json show-backup SERVER ID`'s answer for the server.
pub fn parse_show_backup(v: &Value) -> Result<ServerBackup, Failure> {
    let id = v["backup_id"].as_str().unwrap_or_default().to_string();
    if id.is_empty() {
        return Err(Failure::environment("barman show-backup describes a backup without a backup_id"));
    }
    let info = &v["base_backup_information"];
    // Barman writes its timestamps as strings of Unix seconds.
    let ts = |k: &str| {
        info[k]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .or_else(|| info[k].as_i64())
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
    };
    let begin_wal = info["begin_wal"].as_str().unwrap_or_default();
    let tablespaces = v["tablespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["name"].as_str()?.to_string(), t["oid"].as_u64()? as u32)))
        .collect();
    Ok(ServerBackup {
        base: BaseBackup {
            id,
            started: ts("begin_time_timestamp"),
            ended: ts("end_time_timestamp"),
            start_lsn: info["begin_lsn"].as_str().and_then(Lsn::parse),
            stop_lsn: info["end_lsn"].as_str().and_then(Lsn::parse),
            // `systemid` in Barman 3.4's answer, `system_id` in 3.13's.
            system_identifier: ["systemid", "system_id"]
                .iter()
                .find_map(|k| v[k].as_str().and_then(|s| s.parse().ok()).or_else(|| v[k].as_u64())),
            timeline: info["timeline"].as_u64().map(|t| t as u32).or_else(|| {
                super::source::parse_segment_name(begin_wal, super::source::DEFAULT_SEGMENT_SIZE).map(|(t, _)| t)
            }),
            pg_major: v["postgresql_version"].as_u64().map(|v| (v / 10000) as u32),
            size: info["disk_usage_bytes"].as_u64().or_else(|| info["backup_size_bytes"].as_u64()),
            has_manifest: false,
            wal_included: false,
        },
        status: v["status"].as_str().unwrap_or_default().to_string(),
        tablespaces,
    })
}

/// The folder (inside the restored data directory, where Barman itself puts WAL for a
/// point-in-time recovery) the throwaway's restore_command reads.
const WAL_FOLDER: &str = "barman_wal";

/// The words of the restore_command that copies a segment (its name and destination follow)
/// from `wal`, the folder `materialize` filled: exit 1 only where the folder lists and the
/// name is not in it; a copy that fails (cp's words kept), a name listed that cannot be
/// reached, or a folder that cannot be listed exit 2, which the script records and stops
/// recovery on.
fn copy_words(wal: &std::path::Path) -> Vec<String> {
    const COPY: &str = "f=\"$1/$2\"\n\
        if [ -e \"$f\" ] || [ -L \"$f\" ]; then cp -- \"$f\" \"$3\" && exit 0; exit 2; fi\n\
        names=$(ls -a -- \"$1\") || exit 2\n\
        case \"/$(printf '%s\\n' \"$names\" | tr '\\n' /)\" in *\"/$2/\"*) echo \"pgdrill: $f is listed but cannot be reached\" >&2; exit 2 ;; esac\n\
        exit 1\n";
    vec!["/bin/sh".into(), "-c".into(), COPY.into(), "sh".into(), wal.display().to_string()]
}

/// The barman that reads a server's catalogue: this machine's (`image` none), or the newer
/// one of a Docker image, which a catalogue a newer Barman wrote needs (Barman 3.4 lists no
/// backup whose `backup.info` Barman 3.13 keeps in `meta/`, and says nothing).
#[derive(Debug, Clone)]
pub struct Barman {
    pub bin: Binary,
    pub image: Option<String>,
    /// The image's container every call of the source runs in (none on this machine).
    pub session: Option<std::sync::Arc<Session>>,
    /// What ends its running call when the run is interrupted (the source's).
    pub interrupt: tools::Interrupt,
}

/// A Barman server as a [`PhysicalSource`].
#[derive(Debug)]
pub struct BarmanServer {
    server: Server,
    bin: Binary,
    /// The barman that serves the source, chosen at its first listing (`list_all`), and why
    /// when it is not this machine's.
    barman: std::sync::Mutex<Option<(Barman, String)>>,
    list: std::sync::Mutex<Vec<ServerBackup>>,
    /// Whether `list` has been read: once per command (the source lives for one).
    listed_once: std::sync::Mutex<bool>,
    /// When Barman archived a segment, as `list-files` said: (backup, segment, time).
    archived: std::sync::Mutex<Option<(String, String, Option<time::OffsetDateTime>)>>,
    /// Ends the running barman call (and its container) when the run is interrupted.
    interrupt: tools::Interrupt,
    /// The WAL folder of the last materialize.
    wal_dir: std::sync::Mutex<Option<PathBuf>>,
    /// The backup the last materialize restored.
    restored: std::sync::Mutex<Option<String>>,
    /// The restore_command scripts, one per recovery (`restore_command`).
    scripts: tools::Scripts,
}

impl BarmanServer {
    /// The source, with its binary found and its version asked; its calls, that probe among
    /// them, run through `stop`, the source's interrupt.
    pub fn open(server: Server, stop: tools::Interrupt) -> Result<BarmanServer, Failure> {
        let bin = server.binary(&stop)?;
        Ok(BarmanServer {
            server,
            bin,
            barman: Default::default(),
            list: Default::default(),
            listed_once: Default::default(),
            archived: Default::default(),
            interrupt: stop,
            wal_dir: Default::default(),
            restored: Default::default(),
            scripts: Default::default(),
        })
    }

    fn listed(&self, id: &str) -> Result<ServerBackup, Failure> {
        cached(&self.list, |b: &ServerBackup| b.base.id == id, || self.list_all())?
            .ok_or_else(|| Failure::failed(format!("barman list-backups no longer lists the backup `{id}`")))
    }

    /// The barman chosen by the first listing (this machine's until then).
    fn barman(&self) -> Barman {
        match &*self.barman.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((b, _)) => b.clone(),
            None => Barman { bin: self.bin.clone(), image: None, session: None, interrupt: self.interrupt.clone() },
        }
    }

    /// The server's backups as the barman that serves it lists them. The first listing
    /// chooses it: this machine's, unless the catalogue holds backups it does not list
    /// (`Server::unlisted`: a newer Barman wrote them); then the newer barman of an image
    /// Docker has here (the newest major's first) serves the source throughout: listing,
    /// show-backup, recover, list-files. Never a list with a backup left out: with no such
    /// image (or `&bin=PATH` given) it is the environment's failure. A newer barman is never
    /// run on a catalogue this machine's reads completely: Barman 3.13 rewrites an older
    /// catalogue's WAL index (`xlog.db` to `SERVER-xlog.db`) when it reads it.
    fn list_all(&self) -> Result<Vec<ServerBackup>, Failure> {
        if let Some((b, _)) = self.barman.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return self.server.list(&b);
        }
        let here = Barman { bin: self.bin.clone(), image: None, session: None, interrupt: self.interrupt.clone() };
        let v = self.server.list(&here)?;
        let unlisted = self.server.unlisted(&v);
        if unlisted.is_empty() {
            *self.barman.lock().unwrap_or_else(|e| e.into_inner()) = Some((here, String::new()));
            return Ok(v);
        }
        let mine = tools::version_numbers(&self.bin.version);
        // `&bin=PATH` is the team's barman: never replaced.
        let newer = match self.server.bin {
            Some(_) => None,
            // Each image is asked in the container that then serves the source (one start).
            None => (12..=18).rev().flat_map(super::recover::docker_images_for).find_map(|image| {
                let session = match self.server.session(&image) {
                    Ok(s) => std::sync::Arc::new(s),
                    Err(e) => return Some(Err(e)),
                };
                // Interrupted, the container goes at once, with the call running in it.
                let weak = std::sync::Arc::downgrade(&session);
                self.interrupt.on_interrupt(move || {
                    if let Some(s) = weak.upgrade() {
                        s.stop_now()
                    }
                });
                let mut cmd = session.command(&[]).ok()?;
                let out = self.interrupt.run(cmd.arg("-v"), "barman -v").ok().filter(|o| o.status.success())?;
                let text = String::from_utf8_lossy(&out.stdout);
                let version = format!("barman {}", text.split_whitespace().next().unwrap_or_default());
                (tools::version_numbers(&version) > mine).then(|| {
                    Ok(Barman {
                        bin: Binary { path: PathBuf::from("barman"), version },
                        image: Some(image),
                        session: Some(session),
                        interrupt: self.interrupt.clone(),
                    })
                })
            }),
        };
        let shown = unlisted.join(", ");
        let Some(b) = newer.transpose()? else {
            return Err(Failure::environment(format!(
                "{} ({}) does not list the backups {shown} of the server `{}` (a newer Barman, 3.13.2 or later, wrote them: their backup.info is in meta/), nor has Docker an image with a newer barman: install the team's barman here, or build the image of the backups' PostgreSQL major (`bash ci/setup.sh` builds pgdrill/postgres-local:17 with barman)",
                self.bin.version,
                self.bin.path.display(),
                crate::util::visible(&self.server.name)
            )));
        };
        let v = self.server.list(&b)?;
        let why = format!(
            "this machine's {} does not list the backups {shown}, which a newer Barman wrote",
            self.bin.version
        );
        *self.barman.lock().unwrap_or_else(|e| e.into_inner()) = Some((b, why));
        Ok(v)
    }
}

impl PhysicalSource for BarmanServer {
    /// Which barman served and where: `barman 3.4.0 (/usr/bin/barman)` on this machine,
    /// `barman 3.13.3 in pgdrill/postgres-local:17` in an image.
    fn tool(&self) -> Tool {
        let b = self.barman();
        let version = match &b.image {
            Some(image) => format!("{} in {image}", b.bin.version),
            None => format!("{} ({})", b.bin.version, b.bin.path.display()),
        };
        Tool { name: "barman".into(), version }
    }

    /// This machine, unless it has no server binaries of the backup's major: the throwaway
    /// then recovers in an image of that major Docker has here (its restore_command copies
    /// from a folder of the workspace, which the container mounts; no network). barman
    /// recover itself needs no server binaries: it runs where `list_all` chose.
    fn placement(&self, backup: &BaseBackup) -> Result<Option<InImage>, Failure> {
        let Some(major) = backup.pg_major.filter(|m| crate::pg::native::find_bin_dir(None, Some(*m)).is_err()) else {
            return Ok(None);
        };
        let Some(image) = super::recover::docker_image_for(major) else {
            let local = crate::pg::docker::LOCAL_IMAGE.replace("{major}", &major.to_string());
            return Err(Failure::environment(format!(
                "the backup `{}` is of PostgreSQL {major}, and this machine has no PostgreSQL {major} server binaries, nor Docker an image of it: build the image {local} (`bash ci/setup.sh` builds PostgreSQL {major} with barman), or install postgresql-{major}",
                backup.id
            )));
        };
        let mut why =
            format!("this machine has no PostgreSQL {major} server binaries: the throwaway recovers in {image}");
        match &*self.barman.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((b, w)) if b.image.is_some() => {
                why.push_str(&format!("; barman runs in {}: {w}", b.image.as_deref().unwrap_or_default()))
            }
            _ => why.push_str(&format!("; barman recover runs on this machine ({})", self.bin.path.display())),
        }
        Ok(Some(InImage { image, network: false, why }))
    }

    fn describe(&self) -> String {
        let mut s = format!("Barman server `{}`", crate::util::visible(&self.server.name));
        if let Some(c) = &self.server.config {
            s.push_str(&format!(" (config {})", c.display()));
        }
        s
    }

    /// Read once per command: a verify asks three times (its pick, the recovery's, the newest
    /// backup for freshness), and each read is a `list-backups` and a `show-backup` per backup
    /// (about 3 s each in an image). A backup taken since is still found by id (`listed`).
    fn list(&self) -> Result<Vec<BaseBackup>, Failure> {
        let mut once = self.listed_once.lock().unwrap_or_else(|e| e.into_inner());
        if !*once {
            let v = self.list_all()?;
            *self.list.lock().unwrap_or_else(|e| e.into_inner()) = v;
            *once = true;
        }
        Ok(self.list.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|b| b.base.clone()).collect())
    }

    fn interrupt(&self) -> Option<tools::Interrupt> {
        Some(self.interrupt.clone())
    }

    /// A backup Barman did not finish or found incomplete (`FAILED`, `WAITING_FOR_WALS`,
    /// `STARTED`, ...) never passes.
    fn verify(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let b = self.listed(&backup.id)?;
        if b.status != "DONE" {
            return Err(Failure::failed(format!(
                "Barman marks the backup `{}` of the server `{}` {}",
                b.base.id,
                crate::util::visible(&self.server.name),
                crate::util::visible(&b.status)
            )));
        }
        Ok(Some(format!("Barman backup `{}` is DONE", b.base.id)))
    }

    fn materialize(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Materialized, Failure> {
        let b = self.listed(&backup.id)?;
        self.server.recover(&self.barman(), &b, into)?;
        // Barman put the WAL after the backup into pg_wal; the throwaway fetches it through
        // its restore_command from a folder of its own instead, so that recovery is run and
        // proven the way every source's is (each segment "restored from archive", the end of
        // the archive reached), and a segment PostgreSQL cannot use is not read as the end.
        let wal = into.data_dir.join(WAL_FOLDER);
        std::fs::create_dir_all(&wal).map_err(|e| Failure::environment(format!("creating {}: {e}", wal.display())))?;
        let pg_wal = into.data_dir.join("pg_wal");
        for e in std::fs::read_dir(&pg_wal).map_err(|e| Failure::failed(format!("{}: {e}", pg_wal.display())))? {
            let e = e.map_err(|e| Failure::environment(format!("{}: {e}", pg_wal.display())))?;
            let name = e.file_name().to_string_lossy().to_string();
            let wal_file = name.len() >= 24 && name.as_bytes()[..24].iter().all(u8::is_ascii_hexdigit)
                || name.ends_with(".history");
            if wal_file && e.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::rename(e.path(), wal.join(&name))
                    .map_err(|er| Failure::environment(format!("moving {}: {er}", e.path().display())))?;
                let _ = std::fs::remove_file(pg_wal.join("archive_status").join(format!("{name}.done")));
            }
        }
        *self.wal_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(wal);
        *self.restored.lock().unwrap_or_else(|e| e.into_inner()) = Some(b.base.id.clone());
        Ok(Materialized {
            bytes: tools::tree_bytes(&into.data_dir) + tools::tree_bytes(&into.tablespaces_dir),
            tablespaces: tools::tablespaces(&into.data_dir),
        })
    }

    /// A backup taken with `backup_method = postgres` carries pg_basebackup's manifest, which
    /// `barman recover` keeps as `backup_manifest.<id>`: pg_verifybackup checks the restored
    /// files against it and parses the backup's WAL range from the segments Barman handed
    /// over. The files Barman itself adds or edits are left out, and said.
    fn verify_materialized(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Option<String>, Failure> {
        let manifest_name = format!("backup_manifest.{}", backup.id);
        let manifest = into.data_dir.join(&manifest_name);
        if !manifest.is_file() {
            return Ok(None);
        }
        let major = backup.pg_major.unwrap_or(15);
        // This machine's pg_verifybackup of the major, else its image's: Debian's wrapper puts
        // none on the image's PATH, so `env` runs it by its path, as the throwaway's user (the
        // files handed to it), the data directory read-only, no network.
        // Its version probes too run through the source's interrupt (`find_pg_tool`).
        let (mut cmd, _env, version) = match tools::find_pg_tool("pg_verifybackup", None, major, &self.interrupt) {
            Ok((path, version, _)) => (crate::child::command(path), None, version),
            Err(e) if self.interrupt.interrupted() => return Err(e),
            Err(_) => {
                let Some(image) = super::recover::docker_image_for(major) else {
                    return Ok(Some(format!(
                        "not checked against {manifest_name}: no pg_verifybackup of PostgreSQL {major} here nor an image of it in Docker"
                    )));
                };
                let run_as = crate::pg::native::RunAs::detect()?;
                run_as.own_tree(&into.data_dir)?;
                let mut c = crate::child::command("env");
                c.arg(format!("/usr/lib/postgresql/{major}/bin/pg_verifybackup"));
                let name = format!(
                    "pgdrill-tool-{}-{}",
                    std::process::id(),
                    crate::pg::native::generate_password().get(..8).unwrap_or("0")
                );
                let ro = [into.data_dir.as_path()];
                let how = crate::pg::image_tools::InImage {
                    ro: &ro,
                    rw: &[],
                    name: Some(&name),
                    user: Some(run_as.ids()),
                    network: false,
                    labelled: true,
                };
                let (c, env) = crate::pg::image_tools::in_image_with(&c, &image, &how)
                    .map_err(|e| Failure::environment(format!("cannot run pg_verifybackup in {image}: {e}")))?;
                (c, Some(env), format!("pg_verifybackup of PostgreSQL {major} in {image}"))
            }
        };
        cmd.arg("--quiet").arg("-m").arg(&manifest);
        let mut ignored = vec![manifest_name, ".barman-recover.info".to_string(), WAL_FOLDER.to_string()];
        // Barman rewrites a configuration file holding a dangerous setting (archive_command)
        // and keeps the original as `<file>.origin`.
        for e in std::fs::read_dir(&into.data_dir).into_iter().flatten().flatten() {
            if let Some(orig) = e.file_name().to_str().and_then(|n| n.strip_suffix(".origin")) {
                ignored.push(format!("{orig}.origin"));
                ignored.push(orig.to_string());
            }
        }
        for i in &ignored {
            cmd.arg("-i").arg(i);
        }
        let wal = self.wal_dir.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match &wal {
            Some(w) => cmd.arg("-w").arg(w),
            None => cmd.arg("-n"),
        };
        cmd.arg(&into.data_dir);
        self.interrupt.verify_backup(&mut cmd, &format!("the Barman backup `{}`", backup.id))?;
        Ok(Some(format!(
            "{version}: the files barman recover restored match the backup's manifest and its WAL range parses (not checked: {}, which Barman adds or edits)",
            ignored.join(", ")
        )))
    }

    /// A copy from the folder `materialize` filled, through the reporting script: a segment
    /// the folder lacks is the archive's end (exit 1); any other failure to copy one (the
    /// file unreadable, an I/O error, the folder unreadable) stops recovery and is recorded
    /// for `judge_fetch`. Before, `cp`'s failure was a failed recovery (exit 1) and a folder
    /// it could not search read as the end. The script carries none of the tools' variables.
    fn restore_command(&self, _backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let wal = self.wal_dir.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(|| {
            Failure::environment("the Barman restore_command was asked for before the backup was materialized")
        })?;
        // The WAL folder is in the data directory, which is in the throwaway's workspace.
        let workspace = wal
            .parent()
            .and_then(std::path::Path::parent)
            .ok_or_else(|| Failure::environment(format!("{} is in no throwaway's workspace", wal.display())))?;
        let how = tools::Reading { not_absent: &[], local: true };
        self.scripts.restore_command_read("cp", &copy_words(&wal), workspace, how).map(Some)
    }

    /// A recovery stopped by the restore_command failing to copy a WAL file (`restore_command`
    /// recorded it): the copy `barman recover` handed over, in the throwaway's own folder,
    /// could not be read. That is this machine's failure, never the backup's: Barman's
    /// catalogue was read by `barman recover`, whose failures are judged where it runs.
    fn judge_fetch(&self, backup: &BaseBackup, recovery: Failure) -> Failure {
        let Some(f) = recovery.source.as_deref().and_then(|s| s.downcast_ref::<tools::FetchFailed>()).cloned() else {
            return recovery;
        };
        let folder = self.wal_dir.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        Failure::environment(format!(
            "recovery of the Barman backup `{}` stopped: the WAL file {} that barman recover handed over could not be copied from {} (exit {}): {}: the throwaway's own copy is unreadable, not missing from Barman's archive; no verdict on the backup",
            backup.id,
            crate::util::visible(&f.segment),
            folder.display(),
            f.code,
            tools::last_lines(&f.said, 3)
        ))
        .with_source(f)
    }

    /// For a throwaway in Docker: the restore_command's script (its WAL folder is in the
    /// workspace, which the container mounts).
    fn paths(&self) -> Vec<PathBuf> {
        self.scripts.dirs()
    }

    /// The newest segment Barman handed over for the timeline: "latest" must replay it; when
    /// it was archived is its file's time in Barman's catalogue.
    fn archive_end(&self, timeline: u32) -> Result<Option<ArchiveEnd>, Failure> {
        let Some(wal) = self.wal_dir.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return Ok(None) };
        let newest = std::fs::read_dir(&wal)
            .map_err(|e| Failure::environment(format!("{}: {e}", wal.display())))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let (t, start) = super::source::parse_segment_name(&name, super::source::DEFAULT_SEGMENT_SIZE)?;
                (t == timeline).then_some((name, start))
            })
            .max_by(|a, b| a.0.cmp(&b.0));
        let Some((segment, segment_start)) = newest else { return Ok(None) };
        let id = self.restored.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        // Asked once per segment: the recovery and the step's freshness both ask.
        let mut known = self.archived.lock().unwrap_or_else(|e| e.into_inner());
        let archived = match &*known {
            Some((i, s, at)) if *i == id && *s == segment => *at,
            _ if id.is_empty() => None,
            _ => {
                let at = self.server.wal_archived_at(&self.barman(), &id, &segment);
                *known = Some((id, segment.clone(), at));
                at
            }
        };
        Ok(Some(ArchiveEnd { segment, segment_start, archived }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"backups_list": [{"backup_label": "'START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\\nCHECKPOINT LOCATION: 0/5000060\\nBACKUP METHOD: streamed\\nBACKUP FROM: primary\\nSTART TIME: 2026-12-06 07:50:36 +01\\nLABEL: Barman backup cloud 20261206T075035\\nSTART TIMELINE: 1\\n'",
      "begin_time": "Sun Dec  6 07:50:35 2026", "begin_wal": "000000010000000000000005", "begin_xlog": "0/5000028",
      "end_time": "Sun Dec  6 07:50:46 2026", "end_wal": "000000010000000000000005", "end_xlog": "0/5000100", "error": null,
      "server_name": "cloud", "size": null, "status": "DONE", "systemid": "7716079782318763570", "timeline": 1,
      "version": 150018, "xlog_segment_size": 16777216, "backup_id": "20261206T075035"}]}"#;

    #[test]
    fn backup_list_json_of_barman_cloud_3_4_is_read_with_its_zone() {
        let v = parse_list(LIST).expect("parsed");
        let b = &v[0];
        assert_eq!(b.base.id, "20261206T075035");
        assert_eq!(b.status, "DONE");
        assert_eq!((b.base.start_lsn, b.base.stop_lsn), (Some(Lsn(0x500_0028)), Some(Lsn(0x500_0100))));
        assert_eq!((b.base.timeline, b.base.pg_major), (Some(1), Some(15)));
        assert_eq!(b.base.system_identifier, Some(7716079782318763570));
        // 07:50:36 +01 is 06:50:36 UTC; the end (07:50:46 on the host's clock) is 06:50:46 UTC.
        let six_fifty = time::macros::datetime!(2026-12-06 06:50:36 UTC);
        assert_eq!((b.base.started, b.base.ended), (Some(six_fifty), Some(six_fifty + time::Duration::seconds(10))));
    }

    #[test]
    fn a_location_names_destination_server_and_endpoint() {
        let c = Cloud::parse("barman-cloud:s3://bkt/pg?server=main&endpoint=http://127.0.0.1:9000").expect("parsed");
        assert_eq!((c.url.as_str(), c.server.as_str()), ("s3://bkt/pg", "main"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(Cloud::parse("barman-cloud:s3://bkt/pg").is_err(), "no server");
        assert!(Cloud::parse("barman-cloud:s3://key:secret@bkt/pg?server=a").is_err(), "credentials");
        assert!(Cloud::parse("barman-cloud:ftp://x?server=a").is_err());
    }

    /// Regression (issue 42): a barman-cloud backup in Azure was named by its id alone in the
    /// signed statement (an S3 one by its `backup.info`'s sha256): an Azure destination is now
    /// read back through an `az://` location, with its account and endpoint.
    #[test]
    fn an_azure_destination_is_read_back_as_an_az_location_with_its_account_and_endpoint() {
        let loc = |l: &str| Cloud::parse(l).expect("parsed").store_location();
        assert_eq!(
            loc("barman-cloud:azure://acct.blob.core.windows.net/drill/pg/?server=main").as_deref(),
            Some("az://drill/pg?account=acct")
        );
        assert_eq!(
            loc("barman-cloud:https://acct.blob.core.windows.net/drill/pg?server=main&provider=azure-blob-storage")
                .as_deref(),
            Some("az://drill/pg?account=acct")
        );
        // Azurite: the account is the path's first part, the endpoint its URL up to it.
        assert_eq!(
            loc("barman-cloud:http://127.0.0.1:10000/devstoreaccount1/drill/pg?server=main&provider=azure-blob-storage")
                .as_deref(),
            Some("az://drill/pg?account=devstoreaccount1&endpoint=http%3A%2F%2F127.0.0.1%3A10000%2Fdevstoreaccount1&allow_http=true")
        );
        for none in [
            // Not Azure's, nor said to be.
            "barman-cloud:http://127.0.0.1:10000/devstoreaccount1/drill/pg?server=main",
            "barman-cloud:azure://example.com/drill/pg?server=main",
            // No container.
            "barman-cloud:azure://acct.blob.core.windows.net?server=main",
            "barman-cloud:http://127.0.0.1:10000/devstoreaccount1?server=main&provider=azure-blob-storage",
        ] {
            assert_eq!(loc(none), None, "{none}");
        }
    }

    /// Regression (issue 42): barman-cloud backups were named by id only in signed evidence;
    /// an S3 destination is now read back as a store location to hash `backup.info`.
    #[test]
    fn an_s3_destination_is_read_back_as_a_store_location_and_others_are_not() {
        let c = Cloud::parse("barman-cloud:s3://bkt/pg/?server=main&endpoint=http://127.0.0.1:9000").expect("parsed");
        assert_eq!(
            c.store_location().as_deref(),
            Some("s3://bkt/pg?endpoint=http%3A%2F%2F127.0.0.1%3A9000&path_style=true&allow_http=true")
        );
        let aws = Cloud::parse("barman-cloud:s3://bkt/pg?server=main").expect("parsed");
        assert_eq!(aws.store_location().as_deref(), Some("s3://bkt/pg"));
        for other in [
            "barman-cloud:s3://bkt/pg?server=main&provider=google-cloud-storage",
            "barman-cloud:gs://bkt/pg?server=main&provider=aws-s3",
        ] {
            assert_eq!(Cloud::parse(other).expect("parsed").store_location(), None, "{other}");
        }
    }

    /// Regression (issue 39): a backup's `backup.info` was read through a store the digest
    /// opened on its own, outside the command's `storage::Opened` (which owns what a run
    /// opened: one view and pinned versions per object, the uploads it aborts at exit). It is
    /// now opened among the stores given (here a store that refuses connections: the read
    /// fails as the environment's, and the store is the command's all the same).
    #[test]
    fn a_backup_infos_store_is_opened_among_the_commands_stores() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        let c = Cloud::parse(&format!("barman-cloud:s3://bkt/pg?server=main&endpoint=http://127.0.0.1:{port}"))
            .expect("parsed");
        let stores = crate::storage::Opened::default();
        assert_eq!(format!("{stores:?}"), "[]");
        let e = c.info_sha256("20261207T050000", &stores).expect_err("nothing listens");
        assert_eq!(e.class, crate::error::Class::Environment, "{e}");
        assert!(e.message.contains("barman-cloud:s3://bkt/pg/main/base/20261207T050000/backup.info"), "{e}");
        let opened = format!("{stores:?}");
        assert_eq!(opened.matches("s3://bkt/pg").count(), 1, "opened among the command's stores: {opened}");
    }

    /// Regression (issue 39): a barman-cloud backup in Google Cloud Storage was named by its id
    /// alone (no store read `gs://`), and a `gs://` destination without `provider=` was handed
    /// to barman-cloud as aws-s3, which cannot read it. Now Google's provider is the default
    /// for a Google URL and the destination is read back as a `gs://` location.
    #[test]
    fn a_google_destination_is_read_back_as_a_gs_location_and_gets_googles_provider() {
        let c = |l: &str| Cloud::parse(l).expect("parsed");
        for (given, location) in [
            ("barman-cloud:gs://bkt/pg/?server=main", "gs://bkt/pg"),
            ("barman-cloud:gs://bkt?server=main&provider=google-cloud-storage", "gs://bkt"),
            ("barman-cloud:https://console.cloud.google.com/storage/browser/bkt/a/b?server=main", "gs://bkt/a/b"),
        ] {
            assert_eq!(c(given).store_location().as_deref(), Some(location), "{given}");
            assert_eq!(c(given).common(), vec!["--cloud-provider=google-cloud-storage".to_string()], "{given}");
        }
        assert_eq!(c("barman-cloud:s3://bkt/pg?server=main").common(), Vec::<String>::new(), "S3 keeps the default");
        let t = Binary { path: PathBuf::from("/usr/bin/barman-cloud-restore"), version: "x".into() };
        assert_eq!(
            c("barman-cloud:gs://bkt/pg?server=main").wal_restore(&t),
            ["/usr/bin/barman-cloud-wal-restore", "--cloud-provider=google-cloud-storage", "gs://bkt/pg", "main"]
        );
    }

    #[test]
    fn the_wal_restore_names_destination_and_server() {
        let c =
            Cloud::parse("barman-cloud:s3://bkt/my%20dir?server=a%25b&endpoint=http://127.0.0.1:9").expect("parsed");
        let t = Binary { path: PathBuf::from("/usr/bin/barman-cloud-restore"), version: "x".into() };
        let w = c.wal_restore(&t);
        assert_eq!(w[0], "/usr/bin/barman-cloud-wal-restore");
        assert_eq!(&w[1..], ["--endpoint-url=http://127.0.0.1:9", "s3://bkt/my%20dir", "a%b"]);
    }

    /// Regression (issue 39): barman-cloud-wal-restore's failures inside the restore_command
    /// were all the backup's (exit 1, "exit code 126"), a store that stopped answering too.
    /// Its exit code and words decide: bytes that do not decompress are the archive's damage,
    /// naming the segment; a store that does not answer, refused credentials, refused
    /// arguments and anything else are the environment's, naming the store.
    #[test]
    fn barman_cloud_wal_restores_failures_are_judged_by_what_they_are_about() {
        use crate::error::Class;
        let seg = "000000010000000000000007";
        let f = |code: i32, said: &str| tools::FetchFailed { code, segment: seg.into(), said: said.into() };
        let at = "2026-12-07 09:50:00,123 [4242] ERROR: Barman cloud WAL restore exception: ";
        for damage in [
            "Error -3 while decompressing data: invalid distance too far back",
            "CRC check failed 0x6f1c2e3a != 0x1b2c3d4e",
            "Not a gzipped file (b'\\x00\\x01')",
            "Compressed file ended before the end-of-stream marker was reached",
            "Invalid data stream",
        ] {
            let (class, why) = cloud_fetch_verdict(&f(4, &format!("{at}{damage}")), "s3://bkt/pg");
            assert_eq!(class, Class::Failed, "{damage}");
            assert!(why.contains(&format!("the WAL segment {seg} does not decompress")), "{why}");
        }
        let store = "s3://bkt/pg (endpoint http://127.0.0.1:9)";
        let refused = "2026-12-07 09:50:00,123 [4242] ERROR: Can't connect to cloud provider: Could not connect to the endpoint URL: \"http://127.0.0.1:9/bkt\"";
        let (class, why) = cloud_fetch_verdict(&f(2, refused), store);
        assert_eq!(class, Class::Environment);
        assert!(why.contains(store) && why.ends_with("no verdict on the backup"), "{why}");
        let forbidden = format!("{at}An error occurred (403) when calling the HeadBucket operation: Forbidden");
        let (class, why) = cloud_fetch_verdict(&f(4, &forbidden), store);
        assert_eq!(class, Class::Environment, "refused credentials are no damage");
        assert!(why.contains(store), "{why}");
        for code in [3, 120, 137] {
            assert_eq!(cloud_fetch_verdict(&f(code, "Invalid data stream"), store).0, Class::Environment, "{code}");
        }
        assert_eq!(
            tool_words(refused),
            "ERROR: Can't connect to cloud provider: Could not connect to the endpoint URL: \"http://127.0.0.1:9/bkt\""
        );
    }

    /// Regression (issue 39): barman-cloud-wal-restore exits 1 for a bucket that is gone as for
    /// a segment the store lacks, and PostgreSQL read both as the archive's end: recovery
    /// ended early and promoted. The script now records an exit 1 whose words are
    /// `NOT_ABSENT`'s, and the verdict is the environment's naming the store; a Python crash
    /// (exit 1 too) is no absent segment either.
    #[test]
    fn a_bucket_gone_or_a_crashed_wal_restore_is_the_environments_not_the_end_of_the_wal() {
        use crate::error::Class;
        let f =
            |said: &str| tools::FetchFailed { code: 1, segment: "00000001000000000000000A".into(), said: said.into() };
        let store = "s3://bkt/pg (endpoint http://127.0.0.1:9)";
        let gone = "2026-12-07 13:00:00,123 [4242] ERROR: Bucket bkt does not exist";
        assert!(NOT_ABSENT.iter().any(|w| gone.contains(w)), "the script stops on these words");
        let (class, why) = cloud_fetch_verdict(&f(gone), store);
        assert_eq!(class, Class::Environment, "{why}");
        assert!(why.contains(store) && why.contains("does not exist"), "{why}");
        assert!(why.contains("not the end of the WAL") && why.ends_with("no verdict on the backup"), "{why}");
        let crash = "Traceback (most recent call last):\n  File \"/usr/bin/barman-cloud-wal-restore\", line 33, in <module>\nModuleNotFoundError: No module named 'boto3'";
        assert!(NOT_ABSENT.iter().any(|w| crash.contains(w)), "the script stops on these words");
        let (class, why) = cloud_fetch_verdict(&f(crash), store);
        assert_eq!(class, Class::Environment, "{why}");
        assert!(why.contains("crashed"), "{why}");
        // A segment the store lacks is said at INFO, below the tool's default level: nothing on
        // stderr, which no word may match (an empty one would stop at the archive's end).
        assert!(NOT_ABSENT.iter().all(|w| !w.trim().is_empty()));
    }

    /// Regression (issue 39): barman-cloud keeps no archive end, so a "latest" that ran out
    /// early passed. The end is the newest segment listed under `<server>/wals/`, whatever
    /// barman-cloud's compression of it, of the newest timeline from the backup's on, dated by
    /// its object; history files, backup labels and partial segments are not segments.
    #[test]
    fn barman_clouds_archive_end_is_its_newest_listed_segment_whatever_its_compression() {
        let at = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + s);
        let meta = |key: &str, s: u64| crate::storage::Meta {
            key: format!("demo/wals/{key}"),
            size: 1,
            modified: at(s),
            version: None,
        };
        let mut listed = vec![
            meta("0000000100000000/000000010000000000000003.gz", 3),
            meta("0000000100000000/000000010000000000000004.bz2", 4),
            meta("0000000100000000/000000010000000000000005.00000028.backup", 5),
            meta("0000000100000000/000000010000000000000006.zst", 6),
            meta("0000000100000000/000000010000000000000009.partial", 9),
            meta("0000000100000000/00000001000000000000000A.partial.gz", 10),
            meta("0000000100000001/000000010000000100000000.lz4", 0),
            meta("00000002.history", 11),
            meta("0000000100000000/000000010000000000000007.gpg", 7),
        ];
        let end = wal_end(&listed, 1).expect("an end");
        assert_eq!(end.segment, "000000010000000100000000", "the newest by location, not by time");
        assert_eq!(end.segment_start, Lsn(1 << 32));
        assert_eq!(end.archived, Some(time::OffsetDateTime::from(at(0))));
        listed.retain(|m| !m.key.ends_with(".lz4"));
        assert_eq!(wal_end(&listed, 1).map(|e| e.segment).as_deref(), Some("000000010000000000000006"));
        for suffix in [".xz", ".snappy", ""] {
            let key = format!("0000000100000000/000000010000000000000008{suffix}");
            let e = wal_end(&[meta(&key, 8)], 1).unwrap_or_else(|| panic!("no segment in {key}"));
            assert_eq!(e.segment, "000000010000000000000008", "{key}");
        }
        // Recovery follows the newest timeline: its segments are the end, an older one's are not.
        listed.push(meta("0000000200000000/000000020000000000000005.gz", 12));
        assert_eq!(wal_end(&listed, 1).map(|e| e.segment).as_deref(), Some("000000020000000000000005"));
        assert_eq!(wal_end(&listed, 3), None);
        assert_eq!(wal_segment("demo/wals/00000002.history"), None);
    }

    /// Regression (issue 39): only a "latest" short of the archive's end was judged by the
    /// store listed again; a time (restore point, LSN, ...) target whose WAL was removed while
    /// it ran failed the backup with the target's own words (exit 1). Every failed recovery is
    /// now judged so: segments the recovery could read that are gone are the environment's,
    /// no verdict, naming the store, how many and the target; nothing gone (or only WAL older
    /// than the backup, which a retention run removes) leaves the failure as it was; a store
    /// that cannot be listed again is no verdict either.
    #[test]
    fn a_failed_recovery_of_any_target_is_no_verdict_when_wal_it_could_read_was_removed_meanwhile() {
        use crate::error::Class;
        use std::collections::HashSet;
        let store = "s3://bkt/pg (endpoint http://127.0.0.1:9)";
        let before: Vec<String> = ["000000010000000000000003", "000000010000000000000005", "000000010000000000000006"]
            .map(String::from)
            .to_vec();
        let listed = |names: &[&str]| -> Result<Option<HashSet<String>>, Failure> {
            Ok(Some(names.iter().map(|n| n.to_string()).collect()))
        };
        let from = Some((1, Lsn((5 << 24) | 0x28)));
        let target = || {
            Failure::failed(
                "recovery did not reach time 2026-12-07 18:55:01.123456+00: the server says \"recovery ended before configured recovery target was reached\"",
            )
        };

        let judged = relisted("B1", target(), &before, listed(&["000000010000000000000003"]), from, store);
        assert_eq!(judged.class, Class::Environment, "{}", judged.message);
        let m = &judged.message;
        assert!(m.starts_with("the backup `B1`: recovery did not reach time 2026-12-07 18:55:01.123456+00"), "{m}");
        assert!(m.contains(&format!("2 of the 3 WAL segments the store {store} listed before the recovery")), "{m}");
        assert!(m.contains("000000010000000000000005, 000000010000000000000006"), "{m}");
        assert!(m.ends_with("were removed from the store during recovery: no verdict on the backup"), "{m}");

        // Nothing gone, or only WAL from before the backup's start: the backup's failure.
        let all: Vec<&str> = before.iter().map(String::as_str).collect();
        for now in [&all[..], &all[1..]] {
            let judged = relisted("B1", target(), &before, listed(now), from, store);
            assert_eq!((judged.class, judged.message), (Class::Failed, target().message), "{now:?}");
        }
        // Without the backup's start, every segment listed before counts.
        let judged = relisted("B1", target(), &before, listed(&all[1..]), None, store);
        assert_eq!(judged.class, Class::Environment, "{}", judged.message);
        assert!(judged.message.contains("1 of the 3 WAL segments"), "{}", judged.message);

        // "latest" keeps its words, and its typed cause.
        let end =
            ArchiveEnd { segment: "000000010000000000000006".into(), segment_start: Lsn(6 << 24), archived: None };
        let short = ShortOfEnd { replayed: Lsn((5 << 24) | 0x100), end };
        let latest =
            Failure::failed("recovery did not reach the end of the archive (latest): replay ended at 0/5000100")
                .with_source(short.clone());
        let judged = relisted("B1", latest, &before, listed(&[]), from, store);
        assert_eq!(judged.class, Class::Environment, "{}", judged.message);
        assert!(
            judged.message.starts_with("recovery of the backup `B1` to the end of the archive ended at 0/5000100, before the archive's newest segment 000000010000000000000006: 2 of the 3"),
            "{}",
            judged.message
        );
        assert_eq!(judged.source.as_deref().and_then(|s| s.downcast_ref::<ShortOfEnd>()), Some(&short));

        // A store that cannot be listed again cannot tell: no verdict; one pgdrill cannot list
        // at all leaves the recovery's verdict.
        let judged = relisted("B1", target(), &before, Err(Failure::environment("cannot list")), from, store);
        assert_eq!(judged.class, Class::Environment, "{}", judged.message);
        assert!(judged.message.contains(&format!("the store {store} cannot be listed again")), "{}", judged.message);
        assert!(judged.message.starts_with("recovery did not reach time"), "{}", judged.message);
        assert_eq!(relisted("B1", target(), &before, Ok(None), from, store).class, Class::Failed);
    }

    /// Regression (issue 39): a barman-cloud source whose store did not answer cost each
    /// barman-cloud call its client's retries (two minutes for Google's) before exit 3. The
    /// endpoint is probed first: one that refuses is the environment's failure naming it (its
    /// user and password never shown); one that answers passes; a cloud's own endpoint, which
    /// nothing names, is not probed.
    #[test]
    fn a_barman_cloud_store_that_does_not_answer_is_named_before_any_call() {
        let (open, _) = answering_store();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            l.local_addr().expect("addr").port()
        };
        let none: Vec<(OsString, OsString)> = Vec::new();
        let at = |port: u16| {
            Cloud::parse(&format!(
                "barman-cloud:s3://bkt/pg?server=main&endpoint=http%3A%2F%2Fkeyid%3Asekrit%40127.0.0.1%3A{port}%2F"
            ))
            .expect("parsed")
        };
        at(open).probe(&none).expect("a store that answers");
        let e = at(closed).probe(&none).expect_err("a store that does not answer");
        assert_eq!(e.class, crate::error::Class::Environment, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("does not answer at http://127.0.0.1:{closed}")), "{msg}");
        assert!(msg.contains("no barman-cloud call was made") && msg.contains("`main`"), "{msg}");
        assert!(!msg.contains("sekrit") && !msg.contains("keyid"), "the endpoint's credentials were shown: {msg}");
        assert_eq!(at(closed).shown_store(), format!("s3://bkt/pg (endpoint http://127.0.0.1:{closed})"));
        // Google's emulator, named in the tools' environment; a cloud's own endpoint.
        let gcs = Cloud::parse("barman-cloud:gs://bkt/pg?server=main").expect("parsed");
        gcs.probe(&none).expect("Google's own endpoint is not probed");
        let emulator = vec![(OsString::from("STORAGE_EMULATOR_HOST"), OsString::from(format!("127.0.0.1:{closed}")))];
        let e = gcs.probe(&emulator).expect_err("a dead emulator");
        assert!(e.to_string().contains(&format!("http://127.0.0.1:{closed}")), "{e}");
        Cloud::parse("barman-cloud:s3://bkt/pg?server=main").expect("parsed").probe(&none).expect("AWS is not probed");
    }

    /// A store that answers any HTTP request with 403 (an answer all the same), on a port of
    /// its own, for as long as the test runs; and one that accepts connections and never
    /// answers (their ports).
    fn answering_store() -> (u16, u16) {
        use std::io::{Read as _, Write as _};
        let answering = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let ports = (answering.local_addr().expect("addr").port(), silent.local_addr().expect("addr").port());
        std::thread::spawn(move || {
            for mut c in answering.incoming().flatten() {
                // The whole request first: a close with it unread would reset the connection.
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = c.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in silent.incoming().flatten() {
                held.push(c);
            }
        });
        ports
    }

    /// Regression (issue 39): the probe was a TCP connection to an endpoint `endpoint=` named:
    /// a store that accepts connections and never answers passed it, and cost barman-cloud's
    /// read timeouts and retries; an endpoint named by `AWS_ENDPOINT_URL(_S3)` was never
    /// probed. The probe is now an HTTP request (over TLS for https) with a read timeout,
    /// and S3's endpoint variables are read in botocore's order.
    #[test]
    fn a_store_that_accepts_and_never_answers_or_one_the_environment_names_is_probed() {
        let (open, quiet) = answering_store();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
            l.local_addr().expect("addr").port()
        };
        let none: Vec<(OsString, OsString)> = Vec::new();
        for scheme in ["http", "https"] {
            let c = Cloud::parse(&format!(
                "barman-cloud:s3://bkt/pg?server=main&endpoint={scheme}%3A%2F%2Fkeyid%3Asekrit%40127.0.0.1%3A{quiet}"
            ))
            .expect("parsed");
            let e = c.probe(&none).expect_err("a store that never answers");
            assert_eq!(e.class, crate::error::Class::Environment, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("does not answer at {scheme}://127.0.0.1:{quiet}")), "{msg}");
            assert!(msg.contains("accepted the connection but did not answer"), "{msg}");
            assert!(!msg.contains("sekrit") && !msg.contains("keyid"), "the endpoint's credentials were shown: {msg}");
        }
        let env = |vars: &[(&str, String)]| -> Vec<(OsString, OsString)> {
            vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
        };
        let s3 = Cloud::parse("barman-cloud:s3://bkt/pg?server=main").expect("parsed");
        let url = |port: u16| format!("http://keyid:sekrit@127.0.0.1:{port}");
        let e = s3.probe(&env(&[("AWS_ENDPOINT_URL", url(closed))])).expect_err("AWS_ENDPOINT_URL refuses");
        let msg = e.to_string();
        assert!(msg.contains(&format!("does not answer at http://127.0.0.1:{closed}")), "{msg}");
        assert!(msg.contains("AWS_ENDPOINT_URL") && !msg.contains("sekrit"), "{msg}");
        s3.probe(&env(&[("AWS_ENDPOINT_URL", url(open))])).expect("AWS_ENDPOINT_URL answers");
        // S3's own variable first, as botocore reads them.
        let both = env(&[("AWS_ENDPOINT_URL_S3", url(closed)), ("AWS_ENDPOINT_URL", url(open))]);
        let e = s3.probe(&both).expect_err("AWS_ENDPOINT_URL_S3 refuses");
        assert!(e.to_string().contains("AWS_ENDPOINT_URL_S3"), "{e}");
        let ignored = env(&[("AWS_ENDPOINT_URL", url(closed)), ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true".into())]);
        s3.probe(&ignored).expect("endpoints the environment says to ignore are not probed");
        // `endpoint=` wins over the environment; another provider's destination ignores S3's.
        let named = Cloud::parse(&format!("barman-cloud:s3://bkt/pg?server=main&endpoint=http://127.0.0.1:{open}"));
        named.expect("parsed").probe(&env(&[("AWS_ENDPOINT_URL", url(closed))])).expect("the source's endpoint");
        let gcs = Cloud::parse("barman-cloud:gs://bkt/pg?server=main").expect("parsed");
        gcs.probe(&env(&[("AWS_ENDPOINT_URL", url(closed))])).expect("S3's variable is not Google's");
    }

    #[test]
    fn an_endpoints_host_and_port_are_read_without_its_credentials() {
        let e = |url: &str| endpoint_parts(url).map(|e| (e.scheme, e.host, e.port));
        let ep = |s: &str, h: &str, p: u16| Some((s.to_string(), h.to_string(), p));
        assert_eq!(e("http://127.0.0.1:9000"), ep("http", "127.0.0.1", 9000));
        assert_eq!(e("HTTPS://u:p@store.example:8443/path?x#y"), ep("https", "store.example", 8443));
        assert_eq!(e("https://store.example/"), ep("https", "store.example", 443));
        assert_eq!(e("localhost:4443"), ep("http", "localhost", 4443));
        assert_eq!(e("http://[::1]:9000/x"), ep("http", "::1", 9000));
        assert_eq!(endpoint_parts("http://[::1]:9000").map(|e| e.shown()).as_deref(), Some("http://[::1]:9000"));
        for bad in ["ftp://host", "http://", "http://host:port", "http://:80"] {
            assert_eq!(e(bad), None, "{bad}");
        }
    }

    /// Regression (issue 39): every `barman recover` failure was the backup's (exit 1), a
    /// catalogue file Barman may not read and a configuration it cannot read too. Barman's own
    /// words decide: those are the environment's; a WAL file missing or whose bytes do not
    /// decompress stays the backup's.
    #[test]
    fn barman_recovers_failures_of_the_environment_are_not_the_backups() {
        let exception = |err: &str| {
            format!("EXCEPTION: {{'ret': 2, 'err': '{err}\\n', 'out': ''}}\nSee log file for more details.")
        };
        let denied = exception("/bin/sh: 1: cannot open /var/lib/barman/demo/wals/0000000100000000/000000010000000000000007: Permission denied");
        assert!(recover_environment(&denied).is_some_and(|w| w.contains("permission denied")));
        let parse =
            "EXCEPTION: Source contains parsing errors: '/etc/barman.conf'\n\t[line 12]: 'not an option line\\n'";
        assert!(recover_environment(parse).is_some_and(|w| w.contains("configuration")));
        assert!(recover_environment("ERROR: Unknown server 'demo'").is_some());
        for backups in [
            exception("/bin/sh: 1: cannot open /var/lib/barman/demo/wals/0000000100000000/000000010000000000000007: No such file"),
            exception("gzip: stdin: invalid compressed data--crc error"),
            "ERROR: rsync error: some files/attrs were not transferred (code 23)".to_string(),
        ] {
            assert_eq!(recover_environment(&backups), None, "{backups}");
        }
    }

    /// Regression (issue 39): the throwaway of a Barman backup read the WAL `barman recover`
    /// handed over with a `cp` whose failure was a failed recovery (the backup's, exit 1) and
    /// with a folder it could not search read as the archive's end. Its restore_command now
    /// copies through the reporting script: a name the folder lacks is the end (1), anything
    /// else is recorded and stops recovery; the verdict is then the environment's.
    #[test]
    fn a_barman_wal_copy_that_fails_stops_recovery_and_only_a_missing_file_is_the_end() {
        let ws = tempfile::tempdir().expect("tmp");
        let wal = ws.path().join("data").join(WAL_FOLDER);
        std::fs::create_dir_all(wal.join("000000010000000000000004")).expect("a name that is no file");
        std::fs::write(wal.join("000000010000000000000003"), b"segment three").expect("segment");
        let dest = ws.path().join("RECOVERYXLOG");
        let scripts = tools::Scripts::default();
        let how = tools::Reading { not_absent: &[], local: true };
        let run = |folder: &std::path::Path, segment: &str| {
            let cmd = scripts.restore_command_read("cp", &copy_words(folder), ws.path(), how).expect("a script");
            let cmd = cmd.replace("%f", segment).replace("%p", &dest.display().to_string());
            crate::child::output(crate::child::command("/bin/sh").args(["-c", &cmd])).expect("sh").status.code()
        };
        assert_eq!(run(&wal, "000000010000000000000003"), Some(0));
        assert_eq!(std::fs::read(&dest).expect("copied"), b"segment three");
        assert_eq!(run(&wal, "000000010000000000000005"), Some(1), "a segment the folder lacks is the end");
        assert_eq!(run(&wal, "00000002.history"), Some(1));
        assert_eq!(tools::fetch_failed(ws.path()), None, "the end is no failure");
        assert_eq!(run(&wal, "000000010000000000000004"), Some(126), "there, but no file it can copy");
        let f = tools::fetch_failed(ws.path()).expect("recorded");
        assert_eq!((f.code, f.segment.as_str()), (2, "000000010000000000000004"), "{f:?}");
        assert!(f.said.contains("cp: ") && f.said.contains("directory"), "cp's own words: {f:?}");
        assert_eq!(run(&ws.path().join("gone"), "000000010000000000000003"), Some(126), "a folder it cannot list");
        let f = tools::fetch_failed(ws.path()).expect("recorded");
        assert_eq!(f.code, 2, "{f:?}");
    }

    const SHOW: &str = r#"{"backup_id": "20261206T100300", "base_backup_information": {"begin_lsn": "0/3000028",
      "begin_time_timestamp": "1796551380", "begin_wal": "000000010000000000000003", "disk_usage_bytes": 23187814,
      "end_lsn": "0/4000000", "end_time_timestamp": "1796551384", "end_wal": "000000010000000000000003", "timeline": 1},
      "postgresql_version": 150018, "status": "DONE", "tablespaces": [{"name": "ts one", "location": "/srv/ts", "oid": 16390}]}"#;

    #[test]
    fn show_backup_json_of_barman_3_4_is_read() {
        let b = parse_show_backup(&serde_json::from_str(SHOW).expect("json")).expect("parsed");
        assert_eq!((b.base.id.as_str(), b.status.as_str()), ("20261206T100300", "DONE"));
        assert_eq!((b.base.start_lsn, b.base.stop_lsn), (Some(Lsn(0x300_0028)), Some(Lsn(0x400_0000))));
        assert_eq!(b.base.ended.map(|t| t.unix_timestamp()), Some(1796551384));
        assert_eq!((b.base.timeline, b.base.pg_major, b.base.size), (Some(1), Some(15), Some(23187814)));
        assert_eq!(b.tablespaces, vec![("ts one".to_string(), 16390)]);
        assert!(parse_show_backup(&serde_json::json!({"status": "DONE"})).is_err(), "no id");
    }

    /// Regression (issue 39): Barman 3.13 answers `system_id` (3.4: `systemid`) and sizes a
    /// backup as `backup_size_bytes`: the system identifier was lost, so a recovery of a 17
    /// server's backup was never checked against its system.
    #[test]
    fn show_backup_json_of_barman_3_13_keeps_its_system_and_size() {
        let v = serde_json::json!({"backup_id": "20261206T230847", "status": "DONE", "postgresql_version": 170012,
            "system_id": "7716331851733340182", "base_backup_information": {"begin_lsn": "0/2000028",
            "end_lsn": "0/3000060", "begin_time_timestamp": "1796598527", "end_time_timestamp": "1796598533",
            "backup_size_bytes": 23650072, "timeline": 1}});
        let b = parse_show_backup(&v).expect("parsed");
        assert_eq!(b.base.system_identifier, Some(7716331851733340182));
        assert_eq!((b.base.pg_major, b.base.size, b.base.timeline), (Some(17), Some(23650072), Some(1)));
    }

    /// Regression (issue 39): Barman 3.4 lists none of the backups Barman 3.13 keeps in
    /// `meta/` and says nothing, so pgdrill read "no base backup". Their names are what a
    /// listing must hold, wherever the server's section puts its backup_directory.
    #[test]
    fn backups_in_meta_that_a_listing_lacks_are_named() {
        let t = tempfile::tempdir().expect("tmp");
        let home = t.path().join("home");
        let meta = home.join("demo/meta");
        std::fs::create_dir_all(&meta).expect("meta");
        for f in ["20261206T230847-backup.info", "20261207T010000-backup.info", "notes.txt"] {
            std::fs::write(meta.join(f), "status=DONE\n").expect("file");
        }
        let conf = t.path().join("barman.conf");
        std::fs::write(
            &conf,
            format!("[barman]\nbarman_home = {}\n\n[demo]\nbackup_method = postgres\n", home.display()),
        )
        .expect("conf");
        let s = Server::parse(&format!("barman://demo?config={}", conf.display())).expect("parsed");
        assert_eq!(s.unlisted(&[]), ["20261206T230847", "20261207T010000"]);
        let listed = |id: &str| ServerBackup {
            base: BaseBackup { id: id.into(), ..Default::default() },
            status: "DONE".into(),
            tablespaces: Vec::new(),
        };
        assert_eq!(s.unlisted(&[listed("20261206T230847")]), ["20261207T010000"]);
        // The server's section in the configuration folder, with a backup_directory of its own.
        let d = t.path().join("barman.d");
        std::fs::create_dir_all(d.join("elsewhere/meta")).expect("mkdir");
        std::fs::write(d.join("elsewhere/meta/20261208T000000-backup.info"), "").expect("file");
        std::fs::write(d.join("demo.conf"), format!("[demo]\nbackup_directory = {}\n", d.join("elsewhere").display()))
            .expect("server conf");
        std::fs::write(
            &conf,
            format!("[barman]\nbarman_home = {}\nconfiguration_files_directory = {}\n", home.display(), d.display()),
        )
        .expect("conf");
        assert_eq!(s.unlisted(&[]), ["20261208T000000"]);
    }

    #[test]
    fn a_barman_location_names_server_and_config_and_the_config_its_user() {
        let s = Server::parse("barman://pg%20main?config=/etc/barman.conf").expect("parsed");
        assert_eq!(s.name, "pg main");
        assert_eq!(s.config.as_deref(), Some(std::path::Path::new("/etc/barman.conf")));
        assert!(Server::parse("barman://?config=/x").is_err(), "no server");
        assert!(Server::parse("barman://all").is_err(), "`all` is every server to barman");
        assert!(Server::parse("barman://a?password=x").is_err(), "unknown option");
        let conf =
            "; comment\n[barman]\nbarman_home = /var/lib/barman\nBarman_User : postgres\n[main]\nbarman_user = other\n";
        assert_eq!(ini_value(conf, "barman", "barman_user").as_deref(), Some("postgres"));
        assert_eq!(ini_value(conf, "main", "barman_home"), None);
    }

    /// Regression (issue 39): barman in an image ran as this machine's uid of barman_user,
    /// looked up by name, and a catalogue whose user this machine lacks was exit 3 ("does not
    /// exist"). It runs as the owner of barman_home then; a root-owned home names the fix.
    #[test]
    fn a_barman_user_this_machine_lacks_runs_as_the_owner_of_barman_home() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the owner of barman_home is only taken when pgdrill runs as root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("mkdir");
        let ids = |uid: u32, gid: u32| (Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
        let (u, g) = ids(4321, 4322);
        nix::unistd::chown(&home, u, g).expect("chown");
        let conf = dir.path().join("barman.conf");
        let text = format!("[barman]\nbarman_user = pgdrill-no-such-user\nbarman_home = {}\n", home.display());
        std::fs::write(&conf, &text).expect("conf");
        let s = Server::parse(&format!("barman://demo?config={}", conf.display())).expect("location");
        let id = s.identity(&text).expect("identity");
        assert_eq!((id.user.as_str(), id.uid, id.gid), ("pgdrill-no-such-user", 4321, 4322));
        let (u, g) = ids(0, 0);
        nix::unistd::chown(&home, u, g).expect("chown");
        let e = s.identity(&text).expect_err("a root-owned home").to_string();
        assert!(e.contains("does not exist on this machine") && e.contains("create the user"), "{e}");
        // A user this machine has: its ids, whoever owns the home.
        let text = text.replace("pgdrill-no-such-user", "nobody");
        std::fs::write(&conf, &text).expect("conf");
        let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("nobody");
        let id = s.identity(&text).expect("identity");
        assert_eq!((id.uid, id.gid), (nobody.uid.as_raw(), nobody.gid.as_raw()));
    }
}
