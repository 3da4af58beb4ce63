//! Load generators and benchmarks that print figures, each against a baseline measured in the
//! same run on the same machine.
//!
//! Layout:
//! - [`server`]: the `realtime` release binary and the baseline server as child processes
//!   (spawn, readiness, resident memory, stop).
//! - [`baseline`]: a minimal tokio-tungstenite broadcast server with no protocol, the
//!   reference every WebSocket figure is compared with.
//! - [`client`]: WebSocket clients speaking the Phoenix protocol (vsn 1.0.0 and 2.0.0).
//! - [`db`]: the database of the benchmarks that need one (given, or the test cluster).
//! - [`http`]: a one-request HTTP/1.1 client for health checks.
//! - [`stats`]: percentiles and table rows; [`histogram`]: percentiles of long runs.
//! - [`entry`]: the `main` of every benchmark binary; [`soak`]: the clients of the soak bench.
//! - [`stamped`]: broadcasts stamped with sequence and send time, sent and read back.
//! - [`cpu`]: pinning the server and the load generator to their own cores.
//! - [`args`]: `--name value` flags; [`rlimit`]: the open-files limit; [`error`]: [`BenchError`].

pub mod args;
pub mod baseline;
pub mod client;
pub mod cpu;
pub mod db;
pub mod entry;
pub mod error;
pub mod histogram;
pub mod http;
pub mod rlimit;
pub mod server;
pub mod soak;
pub mod stamped;
pub mod stats;

pub use error::BenchError;
