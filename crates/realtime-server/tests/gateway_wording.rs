//! Keeps upstream's vocabulary in `realtime-protocol` (issue 8): fails when a gateway source
//! file spells one of upstream's event names, a `Code: reason` string or a known piece of
//! upstream's wording as a string literal, instead of taking it from `realtime_protocol`.

use std::path::{Path, PathBuf};

use realtime_protocol::events;

/// Literals the gateway keeps, with the reason. Each entry must still match something, so the
/// list cannot rot.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "join.rs",
        "broadcast",
        "join payload key `config.broadcast` (§5.2), not the event",
    ),
    (
        "join.rs",
        "presence",
        "join payload key `config.presence` (§5.2), not the event",
    ),
    (
        "join.rs",
        "postgres_changes",
        "join payload key `config.postgres_changes` (§5.2), not the event",
    ),
    (
        "join.rs",
        "access_token",
        "join payload key carrying the channel token (§5.2), not the event",
    ),
    (
        "access_token.rs",
        "access_token",
        "the `access_token` event's payload key (§4.5), not the event",
    ),
];

/// Event and topic names the gateway must take from [`realtime_protocol::events`].
fn event_names() -> Vec<&'static str> {
    vec![
        events::PHX_JOIN,
        events::PHX_LEAVE,
        events::PHX_REPLY,
        events::PHX_CLOSE,
        events::PHX_ERROR,
        events::HEARTBEAT,
        events::BROADCAST,
        events::PRESENCE,
        events::PRESENCE_TRACK,
        events::PRESENCE_UNTRACK,
        events::PRESENCE_STATE,
        events::PRESENCE_DIFF,
        events::ACCESS_TOKEN,
        events::SYSTEM,
        events::POSTGRES_CHANGES,
        events::PHOENIX_TOPIC,
    ]
}

/// Pieces of upstream's reply, notice and REST wording that have no `Code: ` prefix.
const PHRASES: &[&str] = &[
    "Too many",
    "You do not have",
    "You no longer have",
    "Token has expired",
    "JWT",
    "Realtime was",
    "Subscribed to PostgreSQL",
    "Replication connection",
    "Server requested disconnect",
    "unmatched topic",
    "payload_size_exceeded",
    "channel_crash",
    "Tenant not found",
    "Tenant is suspended",
    "can't be blank",
    "rate limit",
    "Unknown Error",
    "must be a map",
    "size exceeded",
];

/// One string literal found in a source file.
#[derive(Debug, PartialEq)]
struct Literal {
    line: usize,
    text: String,
}

/// The string literals of Rust source `src` (raw, byte and plain; comments and char literals
/// skipped). Escapes are kept as written; the checks only look at plain words.
fn literals(src: &str) -> Vec<Literal> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                line += usize::from(b[i] == b'\n');
                i += 1;
            }
            i += 2;
        } else if c == b'r' && (i == 0 || !ident(b[i - 1])) && {
            let mut j = i + 1;
            while j < b.len() && b[j] == b'#' {
                j += 1;
            }
            j < b.len() && b[j] == b'"'
        } {
            let mut j = i + 1;
            while b[j] == b'#' {
                j += 1;
            }
            let hashes = j - i - 1;
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let start = j + 1;
            let mut k = start;
            while k < b.len() && !b[k..].starts_with(&close) {
                k += 1;
            }
            let text = String::from_utf8_lossy(&b[start..k.min(b.len())]).into_owned();
            out.push(Literal { line, text });
            line += b[i..k.min(b.len())].iter().filter(|c| **c == b'\n').count();
            i = k + close.len();
        } else if c == b'"' {
            let start = i + 1;
            let mut k = start;
            while k < b.len() && b[k] != b'"' {
                k += if b[k] == b'\\' { 2 } else { 1 };
            }
            let text = String::from_utf8_lossy(&b[start..k.min(b.len())]).into_owned();
            out.push(Literal { line, text });
            line += b[i..k.min(b.len())].iter().filter(|c| **c == b'\n').count();
            i = k + 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '"'), or a lifetime ('a) left alone.
            if b.get(i + 1) == Some(&b'\\') {
                let mut k = i + 2;
                while k < b.len() && b[k] != b'\'' {
                    k += 1;
                }
                i = k + 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `text` holds a `Word: ` reason code (a capitalised word right before `": "`).
fn has_reason_code(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(1)).any(|i| {
        if !(b[i] == b':' && b[i + 1] == b' ') {
            return false;
        }
        let mut s = i;
        while s > 0 && b[s - 1].is_ascii_alphanumeric() {
            s -= 1;
        }
        i - s >= 2 && b[s].is_ascii_uppercase()
    })
}

/// What is wrong with one literal, if anything.
fn offence(text: &str) -> Option<String> {
    if event_names().contains(&text) {
        return Some("an upstream event or topic name".into());
    }
    if has_reason_code(text) {
        return Some("an upstream `Code: reason` string".into());
    }
    PHRASES
        .iter()
        .find(|p| text.contains(*p))
        .map(|p| format!("upstream wording ({p:?})"))
}

/// The gateway's source files, each cut before its unit tests (which may spell whole frames);
/// files that are unit tests whole are left out.
fn gateway_sources() -> Vec<(String, String)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gateway");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        // Unit-test modules of their own (`session_tests.rs`) spell whole frames.
        .filter(|p| !p.to_string_lossy().ends_with("_tests.rs"))
        .map(|p| {
            let src = std::fs::read_to_string(&p).unwrap();
            let code = match src.find("#[cfg(test)]") {
                Some(at) => src[..at].to_string(),
                None => src,
            };
            (p.file_name().unwrap().to_string_lossy().into_owned(), code)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn gateway_spells_no_upstream_wording() {
    let files = gateway_sources();
    assert!(files.len() > 20, "gateway sources not found: {files:?}");
    let mut offences = Vec::new();
    let mut used = vec![false; ALLOWED.len()];
    for (file, code) in &files {
        for lit in literals(code) {
            let Some(why) = offence(&lit.text) else {
                continue;
            };
            match ALLOWED
                .iter()
                .position(|(f, t, _)| f == file && *t == lit.text)
            {
                Some(n) => used[n] = true,
                None => offences.push(format!("{file}:{}: {:?} is {why}", lit.line, lit.text)),
            }
        }
    }
    assert!(
        offences.is_empty(),
        "take these from realtime_protocol (events, reply, wording):\n{}",
        offences.join("\n")
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(a, _)| a)
        .collect();
    assert!(
        stale.is_empty(),
        "allow-list entries no longer needed: {stale:?}"
    );
}

#[test]
fn the_scan_sees_what_it_must() {
    let src = r####"
// "phx_reply" in a comment is fine
/* "system" too */
let a = "phx_reply";
let b = 'x'; let q = '"'; fn f<'a>(x: &'a str) {}
let c = r#"{"reason":"TopicNameRequired: You must provide a topic name"}"#;
let d = format!("Unauthorized: {sub}");
let e = "tenant lookup failed: {0}";
let g = "Too many joins per second";
"####;
    let found: Vec<(usize, String)> = literals(src)
        .into_iter()
        .filter(|l| offence(&l.text).is_some())
        .map(|l| (l.line, l.text))
        .collect();
    assert_eq!(
        found,
        vec![
            (4, "phx_reply".to_string()),
            (
                6,
                r#"{"reason":"TopicNameRequired: You must provide a topic name"}"#.to_string()
            ),
            (7, "Unauthorized: {sub}".to_string()),
            (9, "Too many joins per second".to_string()),
        ]
    );
}
