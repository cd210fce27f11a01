//! `legacy backup`: a `pg_dump -Fc` of the source into
//! `<backups>/pre-migration/<timestamp>.dump`, with a manifest beside it
//! (`<timestamp>.manifest.json`: SHA-256, size, per-table row counts), and
//! checked by reading its table of contents back with `pg_restore --list`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::schema::Schema;
use super::{LegacyConfig, LegacyError, Source, tools};
use crate::ident::quote_ident;

/// The manifest of one backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The source database.
    pub source: String,
    /// The dump file.
    pub file: PathBuf,
    /// When it was taken (UTC, RFC 3339).
    pub created_at: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Rows per table at dump time.
    pub tables: BTreeMap<String, i64>,
    /// Entries `pg_restore --list` reads from the file.
    pub toc_entries: usize,
}

impl Manifest {
    /// A readable summary.
    pub fn text(&self) -> String {
        format!(
            "backup {} ({} bytes, sha256 {}, {} tables, {} rows, {} TOC entries)",
            self.file.display(),
            self.size,
            self.sha256,
            self.tables.len(),
            self.tables.values().sum::<i64>(),
            self.toc_entries
        )
    }
}

fn dir(config: &LegacyConfig) -> PathBuf {
    config.output.backups.join("pre-migration")
}

/// The newest backup's dump file, if any.
pub fn latest(config: &LegacyConfig) -> Result<Option<PathBuf>, LegacyError> {
    let dir = dir(config);
    if !dir.exists() {
        return Ok(None);
    }
    let mut dumps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(LegacyError::io(&dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dump"))
        .collect();
    dumps.sort();
    Ok(dumps.pop())
}

/// Takes and checks a backup of the source.
#[tracing::instrument(skip_all)]
pub async fn backup(config: &LegacyConfig) -> Result<Manifest, LegacyError> {
    let source = Source::new(config)?;
    let dir = dir(config);
    std::fs::create_dir_all(&dir).map_err(LegacyError::io(&dir))?;
    let stamp = chrono::Utc::now();
    let file = dir.join(format!("{}.dump", stamp.format("%Y%m%dT%H%M%S%.3fZ")));
    let conn = tools::conninfo(&source.config);
    let path = tools::arg(&file);
    tools::run("pg_dump", &["-Fc", "-f", &path, &conn], &source.config).await?;
    let toc = tools::run("pg_restore", &["--list", &path], &source.config).await?;
    let toc_entries = String::from_utf8_lossy(&toc)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .count();
    if toc_entries == 0 {
        return Err(LegacyError::Tool {
            program: "pg_restore --list".to_owned(),
            output: format!(
                "{} has no entries: the dump is unusable; check disk space and run backup again",
                file.display()
            ),
        });
    }
    let (size, sha256) = digest(&file)?;
    let manifest = Manifest {
        source: source.database.clone(),
        created_at: stamp.to_rfc3339(),
        tables: row_counts(&source).await?,
        file: file.clone(),
        size,
        sha256,
        toc_entries,
    };
    super::write_json(&file.with_extension("manifest.json"), &manifest)?;
    Ok(manifest)
}

/// Exact row counts of every table of the source.
pub async fn row_counts(source: &Source) -> Result<BTreeMap<String, i64>, LegacyError> {
    let client = source.connect().await?;
    let schema = Schema::read(&client)
        .await
        .map_err(LegacyError::db("read the source schema"))?;
    let mut counts = BTreeMap::new();
    for table in schema.tables.keys() {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        let n: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(LegacyError::db(format!("count {table}")))?
            .get(0);
        counts.insert(table.clone(), n);
    }
    Ok(counts)
}

/// Size and SHA-256 (hex) of a file.
pub fn digest(path: &Path) -> Result<(u64, String), LegacyError> {
    let mut file = std::fs::File::open(path).map_err(LegacyError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(LegacyError::io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}
