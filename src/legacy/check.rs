//! TODO
use super::{LegacyConfig, LegacyError};
use crate::Orchestrator;
/// Check report.
#[derive(Debug, serde::Serialize)]
pub struct CheckReport {}
impl CheckReport {
    /// Text.
    pub fn text(&self) -> String {
        String::new()
    }
    /// Ok.
    pub fn ok(&self) -> bool {
        true
    }
}
/// Check.
pub async fn check(_o: &Orchestrator, _config: &LegacyConfig) -> Result<CheckReport, LegacyError> {
    Ok(CheckReport {})
}
