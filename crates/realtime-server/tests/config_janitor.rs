//! `RUN_JANITOR`: one janitor pass over the registry's tenants keeps the `realtime.messages`
//! partitions of their databases at today-1 … today+3 and drops expired ones.

mod support;

use chrono::{Days, Utc};
use support::*;

#[tokio::test]
async fn janitor_pass_maintains_partitions() {
    let server = TestServer::with_db(&[("RUN_JANITOR", "true")]).await;
    assert!(server.state.config.janitor.enabled);
    let sql = server.db.as_ref().unwrap().connect().await;
    let today = Utc::now().date_naive();
    let name = |d: chrono::NaiveDate| format!("messages_{}", d.format("%Y_%m_%d"));
    let ahead = today + Days::new(3);
    sql.batch_execute(&format!(
        "DROP TABLE realtime.{}; \
         CREATE TABLE realtime.messages_2020_01_01 PARTITION OF realtime.messages \
         FOR VALUES FROM ('2020-01-01') TO ('2020-01-02');",
        name(ahead)
    ))
    .await
    .unwrap();

    realtime_server::janitor::run_once(&server.state).await;

    let partitions: Vec<String> = sql
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE n.nspname = 'realtime' AND p.relname = 'messages' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !partitions.contains(&"messages_2020_01_01".to_string()),
        "{partitions:?}"
    );
    for offset in 0..=4u64 {
        let day = today - Days::new(1) + Days::new(offset);
        assert!(
            partitions.contains(&name(day)),
            "{} missing: {partitions:?}",
            name(day)
        );
    }
    server.stop().await;
}
