//! The `realtime` server: a drop-in replacement for Supabase Realtime.
//!
//! Layout:
//! - [`config`]: every environment variable upstream reads, parsed with upstream's rules and
//!   validated with messages that name the variable, the expected form and the fix.
//! - [`logging`]: plain-text log lines in upstream's layout.
//! - [`app`]: shared state and the axum router that joins the HTTP API and the gateway.
//! - [`http`]: the HTTP API (`/api/tenants…`, `/api/ping`, `/healthcheck`, health).
//! - [`metrics`]: the Prometheus series of `/metrics`, counted where the work happens.
//! - [`janitor`]: periodic partition maintenance of the tenant databases (`RUN_JANITOR`).
//! - [`memory_trim`]: returns freed memory to the system after many sockets closed.
//! - [`cli`]: the command line (`server`, `migrate`, `doctor`, `eval`).
//! - [`doctor`]: `realtime doctor`, the set-up checks with their fixes (no SQL of its own).
//! - [`startup`]: boot sequence (crypto, registry, migrations, seed), listeners, shutdown.
//! - [`tenant_directory`]: the gateway's view of the registry (cache + decryption).
//! - [`cluster`]: several nodes as one server through Redis (`REDIS_URL`): topic messages
//!   between nodes, presence of every node.
//! - [`gateway`]: `/socket/websocket`: sessions, channels, the topic hub, broadcast, presence,
//!   JWT checks and limits, plus the REST broadcast routes that feed the same hub.
//!
//! No SQL lives here. Work in a tenant database is `realtime_cdc`'s: migrations, the
//! partition pass and slot teardown in `realtime_cdc::tenant_admin`, private-channel policy
//! checks and replay through `realtime_cdc::ChannelDatabases`; the registry's is
//! `realtime_tenants`'.

pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod doctor;
pub mod gateway;
pub mod http;
pub mod janitor;
pub mod logging;
pub mod memory_trim;
pub mod metrics;
pub mod startup;
pub mod tenant_directory;
