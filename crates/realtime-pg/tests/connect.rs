//! Ordinary connections and TLS against a real cluster. The test cluster speaks plain TCP, so
//! TLS is exercised through a small TLS-terminating proxy in front of it (answering
//! SSLRequest like a server would), with certificates made by the `openssl` command.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{opts, opts_as};
use realtime_pg::replication::ReplicationStream;
use realtime_pg::{connect, ConnectError, TlsMode};
use realtime_testkit::Cluster;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn connects_and_runs_the_after_connect_query() {
    let db = Cluster::shared().create_database().await;
    let mut o = opts(&db);
    o.application_name = "realtime_connect_test".into();
    o.after_connect_query = Some("set search_path to extensions, public".into());
    let client = connect(&o).await.unwrap();
    let path: String = client
        .query_one("show search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "extensions, public");
    let app: String = client
        .query_one(
            "select application_name from pg_stat_activity where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "realtime_connect_test");
}

#[tokio::test]
async fn errors_are_typed_and_never_show_the_password() {
    let db = Cluster::shared().create_database().await;

    let err = connect(&opts_as(&db, "postgres", "not-the-password-42"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Auth { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("not-the-password-42"));

    let mut o = opts(&db);
    o.after_connect_query = Some("select no_such_function()".into());
    let err = connect(&o).await.unwrap_err();
    assert!(matches!(err, ConnectError::AfterConnect(_)), "{err:?}");
    assert!(err.to_string().contains("no_such_function"), "{err}");

    let mut o = opts(&db);
    o.dbname = "no_such_database".into();
    let err = connect(&o).await.unwrap_err();
    match &err {
        ConnectError::Refused { code, .. } => assert_eq!(code, "3D000"),
        other => panic!("expected Refused, got {other:?}"),
    }

    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut o = opts(&db);
    o.port = port;
    let err = connect(&o).await.unwrap_err();
    assert!(matches!(err, ConnectError::Io { .. }), "{err:?}");
    assert!(err.is_retryable());

    // TLS required from a server that does not offer it.
    let mut o = opts(&db);
    o.tls = TlsMode::RequireNoVerify;
    let err = connect(&o).await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn tls_modes_through_a_tls_terminating_proxy() {
    let db = Cluster::shared().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let proxy_port = start_tls_proxy(&certs, db.port).await;

    // sslmode=require: any certificate.
    let mut o = opts(&db);
    o.port = proxy_port;
    o.tls = TlsMode::RequireNoVerify;
    let client = connect(&o).await.unwrap();
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // verify-ca: the chain leads to our CA; the certificate names another host, which is fine.
    o.tls = TlsMode::VerifyCa(certs.ca.clone());
    let client = connect(&o).await.unwrap();
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // verify-ca with a CA that did not sign the server certificate.
    o.tls = TlsMode::VerifyCa(certs.other_ca.clone());
    let err = connect(&o).await.unwrap_err();
    assert!(matches!(err, ConnectError::Io { .. }), "{err:?}");

    // The replication connection over TLS, SCRAM included.
    let mut o = opts_as(&db, "postgres", "postgres");
    o.port = proxy_port;
    o.tls = TlsMode::VerifyCa(certs.ca.clone());
    let mut stream = ReplicationStream::connect(&o).await.unwrap();
    let system = stream.identify_system().await.unwrap();
    assert_eq!(system.dbname.as_deref(), Some(db.name.as_str()));
    stream.close().await;

    o.tls = TlsMode::VerifyCa(certs.other_ca.clone());
    let err = ReplicationStream::connect(&o)
        .await
        .err()
        .expect("untrusted certificate accepted");
    assert!(
        matches!(err, realtime_pg::replication::ReplicationError::Tls(_)),
        "{err:?}"
    );
}

struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command is needed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs(dir: &Path) -> Certs {
    for ca in ["ca", "other_ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=db.internal",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:db.internal\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other_ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    }
}

/// Listens on a free port; each client's SSLRequest is answered `S`, TLS is terminated and
/// the plaintext is piped to the real server.
async fn start_tls_proxy(certs: &Certs, upstream_port: u16) -> u16 {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                if client.read_exact(&mut request).await.is_err()
                    || request != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]
                {
                    return;
                }
                if client.write_all(b"S").await.is_err() {
                    return;
                }
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await
                else {
                    return;
                };
                let _ = tokio::time::timeout(
                    Duration::from_secs(60),
                    tokio::io::copy_bidirectional(&mut tls, &mut upstream),
                )
                .await;
            });
        }
    });
    port
}
