//! Admin bearer authentication (CONTROL-PLANE §5.2, §8 tests 11–12) and the deliberate
//! `service_role` rule for changes, on a standalone server.

mod support;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::*;

const NEXT_SECRET: &str = "the-next-api-secret-with-at-least-32-characters";
const HEALTH: &str = "/api/tenants/realtime-dev/health";

fn blocked_token() -> String {
    // Deterministic, so it can be put in the environment before the server starts.
    sign(&json!({"role": "anon", "note": "blocked"}), JWT_SECRET)
}

async fn server() -> TestServer {
    let blocked = blocked_token();
    TestServer::standalone(&[
        ("API_JWT_SECRET_NEXT", NEXT_SECRET),
        ("API_TOKEN_BLOCKLIST", &format!("someother, {blocked}")),
        ("JWT_CLAIM_VALIDATORS", r#"{"iss":"x"}"#),
    ])
    .await
}

async fn status_with(
    server: &TestServer,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, Vec<u8>) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let body = (method != "GET" && method != "DELETE").then(|| json!({"tenant": {}}));
    let res = match &body {
        Some(b) => server.send_json(method, path, &headers, b).await,
        None => server.request(method, path, &headers, None).await,
    };
    (res.status, res.body)
}

#[tokio::test]
async fn refused_tokens_get_an_empty_403() {
    let server = server().await;
    let t = now();
    let refused = [
        None,
        Some(format!("bearer {}", anon_token())),
        Some(format!("Bearer  {}", "x.y.z")),
        Some(format!("Token {}", anon_token())),
        Some(format!(
            "Bearer {}",
            sign(
                &json!({"role": "anon"}),
                "another-secret-of-at-least-32-characters"
            )
        )),
        Some(format!(
            "Bearer {}",
            sign(&json!({"role": "anon", "exp": t - 10}), JWT_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            sign(&json!({"exp": "tomorrow"}), JWT_SECRET)
        )),
        Some(format!(
            "Bearer {}",
            sign(&json!({"iat": "today"}), JWT_SECRET)
        )),
        Some(format!("Bearer {}", blocked_token())),
        Some(format!("Bearer {}", sign(&json!({"iss": "y"}), JWT_SECRET))),
        Some("Bearer not-a-jwt".to_string()),
        Some("Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.".to_string()),
    ];
    for auth in &refused {
        let (status, body) = status_with(&server, "GET", HEALTH, auth.as_deref()).await;
        assert_eq!(status, 403, "{auth:?}");
        assert!(body.is_empty(), "{auth:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn accepted_tokens() {
    let server = server().await;
    let accepted = [
        sign(&json!({}), JWT_SECRET),
        sign(&json!({"role": "anon", "exp": now() + 60}), NEXT_SECRET),
        sign(&json!({"iss": "x", "iat": 1}), JWT_SECRET),
        sign_with(Algorithm::HS384, &json!({"role": "anon"}), JWT_SECRET),
        sign_with(Algorithm::HS512, &json!({"role": "anon"}), JWT_SECRET),
        anon_token(),
    ];
    for token in &accepted {
        let auth = format!("Bearer {token}");
        let (status, _) = status_with(&server, "GET", HEALTH, Some(&auth)).await;
        assert_eq!(status, 200, "{token}");
    }
    // Percent-encoding and whitespace inside the token are tolerated.
    let token = anon_token();
    let (head, rest) = token.split_at(10);
    let auth = format!("Bearer {} {}", head, rest.replacen('.', "%2E", 1));
    assert_eq!(
        status_with(&server, "GET", HEALTH, Some(&auth)).await.0,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn changes_need_service_role_or_no_role() {
    let server = server().await;
    let anon = format!("Bearer {}", anon_token());
    let authenticated = format!(
        "Bearer {}",
        sign(
            &json!({"role": "authenticated", "exp": now() + 60}),
            JWT_SECRET
        )
    );
    let service = format!("Bearer {}", admin_token());
    let no_role = format!("Bearer {}", sign(&json!({"exp": now() + 60}), JWT_SECRET));

    // Reads: any valid admin token.
    for auth in [&anon, &authenticated, &service, &no_role] {
        assert_eq!(
            status_with(&server, "GET", "/api/tenants", Some(auth))
                .await
                .0,
            200
        );
        assert_eq!(
            status_with(&server, "GET", "/api/tenants/realtime-dev", Some(auth))
                .await
                .0,
            200
        );
    }
    // Changes: refused with anon/authenticated, before the body is looked at.
    let changes = [
        ("POST", "/api/tenants"),
        ("PUT", "/api/tenants/realtime-dev"),
        ("PATCH", "/api/tenants/realtime-dev"),
        ("DELETE", "/api/tenants/realtime-dev"),
        ("POST", "/api/tenants/realtime-dev/reload"),
        ("POST", "/api/tenants/realtime-dev/shutdown"),
    ];
    for (method, path) in changes {
        for auth in [&anon, &authenticated] {
            let (status, body) = status_with(&server, method, path, Some(auth)).await;
            assert_eq!(status, 403, "{method} {path}");
            assert!(body.is_empty());
        }
    }
    // service_role and role-less tokens may change tenants.
    assert_eq!(
        status_with(
            &server,
            "POST",
            "/api/tenants/realtime-dev/reload",
            Some(&service)
        )
        .await
        .0,
        204
    );
    assert_eq!(
        status_with(
            &server,
            "POST",
            "/api/tenants/realtime-dev/shutdown",
            Some(&no_role)
        )
        .await
        .0,
        204
    );
    let res = server
        .send_json(
            "PUT",
            "/api/tenants/other",
            &[("authorization", &no_role)],
            &json!({"tenant": {"jwt_secret": "other-secret-with-at-least-32-characters", "extensions": []}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(
        status_with(&server, "DELETE", "/api/tenants/other", Some(&service))
            .await
            .0,
        204
    );
    server.stop().await;
}

#[tokio::test]
async fn without_api_secret_every_admin_call_is_refused() {
    let server = TestServer::start(Vec::new(), None).await;
    let auth = format!("Bearer {}", sign(&json!({}), JWT_SECRET));
    assert_eq!(
        status_with(&server, "GET", HEALTH, Some(&auth)).await.0,
        403
    );
    assert_eq!(server.get("/healthcheck", &[]).await.status, 200);
    server.stop().await;
}
