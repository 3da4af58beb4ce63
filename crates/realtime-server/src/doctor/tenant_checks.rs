//! Per-tenant database checks: reachability, WAL, slots, publication, row level security on
//! the published tables, roles, privileges.

use std::time::Duration;

use realtime_cdc::tenant_diagnosis::{
    self, PublishedTable, SlotInfo, TenantDbDiagnosis, TenantDiagnosisError, Visibility,
    SUBSCRIBER_ROLE,
};
use realtime_tenants::{Crypto, Tenant};

use super::report::{Check, Report};

/// Free slots below this are a warning: a tenant uses up to two (changes, database broadcast).
const SLOTS_PER_TENANT: i64 = 2;

/// Checks a tenant's database.
pub async fn database(
    tenant: &Tenant,
    crypto: &Crypto,
    connect_timeout: Duration,
    statement_timeout: Duration,
    report: &mut Report,
) {
    let id = &tenant.external_id;
    let settings = match tenant.cdc_settings(crypto) {
        Ok(Some(s)) => s,
        Ok(None) => {
            report.push(Check::ok(
                format!("tenant.{id}.database"),
                "no postgres_cdc_rls extension: no tenant database to check",
            ));
            return;
        }
        Err(e) => {
            report.push(Check::fail(
                format!("tenant.{id}.database"),
                format!("the database settings cannot be read: {e}"),
                format!("Set the tenant's database settings again (PUT /api/tenants/{id} with its postgres_cdc_rls extension)"),
            ));
            return;
        }
    };
    let opts = tenant_diagnosis::options(&settings, connect_timeout);
    // Every statement has its own limit; this bounds the whole inspection as well.
    let limit = connect_timeout + statement_timeout * 4;
    let diag = match tokio::time::timeout(
        limit,
        tenant_diagnosis::diagnose(&opts, statement_timeout, &settings.publication),
    )
    .await
    {
        Ok(Ok(d)) => d,
        Ok(Err(TenantDiagnosisError::Connect { target, reason })) => {
            report.push(Check::fail(
                format!("tenant.{id}.database"),
                format!("cannot reach {target}: {reason}"),
                format!("Check the tenant's db_host, db_port, db_name, db_user and db_password (PUT /api/tenants/{id}) and that the database accepts connections from this container"),
            ));
            return;
        }
        Ok(Err(e)) => {
            report.push(Check::fail(
                format!("tenant.{id}.database"),
                e.to_string(),
                "Check that the tenant's db_user may read the catalog",
            ));
            return;
        }
        Err(_) => {
            report.push(Check::fail(
                format!("tenant.{id}.database"),
                format!(
                    "cannot reach {}:{}: no answer within {}s",
                    settings.host,
                    settings.port,
                    limit.as_secs()
                ),
                "Check that the tenant database is up and reachable from this container",
            ));
            return;
        }
    };
    report.push(Check::ok(
        format!("tenant.{id}.database"),
        format!("reached {} as {}", diag.target, settings.user),
    ));
    wal(id, &diag, report);
    for slot in &diag.slots {
        report.push(slot_check(id, slot));
    }
    publication(id, &settings.publication, &diag, report);
    roles(id, &diag, report);
}

fn wal(id: &str, d: &TenantDbDiagnosis, report: &mut Report) {
    if d.wal_level == "logical" {
        report.push(Check::ok(
            format!("tenant.{id}.wal_level"),
            "wal_level is logical",
        ));
    } else {
        report.push(Check::fail(
            format!("tenant.{id}.wal_level"),
            format!(
                "wal_level is `{}`: logical replication is off, so Postgres Changes and Broadcast from the database cannot start",
                d.wal_level
            ),
            "Run `ALTER SYSTEM SET wal_level = logical;` as a superuser (or set it in postgresql.conf) and restart PostgreSQL",
        ));
    }
    let free_slots = d.max_replication_slots - d.slots_used;
    let free_senders = d.max_wal_senders - d.wal_senders_used;
    let headroom = format!(
        "replication slots {} of {} used; walsenders {} of {} used",
        d.slots_used, d.max_replication_slots, d.wal_senders_used, d.max_wal_senders
    );
    let id = format!("tenant.{id}.replication_headroom");
    if free_slots <= 0 || free_senders <= 0 {
        report.push(Check::fail(
            id,
            format!("{headroom}: no room for a new replication stream"),
            "Raise max_replication_slots and max_wal_senders (postgresql.conf, then restart), or drop slots nothing uses",
        ));
    } else if free_slots < SLOTS_PER_TENANT || free_senders < SLOTS_PER_TENANT {
        report.push(Check::warn(
            id,
            format!("{headroom}: room for fewer than {SLOTS_PER_TENANT} more streams (a tenant uses up to {SLOTS_PER_TENANT})"),
            "Raise max_replication_slots and max_wal_senders (postgresql.conf, then restart)",
        ));
    } else {
        report.push(Check::ok(id, headroom));
    }
}

fn slot_check(id: &str, slot: &SlotInfo) -> Check {
    let check_id = format!("tenant.{id}.slot.{}", slot.name);
    let bytes = |b: Option<i64>| b.map_or("unknown".to_string(), |b| format!("{b} bytes"));
    let kind = slot.plugin.as_deref().unwrap_or("physical");
    let describe = format!(
        "slot {} ({kind}, {}): lag {} behind pg_current_wal_lsn(), holding {} of WAL",
        slot.name,
        if slot.active { "active" } else { "inactive" },
        bytes(slot.lag_bytes),
        bytes(slot.retained_bytes)
    );
    let drop = format!(
        "If nothing will stream from it again: SELECT pg_drop_replication_slot('{}');",
        slot.name.replace('\'', "''")
    );
    if slot.wal_status.as_deref() == Some("lost") {
        return Check::fail(
            check_id,
            format!("{describe}; its WAL was removed (wal_status lost), it can never stream again"),
            drop,
        );
    }
    if !slot.active && slot.retained_bytes.unwrap_or(0) > 0 {
        return Check::warn(
            check_id,
            format!("{describe}; inactive slots keep WAL on disk until they are dropped"),
            drop,
        );
    }
    Check::ok(check_id, describe)
}

fn publication(id: &str, name: &str, d: &TenantDbDiagnosis, report: &mut Report) {
    let check_id = format!("tenant.{id}.publication");
    let Some(p) = &d.publication else {
        report.push(Check::fail(
            check_id,
            format!("publication {name} (the tenant's `publication` setting) does not exist: Postgres Changes has nothing to stream"),
            format!(
                "Create it with `CREATE PUBLICATION {q};` and add tables with `ALTER PUBLICATION {q} ADD TABLE <schema>.<table>;`, or set the tenant's `publication` setting to an existing one",
                q = quote(name)
            ),
        ));
        return;
    };
    let names: Vec<String> = p.tables.iter().map(qualified).collect();
    if p.tables.is_empty() {
        report.push(Check::warn(
            check_id,
            format!(
                "publication {} holds no tables: Postgres Changes delivers nothing",
                p.name
            ),
            format!(
                "Add the tables to stream: `ALTER PUBLICATION {} ADD TABLE <schema>.<table>;`",
                quote(&p.name)
            ),
        ));
        return;
    }
    report.push(Check::ok(
        check_id,
        format!(
            "publication {}{} holds {} table(s): {} (a table not listed here sends no changes)",
            p.name,
            if p.all_tables {
                " (FOR ALL TABLES)"
            } else {
                ""
            },
            p.tables.len(),
            names.join(", ")
        ),
    ));
    for table in &p.tables {
        report.push(table_check(id, table));
    }
}

fn table_check(id: &str, t: &PublishedTable) -> Check {
    let name = qualified(t);
    let check_id = format!("tenant.{id}.table.{name}");
    let policy = format!(
        "CREATE POLICY \"{SUBSCRIBER_ROLE} can read\" ON {name} FOR SELECT TO {SUBSCRIBER_ROLE} USING (<condition>);"
    );
    match t.visibility {
        Visibility::RlsOff => Check::warn(
            check_id,
            format!("{name} is published without row level security: every subscriber sees every row"),
            format!("If its rows are not public: ALTER TABLE {name} ENABLE ROW LEVEL SECURITY; {policy}"),
        ),
        Visibility::NoPolicy => Check::warn(
            check_id,
            format!("{name} has row level security but no SELECT (or ALL) policy applies to {SUBSCRIBER_ROLE}: every change is silently hidden from signed-in subscribers"),
            format!("Add a policy: {policy}"),
        ),
        Visibility::RoleMissing => Check::fail(
            check_id,
            format!("role {SUBSCRIBER_ROLE} does not exist, so no subscriber can be judged on {name}"),
            format!("CREATE ROLE {SUBSCRIBER_ROLE} NOLOGIN NOINHERIT;"),
        ),
        Visibility::AllRows => Check::ok(
            check_id,
            format!("{SUBSCRIBER_ROLE} sees every row of {name} (a policy allows all rows)"),
        ),
        Visibility::ByPolicy => Check::ok(
            check_id,
            format!("row level security on {name}, {SUBSCRIBER_ROLE} sees the rows its policies allow"),
        ),
    }
}

fn roles(id: &str, d: &TenantDbDiagnosis, report: &mut Report) {
    let check_id = format!("tenant.{id}.roles");
    // The tenant migrations create supabase_realtime_admin when the user may create roles.
    let (soft, hard): (Vec<&String>, Vec<&String>) = d
        .missing_roles
        .iter()
        .partition(|r| r.as_str() == "supabase_realtime_admin");
    if !hard.is_empty() {
        let names: Vec<&str> = hard.iter().map(|r| r.as_str()).collect();
        let create: Vec<String> = names
            .iter()
            .map(|r| format!("CREATE ROLE {} NOLOGIN NOINHERIT;", quote(r)))
            .collect();
        report.push(Check::fail(
            check_id,
            format!(
                "missing roles the realtime schema grants to: {}",
                names.join(", ")
            ),
            format!("As a superuser: {}", create.join(" ")),
        ));
    } else if !soft.is_empty() {
        report.push(Check::warn(
            check_id,
            "role supabase_realtime_admin does not exist yet",
            "Nothing to do when the tenant's db_user may create roles (the tenant migrations create it); otherwise, as a superuser: CREATE ROLE supabase_realtime_admin NOLOGIN NOINHERIT;",
        ));
    } else {
        report.push(Check::ok(
            check_id,
            "the roles the realtime schema needs exist (anon, authenticated, service_role, postgres, dashboard_user, supabase_realtime_admin)",
        ));
    }
    // The privilege check runs only once wal_level and the roles are right.
    if d.wal_level != "logical" || !d.missing_roles.is_empty() {
        return;
    }
    let check_id = format!("tenant.{id}.privileges");
    match &d.missing_privileges {
        Some((missing, fix)) => report.push(Check::fail(
            check_id,
            format!("the tenant's db_user lacks: {}", missing.join("; ")),
            format!("Connect as a superuser, or as a superuser run: {fix}"),
        )),
        None => report.push(Check::ok(
            check_id,
            "the tenant's db_user may install and run the realtime schema",
        )),
    }
}

fn qualified(t: &PublishedTable) -> String {
    format!("{}.{}", quote(&t.schema), quote(&t.name))
}

fn quote(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}
