//! pgoutput text values → the jsonb text `realtime.cast` produces (`to_jsonb('<text>'::type)`).
//!
//! Common scalar types are converted here; every other type (json, arrays, composites,
//! domains, enums, ranges, …) is cast by the database itself with [`sql_cast_expr`], which is
//! exact by construction. One deliberate fix: `character(n)` and `bit(n)` keep their full value
//! (upstream casts to `character` = `char(1)` and truncates).

/// Well-known type OIDs.
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `name`
    pub const NAME: u32 = 19;
    /// `int8`
    pub const INT8: u32 = 20;
    /// `int2`
    pub const INT2: u32 = 21;
    /// `int4`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `oid`
    pub const OID: u32 = 26;
    /// `float4`
    pub const FLOAT4: u32 = 700;
    /// `float8`
    pub const FLOAT8: u32 = 701;
    /// `bpchar`
    pub const BPCHAR: u32 = 1042;
    /// `_bpchar`
    pub const BPCHAR_ARRAY: u32 = 1014;
    /// `varchar`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `timestamp`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `bit`
    pub const BIT: u32 = 1560;
    /// `_bit`
    pub const BIT_ARRAY: u32 = 1561;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
}

/// The SQL type name to cast a column's text to, from `format_type(atttypid, NULL)`.
/// `character`/`bit` without a length mean length 1 in SQL, so the unbounded spellings are
/// used instead; values then keep their padding and every character.
pub fn cast_type_name(type_oid: u32, format_type_without_typmod: &str) -> String {
    match type_oid {
        oid::BPCHAR => "bpchar".to_string(),
        oid::BPCHAR_ARRAY => "bpchar[]".to_string(),
        oid::BIT => "varbit".to_string(),
        oid::BIT_ARRAY => "varbit[]".to_string(),
        _ => format_type_without_typmod.to_string(),
    }
}

/// `to_jsonb($n::text::<type>)::text`; `type_name` comes from the catalog (`format_type`), which
/// quotes identifiers as needed, and the value is a bind parameter.
pub fn sql_cast_expr(param: usize, type_name: &str) -> String {
    format!("to_jsonb(${param}::text::{type_name})::text")
}

/// Converts a text value for the types handled natively; `None` means "cast in SQL".
/// `text` is the type output function's text as pgoutput sends it.
pub fn native_jsonb(type_oid: u32, text: &str) -> Option<String> {
    match type_oid {
        oid::BOOL => match text {
            "t" => Some("true".into()),
            "f" => Some("false".into()),
            _ => None,
        },
        oid::INT2 | oid::INT4 | oid::INT8 => is_integer(text).then(|| text.to_string()),
        // `to_jsonb` renders oid as a string.
        oid::OID => is_integer(text).then(|| crate::jsonb::string(text)),
        oid::NUMERIC | oid::FLOAT4 | oid::FLOAT8 => number(text),
        oid::TEXT | oid::VARCHAR | oid::NAME | oid::BPCHAR | oid::UUID => {
            Some(crate::jsonb::string(text))
        }
        // Upstream keeps wal2json's hex digits without the `\x` prefix.
        oid::BYTEA => text.strip_prefix("\\x").map(crate::jsonb::string),
        oid::DATE => is_iso_date(text).then(|| crate::jsonb::string(text)),
        oid::TIMESTAMP => timestamp(text),
        oid::TIMESTAMPTZ => timestamptz(text),
        _ => None,
    }
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Numbers become jsonb numerics: NaN and infinities are `null` (wal2json emits `null` for
/// them), exponents are expanded as `numeric_in` does (`1e+20` → `100000000000000000000`).
pub fn number(text: &str) -> Option<String> {
    match text {
        "NaN" | "Infinity" | "-Infinity" | "inf" | "-inf" => return Some("null".into()),
        _ => {}
    }
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if exp == 0 {
        if int_part.is_empty() {
            return None;
        }
        // `-0` (float) becomes numeric zero.
        if neg && mantissa.bytes().all(|b| b == b'0' || b == b'.') {
            return Some(mantissa.trim_start_matches('-').to_string());
        }
        return Some(text.to_string());
    }
    if exp.abs() > 1000 {
        return None;
    }
    let digits: String = format!("{int_part}{frac_part}");
    // Position of the decimal point within `digits` after applying the exponent.
    let point = int_part.len() as i64 + exp;
    let scale = (frac_part.len() as i64 - exp).max(0) as usize;
    let mut int_digits: String;
    let mut frac_digits: String;
    if point <= 0 {
        int_digits = "0".into();
        frac_digits = format!("{}{}", "0".repeat((-point) as usize), digits);
    } else if point as usize >= digits.len() {
        int_digits = format!("{}{}", digits, "0".repeat(point as usize - digits.len()));
        frac_digits = String::new();
    } else {
        int_digits = digits[..point as usize].to_string();
        frac_digits = digits[point as usize..].to_string();
    }
    let trimmed = int_digits.trim_start_matches('0');
    int_digits = if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    };
    frac_digits.truncate(scale);
    while frac_digits.len() < scale {
        frac_digits.push('0');
    }
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&int_digits);
    if !frac_digits.is_empty() {
        out.push('.');
        out.push_str(&frac_digits);
    }
    Some(out)
}

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `YYYY-MM-DD HH:MM:SS[.f]` → `"YYYY-MM-DDTHH:MM:SS[.f]"`.
fn timestamp(text: &str) -> Option<String> {
    let (date, time) = text.split_once(' ')?;
    if !is_iso_date(date) || !is_clock(time) {
        return None;
    }
    Some(crate::jsonb::string(&format!("{date}T{time}")))
}

fn is_clock(s: &str) -> bool {
    let (hms, frac) = s.split_once('.').unwrap_or((s, "0"));
    let b = hms.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit())
        && !frac.is_empty()
        && frac.bytes().all(|c| c.is_ascii_digit())
}

/// `YYYY-MM-DD HH:MM:SS[.f]±HH[:MM[:SS]]` in any zone → the UTC rendering that `to_jsonb`
/// gives in a UTC session: `"YYYY-MM-DDTHH:MM:SS[.f]+00:00"`.
fn timestamptz(text: &str) -> Option<String> {
    let (date, rest) = text.split_once(' ')?;
    let sign_at = rest.rfind(['+', '-'])?;
    let (time, offset) = rest.split_at(sign_at);
    if !is_iso_date(date) || !is_clock(time) {
        return None;
    }
    let sign: i64 = if offset.starts_with('-') { -1 } else { 1 };
    let mut parts = offset[1..].split(':');
    let mut secs = 0i64;
    for unit in [3600i64, 60, 1] {
        if let Some(p) = parts.next() {
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            secs += p.parse::<i64>().ok()? * unit;
        }
    }
    if parts.next().is_some() {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (time, None),
    };
    let local =
        chrono::NaiveDateTime::parse_from_str(&format!("{date} {hms}"), "%Y-%m-%d %H:%M:%S")
            .ok()?;
    let utc = local.checked_sub_signed(chrono::Duration::seconds(sign * secs))?;
    let mut out = utc.format("%Y-%m-%dT%H:%M:%S").to_string();
    if utc.format("%Y").to_string().len() != 4 {
        return None;
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out.push_str("+00:00");
    Some(crate::jsonb::string(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(native_jsonb(oid::BOOL, "t").as_deref(), Some("true"));
        assert_eq!(native_jsonb(oid::INT4, "-12").as_deref(), Some("-12"));
        assert_eq!(native_jsonb(oid::NUMERIC, "3.10").as_deref(), Some("3.10"));
        assert_eq!(native_jsonb(oid::NUMERIC, "NaN").as_deref(), Some("null"));
        assert_eq!(
            native_jsonb(oid::FLOAT8, "Infinity").as_deref(),
            Some("null")
        );
        assert_eq!(native_jsonb(oid::FLOAT8, "1.5").as_deref(), Some("1.5"));
        assert_eq!(
            native_jsonb(oid::FLOAT8, "1e+20").as_deref(),
            Some("100000000000000000000")
        );
        assert_eq!(
            native_jsonb(oid::FLOAT8, "1.5e-07").as_deref(),
            Some("0.00000015")
        );
        assert_eq!(
            native_jsonb(oid::FLOAT8, "-1.25e+1").as_deref(),
            Some("-12.5")
        );
        assert_eq!(
            native_jsonb(oid::TEXT, "x\"y").as_deref(),
            Some(r#""x\"y""#)
        );
        assert_eq!(
            native_jsonb(oid::BPCHAR, "ab ").as_deref(),
            Some(r#""ab ""#)
        );
        assert_eq!(
            native_jsonb(oid::BYTEA, "\\x00ff").as_deref(),
            Some(r#""00ff""#)
        );
        assert_eq!(
            native_jsonb(oid::DATE, "2024-01-02").as_deref(),
            Some(r#""2024-01-02""#)
        );
        assert_eq!(native_jsonb(oid::DATE, "infinity"), None);
        assert_eq!(native_jsonb(114, "{}"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            native_jsonb(oid::TIMESTAMP, "2024-01-02 03:04:05.123456").as_deref(),
            Some(r#""2024-01-02T03:04:05.123456""#)
        );
        assert_eq!(
            native_jsonb(oid::TIMESTAMPTZ, "2024-01-02 03:04:05.5+02").as_deref(),
            Some(r#""2024-01-02T01:04:05.5+00:00""#)
        );
        assert_eq!(
            native_jsonb(oid::TIMESTAMPTZ, "2024-01-01 23:30:00-05:30").as_deref(),
            Some(r#""2024-01-02T05:00:00+00:00""#)
        );
        assert_eq!(
            native_jsonb(oid::TIMESTAMPTZ, "2024-01-02 03:04:05 BC+00"),
            None
        );
        assert_eq!(native_jsonb(oid::TIMESTAMP, "infinity"), None);
    }

    #[test]
    fn cast_names() {
        assert_eq!(cast_type_name(oid::BPCHAR, "character"), "bpchar");
        assert_eq!(cast_type_name(oid::INT4, "integer"), "integer");
        assert_eq!(
            sql_cast_expr(2, "integer[]"),
            "to_jsonb($2::text::integer[])::text"
        );
    }
}
