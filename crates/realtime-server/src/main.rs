//! The `realtime` binary: `realtime` / `realtime server` runs the server; `realtime migrate`
//! runs the registry migrations; `realtime eval '<expr>'` understands the expressions the
//! upstream image's scripts and the Supabase CLI pass to it.

use std::process::ExitCode;

use realtime_server::cli;

fn main() -> ExitCode {
    cli::main(std::env::args().skip(1).collect())
}
