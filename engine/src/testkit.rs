//! What the integration tests (engine/tests/it) reach inside the library, by name.
//!
//! The engine's modules are private to the crate: the binary calls `cli::main`, and
//! everything else a caller outside the crate can name is listed here, for the tests alone.
//! It follows the tests, not a promise to anyone else: a test that needs one more item adds
//! it here, and an item no test names any more leaves. Paths mirror the modules'
//! (`testkit::pg::connect` is `crate::pg::connect`), so a test reads as the code it drives.

pub mod archive {
    pub use crate::archive::{hex, read_header, write, Codec, KeySource, WriteOptions};
}

pub mod backup {
    pub use crate::backup::{
        base, check, create, layout, manifest_bytes, offsets, restore, CreateOptions, Format, Manifest,
    };
}

pub mod error {
    pub use crate::error::{Class, Failure};
}

pub mod evidence {
    pub use crate::evidence::{dsse, keys};
}

pub mod pg {
    pub use crate::pg::{
        connect, conninfo, dbsettings, docker, ephemeral, fingerprint, globals, native, server_id, server_url,
    };
}

pub mod physical {
    pub use crate::physical::{archiving, barman, basebackup, open_with, own, pitr, recover, source};
}

pub mod runbook {
    pub use crate::runbook::parse;
}

pub mod shipped {
    pub use crate::shipped::all;
}

pub mod steps {
    pub use crate::steps::sql;
}

pub mod storage {
    pub use crate::storage::{local, open, tree, Meta, Opened, Published, Store, Unproven, Writer};
}

pub mod util {
    pub use crate::util::{compact_utc, hostname, is_bidi_control, percent_encode, rfc3339, shell_quote};
}

pub mod wal {
    pub use crate::wal::{segment_name, wal_key, wal_prefix, Lsn};
}
