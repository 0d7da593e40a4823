//! Writing genome files into a kromosynth-cli genome database (the CLI's `import` command).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use crate::blob::{self, GZIP_MAGIC};
use crate::store::{classify, genomes_columns, schema_problem, BUSY_TIMEOUT};
use crate::{StoreError, MAX_GENOME_BYTES, MAX_ID_LEN};

/// Largest genome file read (compressed or not); the largest reference genome is under 50 KiB.
pub const MAX_IMPORT_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How deep `import` descends into directories; also what stops a symlink loop.
pub const MAX_IMPORT_DEPTH: usize = 32;

/// The kromosynth-cli schema and settings (CLI:cli-app/util/genome-db.js `createRunDB`).
const CREATE_SCHEMA_SQL: &str = "
    CREATE TABLE IF NOT EXISTS genomes (
      id TEXT PRIMARY KEY,
      data BLOB
    );
    CREATE TABLE IF NOT EXISTS metadata (
      key TEXT PRIMARY KEY,
      value TEXT
    );
";

/// The CLI records when it created a database, in JavaScript's `toISOString()` format.
const CREATION_DATE_SQL: &str = "INSERT OR IGNORE INTO metadata (key, value) \
     VALUES ('creationDate', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))";

const INSERT_SQL: &str = "INSERT OR REPLACE INTO genomes (id, data) VALUES (?1, ?2)";

/// File-name endings `import` picks up when walking a directory, longest first so the id is the
/// file stem without any of them.
const GENOME_SUFFIXES: [&str; 4] = [".genome.json.gz", ".genome.json", ".json.gz", ".json"];

/// What [`import`] did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Stored genomes, in the order they were written. A later file with the same id replaced
    /// an earlier one (in this import or already in the database).
    pub imported: Vec<ImportedGenome>,
    /// Files (or paths) not imported, with the reason.
    pub skipped: Vec<SkippedFile>,
}

impl ImportReport {
    pub fn imported_count(&self) -> usize {
        self.imported.len()
    }

    pub fn skipped_count(&self) -> usize {
        self.skipped.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedGenome {
    pub id: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// Imports genome files into the database at `db_path`, creating it with the kromosynth-cli
/// schema if it does not exist.
///
/// `paths` are files or directories; directories are walked recursively for `*.json` and
/// `*.json.gz`, while files named explicitly are read whatever their name. Each file holds one
/// genome, `{_id, genome}` as kromosynth-cli writes it or a bare genome, plain or gzipped; it is
/// stored as gzip level 9 of its JSON bytes (as the CLI does) under the genome id: the part of
/// `_id` (`genome_<runId>_<genomeId>`) after the last `_`, or else the file name without its
/// `.genome.json` / `.json` / `.json.gz` ending. Everything is written in one transaction; a file
/// that cannot be read or parsed is reported in [`ImportReport::skipped`] and does not stop the
/// rest. Only database-level failures are errors.
pub fn import(db_path: impl AsRef<Path>, paths: &[PathBuf]) -> Result<ImportReport, StoreError> {
    let db_path = db_path.as_ref();
    let mut report = ImportReport::default();
    let mut files = Vec::new();
    for path in paths {
        collect(path, 0, true, &mut files, &mut report.skipped);
    }

    let mut conn = open_for_writing(db_path)?;
    let sqlite = |source| StoreError::Sqlite {
        path: db_path.to_path_buf(),
        source,
    };
    let tx = conn.transaction().map_err(sqlite)?;
    {
        let mut insert = tx.prepare(INSERT_SQL).map_err(sqlite)?;
        for path in files {
            match load(&path) {
                Ok((id, data)) => {
                    insert.execute((&id, &data)).map_err(sqlite)?;
                    report.imported.push(ImportedGenome { id, path });
                }
                Err(reason) => report.skipped.push(SkippedFile { path, reason }),
            }
        }
    }
    tx.commit().map_err(sqlite)?;
    Ok(report)
}

fn open_for_writing(db_path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if db_path.is_dir() {
        return Err(StoreError::NotSqlite {
            path: db_path.to_path_buf(),
            reason: "is a directory".to_owned(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db_path, flags).map_err(|e| classify(db_path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(db_path, e))?;
    // The CLI's settings; WAL also lets the server keep reading while an import runs.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        .map_err(|e| classify(db_path, e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| classify(db_path, e))?;
    conn.execute_batch(CREATE_SCHEMA_SQL)
        .map_err(|e| classify(db_path, e))?;
    // An existing `genomes` table with other columns is some other program's database.
    let columns = genomes_columns(&conn).map_err(|e| classify(db_path, e))?;
    if let Some(problem) = schema_problem(&columns) {
        return Err(StoreError::NotGenomeDatabase {
            path: db_path.to_path_buf(),
            reason: problem,
        });
    }
    conn.execute(CREATION_DATE_SQL, [])
        .map_err(|e| classify(db_path, e))?;
    Ok(conn)
}

/// Adds the genome files under `path` to `files`, in a stable (sorted) order.
fn collect(
    path: &Path,
    depth: usize,
    explicit: bool,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<SkippedFile>,
) {
    let skip = |skipped: &mut Vec<SkippedFile>, reason: String| {
        skipped.push(SkippedFile {
            path: path.to_path_buf(),
            reason,
        })
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return skip(skipped, e.to_string()),
    };
    if meta.is_dir() {
        if depth >= MAX_IMPORT_DEPTH {
            return skip(
                skipped,
                format!("directory nested deeper than {MAX_IMPORT_DEPTH} levels"),
            );
        }
        let mut entries = match std::fs::read_dir(path).and_then(|dir| {
            dir.map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Ok(entries) => entries,
            Err(e) => return skip(skipped, e.to_string()),
        };
        entries.sort();
        for entry in entries {
            collect(&entry, depth + 1, false, files, skipped);
        }
    } else if meta.is_file() {
        if explicit || genome_suffix(path).is_some() {
            files.push(path.to_path_buf());
        }
    } else if explicit {
        skip(skipped, "not a file or directory".to_owned());
    }
}

fn genome_suffix(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    GENOME_SUFFIXES
        .into_iter()
        .find(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
}

/// The JSON bytes of a genome file (`.json`, or gzip of it, recognised by its magic bytes),
/// bounded by [`MAX_IMPORT_FILE_BYTES`] on disk and [`MAX_GENOME_BYTES`] decompressed.
pub fn read_genome_file(path: &Path) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_IMPORT_FILE_BYTES + 1).read_to_end(&mut raw))
        .map_err(|e| e.to_string())?;
    if raw.len() as u64 > MAX_IMPORT_FILE_BYTES {
        return Err(format!("file larger than {MAX_IMPORT_FILE_BYTES} bytes"));
    }
    if raw.starts_with(&GZIP_MAGIC) {
        blob::gunzip_bounded(&raw, MAX_GENOME_BYTES)
    } else {
        Ok(raw)
    }
}

/// Reads one genome file: its id and the gzipped JSON to store, or why it cannot be imported.
fn load(path: &Path) -> Result<(String, Vec<u8>), String> {
    let json = read_genome_file(path)?;
    let value: Value = serde_json::from_slice(&json).map_err(|e| format!("invalid JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "not a JSON object".to_owned())?;
    // Without this, a directory's other JSON (e.g. the fixtures' index.json) would be stored as
    // a "genome" that fails only when someone tries to render it.
    if !object.contains_key("genome") && !object.contains_key("asNEATPatch") {
        return Err("not a kromosynth genome (no `genome` or `asNEATPatch` field)".to_owned());
    }
    let id = genome_id(object.get("_id"), path)?;
    let data = blob::gzip_like_cli(&json).map_err(|e| format!("gzip failed: {e}"))?;
    Ok((id, data))
}

fn genome_id(stored_id: Option<&Value>, path: &Path) -> Result<String, String> {
    let from_id = stored_id
        .and_then(Value::as_str)
        .and_then(|id| id.rsplit('_').next())
        .filter(|id| !id.is_empty());
    let id = match from_id {
        Some(id) => id.to_owned(),
        None => {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| "no `_id` and the file name is not UTF-8".to_owned())?;
            let stem =
                genome_suffix(path).map_or(name, |suffix| &name[..name.len() - suffix.len()]);
            stem.to_owned()
        }
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("genome id must be 1 to {MAX_ID_LEN} bytes"));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "genome id {id:?} contains whitespace or control characters"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_from_wrapper_takes_the_part_after_the_last_underscore() {
        let v = json!("genome_01RUN_01GENOME");
        assert_eq!(
            genome_id(Some(&v), Path::new("x.json")).unwrap(),
            "01GENOME"
        );
        let bare = json!("01ONLY");
        assert_eq!(
            genome_id(Some(&bare), Path::new("x.json")).unwrap(),
            "01ONLY"
        );
    }

    #[test]
    fn id_falls_back_to_the_file_stem() {
        for (name, id) in [
            ("01A.genome.json", "01A"),
            ("01B.json", "01B"),
            ("01C.json.gz", "01C"),
            ("01D.genome.json.gz", "01D"),
            ("noext", "noext"),
        ] {
            assert_eq!(genome_id(None, Path::new(name)).unwrap(), id, "{name}");
        }
        let trailing = json!("genome_run_");
        assert_eq!(
            genome_id(Some(&trailing), Path::new("01E.json")).unwrap(),
            "01E"
        );
    }

    #[test]
    fn suffix_alone_is_not_a_genome_file() {
        assert_eq!(genome_suffix(Path::new("dir/.json")), None);
        assert_eq!(genome_suffix(Path::new("a.json.gz")), Some(".json.gz"));
        assert_eq!(genome_suffix(Path::new("a.f32")), None);
    }
}
