//! The `realtime` schema installer against a real PostgreSQL: fresh installs, re-runs, upgrades
//! from older schemas, the SQL API users call, preflight errors and partition maintenance.

use chrono::{Days, NaiveDate, Utc};
use realtime_tenants::tenant_migrations::{
    create_partitions, drop_old_partitions, migrate, migrate_until, missing_roles, preflight,
    versions, TenantMigrationError, TENANT_MIGRATION_COUNT,
};
use realtime_testkit::{Cluster, TestDb};
use tokio_postgres::Client;

async fn fresh_db() -> (TestDb, Client) {
    let db = Cluster::shared().create_database().await;
    let client = db.connect().await;
    (db, client)
}

async fn migrated_db() -> (TestDb, Client) {
    let (db, client) = fresh_db().await;
    migrate(&client).await.unwrap();
    (db, client)
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

async fn strings(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

/// Everything about the schema two databases must agree on: columns in physical order,
/// constraints, indexes, triggers, types, functions (body included), owners and privileges.
async fn fingerprint(client: &Client) -> Vec<String> {
    let queries = [
        "select c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text || ' rls=' || c.relrowsecurity
             || ' owner=' || pg_get_userbyid(c.relowner) || ' acl=' || coalesce((
                 select string_agg(a::text, ',' order by a::text) from unnest(c.relacl) a), '')
         from pg_class c where c.relnamespace = 'realtime'::regnamespace
         order by 1",
        "select c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || ' notnull=' || a.attnotnull || ' gen=' || a.attgenerated::text
             || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
             || ' pos=' || (row_number() over (partition by c.oid order by a.attnum))
         from pg_attribute a
         join pg_class c on c.oid = a.attrelid
         left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
         where c.relnamespace = 'realtime'::regnamespace and c.relkind in ('r', 'p', 'c')
           and a.attnum > 0 and not a.attisdropped
         order by 1",
        "select conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
         from pg_constraint where connamespace = 'realtime'::regnamespace order by 1",
        "select indexdef from pg_indexes where schemaname = 'realtime' order by 1",
        "select tgname || ' ' || pg_get_triggerdef(oid) from pg_trigger
         where tgrelid = 'realtime.subscription'::regclass and not tgisinternal order by 1",
        "select t.typname || ' ' || t.typtype::text || ' owner=' || pg_get_userbyid(t.typowner) || ' ' || coalesce((
             select string_agg(e.enumlabel, ',' order by e.enumsortorder)
             from pg_enum e where e.enumtypid = t.oid), '')
         from pg_type t where t.typnamespace = 'realtime'::regnamespace and t.typtype in ('e', 'c')
         order by 1",
        "select p.oid::regprocedure::text || ' -> ' || pg_get_function_result(p.oid)
             || ' ' || pg_get_function_arguments(p.oid) || ' vol=' || p.provolatile::text
             || ' strict=' || p.proisstrict || ' secdef=' || p.prosecdef
             || ' config=' || coalesce(array_to_string(p.proconfig, ','), '')
             || ' owner=' || pg_get_userbyid(p.proowner) || ' acl=' || coalesce((
                 select string_agg(a::text, ',' order by a::text) from unnest(p.proacl) a), '')
             || ' md5=' || md5(p.prosrc)
         from pg_proc p where p.pronamespace = 'realtime'::regnamespace order by 1",
        "select 'schema owner=' || pg_get_userbyid(nspowner) || ' acl=' || coalesce((
             select string_agg(a::text, ',' order by a::text) from unnest(nspacl) a), '')
         from pg_namespace where nspname = 'realtime'",
        "select version::text from realtime.schema_migrations order by version",
    ];
    let mut out = Vec::new();
    for sql in queries {
        out.extend(strings(client, sql).await);
    }
    out
}

fn assert_same_schema(expected: &[String], actual: &[String]) {
    let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).collect();
    let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "schemas differ\nmissing: {missing:#?}\nextra: {extra:#?}"
    );
}

#[tokio::test]
async fn fresh_database_gets_all_versions_and_the_final_objects() {
    let (_db, client) = fresh_db().await;
    let report = migrate(&client).await.unwrap();
    assert_eq!(report.total, TENANT_MIGRATION_COUNT);
    assert_eq!(report.applied, versions().collect::<Vec<_>>());
    assert_eq!(report.applied.len(), 81);

    let row = client
        .query_one(
            "select count(*)::int, min(version), max(version), bool_and(inserted_at is not null)
             from realtime.schema_migrations",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 81);
    assert_eq!(row.get::<_, i64>(1), 20211116024918);
    assert_eq!(row.get::<_, i64>(2), 20260709120000);
    assert!(row.get::<_, bool>(3));

    // Tables in their final shape, columns in upstream's physical order.
    let columns = strings(
        &client,
        "select attrelid::regclass::text || '.' || attname || ':' || format_type(atttypid, atttypmod)
         from pg_attribute
         where attrelid in ('realtime.subscription'::regclass, 'realtime.messages'::regclass)
           and attnum > 0 and not attisdropped
         order by attrelid::regclass::text, attnum",
    )
    .await;
    assert_eq!(
        columns,
        [
            "realtime.messages.topic:text",
            "realtime.messages.extension:text",
            "realtime.messages.payload:jsonb",
            "realtime.messages.event:text",
            "realtime.messages.private:boolean",
            "realtime.messages.updated_at:timestamp without time zone",
            "realtime.messages.inserted_at:timestamp without time zone",
            "realtime.messages.id:uuid",
            "realtime.messages.binary_payload:bytea",
            "realtime.subscription.id:bigint",
            "realtime.subscription.subscription_id:uuid",
            "realtime.subscription.entity:regclass",
            "realtime.subscription.filters:realtime.user_defined_filter[]",
            "realtime.subscription.claims:jsonb",
            "realtime.subscription.claims_role:regrole",
            "realtime.subscription.created_at:timestamp without time zone",
            "realtime.subscription.action_filter:text",
            "realtime.subscription.selected_columns:text[]",
        ]
    );
    let messages = client
        .query_one(
            "select relkind::text, relrowsecurity, pg_get_userbyid(relowner)::text
             from pg_class where oid = 'realtime.messages'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(messages.get::<_, String>(0), "p");
    assert!(
        messages.get::<_, bool>(1),
        "RLS enabled on realtime.messages"
    );
    assert_eq!(messages.get::<_, String>(2), "supabase_realtime_admin");
    let legacy = strings(
        &client,
        "select relname::text from pg_class where relnamespace = 'realtime'::regnamespace
           and relname in ('channels', 'broadcasts', 'presences')",
    )
    .await;
    assert!(legacy.is_empty(), "legacy tables left: {legacy:?}");
    let indexes = strings(
        &client,
        "select indexname::text from pg_indexes where schemaname = 'realtime' order by 1",
    )
    .await;
    assert_eq!(
        indexes,
        [
            "ix_realtime_subscription_entity",
            "messages_inserted_at_topic_index",
            "messages_pkey",
            "pk_subscription",
            "schema_migrations_pkey",
            "subscription_subscription_id_entity_filters_action_filter_selec",
        ]
    );

    // Types.
    let labels = strings(
        &client,
        "select string_agg(enumlabel, ',' order by enumsortorder) from pg_enum
         where enumtypid = 'realtime.equality_op'::regtype",
    )
    .await;
    assert_eq!(
        labels,
        ["eq,neq,lt,lte,gt,gte,in,like,ilike,is,match,imatch,isdistinct"]
    );
    let filter_attrs = strings(
        &client,
        "select string_agg(attname, ',' order by attnum) from pg_attribute
         where attrelid = (select typrelid from pg_type where oid = 'realtime.user_defined_filter'::regtype)
           and attnum > 0 and not attisdropped",
    )
    .await;
    assert_eq!(filter_attrs, ["column_name,op,value,negate"]);
    for ty in [
        "realtime.action",
        "realtime.wal_column",
        "realtime.wal_rls",
        "realtime.equality_op",
        "realtime.user_defined_filter",
    ] {
        let found: Option<String> = client
            .query_one("select to_regtype($1)::text", &[&ty])
            .await
            .unwrap()
            .get(0);
        assert_eq!(found.as_deref(), Some(ty));
    }

    // Functions with upstream's signatures, all owned by supabase_realtime_admin, none
    // SECURITY DEFINER.
    let functions = strings(
        &client,
        "select p.oid::regprocedure::text || ' -> ' || pg_get_function_result(p.oid)
         from pg_proc p where p.pronamespace = 'realtime'::regnamespace
         order by p.proname, p.pronargs",
    )
    .await;
    assert_eq!(
        functions,
        [
            "realtime.apply_rls(jsonb,integer) -> SETOF realtime.wal_rls",
            "realtime.broadcast_changes(text,text,text,text,text,record,record,text) -> void",
            "realtime.build_prepared_statement_sql(text,regclass,realtime.wal_column[]) -> text",
            "realtime.\"cast\"(text,regtype) -> jsonb",
            "realtime.check_equality_op(realtime.equality_op,regtype,text,text) -> boolean",
            "realtime.check_equality_op(realtime.equality_op,regtype,text,text,boolean) -> boolean",
            "realtime.is_visible_through_filters(realtime.wal_column[],realtime.user_defined_filter[]) -> boolean",
            "realtime.list_changes(name,name,integer,integer) -> TABLE(wal jsonb, is_rls_enabled boolean, subscription_ids uuid[], errors text[], slot_changes_count bigint)",
            "realtime.quote_wal2json(regclass) -> text",
            "realtime.send(jsonb,text,text,boolean) -> void",
            "realtime.send_binary(bytea,text,text,boolean) -> void",
            "realtime.subscription_check_filters() -> trigger",
            "realtime.to_regrole(text) -> regrole",
            "realtime.topic() -> text",
            "realtime.wal2json_escape_identifier(text) -> text",
        ]
    );
    let odd = strings(
        &client,
        "select proname::text from pg_proc where pronamespace = 'realtime'::regnamespace
           and (prosecdef or pg_get_userbyid(proowner) <> 'supabase_realtime_admin')",
    )
    .await;
    assert!(
        odd.is_empty(),
        "unexpected owner or SECURITY DEFINER: {odd:?}"
    );

    // Grants to the API roles.
    let grants = client
        .query_one(
            "select
                 bool_and(has_schema_privilege(r, 'realtime', 'USAGE')),
                 bool_and(has_table_privilege(r, 'realtime.messages', 'SELECT,INSERT,UPDATE')),
                 bool_or(has_table_privilege(r, 'realtime.messages', 'DELETE')),
                 bool_and(has_table_privilege(r, 'realtime.subscription', 'SELECT')),
                 bool_or(has_table_privilege(r, 'realtime.subscription', 'INSERT')),
                 bool_and(has_function_privilege(r, 'realtime.apply_rls(jsonb, integer)', 'EXECUTE')),
                 bool_and(has_function_privilege(r, 'realtime.send(jsonb, text, text, boolean)', 'EXECUTE'))
             from unnest(array['anon', 'authenticated', 'service_role']) r",
            &[],
        )
        .await
        .unwrap();
    assert!(grants.get::<_, bool>(0), "USAGE on schema realtime");
    assert!(
        grants.get::<_, bool>(1),
        "SELECT, INSERT, UPDATE on messages"
    );
    assert!(!grants.get::<_, bool>(2), "no DELETE on messages");
    assert!(grants.get::<_, bool>(3), "SELECT on subscription");
    assert!(!grants.get::<_, bool>(4), "no INSERT on subscription");
    assert!(grants.get::<_, bool>(5), "EXECUTE on apply_rls");
    assert!(grants.get::<_, bool>(6), "EXECUTE on send");
    let ledger_acl = strings(
        &client,
        "select coalesce(array_to_string(relacl, ','), '') from pg_class
         where oid = 'realtime.schema_migrations'::regclass",
    )
    .await;
    assert!(
        !ledger_acl[0].contains("anon="),
        "schema_migrations is not readable by API roles: {ledger_acl:?}"
    );
}

#[tokio::test]
async fn second_run_applies_nothing() {
    let (_db, client) = migrated_db().await;
    let before = fingerprint(&client).await;
    let report = migrate(&client).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.total, 81);
    assert_same_schema(&before, &fingerprint(&client).await);
}

#[tokio::test]
async fn older_schemas_converge_to_the_fresh_one() {
    let (_fresh_db, fresh) = migrated_db().await;
    let expected = fingerprint(&fresh).await;
    let all: Vec<i64> = versions().collect();

    // Stops chosen at shape changes: claims-based subscriptions, the first messages table,
    // the unpartitioned messages with broadcast columns, partitioning, and the filter-op revert.
    for stop in [
        20211116214523,
        20211210212804,
        20240523004032,
        20240919163305,
        20241030150047,
        20260624120000,
    ] {
        let (_db, client) = fresh_db().await;
        let partial = migrate_until(&client, stop).await.unwrap();
        let position = all.iter().position(|v| *v == stop).unwrap();
        assert_eq!(partial.applied, all[..=position]);

        let rest = migrate(&client).await.unwrap();
        assert_eq!(
            rest.applied,
            all[position + 1..],
            "after stopping at {stop}"
        );
        assert_same_schema(&expected, &fingerprint(&client).await);
    }
}

#[tokio::test]
async fn unpartitioned_messages_keep_their_policies_through_partitioning() {
    let (_db, client) = fresh_db().await;
    migrate_until(&client, 20241019105805).await.unwrap();
    client
        .batch_execute(
            "insert into realtime.messages (topic, extension, inserted_at, updated_at)
                 values ('room', 'broadcast', now(), now());
             create policy read_room on realtime.messages for select to authenticated
                 using (topic = 'room');
             create policy write_broadcast on realtime.messages as restrictive for insert
                 to anon, authenticated with check (extension = 'broadcast');",
        )
        .await
        .unwrap();
    migrate(&client).await.unwrap();
    let policies = strings(
        &client,
        "select policyname || ' ' || permissive || ' ' || cmd || ' ' || array_to_string(roles, ',')
         from pg_policies where schemaname = 'realtime' and tablename = 'messages' order by 1",
    )
    .await;
    assert_eq!(
        policies,
        [
            "read_room PERMISSIVE SELECT authenticated",
            "write_broadcast RESTRICTIVE INSERT anon,authenticated",
        ]
    );
}

#[tokio::test]
async fn existing_objects_without_ledger_rows_converge() {
    let (_db, client) = migrated_db().await;
    let expected = fingerprint(&client).await;

    // As when the Elixir server's objects exist but the ledger lost its rows (partly, then
    // entirely): every version must run over objects that already exist.
    client
        .batch_execute("delete from realtime.schema_migrations where version > 20240401105812")
        .await
        .unwrap();
    let report = migrate(&client).await.unwrap();
    assert_eq!(report.applied.len(), 81 - 40);
    assert_same_schema(&expected, &fingerprint(&client).await);

    client
        .batch_execute("truncate realtime.schema_migrations")
        .await
        .unwrap();
    let report = migrate(&client).await.unwrap();
    assert_eq!(report.applied.len(), 81);
    assert_same_schema(&expected, &fingerprint(&client).await);
}

#[tokio::test]
async fn missing_realtime_schema_is_created() {
    let (_db, client) = fresh_db().await;
    client
        .batch_execute("drop schema realtime cascade")
        .await
        .unwrap();
    let report = migrate(&client).await.unwrap();
    assert_eq!(report.applied.len(), 81);
    let count: i64 = client
        .query_one("select count(*) from realtime.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 81);
}

#[tokio::test]
async fn concurrent_runs_apply_each_version_once() {
    let (db, first) = fresh_db().await;
    let second = db.connect().await;
    let (a, b) = tokio::join!(migrate(&first), migrate(&second));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.applied.len() + b.applied.len(), 81);
    assert!(a.applied.is_empty() || b.applied.is_empty());
}

#[tokio::test]
async fn failed_run_changes_nothing() {
    let (_db, client) = fresh_db().await;
    migrate_until(&client, 20211116214523).await.unwrap();
    // A foreign object where 20211210212804 expects to create an index.
    client
        .batch_execute(
            "create table realtime.blocker (id int);
             create index subscription_subscription_id_entity_filters_key on realtime.blocker (id);",
        )
        .await
        .unwrap();
    let error = migrate(&client).await.unwrap_err();
    match &error {
        TenantMigrationError::Migration { version, .. } => assert_eq!(*version, 20211210212804),
        other => panic!("unexpected error: {other}"),
    }
    assert!(error.to_string().contains("already exists"), "{error}");
    let count: i64 = client
        .query_one("select count(*) from realtime.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 8, "the failed run kept nothing");
}

#[tokio::test]
async fn send_stores_a_broadcast_in_todays_partition() {
    let (_db, client) = migrated_db().await;
    create_partitions(&client, today()).await.unwrap();

    client
        .batch_execute(
            r#"select realtime.send('{"hello": "world"}'::jsonb, 'greet', 'room1', false);
               select realtime.send('{"id": "mine"}'::jsonb, 'greet', 'room1');
               select realtime.send_binary('\x0102'::bytea, 'bin', 'room1');"#,
        )
        .await
        .unwrap();

    let partition = format!("realtime.messages_{}", today().format("%Y_%m_%d"));
    let rows = client
        .query(
            &format!(
                "select id::text, payload, event, topic, private, extension, binary_payload
                 from {partition} order by event, private"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let binary = &rows[0];
    assert_eq!(binary.get::<_, String>(2), "bin");
    assert_eq!(binary.get::<_, Option<Vec<u8>>>(6), Some(vec![1, 2]));
    assert!(binary.get::<_, Option<serde_json::Value>>(1).is_none());

    let public = &rows[1];
    let id: String = public.get(0);
    assert_eq!(
        public.get::<_, serde_json::Value>(1),
        serde_json::json!({"hello": "world", "id": id})
    );
    assert_eq!(public.get::<_, String>(3), "room1");
    assert!(!public.get::<_, bool>(4));
    assert_eq!(public.get::<_, String>(5), "broadcast");

    let private = &rows[2];
    assert!(private.get::<_, bool>(4), "private defaults to true");
    assert_eq!(
        private.get::<_, serde_json::Value>(1),
        serde_json::json!({"id": "mine"}),
        "a payload id is kept"
    );
}

#[tokio::test]
async fn send_without_partition_only_warns() {
    let (_db, client) = migrated_db().await;
    // No partitions: the insert fails inside send, which turns it into a warning.
    client
        .batch_execute("select realtime.send('{}'::jsonb, 'e', 't')")
        .await
        .unwrap();
    let count: i64 = client
        .query_one("select count(*) from realtime.messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

#[tokio::test]
async fn broadcast_changes_sends_the_row_change() {
    let (_db, client) = migrated_db().await;
    create_partitions(&client, today()).await.unwrap();
    client
        .batch_execute(
            "create table public.todos (id int primary key, title text);
             create function public.todos_broadcast() returns trigger language plpgsql as $$
             begin
                 perform realtime.broadcast_changes('todos:' || coalesce(new.id, old.id)::text,
                     tg_op, tg_op, tg_table_name, tg_table_schema, new, old);
                 return null;
             end $$;
             create trigger todos_broadcast after insert or update or delete on public.todos
                 for each row execute function public.todos_broadcast();
             insert into public.todos values (1, 'a');
             update public.todos set title = 'b';",
        )
        .await
        .unwrap();
    let rows = client
        .query(
            "select topic, event, private, payload - 'id' from realtime.messages
             order by inserted_at, event",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, String>(0), "todos:1");
    assert_eq!(rows[0].get::<_, String>(1), "INSERT");
    assert!(rows[0].get::<_, bool>(2));
    assert_eq!(
        rows[0].get::<_, serde_json::Value>(3),
        serde_json::json!({"operation": "INSERT", "table": "todos", "schema": "public",
                           "record": {"id": 1, "title": "a"}, "old_record": null})
    );
    assert_eq!(
        rows[1].get::<_, serde_json::Value>(3)["old_record"],
        serde_json::json!({"id": 1, "title": "a"})
    );

    let error = client
        .batch_execute(
            "select realtime.broadcast_changes('t', 'e', 'TRUNCATE', 'todos', 'public', null::public.todos, null::public.todos)",
        )
        .await
        .unwrap_err();
    let message = error.as_db_error().unwrap().message().to_owned();
    assert_eq!(
        message,
        "Failed to process the row: Unexpected operation type: TRUNCATE"
    );
}

#[tokio::test]
async fn topic_reads_the_realtime_topic_setting() {
    let (_db, client) = migrated_db().await;
    let unset: Option<String> = client
        .query_one("select realtime.topic()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unset, None);
    client
        .batch_execute("select set_config('realtime.topic', 'room:1', false)")
        .await
        .unwrap();
    let row = client
        .query_one(
            "select realtime.topic(), current_setting('realtime.topic')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("room:1"));
    assert_eq!(row.get::<_, String>(1), "room:1");
    client
        .batch_execute("select set_config('realtime.topic', '', false)")
        .await
        .unwrap();
    let empty: Option<String> = client
        .query_one("select realtime.topic()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(empty, None, "an empty topic reads as NULL");
}

#[tokio::test]
async fn topic_policies_gate_inserts_through_send() {
    let (_db, client) = migrated_db().await;
    create_partitions(&client, today()).await.unwrap();
    client
        .batch_execute(
            "create policy write_room on realtime.messages for insert to authenticated
                 with check (realtime.topic() = 'room:allowed');
             begin;
             set local role authenticated;
             select realtime.send('{}'::jsonb, 'e', 'room:allowed');
             select realtime.send('{}'::jsonb, 'e', 'room:denied');
             commit;",
        )
        .await
        .unwrap();
    let topics = strings(&client, "select topic from realtime.messages order by 1").await;
    assert_eq!(topics, ["room:allowed"]);
}

#[tokio::test]
async fn subscriptions_and_apply_rls_behave_like_upstream() {
    let (_db, client) = migrated_db().await;
    client
        .batch_execute(
            "create table public.notes (id int primary key, body text, secret text);
             grant select (id, body) on public.notes to authenticated;
             insert into realtime.subscription (subscription_id, entity, filters, claims)
             values ('00000000-0000-0000-0000-000000000001', 'public.notes',
                     array[('id', 'eq', '1', null)::realtime.user_defined_filter],
                     '{\"role\": \"authenticated\", \"sub\": \"u1\"}');",
        )
        .await
        .unwrap();
    // A filter on a column the role cannot read is refused by the trigger.
    let refused = client
        .batch_execute(
            "insert into realtime.subscription (subscription_id, entity, filters, claims)
             values (gen_random_uuid(), 'public.notes',
                     array[('secret', 'eq', 'x', null)::realtime.user_defined_filter],
                     '{\"role\": \"authenticated\"}')",
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.as_db_error().unwrap().message(),
        "invalid column for filter secret"
    );

    let wal = serde_json::json!({
        "action": "I", "schema": "public", "table": "notes",
        "timestamp": "2026-01-02 03:04:05.678+00",
        "columns": [
            {"name": "id", "type": "integer", "typeoid": 23, "value": 1},
            {"name": "body", "type": "text", "typeoid": 25, "value": "hi"},
            {"name": "secret", "type": "text", "typeoid": 25, "value": "s"}
        ],
        "pk": [{"name": "id", "type": "integer", "typeoid": 23}]
    });
    let row = client
        .query_one(
            "select wal, is_rls_enabled, subscription_ids::text[], errors
             from realtime.apply_rls($1::jsonb)",
            &[&wal],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, serde_json::Value>(0),
        serde_json::json!({
            "schema": "public", "table": "notes", "type": "INSERT",
            "commit_timestamp": "2026-01-02T03:04:05.678Z",
            "columns": [{"name": "id", "type": "int4"}, {"name": "body", "type": "text"}],
            "record": {"id": 1, "body": "hi"}
        })
    );
    assert!(!row.get::<_, bool>(1));
    assert_eq!(
        row.get::<_, Vec<String>>(2),
        ["00000000-0000-0000-0000-000000000001"]
    );
    assert!(row.get::<_, Vec<String>>(3).is_empty());
}

#[tokio::test]
async fn preflight_accepts_a_prepared_database() {
    let (_db, client) = fresh_db().await;
    preflight(&client, "supabase_realtime").await.unwrap();
}

#[tokio::test]
async fn preflight_names_a_missing_publication_and_the_fix() {
    let (_db, client) = fresh_db().await;
    let error = preflight(&client, "no_such_publication").await.unwrap_err();
    assert!(
        matches!(&error, TenantMigrationError::MissingPublication { name } if name == "no_such_publication"),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("CREATE PUBLICATION no_such_publication;"),
        "{text}"
    );
}

#[tokio::test]
async fn preflight_explains_missing_privileges_and_its_fix_works() {
    let (_db, client) = fresh_db().await;
    // A role with no rights at all, created and dropped again by the rolled-back transaction
    // (roles are cluster-wide, so nothing may outlive the test).
    client
        .batch_execute(
            "begin;
             create role realtime_preflight_nobody nologin;
             set local role realtime_preflight_nobody;",
        )
        .await
        .unwrap();
    let refused = preflight(&client, "supabase_realtime").await;

    // Apply the advice as the superuser, then check again as the role.
    let fixed = match &refused {
        Err(TenantMigrationError::InsufficientPrivilege { fix, .. }) => {
            client
                .batch_execute(&format!(
                    "reset role; {fix} set local role realtime_preflight_nobody;"
                ))
                .await
                .unwrap();
            Some(preflight(&client, "supabase_realtime").await)
        }
        _ => None,
    };
    client.batch_execute("rollback").await.unwrap();

    let error = refused.unwrap_err();
    match &error {
        TenantMigrationError::InsufficientPrivilege { user, missing, .. } => {
            assert_eq!(user, "realtime_preflight_nobody");
            assert_eq!(missing.len(), 4, "{missing:?}");
        }
        other => panic!("unexpected error: {other:?}"),
    }
    let text = error.to_string();
    for fix in [
        "GRANT CREATE, USAGE ON SCHEMA realtime TO realtime_preflight_nobody;",
        "GRANT supabase_realtime_admin TO realtime_preflight_nobody;",
        "GRANT anon, authenticated, service_role TO realtime_preflight_nobody;",
        "ALTER ROLE realtime_preflight_nobody REPLICATION;",
    ] {
        assert!(text.contains(fix), "{text}");
    }
    fixed
        .expect("a fix was offered")
        .expect("the offered fix is enough");
}

#[tokio::test]
async fn missing_roles_are_reported_by_name() {
    let (_db, client) = fresh_db().await;
    let missing = missing_roles(
        &client,
        &["anon", "no_such_role_for_realtime", "service_role"],
    )
    .await
    .unwrap();
    assert_eq!(missing, ["no_such_role_for_realtime"]);
    let error = TenantMigrationError::MissingRoles { roles: missing };
    assert!(error
        .to_string()
        .contains("CREATE ROLE no_such_role_for_realtime NOLOGIN;"));
}

async fn partitions(client: &Client) -> Vec<String> {
    strings(
        client,
        "select c.relname || ' ' || pg_get_userbyid(c.relowner) || ' ' || pg_get_expr(c.relpartbound, c.oid)
         from pg_inherits i join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'realtime.messages'::regclass order by 1",
    )
    .await
}

#[tokio::test]
async fn partitions_cover_yesterday_to_three_days_ahead() {
    let (_db, client) = migrated_db().await;
    let day = NaiveDate::from_ymd_opt(2026, 2, 27).unwrap();
    create_partitions(&client, day).await.unwrap();
    // Running again keeps what exists.
    create_partitions(&client, day).await.unwrap();
    let owner = "supabase_realtime_admin";
    assert_eq!(
        partitions(&client).await,
        [
            format!("messages_2026_02_26 {owner} FOR VALUES FROM ('2026-02-26 00:00:00') TO ('2026-02-27 00:00:00')"),
            format!("messages_2026_02_27 {owner} FOR VALUES FROM ('2026-02-27 00:00:00') TO ('2026-02-28 00:00:00')"),
            format!("messages_2026_02_28 {owner} FOR VALUES FROM ('2026-02-28 00:00:00') TO ('2026-03-01 00:00:00')"),
            format!("messages_2026_03_01 {owner} FOR VALUES FROM ('2026-03-01 00:00:00') TO ('2026-03-02 00:00:00')"),
            format!("messages_2026_03_02 {owner} FOR VALUES FROM ('2026-03-02 00:00:00') TO ('2026-03-03 00:00:00')"),
        ]
    );
    let indexes = strings(
        &client,
        "select indexname::text from pg_indexes where tablename = 'messages_2026_02_27' order by 1",
    )
    .await;
    assert_eq!(
        indexes,
        [
            "messages_2026_02_27_inserted_at_topic_idx",
            "messages_2026_02_27_pkey"
        ]
    );
}

#[tokio::test]
async fn janitor_drops_partitions_older_than_three_days() {
    let (_db, client) = migrated_db().await;
    let day = today();
    create_partitions(&client, day - Days::new(5))
        .await
        .unwrap(); // day-6 .. day-2
    create_partitions(&client, day).await.unwrap(); // day-1 .. day+3
    client
        .batch_execute(
            "create table realtime.messages_archive partition of realtime.messages
                 for values from ('2000-01-01') to ('2000-01-02')",
        )
        .await
        .unwrap();

    let name = |offset: i64| {
        let d = if offset < 0 {
            day - Days::new(offset.unsigned_abs())
        } else {
            day + Days::new(offset.unsigned_abs())
        };
        format!("messages_{}", d.format("%Y_%m_%d"))
    };
    let dropped = drop_old_partitions(&client, day).await.unwrap();
    assert_eq!(dropped, [name(-6), name(-5), name(-4)]);

    let left: Vec<String> = partitions(&client)
        .await
        .into_iter()
        .map(|p| p.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    let mut expected: Vec<String> = (-3..=3).map(name).collect();
    expected.push("messages_archive".into());
    expected.sort();
    assert_eq!(left, expected);

    assert!(drop_old_partitions(&client, day).await.unwrap().is_empty());
}
