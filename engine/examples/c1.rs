fn main() {
    let dir = std::path::PathBuf::from("tests/fixtures/reference");
    let id = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(dir.join(format!("{id}.genome.json"))).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..300 {
        let c = krs_engine::CompiledGenome::from_json(&bytes).unwrap();
        std::hint::black_box(c);
    }
    println!(
        "compile avg {:?} ({} bytes)",
        t.elapsed() / 300,
        bytes.len()
    );
}
