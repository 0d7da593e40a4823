//! kromosynth-cli genome databases.
//!
//! Storage hands out genome JSON bytes and knows nothing of sound. Sources:
//!
//! - [`GenomeStore`]: an existing kromosynth-cli `genomes.sqlite` (`genomes(id TEXT PRIMARY KEY,
//!   data BLOB)`, `data` = gzip level 9 of `{"_id": "genome_<runId>_<genomeId>", "genome": ...}`).
//! - [`EmbeddedGenomes`]: the default set compiled into the binary ([`DEFAULT_GENOME_IDS`]), used
//!   when no database is configured.
//! - [`Genomes`]: either of the two, the one type the server holds.
//!
//! and one writer, [`import`], for the CLI.
//!
//! # Design
//!
//! **Read-only.** The service opens databases with `SQLITE_OPEN_READ_ONLY` (no `CREATE`), so it
//! can never alter a run's data, and it can read a database that kromosynth-cli is writing at the
//! same moment: in WAL mode a reader sees the last committed state and never blocks the writer.
//! The one write SQLite may do on our behalf is creating the `-wal` / `-shm` side files of a WAL
//! database when they are missing (that is how WAL readers coordinate); the database file itself
//! is never written, and the connections never checkpoint.
//!
//! **Per-thread connections.** A SQLite connection must not be used by two threads at once, and a
//! single shared connection behind a mutex would serialize every render's genome fetch. Instead
//! [`GenomeStore`] is a cheap `Send + Sync + Clone` handle, and each thread that calls
//! [`GenomeStore::get`] gets its own read-only connection, opened on first use and kept in a
//! thread-local with its prepared statement cached. With a fixed rayon pool that is one connection
//! per worker, opened once; the lookup path takes no lock shared between threads. [`Reader`] is
//! the same per-thread connection as an explicit value for callers that manage their own
//! per-thread state.
//!
//! **Bounded.** A blob decompresses to at most [`MAX_GENOME_BYTES`] (a gzip bomb is an error, not
//! an OOM); ids longer than [`MAX_ID_LEN`] are not looked up; `import` reads files of at most
//! [`MAX_IMPORT_FILE_BYTES`] and descends at most [`MAX_IMPORT_DEPTH`] directories.

mod blob;
mod embedded;
mod error;
mod import;
mod store;

use std::path::Path;

pub use embedded::{EmbeddedGenomes, DEFAULT_GENOME_IDS};
pub use error::StoreError;
pub use import::{
    import, read_genome_file, ImportReport, ImportedGenome, SkippedFile, MAX_IMPORT_DEPTH,
    MAX_IMPORT_FILE_BYTES,
};
pub use store::{GenomeStore, Reader, BUSY_TIMEOUT};

/// Largest genome JSON returned (after decompression). The largest reference genome is ~47 KiB;
/// evolved genomes grow, but three orders of magnitude above that is no genome.
pub const MAX_GENOME_BYTES: usize = 64 * 1024 * 1024;

/// Longest genome id accepted. kromosynth ids are 26-character ULIDs.
pub const MAX_ID_LEN: usize = 256;

/// Something that returns genome JSON by id. Implemented by every source in this crate, so code
/// (or a test double) can be written against the trait instead of [`Genomes`].
pub trait GenomeSource: Send + Sync {
    /// The genome JSON stored under `id`.
    fn get(&self, id: &str) -> Result<Vec<u8>, StoreError>;
    /// Genome ids in id order, at most `limit` of them.
    fn list(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError>;
    /// One line saying where genomes come from, for logs and the CLI.
    fn describe(&self) -> String;
}

/// The server's genome source: a database, or the embedded default.
#[derive(Clone, Debug)]
pub enum Genomes {
    Sqlite(GenomeStore),
    Embedded(EmbeddedGenomes),
}

impl Genomes {
    /// A kromosynth-cli `genomes.sqlite`, opened read-only (see [`GenomeStore::open`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        GenomeStore::open(path).map(Genomes::Sqlite)
    }

    /// The genomes built into the binary.
    pub fn open_default() -> Self {
        Genomes::Embedded(EmbeddedGenomes)
    }

    /// The configured database, or the embedded default when none is configured.
    pub fn from_config(path: Option<&Path>) -> Result<Self, StoreError> {
        path.map_or_else(|| Ok(Self::open_default()), Self::open)
    }

    pub fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Genomes::Sqlite(store) => store.get(id),
            Genomes::Embedded(embedded) => embedded.get(id),
        }
    }

    pub fn list(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        match self {
            Genomes::Sqlite(store) => store.list(limit),
            Genomes::Embedded(embedded) => Ok(embedded.list(limit)),
        }
    }

    /// One page of ids in id order: at most `limit` of them, all after `after` when given
    /// (the last id of the previous page), so a client can walk a large database page by page.
    pub fn list_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        match self {
            Genomes::Sqlite(store) => store.list_after(after, limit),
            Genomes::Embedded(embedded) => Ok(embedded.list_after(after, limit)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Genomes::Sqlite(store) => store.describe(),
            Genomes::Embedded(embedded) => embedded.describe(),
        }
    }
}

impl GenomeSource for Genomes {
    fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        Genomes::get(self, id)
    }
    fn list(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        Genomes::list(self, limit)
    }
    fn describe(&self) -> String {
        Genomes::describe(self)
    }
}

impl GenomeSource for GenomeStore {
    fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        GenomeStore::get(self, id)
    }
    fn list(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        GenomeStore::list(self, limit)
    }
    fn describe(&self) -> String {
        format!("genome database {} (read-only)", self.path().display())
    }
}

impl GenomeSource for EmbeddedGenomes {
    fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        EmbeddedGenomes::get(self, id)
    }
    fn list(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        Ok(EmbeddedGenomes::list(self, limit))
    }
    fn describe(&self) -> String {
        format!("embedded default genomes ({})", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn thread_safety_contract() {
        assert_send_sync::<GenomeStore>();
        assert_send_sync::<Genomes>();
        assert_send::<Reader>();
    }
}
