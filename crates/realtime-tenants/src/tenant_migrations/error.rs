//! Why the `realtime` schema could not be checked, installed or maintained, worded so that an
//! operator knows what to change.

use std::fmt::Write as _;

use tokio_postgres::error::SqlState;

/// Everything that stops [`super::migrate`], [`super::preflight`] or the partition helpers.
#[derive(Debug, thiserror::Error)]
pub enum TenantMigrationError {
    /// The server does not run logical decoding.
    #[error(
        "wal_level is `{current}`, but Realtime needs `logical` for Postgres Changes and \
         Broadcast from the database: run `ALTER SYSTEM SET wal_level = logical;` as a \
         superuser (or set `wal_level = logical` in postgresql.conf) and restart PostgreSQL"
    )]
    WalLevelNotLogical {
        /// The server's current `wal_level`.
        current: String,
    },

    /// Roles the schema grants to or is owned by do not exist (roles are cluster-wide).
    #[error(
        "missing database roles: {}. Create them as a superuser before connecting Realtime: {}",
        .roles.join(", "),
        create_roles_fix(.roles)
    )]
    MissingRoles {
        /// Role names, in the order they were checked.
        roles: Vec<String>,
    },

    /// The connection user may not install or run the schema.
    #[error(
        "database user `{user}` lacks privileges Realtime needs: {}. Connect as a superuser \
         (such as supabase_admin) or, as a superuser, run: {}",
        .missing.join("; "),
        .fix
    )]
    InsufficientPrivilege {
        /// The connection user.
        user: String,
        /// One entry per missing privilege.
        missing: Vec<String>,
        /// SQL that grants what is missing.
        fix: String,
    },

    /// The publication Postgres Changes reads does not exist.
    #[error(
        "publication `{name}` does not exist: create it with `CREATE PUBLICATION {quoted};` \
         and add the tables to stream with `ALTER PUBLICATION {quoted} ADD TABLE \
         <schema>.<table>;`, or set the tenant's `publication` setting to an existing one",
        quoted = quote_ident(.name)
    )]
    MissingPublication {
        /// The publication name from the tenant settings.
        name: String,
    },

    /// A version's SQL failed; nothing of the run was kept.
    #[error(
        "tenant migration {version} ({name}) failed, nothing was changed: {}",
        describe(.source)
    )]
    Migration {
        /// Upstream's version number.
        version: i64,
        /// Upstream's migration name.
        name: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Installing the final functions and grants failed; nothing of the run was kept.
    #[error(
        "installing the realtime functions and grants failed, nothing was changed: {}",
        describe(.source)
    )]
    FinalState {
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A query outside the migration scripts failed.
    #[error("tenant database query failed while {context}: {}", describe(.source))]
    Database {
        /// What was being done.
        context: &'static str,
        /// The database or connection error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl TenantMigrationError {
    pub(crate) fn database(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Database { context, source }
    }
}

/// Full server message: SQLSTATE, message, detail, hint and context where present.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let mut out = format!("{} ({})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        let _ = write!(out, "; detail: {detail}");
    }
    if let Some(hint) = db.hint() {
        let _ = write!(out, "; hint: {hint}");
    }
    if let Some(context) = db.where_() {
        let _ = write!(out, "; context: {}", context.replace('\n', " / "));
    }
    if db.code() == &SqlState::INSUFFICIENT_PRIVILEGE {
        out.push_str(
            "; fix: connect as a superuser (such as supabase_admin), or grant the connection \
             user membership in supabase_realtime_admin and CREATE, USAGE on schema realtime",
        );
    }
    out
}

/// `CREATE ROLE` statements for the roles a Supabase image provides (POSTGRES.md §5.2).
fn create_roles_fix(roles: &[String]) -> String {
    roles
        .iter()
        .map(|role| match role.as_str() {
            "anon" | "authenticated" => format!("CREATE ROLE {role} NOLOGIN NOINHERIT;"),
            "service_role" => "CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;".to_owned(),
            "dashboard_user" => {
                "CREATE ROLE dashboard_user NOSUPERUSER CREATEDB CREATEROLE REPLICATION;".to_owned()
            }
            "supabase_realtime_admin" => "CREATE ROLE supabase_realtime_admin NOLOGIN NOINHERIT \
                 NOREPLICATION; GRANT anon, authenticated, service_role TO \
                 supabase_realtime_admin;"
                .to_owned(),
            other => format!("CREATE ROLE {} NOLOGIN;", quote_ident(other)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An identifier quoted the way PostgreSQL's `quote_ident` would.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_roles_message_names_each_role_and_its_create_statement() {
        let err = TenantMigrationError::MissingRoles {
            roles: vec!["dashboard_user".into(), "service_role".into()],
        };
        let text = err.to_string();
        assert!(text.contains("missing database roles: dashboard_user, service_role"));
        assert!(text.contains("CREATE ROLE dashboard_user NOSUPERUSER"));
        assert!(text.contains("CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;"));
    }

    #[test]
    fn publication_fix_quotes_unusual_names() {
        let err = TenantMigrationError::MissingPublication {
            name: "My Pub".into(),
        };
        assert!(err.to_string().contains("CREATE PUBLICATION \"My Pub\";"));
    }

    #[test]
    fn quote_ident_leaves_plain_names_alone() {
        assert_eq!(quote_ident("supabase_realtime"), "supabase_realtime");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("1abc"), "\"1abc\"");
    }
}
