//! The integration tests, one module per area, in one test binary: one link of the library
//! and its dependencies instead of one per file. Shared helpers, fixtures and servers are in
//! `common`; nextest names a test `it::AREA::NAME` (e.g. `cargo nextest run -E 'test(/^verify::/)'`).

mod common;

mod archival;
mod backup_output;
mod backups;
mod catalogue;
mod charts;
mod containers;
mod cross_version;
mod doctor;
mod drills;
mod earlier_truth;
mod edge_fixture;
mod ephemeral;
mod evidence;
mod executor;
mod fleet;
mod foreign_folders;
mod gates;
mod http_check;
mod http_tls;
mod image;
mod invalid_fixtures;
mod keyring;
mod listing_scale;
mod local_publication;
mod notify;
mod object_store;
mod offsite_all;
mod oncall;
mod physical_evidence;
mod physical_tools;
mod pitr;
mod restore;
mod restore_checks;
mod restore_environment;
mod restore_journal;
mod restore_leftovers;
mod restore_targets;
mod retention;
mod roles;
mod runbook_language;
mod screenshot;
mod secret_fields;
mod secrets;
mod signed_evidence;
mod small_items;
mod sql_steps;
mod store_timeouts;
mod tls;
mod var_types;
mod verify;
mod wal_archive;
