//! Visibility judged on the change's row image: the catalog rules that skip the check (each
//! against a policy that would hide rows if the rule were wrong), a differential test of the
//! gate against PostgreSQL's own row level security, and changes whose row is gone by the time
//! they are judged.

mod common;

use common::*;
use realtime_cdc::catalog::TableInfo;
use realtime_cdc::change::{Change, WalColumn};
use realtime_cdc::db::TenantDb;
use realtime_cdc::rls_gate::{self, GateEntry};
use realtime_cdc::rls_policy::{self, AllReason, Rule};
use realtime_cdc::Action;
use realtime_pg::connect::ConnectOptions;
use realtime_testkit::{SUPERUSER, SUPERUSER_PASSWORD};
use serde_json::json;
use std::sync::Arc;

const UA: &str = "00000000-0000-0000-0000-00000000000a";
const UB: &str = "00000000-0000-0000-0000-00000000000b";

fn user(sub: &str) -> serde_json::Value {
    json!({"role": "authenticated", "sub": sub, "exp": 9999999999u64})
}

fn all_of(table: &str) -> Vec<serde_json::Value> {
    vec![json!({"event": "*", "schema": "public", "table": table})]
}

async fn gate_db(env: &Env) -> TenantDb {
    let opts = ConnectOptions::new(
        env.db.host(),
        env.db.port,
        env.db.name.clone(),
        SUPERUSER,
        SUPERUSER_PASSWORD,
    );
    TenantDb::connect(&opts, "rls_visibility_test")
        .await
        .unwrap()
}

async fn oid(env: &Env, table: &str) -> u32 {
    env.sql
        .query_one("select $1::text::regclass::oid", &[&table])
        .await
        .unwrap()
        .get(0)
}

async fn rule_of(env: &Env, db: &TenantDb, table: &str, role: &str) -> Rule {
    let facts = rls_policy::read_facts(&db.client, oid(env, table).await, role)
        .await
        .unwrap()
        .unwrap();
    rls_policy::rule(&facts)
}

/// Roles are cluster-wide: created once, whichever test gets there first.
async fn ensure_role(env: &Env, name: &str, attrs: &str) {
    env.exec(&format!(
        "do $$ begin create role {name} nologin {attrs}; exception when duplicate_object or unique_violation then null; end $$;
         grant {name} to {SUPERUSER};"
    ))
    .await;
}

#[tokio::test]
async fn insert_update_delete_in_quick_succession_arrive_in_order() {
    let env = env("create table public.quick (id int primary key, owner uuid, body text);
                   alter table public.quick enable row level security;
                   create policy p on public.quick for select to authenticated using (owner = auth.uid());
                   grant select on public.quick to authenticated;
                   alter publication supabase_realtime add table public.quick;")
    .await;
    let mut a = env.subscribe(user(UA), all_of("quick")).await;
    let mut b = env.subscribe(user(UB), all_of("quick")).await;
    // One transaction, then three back to back: by the time any check runs the row is gone.
    env.exec(&format!(
        "begin; insert into public.quick values (1,'{UA}','x'); delete from public.quick where id=1; commit;
         insert into public.quick values (2,'{UA}','y');
         update public.quick set body = 'z' where id = 2;
         delete from public.quick where id = 2;"
    ))
    .await;
    let seen: Vec<(String, serde_json::Value)> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let d = a.next_data().await;
            let id = if d["type"] == "DELETE" {
                d["old_record"]["id"].clone()
            } else {
                d["record"]["id"].clone()
            };
            v.push((d["type"].as_str().unwrap_or_default().to_string(), id));
        }
        v
    };
    assert_eq!(
        seen,
        vec![
            ("INSERT".to_string(), json!(1)),
            ("DELETE".to_string(), json!(1)),
            ("INSERT".to_string(), json!(2)),
            ("UPDATE".to_string(), json!(2)),
            ("DELETE".to_string(), json!(2)),
        ]
    );
    a.assert_quiet(300).await;
    // B may see neither row; deletes are not RLS-checked (as upstream) and show only the key.
    assert_eq!(b.next_data().await["type"], "DELETE");
    assert_eq!(b.next_data().await["type"], "DELETE");
    b.assert_quiet(300).await;
}

#[tokio::test]
async fn rules_that_skip_the_check_follow_postgres() {
    let env = env(
        "create table public.ruled (id int primary key, owner uuid, public boolean);
                   grant select on public.ruled to authenticated, anon;
                   alter publication supabase_realtime add table public.ruled;",
    )
    .await;
    ensure_role(&env, "rt_test_bypass", "bypassrls").await;
    ensure_role(&env, "rt_test_owner", "").await;
    env.exec(
        "grant select on public.ruled to rt_test_bypass, rt_test_owner;
              create policy deny on public.ruled for select using (false);",
    )
    .await;
    let db = gate_db(&env).await;
    // RLS off: the `false` policy is not applied.
    assert_eq!(
        rule_of(&env, &db, "public.ruled", "authenticated").await,
        Rule::All(AllReason::RlsOff)
    );
    env.exec("alter table public.ruled enable row level security")
        .await;
    // Only the `false` policy: checked (and it hides everything).
    assert!(matches!(
        rule_of(&env, &db, "public.ruled", "authenticated").await,
        Rule::Check {
            per_claims: false,
            ..
        }
    ));
    assert_eq!(
        rule_of(&env, &db, "public.ruled", "rt_test_bypass").await,
        Rule::All(AllReason::Bypass)
    );
    env.exec("alter table public.ruled owner to rt_test_owner")
        .await;
    assert_eq!(
        rule_of(&env, &db, "public.ruled", "rt_test_owner").await,
        Rule::All(AllReason::Owner)
    );
    env.exec("alter table public.ruled force row level security")
        .await;
    assert!(matches!(
        rule_of(&env, &db, "public.ruled", "rt_test_owner").await,
        Rule::Check { .. }
    ));
    env.exec(
        "alter table public.ruled no force row level security; drop policy deny on public.ruled;",
    )
    .await;
    // No policy at all: PostgreSQL denies.
    assert_eq!(
        rule_of(&env, &db, "public.ruled", "authenticated").await,
        Rule::None
    );
    // A literal `true` for another role does not open the table to this one.
    env.exec("create policy open_anon on public.ruled for select to anon using (true);
              create policy own on public.ruled for select to authenticated using (owner = auth.uid());")
        .await;
    assert_eq!(
        rule_of(&env, &db, "public.ruled", "anon").await,
        Rule::All(AllReason::TruePolicy)
    );
    // `auth.uid()` is a stable call without arguments: evaluated once per claims.
    match rule_of(&env, &db, "public.ruled", "authenticated").await {
        Rule::Check {
            per_claims: true,
            hoist,
            ..
        } => assert_eq!(
            hoist,
            vec![rls_policy::Hoisted {
                call: "auth.uid()".to_string(),
                type_name: "uuid".to_string()
            }]
        ),
        other => panic!("expected a check per claims, got {other:?}"),
    }
    // A restrictive policy keeps the check even next to `true`; it depends on the row only.
    env.exec("create policy only_public on public.ruled as restrictive for select to anon using (public);")
        .await;
    assert!(matches!(
        rule_of(&env, &db, "public.ruled", "anon").await,
        Rule::Check {
            per_claims: false,
            ..
        }
    ));
    // Reading another table or a setting makes it depend on more than the row.
    env.exec(
        "create table public.ruled_other (n int);
              grant select on public.ruled_other to anon;
              create policy peek on public.ruled as restrictive for select to anon
                using (exists (select 1 from public.ruled_other o where o.n = id));",
    )
    .await;
    assert!(matches!(
        rule_of(&env, &db, "public.ruled", "anon").await,
        Rule::Check {
            per_claims: true,
            ..
        }
    ));

    // End to end: the owner and bypass roles receive rows a `false` policy would hide, the
    // anon subscriber only public rows present in ruled_other.
    env.exec(
        "create policy deny2 on public.ruled for select using (false);
              insert into public.ruled_other values (2);",
    )
    .await;
    let mut owner = env
        .subscribe(json!({"role": "rt_test_owner"}), all_of("ruled"))
        .await;
    let mut bypass = env
        .subscribe(json!({"role": "rt_test_bypass"}), all_of("ruled"))
        .await;
    let mut anon_ch = env.subscribe(anon(), all_of("ruled")).await;
    env.exec(&format!(
        "insert into public.ruled values (1, '{UA}', true), (2, '{UA}', true), (3, '{UA}', false)"
    ))
    .await;
    for ch in [&mut owner, &mut bypass] {
        for id in 1..=3 {
            assert_eq!(ch.next_data().await["record"]["id"], id);
        }
    }
    assert_eq!(anon_ch.next_data().await["record"]["id"], 2);
    anon_ch.assert_quiet(300).await;
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const EXPRESSIONS: &[&str] = &[
    "true",
    "false",
    "owner = auth.uid()",
    "n > 5",
    "n % 3 = 0 and flag",
    "tag like 'a%'",
    "flag",
    "flag is null",
    "(auth.jwt() ->> 'team') = tag",
    "exists (select 1 from public.diff_other o where o.n = diff.n)",
    "coalesce(n, 0) < (auth.jwt() ->> 'level')::int",
    "current_user = 'anon'",
    "tags @> array['x']",
];

/// Random policies and rows; for every row that exists and every claims set, the gate's
/// verdict on the row image equals PostgreSQL's own answer.
#[tokio::test]
async fn differential_visibility_against_postgres() {
    let env = env("create table public.diff (id int primary key, owner uuid, n int, tag text, flag boolean, tags text[]);
                   create table public.diff_other (n int);
                   insert into public.diff_other values (1), (4), (9);
                   grant select on public.diff, public.diff_other to authenticated, anon;
                   alter table public.diff enable row level security;")
    .await;
    let mut db = gate_db(&env).await;
    let table_oid = oid(&env, "public.diff").await;
    let subs = [UA, UB, "00000000-0000-0000-0000-00000000000c"];
    let teams = ["alpha", "beta", "x"];
    for round in 0..12u64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (round + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        env.exec(
            "do $$ declare p record; begin
               for p in select polname from pg_policy where polrelid = 'public.diff'::regclass loop
                 execute format('drop policy %I on public.diff', p.polname);
               end loop; end $$;
             truncate public.diff;",
        )
        .await;
        let policies = 1 + rng.below(4);
        for k in 0..policies {
            let kind = if rng.below(4) == 0 {
                "restrictive"
            } else {
                "permissive"
            };
            let cmd = rng.pick(&["select", "all", "update"]);
            let to = rng.pick(&["authenticated", "anon", "public", "authenticated, anon"]);
            let expr = rng.pick(EXPRESSIONS);
            env.exec(&format!(
                "create policy p{k} on public.diff as {kind} for {cmd} to {to} using ({expr})"
            ))
            .await;
        }
        for id in 0..8 {
            let owner = if rng.below(4) == 0 {
                "null".to_string()
            } else {
                format!("'{}'", rng.pick(&subs))
            };
            let n = if rng.below(5) == 0 {
                "null".to_string()
            } else {
                rng.below(12).to_string()
            };
            let tag = rng.pick(&["'alpha'", "'beta'", "'abc'", "null", "'x'"]);
            let flag = rng.pick(&["true", "false", "null"]);
            let tags = rng.pick(&["array['x','y']", "array['y']", "null", "'{}'"]);
            env.exec(&format!(
                "insert into public.diff values ({id}, {owner}, {n}, {tag}, {flag}, {tags})"
            ))
            .await;
        }
        let claims: Vec<serde_json::Value> = (0..6)
            .map(|_| {
                let role = rng.pick(&["authenticated", "anon"]);
                json!({"role": role, "sub": rng.pick(&subs), "team": rng.pick(&teams), "level": rng.below(10)})
            })
            .collect();
        db.rules.invalidate(table_oid);
        db.catalog.invalidate(table_oid);
        let table: Arc<TableInfo> = db
            .catalog
            .table(&db.client, table_oid)
            .await
            .unwrap()
            .unwrap();
        let changes = row_images(&env, &table).await;
        let rows: Vec<&Change> = changes.iter().collect();
        for c in &claims {
            let role = c["role"].as_str().unwrap_or_default();
            let ours: Vec<bool> = match rls_policy::rule(
                &rls_policy::read_facts(&db.client, table_oid, role)
                    .await
                    .unwrap()
                    .unwrap(),
            ) {
                Rule::All(_) => vec![true; rows.len()],
                Rule::None => vec![false; rows.len()],
                rule @ Rule::Check { .. } => {
                    let expr = rls_gate::GateExpr::of(&rule).unwrap();
                    let entry = GateEntry {
                        role: role.to_string(),
                        claims: c.to_string(),
                        expr: 0,
                        rows: Vec::new(),
                    };
                    rls_gate::judge(&mut db, &table, &[expr], &rows, &[entry])
                        .await
                        .unwrap()
                        .remove(0)
                        .seen
                }
            };
            let theirs = postgres_says(&env, role, &c.to_string()).await;
            let policies: Vec<String> = env
                .sql
                .query("select format('%s %s %s %s', polname, polpermissive, polcmd, pg_get_expr(polqual, polrelid)) from pg_policy where polrelid = 'public.diff'::regclass", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(
                ours, theirs,
                "round {round}, claims {c}, policies {policies:?}"
            );
        }
    }
}

/// Every row of `public.diff` as the WAL would carry it (type output text), in id order.
async fn row_images(env: &Env, table: &Arc<TableInfo>) -> Vec<Change> {
    let rows = env
        .sql
        .query(
            "select id::text, owner::text, n::text, tag, flag::text, tags::text from public.diff order by id",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| Change {
            action: Action::Insert,
            table: table.clone(),
            commit_timestamp: String::new(),
            columns: table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| WalColumn {
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    cast_type: c.cast_type.clone(),
                    full_type: c.full_type.clone(),
                    text: r
                        .get::<_, Option<String>>(i)
                        .map(|t| match c.typname.as_str() {
                            "bool" => t[..1].to_string(),
                            _ => t,
                        }),
                    value: None,
                    is_pkey: c.is_pkey,
                })
                .collect(),
            old_columns: Vec::new(),
            too_big: false,
        })
        .collect()
}

/// PostgreSQL's own answer: which rows of `public.diff` (in id order) the role and claims see.
async fn postgres_says(env: &Env, role: &str, claims: &str) -> Vec<bool> {
    let all: Vec<i32> = env
        .sql
        .query("select id from public.diff order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    env.sql.batch_execute("begin").await.unwrap();
    env.sql
        .execute(
            "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
            &[&role, &claims],
        )
        .await
        .unwrap();
    let visible: Vec<i32> = env
        .sql
        .query("select id from public.diff", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    env.sql.batch_execute("rollback").await.unwrap();
    all.iter().map(|id| visible.contains(id)).collect()
}

/// `auth.uid()` is evaluated once per claims; when that raises (a `sub` that is not a uuid),
/// the rows whose policy never reaches the call are still judged as PostgreSQL would.
#[tokio::test]
async fn a_hoisted_call_that_raises_falls_back_to_the_policy_as_written() {
    let env = env(
        "create table public.hoist (id int primary key, owner uuid, open boolean);
                   alter table public.hoist enable row level security;
                   create policy p on public.hoist for select to authenticated
                     using (case when open then true else owner = auth.uid() end);
                   grant select on public.hoist to authenticated;
                   alter publication supabase_realtime add table public.hoist;",
    )
    .await;
    let entry = vec![json!({"event": "INSERT", "schema": "public", "table": "hoist"})];
    let mut odd = env
        .subscribe(
            json!({"role": "authenticated", "sub": "not-a-uuid"}),
            entry.clone(),
        )
        .await;
    let mut owner = env.subscribe(user(UA), entry).await;
    env.exec(&format!(
        "insert into public.hoist values (1, '{UA}', true); insert into public.hoist values (2, '{UA}', false);"
    ))
    .await;
    assert_eq!(owner.next_data().await["record"]["id"], 1);
    assert_eq!(owner.next_data().await["record"]["id"], 2);
    // Row 1 never reaches the call; row 2 raises for this subscriber, as it would upstream.
    let mut got = Vec::new();
    for _ in 0..2 {
        match odd.next_event().await {
            realtime_cdc::CdcEvent::Change { data, .. } => {
                let d: serde_json::Value = serde_json::from_str(data.get()).unwrap();
                got.push(d["record"]["id"].to_string());
            }
            realtime_cdc::CdcEvent::System(v) => {
                assert!(
                    v["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("invalid input syntax for type uuid"),
                    "{v}"
                );
                got.push("error".to_string());
            }
        }
    }
    assert_eq!(got, vec!["1".to_string(), "error".to_string()]);
}
