//! What the tenant's catalog says about a published table (columns, types, primary key, RLS)
//! and which columns a role may read, cached briefly: upstream reads these per change, and a
//! short cache keeps grants and `ALTER TABLE`s visible within a couple of seconds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::value;

const TTL: Duration = Duration::from_secs(2);

/// One live column (`attnum > 0`, not dropped), in `attnum` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    /// `attname`
    pub name: String,
    /// `pg_type.typname` (`int4`, `_int4`, `bpchar`, the enum's own name, …).
    pub typname: String,
    /// `atttypid`
    pub type_oid: u32,
    /// SQL type to cast text values to (see [`value::cast_type_name`]).
    pub cast_type: String,
    /// The `regtype` text, as upstream prints it in errors (`character varying`).
    pub regtype: String,
    /// `format_type(atttypid, atttypmod)`, as wal2json's `type` field.
    pub full_type: String,
    /// Part of the primary-key constraint.
    pub is_pkey: bool,
    /// A stored generated column (pgoutput does not send these before PostgreSQL 18).
    pub generated: bool,
}

/// A table's shape.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Relation OID.
    pub oid: u32,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// `pg_class.relrowsecurity` (FORCE is not considered, as upstream).
    pub rls_enabled: bool,
    /// Columns in `attnum` order.
    pub columns: Vec<CatalogColumn>,
}

impl TableInfo {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// `"schema"."table"` for SQL.
    pub fn quoted_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Double-quotes an identifier for SQL.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A cached value and when it was read.
type Cached<T> = (Instant, Arc<T>);

/// Per-connection cache of table shapes and per-role column privileges.
#[derive(Default)]
pub struct Catalog {
    tables: HashMap<u32, Cached<TableInfo>>,
    privileges: HashMap<(u32, String), Cached<HashSet<String>>>,
}

const TABLE_SQL: &str = "select n.nspname::text, c.relname::text, c.relrowsecurity,
       a.attname::text, t.typname::text, a.atttypid::oid, format_type(a.atttypid, null),
       format_type(a.atttypid, a.atttypmod),
       exists(select 1 from pg_constraint k
              where k.conrelid = c.oid and k.contype = 'p' and a.attnum = any(k.conkey)),
       coalesce(a.attgenerated = 's', false)
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  left join pg_type t on t.oid = a.atttypid
 where c.oid = $1
 order by a.attnum";

const PRIVILEGE_SQL: &str = "select a.attname::text
  from pg_attribute a
 where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
   and has_column_privilege($2::text, a.attrelid, a.attnum, 'SELECT')";

impl Catalog {
    /// Forgets a table (after a `Relation` message: its shape may have changed).
    pub fn invalidate(&mut self, oid: u32) {
        self.tables.remove(&oid);
        self.privileges.retain(|(t, _), _| *t != oid);
    }

    /// The table's shape, or `None` when it no longer exists.
    pub async fn table(
        &mut self,
        client: &Client,
        oid: u32,
    ) -> Result<Option<Arc<TableInfo>>, tokio_postgres::Error> {
        if let Some((at, info)) = self.tables.get(&oid) {
            if at.elapsed() < TTL {
                return Ok(Some(info.clone()));
            }
        }
        let rows = client.query(TABLE_SQL, &[&oid]).await?;
        let Some(first) = rows.first() else {
            self.tables.remove(&oid);
            return Ok(None);
        };
        let mut info = TableInfo {
            oid,
            schema: first.get(0),
            name: first.get(1),
            rls_enabled: first.get(2),
            columns: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let Some(name) = row.get::<_, Option<String>>(3) else {
                continue;
            };
            let type_oid: u32 = row.get(5);
            let regtype: String = row.get(6);
            info.columns.push(CatalogColumn {
                name,
                typname: row.get::<_, Option<String>>(4).unwrap_or_default(),
                type_oid,
                cast_type: value::cast_type_name(type_oid, &regtype),
                regtype,
                full_type: row.get(7),
                is_pkey: row.get(8),
                generated: row.get(9),
            });
        }
        let info = Arc::new(info);
        self.tables.insert(oid, (Instant::now(), info.clone()));
        Ok(Some(info))
    }

    /// Names of the columns `role` may select.
    pub async fn selectable(
        &mut self,
        client: &Client,
        oid: u32,
        role: &str,
    ) -> Result<Arc<HashSet<String>>, tokio_postgres::Error> {
        let key = (oid, role.to_string());
        if let Some((at, set)) = self.privileges.get(&key) {
            if at.elapsed() < TTL {
                return Ok(set.clone());
            }
        }
        let rows = client.query(PRIVILEGE_SQL, &[&oid, &role]).await?;
        let set: Arc<HashSet<String>> = Arc::new(rows.iter().map(|r| r.get(0)).collect());
        self.privileges.insert(key, (Instant::now(), set.clone()));
        Ok(set)
    }
}
