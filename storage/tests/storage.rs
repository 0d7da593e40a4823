use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use krs_engine::fixtures;
use krs_storage::{
    import, EmbeddedGenomes, GenomeSource, GenomeStore, Genomes, StoreError, DEFAULT_GENOME_IDS,
};
use rusqlite::Connection;

/// A directory under the system temp dir, unique per test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "krs-storage-{name}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip9(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(9));
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A database written the way kromosynth-cli's `createRunDB` + `saveGenome` write one.
fn cli_database(path: &Path, rows: &[(&str, Vec<u8>)]) {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "cache_size", 10000).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS genomes (
           id TEXT PRIMARY KEY,
           data BLOB
         );
         CREATE TABLE IF NOT EXISTS metadata (
           key TEXT PRIMARY KEY,
           value TEXT
         );",
    )
    .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO metadata (key, value) VALUES ('creationDate', '2024-01-01T00:00:00.000Z')",
        [],
    )
    .unwrap();
    for (id, data) in rows {
        conn.execute(
            "INSERT OR REPLACE INTO genomes (id, data) VALUES (?, ?)",
            (id, data),
        )
        .unwrap();
    }
}

fn fixtures_gzipped() -> Vec<(&'static str, Vec<u8>)> {
    DEFAULT_GENOME_IDS
        .iter()
        .map(|id| (*id, gzip9(&fixtures::genome_json(id))))
        .collect()
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn reads_a_cli_database_byte_for_byte() {
    let dir = TempDir::new("cli");
    let db = dir.path("genomes.sqlite");
    cli_database(&db, &fixtures_gzipped());

    let store = GenomeStore::open(&db).unwrap();
    for id in DEFAULT_GENOME_IDS {
        assert_eq!(store.get(id).unwrap(), fixtures::genome_json(id), "{id}");
    }
    assert_eq!(store.list(None).unwrap(), DEFAULT_GENOME_IDS);
    assert_eq!(store.list(Some(3)).unwrap(), &DEFAULT_GENOME_IDS[..3]);
    assert_eq!(store.list(Some(0)).unwrap(), Vec::<String>::new());
    // Pages: walking with `after` visits every id once, in order, in both sources.
    let embedded = krs_storage::EmbeddedGenomes;
    for page_size in [1, 3, 8, 100] {
        let (mut walked, mut walked_embedded, mut after) = (Vec::new(), Vec::new(), None::<String>);
        loop {
            let page = store.list_after(after.as_deref(), page_size).unwrap();
            assert_eq!(page, embedded.list_after(after.as_deref(), page_size));
            walked_embedded.extend(page.iter().cloned());
            if page.len() < page_size {
                walked.extend(page);
                break;
            }
            after = page.last().cloned();
            walked.extend(page);
        }
        assert_eq!(walked, DEFAULT_GENOME_IDS, "page size {page_size}");
        assert_eq!(walked_embedded, DEFAULT_GENOME_IDS);
    }
    assert!(store.list_after(Some("~"), 10).unwrap().is_empty());
    assert_eq!(
        store.list_after(Some(""), 2).unwrap(),
        &DEFAULT_GENOME_IDS[..2]
    );

    // An explicit Reader reads the same.
    let reader = store.reader().unwrap();
    assert_eq!(
        reader.get(DEFAULT_GENOME_IDS[0]).unwrap(),
        fixtures::genome_json(DEFAULT_GENOME_IDS[0])
    );
}

#[test]
fn accepts_plain_json_blobs_and_text_values() {
    let dir = TempDir::new("plain");
    let db = dir.path("genomes.sqlite");
    let id = DEFAULT_GENOME_IDS[1];
    cli_database(&db, &[(id, fixtures::genome_json(id))]);
    {
        let conn = Connection::open(&db).unwrap();
        let text = String::from_utf8(fixtures::genome_json(id)).unwrap();
        conn.execute(
            "INSERT INTO genomes (id, data) VALUES ('as-text', ?)",
            [text],
        )
        .unwrap();
    }
    let store = GenomeStore::open(&db).unwrap();
    assert_eq!(store.get(id).unwrap(), fixtures::genome_json(id));
    assert_eq!(store.get("as-text").unwrap(), fixtures::genome_json(id));
}

#[test]
fn import_list_get_round_trip() {
    let dir = TempDir::new("import");
    let db = dir.path("run/genomes.sqlite");
    // The fixture directory also holds renders (ignored: not .json) and index.json (skipped:
    // JSON, but not a genome).
    let report = import(&db, &[fixtures::dir()]).unwrap();
    assert_eq!(
        report.imported_count(),
        DEFAULT_GENOME_IDS.len(),
        "{report:?}"
    );
    assert_eq!(report.skipped_count(), 1, "{report:?}");
    assert!(report.skipped[0].path.ends_with("index.json"));
    assert!(report.skipped[0].reason.contains("not a kromosynth genome"));

    let store = GenomeStore::open(&db).unwrap();
    assert_eq!(store.list(None).unwrap(), DEFAULT_GENOME_IDS);
    for id in DEFAULT_GENOME_IDS {
        let got = store.get(id).unwrap();
        assert_eq!(got, fixtures::genome_json(id), "{id}");
        assert_eq!(json(&got), json(&fixtures::genome_json(id)));
    }

    // The file is what kromosynth-cli itself would have written.
    let conn = Connection::open(&db).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> = conn
        .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        tables.iter().map(|t| squash(t)).collect::<Vec<_>>(),
        [
            "CREATE TABLE genomes ( id TEXT PRIMARY KEY, data BLOB )",
            "CREATE TABLE metadata ( key TEXT PRIMARY KEY, value TEXT )",
        ]
    );
    let created: String = conn
        .query_row(
            "SELECT value FROM metadata WHERE key = 'creationDate'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    let blob: Vec<u8> = conn
        .query_row(
            "SELECT data FROM genomes WHERE id = ?",
            [DEFAULT_GENOME_IDS[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(&blob[..2], &[0x1f, 0x8b]);
    assert_eq!(blob[8], 2, "gzip XFL = 2: maximum compression (level 9)");

    // Importing again replaces instead of failing on the primary key.
    let again = import(&db, &[fixtures::genome_path(DEFAULT_GENOME_IDS[0])]).unwrap();
    assert_eq!(again.imported_count(), 1);
    assert_eq!(GenomeStore::open(&db).unwrap().list(None).unwrap().len(), 8);
}

#[test]
fn import_skips_broken_files_and_imports_the_rest() {
    let dir = TempDir::new("broken");
    let src = dir.path("src");
    std::fs::create_dir_all(src.join("nested")).unwrap();
    let good = DEFAULT_GENOME_IDS[2];
    std::fs::write(src.join("a-good.json"), fixtures::genome_json(good)).unwrap();
    std::fs::write(src.join("broken.json"), b"{\"_id\": \"genome_x_").unwrap();
    std::fs::write(src.join("bad-gzip.json.gz"), [0x1f, 0x8b, 0, 1, 2, 3]).unwrap();
    std::fs::write(src.join("array.json"), b"[1, 2]").unwrap();
    std::fs::write(src.join("notes.txt"), b"ignored: not json").unwrap();
    // No `_id`: named by the file stem. Gzipped and nested.
    std::fs::write(
        src.join("nested/01BARE.genome.json.gz"),
        gzip9(br#"{"asNEATPatch": "{}", "waveNetwork": {}}"#),
    )
    .unwrap();
    let missing = dir.path("does-not-exist.json");

    let db = dir.path("genomes.sqlite");
    let report = import(&db, &[src.clone(), missing.clone()]).unwrap();
    let ids: Vec<&str> = report.imported.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, [good, "01BARE"]);
    let skipped: Vec<(PathBuf, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.path.clone(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    let reason = |name: &str| {
        skipped
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not skipped: {skipped:?}"))
            .1
    };
    assert!(reason("broken.json").contains("invalid JSON"));
    assert!(reason("bad-gzip.json.gz").contains("bad gzip"));
    assert!(reason("array.json").contains("not a JSON object"));
    assert!(skipped.iter().any(|(p, _)| *p == missing));

    let store = GenomeStore::open(&db).unwrap();
    assert_eq!(store.get(good).unwrap(), fixtures::genome_json(good));
    assert_eq!(
        json(&store.get("01BARE").unwrap()),
        serde_json::json!({"asNEATPatch": "{}", "waveNetwork": {}})
    );
}

#[test]
fn import_refuses_foreign_files() {
    let dir = TempDir::new("import-foreign");
    let text = dir.path("text.sqlite");
    std::fs::write(&text, vec![b'x'; 4096]).unwrap();
    let err = import(&text, &[]).unwrap_err();
    assert!(matches!(err, StoreError::NotSqlite { .. }), "{err}");
    assert_eq!(std::fs::read(&text).unwrap(), vec![b'x'; 4096]);

    let other = dir.path("other.sqlite");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE genomes (name TEXT, body TEXT)")
        .unwrap();
    let err = import(&other, &[]).unwrap_err();
    assert!(matches!(err, StoreError::NotGenomeDatabase { .. }), "{err}");
}

#[test]
fn reads_while_another_connection_writes() {
    const READERS: usize = 4;
    const WRITES: usize = 300;

    let dir = TempDir::new("wal");
    let db = dir.path("genomes.sqlite");
    cli_database(&db, &fixtures_gzipped());
    let store = Arc::new(GenomeStore::open(&db).unwrap());
    let done = Arc::new(AtomicBool::new(false));

    let writer = {
        let db = db.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            let data = gzip9(&fixtures::genome_json(DEFAULT_GENOME_IDS[7]));
            for i in 0..WRITES {
                conn.execute(
                    "INSERT OR REPLACE INTO genomes (id, data) VALUES (?, ?)",
                    (format!("new-{i:05}"), &data),
                )
                .unwrap();
            }
            done.store(true, Ordering::Release);
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let store = store.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut lookups = 0usize;
                while !done.load(Ordering::Acquire) || lookups < DEFAULT_GENOME_IDS.len() {
                    let id = DEFAULT_GENOME_IDS[(lookups + r) % DEFAULT_GENOME_IDS.len()];
                    let got = store.get(id).unwrap_or_else(|e| panic!("reader {r}: {e}"));
                    assert_eq!(got.len(), fixtures::genome_json(id).len());
                    lookups += 1;
                }
                lookups
            })
        })
        .collect();
    writer.join().unwrap();
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    // Each reader sees committed writes at its next lookup.
    assert_eq!(
        store.list(None).unwrap().len(),
        DEFAULT_GENOME_IDS.len() + WRITES
    );
    assert_eq!(
        store.get(&format!("new-{:05}", WRITES - 1)).unwrap(),
        fixtures::genome_json(DEFAULT_GENOME_IDS[7])
    );
}

#[test]
fn missing_file() {
    let dir = TempDir::new("missing");
    let db = dir.path("nope.sqlite");
    let err = GenomeStore::open(&db).unwrap_err();
    assert!(matches!(err, StoreError::DatabaseMissing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("genome database not found: {}", db.display())
    );
    assert!(!db.exists(), "opening must not create the file");
}

#[test]
fn sqlite_file_without_genomes_table() {
    let dir = TempDir::new("schema");
    let db = dir.path("features.sqlite");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE features (id TEXT PRIMARY KEY, data BLOB)")
        .unwrap();
    let err = GenomeStore::open(&db).unwrap_err();
    assert!(
        matches!(err, StoreError::NotGenomeDatabase { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "not a kromosynth genome database: {} (no table `genomes`)",
            db.display()
        )
    );

    let db = dir.path("no-data.sqlite");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE genomes (id TEXT PRIMARY KEY, blob BLOB)")
        .unwrap();
    let err = GenomeStore::open(&db).unwrap_err();
    assert!(
        matches!(err, StoreError::NotGenomeDatabase { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no column `data`"), "{err}");
    assert!(err.to_string().contains(&db.display().to_string()), "{err}");
}

#[test]
fn not_a_sqlite_file() {
    let dir = TempDir::new("notsqlite");
    let db = dir.path("genome.json");
    std::fs::write(&db, fixtures::genome_json(DEFAULT_GENOME_IDS[0])).unwrap();
    let err = GenomeStore::open(&db).unwrap_err();
    assert!(matches!(err, StoreError::NotSqlite { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("not a SQLite database: {}", db.display())),
        "{message}"
    );

    let err = GenomeStore::open(dir.path("")).unwrap_err();
    assert!(
        matches!(err, StoreError::NotSqlite { .. }),
        "directory: {err:?}"
    );
}

#[test]
fn corrupt_blobs_and_unknown_ids() {
    let dir = TempDir::new("corrupt");
    let db = dir.path("genomes.sqlite");
    cli_database(
        &db,
        &[
            (
                "bad-gzip",
                vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad],
            ),
            (
                "truncated",
                gzip9(&fixtures::genome_json(DEFAULT_GENOME_IDS[0]))[..200].to_vec(),
            ),
            ("not-json", b"hello".to_vec()),
            ("json-array", gzip9(b"[1,2,3]")),
        ],
    );
    Connection::open(&db)
        .unwrap()
        .execute_batch("INSERT INTO genomes (id, data) VALUES ('null', NULL), ('number', 42)")
        .unwrap();
    let store = GenomeStore::open(&db).unwrap();
    for (id, reason) in [
        ("bad-gzip", "bad gzip"),
        ("truncated", "bad gzip"),
        ("not-json", "not a JSON object"),
        ("json-array", "not a JSON object"),
        ("null", "NULL"),
        ("number", "number"),
    ] {
        let err = store.get(id).unwrap_err();
        assert!(
            matches!(err, StoreError::CorruptBlob { .. }),
            "{id}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("corrupt genome data for {id}: ")),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }

    let err = store.get("01NOSUCHGENOME").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "genome not found: 01NOSUCHGENOME");
    let huge = "x".repeat(10_000);
    let message = store.get(&huge).unwrap_err().to_string();
    assert!(
        message.len() < 400,
        "id in message is bounded: {}",
        message.len()
    );
    assert!(matches!(store.get(""), Err(StoreError::NotFound { .. })));
}

#[test]
fn gzip_bomb_is_an_error() {
    // Concatenated gzip members (which gunzip accepts) make a small blob that inflates past
    // MAX_GENOME_BYTES without the test having to compress that much.
    const MEMBER_BYTES: usize = 1 << 20;
    let member = gzip9(&vec![b' '; MEMBER_BYTES]);
    let members = krs_storage::MAX_GENOME_BYTES / MEMBER_BYTES + 1;
    let bomb: Vec<u8> = member
        .iter()
        .copied()
        .cycle()
        .take(member.len() * members)
        .collect();
    assert!(bomb.len() < 1 << 20);

    let dir = TempDir::new("bomb");
    let db = dir.path("genomes.sqlite");
    cli_database(&db, &[("bomb", bomb)]);
    let err = GenomeStore::open(&db).unwrap().get("bomb").unwrap_err();
    assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err:?}");
    assert!(
        err.to_string().contains("decompresses to more than"),
        "{err}"
    );
}

#[test]
fn embedded_default_holds_the_fixtures() {
    assert_eq!(DEFAULT_GENOME_IDS.len(), 8);
    let genomes = Genomes::open_default();
    assert_eq!(genomes.list(None).unwrap(), DEFAULT_GENOME_IDS);
    assert_eq!(genomes.list(Some(2)).unwrap(), &DEFAULT_GENOME_IDS[..2]);
    for id in DEFAULT_GENOME_IDS {
        let bytes = genomes.get(id).unwrap();
        assert_eq!(bytes, fixtures::genome_json(id));
        let value = json(&bytes);
        let stored_id = value["_id"].as_str().unwrap();
        assert!(stored_id.ends_with(&format!("_{id}")), "{stored_id}");
        assert!(value["genome"]["asNEATPatch"].is_string());
    }
    let err = genomes.get("01NOSUCHGENOME").unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    assert!(genomes.describe().contains("embedded"));
    assert!(matches!(
        Genomes::from_config(None).unwrap(),
        Genomes::Embedded(EmbeddedGenomes)
    ));

    // Every fixture genome is embedded.
    let mut ids = fixtures::ids();
    ids.sort();
    assert_eq!(ids, DEFAULT_GENOME_IDS);
}

#[test]
fn genomes_enum_over_a_database() {
    let dir = TempDir::new("enum");
    let db = dir.path("genomes.sqlite");
    cli_database(&db, &fixtures_gzipped());
    let genomes = Genomes::from_config(Some(&db)).unwrap();
    assert!(genomes.describe().contains(&db.display().to_string()));
    let source: &dyn GenomeSource = &genomes;
    assert_eq!(
        source.get(DEFAULT_GENOME_IDS[3]).unwrap(),
        fixtures::genome_json(DEFAULT_GENOME_IDS[3])
    );
    assert_eq!(source.list(None).unwrap(), DEFAULT_GENOME_IDS);
}

#[test]
fn read_only_open_leaves_the_file_untouched() {
    let dir = TempDir::new("readonly");
    let db = dir.path("genomes.sqlite");
    cli_database(&db, &fixtures_gzipped());
    let before_bytes = std::fs::read(&db).unwrap();
    let before_meta = std::fs::metadata(&db).unwrap();
    // Let a write, were there one, show up in the mtime even on coarse-grained file systems.
    std::thread::sleep(Duration::from_millis(20));

    {
        let store = GenomeStore::open(&db).unwrap();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for id in DEFAULT_GENOME_IDS {
                        store.get(id).unwrap();
                    }
                    store.list(None).unwrap();
                    let _ = store.get("01NOSUCHGENOME");
                });
            }
        });
        for id in DEFAULT_GENOME_IDS {
            store.get(id).unwrap();
        }
    }

    let after_meta = std::fs::metadata(&db).unwrap();
    assert_eq!(after_meta.len(), before_meta.len());
    assert_eq!(
        after_meta.modified().unwrap(),
        before_meta.modified().unwrap()
    );
    assert_eq!(std::fs::read(&db).unwrap(), before_bytes);
}

#[test]
fn dropping_a_store_and_reopening_works_on_the_same_thread() {
    let dir = TempDir::new("reopen");
    let db = dir.path("genomes.sqlite");
    cli_database(&db, &fixtures_gzipped());
    for _ in 0..3 {
        let store = GenomeStore::open(&db).unwrap();
        let clone = store.clone();
        drop(store);
        assert_eq!(
            clone.get(DEFAULT_GENOME_IDS[0]).unwrap(),
            fixtures::genome_json(DEFAULT_GENOME_IDS[0])
        );
    }
}
