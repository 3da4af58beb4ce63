//! The built `realtime` binary as a process: bad configuration ends with one clear error line
//! and exit code 1 (never a panic); it serves in standalone mode, logs in upstream's layout,
//! honours `LOG_LEVEL`, `DISABLE_HEALTHCHECK_LOGGING` and `RLIMIT_NOFILE`, stops with exit
//! code 0 on SIGTERM, and answers the `eval` commands of the upstream image.

mod gateway_common;
mod processes;
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use processes::Node;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

fn command(vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Runs to completion (at most 30 s) and returns the exit code and all output lines.
fn run(vars: &[(&str, &str)], args: &[&str]) -> (i32, Vec<String>) {
    let child = command(vars, args).spawn().expect("spawn");
    let out = wait_output(child, Duration::from_secs(60));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        text.lines().map(str::to_string).collect(),
    )
}

fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_configuration_is_one_error_line_and_exit_code_1() {
    let db = [("DB_HOST", "127.0.0.1"), ("DB_PORT", "1")];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DB_ENC_KEY_GCM", "1234567890123456789012345678901")],
            "DB_ENC_KEY_GCM must be exactly 32 bytes for AES-256-GCM, got 31 bytes",
        ),
        (
            vec![("PORT", "4_000")],
            "env PORT expected a Integer, got \"4_000\"",
        ),
        (
            vec![("DB_SSL", "maybe")],
            "env DB_SSL expected a boolean or 0/1 values",
        ),
        (
            vec![("JWT_CLAIM_VALIDATORS", "[1]")],
            "JWT_CLAIM_VALIDATORS",
        ),
        (vec![("DB_IP_VERSION", "ipv5")], "DB_IP_VERSION"),
        (
            [
                &db[..],
                &[
                    ("SEED_SELF_HOST", "true"),
                    ("DB_ENC_KEY", "supabaserealtime"),
                    ("API_JWT_JWKS", "{bad"),
                ],
            ]
            .concat(),
            "API_JWT_JWKS is not valid JSON",
        ),
        (
            [&db[..], &[("SEED_SELF_HOST", "true")]].concat(),
            "DB_ENC_KEY must be set to exactly 16 bytes (AES-128)",
        ),
        (
            [
                &db[..],
                &[
                    ("SEED_SELF_HOST", "true"),
                    ("DB_ENC_KEY", "0123456789abcdef0123456789abcdef"),
                ],
            ]
            .concat(),
            "DB_ENC_KEY must be set to exactly 16 bytes (AES-128), got 32 bytes",
        ),
    ];
    for (vars, expected) in cases {
        let (code, lines) = run(&vars, &[]);
        assert_eq!(code, 1, "{vars:?}: {lines:?}");
        let errors: Vec<&String> = lines.iter().filter(|l| l.contains("[error]")).collect();
        assert_eq!(errors.len(), 1, "{vars:?}: {lines:?}");
        assert!(errors[0].contains(expected), "{vars:?}: {lines:?}");
        assert!(
            lines
                .iter()
                .all(|l| realtime_server::logging::matches_layout(l)),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:?}");
    }
    // Unknown commands and expressions.
    let (code, lines) = run(&[], &["eval", "IO.puts(:hello)"]);
    assert_eq!(code, 1, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("unsupported expression")),
        "{lines:?}"
    );
    let (code, _) = run(&[], &["frobnicate"]);
    assert_eq!(code, 1);
}

#[tokio::test]
async fn standalone_binary_logs_in_upstream_layout_and_stops_on_sigterm() {
    let proc = Node::start(&[("API_JWT_SECRET", JWT_SECRET), ("RLIMIT_NOFILE", "")]);
    let res = http_request(proc.addr, "GET", "/healthcheck", &[], None).await;
    assert_eq!(res.status, 200);
    let anon = format!("Bearer {}", anon_token());
    let res = http_request(
        proc.addr,
        "GET",
        "/api/tenants/realtime-dev/health",
        &[("authorization", &anon)],
        None,
    )
    .await;
    assert_eq!(res.status, 200);
    let res = http_request(
        proc.addr,
        "GET",
        "/api/tenants/nope",
        &[("authorization", &anon)],
        None,
    )
    .await;
    assert_eq!(res.status, 404);
    // Both address families answer (`localhost` may resolve to either), where the host has
    // IPv6 at all.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let v6: SocketAddr = format!("[::1]:{}", proc.addr.port()).parse().unwrap();
        assert_eq!(
            http_request(v6, "GET", "/healthcheck", &[], None)
                .await
                .status,
            200
        );
    }
    // An idle connection left open must not hold the shutdown beyond the grace period.
    let _open = std::net::TcpStream::connect(proc.addr).unwrap();

    let (code, took, lines) = proc.terminate();
    assert_eq!(code, 0, "{lines:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(realtime_server::logging::matches_layout(l), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("[info] GET /healthcheck")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("[info] Sent 200 in ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("[warning] Sent 404 in ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" request_id=") && l.contains("[info] GET /api/tenants/nope")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("Standalone mode")),
        "{lines:?}"
    );
}

async fn health_requests(addr: SocketAddr, n: usize) {
    let anon = format!("Bearer {}", anon_token());
    for _ in 0..n {
        let res = http_request(
            addr,
            "GET",
            "/api/tenants/realtime-dev/health",
            &[("authorization", &anon)],
            None,
        )
        .await;
        assert_eq!(res.status, 200);
        assert_eq!(
            http_request(addr, "GET", "/healthcheck", &[], None)
                .await
                .status,
            200
        );
    }
}

#[tokio::test]
async fn healthcheck_logging_can_be_disabled() {
    // §8.47
    let vars = [
        ("API_JWT_SECRET", JWT_SECRET),
        ("DISABLE_HEALTHCHECK_LOGGING", "true"),
    ];
    let proc = Node::start(&vars);
    health_requests(proc.addr, 20).await;
    let (code, _, lines) = proc.terminate();
    assert_eq!(code, 0);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("GET /") || l.contains("Sent ")),
        "{lines:?}"
    );

    let vars = [
        ("API_JWT_SECRET", JWT_SECRET),
        ("DISABLE_HEALTHCHECK_LOGGING", "false"),
    ];
    let proc = Node::start(&vars);
    health_requests(proc.addr, 20).await;
    let (_, _, lines) = proc.terminate();
    let count = |s: &str| lines.iter().filter(|l| l.contains(s)).count();
    assert_eq!(
        count("[info] GET /api/tenants/realtime-dev/health"),
        20,
        "{lines:?}"
    );
    assert_eq!(count("[info] GET /healthcheck"), 20);
    assert_eq!(count("[info] Sent 200 in "), 40);
}

#[tokio::test]
async fn log_level_warning_suppresses_info() {
    let proc = Node::start(&[("LOG_LEVEL", "warning"), ("RLIMIT_NOFILE", "10000")]);
    // The soft limit was raised (capped at the hard limit).
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proc.pid())).unwrap();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = row.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    let expected = match hard.parse::<u64>() {
        Ok(h) => h.min(10_000).to_string(),
        Err(_) => "10000".to_string(),
    };
    assert_eq!(soft, expected, "{row}");

    assert_eq!(
        http_request(proc.addr, "GET", "/nope", &[], None)
            .await
            .status,
        404
    );
    assert_eq!(
        http_request(proc.addr, "GET", "/healthcheck", &[], None)
            .await
            .status,
        200
    );
    let (code, _, lines) = proc.terminate();
    assert_eq!(code, 0);
    assert!(!lines.iter().any(|l| l.contains("[info]")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("[warning] Sent 404 in ")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn eval_health_check_after_migrations_and_seed() {
    // §7.5 / §8.49, against a real registry.
    let db = realtime_testkit::Cluster::shared().create_database().await;
    let vars = db_env(&db, &[]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expr = "{:ok, _} = Application.ensure_all_started(:realtime)\n{:ok, _} = Realtime.Tenants.health_check(\"realtime-dev\")";
    let (code, lines) = run(&vars, &["eval", expr]);
    assert_eq!(code, 0, "{lines:?}");
    let (code, lines) = run(&vars, &["eval", "Realtime.Tenants.health_check(\"nope\")"]);
    assert_eq!(code, 1, "{lines:?}");
    let (code, lines) = run(&vars, &["migrate"]);
    assert_eq!(code, 0, "{lines:?}");
    let (code, lines) = run(&vars, &["eval", "Realtime.Release.seeds(Realtime.Repo)"]);
    assert_eq!(code, 0, "{lines:?}");
    let sql = db.connect().await;
    let n: i64 = sql
        .query_one(
            "SELECT count(*) FROM _realtime.tenants WHERE external_id = 'realtime-dev'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn sigterm_with_100_open_sockets_exits_0_within_10_s() {
    // §8.50
    let proc = Node::start(&[("API_JWT_SECRET", JWT_SECRET)]);
    let url = format!(
        "ws://{}/socket/websocket?apikey={}&vsn=1.0.0",
        proc.addr,
        anon_token()
    );
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let (ws, res) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("upgrade");
        assert_eq!(res.status(), 101);
        sockets.push(ws);
    }
    let (code, took, lines) = tokio::task::spawn_blocking(move || proc.terminate())
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    drop(sockets);
}

#[tokio::test]
async fn literal_compose_healthcheck_passes_after_seed() {
    // §8.9 with the compose file's own command, against a real registry.
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed; skipping the literal healthcheck command");
        return;
    }
    let db = realtime_testkit::Cluster::shared().create_database().await;
    let vars = db_env(&db, &[("DISABLE_HEALTHCHECK_LOGGING", "true")]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let proc = Node::start(&vars);
    let port = proc.addr.port();
    let healthcheck = move |token: String| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "curl -sSfL --head -o /dev/null -H \"Authorization: Bearer {token}\" http://localhost:{port}/api/tenants/realtime-dev/health"
            ))
            .status()
            .expect("sh")
    };
    let ok = tokio::task::spawn_blocking(move || healthcheck(anon_token()));
    assert!(ok.await.unwrap().success());
    let expired = sign(
        &serde_json::json!({"role": "anon", "exp": now() - 1}),
        JWT_SECRET,
    );
    let refused = tokio::task::spawn_blocking(move || healthcheck(expired));
    assert!(!refused.await.unwrap().success());
    let (code, _, lines) = proc.terminate();
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Tenant set-up successfully")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn wrong_registry_password_fails_fast_with_a_hint() {
    let db = realtime_testkit::Cluster::shared().create_database().await;
    let owned = db_env(&db, &[("DB_PASSWORD", "not-the-password")]);
    let started = Instant::now();
    let (code, lines) = tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run(&vars, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{lines:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains("[error]")).collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    assert!(errors[0].contains("DB_PASSWORD"), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:?}");
}

/// The tenant's `supabase_realtime%` slots in its own database.
async fn realtime_slots(sql: &tokio_postgres::Client) -> Vec<String> {
    sql.query(
        "select slot_name::text from pg_replication_slots \
         where database = current_database() and slot_name like 'supabase_realtime%'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn sigterm_releases_the_replication_slots() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let db = realtime_testkit::Cluster::shared().create_database().await;
    // Slot names are cluster-wide: keep this test's apart from other tests'.
    let vars = db_env(&db, &[("SLOT_NAME_SUFFIX", db.name.as_str())]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let proc = Node::start(&vars);
    let sql = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sql
        .query_one(
            "select to_regclass('realtime.subscription') is not null",
            &[],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            Instant::now() < deadline,
            "tenant migrations did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sql.batch_execute(
        "create table public.notes (id bigint primary key);
         grant select on public.notes to anon;
         alter publication supabase_realtime add table public.notes;",
    )
    .await
    .unwrap();

    let mut req = format!(
        "ws://{}/socket/websocket?apikey={}&vsn=1.0.0",
        proc.addr,
        anon_token()
    )
    .into_client_request()
    .unwrap();
    req.headers_mut().insert(
        "host",
        "realtime-dev.supabase-realtime:4000".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    let join = serde_json::json!({
        "topic": "realtime:notes", "event": "phx_join", "ref": "1", "join_ref": "1",
        "payload": {"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "notes"}]}}
    });
    ws.send(WsMessage::text(join.to_string())).await.unwrap();
    let subscribed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Text(t) = m {
                if t.as_str().contains("Subscribed to PostgreSQL") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(subscribed, Ok(true), "{:?}", proc.lines());
    let deadline = Instant::now() + Duration::from_secs(30);
    while realtime_slots(&sql).await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "slots: {:?}",
            realtime_slots(&sql).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (code, took, lines) = tokio::task::spawn_blocking(move || proc.terminate())
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(
        realtime_slots(&sql).await,
        Vec::<String>::new(),
        "{lines:?}"
    );
    drop(ws);
}
