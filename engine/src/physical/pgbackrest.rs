//! A pgBackRest repository as a source of physical backups: listed with `pgbackrest info
//! --output=json`, restored with `pgbackrest restore` into the throwaway's data directory,
//! its WAL fetched by `pgbackrest archive-get` as the throwaway's restore_command. The team's
//! own configuration file and stanza are used as they are; pgdrill adds only what keeps the
//! team's server out of it (`--pg1-path` of the throwaway, always on the command line, so a
//! configuration's `pg1-path` naming the production data directory is never restored into).
//!
//! Secrets (`PGBACKREST_REPO1_CIPHER_PASS`, `PGBACKREST_REPO1_S3_KEY`, ...) reach the tool
//! from the environment only (`tools::tool_env`), never argv, never a log line.
//!
//! This module must not read the repository's files itself: pgBackRest is the one reader of
//! its format (checksums, encryption, compression, incremental references).

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::source::{self, ArchiveEnd, BaseBackup, InImage, Lsn, MaterializeInto, Materialized, PhysicalSource, Tool};
use super::tools::{self, Binary};
use crate::error::Failure;

/// How a pgBackRest source is written:
/// `pgbackrest://STANZA?config=PATH&config-include-path=DIR&config-path=DIR&repo=PATH&bin=PATH`.
pub const SCHEME: &str = "pgbackrest://";

/// The Debian package holding the binary (named when it is missing).
pub const PACKAGE: &str = "pgbackrest";

/// pgBackRest's configuration file when none is given.
const DEFAULT_CONFIG: &str = "/etc/pgbackrest/pgbackrest.conf";

/// pgBackRest's folder of more configuration files (`*.conf`) when none is given; read only
/// when no configuration file is named either (pgBackRest's own rule).
const DEFAULT_INCLUDE: &str = "/etc/pgbackrest/conf.d";

/// The repository options (`repo1-path`, `repo1-type`, ...) a configuration file sets, in any
/// section, as (key, value).
fn repo_options(config: &str) -> Vec<(String, String)> {
    config
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| is_repo_option(k))
        .collect()
}

/// The repository options pgdrill's environment sets (`PGBACKREST_REPO1_PATH` is
/// `repo1-path`), which the tool's children get.
fn env_repo_options() -> Vec<(String, String)> {
    tools::tool_env()
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.to_str()?.strip_prefix("PGBACKREST_")?.to_lowercase().replace('_', "-");
            Some((k, v.into_string().ok()?))
        })
        .filter(|(k, _)| is_repo_option(k))
        .collect()
}

/// The value of a variable of pgdrill's environment that the tool's children get.
fn tool_var(name: &str) -> Option<PathBuf> {
    tools::tool_env().into_iter().find(|(k, _)| k == name).map(|(_, v)| PathBuf::from(v))
}

/// `repo<N>-...`.
fn is_repo_option(key: &str) -> bool {
    key.strip_prefix("repo").is_some_and(|r| {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        n > 0 && r[n..].starts_with('-')
    })
}

/// The pgBackRest of a Docker image that serves a backup (see `PgBackRest::placement`).
#[derive(Debug, Clone)]
struct Imaged {
    at: InImage,
    bin: Binary,
}

/// A stanza of a pgBackRest repository, as the team configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub stanza: String,
    /// `--config`: the team's pgbackrest.conf (default: pgBackRest's own default).
    pub config: Option<PathBuf>,
    /// `--config-include-path`: the team's folder of more `*.conf` files, which pgBackRest
    /// reads beside a configuration named by `config` only when told.
    pub include: Option<PathBuf>,
    /// `--config-path`: the folder pgBackRest finds `pgbackrest.conf` and `conf.d` in when
    /// neither is named (a team that keeps its configuration outside /etc/pgbackrest).
    pub config_path: Option<PathBuf>,
    /// `--repo1-path`: a local repository's path, when it is not (or not only) in the config.
    pub repo_path: Option<PathBuf>,
    /// The pgbackrest binary to run (default: `pgbackrest` on PATH).
    pub bin: Option<PathBuf>,
}

/// One backup as `pgbackrest info` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The label (`20261206-064957F_20261206-064959I`) is the id.
    pub base: BaseBackup,
    /// `full`, `diff` or `incr`.
    pub kind: String,
    /// pgBackRest found page checksum errors while taking it.
    pub error: bool,
    /// The pgBackRest version that made it.
    pub made_by: String,
}

/// What `pgbackrest info` says about a stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// Oldest first, as pgBackRest lists them.
    pub backups: Vec<Backup>,
    /// The oldest and newest WAL segment in the archive of the current database.
    pub archive_min: Option<String>,
    pub archive_max: Option<String>,
    /// The archive's id (`15-1`): its folder under `archive/<stanza>/`.
    pub archive_id: Option<String>,
    /// `none` or the cipher type.
    pub cipher: String,
}

impl Repo {
    /// Parse `pgbackrest://STANZA?config=PATH&config-include-path=DIR&config-path=DIR&repo=PATH&bin=PATH`.
    pub fn parse(location: &str) -> Result<Repo, Failure> {
        let rest = location.strip_prefix(SCHEME).ok_or_else(|| {
            Failure::invalid(format!(
                "`{}` is not a pgBackRest source (pgbackrest://STANZA?config=PATH)",
                crate::util::visible(location)
            ))
        })?;
        let (stanza, query) = rest.split_once('?').unwrap_or((rest, ""));
        let stanza = crate::util::percent_decode_strict(stanza).unwrap_or_default();
        if stanza.is_empty() || stanza.contains('/') || stanza.chars().any(char::is_control) {
            return Err(Failure::invalid(format!(
                "the pgBackRest source `{}` names no stanza: write pgbackrest://STANZA?config=/etc/pgbackrest/pgbackrest.conf",
                crate::util::visible(location)
            )));
        }
        let mut repo = Repo { stanza, config: None, include: None, config_path: None, repo_path: None, bin: None };
        let known = ["config", "config-include-path", "config-path", "repo", "bin"];
        for (k, v) in tools::options(query, &known, location)? {
            let v = Some(PathBuf::from(v));
            match k.as_str() {
                "config" => repo.config = v,
                "config-include-path" => repo.include = v,
                "config-path" => repo.config_path = v,
                "repo" => repo.repo_path = v,
                _ => repo.bin = v,
            }
        }
        Ok(repo)
    }

    /// The options naming the team's configuration, repository and stanza, for every command.
    fn common(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(c) = &self.config {
            a.push(format!("--config={}", c.display()));
        }
        if let Some(i) = &self.include {
            a.push(format!("--config-include-path={}", i.display()));
        }
        if let Some(p) = &self.config_path {
            a.push(format!("--config-path={}", p.display()));
        }
        if let Some(r) = &self.repo_path {
            a.push(format!("--repo1-path={}", r.display()));
        }
        a.push(format!("--stanza={}", self.stanza));
        a
    }

    /// A command of `tool` that reads the repository: this machine's binary, or, `at` an
    /// image (this machine has none), the image's run as the throwaway's user with the
    /// team's configuration and local repository mounted read-only (`mounts`). The env file
    /// must live until the child ends.
    fn command(
        &self,
        tool: &Binary,
        at: Option<&InImage>,
    ) -> Result<(std::process::Command, Option<crate::pg::image_tools::EnvFile>), Failure> {
        match at {
            None => Ok((tools::tool_command(&tool.path), None)),
            Some(at) => {
                let program = tool.path.display().to_string();
                let (cmd, env) = tools::image_command(&program, &at.image, &self.mounts(), &[], at.network)?;
                Ok((cmd, Some(env)))
            }
        }
    }

    /// `pgbackrest info --output=json` for the stanza. A repository pgBackRest cannot read (a
    /// wrong cipher passphrase, a missing stanza, no repository) is the environment's
    /// failure, with pgBackRest's own words: no backup was judged.
    pub fn info(&self, tool: &Binary, at: Option<&InImage>, stop: &tools::Interrupt) -> Result<Info, Failure> {
        let (mut cmd, _env) = self.command(tool, at)?;
        cmd.args(self.common()).args(["--output=json", "--log-level-console=error", "--log-level-file=off", "info"]);
        let out = stop.run(&mut cmd, "pgbackrest info")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(self.unreadable(&tools::both(&out)));
        }
        let info = parse_info(&text, &self.stanza)?;
        Ok(info)
    }

    /// The repository could not be read: say what pgBackRest said, and name the passphrase
    /// when that is what it was about.
    fn unreadable(&self, output: &str) -> Failure {
        let said = tools::last_lines(output, 3);
        let lower = said.to_lowercase();
        let hint = if lower.contains("cipher") || lower.contains("decrypt") || lower.contains("passphrase") {
            " (is PGBACKREST_REPO1_CIPHER_PASS the repository's cipher passphrase?)"
        } else {
            ""
        };
        Failure::environment(format!("pgbackrest cannot read the stanza `{}`{hint}: {}", self.stanza, readable(&said)))
    }

    /// Restore the backup `label` into the empty directory `into.data_dir` with `pgbackrest
    /// restore --type=none`: the files, no recovery target (recover.rs writes the recovery
    /// settings and proves the target). `--pg1-path` is the throwaway's directory and every
    /// tablespace goes under `into.tablespaces_dir` (`--tablespace-map-all`), whatever the
    /// configuration says: a restore never writes where the team's server lives. A backup
    /// pgBackRest cannot restore (a file removed or altered in the repository, a checksum
    /// that does not match) is a failed verification. `stop` ends it when the run is
    /// interrupted or the step times out.
    pub fn restore(
        &self,
        tool: &Binary,
        label: &str,
        into: &MaterializeInto,
        stop: &tools::Interrupt,
    ) -> Result<Output, Failure> {
        let mut cmd = tools::tool_command(&tool.path);
        cmd.args(self.restore_args(label, into));
        stop.run(&mut cmd, "pgbackrest restore")
    }

    /// `restore`'s arguments after the binary.
    fn restore_args(&self, label: &str, into: &MaterializeInto) -> Vec<String> {
        let mut a = self.common();
        a.extend([
            format!("--pg1-path={}", into.data_dir.display()),
            format!("--tablespace-map-all={}", into.tablespaces_dir.display()),
            format!("--set={label}"),
            "--type=none".into(),
            "--log-level-console=warn".into(),
            "--log-level-file=off".into(),
            "restore".into(),
        ]);
        a
    }

    /// `restore` run by the pgBackRest of an image (`at`), as the throwaway's user, with
    /// the team's configuration and local repository mounted read-only and the workspace
    /// read-write. Its lock and spool folders are the workspace's own (`tool_dir`): the
    /// image has no folder of the team's for them, and restore clears the spool.
    fn restore_in_image(
        &self,
        at: &Imaged,
        label: &str,
        into: &MaterializeInto,
        tool_dir: &Path,
        stop: &tools::Interrupt,
    ) -> Result<Output, Failure> {
        let mut args = self.image_args(tool_dir);
        args.extend(self.restore_args(label, into));
        let rw = [into.data_dir.clone(), into.tablespaces_dir.clone(), tool_dir.to_path_buf()];
        let (mut cmd, _env) =
            tools::image_command(&at.bin.path.display().to_string(), &at.at.image, &self.mounts(), &rw, at.at.network)?;
        cmd.args(args);
        stop.run(&mut cmd, &format!("pgbackrest restore in {}", at.at.image))
    }

    /// The options that keep pgBackRest in an image inside the workspace: its lock and
    /// spool folders.
    fn image_args(&self, tool_dir: &Path) -> Vec<String> {
        vec![format!("--lock-path={}", tool_dir.display()), format!("--spool-path={}", tool_dir.display())]
    }

    /// The folder of more configuration files pgBackRest reads for this source: the one the
    /// location names, else the environment's (`PGBACKREST_CONFIG_INCLUDE_PATH`), else, when
    /// no configuration file is named either, `conf.d` of the configuration folder
    /// (`config_folder`) if it exists.
    fn include_dir(&self) -> Option<PathBuf> {
        self.include.clone().or_else(|| tool_var("PGBACKREST_CONFIG_INCLUDE_PATH")).or_else(|| {
            let default = match self.config_folder() {
                Some(folder) => folder.join("conf.d"),
                None => PathBuf::from(DEFAULT_INCLUDE),
            };
            (self.config.is_none() && tool_var("PGBACKREST_CONFIG").is_none() && default.is_dir()).then_some(default)
        })
    }

    /// The folder the location (`config-path=`) or the environment (`PGBACKREST_CONFIG_PATH`)
    /// names for pgBackRest's configuration, in place of /etc/pgbackrest.
    fn config_folder(&self) -> Option<PathBuf> {
        self.config_path.clone().or_else(|| tool_var("PGBACKREST_CONFIG_PATH"))
    }

    /// The configuration file pgBackRest reads: the location's (`config=`), else the
    /// environment's (`PGBACKREST_CONFIG`), else `pgbackrest.conf` of the configuration
    /// folder (`config_folder`), else pgBackRest's default.
    fn config_file(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| tool_var("PGBACKREST_CONFIG"))
            .or_else(|| self.config_folder().map(|f| f.join("pgbackrest.conf")))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// The configuration file and the folder of included files the location or the
    /// environment names exist, before pgBackRest runs: pgBackRest's own error for a missing
    /// one (exit 73, "unable to list file info for missing path") came from its restore and
    /// was judged as a failed backup, where it is the team's configuration (issue 39). One
    /// the location names is the input's fault (exit 2), one a variable names the
    /// environment's (exit 3).
    fn configuration_exists(&self) -> Result<(), Failure> {
        let env = |name: &str| tools::tool_env().into_iter().find(|(k, _)| k == name).map(|(_, v)| PathBuf::from(v));
        let missing = |what: &str, path: &Path, named_by: &str| {
            format!(
                "the pgBackRest {what} `{}` that {named_by} names does not exist on this machine: correct it, or create it as the team's pgBackRest has it",
                crate::util::visible(&path.display().to_string())
            )
        };
        // Each setting (what it names, its option, its variable, whether it is a file): from the
        // location (a missing one is the input's fault), else the environment (the environment's).
        let settings = [
            (&self.config, "configuration file", "the location's `config=`", "PGBACKREST_CONFIG", true),
            (
                &self.config_path,
                "configuration folder",
                "the location's `config-path=`",
                "PGBACKREST_CONFIG_PATH",
                false,
            ),
            (
                &self.include,
                "folder of included files",
                "the location's `config-include-path=`",
                "PGBACKREST_CONFIG_INCLUDE_PATH",
                false,
            ),
        ];
        for (given, what, option, variable, file) in settings {
            let exists = |p: &Path| if file { p.is_file() } else { p.is_dir() };
            if let Some(p) = given {
                if !exists(p) {
                    return Err(Failure::invalid(missing(what, p, option)));
                }
            } else if let Some(p) = env(variable) {
                if !exists(&p) {
                    return Err(Failure::environment(missing(what, &p, variable)));
                }
            }
        }
        Ok(())
    }

    /// The configuration file pgBackRest reads (`config_file`) and the text of it and of
    /// each `*.conf` of the include folder: where the team's repository options may be.
    fn configuration(&self) -> (PathBuf, String) {
        let config = self.config_file();
        let mut text = String::new();
        for f in self.configuration_files() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        }
        (config, text)
    }

    /// The files pgBackRest reads its settings from: the configuration file (`config_file`),
    /// then each `*.conf` of the include folder, in name order.
    fn configuration_files(&self) -> Vec<PathBuf> {
        let mut out = vec![self.config_file()];
        if let Some(dir) = self.include_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            files.sort();
            out.extend(files);
        }
        out
    }

    /// The file of the team's configuration that sets `option` (in any section), if one does.
    fn setting_file(&self, option: &str) -> Option<PathBuf> {
        self.configuration_files().into_iter().find(|f| {
            std::fs::read_to_string(f).is_ok_and(|text| {
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with('#') && !l.starts_with('['))
                    .filter_map(|l| l.split_once('='))
                    .any(|(k, _)| k.trim() == option)
            })
        })
    }

    /// What the team's pgBackRest reads on this machine, for a container of the tool: the
    /// configuration file (`config_file`: the location's, PGBACKREST_CONFIG's, the one in
    /// `config-path`/PGBACKREST_CONFIG_PATH, else pgBackRest's default; if it exists), the
    /// folder of included files (`config-include-path`), and every existing local path its
    /// repository options name (`repo1-path`, a CA file), from the configuration and its
    /// included files, the location (`repo=`) or the environment (`PGBACKREST_REPO1_PATH`).
    pub fn mounts(&self) -> Vec<PathBuf> {
        let (config, text) = self.configuration();
        let mut out: Vec<PathBuf> = Vec::new();
        if config.is_file() {
            out.push(config);
        }
        out.extend(self.include_dir().filter(|d| d.is_dir()));
        let named = repo_options(&text).into_iter().chain(env_repo_options());
        for (key, value) in named {
            let p = Path::new(&value);
            if (key.ends_with("-path") || key.ends_with("-file")) && p.is_absolute() && p.exists() {
                out.push(p.to_path_buf());
            }
        }
        out.extend(self.repo_path.iter().filter(|p| p.exists()).cloned());
        out.sort();
        out.dedup();
        out
    }

    /// Whether the repository is reached over the network (a bucket, a repository host): a
    /// container of the tool then needs the host's network.
    pub fn remote(&self) -> bool {
        let (_, text) = self.configuration();
        repo_options(&text).into_iter().chain(env_repo_options()).any(|(k, v)| {
            let setting = k.split_once('-').map(|(_, s)| s).unwrap_or_default();
            (setting == "type" && !matches!(v.as_str(), "posix" | "cifs")) || setting == "host"
        })
    }

    /// The backup `label`'s `backup.manifest` (every file with its checksum, and pgBackRest's
    /// own checksum of the manifest) as `pgbackrest repo-get` gives it back, decrypted: what
    /// signed evidence names the backup by.
    pub fn manifest(
        &self,
        tool: &Binary,
        at: Option<&InImage>,
        label: &str,
        stop: &tools::Interrupt,
    ) -> Result<Vec<u8>, Failure> {
        let (mut cmd, _env) = self.command(tool, at)?;
        cmd.args(self.common()).args([
            "--log-level-console=error".to_string(),
            "--log-level-file=off".into(),
            "repo-get".into(),
            format!("backup/{}/{label}/backup.manifest", self.stanza),
        ]);
        let out = stop.run(&mut cmd, "pgbackrest repo-get")?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(self.unreadable(&tools::both(&out)));
        }
        Ok(out.stdout)
    }

    /// `segment` of the archive `archive_id` as `pgbackrest repo-ls` lists the folder that
    /// holds it; `None` when pgBackRest could not list it. Whether it is there tells an
    /// expired range; when it came, the age of the archive's newest WAL.
    pub fn segment(
        &self,
        tool: &Binary,
        at: Option<&InImage>,
        archive_id: &str,
        segment: &str,
        stop: &tools::Interrupt,
    ) -> Option<Listed> {
        let folder = segment.get(..16)?;
        let (mut cmd, _env) = self.command(tool, at).ok()?;
        cmd.args(self.common()).args(["--log-level-console=error", "--log-level-file=off", "repo-ls", "--output=json"]);
        cmd.arg(format!("archive/{}/{archive_id}/{folder}", self.stanza));
        let out = stop.run(&mut cmd, "pgbackrest repo-ls").ok().filter(|o| o.status.success())?;
        segment_listed(&String::from_utf8_lossy(&out.stdout), segment)
    }

    /// Every WAL segment the archive `archive_id` holds, by name, as one `pgbackrest repo-ls
    /// --recurse` lists it; `None` when pgBackRest could not list it.
    fn segments(
        &self,
        tool: &Binary,
        at: Option<&InImage>,
        archive_id: &str,
        stop: &tools::Interrupt,
    ) -> Option<Segments> {
        let (mut cmd, _env) = self.command(tool, at).ok()?;
        cmd.args(self.common()).args(["--log-level-console=error", "--log-level-file=off", "repo-ls", "--output=json"]);
        cmd.arg("--recurse").arg(format!("archive/{}/{archive_id}", self.stanza));
        let out = stop.run(&mut cmd, "pgbackrest repo-ls").ok().filter(|o| o.status.success())?;
        segments_listed(&String::from_utf8_lossy(&out.stdout))
    }

    /// The words of the command a throwaway server on `data` fetches WAL with (`pgbackrest
    /// archive-get`, the same configuration, repository and stanza); the segment's name and
    /// path follow them.
    pub fn archive_get(&self, tool: &Binary, data: &Path) -> Vec<String> {
        let mut words = vec![tool.path.display().to_string()];
        words.extend(self.common());
        self.archive_get_rest(data, &mut words);
        words
    }

    /// `archive_get`'s words for the pgBackRest of an image, whose lock folder is the
    /// workspace's (`tool_dir`).
    fn archive_get_in_image(&self, at: &Imaged, data: &Path, tool_dir: &Path) -> Vec<String> {
        let mut words = vec![at.bin.path.display().to_string()];
        words.extend(self.common());
        words.push(format!("--lock-path={}", tool_dir.display()));
        self.archive_get_rest(data, &mut words);
        words
    }

    fn archive_get_rest(&self, data: &Path, words: &mut Vec<String>) {
        // Synchronous, one segment a call, whatever the team's configuration says: an
        // asynchronous archive-get prefetches into the team's spool and takes the stanza's
        // archive lock, which the team's own archive-push or archive-get may hold; it then
        // waited out archive-timeout and failed (exit 82), and the image has no spool at all.
        words.push("--no-archive-async".into());
        words.push(format!("--pg1-path={}", data.display()));
        words.push("--log-level-console=off".into());
        words.push("--log-level-stderr=warn".into());
        words.push("--log-level-file=off".into());
        words.push("archive-get".into());
    }
}

/// The pgbackrest that lists a repository (`explicit`: the binary a location names, always
/// used): this machine's, else that of the newest PostgreSQL image Docker has here (its name
/// given); neither is the environment's failure naming the package and the image to build.
/// `pgdrill doctor` reports the same choice. The probes run through `stop` (the source's).
pub fn serving(explicit: Option<&Path>, stop: &tools::Interrupt) -> Result<(Binary, Option<String>), Failure> {
    match tools::find("pgbackrest", explicit, &["version"], PACKAGE, stop) {
        Ok(bin) => Ok((bin, None)),
        Err(missing) if explicit.is_none() && !stop.interrupted() => {
            match tools::find_in_any_image("pgbackrest", &["version"], stop) {
                Some((image, bin)) => Ok((bin, Some(image))),
                None => {
                    // A probe the interrupt ended found nothing: said as stopped, not as absent.
                    stop.check("the search for pgbackrest in Docker's images")?;
                    Err(Failure::environment(format!(
                "{}; nor has Docker an image of PostgreSQL with pgbackrest here (`bash ci/setup.sh` builds {} with it)",
                missing.message,
                crate::pg::docker::LOCAL_IMAGE.replace("{major}", "17")
            )))
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// A pgBackRest stanza as a [`PhysicalSource`].
#[derive(Debug)]
pub struct PgBackRest {
    repo: Repo,
    /// The pgbackrest that lists the repository and reads its files (`info`, `repo-get`,
    /// `repo-ls`): this machine's, or the image's of `image`.
    bin: Binary,
    /// Where `bin` runs when this machine has no pgbackrest: an image's (`open`).
    image: Option<InImage>,
    /// The last listing, for what the contract's `BaseBackup` does not carry.
    info: std::sync::Mutex<Option<Info>>,
    /// The throwaway's data directory of the last materialize (archive-get's `--pg1-path`).
    data_dir: std::sync::Mutex<Option<std::path::PathBuf>>,
    scripts: tools::Scripts,
    /// Where the last backup asked about is served: its label, and the image when not here.
    placed: std::sync::Mutex<Option<(String, Option<Imaged>)>>,
    /// Ends the running pgbackrest call (and its container) when the run is interrupted or
    /// the step times out: a restore ran to its end before pgdrill stopped.
    interrupt: tools::Interrupt,
    /// The archive's segments as listed before a recovery (`archive_end`): a recovery that
    /// fails is judged by listing again (`relisted`).
    wal_seen: std::sync::Mutex<Option<Segments>>,
}

impl PgBackRest {
    /// The source, with its binary found and its version asked. A machine without
    /// pgbackrest (and a location naming none) reads the repository with the pgbackrest of
    /// the newest PostgreSQL image Docker has here, and restores each backup with that of an
    /// image of the backup's major (`placement`); with neither, the environment's failure
    /// names the package.
    pub fn open(repo: Repo, stop: tools::Interrupt) -> Result<PgBackRest, Failure> {
        repo.configuration_exists()?;
        let (bin, image) = serving(repo.bin.as_deref(), &stop)?;
        let image =
            image.map(|image| InImage { image, network: repo.remote(), why: "this machine has no pgbackrest".into() });
        Ok(PgBackRest { interrupt: stop, ..PgBackRest::with(repo, bin, image) })
    }

    fn with(repo: Repo, bin: Binary, image: Option<InImage>) -> PgBackRest {
        PgBackRest {
            repo,
            bin,
            image,
            info: Default::default(),
            data_dir: Default::default(),
            scripts: Default::default(),
            placed: Default::default(),
            interrupt: Default::default(),
            wal_seen: Default::default(),
        }
    }

    /// The image serving the backup `label`, when `placement` put it in one.
    fn imaged(&self, label: &str) -> Option<Imaged> {
        match &*self.placed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((id, imaged)) if id == label => imaged.clone(),
            _ => None,
        }
    }

    /// Why this machine cannot serve `backup` (empty: it can): no server binaries of its
    /// major, or a pgBackRest older than the one that made it (2.45 refuses to restore a
    /// PostgreSQL 17 backup: "invalid PostgreSQL version 170000"). A binary the location
    /// names (`bin=`) is the team's choice and always used.
    fn why_not_here(&self, backup: &BaseBackup, made_by: &str) -> Vec<String> {
        let mut why = Vec::new();
        if self.repo.bin.is_some() {
            return why;
        }
        if self.image.is_some() {
            why.push("this machine has no pgbackrest".to_string());
        }
        if let Some(m) = backup.pg_major {
            if crate::pg::native::find_bin_dir(None, Some(m)).is_err() {
                why.push(format!("this machine has no PostgreSQL {m} server binaries"));
            }
        }
        if self.image.is_none() && tools::version_numbers(&self.bin.version) < tools::version_numbers(made_by) {
            why.push(format!(
                "its pgbackrest ({}) is older than the pgBackRest {made_by} that made the backup",
                self.bin.version
            ));
        }
        why
    }

    /// A `pgbackrest restore` of `label` that ended with an error, judged by pgBackRest's
    /// error code (`cause_of`): damage to the backup's bytes is a failed verification; a
    /// missing file is the backup's or not by what the repository holds (`missing_verdict`);
    /// an option refused is the environment's when a PGBACKREST_* variable or the team's
    /// configuration file sets it (named), else the input's when the location names the
    /// configuration, else the environment's; the rest is the environment's. Before, every
    /// error was judged a failed backup: a spool folder this machine's user may not open
    /// (exit 53) too.
    fn refused(&self, label: &str, out: &Output) -> Failure {
        let all = tools::both(out);
        let said = tools::last_lines(&all, 4);
        let stanza = &self.repo.stanza;
        let Some(code) = out.status.code() else {
            return Failure::environment(format!(
                "pgbackrest restore of the backup `{label}` of the stanza `{stanza}` was stopped by a signal ({said}): no verdict on the backup"
            ));
        };
        let (name, cause) = cause_of(code);
        let name = name.map(|n| format!(", pgBackRest's {n} error")).unwrap_or_default();
        let head = format!(
            "pgbackrest restore of the backup `{label}` of the stanza `{stanza}` failed (exit {code}{name}): {said}"
        );
        match cause {
            Cause::Damage => Failure::failed(format!(
                "{head}: the backup's own files are damaged (data that does not match its checksum, decompress or decrypt)"
            )),
            Cause::Missing => {
                let Some(path) = missing_path(&all) else {
                    return Failure::environment(format!(
                        "{head}: pgBackRest named no missing path to check against the repository: no verdict on the backup"
                    ));
                };
                let held = if in_backup_folder(path, stanza).is_some() { self.held(label) } else { Held::default() };
                let (class, why) = missing_verdict(stanza, label, path, &held);
                Failure::new(class, format!("{head}: {why}"))
            }
            Cause::Configuration => {
                // An option set by a variable of pgdrill's environment is the environment's,
                // and so is one the team's configuration files set (below); else the
                // configuration the location names is the input's.
                let option = refused_option(&all);
                let var = option.map(|o| format!("PGBACKREST_{}", o.to_uppercase().replace('-', "_")));
                if let Some(var) = var.filter(|v| tool_var(v).is_some()) {
                    return Failure::environment(format!(
                        "{head}: pgBackRest refused the option {var} of pgdrill's environment; no verdict on the backup"
                    ));
                }
                // An option the team's own configuration sets is the environment of the
                // backup, named by its file, not pgdrill's input: before, exit 2 that did not
                // say which file, like an error in pgdrill's own arguments (issue 39).
                if let Some((option, file)) = option.and_then(|o| Some((o, self.repo.setting_file(o)?))) {
                    return Failure::environment(format!(
                        "{head}: pgBackRest refused the option `{}` set in the team's configuration {}: correct it there; no verdict on the backup",
                        crate::util::visible(option),
                        crate::util::visible(&file.display().to_string())
                    ));
                }
                let named = self.repo.config.is_some() || self.repo.include.is_some() || self.repo.config_path.is_some();
                let msg = format!(
                    "{head}: pgBackRest refused its options or the team's configuration{}; no verdict on the backup",
                    if named { " the location names" } else { " (its files or PGBACKREST_* variables)" }
                );
                if named {
                    Failure::invalid(msg)
                } else {
                    Failure::environment(msg)
                }
            }
            Cause::Environment(why) => Failure::environment(format!("{head}: {why}; no verdict on the backup")),
        }
    }

    /// What the repository holds for `label`, asked through the pgbackrest that lists it.
    fn held(&self, label: &str) -> Held {
        let folders = (|| {
            let (mut cmd, _env) = self.repo.command(&self.bin, self.image.as_ref()).ok()?;
            cmd.args(self.repo.common()).args([
                "--log-level-console=error",
                "--log-level-file=off",
                "repo-ls",
                "--output=json",
            ]);
            cmd.arg(format!("backup/{}", self.repo.stanza));
            let out = self.interrupt.run(&mut cmd, "pgbackrest repo-ls").ok().filter(|o| o.status.success())?;
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            Some(v.as_object()?.keys().filter(|k| *k != ".").cloned().collect::<Vec<String>>())
        })();
        let manifest = self
            .repo
            .manifest(&self.bin, self.image.as_ref(), label, &self.interrupt)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        Held { folders, manifest }
    }

    fn info(&self) -> Result<Info, Failure> {
        let mut cached = self.info.lock().unwrap_or_else(|e| e.into_inner());
        if cached.is_none() {
            *cached = Some(self.repo.info(&self.bin, self.image.as_ref(), &self.interrupt)?);
        }
        Ok(cached.clone().unwrap_or_else(|| unreachable!("set above")))
    }
}

impl PgBackRest {
    /// A failed recovery judged by listing the archive again: segments from the backup's
    /// start on (to the archive's end, for a "latest" that ended short of it, `short`) which
    /// the listing before the recovery held and which are gone now were removed while it ran
    /// (an expire, a team's cleanup), and archive-get, not finding one, told the server "no
    /// such segment", which took it for the end of the WAL, or stopped short of its target:
    /// the environment's, no verdict. Nothing gone: the gap was in the archive all along, the
    /// backup's failure as the recovery said. An archive that cannot be listed again cannot
    /// tell the two apart: the environment's too. Before, only a "latest" was judged so, and
    /// a recovery to a time, name or LSN whose WAL was removed meanwhile failed the backup.
    fn relisted(&self, backup: &BaseBackup, recovery: Failure, short: Option<source::ShortOfEnd>) -> Failure {
        if recovery.class != crate::error::Class::Failed {
            return recovery;
        }
        let Some(before) = self.wal_seen.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return recovery };
        let id = self.info.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|i| i.archive_id.clone());
        let keep = |f: Failure| match &short {
            Some(s) => f.with_source(s.clone()),
            None => f,
        };
        let Some(now) = id.and_then(|id| self.repo.segments(&self.bin, self.image.as_ref(), &id, &self.interrupt))
        else {
            return keep(Failure::environment(format!(
                "{}; pgbackrest cannot list the repository's archive again to tell a gap in it from WAL removed during recovery: no verdict on the backup",
                recovery.message
            )));
        };
        let from = match (backup.start_lsn, backup.timeline) {
            (Some(l), Some(t)) => l.segment_name(t, source::DEFAULT_SEGMENT_SIZE),
            _ => String::new(),
        };
        let to = short.as_ref().map(|s| s.end.segment.clone());
        let needed = |n: &&String| n.as_str() >= from.as_str() && to.as_deref().is_none_or(|t| n.as_str() <= t);
        let gone: Vec<&String> = before.keys().filter(needed).filter(|n| !now.contains_key(*n)).collect();
        if gone.is_empty() {
            return recovery;
        }
        let mut named = gone.iter().take(3).map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
        if gone.len() > 3 {
            named.push_str(", ...");
        }
        let removed = format!(
            "{} WAL segment(s) the repository held before the recovery ({named}) were removed from it during recovery: no verdict on the backup",
            gone.len()
        );
        keep(Failure::environment(match &short {
            Some(short) => format!(
                "recovery of the backup `{}` to the end of the archive ended at {}, before the archive's newest segment {}: {removed}",
                backup.id, short.replayed, short.end.segment
            ),
            None => format!("the backup `{}`: {}; {removed}", backup.id, recovery.message),
        }))
    }
}

impl PhysicalSource for PgBackRest {
    fn tool(&self) -> Tool {
        let placed = self.placed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let version = match (placed.and_then(|(_, i)| i), &self.image) {
            (Some(i), _) => format!("{} in {}", i.bin.version, i.at.image),
            (None, Some(at)) => format!("{} in {}", self.bin.version, at.image),
            (None, None) => format!("{} ({})", self.bin.version, self.bin.path.display()),
        };
        Tool { name: "pgbackrest".into(), version }
    }

    /// This machine, unless it cannot serve the backup (`why_not_here`): then the first
    /// image of the backup's major Docker has here whose pgBackRest is at least the one that
    /// made it. Neither is the environment's failure naming the image to build.
    fn placement(&self, backup: &BaseBackup) -> Result<Option<InImage>, Failure> {
        if let Some((id, imaged)) = &*self.placed.lock().unwrap_or_else(|e| e.into_inner()) {
            if *id == backup.id {
                return Ok(imaged.as_ref().map(|i| i.at.clone()));
            }
        }
        let info = self.info()?;
        let made_by =
            info.backups.iter().find(|b| b.base.id == backup.id).map(|b| b.made_by.clone()).unwrap_or_default();
        let why = self.why_not_here(backup, &made_by);
        let imaged = match (why.is_empty(), backup.pg_major) {
            (true, _) => None,
            // A major pgBackRest did not say: the image that lists the repository, if any.
            (false, None) => self.image.clone().map(|at| Imaged { at, bin: self.bin.clone() }),
            (false, Some(major)) => {
                let mut seen = Vec::new();
                let found = super::recover::docker_images_for(major).into_iter().find_map(|image| {
                    let bin = tools::find_in_image("pgbackrest", &["version"], &image, &self.interrupt);
                    seen.push(format!(
                        "{image}: {}",
                        bin.as_ref().map(|b| b.version.as_str()).unwrap_or("no pgbackrest")
                    ));
                    let enough = bin
                        .as_ref()
                        .is_some_and(|b| tools::version_numbers(&b.version) >= tools::version_numbers(&made_by));
                    bin.filter(|_| enough).map(|bin| (image, bin))
                });
                let Some((image, bin)) = found else {
                    self.interrupt.check("the search for pgbackrest in Docker's images")?;
                    let local = crate::pg::docker::LOCAL_IMAGE.replace("{major}", &major.to_string());
                    let seen = if seen.is_empty() { "no image of it here".to_string() } else { seen.join(", ") };
                    return Err(Failure::environment(format!(
                        "the backup `{}` is of PostgreSQL {major}, made by pgBackRest {made_by}, and cannot be restored on this machine: {}; nor in Docker ({seen}): build the image {local} (`bash ci/setup.sh` builds PostgreSQL {major} with pgBackRest), or install postgresql-{major} and pgBackRest {made_by} or later",
                        backup.id,
                        why.join(", and ")
                    )));
                };
                let at = InImage { image, network: self.repo.remote(), why: why.join(", and ") };
                Some(Imaged { at, bin })
            }
        };
        let at = imaged.as_ref().map(|i| i.at.clone());
        *self.placed.lock().unwrap_or_else(|e| e.into_inner()) = Some((backup.id.clone(), imaged));
        Ok(at)
    }

    fn describe(&self) -> String {
        let mut s = format!("pgBackRest stanza `{}`", crate::util::visible(&self.repo.stanza));
        if let Some(c) = &self.repo.config {
            s.push_str(&format!(" (config {})", c.display()));
        }
        if let Some(i) = &self.repo.include {
            s.push_str(&format!(" (config-include-path {})", i.display()));
        }
        if let Some(p) = &self.repo.config_path {
            s.push_str(&format!(" (config-path {})", p.display()));
        }
        if let Some(r) = &self.repo.repo_path {
            s.push_str(&format!(" (repository {})", r.display()));
        }
        s
    }

    fn list(&self) -> Result<Vec<BaseBackup>, Failure> {
        *self.info.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(self.info()?.backups.into_iter().map(|b| b.base).collect())
    }

    /// A backup pgBackRest itself marked as holding page checksum errors is not a backup to
    /// pass; the files are checked by `pgbackrest restore` itself (each file's checksum).
    fn verify(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let info = self.info()?;
        let Some(b) = info.backups.iter().find(|b| b.base.id == backup.id) else {
            return Err(Failure::failed(format!("pgbackrest info no longer lists the backup `{}`", backup.id)));
        };
        if b.error {
            return Err(Failure::failed(format!(
                "pgBackRest recorded page checksum errors in the backup `{}` (see `pgbackrest info --set={}`)",
                b.base.id, b.base.id
            )));
        }
        Ok(Some(format!(
            "pgBackRest {} backup `{}` made by pgBackRest {}; files checked against their checksums by pgbackrest restore",
            b.kind, b.base.id, b.made_by
        )))
    }

    fn materialize(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Materialized, Failure> {
        let out = match self.imaged(&backup.id) {
            Some(at) => {
                let tool_dir = tool_dir(&into.data_dir)?;
                let run_as = crate::pg::native::RunAs::detect()?;
                for d in [&into.data_dir, &into.tablespaces_dir] {
                    run_as.own(d)?;
                }
                self.repo.restore_in_image(&at, &backup.id, into, &tool_dir, &self.interrupt)?
            }
            None => self.repo.restore(&self.bin, &backup.id, into, &self.interrupt)?,
        };
        if !out.status.success() {
            return Err(self.refused(&backup.id, &out));
        }
        // pgBackRest writes recovery.signal even with --type=none; recover.rs writes its own.
        let _ = std::fs::remove_file(into.data_dir.join("recovery.signal"));
        *self.data_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(into.data_dir.clone());
        Ok(Materialized {
            bytes: tools::tree_bytes(&into.data_dir) + tools::tree_bytes(&into.tablespaces_dir),
            tablespaces: tools::tablespaces(&into.data_dir),
        })
    }

    fn restore_command(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let data = self.data_dir.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(|| {
            Failure::environment("the pgBackRest restore_command was asked for before the backup was materialized")
        })?;
        let words = match self.imaged(&backup.id) {
            Some(at) => self.repo.archive_get_in_image(&at, &data, &tool_dir(&data)?),
            None => self.repo.archive_get(&self.bin, &data),
        };
        // The throwaway's workspace keeps archive-get's failure for `judge_fetch`.
        let workspace = data.parent().unwrap_or(&data);
        self.scripts.restore_command_reporting("pgbackrest archive-get", &words, workspace).map(Some)
    }

    /// A recovery stopped by `pgbackrest archive-get` failing inside the restore_command
    /// (its script recorded the exit code and message): judged by pgBackRest's error
    /// (`fetch_verdict`). Before, every such stop was a failed recovery (exit 1) that said
    /// only "exit code 126", an unreadable repository too (issue 39).
    fn judge_fetch(&self, backup: &BaseBackup, recovery: Failure) -> Failure {
        if let Some(short) = recovery.source.as_deref().and_then(|s| s.downcast_ref::<source::ShortOfEnd>()).cloned() {
            return self.relisted(backup, recovery, Some(short));
        }
        let Some(f) = recovery.source.as_deref().and_then(|s| s.downcast_ref::<tools::FetchFailed>()).cloned() else {
            return self.relisted(backup, recovery, None);
        };
        let (class, why) = fetch_verdict(&f);
        let name = cause_of(f.code).0.map(|n| format!(", pgBackRest's {n} error")).unwrap_or_default();
        let said = readable(&tools::last_lines(&f.said, 4));
        Failure::new(
            class,
            format!(
                "recovery of the backup `{}` stopped: pgbackrest archive-get failed fetching {} (exit {}{name}): {said}: {why}",
                backup.id,
                crate::util::visible(&f.segment),
                f.code
            ),
        )
        .with_source(f)
    }

    /// For a throwaway in Docker: the team's configuration and local repository, and the
    /// restore_command's script.
    fn paths(&self) -> Vec<PathBuf> {
        let mut p = self.repo.mounts();
        p.extend(self.scripts.dirs());
        p
    }

    fn interrupt(&self) -> Option<tools::Interrupt> {
        Some(self.interrupt.clone())
    }

    /// The backup by its label and the sha256 of its `backup.manifest` (pgBackRest's own
    /// record of every file and its checksum), for signed evidence.
    fn digest(&self, backup: &BaseBackup) -> Result<Option<(String, String)>, Failure> {
        use sha2::Digest as _;
        let bytes = self.repo.manifest(&self.bin, self.image.as_ref(), &backup.id, &self.interrupt)?;
        let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        Ok(Some((format!("pgbackrest:{}/{}/backup.manifest", self.repo.stanza, backup.id), sha)))
    }

    /// pgBackRest's `expire` (under `repo1-retention-archive`) keeps of an older backup only
    /// the WAL that makes it consistent: the segment after its stop segment is then gone while
    /// a newer backup exists, and no point past its end is reachable from it.
    fn expired_wal_after(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let info = self.info()?;
        let Some(newer) = info.backups.iter().find(|b| b.base.started > backup.started) else { return Ok(None) };
        let (Some(stop), Some(tl), Some(id)) = (backup.stop_lsn, backup.timeline, info.archive_id.as_deref()) else {
            return Ok(None);
        };
        let size = source::DEFAULT_SEGMENT_SIZE;
        let Some((_, stop_start)) = source::parse_segment_name(&stop.segment_name(tl, size), size) else {
            return Ok(None);
        };
        let next = Lsn(stop_start.0 + size).segment_name(tl, size);
        if self.repo.segment(&self.bin, self.image.as_ref(), id, &next, &self.interrupt).map(|s| s.held) != Some(false)
        {
            return Ok(None);
        }
        let newer_start = newer.base.start_lsn.map(|l| l.segment_name(tl, size)).unwrap_or_else(|| "?".into());
        Ok(Some(format!(
            "expired WAL range: the repository no longer holds the WAL after the backup `{}` (from segment {next} up to the backup `{}`, which starts in {newer_start}); pgBackRest's expire removed it (repo1-retention-archive keeps only what the retained backups need), so no point between the two backups can be recovered: choose a target after `{}` started, or keep more archive",
            backup.id, newer.base.id, newer.base.id
        )))
    }

    fn archive_end(&self, timeline: u32) -> Result<Option<ArchiveEnd>, Failure> {
        let info = self.info()?;
        let Some(max) = info.archive_max else { return Ok(None) };
        match source::parse_segment_name(&max, source::DEFAULT_SEGMENT_SIZE) {
            Some((t, start)) if t == timeline => {
                // What the archive holds now, for a recovery that fails (`relisted`), and when
                // its newest segment came: one recursive listing gives both. A newest segment
                // that listing does not name (a file renamed) is looked up in its folder.
                let seen = info
                    .archive_id
                    .as_deref()
                    .and_then(|id| self.repo.segments(&self.bin, self.image.as_ref(), id, &self.interrupt));
                let archived = match seen.as_ref().and_then(|s| s.get(&max)) {
                    Some(at) => *at,
                    None => info
                        .archive_id
                        .as_deref()
                        .and_then(|id| self.repo.segment(&self.bin, self.image.as_ref(), id, &max, &self.interrupt))
                        .and_then(|s| s.at),
                };
                *self.wal_seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
                Ok(Some(ArchiveEnd { segment: max, segment_start: start, archived }))
            }
            _ => Ok(None),
        }
    }
}

/// What a pgBackRest error is about. pgBackRest exits with the code of the error that
/// stopped it; the codes and names are its `src/build/error/error.yaml`. Only the backup's
/// own bytes make a verdict on the backup; what pgBackRest did not find is told apart by
/// what the repository holds (`missing_verdict`); everything else is the team's
/// configuration or this machine's, never a failed backup (issue 39).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The backup's bytes: a checksum that does not match, compressed or encrypted data that
    /// does not decode, a manifest that does not parse.
    Damage,
    /// A file or path that is not there: the backup's, or the configuration's or machine's.
    Missing,
    /// pgBackRest refused its options or its configuration before reading anything.
    Configuration,
    /// This machine, the network, a permission, another pgBackRest: why, for the message.
    Environment(&'static str),
}

/// pgBackRest's error codes pgdrill reads, with their names (error.yaml) and what they are
/// about. A code not listed is the environment's: an error pgdrill cannot read as damage is
/// never made a verdict on the backup.
const ERRORS: &[(i32, &str, Cause)] = &[
    (26, "checksum", Cause::Damage),
    (28, "file-invalid", Cause::Damage),
    (29, "format", Cause::Damage),
    // The repository's passphrase opened its info files (`info` listed the backup), so a
    // file that does not decrypt was altered, not given the wrong passphrase.
    (95, "crypto", Cause::Damage),
    (99, "json-format", Cause::Damage),
    (55, "file-missing", Cause::Missing),
    (73, "path-missing", Cause::Missing),
    (27, "config", Cause::Configuration),
    (30, "command-required", Cause::Configuration),
    (31, "option-invalid", Cause::Configuration),
    (32, "option-invalid-value", Cause::Configuration),
    (37, "option-required", Cause::Configuration),
    (43, "param-required", Cause::Configuration),
    (48, "command-invalid", Cause::Configuration),
    (72, "host-invalid", Cause::Configuration),
    (96, "param-invalid", Cause::Configuration),
    (41, "file-open", Cause::Environment("pgBackRest could not open a file (a permission of this machine or the repository)")),
    (53, "path-open", Cause::Environment("pgBackRest could not open a folder (a permission of this machine or the repository)")),
    (83, "file-mode", Cause::Environment("a file mode pgBackRest could not set here")),
    (88, "file-owner", Cause::Environment("a file owner pgBackRest could not set here")),
    (89, "user-missing", Cause::Environment("a user or group the backup's files belong to does not exist here")),
    (105, "access", Cause::Environment("the repository refused pgBackRest's credentials")),
    (50, "lock-acquire", Cause::Environment("another pgBackRest holds the stanza's lock")),
    (62, "stop", Cause::Environment("the stanza is stopped (`pgbackrest stop`): start it, or wait for whoever stopped it")),
    (63, "term", Cause::Environment("pgBackRest was terminated")),
    (49, "host-connect", Cause::Environment("pgBackRest could not reach the repository's host")),
    (101, "service", Cause::Environment("the repository's service answered with an error of its own")),
    (39, "protocol", Cause::Environment("pgBackRest's connection to its own workers or the repository's host broke")),
    (42, "file-read", Cause::Environment("pgBackRest could not read a file of the repository")),
    (82, "archive-timeout", Cause::Environment("the asynchronous archive-get (the team's archive-async) never delivered the segment: another pgBackRest may hold the stanza's archive lock")),
    (103, "repo-invalid", Cause::Environment("pgBackRest found no valid repository with this configuration")),
    (75, "backup-set-invalid", Cause::Environment("pgbackrest info listed the backup, but the restore's read of the repository does not: it changed while pgdrill ran (an expire) or the restore reads another repository")),
    (40, "path-not-empty", Cause::Environment("the throwaway's folder was not empty")),
    (46, "version-not-supported", Cause::Environment("this pgBackRest does not support the backup's PostgreSQL version")),
    (67, "feature-not-supported", Cause::Environment("this pgBackRest lacks a feature the repository uses")),
    (64, "file-write", Cause::Environment("pgBackRest could not write the throwaway's files (free space?)")),
    (100, "kernel", Cause::Environment("the kernel refused pgBackRest")),
    (94, "memory", Cause::Environment("pgBackRest ran out of memory")),
    (106, "clock", Cause::Environment("this machine's clock or time zone changed under pgBackRest")),
];

/// The cause of the error pgBackRest names by its type in a message (`[FormatError]` is
/// error.yaml's `format`, `[FileOpenError]` its `file-open`).
fn cause_named(type_name: &str) -> Option<Cause> {
    let stem = type_name.strip_suffix("Error")?;
    let mut name = String::new();
    for c in stem.chars() {
        if c.is_ascii_uppercase() && !name.is_empty() {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    ERRORS.iter().find(|(_, n, _)| *n == name).map(|(_, _, cause)| *cause)
}

/// The class and the reason of an `archive-get` that failed fetching `f.segment` inside the
/// restore_command. pgBackRest 2.45 and 2.55 wrap what each repository answered in one
/// error (42, "unable to get SEGMENT: repo1: PATH [FormatError] ..."): the segment is the
/// archive's damage (a failed verification naming it) only when every repository's answer
/// is damage to its bytes; a file it could not open, a repository it could not find or
/// list, an option or a lock are the environment's, never a verdict. Exit 1 (the segment
/// is not in the archive) never comes here: the server reads it as the archive's end.
fn fetch_verdict(f: &tools::FetchFailed) -> (crate::error::Class, String) {
    use crate::error::Class;
    let segment = crate::util::visible(&f.segment);
    let named: Vec<Cause> = f
        .said
        .split('[')
        .skip(1)
        .filter_map(|rest| rest.split_once(']').map(|(t, _)| t))
        .filter(|t| t.ends_with("Error") && t.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|t| cause_named(t).unwrap_or(Cause::Environment("an error pgdrill does not read as damage")))
        .collect();
    let causes = if named.is_empty() { vec![cause_of(f.code).1] } else { named };
    if causes.iter().all(|c| *c == Cause::Damage) {
        return (
            Class::Failed,
            format!("the repository's copy of the WAL segment {segment} does not read back (it does not decompress, decrypt or match its checksum): the archive is damaged"),
        );
    }
    let why = match causes.iter().find(|c| **c != Cause::Damage) {
        Some(Cause::Environment(why)) => (*why).to_string(),
        Some(Cause::Missing) => format!(
            "a file pgBackRest needs to fetch {segment} is missing (the repository moved, its archive.info is gone, or the segment was removed after pgBackRest listed it)"
        ),
        Some(Cause::Configuration) => "pgBackRest refused its options or the team's configuration".to_string(),
        _ => "an error pgdrill does not read as damage".to_string(),
    };
    (Class::Environment, format!("{why}; no verdict on the backup"))
}

/// The name and cause of pgBackRest's error `code`.
fn cause_of(code: i32) -> (Option<&'static str>, Cause) {
    match ERRORS.iter().find(|(c, _, _)| *c == code) {
        Some((_, name, cause)) => (Some(name), *cause),
        None => (None, Cause::Environment("an error pgdrill does not read as damage to the backup")),
    }
}

/// The option pgBackRest's option error names (`… for 'process-max' option`, `option
/// 'config' cannot …`).
fn refused_option(said: &str) -> Option<&str> {
    let quoted = |at: usize| {
        let rest = &said[at..];
        let open = rest.find('\'')? + 1;
        let len = rest[open..].find('\'')?;
        Some(&rest[open..open + len])
    };
    if let Some(end) = said.find("' option") {
        let start = said[..end].rfind('\'')?;
        return Some(&said[start + 1..end]);
    }
    quoted(said.find("option '")?)
}

/// The path pgBackRest names as missing (`unable to open missing file '…'`, `… for missing
/// path '…'`): its first quoted path.
fn missing_path(said: &str) -> Option<&str> {
    let at = said.find("missing ")?;
    let rest = &said[at..];
    let open = rest.find('\'')? + 1;
    let len = rest[open..].find('\'')?;
    Some(&rest[open..open + len])
}

/// A path inside the repository's `backup/<stanza>/` as (the backup folder's label, the
/// path inside it); `None` for a path outside every backup's folder.
fn in_backup_folder<'a>(path: &'a str, stanza: &str) -> Option<(&'a str, &'a str)> {
    let marker = format!("backup/{stanza}/");
    let at = path.rfind(&marker)?;
    path[at + marker.len()..].split_once('/').filter(|(label, rel)| !label.is_empty() && !rel.is_empty())
}

/// What the repository holds, asked through pgBackRest when a restore said something was
/// missing: the folders under `backup/<stanza>/` and the restored backup's manifest
/// (`None`: pgBackRest could not say).
#[derive(Debug, Default)]
struct Held {
    folders: Option<Vec<String>>,
    manifest: Option<String>,
}

/// Whether the backup's manifest lists `rel` (`pg_data/base/5/2838.gz` is the manifest's
/// `pg_data/base/5/2838`, compressed; `bundle/3` is the files whose bundle id is 3).
fn manifest_lists(manifest: &str, rel: &str) -> bool {
    if let Some(id) = rel.strip_prefix("bundle/") {
        return manifest.contains(&format!("\"bni\":{id},")) || manifest.contains(&format!("\"bni\":{id}}}"));
    }
    let name = [".gz", ".bz2", ".lz4", ".zst", ".xz"].iter().find_map(|x| rel.strip_suffix(x)).unwrap_or(rel);
    manifest.lines().any(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('=')))
}

/// The class and the reason of a restore that stopped on a missing `path`: the backup's
/// (a failed verification) when it is in a backup's folder of the repository and that folder
/// is gone, or the backup's manifest lists it; the environment's when the path lies outside
/// the backups' folders (a configuration's, the spool's, this machine's) or the manifest does
/// not list it; the environment's when the repository cannot be asked. Each says which way
/// it went and why.
fn missing_verdict(stanza: &str, label: &str, path: &str, held: &Held) -> (crate::error::Class, String) {
    use crate::error::Class;
    let shown = crate::util::visible(path);
    let Some((folder, rel)) = in_backup_folder(path, stanza) else {
        return (
            Class::Environment,
            format!("`{shown}` is not in the repository's backup folders (backup/{stanza}/…): a path of the configuration or of this machine is missing, not a file of the backup; no verdict on the backup"),
        );
    };
    match &held.folders {
        None => {
            return (
                Class::Environment,
                format!("pgbackrest could not list the repository's backup/{stanza} to tell whether the backup lost `{rel}` or the repository is not the one named: no verdict on the backup"),
            )
        }
        Some(f) if !f.iter().any(|n| n == folder) => {
            return (
                Class::Failed,
                format!("the repository no longer holds the folder backup/{stanza}/{folder} that the backup `{label}` needs, although pgbackrest info lists the backup: the repository is damaged"),
            )
        }
        Some(_) => {}
    }
    if rel.starts_with("backup.manifest") {
        return (
            Class::Failed,
            format!("the backup's folder backup/{stanza}/{folder} is in the repository but its manifest is gone: the backup is damaged"),
        );
    }
    match &held.manifest {
        Some(m) if manifest_lists(m, rel) => (
            Class::Failed,
            format!("the backup's manifest lists `{rel}` (in backup/{stanza}/{folder}) and the repository lacks it: the backup is damaged"),
        ),
        Some(_) => (
            Class::Environment,
            format!("the backup's manifest does not list `{rel}`: pgBackRest looked for a file that is not the backup's; no verdict on the backup"),
        ),
        None => (
            Class::Environment,
            format!("the backup's folder is there but its manifest could not be read to tell whether `{rel}` is the backup's: no verdict on the backup"),
        ),
    }
}

/// The folder beside the throwaway's data directory (in its workspace) where a pgBackRest in
/// an image keeps its lock and spool, made and handed to the server's user.
fn tool_dir(data: &Path) -> Result<PathBuf, Failure> {
    let dir = data.parent().unwrap_or(data).join("pgbackrest");
    if !dir.is_dir() {
        std::fs::create_dir(&dir).map_err(|e| Failure::environment(format!("creating {}: {e}", dir.display())))?;
    }
    crate::pg::native::RunAs::detect()?.own(&dir)?;
    Ok(dir)
}

/// A WAL segment as the repository lists it (`Repo::segment`).
pub struct Listed {
    /// The repository holds it.
    pub held: bool,
    /// When the repository received it: its file's time as `pgbackrest repo-ls` reports it
    /// (the repository's own clock for a bucket); `None` when pgBackRest cannot say.
    pub at: Option<time::OffsetDateTime>,
}

/// `segment` in a `pgbackrest repo-ls --output=json` of its folder (its file is named
/// `SEGMENT-CHECKSUM[.EXT]`).
fn segment_listed(json: &str, segment: &str) -> Option<Listed> {
    let v: Value = serde_json::from_str(json).ok()?;
    let files: Vec<&Value> = v
        .as_object()?
        .iter()
        .filter(|(name, _)| name.strip_prefix(segment).is_some_and(|rest| rest.is_empty() || rest.starts_with('-')))
        .map(|(_, f)| f)
        .collect();
    let at = files.iter().filter_map(|f| f["time"].as_i64()).max();
    Some(Listed { held: !files.is_empty(), at: at.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()) })
}

/// The WAL segments in a `pgbackrest repo-ls --recurse --output=json` of an archive: each
/// file named as pgBackRest names them, `TLI+LOG/SEGMENT-SHA1[.EXT]` (EXT its compression's),
/// by its segment's name, with when the repository received it (its file's time, `None` when
/// pgBackRest does not say); a history or backup file, or a segment's file renamed (what
/// archive-get does not find), is none.
fn segments_listed(json: &str) -> Option<Segments> {
    let v: Value = serde_json::from_str(json).ok()?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut listed = Segments::new();
    for (path, f) in v.as_object()?.iter().filter(|(_, f)| f["type"].as_str() == Some("file")) {
        let Some(name) = path.rsplit('/').next() else { continue };
        let Some((segment, rest)) = name.split_once('-') else { continue };
        let (sha1, ext) = rest.split_once('.').unwrap_or((rest, ""));
        let compressed = ["", "gz", "bz2", "lz4", "zst", "xz"].contains(&ext);
        if hex(segment, 24) && hex(sha1, 40) && compressed {
            let at = f["time"].as_i64().and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
            let seen = listed.entry(segment.to_string()).or_insert(at);
            *seen = (*seen).max(at);
        }
    }
    Some(listed)
}

/// An archive's WAL segments by name, with when the repository received each.
type Segments = std::collections::BTreeMap<String, Option<time::OffsetDateTime>>;

/// pgBackRest's words for a message: what a file that did not decrypt showed of itself (bytes
/// that are no text) is left out, and the message is cut at 400 characters.
fn readable(said: &str) -> String {
    let mut out = String::new();
    let mut dropped = false;
    for c in said.chars() {
        if c == '\u{fffd}' || c.is_control() {
            dropped = true;
            continue;
        }
        if dropped && !out.ends_with(' ') {
            out.push_str(" ... ");
        }
        dropped = false;
        out.push(c);
    }
    let mut cut: String = out.chars().take(400).collect();
    if cut.len() < out.len() {
        cut.push_str(" ...");
    }
    cut
}

/// Read `pgbackrest info --output=json`'s answer for `stanza`. A stanza whose status is not
/// ok (and that is not just "no valid backups") is the environment's failure naming it.
pub fn parse_info(json: &str, stanza: &str) -> Result<Info, Failure> {
    // pgBackRest 2.45 puts a multi-line status message (an error with its HINT lines) into
    // a JSON string unescaped; as a space it reads the same and the JSON parses.
    let json: String = json.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let v: Value = serde_json::from_str(&json)
        .map_err(|e| Failure::environment(format!("pgbackrest info --output=json did not answer JSON ({e})")))?;
    let s = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"].as_str() == Some(stanza)))
        .ok_or_else(|| Failure::environment(format!("pgbackrest info does not list the stanza `{stanza}`")))?;
    let code = s["status"]["code"].as_i64().unwrap_or(99);
    // 0 ok, 2 no valid backups (an empty list, judged by the caller); anything else means
    // pgBackRest cannot read the stanza.
    if code != 0 && code != 2 {
        let mut said = s["status"]["message"].as_str().unwrap_or("unknown").to_string();
        for r in s["repo"].as_array().into_iter().flatten() {
            if let Some(m) = r["status"]["message"].as_str().filter(|m| *m != "ok") {
                said.push_str(" / ");
                said.push_str(m);
            }
        }
        let lower = said.to_lowercase();
        let cipher = s["cipher"].as_str().filter(|c| *c != "none");
        let hint = match cipher {
            Some(c) => {
                format!(" (the repository is encrypted, {c}: is PGBACKREST_REPO1_CIPHER_PASS its cipher passphrase?)")
            }
            None if lower.contains("cipher") || lower.contains("decrypt") || lower.contains("passphrase") => {
                " (is PGBACKREST_REPO1_CIPHER_PASS the repository's cipher passphrase?)".to_string()
            }
            None => String::new(),
        };
        return Err(Failure::environment(format!(
            "pgbackrest cannot read the stanza `{stanza}`{hint}: {}",
            readable(&said)
        )));
    }
    let dbs: Vec<&Value> = s["db"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let db_of = |id: &Value| dbs.iter().find(|d| d["id"] == *id).copied();
    let mut backups = Vec::new();
    for b in s["backup"].as_array().into_iter().flatten() {
        let db = db_of(&b["database"]["id"]);
        let wal_start = b["archive"]["start"].as_str().unwrap_or_default();
        let ts = |k: &str| b["timestamp"][k].as_i64().and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
        let lsn = |k: &str| b["lsn"][k].as_str().and_then(Lsn::parse);
        backups.push(Backup {
            base: BaseBackup {
                id: b["label"].as_str().unwrap_or_default().to_string(),
                started: ts("start"),
                ended: ts("stop"),
                start_lsn: lsn("start"),
                stop_lsn: lsn("stop"),
                system_identifier: db.and_then(|d| d["system-id"].as_u64()),
                timeline: source::parse_segment_name(wal_start, source::DEFAULT_SEGMENT_SIZE).map(|(t, _)| t),
                pg_major: db.and_then(|d| d["version"].as_str()).and_then(|v| v.split('.').next()?.parse().ok()),
                size: b["info"]["repository"]["size"].as_u64(),
                has_manifest: false,
                wal_included: false,
            },
            kind: b["type"].as_str().unwrap_or_default().to_string(),
            error: b["error"].as_bool().unwrap_or(false),
            made_by: b["backrest"]["version"].as_str().unwrap_or_default().to_string(),
        });
    }
    if backups.iter().any(|b| b.base.id.is_empty()) {
        return Err(Failure::environment(format!("pgbackrest info lists a backup of `{stanza}` without a label")));
    }
    // The archive of the newest database (after a stanza-upgrade, older ids hold older WAL).
    let archive = s["archive"].as_array().and_then(|a| a.last());
    Ok(Info {
        backups,
        archive_min: archive.and_then(|a| a["min"].as_str()).map(str::to_string),
        archive_max: archive.and_then(|a| a["max"].as_str()).map(str::to_string),
        archive_id: archive.and_then(|a| a["id"].as_str()).map(str::to_string),
        cipher: s["cipher"].as_str().unwrap_or("none").to_string(),
    })
}

#[cfg(test)]
mod tests {
    /// Regression (issue 39): a configuration file or include folder the location named that
    /// does not exist reached pgBackRest's restore, whose exit 73 was judged as a failed
    /// backup; it is now refused as the input's fault before pgBackRest runs.
    #[test]
    fn a_missing_configuration_the_location_names_was_judged_as_a_failed_backup() {
        let t = tempfile::tempdir().expect("tempdir");
        let gone = t.path().join("gone.conf");
        let repo = Repo::parse(&format!("pgbackrest://demo?config={}", gone.display())).expect("parses");
        let Err(e) = PgBackRest::open(repo, Default::default()) else {
            panic!("a missing configuration was not refused")
        };
        assert_eq!(e.class, crate::error::Class::Invalid, "{e}");
        assert!(e.to_string().contains(&gone.display().to_string()) && e.to_string().contains("config="), "{e}");
        let conf = t.path().join("pgbackrest.conf");
        std::fs::write(&conf, "[global]\n").expect("config");
        let folder = t.path().join("conf.d");
        let repo = Repo::parse(&format!(
            "pgbackrest://demo?config={}&config-include-path={}",
            conf.display(),
            folder.display()
        ))
        .expect("parses");
        let Err(e) = PgBackRest::open(repo, Default::default()) else {
            panic!("a missing configuration was not refused")
        };
        assert_eq!(e.class, crate::error::Class::Invalid, "{e}");
        assert!(e.to_string().contains("conf.d") && e.to_string().contains("config-include-path="), "{e}");
        std::fs::create_dir(&folder).expect("folder");
        let repo = Repo::parse(&format!(
            "pgbackrest://demo?config={}&config-include-path={}",
            conf.display(),
            folder.display()
        ))
        .expect("parses");
        assert!(repo.configuration_exists().is_ok());
    }

    use super::*;

    const INFO: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000007","min":"000000010000000000000001"}],
      "backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000003"},"backrest":{"format":5,"version":"2.45"},
        "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":22992374,"repository":{"delta":3043376,"size":3043376},"size":22992374},
        "label":"20261206-064957F","lsn":{"start":"0/2000028","stop":"0/3000050"},"prior":null,"reference":null,
        "timestamp":{"start":1796539797,"stop":1796539799},"type":"full"}],
      "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7716079656920169398,"version":"15"}],"name":"demo",
      "repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    /// Signed evidence (issue 42) names a pgBackRest backup by its label and the sha256 of
    /// its `backup.manifest`, read back through `pgbackrest repo-get` (which decrypts an
    /// encrypted repository); a label the repository lacks is an error, never a digest.
    #[test]
    fn a_backup_is_named_by_the_sha256_of_its_manifest_read_through_repo_get() {
        use sha2::Digest as _;
        let Ok(bin) = tools::find("pgbackrest", None, &["version"], PACKAGE, &Default::default()) else {
            assert!(std::env::var_os("CI").is_none(), "pgbackrest is not installed (Debian package pgbackrest)");
            eprintln!("skipped: pgbackrest is not installed");
            return;
        };
        let d = tempfile::tempdir().expect("tmp");
        let label = "20261206-064957F";
        let dir = d.path().join("backup/demo").join(label);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let manifest = b"[backrest]\nbackrest-format=5\n\n[backup]\nbackup-label=\"20261206-064957F\"\n";
        std::fs::write(dir.join("backup.manifest"), manifest).expect("manifest");
        let repo = Repo::parse(&format!("pgbackrest://demo?repo={}", d.path().display())).expect("repo");
        let src = PgBackRest::with(repo, bin, None);
        let b = BaseBackup { id: label.into(), ..Default::default() };
        let (name, sha) = src.digest(&b).expect("digest").expect("a digest");
        assert_eq!(name, format!("pgbackrest:demo/{label}/backup.manifest"));
        let want: String = sha2::Sha256::digest(manifest).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sha, want);
        let missing = BaseBackup { id: "20261206-000000F".into(), ..Default::default() };
        assert!(src.digest(&missing).is_err(), "a missing manifest gave a digest");
    }

    #[test]
    fn info_json_of_pgbackrest_2_45_is_read() {
        let i = parse_info(INFO, "demo").expect("parsed");
        assert_eq!(i.archive_max.as_deref(), Some("000000010000000000000007"));
        let b = &i.backups[0];
        assert_eq!(b.base.id, "20261206-064957F");
        assert_eq!((b.base.start_lsn, b.base.stop_lsn), (Some(Lsn(0x200_0028)), Some(Lsn(0x300_0050))));
        assert_eq!(b.base.system_identifier, Some(7716079656920169398));
        assert_eq!((b.base.timeline, b.base.pg_major, b.made_by.as_str()), (Some(1), Some(15), "2.45"));
        assert_eq!(b.base.ended.map(|t| t.unix_timestamp()), Some(1796539799));
        assert!(parse_info(INFO, "other").is_err());
    }

    #[test]
    fn an_archives_segments_are_read_from_its_recursive_listing() {
        let sha = "112d6d716c7df94d55091614e57aded67bee8907";
        let json = format!(
            r#"{{".":{{"type":"path"}},"0000000100000000":{{"type":"path"}},
            "0000000100000000/000000010000000000000003-{sha}.gz":{{"type":"file","size":1,"time":1}},
            "0000000100000000/000000010000000000000004-{sha}":{{"type":"file","size":1,"time":2}},
            "0000000100000000/000000010000000000000005-{sha}.gz.away":{{"type":"file","size":1,"time":1}},
            "0000000100000000/000000010000000000000002.00000028.backup":{{"type":"file","size":1,"time":1}},
            "00000002.history":{{"type":"file","size":1,"time":1}}}}"#
        );
        let got: Vec<(String, Option<i64>)> = segments_listed(&json)
            .expect("parsed")
            .into_iter()
            .map(|(n, t)| (n, t.map(|t| t.unix_timestamp())))
            .collect();
        assert_eq!(got, [("000000010000000000000003".into(), Some(1)), ("000000010000000000000004".into(), Some(2))]);
        assert_eq!(segments_listed("not json"), None);
    }

    #[test]
    fn the_archive_id_and_a_segments_time_in_the_repository_are_read() {
        assert_eq!(parse_info(INFO, "demo").expect("parsed").archive_id.as_deref(), Some("15-1"));
        let ls = r#"{".":{"type":"path"},"000000010000000000000007-0a1b.gz":{"type":"file","size":2,"time":1796553561},
          "000000010000000000000070-ffff.gz":{"type":"file","size":2,"time":1796559999}}"#;
        let listed = segment_listed(ls, "000000010000000000000007").expect("listed");
        assert_eq!((listed.held, listed.at.map(|t| t.unix_timestamp())), (true, Some(1796553561)));
        let listed = segment_listed(ls, "000000010000000000000008").expect("listed");
        assert_eq!((listed.held, listed.at), (false, None));
        assert!(segment_listed("not json", "000000010000000000000007").is_none());
    }

    #[test]
    fn a_status_message_over_several_lines_is_read() {
        let bad = "[{\"name\":\"demo\",\"status\":{\"code\":99,\"message\":\"other\"},\"cipher\":\"aes-256-cbc\",\"repo\":[{\"key\":1,\"status\":{\"code\":99,\"message\":\"[CryptoError] unable to load info file\n       HINT: is or was the repo encrypted?\"}}]}]";
        let e = parse_info(bad, "demo").expect_err("an error");
        assert!(e.message.contains("HINT: is or was the repo encrypted?"), "{e}");
        assert!(e.message.contains("PGBACKREST_REPO1_CIPHER_PASS"), "{e}");
    }

    #[test]
    fn a_stanza_pgbackrest_cannot_read_is_the_environments_failure_naming_the_passphrase() {
        let bad = r#"[{"name":"demo","status":{"code":99,"message":"other"},"cipher":"none",
          "repo":[{"key":1,"cipher":"aes-256-cbc","status":{"code":99,"message":"[CryptoError] cipher header invalid"}}]}]"#;
        let e = parse_info(bad, "demo").expect_err("an error");
        assert_eq!(e.class, crate::error::Class::Environment);
        assert!(e.message.contains("PGBACKREST_REPO1_CIPHER_PASS"), "{e}");
    }

    #[test]
    fn a_location_names_stanza_config_and_repository() {
        let r = Repo::parse("pgbackrest://main?config=/etc/pgbackrest/pgbackrest.conf&repo=/var/lib/pgbackrest")
            .expect("parsed");
        assert_eq!(r.stanza, "main");
        assert_eq!(r.config.as_deref(), Some(Path::new("/etc/pgbackrest/pgbackrest.conf")));
        assert_eq!(r.repo_path.as_deref(), Some(Path::new("/var/lib/pgbackrest")));
        assert!(Repo::parse("pgbackrest://?config=/x").is_err());
        assert!(Repo::parse("pgbackrest://a?cipher-pass=secret").is_err(), "no secret in a location");
    }

    /// Regression (issue 39): repository settings kept only in a `config-include-path` file
    /// were neither named (`--config-include-path`) nor mounted into an image's container, so
    /// the restore there lost them. The folder and the paths its files name are mounted.
    #[test]
    fn a_repository_named_only_in_an_included_file_is_mounted_with_its_folder() {
        let t = tempfile::tempdir().expect("tmp");
        let (config, include, repo) =
            (t.path().join("pgbackrest.conf"), t.path().join("conf.d"), t.path().join("repo"));
        std::fs::create_dir_all(&include).expect("mkdir");
        std::fs::create_dir_all(&repo).expect("mkdir");
        std::fs::write(&config, "[global]\nlog-level-file=off\n\n[demo]\npg1-path=/nowhere\n").expect("config");
        std::fs::write(include.join("repo.conf"), format!("[global]\nrepo1-path={}\n", repo.display())).expect("conf");
        std::fs::write(include.join("notes.txt"), format!("repo1-path={}\n", t.path().display())).expect("notes");
        let named = Repo::parse(&format!(
            "pgbackrest://demo?config={}&config-include-path={}",
            config.display(),
            include.display()
        ))
        .expect("parsed");
        assert!(
            named.common().contains(&format!("--config-include-path={}", include.display())),
            "{:?}",
            named.common()
        );
        assert_eq!(named.mounts(), vec![include.clone(), config.clone(), repo.clone()], "sorted");
        // Without the folder named, pgBackRest reads the named configuration alone.
        let alone = Repo::parse(&format!("pgbackrest://demo?config={}", config.display())).expect("parsed");
        if std::env::var_os("PGBACKREST_CONFIG_INCLUDE_PATH").is_none() {
            assert_eq!(alone.mounts(), vec![config]);
        }
    }

    /// Regression (issue 39): every error of `pgbackrest restore` was judged a failed backup
    /// (exit 1), whatever pgBackRest's error code said: its options refused, a folder this
    /// machine's user may not open (exit 53 on /var/spool/pgbackrest), another pgBackRest's
    /// lock. Only the backup's bytes are a verdict now; the codes are error.yaml's.
    #[test]
    fn pgbackrests_error_codes_are_judged_by_what_they_are_about() {
        for (code, name) in [(26, "checksum"), (29, "format"), (95, "crypto")] {
            assert_eq!(cause_of(code), (Some(name), Cause::Damage), "{code}");
        }
        for code in [55, 73] {
            assert_eq!(cause_of(code).1, Cause::Missing, "{code}");
        }
        for code in [27, 31, 32, 37] {
            assert_eq!(cause_of(code).1, Cause::Configuration, "{code}");
        }
        for (code, words) in [(41, "permission"), (53, "permission"), (50, "lock"), (49, "host"), (105, "credentials")]
        {
            let Cause::Environment(why) = cause_of(code).1 else { panic!("{code} is not the environment's") };
            assert!(why.contains(words), "{code}: {why}");
        }
        assert_eq!(refused_option("ERROR: [032]: '0' is out of range for 'process-max' option"), Some("process-max"));
        assert_eq!(refused_option("ERROR: [031]: option 'config' cannot be set multiple times"), Some("config"));
        // A code pgdrill does not know is never a verdict on the backup.
        assert!(matches!(cause_of(125), (None, Cause::Environment(_))));
        assert!(matches!(cause_of(1), (None, Cause::Environment(_))));
    }

    /// Regression (issue 39): pgBackRest's "missing file" and "missing path" (exit 55 and 73)
    /// are a damaged repository or a wrong path alike. What the repository holds decides, and
    /// the message says which way it went.
    #[test]
    fn a_missing_file_is_the_backups_only_when_the_repository_should_hold_it() {
        use crate::error::Class;
        let said = "ERROR: [055]: raised from local-1 protocol: unable to open missing file '/r/backup/demo/20261207-021530F/pg_data/base/5/2838.gz' for read";
        let path = missing_path(said).expect("a path");
        assert_eq!(path, "/r/backup/demo/20261207-021530F/pg_data/base/5/2838.gz");
        assert_eq!(in_backup_folder(path, "demo"), Some(("20261207-021530F", "pg_data/base/5/2838.gz")));
        let manifest =
            "[target:file]\npg_data/base/5/2838={\"checksum\":\"f3a0\",\"size\":8192}\npg_data/base/5/2838_fsm={}\n";
        let label = "20261207-021530F";
        let folders = || Some(vec![label.to_string(), "backup.info".to_string()]);
        // The manifest lists it and the folder is there: the backup is damaged.
        let held = Held { folders: folders(), manifest: Some(manifest.into()) };
        let (class, why) = missing_verdict("demo", label, path, &held);
        assert_eq!(class, Class::Failed, "{why}");
        assert!(why.contains("manifest lists `pg_data/base/5/2838.gz`") && why.contains("damaged"), "{why}");
        // The manifest does not list it: not the backup's.
        let other = "/r/backup/demo/20261207-021530F/pg_data/base/5/9999.gz";
        let (class, why) = missing_verdict("demo", label, other, &held);
        assert_eq!(class, Class::Environment, "{why}");
        assert!(why.contains("does not list"), "{why}");
        // The backup's folder is gone while info lists the backup: the repository is damaged.
        let gone = Held { folders: Some(vec!["backup.info".into()]), manifest: None };
        let (class, why) = missing_verdict("demo", label, path, &gone);
        assert_eq!(class, Class::Failed, "{why}");
        assert!(why.contains("no longer holds the folder backup/demo/20261207-021530F"), "{why}");
        // Its manifest gone, the folder there.
        let said = "ERROR: [055]: unable to load backup manifest file '/r/backup/demo/20261207-021530F/backup.manifest' or '/r/backup/demo/20261207-021530F/backup.manifest.copy':\n FileMissingError: unable to open missing file '/r/backup/demo/20261207-021530F/backup.manifest' for read";
        let p = missing_path(said).expect("a path");
        let (class, why) = missing_verdict("demo", label, p, &Held { folders: folders(), manifest: None });
        assert_eq!(class, Class::Failed, "{why}");
        assert!(why.contains("manifest is gone"), "{why}");
        // A path outside the backups' folders (a configuration's folder): the environment's.
        let said = "ERROR: [073]: unable to list file info for missing path '/etc/pgbackrest/conf.d'";
        let p = missing_path(said).expect("a path");
        let (class, why) = missing_verdict("demo", label, p, &Held::default());
        assert_eq!(class, Class::Environment, "{why}");
        assert!(why.contains("`/etc/pgbackrest/conf.d` is not in the repository's backup folders"), "{why}");
        // The repository cannot be asked: never a verdict.
        let (class, _) = missing_verdict("demo", label, path, &Held::default());
        assert_eq!(class, Class::Environment);
        // A bundle is the backup's when a file of the manifest is in it.
        assert!(manifest_lists("pg_data/x={\"bni\":3,\"size\":1}\n", "bundle/3"));
        assert!(!manifest_lists("pg_data/x={\"bni\":31,\"size\":1}\n", "bundle/3"));
    }

    /// Regression (issue 39): a team keeping its configuration outside /etc/pgbackrest named
    /// by `config-path` (pgBackRest's option, in the location now) had it neither given to
    /// pgBackRest nor mounted into an image's container; its `pgbackrest.conf`, `conf.d` and
    /// the repository they name are mounted, and a folder that does not exist is refused.
    #[test]
    fn a_configuration_folder_the_location_names_is_given_and_mounted() {
        let t = tempfile::tempdir().expect("tmp");
        let (folder, repo) = (t.path().join("etc"), t.path().join("repo"));
        std::fs::create_dir_all(folder.join("conf.d")).expect("mkdir");
        std::fs::create_dir_all(&repo).expect("mkdir");
        std::fs::write(folder.join("pgbackrest.conf"), "[demo]\npg1-path=/nowhere\n").expect("config");
        std::fs::write(folder.join("conf.d/repo.conf"), format!("[global]\nrepo1-path={}\n", repo.display()))
            .expect("conf");
        let r = Repo::parse(&format!("pgbackrest://demo?config-path={}", folder.display())).expect("parsed");
        assert!(r.common().contains(&format!("--config-path={}", folder.display())), "{:?}", r.common());
        if ["PGBACKREST_CONFIG", "PGBACKREST_CONFIG_INCLUDE_PATH"].iter().all(|v| std::env::var_os(v).is_none()) {
            assert_eq!(r.mounts(), vec![folder.join("conf.d"), folder.join("pgbackrest.conf"), repo.clone()]);
        }
        assert!(r.configuration_exists().is_ok());
        let gone =
            Repo::parse(&format!("pgbackrest://demo?config-path={}", t.path().join("gone").display())).expect("parsed");
        let e = gone.configuration_exists().expect_err("a missing folder");
        assert_eq!(e.class, crate::error::Class::Invalid, "{e}");
        assert!(e.to_string().contains("config-path="), "{e}");
    }

    /// Regression (issue 39): archive-get's failures inside the restore_command were not
    /// judged: every one stopped recovery as "exit code 126", a failed verification. The
    /// messages are pgBackRest 2.45's own, each made to happen on a real repository.
    #[test]
    fn archive_gets_errors_are_judged_by_what_they_are_about() {
        use crate::error::Class;
        let seg = "000000010000000000000003";
        let f = |code: i32, said: &str| tools::FetchFailed { code, segment: seg.into(), said: said.into() };
        let path = "15-1/0000000100000000/000000010000000000000003-dbd89a2f009a8eb277238cc9ea2dcca69b2c62ec.gz";
        // The segment's file altered, or emptied: damage, naming the segment.
        for said in [
            format!(
                "ERROR: [042]: unable to get {seg}:\nrepo1: {path} [FormatError] zlib threw error: [-3] data error"
            ),
            format!(
                "ERROR: [042]: unable to get {seg}:\nrepo1: {path} [FormatError] unexpected eof in compressed data"
            ),
            format!("ERROR: [042]: unable to get {seg}:\nrepo1: {path} [CryptoError] cipher header invalid"),
        ] {
            let (class, why) = fetch_verdict(&f(42, &said));
            assert_eq!(class, Class::Failed, "{said}: {why}");
            assert!(why.contains(seg) && why.contains("damaged"), "{why}");
        }
        // Its mode 000: the environment's.
        let said = format!(
            "ERROR: [042]: unable to get {seg}:\nrepo1: {path} [FileOpenError] unable to open file '/r/archive/demo/{path}' for read: [13] Permission denied"
        );
        let (class, why) = fetch_verdict(&f(42, &said));
        assert_eq!(class, Class::Environment, "{why}");
        assert!(why.contains("could not open a file") && why.contains("no verdict"), "{why}");
        // Damage in one repository and an unreadable other: no verdict.
        let two = format!("{said}\nrepo2: {path} [FormatError] zlib threw error");
        assert_eq!(fetch_verdict(&f(42, &two)).0, Class::Environment);
        // The archive's folder unreadable, the repository moved away: 103, the environment's.
        let said = "WARN: repo1: [PathOpenError] unable to list file info for path '/r/archive/demo/15-1/0000000100000000': [13] Permission denied\nERROR: [103]: unable to find a valid repository";
        let (class, why) = fetch_verdict(&f(103, said));
        assert_eq!(class, Class::Environment, "{why}");
        assert!(why.contains("could not open a folder"), "{why}");
        let said = "WARN: repo1: [FileMissingError] unable to load info file '/r/archive/demo/archive.info' or '/r/archive/demo/archive.info.copy':\nERROR: [103]: unable to find a valid repository";
        let (class, why) = fetch_verdict(&f(103, said));
        assert_eq!(class, Class::Environment, "{why}");
        assert!(why.contains("is missing"), "{why}");
        // A bare code: by the table; unknown codes and the shell's own are the environment's.
        assert_eq!(fetch_verdict(&f(29, "ERROR: [029]: something")).0, Class::Failed);
        for code in [50, 82, 127, 999] {
            assert_eq!(fetch_verdict(&f(code, "ERROR")).0, Class::Environment, "{code}");
        }
        assert_eq!(cause_named("FileOpenError"), Some(cause_of(41).1));
        assert_eq!(cause_named("JsonFormatError"), Some(Cause::Damage));
        assert_eq!(cause_named("NoSuchError"), None);
    }

    #[test]
    fn archive_get_runs_on_the_throwaway_with_the_teams_configuration() {
        let r = Repo::parse("pgbackrest://my%20stanza?config=/etc/p.conf").expect("parsed");
        let t = Binary { path: PathBuf::from("/usr/bin/pgbackrest"), version: "pgBackRest 2.45".into() };
        let w = r.archive_get(&t, Path::new("/tmp/d"));
        assert_eq!(w[0], "/usr/bin/pgbackrest");
        assert!(w.contains(&"--config=/etc/p.conf".to_string()), "{w:?}");
        assert!(w.contains(&"--stanza=my stanza".to_string()), "{w:?}");
        assert!(w.contains(&"--pg1-path=/tmp/d".to_string()), "{w:?}");
        assert!(w.contains(&"--no-archive-async".to_string()), "never the team's spool and lock: {w:?}");
        assert_eq!(w.last().map(String::as_str), Some("archive-get"));
    }
}
