//! Postgres plumbing, knowing nothing of tenants or channels.
//!
//! Layout:
//! - [`connect`]: ordinary connections (TLS or not, after-connect query, IPv6-first address
//!   choice) for the registry and the tenant databases.
//! - [`pgoutput`]: the pure decoder of pgoutput messages (proto versions 1 and 2).
//! - [`replication`]: the logical replication stream over the streaming protocol
//!   (`replication=database`, slots, `START_REPLICATION`, keepalives, standby status updates).
//! - [`lsn`]: WAL positions.

pub mod connect;
pub mod lsn;
pub mod pgoutput;
pub mod replication;

pub use lsn::Lsn;
