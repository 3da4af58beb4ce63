//! Elixir `inspect/1` renderings of the terms upstream prints inside its error messages
//! (filter tuples, select lists, raw join parameters), so clients see the same text.

use serde_json::Value;

/// `inspect` of a string: double-quoted with Elixir's escapes.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            '\0' => out.push_str("\\0"),
            // `#{` would start interpolation when the text is pasted back into Elixir.
            '#' if chars.peek() == Some(&'{') => out.push_str("\\#"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `inspect` of a decoded JSON value (maps with string keys sorted as Erlang sorts them).
pub fn json(v: &Value) -> String {
    match v {
        Value::Null => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => float(f),
            _ => n.to_string(),
        },
        Value::String(s) => string(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(json).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            if map.is_empty() {
                return "%{}".to_string();
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{} => {}", string(k), json(v)))
                .collect();
            format!("%{{{}}}", inner.join(", "))
        }
    }
}

/// Elixir prints floats in their shortest round-tripping form, always with a fraction.
fn float(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains('e') {
        // Rust `1e20` vs Elixir `1.0e20`.
        match s.split_once('e') {
            Some((m, e)) if !m.contains('.') => format!("{m}.0e{e}"),
            _ => s,
        }
    } else {
        s
    }
}

/// `inspect(list, pretty: true)` of a list of already-inspected elements: one line when it
/// fits in 80 columns, otherwise one element per line as Elixir's formatter breaks it.
pub fn pretty_list(elements: &[String]) -> String {
    let flat = format!("[{}]", elements.join(", "));
    if flat.len() <= 80 {
        return flat;
    }
    let mut out = String::from("[\n");
    for (i, e) in elements.iter().enumerate() {
        out.push_str("  ");
        out.push_str(e);
        if i + 1 < elements.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push(']');
    out
}

/// `inspect(list, pretty: true)` of a list of simple elements (strings): Elixir's "flex"
/// layout, filling each line up to 80 columns and continuing with a one-space indent.
pub fn pretty_flex_list(elements: &[String]) -> String {
    let mut out = String::from("[");
    let mut col = 1usize;
    for (i, e) in elements.iter().enumerate() {
        let last = i + 1 == elements.len();
        let piece = if last {
            format!("{e}]")
        } else {
            format!("{e},")
        };
        if i == 0 {
            out.push_str(&piece);
            col += piece.len();
        } else if col + 1 + piece.len() <= 80 {
            out.push(' ');
            out.push_str(&piece);
            col += 1 + piece.len();
        } else {
            out.push_str("\n ");
            out.push_str(&piece);
            col = 1 + piece.len();
        }
    }
    if elements.is_empty() {
        out.push(']');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_and_maps() {
        assert_eq!(string("a\"b"), r#""a\"b""#);
        assert_eq!(string("#{x}"), r#""\#{x}""#);
        assert_eq!(json(&json!({})), "%{}");
        assert_eq!(
            json(&json!({"table": "t", "event": "*", "n": null, "l": [1, 2.5]})),
            r#"%{"event" => "*", "l" => [1, 2.5], "n" => nil, "table" => "t"}"#
        );
    }

    #[test]
    fn pretty_breaks_long_lists() {
        let short = vec!["{\"a\", \"eq\", \"1\", false}".to_string()];
        assert_eq!(pretty_list(&short), "[{\"a\", \"eq\", \"1\", false}]");
        let long: Vec<String> = (0..4)
            .map(|i| format!("{{\"column{i}\", \"eq\", \"value{i}\", false}}"))
            .collect();
        assert!(pretty_list(&long).starts_with("[\n  {\"column0\""));
        assert!(pretty_list(&long).ends_with("false}\n]"));
    }

    #[test]
    fn flex_fills_lines() {
        let short: Vec<String> = ["a", "b"].iter().map(|s| string(s)).collect();
        assert_eq!(pretty_flex_list(&short), r#"["a", "b"]"#);
        let many: Vec<String> = (0..12).map(|i| string(&format!("column_{i:02}"))).collect();
        let text = pretty_flex_list(&many);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() <= 80));
        assert!(lines[1].starts_with(" \"column_"));
    }
}
