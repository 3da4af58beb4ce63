//! Server-wide HTTP behaviour (CONTROL-PLANE §5.1) and standalone mode: request ids, HEAD,
//! content negotiation, body limits and parsing, the 404 fallback.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn standalone_serves_healthcheck_and_tenant_health_without_a_database() {
    let server = TestServer::standalone(&[]).await;
    assert!(server.state.config.standalone);
    let res = server.get("/healthcheck", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "ok");
    let res = server.request("HEAD", "/healthcheck", &[], None).await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());

    let anon = format!("Bearer {}", anon_token());
    let res = server
        .get(
            "/api/tenants/realtime-dev/health",
            &[("authorization", &anon)],
        )
        .await;
    assert_eq!(res.status, 200);
    let data = res.json()["data"].clone();
    assert_eq!(data["healthy"], true);
    assert_eq!(data["connected_cluster"], 0);
    assert_eq!(data["node"], "realtime@127.0.0.1");
    let res = server
        .get("/api/tenants", &[("authorization", &anon)])
        .await;
    let list = res.json()["data"].as_array().cloned().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["external_id"], "realtime-dev");
    assert_eq!(list[0]["extensions"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn region_and_node_name_appear_in_health() {
    let server = TestServer::standalone(&[
        ("REGION", "eu-west-2"),
        ("APP_NAME", "rt"),
        ("SELF_HOST_TENANT_NAME", "acme"),
    ])
    .await;
    let anon = format!("Bearer {}", anon_token());
    let res = server
        .get("/api/tenants/acme/health", &[("authorization", &anon)])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["data"]["region"], "eu-west-2");
    assert_eq!(res.json()["data"]["node"], "rt@127.0.0.1");
    let res = server
        .get(
            "/api/tenants/realtime-dev/health",
            &[("authorization", &anon)],
        )
        .await;
    assert_eq!(res.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn request_ids() {
    let server = TestServer::standalone(&[]).await;
    let generated = server.get("/healthcheck", &[]).await;
    let id = generated.header("x-request-id").unwrap().to_string();
    assert!(id.len() >= 20, "{id}");
    assert_ne!(
        server.get("/healthcheck", &[]).await.header("x-request-id"),
        Some(id.as_str())
    );

    let own = "my-request-id-0123456789";
    let res = server.get("/healthcheck", &[("x-request-id", own)]).await;
    assert_eq!(res.header("x-request-id"), Some(own));
    let res = server
        .get(
            "/healthcheck",
            &[
                ("x-request-id", own),
                ("baggage", "foo=bar,request-id=from-baggage-42"),
            ],
        )
        .await;
    assert_eq!(res.header("x-request-id"), Some("from-baggage-42"));
    // A too-short header id is replaced.
    let res = server
        .get("/healthcheck", &[("x-request-id", "short")])
        .await;
    assert_ne!(res.header("x-request-id"), Some("short"));
    // Errors carry one as well.
    let res = server.get("/nope", &[]).await;
    assert_eq!(res.status, 404);
    assert!(res.header("x-request-id").is_some());
    server.stop().await;
}

#[tokio::test]
async fn negotiation_parsing_and_fallbacks() {
    let server = TestServer::standalone(&[]).await;
    let auth = format!("Bearer {}", admin_token());

    // 406 before auth when JSON is not acceptable.
    let res = server.get("/api/tenants", &[("accept", "text/html")]).await;
    assert_eq!(res.status, 406);
    let res = server
        .get(
            "/api/tenants",
            &[("accept", "text/html, */*;q=0.1"), ("authorization", &auth)],
        )
        .await;
    assert_eq!(res.status, 200);

    // Malformed JSON is refused before routing and auth.
    let res = server
        .request(
            "POST",
            "/api/tenants",
            &[("content-type", "application/json")],
            Some(b"{nope"),
        )
        .await;
    assert_eq!(res.status, 400);
    // Without the `tenant` wrapper (after auth): 400; non-JSON bodies have no wrapper either.
    let res = server
        .send_json(
            "PUT",
            "/api/tenants/x",
            &[("authorization", &auth)],
            &json!([1, 2]),
        )
        .await;
    assert_eq!(res.status, 400);
    let res = server
        .request(
            "PUT",
            "/api/tenants/x",
            &[("authorization", &auth), ("content-type", "text/plain")],
            Some(b"tenant"),
        )
        .await;
    assert_eq!(res.status, 400);

    // 8 MB limit.
    let big = vec![b' '; 8_000_001];
    let res = server
        .request(
            "POST",
            "/api/tenants",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            Some(&big),
        )
        .await;
    assert_eq!(res.status, 413);

    // Unmatched routes and methods: 404, JSON string when JSON is asked for.
    let res = server.get("/nope", &[]).await;
    assert_eq!((res.status, res.text().as_str()), (404, "Not Found"));
    let res = server.get("/nope", &[("accept", "application/json")]).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json(), json!("Not Found"));
    let res = server
        .request("DELETE", "/api/tenants", &[("authorization", &auth)], None)
        .await;
    assert_eq!(res.status, 404);
    // Documented upstream but not routed in the released image.
    let res = server
        .get("/tenant-metrics", &[("authorization", &auth)])
        .await;
    assert_eq!(res.status, 404);

    // HEAD on GET routes.
    let res = server
        .request("HEAD", "/api/tenants", &[("authorization", &auth)], None)
        .await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    assert_eq!(
        res.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    server.stop().await;
}

#[tokio::test]
async fn responses_are_gzipped_when_accepted() {
    let server = TestServer::standalone(&[]).await;
    let auth = format!("Bearer {}", admin_token());
    let res = server
        .get(
            "/api/tenants",
            &[("authorization", &auth), ("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(&res.body[..2], &[0x1f, 0x8b], "gzip magic");
    let res = server
        .get("/api/tenants", &[("authorization", &auth)])
        .await;
    assert_eq!(res.header("content-encoding"), None);
    assert!(res.json()["data"].is_array());
    server.stop().await;
}
