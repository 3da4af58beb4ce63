//! The pipeline's ordinary SQL session on the tenant database: connection settings that make
//! `to_jsonb` render like upstream (UTC, ISO dates), a prepared-statement cache and the
//! catalog cache.

use std::collections::HashMap;

use realtime_pg::connect::{connect, ConnectError, ConnectOptions};
use tokio_postgres::{Client, Statement};

use crate::catalog::Catalog;

const STATEMENT_CACHE: usize = 512;

/// A tenant connection with its caches.
pub struct TenantDb {
    /// The client.
    pub client: Client,
    /// Table shapes and column privileges.
    pub catalog: Catalog,
    statements: HashMap<String, Statement>,
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
            statements: HashMap::new(),
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

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
