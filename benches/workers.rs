//! Render-worker bench: plays kromosynth-cli's part in an evolution run against the worker port.
//! N clients at once, each rendering M genomes back to back, one connection per render (connect,
//! send the request, take the first message, close), as `ws-gene-evaluation.js` does. Prints
//! renders per second, the render latency percentiles, and errors, per N; then the engine's
//! ceiling for the same mix in-process (every core busy, each render compiling its genome from
//! the JSON and normalizing as the server does for `genomeString`, no sockets), the most any
//! server could serve on these cores.
//!
//! `cargo bench --bench workers` runs against our server (started here with `--worker-port 0`).
//! With `--peer ws://A,ws://B` the same load also goes to those render workers (round robin
//! over the list), e.g. the original's, started by `benches/peer/workers.sh`, which runs this
//! bench with both, so the ratio comes from one run on one machine.
//!
//! Options: `--clients 2,16,64` (N), `--renders 8` (M per client), `--duration 1`,
//! `--rate 16000` (44 of 51 published evolution configurations render at 16 kHz), `--peer URLS`.
//! The mix: the fixture genomes without noise outputs, noteDelta 0, velocity 1, in turn.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tungstenite::Message;

fn main() {
    let args = Args::from_env();
    let levels = args.list("--clients", &[2, 16, 64]);
    let renders: usize = args.num("--renders", 8);
    let duration: f64 = args.num("--duration", 1.0);
    let rate: u32 = args.num("--rate", 16_000);
    let peers: Vec<String> = args
        .value("--peer")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let genomes: Arc<Vec<String>> = Arc::new(
        fixtures()
            .into_iter()
            .filter(|f| !f.has_noise)
            .map(|f| String::from_utf8(f.json).unwrap())
            .collect(),
    );
    let server = ServerProcess::start(&["--quiet", "--worker-port", "0"]);
    let ours = vec![server.worker_url.clone().unwrap()];
    println!("# Render workers: {duration} s renders at {rate} Hz, one connection per render");
    println!();
    println!(
        "Machine: {}. The clients run in this process, one thread each, and share the cores \
         with the servers.",
        machine()
    );
    println!();
    println!("| server | clients | renders | renders/s | latency p50 / p99 / max ms | errors |");
    println!("|---|---:|---:|---:|---|---:|");
    let mut best: Vec<(String, f64)> = Vec::new();
    for (name, urls) in [("ours", &ours), ("peer", &peers)] {
        if urls.is_empty() {
            continue;
        }
        let mut top = 0f64;
        for &clients in &levels {
            let r = run(urls, clients, renders, duration, rate, &genomes);
            top = top.max(r.per_second);
            println!(
                "| {name} | {clients} | {} | {:.1} | {:.1} / {:.1} / {:.1} | {} |",
                r.done,
                r.per_second,
                pct(&r.latencies, 50.0),
                pct(&r.latencies, 99.0),
                pct(&r.latencies, 100.0),
                r.errors
            );
        }
        best.push((name.to_owned(), top));
    }
    let ceiling = in_process(&genomes, renders.max(8), duration, rate);
    let ours = best[0].1;
    println!();
    println!(
        "Engine alone, in-process, every core busy (no sockets, no clients): {ceiling:.1} \
         renders/s; ours served {:.0}% of it.",
        100.0 * ours / ceiling
    );
    if let [_, (_, peer)] = best.as_slice() {
        println!();
        println!(
            "Best renders/s: ours {ours:.1}, peer {peer:.1}: {:.0}x (the engine alone: {:.0}x)",
            ours / peer.max(1e-9),
            ceiling / peer.max(1e-9)
        );
    }
}

/// Renders per second of the mix with every core busy, in-process ([`on_every_core`]), `reps`
/// renders of each genome in all, each compiled from its JSON and normalized, as the worker
/// port does with a `genomeString`; one warm-up pass first, as the server's threads are warm.
fn in_process(genomes: &[String], reps: usize, duration: f64, rate: u32) -> f64 {
    use krs_engine::{render_batch, CompiledGenome, RenderRequest};
    // The server's allocator policy, without which every render here would fault in fresh
    // pages for its buffers.
    kromosynth_render_socket::malloc::keep_freed_memory();
    let request = RenderRequest {
        duration,
        note_delta: 0.0,
        velocity: 1.0,
        sample_rate: rate,
        ..RenderRequest::default()
    };
    let render = |n: usize| {
        let genome = CompiledGenome::from_json(genomes[n % genomes.len()].as_bytes());
        render_batch(&genome.unwrap(), &request, true).unwrap();
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    on_every_core(genomes.len() * cores, render);
    let jobs = reps * genomes.len();
    jobs as f64 / on_every_core(jobs, render).as_secs_f64()
}

struct Outcome {
    done: usize,
    per_second: f64,
    latencies: Vec<f64>,
    errors: usize,
}

fn run(
    urls: &[String],
    clients: usize,
    renders: usize,
    duration: f64,
    rate: u32,
    genomes: &Arc<Vec<String>>,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (urls, genomes, next) = (urls.to_vec(), genomes.clone(), next.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut errors = 0;
                for _ in 0..renders {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let request = json!({"genomeString": genomes[n % genomes.len()],
                        "duration": duration, "noteDelta": 0, "velocity": 1, "useGPU": false,
                        "antiAliasing": false,
                        "frequencyUpdatesApplyToAllPathcNetworkOutputs": false,
                        "sampleRate": rate});
                    let sent = Instant::now();
                    match render_once(&urls[n % urls.len()], &request.to_string(), duration, rate) {
                        Ok(()) => latencies.push(ms(sent.elapsed())),
                        Err(e) => {
                            errors += 1;
                            eprintln!("render failed: {e}");
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().unwrap();
        latencies.extend(l);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    Outcome {
        done: latencies.len(),
        per_second: latencies.len() as f64 / wall,
        latencies,
        errors,
    }
}

fn render_once(url: &str, request: &str, duration: f64, rate: u32) -> Result<(), String> {
    let (mut socket, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(200)));
    }
    socket
        .send(Message::Text(request.into()))
        .map_err(|e| e.to_string())?;
    loop {
        match socket.read().map_err(|e| e.to_string())? {
            Message::Binary(bytes) => {
                let want = 4 * (rate as f64 * duration).round() as usize;
                let _ = socket.close(None);
                return if bytes.len() == want {
                    Ok(())
                } else {
                    Err(format!("{} bytes, expected {want}", bytes.len()))
                };
            }
            Message::Text(text) => return Err(text),
            _ => {}
        }
    }
}
