//! PostgreSQL's canonical `jsonb` text output, which upstream embeds verbatim in payloads:
//! object keys ordered by byte length then bytewise, `", "` and `": "` separators.

/// Escapes a string the way PostgreSQL's `escape_json` does, quotes included.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An object from `(key, value-as-jsonb-text)` pairs; a repeated key keeps its last value.
pub fn object<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut entries: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.as_ref());
        match entries.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => entries.push((k, v)),
        }
    }
    entries.sort_by(|a, b| {
        a.0.len()
            .cmp(&b.0.len())
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    let mut out = String::from("{");
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&string(k));
        out.push_str(": ");
        out.push_str(v);
    }
    out.push('}');
    out
}

/// An array of jsonb texts.
pub fn array<V: AsRef<str>>(items: &[V]) -> String {
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_spacing() {
        assert_eq!(
            object(&[("details", "\"x\""), ("id", "1"), ("b", "2"), ("id", "3")]),
            r#"{"b": 2, "id": 3, "details": "x"}"#
        );
        assert_eq!(object::<&str, &str>(&[]), "{}");
        assert_eq!(array(&["1", "null"]), "[1, null]");
        assert_eq!(string("a\"\u{1}é"), "\"a\\\"\\u0001é\"");
    }
}
