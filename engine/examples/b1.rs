fn main() {
    let dir = std::path::PathBuf::from("tests/fixtures/reference");
    let id = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(dir.join(format!("{id}.genome.json"))).unwrap();
    let c = krs_engine::CompiledGenome::from_json(&bytes).unwrap();
    let req = krs_engine::RenderRequest {
        duration: 4.0,
        note_delta: 0.0,
        velocity: 0.5,
        seed: 1,
    };
    let mut total = std::time::Duration::ZERO;
    for _ in 0..200 {
        let mut r = krs_engine::Render::new(&c, &req).unwrap();
        let mut out = [0f32; 128];
        let t = std::time::Instant::now();
        r.next_block(&mut out);
        total += t.elapsed();
    }
    println!("block1 avg {:?}", total / 200);
}
