//! End-to-end Postgres Changes at the `Cdc` API: subscribe with a sink, run SQL, compare the
//! `data` objects with upstream's (POSTGRES.md §7).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn insert_update_delete_with_default_identity() {
    let env = env("").await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "*", "schema": "public", "table": "test"})],
        )
        .await;
    env.exec(r"insert into public.test values (1,'hello','\x0102030405')")
        .await;
    let (ids, text) = ch.next_change().await;
    assert_eq!(ids, ch.ids);
    // Exact text, as upstream's Jason encoding of jsonb fragments.
    let prefix = r#"{"columns":[{"name": "id", "type": "int4"}, {"name": "details", "type": "text"}, {"name": "binary_data", "type": "bytea"}],"commit_timestamp":""#;
    assert!(text.starts_with(prefix), "{text}");
    let suffix = r#"Z","errors":null,"record":{"id": 1, "details": "hello", "binary_data": "0102030405"},"schema":"public","table":"test","type":"INSERT"}"#;
    assert!(text.ends_with(suffix), "{text}");
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(ts_ok(&data["commit_timestamp"]), "{data}");

    env.exec("update public.test set details='bye' where id=1")
        .await;
    let data = ch.next_data().await;
    assert_eq!(data["type"], "UPDATE");
    assert_eq!(data["old_record"], json!({"id": 1}));
    assert_eq!(
        data["record"],
        json!({"id": 1, "details": "bye", "binary_data": "0102030405"})
    );
    assert_eq!(data["columns"], cols());
    assert_eq!(data["errors"], json!(null));

    env.exec("delete from public.test where id=1").await;
    let data = ch.next_data().await;
    assert_eq!(
        data,
        json!({"columns": cols(), "commit_timestamp": data["commit_timestamp"], "errors": null,
               "old_record": {"id": 1}, "schema": "public", "table": "test", "type": "DELETE"})
    );
    assert!(data.get("record").is_none());

    // TRUNCATE never reaches clients.
    env.exec("insert into public.test values (2,'x',null); truncate public.test")
        .await;
    assert_eq!(ch.next_data().await["type"], "INSERT");
    ch.assert_quiet(800).await;
}

#[tokio::test]
async fn replica_identity_full() {
    let env = env("alter table public.test replica identity full; insert into public.test values (2,'a',null);").await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "UPDATE", "schema": "public", "table": "test"})],
        )
        .await;
    env.exec("insert into public.test values (3,'ignored',null)")
        .await;
    env.exec("update public.test set details='b' where id=2")
        .await;
    let data = ch.next_data().await;
    assert_eq!(
        data["old_record"],
        json!({"id": 2, "details": "a", "binary_data": null})
    );
    assert_eq!(
        data["record"],
        json!({"id": 2, "details": "b", "binary_data": null})
    );
}

#[tokio::test]
async fn event_and_schema_wildcards_and_two_entries() {
    let env = env("").await;
    let first = json!({"event": "INSERT", "schema": "public", "table": "test"});
    let second = json!({"event": "*", "schema": "public"});
    let mut ch = env.subscribe(anon(), vec![first, second]).await;
    env.exec("insert into public.test values (1,'a',null)")
        .await;
    let (ids, _) = ch.next_change().await;
    // Reverse join order.
    assert_eq!(ids, vec![ch.ids[1], ch.ids[0]]);
    env.exec("update public.test set details='b' where id=1")
        .await;
    let (ids, text) = ch.next_change().await;
    assert_eq!(ids, vec![ch.ids[1]]);
    assert!(text.contains(r#""type":"UPDATE""#));
}

#[tokio::test]
async fn filters_by_operator() {
    let env = env("").await;
    let entry = |filter: &str| json!({"event": "INSERT", "schema": "public", "table": "test", "filter": filter});
    let mut eq = env.subscribe(anon(), vec![entry("details=eq.hello")]).await;
    let mut inn = env.subscribe(anon(), vec![entry("id=in.(20,22)")]).await;
    let mut isnull = env.subscribe(anon(), vec![entry("details=is.null")]).await;
    let mut noteq = env.subscribe(anon(), vec![entry("details=not.eq.x")]).await;
    let mut gt = env
        .subscribe(anon(), vec![entry("id=gt.21,id=lte.30")])
        .await;
    let mut like = env
        .subscribe(anon(), vec![entry("details=ilike.HEL%")])
        .await;
    let mut neq = env.subscribe(anon(), vec![entry("id=neq.20")]).await;
    let mut quoted = env
        .subscribe(anon(), vec![entry(r#"details=eq."a,b""#)])
        .await;
    let mut distinct = env
        .subscribe(anon(), vec![entry("details=isdistinct.hello")])
        .await;
    let mut re = env
        .subscribe(anon(), vec![entry("details=match.^h.l+o$")])
        .await;

    env.exec("insert into public.test values (20,'hello',null)")
        .await;
    env.exec("insert into public.test values (21,'other',null)")
        .await;
    env.exec("insert into public.test values (22,null,null)")
        .await;
    env.exec("insert into public.test values (23,'a,b',null)")
        .await;

    let id = |d: serde_json::Value| d["record"]["id"].as_i64().unwrap();
    assert_eq!(id(eq.next_data().await), 20);
    assert_eq!(id(inn.next_data().await), 20);
    assert_eq!(id(inn.next_data().await), 22);
    assert_eq!(id(isnull.next_data().await), 22);
    // NULL never passes eq/not.eq.
    for want in [20, 21, 23] {
        assert_eq!(id(noteq.next_data().await), want);
    }
    assert_eq!(id(gt.next_data().await), 22);
    assert_eq!(id(gt.next_data().await), 23);
    assert_eq!(id(like.next_data().await), 20);
    for want in [21, 22, 23] {
        assert_eq!(id(neq.next_data().await), want);
    }
    assert_eq!(id(quoted.next_data().await), 23);
    for want in [21, 22, 23] {
        assert_eq!(id(distinct.next_data().await), want);
    }
    assert_eq!(id(re.next_data().await), 20);
    for ch in [
        &mut eq,
        &mut inn,
        &mut isnull,
        &mut noteq,
        &mut gt,
        &mut like,
        &mut neq,
        &mut quoted,
        &mut distinct,
        &mut re,
    ] {
        ch.assert_quiet(200).await;
    }
}

#[tokio::test]
async fn typed_filters_compare_as_the_column_type() {
    let env = env("create table public.typed (id int primary key, n numeric, t timestamptz, c char(3), b bool);
                   grant all on public.typed to anon;
                   alter publication supabase_realtime add table public.typed;").await;
    let entry = |filter: &str| json!({"event": "INSERT", "schema": "public", "table": "typed", "filter": filter});
    // Numeric, not lexical: 10 > 9.
    let mut num = env.subscribe(anon(), vec![entry("n=gt.9")]).await;
    // Timestamps compare as instants whatever the offset spelling.
    let mut ts = env
        .subscribe(anon(), vec![entry("t=eq.2024-01-02T01:00:00+00:00")])
        .await;
    // char(3) compares whole values (no truncation to one character).
    let mut ch3 = env.subscribe(anon(), vec![entry("c=eq.abc")]).await;
    let mut bools = env.subscribe(anon(), vec![entry("b=is.true")]).await;
    env.exec("insert into public.typed values (1, 10, '2024-01-02 03:00:00+02', 'abc', true)")
        .await;
    env.exec("insert into public.typed values (2, 8, '2024-01-02 01:00:01+00', 'abd', false)")
        .await;
    assert_eq!(num.next_data().await["record"]["id"], 1);
    assert_eq!(ts.next_data().await["record"]["id"], 1);
    let d = ch3.next_data().await;
    assert_eq!(d["record"]["id"], 1);
    assert_eq!(d["record"]["c"], "abc");
    assert_eq!(bools.next_data().await["record"]["id"], 1);
    for ch in [&mut num, &mut ts, &mut ch3, &mut bools] {
        ch.assert_quiet(300).await;
    }
}

#[tokio::test]
async fn delete_filters_see_the_identity() {
    let env = env("").await;
    let mut ch = env
        .subscribe(anon(), vec![json!({"event": "DELETE", "schema": "public", "table": "test", "filter": "details=eq.gone"})])
        .await;
    env.exec(
        "insert into public.test values (40,'gone',null); delete from public.test where id=40",
    )
    .await;
    ch.assert_quiet(800).await;
    env.exec("alter table public.test replica identity full")
        .await;
    env.exec(
        "insert into public.test values (41,'gone',null); delete from public.test where id=41",
    )
    .await;
    let d = ch.next_data().await;
    assert_eq!(
        d["old_record"],
        json!({"id": 41, "details": "gone", "binary_data": null})
    );
}

#[tokio::test]
async fn selected_columns() {
    let env = env("").await;
    let mut ch = env
        .subscribe(anon(), vec![json!({"event": "INSERT", "schema": "public", "table": "test", "select": ["details"]})])
        .await;
    env.exec(r"insert into public.test values (50,'hello','\x01')")
        .await;
    let d = ch.next_data().await;
    assert_eq!(
        d["columns"],
        json!([{"name": "id", "type": "int4"}, {"name": "details", "type": "text"}])
    );
    assert_eq!(d["record"], json!({"id": 50, "details": "hello"}));
}

#[tokio::test]
async fn type_rendering() {
    let env = env("create table public.kinds(id int primary key, j jsonb, ts timestamp, tz timestamptz, n numeric(6,2), arr int[], c char(3), f float8, b bool, u uuid, d date);
                   grant all on public.kinds to anon;
                   alter publication supabase_realtime add table public.kinds;").await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "kinds"})],
        )
        .await;
    env.exec(r#"insert into public.kinds values (1, '{"b": 2, "a": [1,2]}', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+02', 3.1, '{1,2,NULL}', 'ab', 1.5, true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-01-02')"#).await;
    let (_, text) = ch.next_change().await;
    // Upstream's text except `c`, which keeps its padding instead of being cut to "a".
    let record = r#""record":{"b": true, "c": "ab ", "d": "2024-01-02", "f": 1.5, "j": {"a": [1, 2], "b": 2}, "n": 3.10, "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "id": 1, "ts": "2024-01-02T03:04:05.123456", "tz": "2024-01-02T01:04:05.5+00:00", "arr": [1, 2, null]}"#;
    assert!(text.contains(record), "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let types: Vec<&str> = d["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "int4",
            "jsonb",
            "timestamp",
            "timestamptz",
            "numeric",
            "_int4",
            "bpchar",
            "float8",
            "bool",
            "uuid",
            "date"
        ]
    );
}

#[tokio::test]
async fn payload_too_large() {
    let env = env_with("", json!({"poll_max_record_bytes": 100})).await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "test"})],
        )
        .await;
    env.exec("insert into public.test values (60, repeat('x',200), null)")
        .await;
    let d = ch.next_data().await;
    assert_eq!(d["record"], json!({"id": 60}));
    assert_eq!(d["errors"], json!(["Error 413: Payload Too Large"]));
    assert_eq!(d["columns"], cols());
}

#[tokio::test]
async fn no_primary_key_and_unreadable_key() {
    let env = env("create table public.nopk (a int, b text);
                   grant all on public.nopk to anon;
                   create table public.hidden (id int primary key, v text);
                   grant select (v) on public.hidden to anon;
                   alter publication supabase_realtime add table public.nopk, public.hidden;")
    .await;
    let mut nopk = env
        .subscribe(
            anon(),
            vec![json!({"event": "*", "schema": "public", "table": "nopk"})],
        )
        .await;
    env.exec("insert into public.nopk values (1,'x')").await;
    let (_, text) = nopk.next_change().await;
    assert_eq!(
        text,
        r#"{"columns":[],"commit_timestamp":null,"errors":["Error 400: Bad Request, no primary key"],"record":{},"schema":"public","table":"nopk","type":"INSERT"}"#
    );

    let mut hidden = env
        .subscribe(
            anon(),
            vec![json!({"event": "*", "schema": "public", "table": "hidden"})],
        )
        .await;
    env.exec("insert into public.hidden values (1,'x')").await;
    let (_, text) = hidden.next_change().await;
    assert_eq!(
        text,
        r#"{"columns":[],"commit_timestamp":null,"errors":["Error 401: Unauthorized"],"record":{},"schema":"public","table":"hidden","type":"INSERT"}"#
    );
    env.exec("delete from public.hidden where id=1").await;
    let d = hidden.next_data().await;
    assert_eq!(d["columns"], json!([{"name": "v", "type": "text"}]));
    assert_eq!(d["old_record"], json!({}));
    assert_eq!(d["errors"], json!(null));
}

#[tokio::test]
async fn unchanged_toast() {
    let env = env(
        "create table public.big (id int primary key, status text, doc text);
                   alter table public.big alter column doc set storage external;
                   grant all on public.big to anon;
                   alter publication supabase_realtime add table public.big;
                   insert into public.big values (1,'a',repeat('x',5000));",
    )
    .await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "UPDATE", "schema": "public", "table": "big"})],
        )
        .await;
    env.exec("update public.big set status='b' where id=1")
        .await;
    let d = ch.next_data().await;
    assert_eq!(d["record"], json!({"id": 1, "status": "b"}));
    env.exec("alter table public.big replica identity full")
        .await;
    env.exec("update public.big set status='c' where id=1")
        .await;
    let d = ch.next_data().await;
    assert_eq!(d["record"]["status"], "c");
    assert_eq!(d["record"]["doc"].as_str().map(str::len), Some(5000));
}

#[tokio::test]
async fn stored_generated_columns_are_included() {
    let env = env("create table public.gen (id int primary key, a int, b int generated always as (a*2) stored);
                   grant all on public.gen to anon;
                   alter publication supabase_realtime add table public.gen;").await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "*", "schema": "public", "table": "gen"})],
        )
        .await;
    env.exec("insert into public.gen (id, a) values (1,21)")
        .await;
    assert_eq!(
        ch.next_data().await["record"],
        json!({"a": 21, "b": 42, "id": 1})
    );
}

#[tokio::test]
async fn tables_published_after_subscribing_are_delivered() {
    let env = env("create table public.later (id int primary key, v text);
                   grant all on public.later to anon;")
    .await;
    let mut ch = env
        .subscribe(anon(), vec![json!({"event": "INSERT", "schema": "public"})])
        .await;
    env.exec("alter publication supabase_realtime add table public.later")
        .await;
    env.exec("insert into public.later values (1,'x')").await;
    let d = ch.next_data().await;
    assert_eq!(d["table"], "later");
    assert_eq!(d["record"], json!({"id": 1, "v": "x"}));
}

#[tokio::test]
async fn more_operators_and_negations() {
    let env = env("").await;
    let entry = |filter: &str| json!({"event": "INSERT", "schema": "public", "table": "test", "filter": filter});
    let cases: Vec<(&str, Vec<i64>)> = vec![
        ("id=lt.2", vec![1]),
        ("id=gte.3", vec![3, 4]),
        ("details=like.a%", vec![1, 3]),
        ("details=not.like.a%", vec![2]),
        ("details=imatch.^B", vec![2]),
        ("id=not.in.(1,2)", vec![3, 4]),
        ("details=not.is.null", vec![1, 2, 3]),
        ("details=not.isdistinct.bb", vec![2]),
        ("details=in.(\"a,c\",bb)", vec![2, 3]),
    ];
    let mut channels = Vec::new();
    for (filter, want) in &cases {
        channels.push((
            filter,
            want,
            env.subscribe(anon(), vec![entry(filter)]).await,
        ));
    }
    env.exec("insert into public.test values (1,'ab',null)")
        .await;
    env.exec("insert into public.test values (2,'bb',null)")
        .await;
    env.exec("insert into public.test values (3,'a,c',null)")
        .await;
    env.exec("insert into public.test values (4,null,null)")
        .await;
    for (filter, want, ch) in &mut channels {
        for id in want.iter() {
            let d = ch.next_data().await;
            assert_eq!(d["record"]["id"].as_i64(), Some(*id), "filter {filter}");
        }
        ch.assert_quiet(200).await;
    }
}

#[tokio::test]
async fn more_type_rendering() {
    let env = env("create type public.mood as enum ('sad', 'happy');
                   create type public.pair as (a int, b text);
                   create domain public.posint as int check (value > 0);
                   create table public.more (id int primary key, m public.mood, p public.pair, d public.posint,
                       j json, iv interval, ta text[], nn numeric, fi float8, bits bit(3), b bytea);
                   grant all on public.more to anon;
                   alter publication supabase_realtime add table public.more;").await;
    let mut ch = env
        .subscribe(
            anon(),
            vec![json!({"event": "INSERT", "schema": "public", "table": "more"})],
        )
        .await;
    env.exec(r#"insert into public.more values (1, 'happy', '(1,x)', 5, '{"b":1,"a":[1,2],"a":3}', '1 day 02:00:00',
                 '{a,"b c","q\"t"}', 'NaN', 'Infinity', B'101', '\x00ff')"#)
        .await;
    let (_, text) = ch.next_change().await;
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &d["record"];
    assert_eq!(r["m"], "happy");
    assert_eq!(r["p"], json!({"a": 1, "b": "x"}));
    assert_eq!(r["d"], 5);
    // json is normalised as jsonb: duplicate keys collapse, keys reorder.
    assert!(text.contains(r#""j": {"a": 3, "b": 1}"#), "{text}");
    assert_eq!(r["iv"], "1 day 02:00:00");
    assert_eq!(r["ta"], json!(["a", "b c", "q\"t"]));
    assert_eq!(r["nn"], json!(null));
    assert_eq!(r["fi"], json!(null));
    // bit(n) keeps every bit (upstream cuts it to one).
    assert_eq!(r["bits"], "101");
    assert_eq!(r["b"], "00ff");
    let types: Vec<&str> = d["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "int4", "mood", "pair", "posint", "json", "interval", "_text", "numeric", "float8",
            "bit", "bytea"
        ]
    );
}
