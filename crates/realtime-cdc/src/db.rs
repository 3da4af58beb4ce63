//! The pipeline's ordinary SQL session on the tenant database: connection settings that make
//! `to_jsonb` render like upstream (UTC, ISO dates), a prepared-statement cache, the catalog
//! and RLS rule caches, and the gate functions created in this session's `pg_temp`.

use std::collections::{HashMap, HashSet};

use realtime_pg::connect::{connect, ConnectError, ConnectOptions};
use tokio_postgres::{Client, Statement};

use crate::catalog::Catalog;
use crate::rls_policy::RuleCache;

const STATEMENT_CACHE: usize = 512;
/// Gate functions kept in `pg_temp` before they are all dropped (policies that keep changing
/// would otherwise leave one per version).
const TEMP_FUNCTIONS: usize = 256;

/// A tenant connection with its caches.
pub struct TenantDb {
    /// The client.
    pub client: Client,
    /// Table shapes and column privileges.
    pub catalog: Catalog,
    /// RLS rules per (table, role).
    pub rules: RuleCache,
    statements: HashMap<String, Statement>,
    temp_functions: HashSet<String>,
}

impl TenantDb {
    /// Connects with `application_name` and the session settings typed values depend on.
    pub async fn connect(
        base: &ConnectOptions,
        application_name: &str,
    ) -> Result<TenantDb, ConnectError> {
        let mut opts = base.clone();
        opts.application_name = application_name.to_string();
        let settings = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1";
        opts.after_connect_query = Some(match &base.after_connect_query {
            Some(q) => format!("{q}; {settings}"),
            None => settings.to_string(),
        });
        let client = connect(&opts).await?;
        Ok(TenantDb {
            client,
            catalog: Catalog::default(),
            rules: RuleCache::default(),
            statements: HashMap::new(),
            temp_functions: HashSet::new(),
        })
    }

    /// A prepared statement for `sql`, cached by text.
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    /// Creates a function in `pg_temp` unless this session already did (`name` identifies
    /// its text).
    pub async fn ensure_temp_function(
        &mut self,
        name: &str,
        create_sql: &str,
    ) -> Result<(), tokio_postgres::Error> {
        if self.temp_functions.contains(name) {
            return Ok(());
        }
        if self.temp_functions.len() >= TEMP_FUNCTIONS {
            // Statements prepared against the dropped functions go with them.
            self.client.batch_execute("discard temp").await?;
            self.temp_functions.clear();
            self.statements.clear();
        }
        self.client.batch_execute(create_sql).await?;
        self.temp_functions.insert(name.to_string());
        Ok(())
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
