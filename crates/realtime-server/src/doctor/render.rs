//! The doctor's two renderings: lines for a person, JSON for scripts.

use serde_json::json;

use super::report::{Report, Status};

/// One line per check (`ok`, `warn` or `FAIL`, the id, the message), an indented `fix:` line
/// under each problem, and a summary.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let label = match check.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{label} {}: {}\n", check.id, check.message));
        if check.status != Status::Ok {
            if let Some(fix) = &check.fix {
                out.push_str(&format!("     fix: {fix}\n"));
            }
        }
    }
    out.push_str(&format!(
        "\n{} checks: {} ok, {} warn, {} FAIL\n",
        report.checks.len(),
        report.count(Status::Ok),
        report.count(Status::Warn),
        report.count(Status::Fail)
    ));
    out
}

/// `{"status": "ok"|"warn"|"fail", "checks": [{"id", "status", "message", "fix"}, …]}`, `fix`
/// being `null` on ok checks.
pub fn json(report: &Report) -> String {
    let value = json!({
        "status": report.status(),
        "checks": report.checks,
    });
    match serde_json::to_string_pretty(&value) {
        Ok(s) => s + "\n",
        // Plain strings and enums always serialize.
        Err(e) => format!("{{\"status\":\"fail\",\"error\":\"{e}\"}}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Check;

    #[test]
    fn human_and_json() {
        let mut r = Report::default();
        r.push(Check::ok("config", "every variable parses"));
        r.push(Check::fail(
            "config.DB_ENC_KEY",
            "too short",
            "Set it to 16 bytes",
        ));
        let text = human(&r);
        assert!(
            text.contains("ok   config: every variable parses\n"),
            "{text}"
        );
        assert!(
            text.contains("FAIL config.DB_ENC_KEY: too short\n     fix: Set it to 16 bytes\n"),
            "{text}"
        );
        assert!(text.contains("2 checks: 1 ok, 0 warn, 1 FAIL"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["status"], "fail");
        assert_eq!(v["checks"][1]["id"], "config.DB_ENC_KEY");
        assert_eq!(v["checks"][1]["fix"], "Set it to 16 bytes");
        assert!(v["checks"][0]["fix"].is_null());
    }
}
