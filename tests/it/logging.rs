//! `TENANTD_LOG_FORMAT=json` turns every log line into a JSON object.

use crate::common::TestEnv;

#[test]
fn json_log_format_prints_one_json_object_per_line() {
    let env = TestEnv::new();
    let output = env
        .command()
        .args(["init"])
        .env("TENANTD_LOG", "info")
        .env("TENANTD_LOG_FORMAT", "json")
        .output()
        .expect("tenantd runs");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "init logs at info level");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
    }
}
