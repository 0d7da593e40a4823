//! The README's parity and speed table: every fixture request rendered by `render_batch`,
//! compared with the original's render (SNR, max abs error, differing samples) and timed
//! against the original's own `timing.total_ms` from the fixture index (same machine type).
//! Also the time to the first chunk (4096 frames): `Render::new` plus 32 blocks.
//!
//! `cargo bench --bench parity_table` (all cores); `RAYON_NUM_THREADS=1 cargo bench --bench
//! parity_table` for one core. Times are the best of `RUNS`. The table is made on a worker of
//! rayon's global pool, as the server renders on its pool's workers: with one thread, the
//! CPPN prefetches then run on the rendering thread too, so "one core" is one thread.

use std::path::PathBuf;
use std::time::Instant;

use krs_engine::difference::{rms, Difference};
use krs_engine::{render_batch, CompiledGenome, Render, RenderRequest};

const RUNS: usize = 5;

fn read_f32(path: &PathBuf) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    rayon::scope(|_| table());
}

fn table() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    println!(
        "threads: {}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into())
    );
    println!(
        "| genome | noteDelta | velocity | s | SNR dB | max abs err | first chunk ms | ours ms | original ms | speed-up |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for g in index["genomes"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        let noise = g["hasNoise"].as_bool().unwrap();
        let json = std::fs::read(dir.join(format!("{id}.genome.json"))).unwrap();
        let genome = CompiledGenome::from_json(&json).unwrap();
        for r in g["renders"].as_array().unwrap() {
            let request = RenderRequest {
                duration: r["duration"].as_f64().unwrap(),
                note_delta: r["noteDelta"].as_f64().unwrap(),
                velocity: r["velocity"].as_f64().unwrap(),
                seed: 1,
                ..RenderRequest::default()
            };
            let ours = render_batch(&genome, &request, true).unwrap();
            let reference = read_f32(&dir.join(r["file"].as_str().unwrap()));
            let quality = if noise {
                format!(
                    "noise: RMS {:.4} vs {:.4} | - ",
                    rms(&ours),
                    rms(&reference)
                )
            } else {
                let d = Difference::of(&ours, &reference);
                let snr = if d.differing == 0 {
                    "inf (bit-exact)".to_string()
                } else {
                    format!("{:.1}", d.snr_db)
                };
                format!("{snr} | {:.1e}", d.max_abs_error)
            };
            let first = best_ms(|| {
                let mut render = Render::new(&genome, &request).unwrap();
                let mut block = [0.0f32; 128];
                for _ in 0..32 {
                    render.next_block(&mut block);
                }
            });
            let total = best_ms(|| {
                render_batch(&genome, &request, true).unwrap();
            });
            let original = r["timing"]["total_ms"].as_f64().unwrap();
            ratios.push(original / total);
            println!(
                "| {id} | {} | {} | {} | {quality} | {first:.2} | {total:.1} | {original:.0} | {:.0}x |",
                request.note_delta,
                request.velocity,
                request.duration,
                original / total
            );
        }
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "\nspeed-up vs the original: min {:.0}x, median {:.0}x, max {:.0}x",
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
}
