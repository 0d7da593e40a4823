//! Soak bench: N clients, each rendering 10 s renders back to back, against the real server
//! binary on 127.0.0.1 (a fresh process per N and mode, so RSS and CPU are per level), first
//! as real-time players, then as greedy readers.
//!
//! A player starts playback 100 ms after its first chunk and reads from the socket only while
//! it holds less than `--ahead-ms` (default 1000) of unplayed audio, so the server is paced by
//! TCP backpressure as with a real player. A chunk is late (an underrun) when it arrives after
//! its playback time: first chunk + 100 ms + its sample offset / 48 kHz. A greedy reader reads
//! as fast as the server sends (nothing can underrun; its first chunks and the refusals count).
//! A request the server refuses as busy (`error` with `retryAfter`) is counted as refused, not
//! as an error, and the client asks again after `retryAfter`.
//!
//! Before the levels it measures the capacity the engine predicts for the same mix: seconds of
//! audio per second with every core rendering in-process (`throughput`'s "all cores busy"), for
//! the same genomes, request and duration. After them it prints the largest number of streams
//! that played at once at a level with zero underruns and zero errors, and its ratio to that
//! prediction.
//!
//! `cargo bench --bench soak` runs N = 1, 64, 256, 512, 1024, paced then greedy. Options (or env
//! `KRS_SOAK_CLIENTS`, `KRS_SOAK_SECONDS`): `--clients 1,64,256,512,1024`, `--seconds 20` (clients
//! start new renders during this time; in-flight renders then finish), `--render 10` (seconds
//! per render), `--ramp 1` (seconds over which the clients connect), `--ahead-ms 1000`,
//! `--start-buffer-ms 100`, `--format binary|json`, `--modes paced,greedy`, `--search-steps 4`
//! (after the given levels, up to that many extra levels bisect between the largest passing N
//! and the smallest failing one), `--server-args "--cpu-budget 1.5"` (extra server flags).
//! Each level ends by seconds + render + 30 s.
//!
//! All clients run on this process's one thread (mio), but it still shares the machine's cores
//! with the server: its CPU time is printed next to the server's.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn main() {
    let args = Args::from_env();
    let env_clients = std::env::var("KRS_SOAK_CLIENTS").ok();
    let levels = match (args.value("--clients"), env_clients.as_deref()) {
        (Some(_), _) => args.list("--clients", &[]),
        (None, Some(v)) => v.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        (None, None) => vec![1, 64, 256, 512, 1024],
    };
    let seconds: f64 = args.num(
        "--seconds",
        std::env::var("KRS_SOAK_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20.0),
    );
    let render: f64 = args.num("--render", 10.0);
    let ramp: f64 = args.num("--ramp", 1.0);
    let player = Player {
        start_buffer: Duration::from_millis(args.num("--start-buffer-ms", 100)),
        ahead: Duration::from_millis(args.num("--ahead-ms", 1000)),
    };
    let binary = args.value("--format").unwrap_or("binary") != "json";
    let modes: Vec<String> = args
        .value("--modes")
        .unwrap_or("paced,greedy")
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    let server_args: Vec<String> = args
        .value("--server-args")
        .map_or(vec![], |a| a.split_whitespace().map(String::from).collect());
    let search_steps: usize = args.num("--search-steps", 4);
    let fx = fixtures();
    let chunk_ms = 4096.0 / SAMPLE_RATE as f64 * 1000.0;

    println!("# Soak: {render} s renders, server binary on 127.0.0.1");
    println!();
    println!(
        "Machine: {}. Load generator: one thread in the bench process, sharing the cores with \
         the server. Each client renders back to back for {seconds} s (fixture (c + k) mod {} \
         by id, {} chunks of 4096 samples = {chunk_ms:.1} ms); a player starts playback {} ms \
         after the first chunk and reads at most {} ms ahead. Server flags: {}.",
        machine(),
        fx.len(),
        if binary { "binary" } else { "JSON" },
        player.start_buffer.as_millis(),
        player.ahead.as_millis(),
        if server_args.is_empty() {
            "the defaults".to_string()
        } else {
            server_args.join(" ")
        }
    );
    let compiled: Vec<std::sync::Arc<krs_engine::CompiledGenome>> = fx
        .iter()
        .map(|f| std::sync::Arc::new(krs_engine::CompiledGenome::from_json(&f.json).unwrap()))
        .collect();
    let request = krs_engine::RenderRequest {
        duration: render,
        ..Default::default()
    };
    // The prediction is the throughput bench's: the mix rendered in-process with every core
    // busy. Each genome's own real-time factor (also all cores busy) weighs the streams in
    // progress, since the ones admitted at a peak need not be an even mix.
    let predicted = all_cores_busy_real_time(&compiled, std::slice::from_ref(&request), 2);
    let per_genome: Vec<f64> = compiled
        .iter()
        .map(|g| {
            all_cores_busy_real_time(std::slice::from_ref(g), std::slice::from_ref(&request), 4)
        })
        .collect();
    let mean_cost = per_genome.iter().map(|x| 1.0 / x).sum::<f64>() / per_genome.len() as f64;
    println!();
    println!(
        "Predicted capacity: **{predicted:.0}** real-time streams of this mix (the engine \
         in-process renders it at {predicted:.0}x real time with all cores busy). Each genome \
         alone, all cores busy: {} x real time. Refused clients ask again, so the streams \
         admitted at a peak lean towards cheaper genomes: \"peak load\" is the largest sum, \
         over the streams in progress at one moment, of each stream's share of the predicted \
         capacity (1 / {predicted:.0}, scaled by its genome's cost relative to the mix's mean).",
        per_genome
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut all_errors = Vec::new();
    let mut best_load = 0.0f64;
    let load_of = |r: &RenderStat| {
        1.0 / per_genome[(r.client + r.nth) % per_genome.len()] / mean_cost / predicted
    };
    for mode in &modes {
        let greedy = match mode.as_str() {
            "paced" => false,
            "greedy" => true,
            other => panic!("--modes: {other} is neither paced nor greedy"),
        };
        println!();
        println!(
            "## {}",
            if greedy {
                "Greedy readers"
            } else {
                "Real-time players"
            }
        );
        println!();
        println!(
        "| clients | renders | refused | peak concurrent | peak load | late chunks | renders with underrun | min slack ms | first chunk p50 / p99 / max ms | chunk gap p50 / p99 / max ms | server peak RSS MiB | server CPU % | load-gen CPU % | errors |"
    );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut best: Option<usize> = None;
        // First chunks of every level of this mode, by genome: the mix's p99 is mostly the
        // convolver genomes, which evaluate their whole impulse response before a first block.
        let mut first_by_genome: Vec<Vec<f64>> = vec![Vec::new(); fx.len()];
        // The given levels first, then (bounded by --search-steps) bisection between the largest
        // passing level and the smallest failing one above it, to pin down the largest N.
        let mut queue: std::collections::VecDeque<usize> = levels.iter().copied().collect();
        let mut passed: std::collections::BTreeMap<usize, bool> = Default::default();
        let mut steps = 0;
        loop {
            let n = match queue.pop_front() {
                Some(n) => n,
                None => {
                    let lo = passed.iter().filter(|(_, ok)| **ok).map(|(n, _)| *n).max();
                    let lo_n = lo.unwrap_or(0);
                    let hi = passed
                        .iter()
                        .filter(|(n, ok)| !**ok && **n > lo_n)
                        .map(|(n, _)| *n)
                        .min();
                    let Some(hi) = hi else { break };
                    // Close enough: within an eighth of the passing level (or adjacent).
                    if steps >= search_steps || hi - lo_n <= (lo_n / 8).max(1) {
                        break;
                    }
                    steps += 1;
                    (lo_n + hi) / 2
                }
            };
            if n == 0 || passed.contains_key(&n) {
                continue;
            }
            let mut command: Vec<&str> = vec!["--quiet"];
            command.extend(server_args.iter().map(String::as_str));
            let mut server = ServerProcess::start(&command);
            let start = Instant::now();
            let mut next = |c: usize, k: usize| {
                (start.elapsed().as_secs_f64() < seconds)
                    .then(|| render_message(&fx[(c + k) % fx.len()], false, render, binary))
            };
            let report = run_load(Load {
                addr: server.addr,
                clients: n,
                ramp: Duration::from_secs_f64(ramp),
                next_request: &mut next,
                player: (!greedy).then_some(player),
                time_limit: Duration::from_secs_f64(seconds + render + 30.0),
                server_pid: Some(server.pid()),
            });
            let alive = server.is_alive();
            let peak = peak_concurrency(&report.renders, load_of);
            let late: u64 = report.renders.iter().map(|r| r.late_chunks).sum();
            let with_underrun = report.renders.iter().filter(|r| r.late_chunks > 0).count();
            let min_slack = report
                .renders
                .iter()
                .map(|r| r.min_slack)
                .fold(f64::INFINITY, f64::min);
            let first: Vec<f64> = report.renders.iter().map(|r| ms(r.first_chunk)).collect();
            let wall = report.wall.as_secs_f64();
            let errors = report.errors.len() + usize::from(!alive);
            println!(
            "| {n} | {} | {} | {} | {:.2} | {late} | {with_underrun} | {} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.1} | {:.0} | {:.0} | {errors} |",
            report.renders.len(),
            report.refused,
            peak.0,
            peak.1,
            if min_slack.is_finite() {
                format!("{:.1}", min_slack * 1000.0)
            } else {
                "-".into()
            },
            pct(&first, 50.0),
            pct(&first, 99.0),
            pct(&first, 100.0),
            pct(&report.gaps_ms, 50.0),
            pct(&report.gaps_ms, 99.0),
            pct(&report.gaps_ms, 100.0),
            report.server_peak_rss_kib as f64 / 1024.0,
            report.server_cpu_s / wall * 100.0,
            report.client_cpu_s / wall * 100.0,
        );
            for r in &report.renders {
                first_by_genome[(r.client + r.nth) % fx.len()].push(ms(r.first_chunk));
            }
            if !alive {
                all_errors.push(format!("{mode}, {n} clients: the server died"));
            }
            all_errors.extend(
                report
                    .errors
                    .iter()
                    .take(5)
                    .map(|e| format!("{mode}, {n} clients: {e}")),
            );
            let ok = late == 0 && errors == 0 && !report.renders.is_empty();
            passed.insert(n, ok);
            if ok {
                best = Some(best.map_or(n, |b| b.max(n)));
                if !greedy {
                    best_load = best_load.max(peak.1);
                }
            }
        }
        println!();
        println!("First chunk by genome, every level above:");
        println!();
        println!("| genome | renders | first chunk p50 / p99 / max ms |");
        println!("|---|---|---|");
        for (f, first) in fx.iter().zip(&first_by_genome) {
            println!(
                "| {} | {} | {:.1} / {:.1} / {:.1} |",
                f.id,
                first.len(),
                pct(first, 50.0),
                pct(first, 99.0),
                pct(first, 100.0)
            );
        }
        println!();
        match best {
            Some(n) => println!(
                "Largest N with zero underruns and zero errors: **{n}** clients (refused requests \
             are retried after the server's retryAfter and are not errors)."
            ),
            None => println!("No level ran with zero underruns and zero errors."),
        }
    }
    if modes.iter().any(|m| m == "paced") {
        println!();
        println!(
            "Largest peak load with zero underruns: **{best_load:.2}** of the predicted \
             capacity (at most {predicted:.0} streams of this mix)."
        );
    }
    println!();
    println!(
        "Server CPU % is of one core ({} cores = {}%). Chunk gap: time between consecutive chunk \
         arrivals of one render; a paced reader settles at one chunk per {chunk_ms:.1} ms.",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::thread::available_parallelism().map_or(1, |n| n.get()) * 100
    );
    if !all_errors.is_empty() {
        println!();
        println!("Errors (first ones per level):");
        for e in &all_errors {
            println!("- {e}");
        }
    }
}
