//! Command line of the `realtime` binary. Besides running the server it accepts the commands
//! the upstream image exposes, so scripts written for it keep working:
//! `realtime migrate`, and `realtime eval '<expr>'` for the seed expression
//! (`Realtime.Release.seeds(…)`), the migrate expression (`Realtime.Release.migrate…`) and
//! `…Realtime.Tenants.health_check("<id>")…` (exit 0 when the tenant exists). `realtime doctor`
//! checks the set-up and explains each problem with its fix (docs/doctor.md).

use std::process::ExitCode;

use crate::config::Config;
use crate::startup;

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the server (default).
    Server,
    /// Apply the registry migrations and exit.
    Migrate,
    /// Apply the registry migrations, seed the self-host tenant and exit.
    Seed,
    /// Boot as configured (migrations, seed), then exit 0 when the tenant exists.
    HealthCheck(String),
    /// Check configuration, registry and tenant databases; explain each problem.
    Doctor(crate::doctor::Options),
    /// Print usage.
    Help,
}

/// Usage text.
pub const USAGE: &str =
    "usage: realtime [server | migrate | doctor [--json] [--host <host>] | eval '<expression>']
  server      run the server (default)
  migrate     apply the registry migrations and exit
  doctor      check configuration, registry and tenant databases, explain each problem and its
              fix; exit 1 when anything FAILs. --json for scripts, --host to show which tenant
              a Host header reaches
  eval        run one of the expressions of the upstream release:
                Realtime.Release.seeds(Realtime.Repo)
                Realtime.Release.migrate()
                Realtime.Tenants.health_check(\"<tenant>\")";

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        None | Some("server") | Some("start") => Ok(Command::Server),
        Some("migrate") => Ok(Command::Migrate),
        Some("doctor") => parse_doctor(&args[1..]),
        Some("-h") | Some("--help") | Some("help") => Ok(Command::Help),
        Some("eval") => {
            let expr = args.get(1).ok_or("eval needs an expression")?;
            parse_eval(expr)
        }
        Some(other) => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

/// `doctor [--json] [--host <host>]` (also `--host=<host>`).
fn parse_doctor(args: &[String]) -> Result<Command, String> {
    let mut options = crate::doctor::Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--host" => {
                let host = rest.next().ok_or("doctor --host needs a host")?;
                options.host = Some(host.clone());
            }
            other => match other.strip_prefix("--host=") {
                Some(host) => options.host = Some(host.to_string()),
                None => return Err(format!("unknown doctor option `{other}`\n{USAGE}")),
            },
        }
    }
    Ok(Command::Doctor(options))
}

/// Recognises an `eval` expression.
pub fn parse_eval(expr: &str) -> Result<Command, String> {
    if let Some(start) = expr.find("health_check(") {
        let rest = &expr[start + "health_check(".len()..];
        let id = rest
            .trim_start()
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .map(|(id, _)| id.to_string())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("cannot read the tenant id in `{expr}`"))?;
        return Ok(Command::HealthCheck(id));
    }
    if expr.contains("Release.seeds") {
        return Ok(Command::Seed);
    }
    if expr.contains("Release.migrate") {
        return Ok(Command::Migrate);
    }
    Err(format!(
        "unsupported expression `{expr}`: this server evaluates only the seed, migrate and health_check expressions\n{USAGE}"
    ))
}

/// Runs the binary; returns the process exit code.
pub fn main(args: Vec<String>) -> ExitCode {
    let command = match parse(&args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Doctor(options)) => return doctor(&options),
        Ok(c) => c,
        Err(e) => {
            crate::logging::init(crate::config::LogLevel::Info);
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            crate::logging::init(crate::config::LogLevel::Info);
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    crate::logging::init(config.log_level);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let Some(n) = config.rlimit_nofile {
        match startup::rlimit::apply_nofile(n) {
            Ok(soft) => tracing::info!("Open files limit: {soft}"),
            Err(e) => tracing::warn!(
                "RLIMIT_NOFILE={n} could not be applied ({e}); keeping the current limit"
            ),
        }
    }
    if command == Command::Seed {
        config.seed_self_host = true;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(command, config));
    // Background work (connections, timers) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// `realtime doctor`: reports instead of logging, so a bad configuration is a finding, not a
/// refusal to run; no log subscriber is installed, stdout carries only the report.
fn doctor(options: &crate::doctor::Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(doctor_report(options));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Runs the checks on the process environment, prints the report, and exits 1 on a FAIL.
async fn doctor_report(options: &crate::doctor::Options) -> ExitCode {
    let env = crate::config::Env::from_process();
    let report = crate::doctor::run(&env, options).await;
    print!("{}", crate::doctor::render(&report, options));
    if report.status() == crate::doctor::Status::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(command: Command, config: Config) -> ExitCode {
    match command {
        // Dispatched by `main` before the configuration is parsed.
        Command::Doctor(options) => doctor_report(&options).await,
        Command::Server | Command::Help => {
            let running = match startup::start(config).await {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            tracing::info!("Starting Realtime");
            startup::shutdown_signal().await;
            tracing::info!("Shutting down");
            running.shutdown().await;
            ExitCode::SUCCESS
        }
        Command::Migrate => {
            if config.standalone {
                tracing::info!("DB_HOST is not set: no registry database to migrate");
                return ExitCode::SUCCESS;
            }
            let registry =
                match realtime_tenants::Registry::connect(&startup::registry_config(&config)).await
                {
                    Ok(r) => r,
                    Err(e) => return fail(startup::StartupError::RegistryConnect(e)),
                };
            match registry.migrate().await {
                Ok(report) => {
                    tracing::info!(
                        "Registry migrations: {} applied, {} already applied",
                        report.applied.len(),
                        report.already_applied
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Seed => match startup::prepare(config).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::HealthCheck(id) => {
            let state = match startup::prepare(config).await {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            match state.registry.get(&id).await {
                Ok(Some(tenant)) => {
                    if tenant.migrations_ran < realtime_cdc::tenant_admin::TENANT_MIGRATIONS
                        && tenant.cdc_extension().is_some()
                    {
                        if let Err(e) = realtime_cdc::tenant_admin::migrate(
                            &state.registry,
                            &state.crypto,
                            &tenant,
                        )
                        .await
                        {
                            tracing::info!("Failed to set-up tenant: {e}");
                        }
                    }
                    println!("{{:ok, %{{external_id: \"{id}\"}}}}");
                    ExitCode::SUCCESS
                }
                Ok(None) => {
                    tracing::error!(
                        error_code = "TenantNotFound",
                        "TenantNotFound: Tenant not found: {id}"
                    );
                    ExitCode::FAILURE
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    tracing::error!("{e}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands() {
        assert_eq!(parse(&args(&[])), Ok(Command::Server));
        assert_eq!(parse(&args(&["server"])), Ok(Command::Server));
        assert_eq!(parse(&args(&["migrate"])), Ok(Command::Migrate));
        assert_eq!(
            parse(&args(&["eval", "Realtime.Release.seeds(Realtime.Repo)"])),
            Ok(Command::Seed)
        );
        assert_eq!(
            parse(&args(&["eval", "Realtime.Release.migrate()"])),
            Ok(Command::Migrate)
        );
        assert_eq!(
            parse(&args(&[
                "eval",
                "{:ok, _} = Application.ensure_all_started(:realtime)\n{:ok, _} = Realtime.Tenants.health_check(\"realtime-dev\")"
            ])),
            Ok(Command::HealthCheck("realtime-dev".into()))
        );
        assert!(parse(&args(&["eval", "IO.puts(1)"])).is_err());
        assert!(parse(&args(&["eval"])).is_err());
        assert!(parse(&args(&["bogus"])).is_err());
        assert_eq!(
            parse(&args(&["doctor"])),
            Ok(Command::Doctor(crate::doctor::Options::default()))
        );
        assert_eq!(
            parse(&args(&[
                "doctor",
                "--json",
                "--host",
                "realtime-dev.supabase-realtime"
            ])),
            Ok(Command::Doctor(crate::doctor::Options {
                host: Some("realtime-dev.supabase-realtime".into()),
                json: true,
            }))
        );
        assert_eq!(
            parse(&args(&["doctor", "--host=a.b"])),
            Ok(Command::Doctor(crate::doctor::Options {
                host: Some("a.b".into()),
                json: false,
            }))
        );
        assert!(parse(&args(&["doctor", "--host"])).is_err());
        assert!(parse(&args(&["doctor", "--frob"])).is_err());
    }
}
