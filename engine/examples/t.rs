use std::time::Instant;
fn main() {
    let dir = std::path::PathBuf::from("tests/fixtures/reference");
    let id = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(dir.join(format!("{id}.genome.json"))).unwrap();
    for _ in 0..8 {
        let t = Instant::now();
        let c = krs_engine::CompiledGenome::from_json(&bytes).unwrap();
        let t1 = t.elapsed();
        let req = krs_engine::RenderRequest {
            duration: 4.0,
            note_delta: 0.0,
            velocity: 0.5,
            seed: 1,
        };
        let mut r = krs_engine::Render::new(&c, &req).unwrap();
        let t2 = t.elapsed();
        let f0 = r.cppn_frames_ready();
        let mut out = [0f32; 128];
        r.next_block(&mut out);
        let t3 = t.elapsed();
        eprintln!(
            "ready {} -> {} of {}",
            f0,
            r.cppn_frames_ready(),
            r.total_frames()
        );
        for _ in 1..32 {
            r.next_block(&mut out);
        }
        let t4 = t.elapsed();
        println!(
            "compile {:?} new {:?} block1 {:?} 32 blocks {:?}",
            t1,
            t2 - t1,
            t3 - t2,
            t4 - t3
        );
    }
}
#[allow(dead_code)]
fn alloc_probe() {}
