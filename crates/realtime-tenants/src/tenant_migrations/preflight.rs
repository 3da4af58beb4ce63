//! Checks a tenant database can host Realtime before anything is changed: logical WAL, the
//! roles the schema refers to, the connection user's privileges and the publication.

use tokio_postgres::Client;

use super::error::{quote_ident, TenantMigrationError};

/// Roles the `realtime` schema is owned by or grants to (POSTGRES.md §1.2).
pub const REQUIRED_ROLES: [&str; 6] = [
    "anon",
    "authenticated",
    "service_role",
    "postgres",
    "dashboard_user",
    "supabase_realtime_admin",
];

/// Roles Realtime switches to for RLS checks; the connection user must be able to.
const API_ROLES: [&str; 3] = ["anon", "authenticated", "service_role"];

pub(super) async fn preflight(
    client: &Client,
    publication: &str,
) -> Result<(), TenantMigrationError> {
    let wal_level: String = client
        .query_one("select current_setting('wal_level')", &[])
        .await
        .map_err(TenantMigrationError::database("reading wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(TenantMigrationError::WalLevelNotLogical { current: wal_level });
    }

    let user = client
        .query_one(
            "select current_user::text, rolsuper, rolcreaterole, rolreplication \
             from pg_catalog.pg_roles where rolname = current_user",
            &[],
        )
        .await
        .map_err(TenantMigrationError::database(
            "reading the connection role",
        ))?;
    let (name, superuser, createrole, replication): (String, bool, bool, bool) =
        (user.get(0), user.get(1), user.get(2), user.get(3));

    let mut roles = missing_roles(client, &REQUIRED_ROLES).await?;
    // The migrations create supabase_realtime_admin themselves when the user may create roles.
    if superuser || createrole {
        roles.retain(|role| role != "supabase_realtime_admin");
    }
    if !roles.is_empty() {
        return Err(TenantMigrationError::MissingRoles { roles });
    }

    if !superuser {
        check_privileges(client, &name, replication).await?;
    }

    let exists: bool = client
        .query_one(
            "select exists (select 1 from pg_catalog.pg_publication where pubname = $1)",
            &[&publication],
        )
        .await
        .map_err(TenantMigrationError::database("looking up the publication"))?
        .get(0);
    if !exists {
        return Err(TenantMigrationError::MissingPublication {
            name: publication.to_owned(),
        });
    }
    Ok(())
}

/// The names in `roles` that no role in the cluster has, in the given order.
pub(crate) async fn missing_roles(
    client: &Client,
    roles: &[&str],
) -> Result<Vec<String>, TenantMigrationError> {
    let wanted: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let existing: Vec<String> = client
        .query(
            "select rolname::text from pg_catalog.pg_roles where rolname = any($1)",
            &[&wanted],
        )
        .await
        .map_err(TenantMigrationError::database("looking up roles"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(wanted
        .into_iter()
        .filter(|role| !existing.contains(role))
        .collect())
}

/// What a non-superuser needs: create in (or create) the schema, act as the owner role,
/// switch to the API roles, and replicate.
async fn check_privileges(
    client: &Client,
    user: &str,
    replication: bool,
) -> Result<(), TenantMigrationError> {
    let row = client
        .query_one(
            "select
                 to_regnamespace('realtime') is not null,
                 case when to_regnamespace('realtime') is null
                      then has_database_privilege(current_database(), 'CREATE')
                      else has_schema_privilege('realtime', 'CREATE')
                           and has_schema_privilege('realtime', 'USAGE')
                 end,
                 case when exists (select 1 from pg_catalog.pg_roles
                                   where rolname = 'supabase_realtime_admin')
                      then pg_has_role('supabase_realtime_admin', 'MEMBER')
                      else false
                 end,
                 coalesce(array_agg(r.rolname::text) filter (where not pg_has_role(r.oid, 'MEMBER')),
                          '{}'),
                 current_database()::text
             from pg_catalog.pg_roles r
             where r.rolname = any($1)",
            &[&API_ROLES.map(str::to_owned).to_vec()],
        )
        .await
        .map_err(TenantMigrationError::database("checking privileges"))?;
    let schema_exists: bool = row.get(0);
    let can_create: bool = row.get(1);
    let owner_member: bool = row.get(2);
    let not_member_of: Vec<String> = row.get(3);
    let database: String = row.get(4);

    let user_ident = quote_ident(user);
    let mut missing = Vec::new();
    let mut fix = Vec::new();
    if !can_create {
        if schema_exists {
            missing.push("CREATE and USAGE on schema realtime".to_owned());
            fix.push(format!(
                "GRANT CREATE, USAGE ON SCHEMA realtime TO {user_ident};"
            ));
        } else {
            missing.push(format!(
                "CREATE on database {database} (schema realtime is missing)"
            ));
            fix.push(format!(
                "GRANT CREATE ON DATABASE {} TO {user_ident};",
                quote_ident(&database)
            ));
        }
    }
    if !owner_member {
        missing.push("membership in supabase_realtime_admin, which owns Realtime's objects".into());
        fix.push(format!("GRANT supabase_realtime_admin TO {user_ident};"));
    }
    if !not_member_of.is_empty() {
        missing.push(format!(
            "membership in {} (RLS checks switch to these roles)",
            not_member_of.join(", ")
        ));
        fix.push(format!(
            "GRANT {} TO {user_ident};",
            not_member_of.join(", ")
        ));
    }
    if !replication {
        missing.push("the REPLICATION attribute (replication slots)".into());
        fix.push(format!("ALTER ROLE {user_ident} REPLICATION;"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(TenantMigrationError::InsufficientPrivilege {
            user: user.to_owned(),
            missing,
            fix: fix.join(" "),
        })
    }
}
