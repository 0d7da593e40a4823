//! Inputs the fuzz targets once failed on (tests/fuzz/regressions/<target>/), replayed through
//! the same checks on every test run; and the fixture genomes and a few protocol messages as a
//! minimal corpus, so the checks themselves are exercised where no fuzzer runs.

#[path = "fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && !p.ends_with(".gitkeep"));
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn client_messages() {
    for input in inputs("client_message") {
        checks::client_message(&input);
    }
    checks::client_message(br#"{"type":"render","genomeId":"x","duration":1,"batch":true}"#);
    checks::client_message(br#"{"genomeString":"{}","duration":1e308,"sampleRate":-1}"#);
}

#[test]
fn genomes() {
    for input in inputs("genome") {
        checks::genome(&input);
    }
    for id in krs_engine::fixtures::ids() {
        checks::genome(&krs_engine::fixtures::genome_json(&id));
    }
}

#[test]
fn frames() {
    for input in inputs("frames") {
        checks::frames(&input);
    }
    checks::frames(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n\x81\x85\x01\x02\x03\x04hello");
}
