//! `realtime doctor` as a process against real clusters set up wrong in each way it explains:
//! a short `DB_ENC_KEY`, a plaintext `jwt_secret`, a `schema_migrations` made by another tool,
//! a tenant database with `wal_level=replica`, an unreachable tenant database, published tables
//! without RLS or without a policy for `authenticated`, an inactive slot holding WAL, an
//! unknown Host; and once set up right (exit 0, every check ok).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realtime_server::app::AppState;
use realtime_server::config::{Config, Env};
use realtime_server::startup;
use realtime_testkit::{Cluster, TestDb};
use serde_json::{json, Value};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

/// Runs `realtime doctor <args>` with exactly `vars`; returns the exit code and stdout.
async fn doctor(vars: &[(String, String)], args: &[&str]) -> (i32, String) {
    let vars = vars.to_vec();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("doctor")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let out = cmd.output().expect("run realtime doctor");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The compose-like variables with `METRICS_JWT_SECRET` set (its absence is a warning).
fn env_for(db: &TestDb, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = vec![("METRICS_JWT_SECRET", JWT_SECRET)];
    vars.extend_from_slice(extra);
    db_env(db, &vars)
}

/// Migrates the registry in `db` and seeds `realtime-dev` (whose database is `db` itself).
async fn prepared(vars: &[(String, String)]) -> AppState {
    let config = Config::from_env(&vars.iter().cloned().collect::<Env>()).unwrap();
    startup::prepare(config).await.unwrap()
}

/// Registers tenant `id` whose database is `db`.
async fn add_tenant(state: &AppState, id: &str, host: &str, port: u16, dbname: &str) {
    let params = json!({
        "jwt_secret": "a-tenant-secret-with-at-least-32-characters",
        "extensions": [{"type": "postgres_cdc_rls", "settings": {
            "db_host": host, "db_port": port.to_string(), "db_name": dbname,
            "db_user": realtime_testkit::SUPERUSER,
            "db_password": realtime_testkit::SUPERUSER_PASSWORD,
            "region": "us-east-1", "ssl_enforced": false}}]
    });
    state
        .registry
        .upsert(id, &params, &state.tenant_defaults(), &state.crypto)
        .await
        .unwrap();
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

/// The `fix:` line right under the line starting with `prefix`.
fn fix_of<'a>(out: &'a str, prefix: &str) -> &'a str {
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"));
    lines
        .get(i + 1)
        .and_then(|l| l.strip_prefix("     fix: "))
        .unwrap_or_else(|| panic!("no fix under {prefix:?} in:\n{out}"))
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

#[tokio::test]
async fn a_right_set_up_is_all_ok() {
    let db = Cluster::shared().create_database().await;
    let vars = env_for(&db, &[]);
    let _state = prepared(&vars).await;
    db.connect()
        .await
        .batch_execute(
            "create table public.todos (id int primary key, owner uuid);
             alter table public.todos enable row level security;
             create policy own on public.todos for select to authenticated using (owner = auth.uid());
             alter publication supabase_realtime add table public.todos;",
        )
        .await
        .unwrap();

    let (code, out) = doctor(&vars, &["--host", "realtime-dev.supabase-realtime"]).await;
    assert_eq!(code, 0, "{out}");
    let body: Vec<&str> = out.lines().take_while(|l| !l.is_empty()).collect();
    assert!(body.iter().all(|l| l.starts_with("ok   ")), "{out}");
    assert!(out.contains(", 0 warn, 0 FAIL"), "{out}");
    for expected in [
        "ok   config: every variable parses",
        "ok   config.DB_ENC_KEY: DB_ENC_KEY is 16 bytes (AES-128-ECB)",
        "ok   registry: reached 127.0.0.1:",
        "ok   registry.schema_migrations: _realtime.schema_migrations (version bigint): 33 of 33 migrations applied",
        "ok   registry.tenants: 1 tenant(s): realtime-dev",
        "ok   tenant.realtime-dev.secrets:",
        "ok   tenant.realtime-dev.wal_level: wal_level is logical",
        "ok   tenant.realtime-dev.replication_headroom: replication slots ",
        "ok   tenant.realtime-dev.publication: publication supabase_realtime holds 1 table(s): public.todos",
        "ok   tenant.realtime-dev.table.public.todos: row level security on public.todos, authenticated sees the rows its policies allow",
        "ok   tenant.realtime-dev.roles:",
        "ok   tenant.realtime-dev.privileges:",
        "ok   host: Host `realtime-dev.supabase-realtime` resolves to tenant `realtime-dev`: the tenant is the first label of the host",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }

    let (code, json_out) = doctor(&vars, &["--json"]).await;
    assert_eq!(code, 0, "{json_out}");
    let report: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(report["status"], "ok");
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["message"].as_str().is_some_and(|m| !m.is_empty()), "{c}");
        assert!(c["fix"].is_null(), "{c}");
    }
    assert_eq!(
        check(&report, "tenant.realtime-dev.wal_level")["message"],
        "wal_level is logical"
    );
}

#[tokio::test]
async fn a_wrong_set_up_is_explained_with_fixes() {
    let db = Cluster::shared().create_database().await;
    let vars = env_for(&db, &[]);
    let state = prepared(&vars).await;
    // A tenant on a cluster without logical replication, and one whose database is gone.
    let replica = Cluster::with_settings("wal_level = replica\n");
    let replica_db = replica.create_database().await;
    add_tenant(
        &state,
        "replica-tenant",
        replica_db.host(),
        replica_db.port,
        &replica_db.name,
    )
    .await;
    add_tenant(&state, "gone-tenant", "127.0.0.1", 1, "postgres").await;

    let plaintext = "my-plaintext-jwt-secret-with-at-least-32-chars!";
    let slot = format!("doctor_stale_{}", db.name);
    let sql = db.connect().await;
    sql.execute(
        "update _realtime.tenants set jwt_secret = $1 where external_id = 'realtime-dev'",
        &[&plaintext],
    )
    .await
    .unwrap();
    sql.batch_execute(
        "update _realtime.extensions set settings = jsonb_set(settings, '{db_password}', '\"postgres\"') \
         where tenant_external_id = 'replica-tenant'",
    )
    .await
    .unwrap();
    sql.batch_execute(
        "create table public.open_rows (id int primary key, body text);
         create table public.hidden_rows (id int primary key);
         alter table public.hidden_rows enable row level security;
         create table public.not_published (id int primary key);
         alter publication supabase_realtime add table public.open_rows, public.hidden_rows;",
    )
    .await
    .unwrap();
    // A slot is created outside any transaction that wrote; the rows after it are its lag.
    sql.execute(
        "select pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&slot],
    )
    .await
    .unwrap();
    sql.batch_execute(
        "insert into public.open_rows select g, repeat('x', 200) from generate_series(1, 2000) g",
    )
    .await
    .unwrap();

    let (code, out) = doctor(&vars, &["--host", "realtime-dev.supabase-realtime"]).await;
    assert_eq!(code, 1, "{out}");

    // The plaintext secret: named, never printed, with the statement that encrypts it.
    assert!(
        line(&out, "FAIL tenant.realtime-dev.jwt_secret: ")
            .contains("jwt_secret of tenant realtime-dev is stored in plaintext"),
        "{out}"
    );
    let ciphertext = state.crypto.encrypt(plaintext).unwrap();
    assert_eq!(
        fix_of(&out, "FAIL tenant.realtime-dev.jwt_secret: "),
        format!("Store it encrypted: UPDATE _realtime.tenants SET jwt_secret = '{ciphertext}' WHERE external_id = 'realtime-dev';")
    );
    assert!(!out.contains(plaintext), "{out}");
    let password_fix = fix_of(
        &out,
        "FAIL tenant.replica-tenant.postgres_cdc_rls.db_password: ",
    )
    .to_string();
    assert!(
        password_fix.starts_with("Store it encrypted: UPDATE _realtime.extensions SET settings = jsonb_set(settings, '{db_password}', to_jsonb('"),
        "{out}"
    );

    // The publication lists what it holds; the unpublished table is not among them.
    let publication = line(&out, "ok   tenant.realtime-dev.publication: ");
    assert!(
        publication.contains("holds 2 table(s): public.hidden_rows, public.open_rows"),
        "{out}"
    );
    assert!(!out.contains("not_published"), "{out}");
    assert!(
        line(&out, "warn tenant.realtime-dev.table.public.open_rows: ")
            .contains("published without row level security: every subscriber sees every row"),
        "{out}"
    );
    assert!(
        fix_of(&out, "warn tenant.realtime-dev.table.public.open_rows: ")
            .contains("ALTER TABLE public.open_rows ENABLE ROW LEVEL SECURITY;"),
        "{out}"
    );
    assert!(
        line(&out, "warn tenant.realtime-dev.table.public.hidden_rows: ").contains(
            "no SELECT (or ALL) policy applies to authenticated: every change is silently hidden"
        ),
        "{out}"
    );
    assert!(
        fix_of(&out, "warn tenant.realtime-dev.table.public.hidden_rows: ")
            .contains("CREATE POLICY \"authenticated can read\" ON public.hidden_rows FOR SELECT TO authenticated"),
        "{out}"
    );

    // The inactive slot and how far behind it is.
    let slot_line = line(&out, &format!("warn tenant.realtime-dev.slot.{slot}: "));
    let lag: i64 = slot_line
        .split("lag ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{slot_line}"));
    assert!(lag > 400_000, "2000 rows of 200 bytes: {slot_line}");
    assert!(slot_line.contains("(pgoutput, inactive)"), "{slot_line}");
    assert!(
        slot_line.contains("behind pg_current_wal_lsn()"),
        "{slot_line}"
    );
    assert_eq!(
        fix_of(&out, &format!("warn tenant.realtime-dev.slot.{slot}: ")),
        format!("If nothing will stream from it again: SELECT pg_drop_replication_slot('{slot}');")
    );

    // The other tenants' databases.
    assert!(
        line(&out, "FAIL tenant.replica-tenant.wal_level: ").contains("wal_level is `replica`"),
        "{out}"
    );
    assert!(
        fix_of(&out, "FAIL tenant.replica-tenant.wal_level: ")
            .contains("ALTER SYSTEM SET wal_level = logical;"),
        "{out}"
    );
    assert!(
        line(&out, "FAIL tenant.gone-tenant.database: ")
            .contains("cannot reach 127.0.0.1:1/postgres: "),
        "{out}"
    );
    assert!(
        line(&out, "ok   host: ").contains("resolves to tenant `realtime-dev`"),
        "{out}"
    );

    let out_before_key_change = out.clone();

    // The same as JSON.
    let (code, json_out) = doctor(&vars, &["--json", "--host", "nobody.example.com"]).await;
    assert_eq!(code, 1, "{json_out}");
    let report: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(report["status"], "fail");
    let secret = check(&report, "tenant.realtime-dev.jwt_secret");
    assert_eq!(secret["status"], "fail");
    assert!(
        secret["fix"].as_str().unwrap().contains(&ciphertext),
        "{secret}"
    );
    assert_eq!(
        check(&report, "tenant.replica-tenant.wal_level")["status"],
        "fail"
    );
    assert_eq!(
        check(&report, "tenant.realtime-dev.table.public.hidden_rows")["status"],
        "warn"
    );
    assert_eq!(
        check(&report, &format!("tenant.realtime-dev.slot.{slot}"))["status"],
        "warn"
    );
    let host = check(&report, "host");
    assert_eq!(host["status"], "fail");
    assert!(
        host["message"]
            .as_str()
            .unwrap()
            .contains("names tenant `nobody`"),
        "{host}"
    );
    assert!(
        host["fix"].as_str().unwrap().contains("realtime-dev"),
        "{host}"
    );

    // A DB_ENC_KEY of the wrong length: the server's own wording, and nothing decrypted.
    let short = env_for(&db, &[("DB_ENC_KEY", "0123456789abcdef0123")]);
    let (code, out) = doctor(&short, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "FAIL config.DB_ENC_KEY: ").contains(
            "DB_ENC_KEY must be set to exactly 16 bytes (AES-128), got 20 bytes (the Elixir server fails with \"Bad key\""
        ),
        "{out}"
    );
    assert!(
        fix_of(&out, "FAIL config.DB_ENC_KEY: ")
            .starts_with("Set DB_ENC_KEY to the 16-character key"),
        "{out}"
    );
    assert!(
        line(&out, "FAIL tenant.realtime-dev.secrets: ").contains("not checked"),
        "{out}"
    );

    // The printed statements are right: once run, the secrets decrypt.
    for fix in [
        fix_of(
            &out_before_key_change,
            "FAIL tenant.realtime-dev.jwt_secret: ",
        ),
        password_fix.as_str(),
    ] {
        let statement = fix.strip_prefix("Store it encrypted: ").unwrap();
        assert_eq!(sql.execute(statement, &[]).await.unwrap(), 1, "{statement}");
    }
    let (_, out) = doctor(&vars, &[]).await;
    for id in ["realtime-dev", "replica-tenant"] {
        assert!(
            line(&out, &format!("ok   tenant.{id}.secrets: ")).contains("decrypt"),
            "{out}"
        );
    }

    sql.execute("select pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
}

#[tokio::test]
async fn schema_migrations_made_by_other_tools_are_explained() {
    // golang-migrate: `dirty` is NOT NULL without a default; the runner refuses it.
    let db = Cluster::shared().create_database().await;
    db.connect()
        .await
        .batch_execute(
            "create schema _realtime;
             create table _realtime.schema_migrations (version bigint not null primary key, dirty boolean not null);",
        )
        .await
        .unwrap();
    let vars = env_for(&db, &[]);
    let (code, out) = doctor(&vars, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "FAIL registry.schema_migrations: ").contains(
            "table _realtime.schema_migrations has NOT NULL column(s) without a default that the registry migrations cannot fill: dirty"
        ),
        "{out}"
    );
    let fix = fix_of(&out, "FAIL registry.schema_migrations: ");
    assert!(
        fix.contains(
            "ALTER TABLE \"_realtime\".schema_migrations ALTER COLUMN \"dirty\" DROP NOT NULL;"
        ),
        "{fix}"
    );
    assert!(
        line(&out, "FAIL registry.tenants: ").contains("cannot read the tenants"),
        "{out}"
    );
    let (_, json_out) = doctor(&vars, &["--json"]).await;
    let report: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(
        check(&report, "registry.schema_migrations")["status"],
        "fail"
    );

    // Rails-style `(version varchar)` without inserted_at: usable, reported, nothing changed.
    let db = Cluster::shared().create_database().await;
    let sql = db.connect().await;
    sql.batch_execute(
        "create schema _realtime;
         create table _realtime.schema_migrations (version varchar primary key);
         insert into _realtime.schema_migrations values ('20210706140551');",
    )
    .await
    .unwrap();
    let (_, out) = doctor(&env_for(&db, &[]), &[]).await;
    assert!(
        line(&out, "warn registry.schema_migrations.inserted_at: ")
            .contains("has no inserted_at column"),
        "{out}"
    );
    assert!(
        line(&out, "warn registry.schema_migrations: ")
            .contains("1 of 33 registry migrations applied; 32 pending, from 20220329161857"),
        "{out}"
    );
    let columns: i64 = sql
        .query_one(
            "select count(*) from information_schema.columns where table_schema = '_realtime' and table_name = 'schema_migrations'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 1, "the doctor changes nothing");
}

#[tokio::test]
async fn standalone_mode_checks_the_configuration_only() {
    let vars: Vec<(String, String)> = vec![
        ("API_JWT_SECRET".into(), JWT_SECRET.into()),
        ("METRICS_JWT_SECRET".into(), JWT_SECRET.into()),
    ];
    let (code, out) = doctor(&vars, &["--host", "anything.example.com"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "ok   mode: ").contains("DB_HOST is not set: standalone mode"),
        "{out}"
    );
    assert!(out.contains("the registry database is not used"), "{out}");
    assert!(
        line(&out, "ok   host: ").contains("resolves to `realtime-dev` because standalone mode"),
        "{out}"
    );
    // Every bad variable is reported, not only the first.
    let bad: Vec<(String, String)> = vec![
        ("PORT".into(), "4_000".into()),
        ("DB_ENC_KEY".into(), "short".into()),
        ("JWT_CLAIM_VALIDATORS".into(), "[1]".into()),
    ];
    let (code, out) = doctor(&bad, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "FAIL config.PORT: ").contains("env PORT expected a Integer, got \"4_000\""),
        "{out}"
    );
    assert!(
        line(&out, "FAIL config.JWT_CLAIM_VALIDATORS: ").contains("JWT_CLAIM_VALIDATORS"),
        "{out}"
    );
    assert!(
        line(&out, "FAIL config.DB_ENC_KEY: ").contains("got 5 bytes"),
        "{out}"
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_is_reported_not_waited_for() {
    // Accepts TCP connections (the kernel's backlog) but never speaks PostgreSQL.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let vars: Vec<(String, String)> = vec![
        ("DB_HOST".into(), "127.0.0.1".into()),
        ("DB_PORT".into(), port.clone()),
        ("DB_ENC_KEY".into(), "supabaserealtime".into()),
    ];
    let started = Instant::now();
    let (code, out) = doctor(&vars, &["--host", "realtime-dev.localhost"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        line(&out, "FAIL registry: ")
            .contains(&format!("cannot reach 127.0.0.1:{port}/postgres: ")),
        "{out}"
    );
    assert!(
        line(&out, "FAIL host: ").contains("the tenants could not be read"),
        "{out}"
    );
    drop(silent);
}
