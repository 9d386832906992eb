//! `postgres.ephemeral`: a throwaway server for the rest of the runbook, torn down when the
//! runbook ends (after `finally`), whether it passed, failed, timed out or was interrupted.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};
use crate::pg::ephemeral::{parse_major, Ephemeral, Options, Provider};
use crate::template::is_template;
use crate::util::memory::{InMemory, Reservation, Reserved, TMPFS};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct EphemeralWith {
    /// auto (default): docker when an engine answers and an image can be had (else a local
    /// image of the same major, e.g. pgdrill/postgres-local:15), else native
    #[serde(default = "auto")]
    #[field(ty = "auto|docker|native")]
    provider: String,
    /// e.g. 15 (default: the local pg_dump's major, else 17)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "major version")]
    version: Option<String>,
    /// docker image (default $PGDRILL_DOCKER_IMAGE or postgres:<major>; a pull silent for 20 s
    /// is abandoned)
    image: Option<String>,
    /// native: directory with initdb and postgres
    #[field(ty = "path")]
    bin_dir: Option<String>,
    /// superuser name (default postgres)
    user: Option<String>,
    /// database to create (default postgres)
    database: Option<String>,
    /// how long to wait for the first connection
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    ready_timeout: Option<Duration>,
    /// where a native server keeps its files: disk (default, the temp directory), memory
    /// (/dev/shm when twice `data_size` and 128 MiB for the cluster's own files fit there and
    /// in half the available memory, else disk) or auto (/dev/shm when they take at most
    /// min(25% of the available memory, 50% of /dev/shm's free space), else disk). In memory
    /// nothing is written back
    /// to a disk while the restore runs, and the files go at once when the server ends; a
    /// container keeps its files in the container
    #[serde(default = "disk")]
    #[field(ty = "disk|memory|auto")]
    data: String,
    /// bytes the server is expected to take in, for `data`'s choice (verify passes the plain
    /// dump's size; the server's files are counted as twice that, for indexes and free
    /// space, and 128 MiB for the empty cluster and its WAL); 0: not known, and auto keeps the
    /// files on disk
    #[serde(default, deserialize_with = "super::de::int")]
    data_size: u64,
}

fn disk() -> String {
    DISK.into()
}

const DISK: &str = "disk";
const MEMORY: &str = "memory";
const AUTO: &str = "auto";

/// Where `data` puts a native server's files, the line that says why, and the reservation
/// of the tmpfs's room they take there: chosen under the tmpfs's lock, from its room less
/// what runs still running have reserved, so two runs started together cannot both take it.
fn data_parent(data: &str, size: u64) -> (Option<PathBuf>, String, Option<Reservation>) {
    if data == DISK {
        return (None, "data on disk".into(), None);
    }
    let mut chosen = (None, String::new());
    let reserved = crate::util::memory::reserve(|room, reserved| {
        chosen = choose_data(data, size, room, reserved);
        chosen.0.as_ref().map(|_| server_files(size))
    });
    match reserved {
        Ok(r) => (chosen.0, chosen.1, r),
        Err(why) => (None, format!("data {data}: on disk, not in memory: {why}"), None),
    }
}

/// What a server's files take before anything is restored: an empty cluster (about 40 MiB
/// for PostgreSQL 15 and 17) and the WAL it keeps (`min_wal_size`, 80 MiB), rounded up. A
/// container's /dev/shm (64 MiB by default) never holds it, whatever the dump's size.
const CLUSTER_FILES: u64 = 128 << 20;

/// What a server's files are counted as for a plain dump of `size` bytes: twice the dump
/// (indexes, free space) and the cluster's own files.
fn server_files(size: u64) -> u64 {
    size.saturating_mul(2).saturating_add(CLUSTER_FILES)
}

/// `data_parent` for a tmpfs with the `room` (free bytes, available memory) given, of which
/// runs still running have `reserved` some.
fn choose_data(
    data: &str,
    size: u64,
    room: Result<(u64, u64), String>,
    reserved: Reserved,
) -> (Option<PathBuf>, String) {
    use crate::util::memory::{fits, within_share};
    let files = server_files(size);
    let what = "twice the plain dump and 128 MiB for the cluster's own files";
    let choice = match (data, room.map(|r| reserved.left(r))) {
        (DISK, _) => Err("asked for".into()),
        (_, Err(why)) => Err(why),
        (AUTO, _) if size == 0 => Err("the size it will hold is not known".into()),
        (AUTO, Ok((free, available))) => within_share(what, files, free, available, 0, ""),
        (_, Ok((free, available))) => fits(what, files, free, available),
    };
    let choice = choice.map(|why| reserved.after(why)).map_err(|why| reserved.after(why));
    match choice {
        Ok(why) => (Some(PathBuf::from(TMPFS)), format!("data {data}: in memory ({TMPFS}): {why}")),
        Err(why) => (None, format!("data {data}: on disk, not in memory: {why}")),
    }
}

fn auto() -> String {
    "auto".into()
}

impl With for EphemeralWith {
    fn check(&self) -> Result<(), WithError> {
        if !is_template(&self.provider) {
            self.provider.parse::<Provider>().map_err(|e| WithError::new("provider", e.to_string()))?;
        }
        if let Some(v) = self.version.as_deref().filter(|v| !is_template(v)) {
            parse_major(v).map_err(|e| WithError::new("version", e.to_string()))?;
        }
        if !is_template(&self.data) && ![DISK, MEMORY, AUTO].contains(&self.data.as_str()) {
            return Err(WithError::new("data", format!("`{}` is not disk, memory or auto", self.data)));
        }
        Ok(())
    }
}

/// Declares the outputs of a step that starts a throwaway server: how to connect to it
/// (`url`, `host`, `port`, `user`, `password`, `database`, the outputs `postgres.ephemeral`
/// and `pitr.source` share, the port with the step's own text), followed by the step's own
/// fields.
macro_rules! serving {
    (
        $(#[$port:meta])* port,
        pub struct $name:ident { $($(#[$fattr:meta])* $field:ident: $ty:ty,)* }
    ) => {
        #[derive(Debug, Default, Serialize, Fields)]
        #[fields(outputs)]
        pub struct $name {
            /// connection URL (contains the password; redacted in reports)
            url: String,
            /// 127.0.0.1
            host: String,
            $(#[$port])*
            port: u16,
            /// superuser
            user: String,
            /// generated per instance, redacted everywhere
            #[field(secret)]
            password: String,
            /// database name
            database: String,
            $($(#[$fattr])* $field: $ty,)*
        }
    };
}
pub(crate) use serving;

serving! {
    /// published port
    port,
    pub struct EphemeralOutputs {
        /// docker or native
        provider: String,
        /// why that provider (and image) was chosen
        provider_reason: String,
        /// docker: the image the container runs; native: empty
        image: String,
        /// server_version as reported
        server_version: String,
        /// major version
        major: u32,
        /// docker: the container id; native: the data directory
        instance: String,
        /// from the step's start to the first successful query
        startup_ms: u64,
    }
}

/// Start a throwaway PostgreSQL server (Docker or local binaries) for the rest of the runbook.
// report_log: which provider and image served, and why (a fallback must be visible where it happened).
#[step(kind = Start, name = "postgres.ephemeral", report_log)]
async fn start(ctx: StepCtx, w: EphemeralWith) -> Result<EphemeralOutputs, StepError> {
    let started = std::time::Instant::now();
    let provider: Provider = w.provider.parse()?;
    let major = w.version.as_deref().map(parse_major).transpose()?;
    let opts = Options {
        provider,
        major,
        image: w.image.clone(),
        bin_dir: w.bin_dir.as_deref().map(|d| ctx.local("bin_dir", d)).transpose()?,
        user: w.user.clone(),
        database: w.database.clone(),
        ready_timeout: w.ready_timeout,
        parent: None,
    };
    let (parent, why, reservation) = data_parent(&w.data, w.data_size);
    let in_memory = parent.is_some();
    let opts = Options { parent, ..opts };
    let server = Ephemeral::start(opts).await.map_err(|mut e| {
        // An initdb or a start that filled the tmpfs chosen for its files: say the remedy.
        if in_memory && crate::util::memory::says_full(&e.message) {
            e.message = format!("{}; {}", e.message, crate::util::memory::full_remedy(InMemory::Data));
        }
        e
    })?;
    if w.data != DISK {
        if server.provider == "native" {
            ctx.log(why);
        } else {
            ctx.log(format!("data {}: the container keeps the server's files", w.data));
        }
    }
    // The room stays reserved while the server's files are in the tmpfs: the reservation is
    // pushed before the server, so it ends after it (resources end newest first).
    if let Some(r) = reservation.filter(|_| server.provider == "native") {
        let what = format!("the {} reserved in {TMPFS} for step `{}`", crate::util::memory::mib(r.bytes), ctx.step);
        ctx.resources.push(what, Box::new(r));
        // Tests: a run that holds its room while another chooses.
        crate::util::test_pause("memory-reserved");
    }
    ctx.redactor.add(&server.password);
    let startup = started.elapsed();
    ctx.log(format!(
        "{} ({}); PostgreSQL {} on {}:{}, ready in {} ms",
        server.provider,
        server.reason,
        server.server_version,
        server.host,
        server.port,
        startup.as_millis()
    ));
    let o = EphemeralOutputs {
        url: server.url(),
        host: server.host.clone(),
        port: server.port,
        user: server.user.clone(),
        password: server.password.clone(),
        database: server.database.clone(),
        provider: server.provider.to_string(),
        provider_reason: server.reason.clone(),
        image: server.image.clone().unwrap_or_default(),
        server_version: server.server_version.clone(),
        major: server.major,
        instance: server.instance.clone(),
        startup_ms: startup.as_millis() as u64,
    };
    ctx.fact(crate::facts::Fact::Server { version: server.server_version.clone() });
    ctx.fact(crate::facts::Fact::Database { name: server.database.clone() });
    // Its identity, for the evidence's segregation check: a throwaway made by its own
    // initdb has a system identifier of its own, which a source's never equals.
    // A native server's start read it already, on its one session.
    let (system_identifier, host) = match &server.system_identifier {
        Some(id) => (Some(id.clone()), crate::pg::server_id(&server.url()).ok()),
        None => identity(&server.url()).await,
    };
    ctx.fact(crate::facts::Fact::Throwaway {
        provider: server.provider.to_string(),
        version: server.server_version.clone(),
        system_identifier,
        host,
    });
    ctx.resources.push(format!("{} server of step `{}`", server.provider, ctx.step), Box::new(server));
    Ok(o)
}

/// The system identifier and `host:port` of the server `url` names, where they can be
/// read (a role that may not call pg_control_system() leaves the identifier unknown).
pub(crate) async fn identity(url: &str) -> (Option<String>, Option<String>) {
    let host = crate::pg::server_id(url).ok();
    let system_identifier = match crate::pg::connect(url).await {
        Ok(client) => Some(crate::restore::Identity::of(&client, host.as_deref().unwrap_or_default()).await.system_id)
            .filter(|s| !s.is_empty()),
        Err(_) => None,
    };
    (system_identifier, host)
}

/// A reservation of the tmpfs ends with the run's use of it (`util::memory::Reservation`).
impl super::Teardown for Reservation {
    fn teardown(self: Box<Self>) -> super::BoxFuture<'static, ()> {
        Box::pin(async move { drop(self) })
    }
}

impl super::Teardown for Ephemeral {
    fn teardown(self: Box<Self>) -> super::BoxFuture<'static, ()> {
        Box::pin(async move { self.stop().await })
    }
}

#[cfg(test)]
mod tests {
    use super::{choose_data, Reserved};

    const GIB: u64 = 1 << 30;

    /// `auto` keeps a server's files in memory only when twice the plain dump takes at most
    /// a quarter of the available memory and half of the tmpfs's free space; `memory` when
    /// they fit with room to spare; either says why not, and an unknown size or room is disk.
    #[test]
    fn a_servers_files_go_to_memory_only_when_twice_the_dump_fits_the_rule() {
        let memory = |(p, _): &(Option<std::path::PathBuf>, String)| p.as_deref() == Some(std::path::Path::new("/dev/shm"));
        // 1 GiB dump: 2 GiB of files, within min(25% of 12 GiB, 50% of 8 GiB) = 3 GiB.
        let fits = choose_data("auto", GIB, Ok((8 * GIB, 12 * GIB)), Reserved::default());
        assert!(memory(&fits), "{}", fits.1);
        assert!(
            fits.1.contains("twice the plain dump and 128 MiB for the cluster's own files (2176 MiB) is within 3072 MiB"),
            "{}",
            fits.1
        );
        // 2 GiB dump: 4 GiB of files, over the quarter of the memory.
        let over = choose_data("auto", 2 * GIB, Ok((64 * GIB, 12 * GIB)), Reserved::default());
        assert!(!memory(&over), "{}", over.1);
        assert!(over.1.contains("data auto: on disk, not in memory: twice the plain dump and 128 MiB for the cluster's own files (4224 MiB) is over 3072 MiB"), "{}", over.1);
        // Unknown size, or an unknown room: disk.
        assert!(!memory(&choose_data("auto", 0, Ok((64 * GIB, 64 * GIB)), Reserved::default())));
        let unknown = choose_data("memory", GIB, Err("/dev/shm: ENOENT".into()), Reserved::default());
        assert!(!memory(&unknown) && unknown.1.contains("/dev/shm: ENOENT"), "{}", unknown.1);
        // `memory` goes further than auto: half the memory, a quarter of the tmpfs to spare.
        assert!(memory(&choose_data("memory", 2 * GIB, Ok((64 * GIB, 12 * GIB)), Reserved::default())));
        let no_room = choose_data("memory", 2 * GIB, Ok((4 * GIB, 64 * GIB)), Reserved::default());
        assert!(!memory(&no_room) && no_room.1.contains("does not fit in /dev/shm"), "{}", no_room.1);
        assert!(!memory(&choose_data("memory", 4 * GIB, Ok((64 * GIB, 12 * GIB)), Reserved::default())), "over half the memory");
        assert!(!memory(&choose_data("disk", 1, Ok((64 * GIB, 64 * GIB)), Reserved::default())));
    }

    /// Issue 41: two verifies started together both saw /dev/shm empty, both chose memory,
    /// and together could fill it. The second now chooses with the first's reservation (the
    /// first's server files) taken from the room, and stays on disk, saying so.
    #[test]
    fn two_throwaways_started_together_cannot_both_take_the_same_memory() {
        const MIB: u64 = 1 << 20;
        let room = || Ok((4 * GIB, 64 * GIB));
        // 700 MiB of plain dump: 1528 MiB of server files, within half of 4 GiB free.
        let (first, why) = choose_data("auto", 700 * MIB, room(), Reserved::default());
        assert!(first.is_some(), "{why}");
        let taken = Reserved { bytes: super::server_files(700 * MIB), this_run: false, others: 1 };
        let (second, why) = choose_data("auto", 700 * MIB, room(), taken);
        assert_eq!(second, None, "{why}");
        assert!(
            why.contains("data auto: on disk, not in memory: twice the plain dump and 128 MiB for the cluster's own files (1528 MiB) is over 1284 MiB")
                && why.ends_with("after 1528 MiB reserved by 1 other run"),
            "{why}"
        );
        // `memory` too: the tmpfs less the reservation has no quarter to spare.
        let (second, why) = choose_data("memory", 1200 * MIB, Ok((4 * GIB, 64 * GIB)), taken);
        assert_eq!(second, None, "{why}");
        assert!(why.contains("does not fit in /dev/shm (2568 MiB free)"), "{why}");
    }

    /// Regression (issue 41): with `data: auto` verify's default, the quickstart inside a
    /// container put a 2 MiB dump's server in the container's /dev/shm (64 MiB): twice the
    /// dump was within half of it, but the empty cluster and its WAL are not, and the restore
    /// failed "No space left on device". The cluster's own files count now: such a tmpfs is
    /// never chosen, a large one still is.
    #[test]
    fn a_small_dump_in_a_containers_64_mib_dev_shm_was_given_memory_the_cluster_alone_overfills() {
        const MIB: u64 = 1 << 20;
        for data in ["auto", "memory"] {
            let (parent, why) = choose_data(data, 2 * MIB, Ok((64 * MIB, 12 * GIB)), Reserved::default());
            assert_eq!(parent, None, "{why}");
            assert!(why.contains("(132 MiB)"), "{why}");
            let (parent, why) = choose_data(data, 2 * MIB, Ok((8 * GIB, 12 * GIB)), Reserved::default());
            assert!(parent.is_some(), "{why}");
        }
    }
}
