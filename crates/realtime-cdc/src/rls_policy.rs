//! Which rule decides whether a role sees a table's rows, read from the catalog the way
//! PostgreSQL applies row level security (`check_enable_rls` and `add_security_quals` in its
//! `rowsecurity.c`), so the gate only asks the database when the answer can depend on the row
//! or the claims.
//!
//! The rules, in order (each is tested against a real policy in `tests/rls_rules.rs`):
//! 1. RLS disabled on the table → every row ([`Rule::All`]).
//! 2. A superuser or `BYPASSRLS` role → every row.
//! 3. A role with the privileges of the table's owner, unless `FORCE ROW LEVEL SECURITY` → every
//!    row.
//! 4. No permissive `SELECT`/`ALL` policy applies to the role → no row ([`Rule::None`]).
//! 5. A permissive policy whose `USING` is literally `true`, and no restrictive policy → every row.
//! 6. Otherwise the row is visible where `(p1) or (p2) … and (r1) and …` holds
//!    ([`Rule::Check`]); when every referenced function and operator is immutable and no other
//!    table is read, the expression depends on the row alone and is evaluated once per role
//!    rather than once per set of claims.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// How long rules are reused before the catalog is read again (policy changes show up within
/// this time).
const TTL: Duration = Duration::from_secs(2);

/// One `SELECT` or `ALL` policy that applies to the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFact {
    /// `polpermissive`
    pub permissive: bool,
    /// `USING`, deparsed with every name schema-qualified; `None` when the policy has none
    /// (such a policy adds nothing for `SELECT`).
    pub qual: Option<String>,
    /// Only immutable functions and operators, and no other relation: the qual depends on the
    /// row alone.
    pub row_only: bool,
    /// Calls without arguments to stable or immutable functions the qual makes.
    pub hoistable: Vec<Hoisted>,
}

/// A call without arguments to a stable (or immutable) function: within one statement it
/// returns the same value for every row (PostgreSQL's contract for `STABLE`), so the gate
/// evaluates it once per set of claims instead of once per row. `auth.uid()` is the usual one;
/// hoisting it makes an owner policy about ten times cheaper to judge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hoisted {
    /// The call as the deparsed policy spells it, e.g. `auth.uid()`.
    pub call: String,
    /// Its result type, for the variable that holds it.
    pub type_name: String,
}

/// What the catalog says about a (table, role) pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RlsFacts {
    /// `relrowsecurity`
    pub rls_enabled: bool,
    /// `relforcerowsecurity`
    pub force: bool,
    /// The role exists.
    pub role_exists: bool,
    /// Superuser or `BYPASSRLS`.
    pub bypass: bool,
    /// The role has the privileges of the table's owner.
    pub owner: bool,
    /// Applicable `SELECT`/`ALL` policies, by name.
    pub policies: Vec<PolicyFact>,
}

/// Why a role sees every row without a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReason {
    /// RLS is not enabled on the table.
    RlsOff,
    /// Superuser or `BYPASSRLS`.
    Bypass,
    /// Owner of the table, without `FORCE ROW LEVEL SECURITY`.
    Owner,
    /// A permissive policy that is literally `true`, no restrictive policy.
    TruePolicy,
}

/// How a role's visibility of a table's rows is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Every row, no check.
    All(AllReason),
    /// No row (no permissive policy applies).
    None,
    /// Rows where `expr` (over the table's columns, the table aliased by its name) is true.
    Check {
        /// The combined policy expression.
        expr: String,
        /// The expression can depend on the claims (or on other tables' current data).
        per_claims: bool,
        /// Calls in `expr` that may be evaluated once per set of claims.
        hoist: Vec<Hoisted>,
    },
}

/// The rule the facts imply (pure; see the module documentation for the order).
pub fn rule(facts: &RlsFacts) -> Rule {
    if !facts.rls_enabled {
        return Rule::All(AllReason::RlsOff);
    }
    if !facts.role_exists {
        // Let the check run: switching to the missing role raises, and that error is what the
        // subscriber is told.
        return Rule::Check {
            expr: "false".to_string(),
            per_claims: true,
            hoist: Vec::new(),
        };
    }
    if facts.bypass {
        return Rule::All(AllReason::Bypass);
    }
    if facts.owner && !facts.force {
        return Rule::All(AllReason::Owner);
    }
    let with_qual = |permissive: bool| {
        facts
            .policies
            .iter()
            .filter(move |p| p.permissive == permissive)
            .filter_map(|p| p.qual.as_deref().map(|q| (q, p.row_only)))
    };
    let mut hoist: Vec<Hoisted> = Vec::new();
    for h in facts
        .policies
        .iter()
        .filter(|p| p.qual.is_some())
        .flat_map(|p| &p.hoistable)
    {
        if !hoist.contains(h) {
            hoist.push(h.clone());
        }
    }
    let permissive: Vec<(&str, bool)> = with_qual(true).collect();
    let restrictive: Vec<(&str, bool)> = with_qual(false).filter(|(q, _)| *q != "true").collect();
    if permissive.is_empty() {
        return Rule::None;
    }
    let any_true = permissive.iter().any(|(q, _)| *q == "true");
    if any_true && restrictive.is_empty() {
        return Rule::All(AllReason::TruePolicy);
    }
    let mut row_only = restrictive.iter().all(|(_, r)| *r);
    let permissive_expr = if any_true {
        "true".to_string()
    } else {
        row_only &= permissive.iter().all(|(_, r)| *r);
        permissive
            .iter()
            .map(|(q, _)| format!("({q})"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let mut expr = if restrictive.is_empty() {
        permissive_expr
    } else {
        format!("({permissive_expr})")
    };
    for (q, _) in &restrictive {
        expr.push_str(&format!(" and ({q})"));
    }
    Rule::Check {
        expr,
        per_claims: !row_only,
        hoist,
    }
}

/// Reads the facts for one (table, role). Policy texts are deparsed with `search_path` set to
/// `pg_catalog` alone, so every name they use comes out schema-qualified and means the same
/// whatever the evaluating session's path.
const FACTS_SQL: &str = "select c.relrowsecurity, c.relforcerowsecurity, r.oid is not null,
       coalesce(r.rolsuper or r.rolbypassrls, false),
       coalesce(pg_has_role(r.oid, c.relowner, 'USAGE'), false),
       p.polpermissive, pg_get_expr(p.polqual, p.polrelid),
       p.oid is not null and not exists (
         select 1 from pg_depend d
          where d.classid = 'pg_policy'::regclass and d.objid = p.oid
            and case d.refclassid
                  when 'pg_proc'::regclass then
                    coalesce((select f.provolatile <> 'i' from pg_proc f where f.oid = d.refobjid), true)
                  when 'pg_operator'::regclass then
                    coalesce((select f.provolatile <> 'i' from pg_operator o
                               join pg_proc f on f.oid = o.oprcode where o.oid = d.refobjid), true)
                  when 'pg_class'::regclass then
                    d.refobjid <> p.polrelid or (d.refobjsubid = 0 and d.deptype = 'n')
                  else false
                end),
       hoist.calls, hoist.types
  from pg_class c
  left join pg_roles r on r.rolname = $2
  left join pg_policy p on p.polrelid = c.oid and p.polcmd in ('r', '*') and r.oid is not null
       and (0::oid = any(p.polroles)
            or exists(select 1 from unnest(p.polroles) as pr(o) where pg_has_role(r.oid, pr.o, 'USAGE')))
  left join lateral (
       select coalesce(array_agg(h.call order by h.call), '{}') as calls,
              coalesce(array_agg(h.ty order by h.call), '{}') as types
         from (select distinct case when fn.nspname = 'pg_catalog' then quote_ident(f.proname)
                                    else quote_ident(fn.nspname) || '.' || quote_ident(f.proname)
                               end || '()' as call,
                      format_type(f.prorettype, null) as ty
                 from pg_depend d
                 join pg_proc f on f.oid = d.refobjid
                 join pg_namespace fn on fn.oid = f.pronamespace
                 join pg_type rt on rt.oid = f.prorettype
                where d.classid = 'pg_policy'::regclass and d.objid = p.oid
                  and d.refclassid = 'pg_proc'::regclass and f.pronargs = 0
                  and f.provolatile in ('s', 'i') and f.prokind = 'f' and not f.proretset
                  and rt.typtype <> 'p') as h) as hoist on true
 where c.oid = $1
 order by p.polname";

/// Reads the facts of `(table, role)`; `None` when the table no longer exists.
pub async fn read_facts(
    client: &Client,
    table: u32,
    role: &str,
) -> Result<Option<RlsFacts>, tokio_postgres::Error> {
    client
        .batch_execute("begin; set local search_path = pg_catalog")
        .await?;
    let rows = client.query(FACTS_SQL, &[&table, &role]).await;
    // Nothing was written: end the transaction whatever happened.
    let end = client.batch_execute("rollback").await;
    let rows = rows?;
    end?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut facts = RlsFacts {
        rls_enabled: first.get(0),
        force: first.get(1),
        role_exists: first.get(2),
        bypass: first.get(3),
        owner: first.get(4),
        policies: Vec::new(),
    };
    for row in &rows {
        let Some(permissive) = row.get::<_, Option<bool>>(5) else {
            continue;
        };
        let calls: Vec<String> = row.get::<_, Option<Vec<String>>>(8).unwrap_or_default();
        let types: Vec<String> = row.get::<_, Option<Vec<String>>>(9).unwrap_or_default();
        facts.policies.push(PolicyFact {
            permissive,
            qual: row.get(6),
            row_only: row.get(7),
            hoistable: calls
                .into_iter()
                .zip(types)
                .map(|(call, type_name)| Hoisted { call, type_name })
                .collect(),
        });
    }
    Ok(Some(facts))
}

/// Per-connection cache of rules by (table, role).
#[derive(Default)]
pub struct RuleCache {
    rules: HashMap<(u32, String), (Instant, Arc<Rule>)>,
}

impl RuleCache {
    /// Forgets a table's rules (its shape may have changed).
    pub fn invalidate(&mut self, table: u32) {
        self.rules.retain(|(t, _), _| *t != table);
    }

    /// The rule for `(table, role)`, read at most every [`TTL`]. A table that no longer
    /// exists shows no row.
    pub async fn rule(
        &mut self,
        client: &Client,
        table: u32,
        role: &str,
    ) -> Result<Arc<Rule>, tokio_postgres::Error> {
        let key = (table, role.to_string());
        if let Some((at, rule)) = self.rules.get(&key) {
            if at.elapsed() < TTL {
                return Ok(rule.clone());
            }
        }
        let r = Arc::new(match read_facts(client, table, role).await? {
            Some(f) => rule(&f),
            None => Rule::None,
        });
        self.rules.insert(key, (Instant::now(), r.clone()));
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(permissive: bool, qual: &str, row_only: bool) -> PolicyFact {
        PolicyFact {
            permissive,
            qual: Some(qual.to_string()),
            row_only,
            hoistable: Vec::new(),
        }
    }

    fn facts(policies: Vec<PolicyFact>) -> RlsFacts {
        RlsFacts {
            rls_enabled: true,
            role_exists: true,
            policies,
            ..RlsFacts::default()
        }
    }

    #[test]
    fn skip_rules_in_order() {
        let mut f = facts(vec![policy(true, "(a = 1)", true)]);
        f.rls_enabled = false;
        assert_eq!(rule(&f), Rule::All(AllReason::RlsOff));
        let mut f = facts(vec![]);
        f.bypass = true;
        assert_eq!(rule(&f), Rule::All(AllReason::Bypass));
        let mut f = facts(vec![]);
        f.owner = true;
        assert_eq!(rule(&f), Rule::All(AllReason::Owner));
        f.force = true;
        assert_eq!(rule(&f), Rule::None);
        let f = facts(vec![
            policy(true, "(a = 1)", true),
            policy(true, "true", true),
        ]);
        assert_eq!(rule(&f), Rule::All(AllReason::TruePolicy));
    }

    #[test]
    fn no_permissive_policy_denies() {
        assert_eq!(rule(&facts(vec![])), Rule::None);
        assert_eq!(rule(&facts(vec![policy(false, "true", true)])), Rule::None);
        let no_qual = PolicyFact {
            permissive: true,
            qual: None,
            row_only: true,
            hoistable: Vec::new(),
        };
        assert_eq!(rule(&facts(vec![no_qual])), Rule::None);
    }

    #[test]
    fn permissive_or_restrictive_and() {
        let f = facts(vec![
            policy(true, "(a = 1)", true),
            policy(true, "(b = auth.uid())", false),
            policy(false, "(c > 0)", true),
        ]);
        assert_eq!(
            rule(&f),
            Rule::Check {
                expr: "(((a = 1)) or ((b = auth.uid()))) and ((c > 0))".to_string(),
                per_claims: true,
                hoist: Vec::new(),
            }
        );
        let f = facts(vec![
            policy(true, "true", true),
            policy(false, "(c > 0)", true),
        ]);
        assert_eq!(
            rule(&f),
            Rule::Check {
                expr: "(true) and ((c > 0))".to_string(),
                per_claims: false,
                hoist: Vec::new(),
            }
        );
        // A `true` permissive policy makes the others irrelevant, row-only or not.
        let f = facts(vec![
            policy(true, "true", true),
            policy(true, "(b = auth.uid())", false),
            policy(false, "(c > 0)", true),
        ]);
        assert!(matches!(
            rule(&f),
            Rule::Check {
                per_claims: false,
                ..
            }
        ));
    }

    #[test]
    fn a_missing_role_is_checked_so_the_error_reaches_the_subscriber() {
        let mut f = facts(vec![]);
        f.role_exists = false;
        assert!(matches!(
            rule(&f),
            Rule::Check {
                per_claims: true,
                ..
            }
        ));
    }
}
