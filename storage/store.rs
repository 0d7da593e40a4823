//! Read-only access to a kromosynth-cli `genomes.sqlite`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::blob;
use crate::{StoreError, MAX_ID_LEN};

/// How long a lookup waits on a lock before failing. Readers of a WAL database almost never wait
/// (they only do while a writer runs WAL recovery or the WAL index is being rebuilt); when they
/// do, waiting briefly is better than failing a render, but a worker must not hang on a stuck
/// writer either.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

const GET_SQL: &str = "SELECT data FROM genomes WHERE id = ?1";
const LIST_SQL: &str = "SELECT id FROM genomes ORDER BY id LIMIT ?1";
// The primary key's index serves both the comparison and the order: a page costs its own rows,
// not a scan of the ids before it.
const LIST_AFTER_SQL: &str = "SELECT id FROM genomes WHERE id > ?1 ORDER BY id LIMIT ?2";
const COLUMNS_SQL: &str = "SELECT name FROM pragma_table_info('genomes')";

/// The columns kromosynth-cli creates: `genomes(id TEXT PRIMARY KEY, data BLOB)`.
const REQUIRED_COLUMNS: [&str; 2] = ["id", "data"];

/// Read-only handle on a kromosynth-cli genome database, shareable by any number of threads.
///
/// `GenomeStore` is `Send + Sync + Clone` and holds no connection itself: [`GenomeStore::get`]
/// and [`GenomeStore::list`] use a connection owned by the calling thread (opened on that
/// thread's first call, kept in a thread-local until the thread exits or the last clone of the
/// store is dropped). Lookups therefore take no lock shared between threads, and each thread's
/// connection keeps its prepared statements cached. A caller that prefers to own the per-thread
/// state explicitly can take a [`Reader`] instead.
#[derive(Clone, Debug)]
pub struct GenomeStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Other threads' connections to this store close the next time they look anything up
        // (the Weak there no longer upgrades); this thread's can close now.
        let _ = READERS.try_with(|cell| {
            if let Ok(mut readers) = cell.try_borrow_mut() {
                readers.retain(|(store, _)| store.strong_count() > 0);
            }
        });
    }
}

thread_local! {
    /// This thread's connections, one per live store. Rarely more than one entry.
    static READERS: RefCell<Vec<(Weak<Shared>, Reader)>> = const { RefCell::new(Vec::new()) };
}

impl GenomeStore {
    /// Opens an existing database read-only and checks that it is a kromosynth genome database.
    ///
    /// Never creates or writes the file, so it is safe on a database that kromosynth-cli is
    /// writing at the same time (in WAL mode readers see the last committed state).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let reader = Reader::open(&path)?;
        let store = GenomeStore {
            shared: Arc::new(Shared { path }),
        };
        // The connection that validated the file serves this thread's lookups, so a store opened
        // for one lookup (the CLI) opens SQLite once.
        let _ = READERS.try_with(|cell| {
            if let Ok(mut readers) = cell.try_borrow_mut() {
                readers.push((Arc::downgrade(&store.shared), reader));
            }
        });
        Ok(store)
    }

    /// The database file this store reads.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// A new connection owned by the caller, for one thread's exclusive use.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.shared.path)
    }

    /// The genome JSON stored under `id` (gunzipped when stored compressed).
    pub fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        self.with_reader(|reader| reader.get(id))
    }

    /// Genome ids in id order (ULIDs sort by creation time), at most `limit` of them.
    pub fn list(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        self.with_reader(|reader| reader.list(limit))
    }

    /// One page of ids in id order: at most `limit` of them, all after `after` when given.
    pub fn list_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        self.with_reader(|reader| reader.list_after(after, limit))
    }

    fn with_reader<T>(
        &self,
        f: impl Fn(&Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = READERS.try_with(|cell| {
            let mut readers = cell.try_borrow_mut().ok()?;
            readers.retain(|(store, _)| store.strong_count() > 0);
            let me = Arc::as_ptr(&self.shared);
            // The Weak keeps the allocation alive, so no other store can share this address.
            let index = match readers
                .iter()
                .position(|(s, _)| std::ptr::eq(s.as_ptr(), me))
            {
                Some(index) => index,
                None => match Reader::open(&self.shared.path) {
                    Ok(reader) => {
                        readers.push((Arc::downgrade(&self.shared), reader));
                        readers.len() - 1
                    }
                    Err(e) => return Some(Err(e)),
                },
            };
            let result = f(&readers[index].1);
            if matches!(result, Err(StoreError::Sqlite { .. })) {
                // The connection may be broken (file replaced, I/O error): reopen on next use.
                readers.swap_remove(index);
            }
            Some(result)
        });
        match pooled {
            Ok(Some(result)) => result,
            // Thread-local already torn down (called from a thread-local destructor): use a
            // one-off connection rather than fail.
            _ => f(&self.reader()?),
        }
    }
}

/// One read-only connection with its cached statements. `Send` but not `Sync`: keep one per
/// thread (e.g. per rayon worker) and it never waits on another thread.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::DatabaseMissing {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if !meta.is_file() {
            return Err(StoreError::NotSqlite {
                path: path.to_path_buf(),
                reason: "not a regular file".to_owned(),
            });
        }
        // READ_ONLY without CREATE: SQLite never writes the database file; NO_MUTEX because a
        // connection is only ever used by one thread at a time.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
        let reader = Reader {
            conn,
            path: path.to_path_buf(),
        };
        reader.configure()?;
        reader.validate_schema()?;
        Ok(reader)
    }

    fn configure(&self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.sqlite(e))?;
        // A read-only connection cannot checkpoint anyway; this makes "never touches the WAL of
        // a database another process is writing" explicit rather than a consequence.
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    fn validate_schema(&self) -> Result<(), StoreError> {
        // Reading the schema is the first real read of the file: a non-SQLite file fails here.
        let columns = genomes_columns(&self.conn).map_err(|e| classify(&self.path, e))?;
        if let Some(problem) = schema_problem(&columns) {
            return Err(self.not_genome_db(problem));
        }
        // Compiles the lookup once, so a schema SQLite cannot query fails at open, not per get.
        self.conn
            .prepare_cached(GET_SQL)
            .map_err(|e| self.not_genome_db(e.to_string()))?;
        Ok(())
    }

    /// The database file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The genome JSON stored under `id` (gunzipped when stored compressed).
    pub fn get(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        // Longer ids cannot be kromosynth ids; no need to ask SQLite.
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(StoreError::not_found(id));
        }
        let mut stmt = self
            .conn
            .prepare_cached(GET_SQL)
            .map_err(|e| self.sqlite(e))?;
        let mut rows = stmt.query([id]).map_err(|e| self.sqlite(e))?;
        let row = rows
            .next()
            .map_err(|e| self.sqlite(e))?
            .ok_or_else(|| StoreError::not_found(id))?;
        // Decoding straight from SQLite's buffer saves copying the compressed blob.
        match row.get_ref(0).map_err(|e| self.sqlite(e))? {
            ValueRef::Blob(data) | ValueRef::Text(data) => blob::decode(id, data),
            ValueRef::Null => Err(StoreError::corrupt(id, "data is NULL")),
            ValueRef::Integer(_) | ValueRef::Real(_) => {
                Err(StoreError::corrupt(id, "data is a number, not a blob"))
            }
        }
    }

    /// Genome ids in id order, at most `limit` of them.
    pub fn list(&self, limit: Option<usize>) -> Result<Vec<String>, StoreError> {
        // SQLite reads a negative LIMIT as "no limit".
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.query_ids(LIST_SQL, rusqlite::params![limit])
    }

    /// One page of ids in id order: at most `limit` of them, all after `after` when given.
    pub fn list_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match after {
            None => self.query_ids(LIST_SQL, rusqlite::params![limit]),
            Some(after) => self.query_ids(LIST_AFTER_SQL, rusqlite::params![after, limit]),
        }
    }

    fn query_ids(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sqlite(e))?;
        let ids = stmt
            .query_map(params, |row| {
                // The column is declared TEXT, but SQLite stores whatever it was given.
                Ok(match row.get_ref(0)? {
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    ValueRef::Integer(i) => i.to_string(),
                    ValueRef::Real(r) => r.to_string(),
                    ValueRef::Null => String::new(),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sqlite(e))?;
        Ok(ids)
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn not_genome_db(&self, reason: String) -> StoreError {
        StoreError::NotGenomeDatabase {
            path: self.path.clone(),
            reason,
        }
    }
}

/// SQLite reports "not a database" only once it reads the file; give that its own variant.
pub(crate) fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotSqlite {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

pub(crate) fn genomes_columns(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(COLUMNS_SQL)?;
    let columns = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(columns)
}

/// Why `columns` (of table `genomes`) is not the kromosynth-cli schema, if it is not.
pub(crate) fn schema_problem(columns: &[String]) -> Option<String> {
    if columns.is_empty() {
        return Some("no table `genomes`".to_owned());
    }
    REQUIRED_COLUMNS
        .iter()
        .find(|required| !columns.iter().any(|c| c.eq_ignore_ascii_case(required)))
        .map(|missing| {
            format!(
                "table `genomes` has no column `{missing}` (columns: {})",
                columns.join(", ")
            )
        })
}
