//! Postgres plumbing, knowing nothing of tenants or channels.
//!
//! Layout:
//! - [`connect`]: ordinary connections (TLS or not, after-connect query, IPv6-first address
//!   choice) for the registry and the tenant databases, and the [`ConnectOptions`] both
//!   connection kinds share.
//! - [`tls`]: rustls client configurations for the TLS modes.
//! - [`pgoutput`]: the pure decoder of pgoutput messages (proto versions 1 and 2).
//! - [`replication`]: the logical replication stream over the streaming protocol
//!   (`replication=database`, slots, `START_REPLICATION`, keepalives, standby status updates).
//! - [`slots`]: SQL helpers over an ordinary connection to inspect replication slots and
//!   terminate the backend holding one.
//! - [`slot_holder`]: who holds a slot (`pg_stat_replication`), and ending a holder only
//!   when nothing about it changed since it was judged gone.
//! - [`lsn`]: WAL positions; [`time`]: PostgreSQL timestamps.
#![warn(missing_docs)]

pub mod connect;
pub mod lsn;
pub mod pgoutput;
pub mod replication;
pub mod slot_holder;
pub mod slots;
pub mod time;
pub mod tls;

pub use connect::{connect, ConnectError, ConnectOptions, TlsMode};
pub use lsn::Lsn;
