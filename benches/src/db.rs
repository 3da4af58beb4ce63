//! The database a benchmark runs the server against: given with `BENCH_DB_*` variables, or a
//! fresh database on the `realtime-testkit` cluster started for this run.

use std::time::{Duration, Instant};

use crate::server::{set_var, standalone_env};
use crate::BenchError;

/// Where the registry (and the seeded tenant) lives.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub name: String,
    /// Superuser name.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl DbSettings {
    /// `BENCH_DB_HOST`, `BENCH_DB_PORT` (5432), `BENCH_DB_NAME` (postgres), `BENCH_DB_USER`
    /// (supabase_admin), `BENCH_DB_PASSWORD` (postgres) when `BENCH_DB_HOST` is set.
    pub fn from_env() -> Result<Option<DbSettings>, BenchError> {
        let Ok(host) = std::env::var("BENCH_DB_HOST") else {
            return Ok(None);
        };
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let port = var("BENCH_DB_PORT", "5432");
        Ok(Some(DbSettings {
            host,
            port: port.parse().map_err(|_| {
                BenchError::Setup(format!("BENCH_DB_PORT expects a port number, got `{port}`"))
            })?,
            name: var("BENCH_DB_NAME", "postgres"),
            user: var("BENCH_DB_USER", "supabase_admin"),
            password: var("BENCH_DB_PASSWORD", "postgres"),
        }))
    }

    /// A fresh database on the shared test cluster (started on first use, removed at exit).
    pub async fn test_cluster() -> Result<DbSettings, BenchError> {
        let cluster = tokio::task::spawn_blocking(realtime_testkit::Cluster::shared)
            .await
            .map_err(|e| BenchError::Setup(format!("starting the test cluster: {e}")))?;
        let db = cluster.create_database().await;
        Ok(DbSettings {
            host: db.host().to_string(),
            port: db.port,
            name: db.name,
            user: realtime_testkit::SUPERUSER.to_string(),
            password: realtime_testkit::SUPERUSER_PASSWORD.to_string(),
        })
    }

    /// The given settings, else a test cluster database.
    pub async fn from_env_or_cluster() -> Result<DbSettings, BenchError> {
        match DbSettings::from_env()? {
            Some(s) => Ok(s),
            None => DbSettings::test_cluster().await,
        }
    }

    /// Server variables for a registry on this database with `SEED_SELF_HOST=true` (so the
    /// tenant points at the same database), limits raised as in standalone mode.
    pub fn server_env(&self, port: u16) -> Vec<(String, String)> {
        let mut vars = standalone_env(port);
        set_var(&mut vars, "DB_HOST", self.host.clone());
        set_var(&mut vars, "DB_PORT", self.port.to_string());
        set_var(&mut vars, "DB_NAME", self.name.clone());
        set_var(&mut vars, "DB_USER", self.user.clone());
        set_var(&mut vars, "DB_PASSWORD", self.password.clone());
        set_var(
            &mut vars,
            "DB_AFTER_CONNECT_QUERY",
            "SET search_path TO _realtime",
        );
        set_var(&mut vars, "DB_ENC_KEY", "supabaserealtime");
        set_var(&mut vars, "SEED_SELF_HOST", "true");
        vars
    }

    /// A `tokio_postgres` connection; its driver runs as a task.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, BenchError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.name)
            .user(&self.user)
            .password(&self.password);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("database connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// Options for a replication connection to this database.
    pub fn replication_options(&self) -> realtime_pg::ConnectOptions {
        realtime_pg::ConnectOptions::new(
            self.host.clone(),
            self.port,
            self.name.clone(),
            self.user.clone(),
            self.password.clone(),
        )
    }
}

/// Tenant migrations run in the background after the seed; subscriptions need their tables.
pub async fn wait_tenant_migrations(pg: &tokio_postgres::Client) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = pg
            .query_one(
                "select to_regclass('realtime.subscription') is not null",
                &[],
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(
                "tenant migrations (realtime.subscription) did not finish within 60 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `realtime` on a free port against `db` (registry and tenant in the same database)
/// and waits until the seeded tenant answers its health check and its database is migrated.
pub async fn start_realtime(
    db: &DbSettings,
    pg: &tokio_postgres::Client,
) -> Result<crate::server::ServerProcess, BenchError> {
    use crate::server::{free_port, ServerProcess, JWT_SECRET, TENANT};
    let port = free_port()?;
    let mut server = ServerProcess::realtime(port, &db.server_env(port))?;
    let bearer = format!(
        "Bearer {}",
        crate::client::token(JWT_SECRET, "service_role")?
    );
    server
        .wait_http_ok(
            "HEAD",
            &format!("/api/tenants/{TENANT}/health"),
            &[("Authorization", bearer.as_str())],
            Duration::from_secs(60),
        )
        .await?;
    wait_tenant_migrations(pg).await?;
    Ok(server)
}
