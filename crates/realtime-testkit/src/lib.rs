//! Test support: a throwaway PostgreSQL cluster for end-to-end tests, and a throwaway
//! `redis-server` for the multi-node ones.
//!
//! Layout:
//! - [`Cluster`]: one cluster per test process, started lazily from the machine's PostgreSQL
//!   binaries (`initdb` into a temporary directory, `wal_level=logical`, a free port, SCRAM
//!   authentication over TCP) and stopped when the process exits; [`Cluster::with_settings`]
//!   starts one of a test's own with other settings (e.g. `wal_level = replica`).
//! - [`bootstrap`]: the roles, schemas, helper functions and publication that a Supabase
//!   database provides, installed into `template1` so that every test database inherits them.
//! - [`TestDb`]: a fresh database per test, so tests in one process never see each other's rows.
//! - [`redis::Redis`]: a `redis-server` of a test's (or a bench's) own on a free port, without
//!   persistence, that can be killed and started again on the same port.
//!
//! Set `REALTIME_TEST_PG_BIN` to pick a PostgreSQL `bin` directory; otherwise `pg_config
//! --bindir`, then `/usr/lib/postgresql/<newest>/bin`, then `PATH` are tried.

mod bootstrap;
mod cluster;
pub mod redis;

pub use bootstrap::BOOTSTRAP_SQL;
pub use cluster::{Cluster, TestDb, SUPERUSER, SUPERUSER_PASSWORD};
