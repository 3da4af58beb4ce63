//! Row level security: a change reaches a channel only if its role and claims can see the row.

mod common;

use common::*;
use realtime_cdc::CdcEvent;
use serde_json::json;

const NOTES: &str = "
create table public.notes (id int primary key, owner uuid, body text);
alter table public.notes enable row level security;
create policy p on public.notes for select to authenticated
  using (case when (auth.jwt() ->> 'boom') = 'yes' then (1 / (id - id)) = 1 else owner = auth.uid() end);
grant select on public.notes to authenticated;
alter publication supabase_realtime add table public.notes;";

const UA: &str = "00000000-0000-0000-0000-00000000000a";
const UB: &str = "00000000-0000-0000-0000-00000000000b";

fn user(sub: &str) -> serde_json::Value {
    json!({"role": "authenticated", "sub": sub, "exp": 9999999999u64})
}

fn all_notes() -> Vec<serde_json::Value> {
    vec![json!({"event": "*", "schema": "public", "table": "notes"})]
}

#[tokio::test]
async fn each_subscriber_sees_only_its_rows() {
    let env = env(NOTES).await;
    let mut a = env.subscribe(user(UA), all_notes()).await;
    let mut b = env.subscribe(user(UB), all_notes()).await;
    // Same claims as A: checked once, delivered to both.
    let mut a2 = env.subscribe(user(UA), all_notes()).await;

    env.exec(&format!("insert into public.notes values (1,'{UA}','hi')"))
        .await;
    let d = a.next_data().await;
    assert_eq!(d["record"], json!({"id": 1, "owner": UA, "body": "hi"}));
    assert_eq!(a2.next_data().await["record"]["id"], 1);

    // DELETE is not RLS-checked and reveals only the key.
    env.exec("delete from public.notes where id=1").await;
    let d = b.next_data().await;
    assert_eq!(d["type"], "DELETE");
    assert_eq!(d["old_record"], json!({"id": 1}));
    let d = a.next_data().await;
    assert_eq!(d["type"], "DELETE");
    assert_eq!(d["old_record"], json!({"id": 1}));

    // Visibility is judged on the row the change wrote, not on what the table holds when the
    // check runs: an insert deleted in the same transaction is still seen by its owner.
    env.exec(&format!(
        "begin; insert into public.notes values (2,'{UA}','x'); delete from public.notes where id=2; commit;"
    ))
    .await;
    assert_eq!(a.next_data().await["type"], "INSERT");
    assert_eq!(a.next_data().await["type"], "DELETE");
    assert_eq!(b.next_data().await["type"], "DELETE");
    a.assert_quiet(300).await;
    b.assert_quiet(300).await;
}

#[tokio::test]
async fn claims_updates_apply_to_later_changes() {
    let env = env(NOTES).await;
    let mut ch = env.subscribe(user(UB), all_notes()).await;
    env.exec(&format!("insert into public.notes values (1,'{UA}','hi')"))
        .await;
    ch.assert_quiet(500).await;
    ch.sub.update_claims(user(UA));
    match ch.next_event().await {
        CdcEvent::System(v) => assert_eq!(v["message"], "Subscribed to PostgreSQL"),
        other => panic!("expected the subscribed message, got {other:?}"),
    }
    env.exec(&format!("insert into public.notes values (2,'{UA}','hi')"))
        .await;
    assert_eq!(ch.next_data().await["record"]["id"], 2);
}

#[tokio::test]
async fn a_raising_policy_affects_only_its_subscriber() {
    let env = env(NOTES).await;
    let mut boom = env
        .subscribe(
            json!({"role": "authenticated", "sub": UA, "boom": "yes"}),
            all_notes(),
        )
        .await;
    let mut fine = env.subscribe(user(UA), all_notes()).await;
    env.exec(&format!("insert into public.notes values (1,'{UA}','hi')"))
        .await;
    assert_eq!(fine.next_data().await["record"]["id"], 1);
    match boom.next_event().await {
        CdcEvent::System(v) => {
            assert_eq!(v["status"], "error");
            assert_eq!(v["extension"], "postgres_changes");
            assert!(
                v["message"].as_str().unwrap().contains("division by zero"),
                "{v}"
            );
        }
        other => panic!("expected a system error, got {other:?}"),
    }
    // The pipeline keeps going.
    env.exec(&format!("insert into public.notes values (2,'{UA}','hi')"))
        .await;
    assert_eq!(fine.next_data().await["record"]["id"], 2);
}

#[tokio::test]
async fn service_role_bypasses_rls() {
    let env = env(&format!(
        "{NOTES} grant select on public.notes to service_role;"
    ))
    .await;
    let mut ch = env
        .subscribe(json!({"role": "service_role"}), all_notes())
        .await;
    env.exec(&format!("insert into public.notes values (1,'{UB}','hi')"))
        .await;
    assert_eq!(ch.next_data().await["record"]["id"], 1);
}

#[tokio::test]
async fn a_transaction_is_checked_as_a_batch_with_composite_keys() {
    let env = env("create table public.pairs (a int, b text, owner text, primary key (a, b));
                   alter table public.pairs enable row level security;
                   create policy p on public.pairs for select to authenticated using (owner = auth.jwt() ->> 'sub');
                   grant select on public.pairs to authenticated;
                   alter publication supabase_realtime add table public.pairs;").await;
    let entry = vec![json!({"event": "INSERT", "schema": "public", "table": "pairs"})];
    let mut a = env.subscribe(user(UA), entry.clone()).await;
    let mut b = env.subscribe(user(UB), entry).await;
    env.exec(&format!(
        "begin;
         insert into public.pairs values (1, 'x', '{UA}');
         insert into public.pairs values (1, 'y', '{UB}');
         insert into public.pairs values (2, 'x', '{UA}');
         commit;"
    ))
    .await;
    let d = a.next_data().await;
    assert_eq!(
        (d["record"]["a"].clone(), d["record"]["b"].clone()),
        (json!(1), json!("x"))
    );
    let d = a.next_data().await;
    assert_eq!(
        (d["record"]["a"].clone(), d["record"]["b"].clone()),
        (json!(2), json!("x"))
    );
    let d = b.next_data().await;
    assert_eq!(
        (d["record"]["a"].clone(), d["record"]["b"].clone()),
        (json!(1), json!("y"))
    );
    a.assert_quiet(300).await;
    b.assert_quiet(300).await;
}
