//! Per-tenant secret checks: `jwt_secret` and the encrypted extension settings read with the
//! configured keys; a plaintext value comes with the statement that stores its ciphertext.

use realtime_tenants::registry::diagnosis::{
    encrypt_statement, tenant_secrets, SecretState, StoredSecret,
};
use realtime_tenants::{Crypto, CryptoError, Tenant};

use super::report::{Check, Report, Status};

/// Checks a tenant's stored secrets.
pub fn check(schema: &str, tenant: &Tenant, crypto: &Crypto, report: &mut Report) {
    let id = &tenant.external_id;
    let found = tenant_secrets(tenant, crypto);
    let mut all_ok = true;
    for secret in &found {
        if let Some(check) = secret_problem(schema, id, secret) {
            all_ok = false;
            report.push(check);
        }
    }
    if all_ok {
        report.push(Check::ok(
            format!("tenant.{id}.secrets"),
            format!(
                "{} stored secret(s) decrypt with the configured keys",
                found.len()
            ),
        ));
    }
}

fn secret_problem(schema: &str, id: &str, secret: &StoredSecret) -> Option<Check> {
    let field = secret.field.name();
    let check_id = format!("tenant.{id}.{field}");
    let statement = |ciphertext: &Option<String>| match ciphertext {
        Some(ct) => format!(
            "store it encrypted: {}",
            encrypt_statement(schema, id, &secret.field, ct)
        ),
        None => "set DB_ENC_KEY and run `realtime doctor` again for the statement that encrypts it"
            .to_string(),
    };
    match &secret.state {
        SecretState::Encrypted => None,
        SecretState::Plaintext { ciphertext } => Some(Check::fail(
            check_id,
            format!(
                "{field} of tenant {id} is stored in plaintext: this server reads it as is, but the Elixir server answers every request of the tenant with 500, and the secret is readable by anyone with the registry"
            ),
            capitalize(&statement(ciphertext)),
        )),
        SecretState::OtherKeyOrPlaintext { ciphertext } => Some(Check::fail(
            check_id,
            format!(
                "{field} of tenant {id} does not decrypt with DB_ENC_KEY: it was written with another key (then every token is refused), or it is a plaintext shaped like a ciphertext"
            ),
            format!(
                "If the registry was written with another key, set DB_ENC_KEY to that key; if the value is the plaintext secret, {}",
                statement(ciphertext)
            ),
        )),
        SecretState::Undecryptable(e) => {
            let message = format!("{field} of tenant {id} cannot be decrypted: {e}");
            let fix = match e {
                CryptoError::GcmKeyMissing => "Set DB_ENC_KEY_GCM to the 32-character key the registry was written with".to_string(),
                CryptoError::GcmDecrypt | CryptoError::GcmUtf8 => format!(
                    "Set DB_ENC_KEY_GCM to the key the value was written with, or store the secret again (PUT /api/tenants/{id})"
                ),
                // The key errors carry their own fix.
                other => return Some(Check::from_error_text(check_id, Status::Fail, &format!("{field} of tenant {id} cannot be decrypted: {other}"))),
            };
            Some(Check::fail(check_id, message, fix))
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime_tenants::registry::diagnosis::{classify_secret, SecretField};

    fn problem(crypto: &Crypto, stored: &str) -> Option<Check> {
        let secret = StoredSecret {
            field: SecretField::JwtSecret,
            state: classify_secret(crypto, stored),
        };
        secret_problem("_realtime", "acme", &secret)
    }

    #[test]
    fn each_secret_problem_has_its_fix() {
        let ecb = Crypto::new(Some(b"supabaserealtime".to_vec()), None, false).unwrap();
        assert_eq!(problem(&ecb, &ecb.encrypt("s").unwrap()), None);

        let plain = problem(&ecb, "plain secret!").unwrap();
        assert_eq!(plain.status, Status::Fail);
        assert!(!plain.message.contains("plain secret!"), "{plain:?}");
        let fix = plain.fix.unwrap();
        assert!(
            fix.starts_with("Store it encrypted: UPDATE _realtime.tenants SET jwt_secret = '"),
            "{fix}"
        );
        assert!(!fix.contains("plain secret!"), "{fix}");

        let gcm_missing = problem(&ecb, "g1:AAAA").unwrap();
        assert_eq!(
            gcm_missing.fix.as_deref(),
            Some("Set DB_ENC_KEY_GCM to the 32-character key the registry was written with")
        );

        let other = Crypto::new(Some(b"0123456789abcdef".to_vec()), None, false).unwrap();
        let foreign = problem(&ecb, &other.encrypt("s").unwrap()).unwrap();
        assert!(
            foreign.message.contains("does not decrypt with DB_ENC_KEY"),
            "{foreign:?}"
        );
        assert!(foreign
            .fix
            .unwrap()
            .starts_with("If the registry was written with another key, set DB_ENC_KEY"));
    }
}
