use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::MAX_ID_LEN;

/// Everything that can go wrong in this crate. Each variant names the path or the genome id it is
/// about, so a message can be shown to a user (or sent to a client) as it is.
#[derive(Debug)]
pub enum StoreError {
    /// The configured database file does not exist.
    DatabaseMissing { path: PathBuf },
    /// The file exists but SQLite cannot read it as a database (or it is not a regular file).
    NotSqlite { path: PathBuf, reason: String },
    /// A SQLite database, but without the kromosynth-cli `genomes(id, data)` table.
    NotGenomeDatabase { path: PathBuf, reason: String },
    /// No genome with this id in the source.
    NotFound { id: String },
    /// The row exists but its `data` is not (gzipped) JSON, or decompresses past the size cap.
    CorruptBlob { id: String, reason: String },
    /// Any other SQLite failure (I/O error, lock timeout, ...), with the database it happened on.
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A file-system failure outside SQLite (e.g. creating the database's directory on import).
    Io { path: PathBuf, source: io::Error },
}

impl StoreError {
    pub(crate) fn not_found(id: &str) -> Self {
        StoreError::NotFound { id: bounded_id(id) }
    }

    pub(crate) fn corrupt(id: &str, reason: impl Into<String>) -> Self {
        StoreError::CorruptBlob {
            id: bounded_id(id),
            reason: reason.into(),
        }
    }
}

/// Ids come from clients; an error message must not grow with whatever a client sent.
fn bounded_id(id: &str) -> String {
    if id.len() <= MAX_ID_LEN {
        return id.to_owned();
    }
    let mut end = MAX_ID_LEN;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &id[..end])
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::DatabaseMissing { path } => {
                write!(f, "genome database not found: {}", path.display())
            }
            StoreError::NotSqlite { path, reason } => {
                write!(f, "not a SQLite database: {} ({reason})", path.display())
            }
            StoreError::NotGenomeDatabase { path, reason } => write!(
                f,
                "not a kromosynth genome database: {} ({reason})",
                path.display()
            ),
            StoreError::NotFound { id } => write!(f, "genome not found: {id}"),
            StoreError::CorruptBlob { id, reason } => {
                write!(f, "corrupt genome data for {id}: {reason}")
            }
            StoreError::Sqlite { path, source } => {
                write!(f, "SQLite error on {}: {source}", path.display())
            }
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite { source, .. } => Some(source),
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
