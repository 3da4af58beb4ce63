//! `/metrics` through the whole server (CONTROL-PLANE.md §6.2): real sockets make traffic, the
//! scrape is parsed by an independent Prometheus text parser (Python's `prometheus_client`)
//! and its values are checked against what was sent; the metrics bearer guards the route.

mod gateway_common;
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway_common::{event, join_config, payload, status, Client};
use serde_json::json;
use support::{now, sign, wait_messages_partitioned, wait_migrated, TestServer, JWT_SECRET};

const METRICS_SECRET: &str = "metrics-secret-with-at-least-32-characters";
const TENANT: &str = "realtime-dev";

/// One parsed sample: its family's type, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus text with `prometheus_client.parser` and returns the samples by the
/// name they carry in `text` (the parser reports every counter sample as `<family>_total`).
fn parse(text: &str) -> BTreeMap<String, Vec<Sample>> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client (pip install prometheus-client) could not parse the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    let mut by_name: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (kind, name, labels, value) in rows {
        let on_wire =
            |n: &str| text.contains(&format!("\n{n}{{")) || text.contains(&format!("\n{n} "));
        let name = match name.strip_suffix("_total") {
            Some(bare) if kind == "counter" && !on_wire(&name) => bare.to_string(),
            _ => name,
        };
        assert!(on_wire(&name), "{name} is not in the scrape");
        by_name.entry(name).or_default().push(Sample {
            kind,
            labels,
            value,
        });
    }
    by_name
}

/// The value of `name` whose labels include every pair of `want`.
fn value(samples: &BTreeMap<String, Vec<Sample>>, name: &str, want: &[(&str, &str)]) -> f64 {
    find(samples, name, want).unwrap_or_else(|| panic!("no {name} with {want:?}"))
}

fn find(samples: &BTreeMap<String, Vec<Sample>>, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples.get(name)?.iter().find_map(|s| {
        want.iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            .then_some(s.value)
    })
}

fn bearer(secret: &str) -> String {
    format!(
        "Bearer {}",
        sign(&json!({"role": "anon", "exp": now() + 3600}), secret)
    )
}

async fn scrape(server: &TestServer, path: &str) -> String {
    let auth = bearer(METRICS_SECRET);
    let r = server.get(path, &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "content type"
    );
    r.text()
}

async fn connect(server: &TestServer, vsn: &str) -> Client {
    let token = sign(
        &json!({"role": "authenticated", "exp": now() + 3600, "sub": "u1"}),
        JWT_SECRET,
    );
    Client {
        ws: server.socket(&token, vsn).await,
        v2: vsn == "2.0.0",
    }
}

#[tokio::test]
async fn the_scrape_counts_what_the_sockets_did() {
    let server = TestServer::standalone(&[
        ("METRICS_JWT_SECRET", METRICS_SECRET),
        ("CHANNEL_ERROR_BACKOFF_MS", "10"),
        ("REGION", "local-1"),
    ])
    .await;
    const SUBSCRIBERS: usize = 3;
    const MESSAGES: usize = 5;

    let mut subscribers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut c = connect(&server, if i % 2 == 0 { "1.0.0" } else { "2.0.0" }).await;
        c.join_ok("room1", "1", join_config(json!({}))).await;
        subscribers.push(c);
    }
    let mut publisher = connect(&server, "2.0.0").await;
    publisher
        .join_ok(
            "room1",
            "1",
            join_config(json!({"presence": {"key": "p", "enabled": true}})),
        )
        .await;
    assert_eq!(event(&publisher.recv().await), "presence_state");
    // A presence track, answered and fanned out as a diff.
    publisher
        .push(
            Some("1"),
            Some("2"),
            "realtime:room1",
            "presence",
            json!({"type": "presence", "event": "track", "payload": {"u": "p"}}),
        )
        .await;
    assert_eq!(status(&publisher.recv().await), "ok");

    let mut sent_bytes = 0;
    for i in 0..MESSAGES {
        let frame = json!([
            "1",
            null,
            "realtime:room1",
            "broadcast",
            {"type": "broadcast", "event": "cursor", "payload": {"i": i}}
        ]);
        sent_bytes += frame.to_string().len();
        publisher.send(frame).await;
    }
    for c in &mut subscribers {
        let mut got = 0;
        while got < MESSAGES {
            let f = c.recv().await;
            if event(&f) == "broadcast" {
                got += 1;
            }
        }
    }

    // A refused join on a socket of its own: it never counts as a connected user.
    let mut refused = connect(&server, "2.0.0").await;
    let r = refused.join("", "1", join_config(json!({}))).await;
    assert_eq!(status(&r), "error", "{r}");
    assert!(
        payload(&r)["response"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("TopicNameRequired"),
        "{r}"
    );

    let text = scrape(&server, "/metrics").await;
    assert_eq!(
        text.lines().filter(|l| *l == "# EOF").count(),
        2,
        "two expositions, each closed by # EOF:\n{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    let (global_text, tenant_text) = text.split_once("# EOF\n").unwrap();
    assert!(!global_text.contains("tenant=\""), "{global_text}");
    assert!(tenant_text.contains("realtime_channel_events{"));
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // Labels sorted by name, the node's labels on every sample.
        let labels = line.split_once('{').map(|(_, rest)| rest).unwrap_or("");
        let labels = labels.split_once('}').map(|(l, _)| l).unwrap_or("");
        let names: Vec<&str> = labels
            .split(',')
            .filter_map(|p| p.split_once('=').map(|(k, _)| k))
            .collect();
        // As upstream's exporter writes them: sorted, a histogram's `le` last.
        let names: Vec<&str> = names.into_iter().filter(|n| *n != "le").collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "labels not sorted in {line}");
        if line.contains("le=\"") {
            assert!(
                labels.rsplit(',').next().unwrap().starts_with("le="),
                "{line}"
            );
        }
        assert!(names.contains(&"region") && names.contains(&"host") && names.contains(&"id"));
    }

    let s = parse(&text);
    let t = [("tenant", TENANT)];
    for samples in s.values() {
        for sample in samples {
            assert_eq!(sample.labels["region"], "local-1");
            assert_eq!(sample.labels["host"], "127.0.0.1");
            assert_eq!(sample.labels["id"], "realtime@127.0.0.1");
        }
    }
    // Upstream's names, without an added `_total`.
    assert_eq!(s["realtime_channel_events"][0].kind, "counter");
    assert!(!s.contains_key("realtime_channel_events_total"));
    // The events rate counter: each broadcast counts once when sent and once per receiver.
    let events = (MESSAGES * (1 + SUBSCRIBERS)) as f64;
    assert_eq!(value(&s, "realtime_channel_events", &t), events);
    assert_eq!(value(&s, "realtime_channel_global_events", &[]), events);
    assert_eq!(
        value(&s, "realtime_channel_joins", &t),
        (SUBSCRIBERS + 1) as f64
    );
    assert!(value(&s, "realtime_channel_presence_events", &t) >= 1.0);
    assert!(value(&s, "realtime_channel_global_presence_events", &[]) >= 1.0);
    let input = value(&s, "realtime_channel_input_bytes", &t);
    assert!(input >= sent_bytes as f64, "{input} < {sent_bytes}");
    let output = value(&s, "realtime_channel_output_bytes", &t);
    assert!(output >= (SUBSCRIBERS * MESSAGES * 40) as f64, "{output}");
    assert_eq!(
        value(&s, "realtime_channel_global_output_bytes", &[]),
        output
    );
    assert_eq!(
        value(
            &s,
            "realtime_channel_error",
            &[("tenant", TENANT), ("code", "TopicNameRequired")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "realtime_channel_global_error",
            &[("code", "TopicNameRequired")]
        ),
        1.0
    );
    let joined = |result: &str| {
        value(
            &s,
            "phoenix_channel_joined_total",
            &[
                ("result", result),
                ("transport", "websocket"),
                ("endpoint", "RealtimeWeb.Endpoint"),
            ],
        )
    };
    assert_eq!(joined("ok"), (SUBSCRIBERS + 1) as f64);
    assert_eq!(joined("error"), 1.0);
    assert_eq!(
        value(&s, "realtime_connections_connected", &t),
        (SUBSCRIBERS + 1) as f64
    );
    assert_eq!(
        value(&s, "realtime_connections_global_connected", &[]),
        (SUBSCRIBERS + 1) as f64
    );
    assert_eq!(
        value(&s, "phoenix_connections_total", &[]),
        (SUBSCRIBERS + 2) as f64
    );
    assert_eq!(value(&s, "phoenix_connections_max", &[]), 1000.0);
    assert_eq!(s["realtime_payload_size_count"][0].kind, "histogram");
    assert_eq!(
        value(
            &s,
            "realtime_payload_size_count",
            &[("message_type", "broadcast")]
        ),
        MESSAGES as f64
    );
    assert_eq!(
        value(
            &s,
            "realtime_tenants_payload_size_count",
            &[("tenant", TENANT), ("message_type", "broadcast")]
        ),
        MESSAGES as f64
    );
    assert_eq!(
        value(
            &s,
            "realtime_payload_size_count",
            &[("message_type", "presence")]
        ),
        1.0
    );
    assert_eq!(value(&s, "realtime_gateway_slow_consumer_closes", &[]), 0.0);
    assert!(value(&s, "realtime_gateway_outbound_queue_bytes", &[]) >= 0.0);
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 1e6);
    for name in [
        "osmon_ram_usage",
        "osmon_cpu_avg1",
        "osmon_cpu_avg5",
        "osmon_cpu_avg15",
    ] {
        assert!(s.contains_key(name), "{name} missing");
    }
    // Standalone: no tenant database connection.
    assert_eq!(value(&s, "realtime_tenants_connected", &[]), 0.0);
    assert!(
        !s.keys().any(|k| k.starts_with("beam_")),
        "no BEAM figures are invented"
    );

    // The region route: this node's region, or nothing.
    let same = scrape(&server, "/metrics/local-1").await;
    assert_eq!(same.lines().filter(|l| *l == "# EOF").count(), 2);
    assert_eq!(scrape(&server, "/metrics/eu-west-1").await, "");
}

#[tokio::test]
async fn the_metrics_bearer_guards_the_route() {
    let server = TestServer::standalone(&[
        ("METRICS_JWT_SECRET", METRICS_SECRET),
        ("METRICS_TOKEN_BLOCKLIST", "blocked-token"),
    ])
    .await;
    let refused = |headers: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            for path in ["/metrics", "/metrics/local-1"] {
                let r = server.get(path, &h).await;
                assert_eq!(r.status, 403, "{path} with {headers:?}");
                assert_eq!(r.text(), "", "403 has an empty body");
            }
        }
    };
    refused(vec![]).await;
    // Signed with the admin secret, not the metrics one.
    refused(vec![("authorization", bearer(JWT_SECRET))]).await;
    refused(vec![(
        "authorization",
        bearer(METRICS_SECRET).replace("Bearer ", "bearer "),
    )])
    .await;
    refused(vec![("authorization", "Bearer blocked-token".into())]).await;
    let expired = sign(&json!({"exp": now() - 10}), METRICS_SECRET);
    refused(vec![("authorization", format!("Bearer {expired}"))]).await;
    // `{}` claims pass.
    let empty = sign(&json!({}), METRICS_SECRET);
    let auth = format!("Bearer {empty}");
    let r = server.get("/metrics", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn postgres_changes_show_replication_lag_and_gate_batches() {
    let server = TestServer::with_own_slots(&[("METRICS_JWT_SECRET", METRICS_SECRET)]).await;
    let pg = server.db.as_ref().unwrap().connect().await;
    wait_migrated(&pg).await;
    pg.batch_execute(
        "create table public.items (id bigint primary key, title text);
         grant select on public.items to authenticated;
         alter publication supabase_realtime add table public.items;",
    )
    .await
    .unwrap();

    let mut c = connect(&server, "2.0.0").await;
    let binding = json!({"event": "INSERT", "schema": "public", "table": "items"});
    let r = c
        .join(
            "room1",
            "1",
            join_config(json!({"postgres_changes": [binding]})),
        )
        .await;
    assert_eq!(status(&r), "ok", "{r}");
    // Creating a logical slot waits for every running transaction: allow for a loaded machine.
    loop {
        match c.next_within(120_000).await {
            gateway_common::Seen::Text(f) if event(&f) == "system" => {
                assert_eq!(payload(&f)["status"], "ok", "{f}");
                if payload(&f)["extension"] == "postgres_changes" {
                    break;
                }
            }
            gateway_common::Seen::Text(_) => {}
            other => panic!("expected the subscription's system message, got {other:?}"),
        }
    }

    const ROWS: usize = 4;
    for i in 0..ROWS {
        pg.execute("insert into public.items values ($1, 'x')", &[&(i as i64)])
            .await
            .unwrap();
    }
    let mut got = 0;
    while got < ROWS {
        let f = c.recv().await;
        if event(&f) == "postgres_changes" {
            got += 1;
        }
    }

    let s = parse(&scrape(&server, "/metrics").await);
    let t = [("tenant", TENANT)];
    assert!(value(&s, "realtime_tenants_connected", &[]) >= 1.0);
    assert_eq!(value(&s, "realtime_channel_db_events", &t), ROWS as f64);
    assert_eq!(
        value(&s, "realtime_channel_global_db_events", &[]),
        ROWS as f64
    );
    let slots: Vec<&Sample> = s["realtime_replication_lag_bytes"]
        .iter()
        .filter(|x| x.labels["tenant"] == TENANT)
        .collect();
    let cdc_slot = slots
        .iter()
        .find(|x| x.labels["slot"].starts_with("supabase_realtime_replication_slot"))
        .unwrap_or_else(|| panic!("no Postgres Changes slot among {slots:?}"));
    assert_eq!(cdc_slot.kind, "gauge");
    let slot = cdc_slot.labels["slot"].clone();
    let sl = [("tenant", TENANT), ("slot", slot.as_str())];
    assert_eq!(value(&s, "realtime_replication_streaming", &sl), 1.0);
    // Everything was delivered: nothing waits.
    assert_eq!(value(&s, "realtime_replication_lag_seconds", &sl), 0.0);
    assert!(value(&s, "realtime_replication_confirmed_lsn", &sl) > 0.0);
    let batches = value(&s, "realtime_postgres_changes_gate_batch_rows_count", &t);
    assert!((1.0..=ROWS as f64).contains(&batches), "{batches}");
    assert_eq!(
        value(&s, "realtime_postgres_changes_gate_batch_rows_sum", &t),
        ROWS as f64
    );
    assert_eq!(
        value(
            &s,
            "realtime_postgres_changes_gate_batch_duration_seconds_count",
            &t
        ),
        batches
    );
    assert!(
        value(
            &s,
            "realtime_postgres_changes_gate_batch_duration_seconds_sum",
            &t
        ) > 0.0
    );
}

#[tokio::test]
async fn private_channels_time_policy_checks_replay_and_database_broadcasts() {
    let server = TestServer::with_own_slots(&[("METRICS_JWT_SECRET", METRICS_SECRET)]).await;
    let pg = server.db.as_ref().unwrap().connect().await;
    wait_messages_partitioned(&pg).await;
    pg.batch_execute(
        "create policy read_all on realtime.messages for select to authenticated using (true);
         create policy write_all on realtime.messages for insert to authenticated with check (true);
         insert into realtime.messages (topic, extension, event, payload, private, inserted_at)
         values ('room1', 'broadcast', 'e', '{\"v\":1}', true, now() - interval '1 second');",
    )
    .await
    .unwrap();

    let mut c = connect(&server, "2.0.0").await;
    let since = (now() - 60) * 1000;
    c.join_ok(
        "room1",
        "1",
        join_config(json!({
            "private": true,
            "broadcast": {"ack": true, "self": false, "replay": {"since": since, "limit": 5}}
        })),
    )
    .await;
    // The replayed row, then an acknowledged broadcast (a write check).
    assert_eq!(c.recv().await[4]["meta"]["replayed"], true);
    c.send(json!(["1", "2", "realtime:room1", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]))
        .await;
    assert_eq!(status(&c.recv().await), "ok");
    // A row sent from the database reaches the channel once the stream is up.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "database broadcasts never arrived"
        );
        pg.execute(
            "select realtime.send('{\"a\":1}'::jsonb, 'ev', 'room1', true)",
            &[],
        )
        .await
        .unwrap();
        // vsn 2.0.0 receives database broadcasts as binary user broadcasts.
        if let gateway_common::Seen::Binary(_) = c.next_within(500).await {
            break;
        }
    }

    let s = parse(&scrape(&server, "/metrics").await);
    let t = [("tenant", TENANT)];
    for name in [
        "realtime_tenants_read_authorization_check_count",
        "realtime_tenants_write_authorization_check_count",
        "realtime_tenants_replay_count",
        "realtime_tenants_broadcast_from_database_latency_committed_at_count",
        "realtime_tenants_broadcast_from_database_latency_inserted_at_count",
    ] {
        assert!(value(&s, name, &t) >= 1.0, "{name}");
    }
    // Upstream's millisecond buckets.
    let bounds: Vec<f64> = s["realtime_tenants_replay_bucket"]
        .iter()
        .filter(|x| x.labels["tenant"] == TENANT)
        .map(|x| x.labels["le"].parse().unwrap())
        .collect();
    assert_eq!(bounds, [10.0, 250.0, 5000.0, 15000.0, f64::INFINITY]);
    let messages_slot = s["realtime_replication_streaming"]
        .iter()
        .find(|x| x.labels["slot"].starts_with("supabase_realtime_messages_replication_slot"))
        .expect("the database broadcast slot");
    assert_eq!(messages_slot.value, 1.0);
    assert!(value(&s, "realtime_tenants_connected", &[]) >= 1.0);
}
