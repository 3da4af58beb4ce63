//! Routing against a real database: `eq` filter values canonicalised at subscribe time equal
//! the text pgoutput sends, unindexed types still reach their channels, and the join-time
//! caps on names and entries.

mod common;

use common::*;
use realtime_cdc::eq_index::canonical;
use realtime_cdc::SubscribeError;
use serde_json::json;

const ACCOUNTS: &str = "
create table public.accounts (
  id int8 primary key, user_id uuid, active bool, name varchar(20), amount numeric,
  total int4 generated always as (id * 2) stored);
grant all on public.accounts to anon;
alter publication supabase_realtime add table public.accounts;";

const USER: &str = "ABCDEF01-2345-6789-ABCD-EF0123456789";

#[tokio::test]
async fn filter_values_are_canonicalised_by_the_database() {
    let env = env("").await;
    let cases = [
        ("uuid", USER, "abcdef01-2345-6789-abcd-ef0123456789"),
        (
            "uuid",
            "{abcdef0123456789abcdef0123456789}",
            "abcdef01-2345-6789-abcd-ef0123456789",
        ),
        ("bigint", "+0007", "7"),
        ("smallint", " -12 ", "-12"),
        ("integer", "2147483647", "2147483647"),
        // The output function's text, not `bool::text`.
        ("boolean", "yes", "t"),
        ("boolean", "OFF", "f"),
        ("text", " As Is ", " As Is "),
        ("character varying", "ünï", "ünï"),
    ];
    for (cast_type, value, expected) in cases {
        assert_eq!(
            canonical(&env.sql, cast_type, value).await.unwrap(),
            expected,
            "{cast_type} {value:?}"
        );
    }
    assert!(canonical(&env.sql, "integer", "x").await.is_err());
}

#[tokio::test]
async fn eq_filters_match_the_wal_text_whatever_the_written_form() {
    let env = env(ACCOUNTS).await;
    let entry =
        |filter: &str| vec![json!({"schema": "public", "table": "accounts", "filter": filter})];
    let mut by_user = env
        .subscribe(anon(), entry(&format!("user_id=eq.{USER}")))
        .await;
    let mut by_id = env.subscribe(anon(), entry("id=eq.+0007")).await;
    let mut by_flag = env.subscribe(anon(), entry("active=eq.yes")).await;
    let mut by_name = env.subscribe(anon(), entry("name=eq.\"a,b\"")).await;
    // Not indexable: numeric (1.50 = 1.5) and a stored generated column.
    let mut by_amount = env.subscribe(anon(), entry("amount=eq.1.50")).await;
    let mut by_total = env.subscribe(anon(), entry("total=eq.14")).await;

    env.exec(&format!(
        "insert into public.accounts values (8, gen_random_uuid(), false, 'c', 2);
         insert into public.accounts values (7, '{}', true, 'a,b', 1.5);",
        USER.to_lowercase()
    ))
    .await;
    for ch in [
        &mut by_user,
        &mut by_id,
        &mut by_flag,
        &mut by_name,
        &mut by_amount,
        &mut by_total,
    ] {
        let data = ch.next_data().await;
        assert_eq!(data["type"], "INSERT");
        assert_eq!(data["record"]["id"], 7, "{data}");
    }

    env.exec("update public.accounts set amount = 3 where id = 7")
        .await;
    let data = by_id.next_data().await;
    assert_eq!(
        (data["type"].as_str(), &data["record"]["amount"]),
        (Some("UPDATE"), &json!(3))
    );
    // The DELETE carries only the key: filters on other columns cannot pass.
    env.exec("delete from public.accounts where id = 7").await;
    let data = by_id.next_data().await;
    assert_eq!(data["old_record"], json!({"id": 7}));

    // The UPDATE kept every filtered value but the amount.
    for ch in [&mut by_user, &mut by_flag, &mut by_name, &mut by_total] {
        assert_eq!(ch.next_data().await["type"], "UPDATE");
    }
    by_amount.assert_quiet(300).await;
    for ch in [
        &mut by_user,
        &mut by_id,
        &mut by_flag,
        &mut by_name,
        &mut by_total,
    ] {
        ch.assert_quiet(0).await;
    }
}

async fn join_error(env: &Env, entries: Vec<serde_json::Value>) -> SubscribeError {
    match env.try_subscribe(anon(), entries).await {
        Ok(_) => panic!("subscription unexpectedly succeeded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn over_long_names_and_too_many_entries_are_refused_at_join() {
    let longest = "t".repeat(63);
    let env = env(&format!(
        "create table public.{longest} (id int primary key);
         grant all on public.{longest} to anon;
         alter publication supabase_realtime add table public.{longest};"
    ))
    .await;

    let too_long = "t".repeat(64);
    let e = join_error(&env, vec![json!({"schema": "public", "table": too_long})]).await;
    assert_eq!(
        e,
        SubscribeError::Params(
            "Error parsing `table` params: a name of 64 bytes is longer than PostgreSQL's limit of 63"
                .into()
        )
    );
    assert!(!e.is_retryable());
    let e = join_error(
        &env,
        vec![json!({"schema": "public", "table": "test", "filter": format!("{too_long}=eq.1")})],
    )
    .await;
    assert_eq!(
        e.to_string(),
        "Error parsing `filter` params: a name of 64 bytes is longer than PostgreSQL's limit of 63"
    );

    let mut ch = env
        .subscribe(anon(), vec![json!({"schema": "public", "table": longest})])
        .await;
    env.exec(&format!("insert into public.{longest} values (1)"))
        .await;
    assert_eq!(ch.next_data().await["table"], json!(longest));

    let entry =
        |i: usize| json!({"schema": "public", "table": "test", "filter": format!("id=eq.{i}")});
    let e = join_error(&env, (0..101).map(entry).collect()).await;
    assert_eq!(
        e,
        SubscribeError::Params(
            "Error parsing `postgres_changes` params: 101 entries given, at most 100 are allowed per channel"
                .into()
        )
    );
    let mut ch = env.subscribe(anon(), (0..100).map(entry).collect()).await;
    env.exec("insert into public.test values (99, 'last', null)")
        .await;
    let (ids, _) = ch.next_change().await;
    assert_eq!(ids, vec![ch.ids[99]]);
}
