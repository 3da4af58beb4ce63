//! Subscription outcomes: upstream's error texts for bad entries, unknown tables and columns.

mod common;

use common::*;
use realtime_cdc::SubscribeError;
use serde_json::json;

async fn error_of(env: &Env, entry: serde_json::Value) -> SubscribeError {
    match env.try_subscribe(anon(), vec![entry]).await {
        Ok(_) => panic!("subscription unexpectedly succeeded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn rejected_entries_carry_upstreams_messages() {
    let env = env("create table public.vc (id int primary key, v varchar(20));
                   grant all on public.vc to anon;
                   alter publication supabase_realtime add table public.vc;")
    .await;

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "filter": "notacolumn=eq.123"}),
    )
    .await;
    assert_eq!(
        e.to_string(),
        r#"Unable to subscribe to changes with given parameters. An exception happened so please check your connect parameters: [event: *, schema: public, table: test, filters: [{"notacolumn", "eq", "123", false}], select: nil]. Exception: ERROR P0001 (raise_exception) invalid column for filter notacolumn"#
    );
    assert!(!e.is_retryable());
    assert_eq!(
        e.system_payload("realtime:any"),
        json!({"channel": "any", "extension": "postgres_changes", "status": "error", "message": e.to_string()})
    );

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "filter": "id=eq.hey"}),
    )
    .await;
    assert!(e.to_string().ends_with(r#"filters: [{"id", "eq", "hey", false}], select: nil]. Exception: ERROR 22P02 (invalid_text_representation) invalid input syntax for type integer: "hey""#), "{e}");

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "vc", "filter": "v=like.a%"}),
    )
    .await;
    assert!(e.to_string().ends_with("Exception: ERROR P0001 (raise_exception) operator like requires a text-compatible column type, got character varying"), "{e}");

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "filter": "details=is.maybe"}),
    )
    .await;
    assert!(
        e.to_string()
            .ends_with("invalid value for is filter: must be null, true, false, or unknown"),
        "{e}"
    );

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "filter": "id=is.true"}),
    )
    .await;
    assert!(
        e.to_string()
            .ends_with("is true filter requires a boolean column, got integer"),
        "{e}"
    );

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "filter": "details=match.(a"}),
    )
    .await;
    assert!(
        e.to_string()
            .contains("invalid regular expression for match filter: invalid regular expression"),
        "{e}"
    );

    let values: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let filter = format!("id=in.({})", values.join(","));
    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "filter": filter}),
    )
    .await;
    assert!(
        e.to_string()
            .ends_with("too many values for `in` filter. Maximum 100"),
        "{e}"
    );

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "select": ["nope"]}),
    )
    .await;
    assert!(
        e.to_string().ends_with("invalid column for select nope"),
        "{e}"
    );

    let e = error_of(
        &env,
        json!({"event": "*", "schema": "public", "table": "doesnotexist"}),
    )
    .await;
    assert_eq!(e.to_string(), "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [event: *, schema: public, table: doesnotexist, filters: [], select: nil]");

    let e = error_of(&env, json!({"schema": "public", "select": ["id"]})).await;
    assert_eq!(e.to_string(), "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.");

    let e = error_of(
        &env,
        json!({"schema": "public", "table": "test", "filter": "id=eq.1,,id=eq.2"}),
    )
    .await;
    assert_eq!(e.to_string(), "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)");

    // A role that does not exist is the database's own error.
    let e = match env
        .try_subscribe(
            json!({"role": "nobody"}),
            vec![json!({"schema": "public", "table": "test"})],
        )
        .await
    {
        Ok(_) => panic!("subscribed with an unknown role"),
        Err(e) => e,
    };
    assert!(
        e.to_string()
            .ends_with(r#"Exception: ERROR 42704 (undefined_object) role "nobody" does not exist"#),
        "{e}"
    );
}

#[tokio::test]
async fn columns_hidden_from_the_role_cannot_be_filtered() {
    let env = env("create table public.secret (id int primary key, v text);
                   grant select (id) on public.secret to anon;
                   grant select on public.secret to service_role;
                   alter publication supabase_realtime add table public.secret;")
    .await;
    let e = error_of(
        &env,
        json!({"schema": "public", "table": "secret", "filter": "v=eq.x"}),
    )
    .await;
    assert!(
        e.to_string().ends_with("invalid column for filter v"),
        "{e}"
    );
    // service_role may read it.
    env.subscribe(
        json!({"role": "service_role"}),
        vec![json!({"schema": "public", "table": "secret", "filter": "v=eq.x"})],
    )
    .await;
}

#[tokio::test]
async fn without_settings_the_tenant_is_refused() {
    let env = env("").await;
    let mut tenant = (*env.tenant).clone();
    tenant.extensions.clear();
    let (sink, _rx) = TestSink::channel();
    let err = env
        .cdc
        .subscribe(
            std::sync::Arc::new(tenant),
            realtime_cdc::SubscribeRequest {
                topic: "realtime:any".into(),
                claims: anon(),
                bindings: vec![(1, json!({"schema": "public"}))],
                sink,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SubscribeError::Config(_)), "{err}");
}

#[tokio::test]
async fn the_slot_goes_away_when_idle() {
    let env = env("").await;
    let ch = env
        .subscribe(anon(), vec![json!({"schema": "public", "table": "test"})])
        .await;
    let slot = format!("supabase_realtime_replication_slot_{}", env.db.name);
    assert_eq!(slot_count(&env.sql, &slot).await, 1);
    drop(ch);
    let mut gone = false;
    for _ in 0..100 {
        if slot_count(&env.sql, &slot).await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "slot {slot} still exists");
    // A new subscription starts a new pipeline and a new slot.
    let mut ch = env
        .subscribe(anon(), vec![json!({"schema": "public", "table": "test"})])
        .await;
    env.exec("insert into public.test values (1,'again',null)")
        .await;
    assert_eq!(ch.next_data().await["record"]["details"], "again");
}

async fn slot_count(sql: &tokio_postgres::Client, slot: &str) -> i64 {
    sql.query_one(
        "select count(*) from pg_replication_slots where slot_name = $1 and not temporary",
        &[&slot],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn subscription_rows_follow_the_channel() {
    let env = env("").await;
    realtime_tenants::tenant_migrations::migrate(&env.sql)
        .await
        .unwrap();
    // Rows of an earlier process are wiped when the pipeline starts.
    env.exec("insert into realtime.subscription (subscription_id, entity, claims) values (gen_random_uuid(), 'public.test', '{\"role\": \"anon\"}')").await;
    let ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "test", "filter": "details=eq.hello"})],
        )
        .await;
    let rows = env
        .sql
        .query(
            "select filters::text, action_filter, claims->>'role', claims_role::text, selected_columns from realtime.subscription",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "{\"(details,eq,hello,f)\"}");
    assert_eq!(rows[0].get::<_, String>(1), "INSERT");
    assert_eq!(rows[0].get::<_, String>(2), "anon");
    assert_eq!(rows[0].get::<_, String>(3), "anon");
    assert_eq!(rows[0].get::<_, Option<Vec<String>>>(4), None);
    drop(ch);
    let mut left = 1;
    for _ in 0..50 {
        left = env
            .sql
            .query_one("select count(*) from realtime.subscription", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_slot_left_behind_is_adopted() {
    let env = env("").await;
    let slot = format!("supabase_realtime_replication_slot_{}", env.db.name);
    env.sql
        .execute(
            "select pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .unwrap();
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "test"})],
        )
        .await;
    env.exec("insert into public.test values (7,'adopted',null)")
        .await;
    assert_eq!(ch.next_data().await["record"]["details"], "adopted");
    assert_eq!(slot_count(&env.sql, &slot).await, 1);
}

#[tokio::test]
async fn bad_credentials_fail_fast_with_a_reason() {
    let env = env_with("", json!({"db_password": "wrong"})).await;
    let started = std::time::Instant::now();
    let e = error_of(&env, json!({"schema": "public", "table": "test"})).await;
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn shutdown_drops_the_slot() {
    let env = env_with("", json!({})).await;
    let _ch = env
        .subscribe(anon(), vec![json!({"schema": "public", "table": "test"})])
        .await;
    let slot = format!("supabase_realtime_replication_slot_{}", env.db.name);
    assert_eq!(slot_count(&env.sql, &slot).await, 1);
    env.cdc.shutdown().await;
    assert_eq!(slot_count(&env.sql, &slot).await, 0);
}

#[tokio::test]
async fn changed_settings_start_a_new_pipeline() {
    let env = env("").await;
    let _old = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "test"})],
        )
        .await;
    // Same tenant, now with a 100-byte record limit.
    let mut tenant = (*env.tenant).clone();
    if let Some(m) = tenant.extensions[0].settings.as_object_mut() {
        m.insert("poll_max_record_bytes".into(), json!(100));
    }
    let (sink, mut rx) = TestSink::channel();
    let _sub = env
        .cdc
        .subscribe(
            std::sync::Arc::new(tenant),
            realtime_cdc::SubscribeRequest {
                topic: "realtime:any".into(),
                claims: anon(),
                bindings: vec![(
                    7,
                    json!({"event": "INSERT", "schema": "public", "table": "test"}),
                )],
                sink,
            },
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, realtime_cdc::CdcEvent::System(_)));
    env.exec("insert into public.test values (60, repeat('x',200), null)")
        .await;
    match tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await {
        Ok(Some(realtime_cdc::CdcEvent::Change { ids, data })) => {
            assert_eq!(ids, vec![7]);
            assert!(data.get().contains("Error 413"), "{}", data.get());
        }
        other => panic!("expected a change, got {other:?}"),
    }
}

#[tokio::test]
async fn stopping_a_tenant_drops_its_slot_and_closes_its_channels() {
    let env = env("").await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "test"})],
        )
        .await;
    let slot = format!("supabase_realtime_replication_slot_{}", env.db.name);
    assert_eq!(slot_count(&env.sql, &slot).await, 1);
    env.cdc.stop_tenant(&env.tenant.external_id).await;
    assert_eq!(slot_count(&env.sql, &slot).await, 0);
    // The channel's sink is told the pipeline stopped (the test sink then closes its queue):
    // that is its cue to subscribe again.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), ch.rx.recv())
        .await
        .expect("sink still open");
    assert!(closed.is_none(), "{closed:?}");
    // Stopping a tenant without a pipeline is a no-op.
    env.cdc.stop_tenant("no-such-tenant").await;

    let mut again = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "test"})],
        )
        .await;
    assert_eq!(slot_count(&env.sql, &slot).await, 1);
    env.exec("insert into public.test values (61, 'after', null)")
        .await;
    let data = again.next_data().await;
    assert_eq!(data["record"]["id"], 61);
    env.cdc.shutdown().await;
}
