//! Reading catalog rows without panicking: every column goes through
//! [`RowReader::get`] (`Row::try_get`), so a stored value tenantd cannot
//! decode — a type that changed by hand, a JSON number beyond what
//! `serde_json` reads back — is a [`CatalogError::Unreadable`] naming the
//! column and the row, never a panic of the reading task.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use super::CatalogError;

/// A catalog row and what it describes (for error messages).
pub(super) struct RowReader<'a> {
    row: &'a Row,
    of: String,
}

impl<'a> RowReader<'a> {
    /// A reader of `row`, which `of` describes ("tenant acme", "operation …").
    pub(super) fn new(row: &'a Row, of: impl Into<String>) -> Self {
        Self { row, of: of.into() }
    }

    /// The column `column`, or [`CatalogError::Unreadable`].
    pub(super) fn get<T: FromSql<'a>>(&self, column: &'static str) -> Result<T, CatalogError> {
        self.row
            .try_get(column)
            .map_err(|source| CatalogError::Unreadable {
                column,
                of: self.of.clone(),
                source,
            })
    }

    /// Names the row from now on (once its key column has been read).
    pub(super) fn describe(&mut self, of: impl Into<String>) {
        self.of = of.into();
    }
}
