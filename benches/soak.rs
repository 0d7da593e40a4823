//! Soak bench: N clients, each playing 10 s renders back to back in real time, against the real
//! server binary on 127.0.0.1 (a fresh process per N, so RSS and CPU are per level).
//!
//! A client is a player: it starts playback 100 ms after its first chunk and reads from the
//! socket only while it holds less than `--ahead-ms` (default 1000) of unplayed audio, so the
//! server is paced by TCP backpressure as with a real player. A chunk is late (an underrun)
//! when it arrives after its playback time: first chunk + 100 ms + its sample offset / 48 kHz.
//!
//! `cargo bench --bench soak` runs N = 16, 64, 256, 512, 1024 and prints one markdown table and
//! the largest N with zero underruns and zero errors. Options (or env `KRS_SOAK_CLIENTS`,
//! `KRS_SOAK_SECONDS`): `--clients 16,64,256,512,1024`, `--seconds 20` (clients start new
//! renders during this time; in-flight renders then finish), `--render 10` (seconds per
//! render), `--ramp 1` (seconds over which the clients connect), `--ahead-ms 1000`,
//! `--start-buffer-ms 100`, `--format binary|json`, `--search-steps 4` (after the given levels,
//! up to that many extra levels bisect between the largest passing N and the smallest failing
//! one), `--greedy` (clients read as fast as the server sends: first chunks and refusals
//! under a greedy load; nothing can underrun), `--server-args "--cpu-budget 1.5"` (extra server
//! flags). A request the server refuses as busy (`error` with `retryAfter`) is counted as
//! refused, not as an error, and the client asks again after `retryAfter`. Each level ends by
//! seconds + render + 30 s.
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
        (None, None) => vec![16, 64, 256, 512, 1024],
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
    // Greedy clients read as fast as the server sends (no playback, so no underruns).
    let greedy = args.flag("--greedy");
    let server_args: Vec<String> = args
        .value("--server-args")
        .map_or(vec![], |a| a.split_whitespace().map(String::from).collect());
    let fx = fixtures();
    let chunk_ms = 4096.0 / SAMPLE_RATE as f64 * 1000.0;

    if greedy {
        println!("# Soak: {render} s renders read greedily, server binary on 127.0.0.1");
    } else {
        println!("# Soak: {render} s renders played in real time, server binary on 127.0.0.1");
    }
    println!();
    println!(
        "Machine: {}. Load generator: one thread in the bench process, sharing the cores with \
         the server. Each client renders back to back for {seconds} s (fixture (c + k) mod {} \
         by id, {} chunks of 4096 samples = {chunk_ms:.1} ms), playback {} ms after the first \
         chunk, at most {} ms read ahead.",
        machine(),
        fx.len(),
        if binary { "binary" } else { "JSON" },
        player.start_buffer.as_millis(),
        player.ahead.as_millis()
    );
    println!();
    println!(
        "| clients | renders | refused | peak concurrent | late chunks | renders with underrun | min slack ms | first chunk p50 / p99 / max ms | chunk gap p50 / p99 / max ms | server peak RSS MiB | server CPU % | load-gen CPU % | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut best: Option<usize> = None;
    let mut all_errors = Vec::new();
    // The given levels first, then (bounded by --search-steps) bisection between the largest
    // passing level and the smallest failing one above it, to pin down the largest N.
    let search_steps: usize = args.num("--search-steps", 4);
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
            "| {n} | {} | {} | {} | {late} | {with_underrun} | {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.1} | {:.0} | {:.0} | {errors} |",
            report.renders.len(),
            report.refused,
            peak_concurrency(&report.renders),
            min_slack * 1000.0,
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
        if !alive {
            all_errors.push(format!("{n} clients: the server died"));
        }
        all_errors.extend(
            report
                .errors
                .iter()
                .take(5)
                .map(|e| format!("{n} clients: {e}")),
        );
        let ok = late == 0 && errors == 0 && !report.renders.is_empty();
        passed.insert(n, ok);
        if ok {
            best = Some(best.map_or(n, |b| b.max(n)));
        }
    }
    println!();
    match best {
        Some(n) => println!(
            "Largest N with zero underruns and zero errors: **{n}** (refused requests are \
             retried after the server's retryAfter and are not errors)."
        ),
        None => println!("No level ran with zero underruns and zero errors."),
    }
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
