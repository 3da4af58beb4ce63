//! Ciphertexts checked against independent implementations: the `openssl` CLI for
//! AES-128-ECB and Python's `cryptography` package for AES-256-GCM (both computed at test
//! time, in both directions). A missing tool skips its half with a note.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use realtime_tenants::{Crypto, CryptoError};

const ECB_KEY: &[u8] = b"supabaserealtime";
const GCM_KEY: &[u8] = b"12345678901234567890123456789012";

fn run(cmd: &str, args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input).ok()?;
    let out = child.wait_with_output().ok()?;
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

fn plaintexts() -> Vec<String> {
    let mut v: Vec<String> = (0..40).map(|n| "x".repeat(n)).collect();
    v.extend(
        [
            "db",
            "5432",
            "supabase_admin",
            "pässwörd-with-ünicode ✓",
            "0123456789abcdef0123456789abcdef",
            "a secret with spaces and = + / characters",
        ]
        .map(String::from),
    );
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn ecb_matches_openssl_both_ways() {
    let key = hex(ECB_KEY);
    let ecb_args = ["enc", "-aes-128-ecb", "-K", key.as_str(), "-base64", "-A"];
    if run("openssl", &["version"], b"").is_none() {
        eprintln!("openssl not found; skipping");
        return;
    }
    let c = Crypto::new(Some(ECB_KEY.to_vec()), None, false).unwrap();
    for plain in plaintexts() {
        let theirs = run("openssl", &ecb_args, plain.as_bytes()).unwrap();
        let theirs = String::from_utf8(theirs).unwrap();
        let ours = c.encrypt(&plain).unwrap();
        assert_eq!(ours, theirs.trim(), "{plain:?}");
        let back = c.decrypt(theirs.trim()).unwrap();
        assert_eq!(back.value, plain);
        assert!(!back.plaintext_fallback);
        let mut dec_args = ecb_args.to_vec();
        dec_args.push("-d");
        let decrypted = run("openssl", &dec_args, format!("{ours}\n").as_bytes()).unwrap();
        assert_eq!(String::from_utf8(decrypted).unwrap(), plain);
    }
}

/// One value per line, base64-wrapped so any plaintext fits on a line.
const PY_GCM: &str = r#"
import base64, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = b"12345678901234567890123456789012"
mode = sys.argv[1]
for line in sys.stdin.read().splitlines():
    if mode == "enc":
        iv = os.urandom(12)
        ct_tag = AESGCM(key).encrypt(iv, base64.b64decode(line), b"")
        ct, tag = ct_tag[:-16], ct_tag[-16:]
        print("g1:" + base64.b64encode(iv + tag + ct).decode())
    else:
        blob = base64.b64decode(line[3:])
        iv, tag, ct = blob[:12], blob[12:28], blob[28:]
        print(base64.b64encode(AESGCM(key).decrypt(iv, ct + tag, b"")).decode())
"#;

fn python(mode: &str, lines: &[String]) -> Vec<String> {
    let input = lines.join("\n") + "\n";
    let out = run("python3", &["-c", PY_GCM, mode], input.as_bytes()).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn python_has_cryptography() -> bool {
    Command::new("python3")
        .args(["-c", "import cryptography.hazmat.primitives.ciphers.aead"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn gcm_matches_python_cryptography_both_ways() {
    if !python_has_cryptography() {
        eprintln!("python3 with cryptography not found; skipping");
        return;
    }
    let c = Crypto::new(None, Some(GCM_KEY.to_vec()), true).unwrap();
    let plains = plaintexts();
    let wrapped: Vec<String> = plains.iter().map(|p| STANDARD.encode(p)).collect();
    let theirs = python("enc", &wrapped);
    assert_eq!(theirs.len(), plains.len());
    for (plain, stored) in plains.iter().zip(&theirs) {
        assert_eq!(&c.decrypt(stored).unwrap().value, plain);
        // One flipped byte anywhere in the decoded blob is a typed error.
        let mut blob = STANDARD.decode(&stored[3..]).unwrap();
        for i in [0, 12, blob.len() - 1] {
            blob[i] ^= 0x80;
            let tampered = format!("g1:{}", STANDARD.encode(&blob));
            assert_eq!(c.decrypt(&tampered), Err(CryptoError::GcmDecrypt));
            blob[i] ^= 0x80;
        }
    }
    let ours: Vec<String> = plains.iter().map(|p| c.encrypt(p).unwrap()).collect();
    let back = python("dec", &ours);
    let back: Vec<String> = back
        .iter()
        .map(|b| String::from_utf8(STANDARD.decode(b).unwrap()).unwrap())
        .collect();
    assert_eq!(back, plains);
}
