//! One `postgres_changes` join entry → a change subscription (event, schema, table, filters,
//! selected columns), with upstream's parsing rules and error texts.

use serde_json::Value;

use crate::inspect;

/// Which change types an entry asks for (`action_filter` upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionFilter {
    /// `*`: every change type.
    All,
    /// `INSERT` only.
    Insert,
    /// `UPDATE` only.
    Update,
    /// `DELETE` only.
    Delete,
}

impl ActionFilter {
    /// The text stored in `realtime.subscription.action_filter`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionFilter::All => "*",
            ActionFilter::Insert => "INSERT",
            ActionFilter::Update => "UPDATE",
            ActionFilter::Delete => "DELETE",
        }
    }

    /// Whether a change of this action is wanted.
    pub fn accepts(self, action: crate::Action) -> bool {
        matches!(
            (self, action),
            (ActionFilter::All, _)
                | (ActionFilter::Insert, crate::Action::Insert)
                | (ActionFilter::Update, crate::Action::Update)
                | (ActionFilter::Delete, crate::Action::Delete)
        )
    }
}

/// The operators upstream accepts (`realtime.equality_op`), in the enum's sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilterOp {
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `= any(array)`
    In,
    /// `LIKE`
    Like,
    /// `ILIKE`
    Ilike,
    /// `IS NULL/TRUE/FALSE/UNKNOWN`
    Is,
    /// `~`
    Match,
    /// `~*`
    Imatch,
    /// `IS DISTINCT FROM`
    IsDistinct,
}

impl FilterOp {
    /// Parses the operator name used in filters.
    pub fn parse(s: &str) -> Option<FilterOp> {
        Some(match s {
            "eq" => FilterOp::Eq,
            "neq" => FilterOp::Neq,
            "lt" => FilterOp::Lt,
            "lte" => FilterOp::Lte,
            "gt" => FilterOp::Gt,
            "gte" => FilterOp::Gte,
            "in" => FilterOp::In,
            "like" => FilterOp::Like,
            "ilike" => FilterOp::Ilike,
            "is" => FilterOp::Is,
            "match" => FilterOp::Match,
            "imatch" => FilterOp::Imatch,
            "isdistinct" => FilterOp::IsDistinct,
            _ => return None,
        })
    }

    /// The operator name as written in filters and stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::Neq => "neq",
            FilterOp::Lt => "lt",
            FilterOp::Lte => "lte",
            FilterOp::Gt => "gt",
            FilterOp::Gte => "gte",
            FilterOp::In => "in",
            FilterOp::Like => "like",
            FilterOp::Ilike => "ilike",
            FilterOp::Is => "is",
            FilterOp::Match => "match",
            FilterOp::Imatch => "imatch",
            FilterOp::IsDistinct => "isdistinct",
        }
    }
}

/// One `column=[not.]op.value` condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Column name.
    pub column: String,
    /// Operator.
    pub op: FilterOp,
    /// Value after unquoting; for `in` a PostgreSQL array literal (`{a,b}`).
    pub value: String,
    /// The `not.` prefix.
    pub negate: bool,
}

/// A parsed join entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChangeParams {
    /// Change types wanted.
    pub action: ActionFilter,
    /// Schema name or `*`; matched with SQL `LIKE` as upstream does.
    pub schema: String,
    /// Table name or `*`; matched with SQL `LIKE` as upstream does.
    pub table: String,
    /// Conditions, all ANDed.
    pub filters: Vec<Filter>,
    /// Selected columns (the primary key is always included), `None` for all.
    pub select: Option<Vec<String>>,
}

impl ChangeParams {
    /// Upstream's `[event: …, schema: …, table: …, filters: …, select: …]` body, used in the
    /// subscription error messages.
    pub fn to_log(&self) -> String {
        let filters: Vec<String> = self
            .filters
            .iter()
            .map(|f| {
                format!(
                    "{{{}, {}, {}, {}}}",
                    inspect::string(&f.column),
                    inspect::string(f.op.as_str()),
                    inspect::string(&f.value),
                    f.negate
                )
            })
            .collect();
        let select = match &self.select {
            None => "nil".to_string(),
            Some(cols) => inspect::pretty_flex_list(
                &cols.iter().map(|c| inspect::string(c)).collect::<Vec<_>>(),
            ),
        };
        format!(
            "event: {}, schema: {}, table: {}, filters: {}, select: {}",
            self.action.as_str(),
            self.schema,
            self.table,
            inspect::pretty_list(&filters),
            select
        )
    }
}

const NO_PARAMS: &str =
    "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: ";

/// Parses one entry of `config.postgres_changes`; the error is the text upstream pushes.
pub fn parse(params: &Value) -> Result<ChangeParams, String> {
    let action = action_filter(params);
    let select = parse_select(params)?;
    let obj = params.as_object();
    let get_str = |k: &str| obj.and_then(|o| o.get(k)).and_then(Value::as_str);
    let has = |k: &str| obj.is_some_and(|o| o.contains_key(k));

    let (schema, table, filters) = match (get_str("schema"), get_str("table"), get_str("filter")) {
        (Some(schema), Some(table), Some(filter)) => {
            let filters = parse_filters(filter)
                .map_err(|reason| format!("Error parsing `filter` params: {reason}"))?;
            (schema, table, filters)
        }
        (Some(schema), Some(table), _) if !has("filter") => (schema, table, Vec::new()),
        (Some(schema), _, _) if !has("table") && !has("filter") => (schema, "*", Vec::new()),
        (_, Some(table), _) if !has("schema") && !has("filter") => ("public", table, Vec::new()),
        _ if has("user_token") || has("auth_token") => {
            return Err(format!("{NO_PARAMS}<redacted>"));
        }
        _ => return Err(format!("{NO_PARAMS}{}", inspect::json(params))),
    };
    if select.is_some() && (schema == "*" || table == "*") {
        return Err("Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name.".to_string());
    }
    check_name_lengths(schema, table, &filters, select.as_deref())?;
    Ok(ChangeParams {
        action,
        schema: schema.to_string(),
        table: table.to_string(),
        filters,
        select,
    })
}

/// PostgreSQL's longest name in bytes (`NAMEDATALEN - 1`); it truncates longer identifiers,
/// so a longer name can never be a published table or one of its columns.
pub const MAX_NAME_BYTES: usize = 63;

/// At most this many `postgres_changes` entries per channel. Upstream has no limit, but
/// each entry costs a subscribe-time round trip per table and a place in the router; real
/// clients use a handful, and 100 matches the cap on `in` filter values.
pub const MAX_BINDINGS_PER_CHANNEL: usize = 100;

/// Upstream reports over-long names only indirectly (no table matched, or an invalid
/// column), after queries; rejecting them up front keeps them out of the router and the
/// tenant database.
fn check_name_lengths(
    schema: &str,
    table: &str,
    filters: &[Filter],
    select: Option<&[String]>,
) -> Result<(), String> {
    let too_long = |what: &str, name: &str| {
        // The name itself is not echoed: it may be arbitrarily long.
        format!(
            "Error parsing `{what}` params: a name of {} bytes is longer than PostgreSQL's limit of {MAX_NAME_BYTES}",
            name.len()
        )
    };
    if schema.len() > MAX_NAME_BYTES {
        return Err(too_long("schema", schema));
    }
    if table.len() > MAX_NAME_BYTES {
        return Err(too_long("table", table));
    }
    if let Some(f) = filters.iter().find(|f| f.column.len() > MAX_NAME_BYTES) {
        return Err(too_long("filter", &f.column));
    }
    if let Some(c) = select
        .unwrap_or_default()
        .iter()
        .find(|c| c.len() > MAX_NAME_BYTES)
    {
        return Err(too_long("select", c));
    }
    Ok(())
}

/// Rejects a join with more than [`MAX_BINDINGS_PER_CHANNEL`] entries.
pub fn check_binding_count(count: usize) -> Result<(), String> {
    if count > MAX_BINDINGS_PER_CHANNEL {
        return Err(format!(
            "Error parsing `postgres_changes` params: {count} entries given, at most {MAX_BINDINGS_PER_CHANNEL} are allowed per channel"
        ));
    }
    Ok(())
}

fn action_filter(params: &Value) -> ActionFilter {
    match params.get("event").and_then(Value::as_str) {
        Some(e) => match e.to_uppercase().as_str() {
            "INSERT" => ActionFilter::Insert,
            "UPDATE" => ActionFilter::Update,
            "DELETE" => ActionFilter::Delete,
            _ => ActionFilter::All,
        },
        None => ActionFilter::All,
    }
}

fn parse_select(params: &Value) -> Result<Option<Vec<String>>, String> {
    match params.get("select") {
        Some(Value::Array(cols)) => {
            let valid: Vec<String> = cols
                .iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect();
            Ok(if valid.is_empty() { None } else { Some(valid) })
        }
        Some(Value::String(_)) => Err(
            "Error parsing `select` params: expected a list of column name strings, e.g. select: [\"col1\", \"col2\"]"
                .to_string(),
        ),
        _ => Ok(None),
    }
}

/// Parses a PostgREST-style filter string (all conditions ANDed).
pub fn parse_filters(filter: &str) -> Result<Vec<Filter>, String> {
    let trimmed = filter.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    split_top_level(trimmed)
        .iter()
        .map(|s| parse_segment(s))
        .collect()
}

/// Splits on commas outside parentheses and outside quoted spans. A quote opens a span only
/// after `.`, `(` or a comma nested in parentheses; `\` escapes inside a span.
fn split_top_level(filter: &str) -> Vec<String> {
    let bytes = filter.as_bytes();
    let mut segments = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let (mut depth, mut quoted, mut prev) = (0usize, false, 0u8);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if quoted {
            if c == b'\\' && i + 1 < bytes.len() {
                current.push(c);
                current.push(bytes[i + 1]);
                prev = bytes[i + 1];
                i += 2;
                continue;
            }
            if c == b'"' {
                quoted = false;
            }
            current.push(c);
            prev = c;
        } else {
            match c {
                b'"' if matches!(prev, b'.' | b'(' | b',') => quoted = true,
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => {
                    segments.push(String::from_utf8_lossy(&current).into_owned());
                    current.clear();
                    prev = 0;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            current.push(c);
            prev = c;
        }
        i += 1;
    }
    segments.push(String::from_utf8_lossy(&current).into_owned());
    segments
}

fn inspect_parts(parts: &[&str]) -> String {
    let inner: Vec<String> = parts.iter().map(|p| inspect::string(p)).collect();
    format!("[{}]", inner.join(", "))
}

fn parse_segment(segment: &str) -> Result<Filter, String> {
    let trimmed = segment.trim();
    if trimmed.is_empty() {
        return Err("filter must not contain empty segments (check for extra commas)".to_string());
    }
    let Some((column, rest)) = trimmed.split_once('=') else {
        return Err(inspect_parts(&[trimmed]));
    };
    let (negate, op_value) = match rest.strip_prefix("not.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let Some((op, value)) = op_value.split_once('.') else {
        return Err(inspect_parts(&[op_value]));
    };
    let Some(op) = FilterOp::parse(op) else {
        return Err(inspect_parts(&[op, value]));
    };
    let value = if op == FilterOp::In {
        if value.len() >= 2 && value.starts_with('(') && value.ends_with(')') {
            format!("{{{}}}", &value[1..value.len() - 1])
        } else {
            return Err("`in` filter value must be wrapped by parentheses".to_string());
        }
    } else {
        unquote(value)
    };
    Ok(Filter {
        column: column.to_string(),
        op,
        value,
        negate,
    })
}

/// `"a,b"` → `a,b` with `\x` → `x`; anything not exactly one quoted span stays literal.
fn unquote(value: &str) -> String {
    let Some(rest) = value.strip_prefix('"') else {
        return value.to_string();
    };
    let bytes = rest.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' if i + 1 == bytes.len() => return String::from_utf8_lossy(&out).into_owned(),
            b'"' => return value.to_string(),
            b'\\' if i + 1 < bytes.len() => {
                out.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(column: &str, op: FilterOp, value: &str, negate: bool) -> Filter {
        Filter {
            column: column.into(),
            op,
            value: value.into(),
            negate,
        }
    }

    #[test]
    fn shapes() {
        let p = parse(&json!({"schema": "public"})).unwrap();
        assert_eq!((p.schema.as_str(), p.table.as_str()), ("public", "*"));
        let p = parse(&json!({"table": "messages"})).unwrap();
        assert_eq!(
            (p.schema.as_str(), p.table.as_str()),
            ("public", "messages")
        );
        let p = parse(&json!({"event": "insert", "schema": "s", "table": "t"})).unwrap();
        assert_eq!(p.action, ActionFilter::Insert);
        let p = parse(&json!({"event": "TRUNCATE", "schema": "s", "table": "t"})).unwrap();
        assert_eq!(p.action, ActionFilter::All);
        assert_eq!(
            parse(&json!({})).unwrap_err(),
            "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{}"
        );
        assert_eq!(
            parse(&json!({"schema": "s", "filter": "id=eq.1"})).unwrap_err(),
            "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: %{\"filter\" => \"id=eq.1\", \"schema\" => \"s\"}"
        );
        assert!(
            parse(&json!({"schema": "s", "user_token": "x", "filter": 1}))
                .unwrap_err()
                .ends_with("<redacted>")
        );
        assert!(parse(&json!({"schema": "s", "table": "t", "filter": null})).is_err());
    }

    #[test]
    fn select_rules() {
        let p = parse(&json!({"schema": "s", "table": "t", "select": ["a", 1, "b"]})).unwrap();
        assert_eq!(p.select, Some(vec!["a".to_string(), "b".to_string()]));
        let p = parse(&json!({"schema": "s", "table": "t", "select": [1]})).unwrap();
        assert_eq!(p.select, None);
        assert_eq!(
            parse(&json!({"schema": "s", "table": "t", "select": "a"})).unwrap_err(),
            "Error parsing `select` params: expected a list of column name strings, e.g. select: [\"col1\", \"col2\"]"
        );
        assert_eq!(
            parse(&json!({"schema": "public", "select": ["id"]})).unwrap_err(),
            "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and table name."
        );
    }

    #[test]
    fn filters() {
        assert_eq!(
            parse_filters("subject=eq.hey").unwrap(),
            vec![f("subject", FilterOp::Eq, "hey", false)]
        );
        assert_eq!(
            parse_filters("subject=in.(hidee,ho)").unwrap(),
            vec![f("subject", FilterOp::In, "{hidee,ho}", false)]
        );
        assert_eq!(
            parse_filters("subject=not.like.hey%").unwrap(),
            vec![f("subject", FilterOp::Like, "hey%", true)]
        );
        assert_eq!(
            parse_filters("id=gt.0, id=lt.100").unwrap(),
            vec![
                f("id", FilterOp::Gt, "0", false),
                f("id", FilterOp::Lt, "100", false)
            ]
        );
        assert_eq!(parse_filters("   ").unwrap(), vec![]);
        assert_eq!(
            parse_filters("a=eq.\"x,y\",b=in.(1,\"2,3\")").unwrap(),
            vec![
                f("a", FilterOp::Eq, "x,y", false),
                f("b", FilterOp::In, "{1,\"2,3\"}", false)
            ]
        );
        assert_eq!(
            parse_filters(r#"p=eq."C:\\tmp""#).unwrap(),
            vec![f("p", FilterOp::Eq, r"C:\tmp", false)]
        );
        assert_eq!(
            parse_filters(r#"n=eq.O'Brien "x""#).unwrap(),
            vec![f("n", FilterOp::Eq, r#"O'Brien "x""#, false)]
        );
        assert_eq!(
            parse_filters(r#"n=eq."ab"c"#).unwrap(),
            vec![f("n", FilterOp::Eq, r#""ab"c"#, false)]
        );
        assert_eq!(
            parse_filters(r#"n=eq."abc"#).unwrap(),
            vec![f("n", FilterOp::Eq, r#""abc"#, false)]
        );
    }

    #[test]
    fn filter_errors() {
        let err =
            |s: &str| parse(&json!({"schema": "public", "table": "t", "filter": s})).unwrap_err();
        assert_eq!(
            err("subject=foo.hey"),
            r#"Error parsing `filter` params: ["foo", "hey"]"#
        );
        assert_eq!(
            err("undefined"),
            r#"Error parsing `filter` params: ["undefined"]"#
        );
        assert_eq!(err("a=eqx"), r#"Error parsing `filter` params: ["eqx"]"#);
        assert_eq!(
            err("a=eq.1,,b=eq.2"),
            "Error parsing `filter` params: filter must not contain empty segments (check for extra commas)"
        );
        assert_eq!(
            err("a=in.1,2"),
            "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"
        );
    }

    #[test]
    fn names_longer_than_postgres_allows_are_rejected() {
        let name63 = "a".repeat(63);
        let name64 = "a".repeat(64);
        let ok = |v: serde_json::Value| parse(&v).map(|_| ());
        assert_eq!(ok(json!({"schema": name63, "table": name63})), Ok(()));
        assert_eq!(
            ok(json!({"schema": name64})).unwrap_err(),
            "Error parsing `schema` params: a name of 64 bytes is longer than PostgreSQL's limit of 63"
        );
        assert_eq!(
            ok(json!({"table": name64})).unwrap_err(),
            "Error parsing `table` params: a name of 64 bytes is longer than PostgreSQL's limit of 63"
        );
        assert_eq!(
            ok(json!({"schema": "public", "table": "t", "filter": format!("{name64}=eq.1")}))
                .unwrap_err(),
            "Error parsing `filter` params: a name of 64 bytes is longer than PostgreSQL's limit of 63"
        );
        assert_eq!(
            ok(json!({"schema": "public", "table": "t", "select": ["id", name64]})).unwrap_err(),
            "Error parsing `select` params: a name of 64 bytes is longer than PostgreSQL's limit of 63"
        );
        // Bytes, not characters: 32 two-byte characters are 64 bytes.
        assert!(ok(json!({"table": "é".repeat(32)})).is_err());
        assert!(ok(json!({"table": "é".repeat(31)})).is_ok());
        // Upstream's own errors come first.
        assert_eq!(
            ok(json!({"schema": name64, "table": "t", "filter": "x"})).unwrap_err(),
            r#"Error parsing `filter` params: ["x"]"#
        );
    }

    #[test]
    fn binding_count_is_capped() {
        assert_eq!(check_binding_count(0), Ok(()));
        assert_eq!(check_binding_count(MAX_BINDINGS_PER_CHANNEL), Ok(()));
        assert_eq!(
            check_binding_count(101).unwrap_err(),
            "Error parsing `postgres_changes` params: 101 entries given, at most 100 are allowed per channel"
        );
    }

    #[test]
    fn log_text() {
        let p =
            parse(&json!({"schema": "public", "table": "test", "filter": "id=eq.hey"})).unwrap();
        assert_eq!(
            p.to_log(),
            r#"event: *, schema: public, table: test, filters: [{"id", "eq", "hey", false}], select: nil"#
        );
    }
}
