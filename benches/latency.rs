//! Latency bench: time from sending `render` to the first chunk and to `complete`, against the
//! real server binary on 127.0.0.1.
//!
//! `cargo bench --bench latency` prints two markdown tables:
//! 1. per fixture genome, one client, 4 s renders, binary and JSON chunks, cold and warm:
//!    - cold: the genome is not in the server's compiled-genome cache. Each round starts a fresh
//!      server process and renders every genome once by id (order rotated per round), so each
//!      round gives one cold sample per genome; a 0.1 s render of an inline genome (inline
//!      genomes are never cached) first warms the process (threads, allocator) without caching
//!      any id;
//!    - warm: the same genomes again on that server (cached).
//! 2. time to first chunk with N concurrent clients (all sending at once, closed loop), by id
//!    (warm) and inline (uncached: parsed and compiled on every request);
//! 3. time to first chunk of short renders on their own, then while another connection's
//!    eight 600 s renders of the convolver genome prepare (each evaluates a 600 s impulse
//!    response before its first block) and are never read: what a heavy, stalled client does
//!    to everyone else's first chunk.
//!
//! Options: `--rounds R` (cold samples per genome and format, default 10), `--warm W` (warm
//! renders per genome per round, default 5), `--clients 1,16,64,256`, `--samples S` (renders
//! per concurrency level, default 256), `--duration 4`, `--skip-genomes`, `--skip-concurrency`,
//! `--normalize none|original|peak` (the per-genome table's renders ask the server for that
//! normalization: a normalized stream's first chunk waits for the whole render),
//! `--heavy-rounds 5` (fresh stalled connections in section 3; each round measures
//! `--heavy-samples 20` short renders), `--skip-heavy`.

mod common;

use std::time::Duration;

use common::*;

fn main() {
    let args = Args::from_env();
    let rounds: usize = args.num("--rounds", 10);
    let warm: usize = args.num("--warm", 5);
    let duration: f64 = args.num("--duration", 4.0);
    let levels = args.list("--clients", &[1, 16, 64, 256]);
    let samples: usize = args.num("--samples", 256);
    let fx = fixtures();
    println!("# Latency: {duration} s renders, server binary on 127.0.0.1");
    println!();
    println!(
        "Machine: {}. The load generator runs in this process on one thread and shares the \
         cores with the server.",
        machine()
    );
    let normalize = args.value("--normalize").map(str::to_owned);
    if !args.flag("--skip-genomes") {
        per_genome(&fx, rounds, warm, duration, normalize.as_deref());
    }
    if !args.flag("--skip-concurrency") {
        concurrency(&fx, &levels, samples, duration);
    }
    if !args.flag("--skip-heavy") {
        let server_args: Vec<&str> = args
            .value("--server-args")
            .map_or(vec![], |a| a.split_whitespace().collect());
        heavy_preparations(
            &fx,
            args.num("--heavy-rounds", 5),
            args.num("--heavy-samples", 20),
            &server_args,
        );
    }
}

#[derive(Default)]
struct Cell {
    first: Vec<f64>,
    complete: Vec<f64>,
}

impl Cell {
    fn add(&mut self, s: &RenderStat) {
        self.first.push(ms(s.first_chunk));
        self.complete.push(ms(s.complete));
    }
}

fn quartet(xs: &[f64]) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2}",
        pct(xs, 50.0),
        pct(xs, 90.0),
        pct(xs, 99.0),
        pct(xs, 100.0)
    )
}

fn per_genome(fx: &[Fixture], rounds: usize, warm: usize, duration: f64, normalize: Option<&str>) {
    // cells[format][genome][cold=0 / warm=1]
    let mut cells: Vec<Vec<[Cell; 2]>> = (0..2)
        .map(|_| fx.iter().map(|_| Default::default()).collect())
        .collect();
    let mut errors = Vec::new();
    for (fi, binary) in [true, false].into_iter().enumerate() {
        for round in 0..rounds {
            let server = ServerProcess::start(&["--quiet"]);
            // The plan of this server's single connection: (genome, is_warm) per render.
            let n = fx.len();
            let mut plan: Vec<Option<(usize, usize)>> = vec![None]; // inline warm-up
            plan.extend((0..n).map(|k| Some(((k + round) % n, 0))));
            for _ in 0..warm {
                plan.extend((0..n).map(|k| Some(((k + round) % n, 1))));
            }
            let mut next = |_client: usize, nth: usize| -> Option<String> {
                match plan.get(nth)? {
                    None => Some(render_message(&fx[round % n], true, 0.1, binary)),
                    Some((g, _)) => {
                        let message = render_message(&fx[*g], false, duration, binary);
                        Some(match normalize {
                            None => message,
                            Some(name) => {
                                let mut m: serde_json::Value =
                                    serde_json::from_str(&message).unwrap();
                                m["normalize"] = name.into();
                                m.to_string()
                            }
                        })
                    }
                }
            };
            let report = run_load(Load {
                addr: server.addr,
                clients: 1,
                ramp: Duration::ZERO,
                next_request: &mut next,
                player: None,
                time_limit: Duration::from_secs(300),
                server_pid: None,
            });
            errors.extend(report.errors);
            for s in &report.renders {
                if let Some(Some((g, kind))) = plan.get(s.nth) {
                    cells[fi][*g][*kind].add(s);
                }
            }
        }
    }
    println!();
    println!(
        "## Per genome, 1 client, {duration} s renders ({rounds} cold and {} warm samples per \
         cell), normalize {}",
        rounds * warm,
        normalize.unwrap_or("none")
    );
    println!();
    println!("Times in ms, p50 / p90 / p99 / max. Cold: fresh server process, genome not cached.");
    println!();
    println!(
        "| genome | format | first chunk, cold | first chunk, warm | complete, cold | complete, warm |"
    );
    println!("|---|---|---|---|---|---|");
    let mut all: Vec<[Cell; 2]> = vec![Default::default(), Default::default()];
    for (fi, format) in ["binary", "json"].iter().enumerate() {
        for (g, f) in fx.iter().enumerate() {
            let [cold, warm] = &cells[fi][g];
            println!(
                "| {} | {format} | {} | {} | {} | {} |",
                &f.id,
                quartet(&cold.first),
                quartet(&warm.first),
                quartet(&cold.complete),
                quartet(&warm.complete)
            );
            for k in 0..2 {
                all[fi][k].first.extend(&cells[fi][g][k].first);
                all[fi][k].complete.extend(&cells[fi][g][k].complete);
            }
        }
    }
    for (fi, format) in ["binary", "json"].iter().enumerate() {
        let [cold, warm] = &all[fi];
        println!(
            "| **all** | {format} | {} | {} | {} | {} |",
            quartet(&cold.first),
            quartet(&warm.first),
            quartet(&cold.complete),
            quartet(&warm.complete)
        );
    }
    print_errors(&errors);
}

fn concurrency(fx: &[Fixture], levels: &[usize], samples: usize, duration: f64) {
    let mut server = ServerProcess::start(&["--quiet"]);
    let pid = server.pid();
    println!();
    println!("## Time to first chunk with N concurrent clients, {duration} s renders");
    println!();
    println!(
        "All N clients send at once; each sends its next render when the previous one completed \
         (greedy readers), until about {samples} renders per row. Genome of client c's k-th render: \
         fixture (c + k) mod {}. By id: cached (warmed first). Inline: compiled on every request. \
         Times in ms.",
        fx.len()
    );
    println!();
    println!(
        "| clients | format | genome | renders | first chunk p50 / p90 / p99 / max | complete p50 / p99 | renders/s | server CPU s | peak RSS MiB | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    warm_cache(server.addr, fx);
    let mut errors = Vec::new();
    for &n in levels {
        let per_client = samples.div_ceil(n).max(1);
        for binary in [true, false] {
            for inline in [false, true] {
                let mut next = |c: usize, k: usize| {
                    (k < per_client)
                        .then(|| render_message(&fx[(c + k) % fx.len()], inline, duration, binary))
                };
                let report = run_load(Load {
                    addr: server.addr,
                    clients: n,
                    ramp: Duration::ZERO,
                    next_request: &mut next,
                    player: None,
                    time_limit: Duration::from_secs(600),
                    server_pid: Some(pid),
                });
                let first: Vec<f64> = report.renders.iter().map(|s| ms(s.first_chunk)).collect();
                let complete: Vec<f64> = report.renders.iter().map(|s| ms(s.complete)).collect();
                println!(
                    "| {n} | {} | {} | {} | {} | {:.1} / {:.1} | {:.1} | {:.2} | {:.1} | {} |",
                    if binary { "binary" } else { "json" },
                    if inline { "inline" } else { "by id" },
                    report.renders.len(),
                    quartet(&first),
                    pct(&complete, 50.0),
                    pct(&complete, 99.0),
                    report.renders.len() as f64 / report.wall.as_secs_f64(),
                    report.server_cpu_s,
                    report.server_peak_rss_kib as f64 / 1024.0,
                    report.errors.len()
                );
                errors.extend(report.errors);
            }
        }
    }
    assert!(server.is_alive(), "the server died during the bench");
    print_errors(&errors);
}

/// The fixture genome with a convolver whose impulse response is a whole-duration CPPN output.
const CONVOLVER: &str = "01M88X8EMSXWZE35NP3PBFS4V7";

fn heavy_preparations(fx: &[Fixture], rounds: usize, samples: usize, server_args: &[&str]) {
    let mut command = vec!["--quiet"];
    command.extend_from_slice(server_args);
    let mut server = ServerProcess::start(&command);
    let pid = server.pid();
    let short = 0.25;
    println!();
    println!("## First chunk beside heavy preparations, {short} s renders");
    println!();
    println!(
        "One client renders {samples} short renders one after another (fixture k mod {}, by id, \
         binary, cached), on their own and then right after another connection asked for eight \
         600 s renders of {CONVOLVER} and reads nothing ({rounds} rounds, a fresh stalled \
         connection each round, closed after it). \"starting\": renders still without a first \
         chunk when the round's last short render completed (the heavy ones still preparing); \
         \"admitted\": heavy renders in progress 50 ms after they were asked for (the others \
         were refused as busy). Server flags: {}. Times in ms.",
        fx.len(),
        if server_args.is_empty() {
            "the defaults".to_string()
        } else {
            server_args.join(" ")
        }
    );
    println!();
    println!("| beside | admitted | renders | first chunk p50 / p90 / p99 / max | starting at the end p50 / min | errors |");
    println!("|---|---|---|---|---|---|");
    warm_cache(server.addr, fx);
    let mut errors = Vec::new();
    for heavy in [false, true] {
        let mut first = Vec::new();
        let mut starting = Vec::new();
        let mut admitted = Vec::new();
        let mut measured = 0;
        for _ in 0..rounds {
            let stalled = heavy.then(|| {
                let (mut socket, _) =
                    tungstenite::connect(format!("ws://{}", server.addr)).expect("connect");
                for i in 0..8 {
                    let m = serde_json::json!({"type": "render", "genomeId": CONVOLVER,
                        "duration": 600, "requestId": i, "format": "binary"});
                    socket
                        .send(tungstenite::Message::Text(m.to_string()))
                        .expect("send");
                }
                socket
            });
            if heavy {
                std::thread::sleep(Duration::from_millis(50));
                admitted.push(server.stats()["renders"].as_f64().unwrap_or(0.0));
            }
            let mut next = |_: usize, k: usize| {
                (k < samples).then(|| render_message(&fx[k % fx.len()], false, short, true))
            };
            let report = run_load(Load {
                addr: server.addr,
                clients: 1,
                ramp: Duration::ZERO,
                next_request: &mut next,
                player: None,
                time_limit: Duration::from_secs(120),
                server_pid: Some(pid),
            });
            starting.push(server.stats()["startingRenders"].as_f64().unwrap_or(0.0));
            measured += report.renders.len();
            first.extend(report.renders.iter().map(|r| ms(r.first_chunk)));
            errors.extend(report.errors);
            drop(stalled);
            // The stalled renders end with their connection; the next round starts without them.
            server.wait_for_no_renders(Duration::from_secs(30));
        }
        println!(
            "| {} | {} | {measured} | {} | {:.0} / {:.0} | {} |",
            if heavy {
                "8 x 600 s convolver, stalled"
            } else {
                "nothing"
            },
            if heavy {
                format!("{:.0}", pct(&admitted, 50.0))
            } else {
                "-".into()
            },
            quartet(&first),
            pct(&starting, 50.0),
            starting.iter().copied().fold(f64::INFINITY, f64::min),
            errors.len()
        );
    }
    assert!(server.is_alive(), "the server died during the bench");
    print_errors(&errors);
}

fn print_errors(errors: &[String]) {
    if errors.is_empty() {
        return;
    }
    println!();
    println!("{} errors; the first ones:", errors.len());
    for e in errors.iter().take(10) {
        println!("- {e}");
    }
}
