//! The shared cluster starts, is logical, and hands out bootstrapped databases.

use realtime_testkit::Cluster;

#[tokio::test]
async fn fresh_database_is_logical_and_bootstrapped() {
    let db = Cluster::shared().create_database().await;
    let client = db.connect().await;
    let row = client.query_one("show wal_level", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "logical");
    let row = client
        .query_one(
            "select count(*) from pg_publication where pubname = 'supabase_realtime'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    let row = client
        .query_one("select count(*) from pg_roles where rolname in ('anon','authenticated','service_role','supabase_realtime_admin')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
}

#[tokio::test]
async fn databases_are_isolated() {
    let a = Cluster::shared().create_database().await;
    let b = Cluster::shared().create_database().await;
    assert_ne!(a.name, b.name);
    a.connect()
        .await
        .batch_execute("create table only_in_a(id int)")
        .await
        .unwrap();
    let n: i64 = b
        .connect()
        .await
        .query_one(
            "select count(*) from pg_tables where tablename = 'only_in_a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
