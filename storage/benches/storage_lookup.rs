//! Genome lookup cost per reference genome: SQLite lookup + gunzip (+ JSON parse), warm (this
//! thread's connection and cached statement) and cold (a new store, i.e. open + validate + first
//! lookup).

use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use flate2::write::GzEncoder;
use flate2::Compression;
use krs_engine::fixtures;
use krs_storage::{GenomeStore, DEFAULT_GENOME_IDS};
use rusqlite::Connection;

/// kromosynth-cli's compression level.
const CLI_GZIP_LEVEL: u32 = 9;

/// A genomes.sqlite as kromosynth-cli writes it, holding the reference genomes.
fn build_database(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bench dir");
    let db = dir.join("genomes.sqlite");
    let conn = Connection::open(&db).expect("create db");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS genomes (id TEXT PRIMARY KEY, data BLOB);
         CREATE TABLE IF NOT EXISTS metadata (key TEXT PRIMARY KEY, value TEXT);",
    )
    .expect("schema");
    for id in DEFAULT_GENOME_IDS {
        let mut gz = GzEncoder::new(Vec::new(), Compression::new(CLI_GZIP_LEVEL));
        gz.write_all(&fixtures::genome_json(id)).expect("gzip");
        let data = gz.finish().expect("gzip");
        conn.execute(
            "INSERT OR REPLACE INTO genomes (id, data) VALUES (?, ?)",
            (id, data),
        )
        .expect("insert");
    }
    db
}

fn bench(c: &mut Criterion, db: &Path) {
    let store = GenomeStore::open(db).expect("open");

    let mut warm = c.benchmark_group("warm_get");
    for id in DEFAULT_GENOME_IDS {
        warm.throughput(Throughput::Bytes(fixtures::genome_json(id).len() as u64));
        warm.bench_with_input(BenchmarkId::from_parameter(id), id, |b, id| {
            b.iter(|| store.get(black_box(id)).expect("get"))
        });
    }
    warm.finish();

    let mut warm_parse = c.benchmark_group("warm_get_parse");
    for id in DEFAULT_GENOME_IDS {
        warm_parse.throughput(Throughput::Bytes(fixtures::genome_json(id).len() as u64));
        warm_parse.bench_with_input(BenchmarkId::from_parameter(id), id, |b, id| {
            b.iter(|| {
                let json = store.get(black_box(id)).expect("get");
                serde_json::from_slice::<serde_json::Value>(&json).expect("json")
            })
        });
    }
    warm_parse.finish();

    let mut cold = c.benchmark_group("cold_open_get_parse");
    for id in DEFAULT_GENOME_IDS {
        cold.throughput(Throughput::Bytes(fixtures::genome_json(id).len() as u64));
        cold.bench_with_input(BenchmarkId::from_parameter(id), id, |b, id| {
            b.iter(|| {
                // Dropping the store at the end of the iteration closes its connection, so every
                // iteration opens, validates and prepares afresh.
                let store = GenomeStore::open(black_box(db)).expect("open");
                let json = store.get(black_box(id)).expect("get");
                serde_json::from_slice::<serde_json::Value>(&json).expect("json")
            })
        });
    }
    cold.finish();
}

fn main() {
    let dir = std::env::temp_dir().join(format!("krs-storage-bench-{}", std::process::id()));
    let db = build_database(&dir);
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &db);
    criterion.final_summary();
    let _ = std::fs::remove_dir_all(&dir);
}
