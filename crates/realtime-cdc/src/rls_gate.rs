//! Row-level-security visibility of changes, judged on the row image the WAL carries rather
//! than on what the table holds when the check runs: a row inserted and deleted right after is
//! still seen by whoever its policies let see it.
//!
//! For one table and one batch of changes the gate runs **one statement**: a function created
//! once per connection in `pg_temp` that builds the rows as values of the table's own row type,
//! then for every (role, claims) entry sets `role` and `request.jwt.claims` — as upstream's
//! `realtime.apply_rls` does inside the database — and evaluates the policy expression the
//! catalog gives for that role ([`crate::rls_policy`]) over the entry's rows. Nothing is added to
//! the tenant's `realtime` schema. The first attempt runs without subtransactions; if it
//! raises, the batch is run again with every entry in its own subtransaction, so a policy that
//! raises affects only the subscribers whose claims made it raise.

use crate::catalog::{quote_ident, TableInfo};
use crate::change::Change;
use crate::db::TenantDb;
use crate::rls_policy::{Hoisted, Rule};

/// `"pk1" = $1::text::T1 and …` over the change's new primary-key values, with the values.
pub fn pk_condition(change: &Change) -> (String, Vec<Option<String>>) {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    for c in change.columns.iter().filter(|c| c.is_pkey) {
        params.push(c.text.clone());
        conditions.push(format!(
            "{} = ${}::text::{}",
            quote_ident(&c.name),
            params.len(),
            c.cast_type
        ));
    }
    if conditions.is_empty() {
        return ("false".to_string(), params);
    }
    (conditions.join(" and "), params)
}

/// The row a change leaves behind, one text value per catalog column (in `attnum` order): the
/// new tuple, with columns it lacks (unchanged TOAST values) taken from the old identity when
/// that carries them, otherwise NULL.
pub fn row_image(table: &TableInfo, change: &Change) -> Vec<Option<String>> {
    table
        .columns
        .iter()
        .map(|col| {
            change
                .columns
                .iter()
                .find(|c| c.name == col.name)
                .or_else(|| change.old_columns.iter().find(|c| c.name == col.name))
                .and_then(|c| c.text.clone())
        })
        .collect()
}

/// The SQL of one table's gate function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateProgram {
    /// Function name in `pg_temp`.
    pub name: String,
    /// `create or replace function pg_temp.…`
    pub create_sql: String,
    /// The call, with its seven parameters (see [`program`]).
    pub call_sql: String,
}

fn fnv(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// One policy expression the gate evaluates, with the calls it may hoist out of the row loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateExpr {
    /// The expression over the table's columns.
    pub expr: String,
    /// Calls without arguments to stable functions in `expr`.
    pub hoist: Vec<Hoisted>,
}

impl GateExpr {
    /// The expression of a [`Rule::Check`]; `None` for rules decided without a check.
    pub fn of(rule: &Rule) -> Option<GateExpr> {
        match rule {
            Rule::Check { expr, hoist, .. } => Some(GateExpr {
                expr: expr.clone(),
                hoist: hoist.clone(),
            }),
            _ => None,
        }
    }
}

/// `expr` with every call in `calls` (outside string literals and quoted names, and not the
/// tail of a longer name) replaced by its variable.
pub fn hoist_calls(expr: &str, calls: &[(&str, &str)]) -> String {
    let bytes = expr.as_bytes();
    let mut out = String::with_capacity(expr.len());
    let mut i = 0;
    let mut prev: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        let boundary = prev.is_none_or(|p| !(p.is_ascii_alphanumeric() || b"_$.\"".contains(&p)));
        if boundary {
            if let Some((call, var)) = calls.iter().find(|(call, _)| expr[i..].starts_with(call)) {
                out.push_str(var);
                i += call.len();
                prev = Some(b')');
                continue;
            }
        }
        if c == b'\'' || c == b'"' {
            // A literal or quoted name, with its doubled quotes, copied as it is.
            let mut j = i + 1;
            while j < bytes.len() {
                if bytes[j] == c {
                    if bytes.get(j + 1) == Some(&c) {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            let end = (j + 1).min(bytes.len());
            out.push_str(&expr[i..end]);
            i = end;
            prev = Some(c);
            continue;
        }
        let ch_len = expr[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&expr[i..i + ch_len]);
        prev = Some(c);
        i += ch_len;
    }
    out
}

/// The gate function of `table` for the policy expressions `exprs` (indexed from 0).
///
/// Parameters: `$1` roles, `$2` claims, `$3` expression index per entry; `$4` the rows'
/// values flattened row by row (one per catalog column); `$5` the rows of every entry
/// (1-based, flattened) and `$6` where each entry's rows start in `$5` (one more element than
/// there are entries; an empty range means every row); `$7` whether each entry runs in its own
/// subtransaction. Returns per entry its index, the verdict per row, or the error's SQLSTATE and
/// message.
///
/// Hoisted calls are evaluated once per entry before the rows. In the subtransaction mode a
/// call that raises sends that entry through the expressions as written, so it raises only
/// where PostgreSQL would (for a row that reaches the call).
pub fn program(table: &TableInfo, exprs: &[GateExpr]) -> GateProgram {
    let ncols = table.columns.len().max(1);
    let row_type = table.quoted_name();
    let casts: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(j, c)| format!("$4[rt_g.rt_i * {ncols} + {}]::text::{}", j + 1, c.cast_type))
        .collect();
    // Hoisted calls, unless a column could be mistaken for their variables.
    let mut hoists: Vec<(&Hoisted, String)> = Vec::new();
    if !table
        .columns
        .iter()
        .any(|c| c.name.starts_with("rt_hoist_"))
    {
        for h in exprs.iter().flat_map(|e| &e.hoist) {
            if !hoists.iter().any(|(x, _)| x.call == h.call) {
                let var = format!("rt_hoist_{}", hoists.len() + 1);
                hoists.push((h, var));
            }
        }
    }
    let calls: Vec<(&str, &str)> = hoists
        .iter()
        .map(|(h, v)| (h.call.as_str(), v.as_str()))
        .collect();
    let test_of = |texts: Vec<String>| match texts.as_slice() {
        [] => "false".to_string(),
        [only] => format!("({only})"),
        many => {
            let arms: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, e)| format!("when {i} then ({e})"))
                .collect();
            format!("case $3[rt_j] {} end", arms.join(" "))
        }
    };
    let plain = test_of(exprs.iter().map(|e| e.expr.clone()).collect());
    let hoisted = test_of(exprs.iter().map(|e| hoist_calls(&e.expr, &calls)).collect());
    let alias = quote_ident(&table.name);
    let switch = "perform set_config('role', $1[rt_j], true), \
                  set_config('request.jwt.claims', $2[rt_j], true);";
    let judge = |test: &str| {
        format!(
            "select coalesce(array_agg(coalesce({test}, false)), '{{}}') into rt_seen \
             from unnest(rt_sub) as {alias};"
        )
    };
    let declare: String = hoists
        .iter()
        .map(|(h, v)| format!("  {v} {};\n", h.type_name))
        .collect();
    let assign: String = hoists
        .iter()
        .map(|(h, v)| format!("{v} := {}; ", h.call))
        .collect();
    let (safe_judge, fast_judge) = if hoists.is_empty() {
        (judge(&plain), judge(&plain))
    } else {
        (
            format!(
                "begin {assign}rt_ok := true; exception when others then rt_ok := false; end;
        if rt_ok then {} else {} end if;",
                judge(&hoisted),
                judge(&plain)
            ),
            format!("{assign}{}", judge(&hoisted)),
        )
    };
    let body = format!(
        "
#variable_conflict use_column
declare
  rt_rows {row_type}[];
  rt_sub {row_type}[];
  rt_j integer;
  rt_ok boolean;
  rt_one boolean;
  rt_x integer;
{declare}  rt_n integer := coalesce(array_length($4, 1), 0) / {ncols};
begin
  select coalesce(array_agg(row({casts})::{row_type} order by rt_g.rt_i), '{{}}') into rt_rows
    from generate_series(0, rt_n - 1) as rt_g(rt_i);
  for rt_j in 1 .. coalesce(array_length($1, 1), 0) loop
    rt_k := rt_j;
    rt_seen := null;
    rt_code := null;
    rt_err := null;
    if $6[rt_j + 1] > $6[rt_j] then
      rt_sub := array(select rt_rows[rt_x]
                        from unnest($5[$6[rt_j]:$6[rt_j + 1] - 1]) with ordinality as rt_u(rt_x, rt_o)
                       order by rt_o);
    else
      rt_sub := rt_rows;
    end if;
    if $7 then
      begin
        {switch}
        {safe_judge}
      exception when others then
        -- Judge each row on its own: only the rows that raise are withheld.
        rt_code := sqlstate;
        rt_err := sqlerrm;
        rt_seen := '{{}}';
        for rt_x in 1 .. coalesce(array_length(rt_sub, 1), 0) loop
          begin
            {switch}
            select coalesce({plain}, false) into rt_one from unnest(rt_sub[rt_x:rt_x]) as {alias};
          exception when others then
            rt_one := false;
          end;
          rt_seen := rt_seen || rt_one;
        end loop;
      end;
    else
      {switch}
      {fast_judge}
    end if;
    return next;
  end loop;
end
",
        casts = casts.join(", "),
    );
    let name = format!("realtime_gate_{}_{:016x}", table.oid, fnv(&body));
    let mut tag = "$rt_gate$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$rt_gate_{n}$");
    }
    let create_sql = format!(
        "create or replace function pg_temp.{name}(text[], text[], integer[], text[], integer[], integer[], boolean) \
         returns table(rt_k integer, rt_seen boolean[], rt_code text, rt_err text) \
         language plpgsql as {tag}{body}{tag}",
        name = quote_ident(&name),
    );
    let call_sql = format!(
        "select rt_k, rt_seen, rt_code, rt_err from pg_temp.{}($1::text[], $2::text[], $3::integer[], $4::text[], $5::integer[], $6::integer[], $7::boolean)",
        quote_ident(&name)
    );
    GateProgram {
        name,
        create_sql,
        call_sql,
    }
}

/// One evaluation: under `role` with `claims`, which rows `expr` lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateEntry {
    /// Database role to switch to.
    pub role: String,
    /// `request.jwt.claims`
    pub claims: String,
    /// Index into the expressions the program was built for.
    pub expr: usize,
    /// Rows to judge (indexes into the batch's rows); empty means every row.
    pub rows: Vec<usize>,
}

/// A policy (or the role switch) raised for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// SQLSTATE
    pub code: String,
    /// The message
    pub message: String,
}

/// One entry's outcome: a verdict per judged row (in the entry's row order, or every row's when
/// the entry named none), and what raised for the rows withheld because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryVerdict {
    /// Visible or not, per row; empty when the entry could not be judged at all.
    pub seen: Vec<bool>,
    /// The first error a row raised.
    pub error: Option<EntryError>,
}

/// Judges `rows` (all of `table`) for every entry, in one statement. An `Err` of the whole call
/// means the statement could not run at all (connection lost, function not creatable); errors
/// raised by a policy are the entry's own.
pub async fn judge(
    db: &mut TenantDb,
    table: &TableInfo,
    exprs: &[GateExpr],
    rows: &[&Change],
    entries: &[GateEntry],
) -> Result<Vec<EntryVerdict>, tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let program = program(table, exprs);
    db.ensure_temp_function(&program.name, &program.create_sql)
        .await?;
    let values: Vec<Option<String>> = rows.iter().flat_map(|c| row_image(table, c)).collect();
    let roles: Vec<&str> = entries.iter().map(|e| e.role.as_str()).collect();
    let claims: Vec<&str> = entries.iter().map(|e| e.claims.as_str()).collect();
    let expr: Vec<i32> = entries.iter().map(|e| e.expr as i32).collect();
    let mut picks: Vec<i32> = Vec::new();
    let mut starts: Vec<i32> = Vec::with_capacity(entries.len() + 1);
    for e in entries {
        starts.push(picks.len() as i32 + 1);
        picks.extend(e.rows.iter().map(|&r| r as i32 + 1));
    }
    starts.push(picks.len() as i32 + 1);
    let stmt = db.prepare(&program.call_sql).await?;
    let run = |safe: bool| {
        let client = &db.client;
        let (stmt, roles, claims, expr, values, picks, starts) =
            (&stmt, &roles, &claims, &expr, &values, &picks, &starts);
        async move {
            client
                .query(stmt, &[roles, claims, expr, values, picks, starts, &safe])
                .await
        }
    };
    let result = match run(false).await {
        Ok(r) => r,
        Err(e) if e.is_closed() || db.is_closed() => return Err(e),
        Err(e) => {
            tracing::debug!(error = %e, table = %table.name, "RLS batch raised, judging each entry on its own");
            run(true).await?
        }
    };
    let mut out: Vec<EntryVerdict> = entries
        .iter()
        .map(|_| EntryVerdict {
            seen: Vec::new(),
            error: None,
        })
        .collect();
    for row in result {
        let k: i32 = row.get(0);
        let Some(slot) = usize::try_from(k - 1).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        slot.seen = row.get::<_, Option<Vec<bool>>>(1).unwrap_or_default();
        slot.error = row.get::<_, Option<String>>(2).map(|code| EntryError {
            code,
            message: row.get::<_, Option<String>>(3).unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogColumn;

    fn col(name: &str, cast: &str) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            typname: cast.into(),
            type_oid: 0,
            cast_type: cast.into(),
            regtype: cast.into(),
            full_type: cast.into(),
            is_pkey: name == "id",
            generated: false,
        }
    }

    fn table() -> TableInfo {
        TableInfo {
            oid: 42,
            schema: "public".into(),
            name: "todos".into(),
            rls_enabled: true,
            columns: vec![col("id", "bigint"), col("user_id", "uuid")],
        }
    }

    #[test]
    fn the_function_types_rows_as_the_table_and_switches_per_entry() {
        let p = program(&table(), &[plain("(user_id = auth.uid())")]);
        assert!(p.name.starts_with("realtime_gate_42_"));
        assert!(p.create_sql.contains(
            r#"row($4[rt_g.rt_i * 2 + 1]::text::bigint, $4[rt_g.rt_i * 2 + 2]::text::uuid)::"public"."todos""#
        ));
        assert!(p
            .create_sql
            .contains(r#"coalesce(((user_id = auth.uid())), false)"#));
        assert!(p.create_sql.contains(r#"from unnest(rt_sub) as "todos""#));
        assert!(p.call_sql.starts_with(&format!(
            "select rt_k, rt_seen, rt_code, rt_err from pg_temp.\"{}\"(",
            p.name
        )));
    }

    #[test]
    fn several_expressions_are_chosen_per_entry() {
        let p = program(&table(), &[plain("(a)"), plain("(b)")]);
        assert!(p
            .create_sql
            .contains("case $3[rt_j] when 0 then ((a)) when 1 then ((b)) end"));
    }

    #[test]
    fn the_dollar_quote_never_collides_with_a_policy() {
        let p = program(&table(), &[plain("('$rt_gate$' = '')")]);
        assert!(p.create_sql.contains("$rt_gate_1$"));
    }

    #[test]
    fn names_follow_the_program() {
        let a = program(&table(), &[plain("(a)")]);
        let b = program(&table(), &[plain("(b)")]);
        assert_ne!(a.name, b.name);
        assert_eq!(a, program(&table(), &[plain("(a)")]));
    }

    fn plain(expr: &str) -> GateExpr {
        GateExpr {
            expr: expr.to_string(),
            hoist: Vec::new(),
        }
    }

    #[test]
    fn calls_are_hoisted_only_where_they_are_calls() {
        let calls = [("auth.uid()", "rt_hoist_1"), ("now()", "rt_hoist_2")];
        assert_eq!(
            hoist_calls("(user_id = auth.uid())", &calls),
            "(user_id = rt_hoist_1)"
        );
        assert_eq!(
            hoist_calls(
                "(note = 'auth.uid()') and (x.auth.uid() = myauth.uid())",
                &calls
            ),
            "(note = 'auth.uid()') and (x.auth.uid() = myauth.uid())"
        );
        assert_eq!(
            hoist_calls("('it''s auth.uid()' <> \"now()\") or (t < now())", &calls),
            "('it''s auth.uid()' <> \"now()\") or (t < rt_hoist_2)"
        );
        assert_eq!(hoist_calls("(é = auth.uid())", &calls), "(é = rt_hoist_1)");
    }

    #[test]
    fn hoisted_calls_are_evaluated_once_per_entry_with_a_fallback() {
        let e = GateExpr {
            expr: "(user_id = auth.uid())".to_string(),
            hoist: vec![Hoisted {
                call: "auth.uid()".to_string(),
                type_name: "uuid".to_string(),
            }],
        };
        let p = program(&table(), &[e]);
        assert!(p.create_sql.contains("  rt_hoist_1 uuid;\n"));
        assert!(p.create_sql.contains("rt_hoist_1 := auth.uid(); select coalesce(array_agg(coalesce(((user_id = rt_hoist_1)), false))"));
        // The subtransaction mode falls back to the expression as written.
        assert!(p
            .create_sql
            .contains("else select coalesce(array_agg(coalesce(((user_id = auth.uid())), false))"));
    }
}
