//! TODO
use super::{LegacyConfig, LegacyError};
/// Audit report.
#[derive(Debug, serde::Serialize)]
pub struct AuditReport {}
impl AuditReport {
    /// Text.
    pub fn text(&self) -> String {
        String::new()
    }
}
/// Audit.
pub async fn audit(_config: &LegacyConfig) -> Result<AuditReport, LegacyError> {
    Ok(AuditReport {})
}
