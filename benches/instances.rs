//! Instances bench: aggregate real-time streams through HAProxy with 1, 2, 3 instances of the
//! server on 127.0.0.1, each instance pinned to its own cores where the machine has enough.
//!
//! HAProxy runs `net/deploy/haproxy.cfg` as deployed (leastconn, `/health` checked every
//! second), with two changes for a loopback bench: a plain `bind` instead of TLS (the bench
//! measures the instances, not the proxy's TLS), and one `server` line per instance of the
//! row. The load is the soak bench's: `--clients` real-time players (common::Player) of 10 s
//! renders of the fixture mix, connecting over `--ramp` seconds and starting renders back to
//! back for `--seconds`; a render refused as busy is asked for again after `retryAfter` (on the
//! same connection, so on the same instance). Each row prints the most streams in progress at
//! once, late chunks, refusals and errors, and the CPU each instance used.
//!
//! Pinning: every instance gets the same number of cores, P = C / (the most instances of a
//! row) on a machine of C cores (at least 1), instance i cores [i * P, (i + 1) * P),
//! and P render threads. Where the instances of a row need more than C cores, none is pinned
//! (they share every core) and each gets `--cpu-budget` of its share, 0.8 x C / N, since none
//! can see the others. HAProxy and the load generator are not pinned: on a small machine they share the
//! instances' cores, which is part of what the bench shows.
//!
//! `cargo bench --bench instances`. Options: `--instances 1,2,3`, `--clients 512`,
//! `--seconds 10`, `--render 10`, `--ramp 1`. Skips, saying why, without haproxy.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Kills and reaps on drop.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `net/deploy/haproxy.cfg` for `servers`, listening on `bind` without TLS.
fn config(servers: &[SocketAddr], bind: SocketAddr) -> String {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("net/deploy/haproxy.cfg"),
    )
    .expect("net/deploy/haproxy.cfg");
    let mut out = String::new();
    for line in template.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server krs") {
            continue;
        }
        if trimmed.starts_with("bind ") {
            out.push_str(&format!("    bind {bind}\n"));
            continue;
        }
        if trimmed.starts_with("http-request set-header X-Forwarded-Proto") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (i, s) in servers.iter().enumerate() {
        out.push_str(&format!("    server krs{} {s} check\n", i + 1));
    }
    out
}

/// Runs the calling (pre-exec) process on `cores` only; its threads inherit it.
fn pin(cores: &[usize]) -> std::io::Result<()> {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn main() {
    let args = Args::from_env();
    let instances = args.list("--instances", &[1, 2, 3]);
    let clients: usize = args.num("--clients", 512);
    let seconds: f64 = args.num("--seconds", 10.0);
    let render: f64 = args.num("--render", 10.0);
    let ramp: f64 = args.num("--ramp", 1.0);
    let haproxy_ok = Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !haproxy_ok {
        println!("skipping the instances bench: `haproxy` is not installed");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fx = fixtures();
    let player = Player {
        start_buffer: Duration::from_millis(100),
        ahead: Duration::from_millis(1000),
    };
    println!("# Instances behind HAProxy: {render} s renders played in real time");
    println!();
    println!(
        "Machine: {}. {clients} players connect through HAProxy (plain TCP on 127.0.0.1, \
         leastconn, /health checked every second) over {ramp} s and render back to back for \
         {seconds} s (fixture (c + k) mod {} by id, binary); refused renders are asked for again \
         after retryAfter. Instance CPU % is of one core.",
        machine(),
        fx.len()
    );
    println!();
    println!(
        "| instances | cores per instance | renders | refused | peak concurrent | late chunks | renders with underrun | first chunk p50 / p99 ms | errors | instance CPU % | HAProxy CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let dir = std::env::temp_dir().join(format!("krs-instances-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut peaks = Vec::new();
    let per = (cores / instances.iter().copied().max().unwrap_or(1)).max(1);
    for &n in &instances {
        let shared = n * per > cores;
        let servers: Vec<ServerProcess> = (0..n)
            .map(|i| {
                let set: Vec<usize> = if shared {
                    (0..cores).collect()
                } else {
                    (i * per..(i + 1) * per).collect()
                };
                let mut flags = vec![
                    "--quiet".to_string(),
                    "--threads".into(),
                    per.to_string(),
                    "--max-connections-per-ip".into(),
                    "4096".into(),
                ];
                if shared {
                    flags.push("--cpu-budget".into());
                    flags.push(format!("{:.2}", 0.8 * cores as f64 / n as f64));
                }
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                ServerProcess::start_with(&flags, move |c| unsafe {
                    c.pre_exec(move || pin(&set));
                })
            })
            .collect();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bind: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        let cfg = dir.join(format!("haproxy-{n}.cfg"));
        std::fs::write(&cfg, config(&addrs, bind)).unwrap();
        let proxy = Proxy(
            Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                // Two descriptors per client, within this machine's limit (not a host's).
                .env("KRS_MAXCONN", (4 * clients + 1000).to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("haproxy starts"),
        );
        let up = Instant::now();
        while TcpStream::connect(bind).is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "haproxy did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let cpu0: Vec<f64> = servers
            .iter()
            .map(|s| cpu_seconds(&s.pid().to_string()))
            .collect();
        let proxy_cpu0 = cpu_seconds(&proxy.0.id().to_string());
        let start = Instant::now();
        let mut next = |c: usize, k: usize| {
            (start.elapsed().as_secs_f64() < seconds)
                .then(|| render_message(&fx[(c + k) % fx.len()], false, render, true))
        };
        let report = run_load(Load {
            addr: bind,
            clients,
            ramp: Duration::from_secs_f64(ramp),
            next_request: &mut next,
            player: Some(player),
            time_limit: Duration::from_secs_f64(seconds + render + 30.0),
            server_pid: None,
        });
        let wall = report.wall.as_secs_f64();
        let instance_cpu: Vec<String> = servers
            .iter()
            .zip(&cpu0)
            .map(|(s, c0)| {
                format!(
                    "{:.0}",
                    (cpu_seconds(&s.pid().to_string()) - c0) / wall * 100.0
                )
            })
            .collect();
        let proxy_cpu = (cpu_seconds(&proxy.0.id().to_string()) - proxy_cpu0) / wall * 100.0;
        let late: u64 = report.renders.iter().map(|r| r.late_chunks).sum();
        let with_underrun = report.renders.iter().filter(|r| r.late_chunks > 0).count();
        let first: Vec<f64> = report.renders.iter().map(|r| ms(r.first_chunk)).collect();
        let (peak, _) = peak_concurrency(&report.renders, |_| 0.0);
        peaks.push((n, peak));
        println!(
            "| {n} | {} | {} | {} | {peak} | {late} | {with_underrun} | {:.1} / {:.1} | {} | {} | {proxy_cpu:.0} |",
            if shared {
                format!("{per} (shared: {n} instances on {cores} cores)")
            } else {
                per.to_string()
            },
            report.renders.len(),
            report.refused,
            pct(&first, 50.0),
            pct(&first, 99.0),
            report.errors.len(),
            instance_cpu.join(" / "),
        );
        for e in report.errors.iter().take(3) {
            eprintln!("{n} instances: {e}");
        }
        drop(proxy);
        drop(servers);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(&(n1, base)) = peaks.first() {
        println!();
        for &(n, peak) in &peaks[1..] {
            println!(
                "{n} instances: {:.2} x the streams of {n1}.",
                peak as f64 / base.max(1) as f64
            );
        }
    }
}
