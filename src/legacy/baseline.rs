//! TODO
use super::{LegacyConfig, LegacyError};
/// Baseline report.
#[derive(Debug, serde::Serialize)]
pub struct BaselineReport {}
impl BaselineReport {
    /// Text.
    pub fn text(&self) -> String {
        String::new()
    }
}
/// Baseline.
pub async fn baseline(_config: &LegacyConfig) -> Result<BaselineReport, LegacyError> {
    Ok(BaselineReport {})
}
