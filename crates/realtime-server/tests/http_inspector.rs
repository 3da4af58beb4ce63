//! `/inspector`: off unless enabled (`INSPECTOR_ENABLED`, default on only in standalone mode),
//! behind basic auth when the dashboard credentials are configured, and served from the binary
//! with a strict Content-Security-Policy.

mod support;

use base64::Engine as _;
use realtime_server::config::{Config, Env, InspectorAccess};
use support::*;

const ASSETS: [(&str, &str); 4] = [
    ("/inspector", "text/html; charset=utf-8"),
    ("/inspector/", "text/html; charset=utf-8"),
    ("/inspector/inspector.js", "text/javascript; charset=utf-8"),
    ("/inspector/inspector.css", "text/css; charset=utf-8"),
];

fn config(pairs: &[(&str, &str)]) -> Config {
    Config::from_env(&pairs.iter().copied().collect::<Env>()).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[test]
fn enabled_by_default_only_in_standalone_mode() {
    assert!(config(&[]).inspector.enabled);
    assert!(!config(&[("DB_HOST", "db")]).inspector.enabled);
    assert!(
        config(&[("DB_HOST", "db"), ("INSPECTOR_ENABLED", "true")])
            .inspector
            .enabled
    );
    assert!(!config(&[("INSPECTOR_ENABLED", "0")]).inspector.enabled);
    let err = Config::from_env(
        &[("INSPECTOR_ENABLED", "maybe")]
            .into_iter()
            .collect::<Env>(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("INSPECTOR_ENABLED"), "{err}");

    assert_eq!(config(&[]).inspector.access, InspectorAccess::Open);
    let c = config(&[("DASHBOARD_USER", "ops"), ("DASHBOARD_PASSWORD", "pw")]);
    assert_eq!(
        c.inspector.access,
        InspectorAccess::Basic {
            user: "ops".into(),
            password: "pw".into()
        }
    );
    assert!(!format!("{:?}", c.inspector).contains("pw"));
    // Half-configured or unsupported protection locks the page and says why.
    let c = config(&[("DASHBOARD_USER", "ops")]);
    assert_eq!(c.inspector.access, InspectorAccess::Refused);
    assert!(
        c.warnings.iter().any(|w| w.contains("DASHBOARD_PASSWORD")),
        "{:?}",
        c.warnings
    );
    let c = config(&[("DASHBOARD_AUTH", "zta")]);
    assert_eq!(c.inspector.access, InspectorAccess::Refused);
    assert!(c.warnings.iter().any(|w| w.contains("DASHBOARD_AUTH")));
}

#[tokio::test]
async fn disabled_inspector_is_not_found() {
    let server = TestServer::standalone(&[("INSPECTOR_ENABLED", "false")]).await;
    for (path, _) in ASSETS {
        let res = server.get(path, &[]).await;
        assert_eq!(res.status, 404, "{path}");
        assert_eq!(res.text(), "Not Found");
    }
    server.stop().await;
}

#[tokio::test]
async fn serves_the_page_and_its_assets_with_a_strict_policy() {
    let server = TestServer::standalone(&[]).await;
    for (path, content_type) in ASSETS {
        let res = server.get(path, &[]).await;
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(res.header("content-type"), Some(content_type), "{path}");
        let csp = res.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("connect-src 'self' ws: wss:;"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(res.header("cache-control"), Some("no-store"));
    }
    let html = server.get("/inspector", &[]).await.text();
    assert!(html.contains(r#"<script src="/inspector/inspector.js" defer></script>"#));
    assert!(html.contains(r#"href="/inspector/inspector.css""#));
    // Nothing is loaded from elsewhere, and nothing inline would need 'unsafe-inline'.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="));
    let js = server.get("/inspector/inspector.js", &[]).await.text();
    assert!(js.contains("vsn=2.0.0"));
    assert!(!js.contains("http://") && !js.contains("https://"));
    // HEAD works for every asset; other methods fall through to the 404.
    let res = server.request("HEAD", "/inspector", &[], None).await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    let res = server.request("POST", "/inspector", &[], Some(b"{}")).await;
    assert_eq!(res.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn dashboard_credentials_guard_page_and_assets() {
    let server =
        TestServer::standalone(&[("DASHBOARD_USER", "ops"), ("DASHBOARD_PASSWORD", "s3:cret")])
            .await;
    let good = basic("ops", "s3:cret");
    for (path, _) in ASSETS {
        for refused in [
            None,
            Some(basic("ops", "wrong")),
            Some(basic("other", "s3:cret")),
            Some(format!("Bearer {}", anon_token())),
        ] {
            let headers: Vec<(&str, &str)> = refused
                .as_deref()
                .map(|v| vec![("authorization", v)])
                .unwrap_or_default();
            let res = server.get(path, &headers).await;
            assert_eq!(res.status, 401, "{path} {refused:?}");
            assert_eq!(
                res.header("www-authenticate"),
                Some(r#"Basic realm="Application""#)
            );
            assert!(res.header("content-security-policy").is_none());
        }
        let res = server.get(path, &[("authorization", &good)]).await;
        assert_eq!(res.status, 200, "{path}");
        assert!(res.header("content-security-policy").is_some());
    }
    // Other routes are not affected by the dashboard credentials.
    assert_eq!(server.get("/healthcheck", &[]).await.status, 200);
    server.stop().await;

    let server = TestServer::standalone(&[("DASHBOARD_PASSWORD", "pw")]).await;
    let res = server
        .get("/inspector", &[("authorization", &basic("", "pw"))])
        .await;
    assert_eq!(res.status, 403);
    server.stop().await;
}
