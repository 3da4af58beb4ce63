//! Admin tenant routes against a real registry database (CONTROL-PLANE §5.3/§5.4, §8 tests
//! 8–22): status codes, bodies, headers and the rows they leave behind.

mod support;

use serde_json::{json, Value};
use support::*;

const TENANT_KEYS: [&str; 13] = [
    "id",
    "external_id",
    "name",
    "max_concurrent_users",
    "max_channels_per_client",
    "max_events_per_second",
    "max_joins_per_second",
    "inserted_at",
    "extensions",
    "private_only",
    "max_client_presence_events_per_window",
    "client_presence_window_ms",
    "presence_enabled",
];

fn assert_tenant_shape(t: &Value) {
    let obj = t.as_object().expect("tenant object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = TENANT_KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "tenant keys");
    for ext in obj["extensions"].as_array().expect("extensions") {
        let mut k: Vec<&str> = ext
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        assert_eq!(k, ["inserted_at", "settings", "type", "updated_at"]);
        assert!(ext["settings"].get("db_password").is_none());
    }
}

fn acme_body(db: &realtime_testkit::TestDb, name: &str) -> Value {
    json!({"tenant": {
        "external_id": "acme",
        "name": name,
        "jwt_secret": "acme-super-secret-at-least-32-characters",
        "max_concurrent_users": 500,
        "extensions": [{"type": "postgres_cdc_rls", "settings": {
            "db_host": db.host(), "db_port": db.port.to_string(), "db_name": db.name,
            "db_user": realtime_testkit::SUPERUSER,
            "db_password": realtime_testkit::SUPERUSER_PASSWORD,
            "region": "us-east-1", "ssl_enforced": false}}]
    }})
}

#[tokio::test]
async fn seeded_tenant_is_healthy_listed_and_reachable_with_the_anon_key() {
    let server = TestServer::with_db(&[]).await;
    let anon = format!("Bearer {}", anon_token());

    // §8.9: the compose healthcheck (HEAD with the anon key).
    let res = server
        .request(
            "HEAD",
            "/api/tenants/realtime-dev/health",
            &[("authorization", &anon)],
            None,
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    assert!(res.header("x-request-id").is_some());

    // §8.10
    let res = server
        .get(
            "/api/tenants/realtime-dev/health",
            &[("authorization", &anon)],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        res.json(),
        json!({"data": {"healthy": true, "db_connected": false, "replication_connected": false,
                        "connected_cluster": 0, "region": null, "node": "realtime@127.0.0.1"}})
    );

    // §8.14
    let res = server
        .get("/api/tenants", &[("authorization", &anon)])
        .await;
    assert_eq!(res.status, 200);
    let text = res.text();
    assert!(
        !text.contains("db_password") && !text.contains("jwt_secret"),
        "{text}"
    );
    let list = res.json()["data"].as_array().cloned().expect("data list");
    let dev = list
        .iter()
        .find(|t| t["external_id"] == "realtime-dev")
        .expect("realtime-dev listed");
    for t in &list {
        assert_tenant_shape(t);
    }
    assert_eq!(dev["name"], "realtime-dev");
    assert_eq!(dev["max_concurrent_users"], 200);
    assert!(dev["extensions"][0]["settings"]["db_name"].is_string());

    // §8.8
    let res = server.get("/healthcheck", &[]).await;
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));

    // The seeded tenant's database was migrated at start.
    let client = server.db.as_ref().unwrap().connect().await;
    let row = client
        .query_one(
            "SELECT migrations_ran FROM _realtime.tenants WHERE external_id = 'realtime-dev'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 81);
    server.stop().await;
}

#[tokio::test]
async fn unknown_tenant_routes() {
    // §8.13
    let server = TestServer::with_db(&[]).await;
    for (method, path, status) in [
        ("GET", "/api/tenants/nope/health", 404),
        ("GET", "/api/tenants/nope", 404),
        ("POST", "/api/tenants/nope/reload", 404),
        ("POST", "/api/tenants/nope/shutdown", 404),
        ("DELETE", "/api/tenants/nope", 204),
    ] {
        let res = server.admin(method, path, None).await;
        assert_eq!(res.status, status, "{method} {path}");
        if status == 404 {
            assert_eq!(
                res.json(),
                json!({"message": "not found"}),
                "{method} {path}"
            );
        } else {
            assert!(res.body.is_empty());
        }
    }
    // Existing tenant: reload and shutdown answer 204.
    for path in [
        "/api/tenants/realtime-dev/reload",
        "/api/tenants/realtime-dev/shutdown",
    ] {
        assert_eq!(server.admin("POST", path, None).await.status, 204, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn create_update_validate_and_delete() {
    let server = TestServer::with_db(&[]).await;
    let db = server.db.as_ref().unwrap();
    let sql = db.connect().await;

    // §8.15: create; a supplied name is ignored.
    let res = server
        .admin("POST", "/api/tenants", Some(&acme_body(db, "other")))
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let data = res.json()["data"].clone();
    assert_tenant_shape(&data);
    assert_eq!(data["name"], "acme");
    assert_eq!(data["external_id"], "acme");
    assert_eq!(data["max_concurrent_users"], 500);
    assert_eq!(data["max_events_per_second"], 100);
    let stored_host = data["extensions"][0]["settings"]["db_host"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        server.state.crypto.decrypt(&stored_host).unwrap().value,
        db.host()
    );
    let row = sql
        .query_one(
            "SELECT id::text, migrations_ran FROM _realtime.tenants WHERE external_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    let id: String = row.get(0);
    assert_eq!(
        res.header("location"),
        Some(format!("/api/tenants/{id}").as_str())
    );
    assert_eq!(row.get::<_, i32>(1), 81);

    // §8.16: the same POST updates; PUT changes a limit.
    let res = server
        .admin("POST", "/api/tenants", Some(&acme_body(db, "other")))
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("location"),
        Some(format!("/api/tenants/{id}").as_str())
    );
    let res = server
        .admin(
            "PUT",
            "/api/tenants/acme",
            Some(&json!({"tenant": {"max_concurrent_users": 42}})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["data"]["max_concurrent_users"], 42);
    let res = server
        .admin(
            "PATCH",
            "/api/tenants/acme",
            Some(&json!({"tenant": {"max_events_per_second": 7}})),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["data"]["max_concurrent_users"], 42);
    assert_eq!(res.json()["data"]["max_events_per_second"], 7);
    let res = server.admin("GET", "/api/tenants/acme", None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["data"]["max_events_per_second"], 7);

    // §8.17
    let res = server
        .admin(
            "POST",
            "/api/tenants",
            Some(&json!({"tenant": {"name": "x"}})),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(
        res.json(),
        json!({"errors": {"external_id": ["can't be blank"]}})
    );

    // §8.18
    let res = server
        .admin(
            "PUT",
            "/api/tenants/newone",
            Some(&json!({"tenant": {"extensions": []}})),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(
        res.json(),
        json!({"errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}})
    );
    let n: i64 = sql
        .query_one(
            "SELECT count(*) FROM _realtime.tenants WHERE external_id = 'newone'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // §8.19
    let ext = |settings: Value| {
        json!({"tenant": {"jwt_secret": "a-secret-with-at-least-32-characters-x",
                          "extensions": [{"type": "postgres_cdc_rls", "settings": settings}]}})
    };
    let res = server
        .admin(
            "PUT",
            "/api/tenants/acme2",
            Some(&ext(
                json!({"db_port": "5432", "db_name": "postgres", "db_user": "u",
                             "db_password": "p", "region": "us-east-1"}),
            )),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(
        res.json(),
        json!({"errors": {"extensions": [{"settings": ["db_host can't be blank"]}]}})
    );
    let res = server
        .admin(
            "PUT",
            "/api/tenants/acme2",
            Some(&ext(
                json!({"db_host": "db", "db_port": 5432, "db_name": "postgres",
                             "db_user": "u", "db_password": "p", "region": "us-east-1"}),
            )),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(
        res.json(),
        json!({"errors": {"extensions": [{"settings": ["db_port is invalid"]}]}})
    );

    // §8.20: postgres_changes_pool is stored as subcriber_pool_size.
    let mut body = acme_body(db, "acme");
    body["tenant"]["extensions"][0]["settings"]["postgres_changes_pool"] = json!(10);
    let res = server.admin("PUT", "/api/tenants/acme", Some(&body)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let settings: Value = sql
        .query_one(
            "SELECT settings FROM _realtime.extensions WHERE tenant_external_id = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(settings["subcriber_pool_size"], 10);
    assert!(settings.get("postgres_changes_pool").is_none());

    // §8.21: no wrapper, or a body that is not JSON.
    let res = server
        .admin(
            "POST",
            "/api/tenants",
            Some(&json!({"external_id": "acme3"})),
        )
        .await;
    assert_eq!(res.status, 400);
    let auth = format!("Bearer {}", admin_token());
    let res = server
        .request(
            "POST",
            "/api/tenants",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(b"{\"tenant\": "),
        )
        .await;
    assert_eq!(res.status, 400);

    // §8.22
    let res = server.admin("DELETE", "/api/tenants/acme", None).await;
    assert_eq!(res.status, 204);
    for table in ["tenants", "extensions"] {
        let col = if table == "tenants" {
            "external_id"
        } else {
            "tenant_external_id"
        };
        let n: i64 = sql
            .query_one(
                &format!("SELECT count(*) FROM _realtime.{table} WHERE {col} = 'acme'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    assert_eq!(
        server.admin("GET", "/api/tenants/acme", None).await.status,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn seed_recreates_the_tenant_at_every_start() {
    // §8.5
    let first = TestServer::with_db(&[]).await;
    let db = first.stop().await.unwrap();
    let sql = db.connect().await;
    let id_before: String = sql
        .query_one(
            "SELECT id::text FROM _realtime.tenants WHERE external_id = 'realtime-dev'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    sql.execute(
        "UPDATE _realtime.tenants SET max_concurrent_users = 7 WHERE external_id = 'realtime-dev'",
        &[],
    )
    .await
    .unwrap();

    let second = TestServer::on_db(db, &[]).await;
    let rows = sql
        .query(
            "SELECT id::text, max_concurrent_users FROM _realtime.tenants WHERE external_id = 'realtime-dev'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].get::<_, String>(0), id_before);
    assert_eq!(rows[0].get::<_, i32>(1), 200);
    let res = second
        .request(
            "HEAD",
            "/api/tenants/realtime-dev/health",
            &[("authorization", &format!("Bearer {}", anon_token()))],
            None,
        )
        .await;
    assert_eq!(res.status, 200);
    second.stop().await;
}

#[tokio::test]
async fn api_changes_reach_the_cache_immediately() {
    // §8.46 (API half): the tenant cache is replaced on update, so the gateway sees the new
    // limit at once even with a long TTL.
    let server = TestServer::with_db(&[("TENANT_CACHE_EXPIRATION_IN_MS", "600000")]).await;
    let before = server.state.tenants.get(TENANT).await.unwrap().unwrap();
    assert_eq!(before.max_events_per_second, 100);
    let res = server
        .admin(
            "PUT",
            "/api/tenants/realtime-dev",
            Some(&json!({"tenant": {"max_events_per_second": 3}})),
        )
        .await;
    assert_eq!(res.status, 200);
    let after = server.state.tenants.get(TENANT).await.unwrap().unwrap();
    assert_eq!(after.max_events_per_second, 3);

    // A change made in SQL is not visible before the TTL.
    let sql = server.db.as_ref().unwrap().connect().await;
    sql.execute(
        "UPDATE _realtime.tenants SET max_events_per_second = 9 WHERE external_id = 'realtime-dev'",
        &[],
    )
    .await
    .unwrap();
    let cached = server.state.tenants.get(TENANT).await.unwrap().unwrap();
    assert_eq!(cached.max_events_per_second, 3);
    server.stop().await;
}

#[tokio::test]
async fn tenant_changes_reach_ping_immediately_via_api_and_after_the_ttl_via_sql() {
    // §8.46 through `/api/ping`'s `x-rate-limit`.
    let server = TestServer::with_db(&[("TENANT_CACHE_EXPIRATION_IN_MS", "1000")]).await;
    let ping = || async {
        let res = server.get("/api/ping", &[("host", HOST)]).await;
        assert_eq!(res.status, 200, "{}", res.text());
        res.header("x-rate-limit").map(str::to_string)
    };
    assert_eq!(ping().await.as_deref(), Some("100"));

    let res = server
        .admin(
            "PATCH",
            "/api/tenants/realtime-dev",
            Some(&json!({"tenant": {"max_events_per_second": 50}})),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(ping().await.as_deref(), Some("50"));

    let sql = server.db.as_ref().unwrap().connect().await;
    sql.execute(
        "UPDATE _realtime.tenants SET max_events_per_second = 60 WHERE external_id = 'realtime-dev'",
        &[],
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(ping().await.as_deref(), Some("60"));
    server.stop().await;
}
