fn rss_kib() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4
}
fn main() {
    let dir = std::path::PathBuf::from("tests/fixtures/reference");
    let id = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(dir.join(format!("{id}.genome.json"))).unwrap();
    let c = krs_engine::CompiledGenome::from_json(&bytes).unwrap();
    let req = krs_engine::RenderRequest {
        duration: 60.0,
        note_delta: 0.0,
        velocity: 0.5,
        seed: 1,
    };
    let mut renders = Vec::new();
    let before = rss_kib();
    for _ in 0..8 {
        let mut r = krs_engine::Render::new(&c, &req).unwrap();
        let mut out = [0f32; 128];
        for _ in 0..100 {
            r.next_block(&mut out);
        }
        eprintln!("lazy bytes {}", r.lazy_output_bytes());
        renders.push(r);
    }
    println!(
        "per render after 100 blocks: {} KiB",
        (rss_kib() - before) / 8
    );
}
