//! Three instances behind HAProxy (`net/deploy/haproxy.cfg`, TLS at the proxy with a
//! certificate made here by openssl), 150 Node.js clients over `wss://`. One instance gets
//! SIGTERM mid-run (its streams finish, it exits 0), another SIGKILL (its clients start over
//! and succeed); every render is bit-exact with the engine's, and every instance served some.
//! Skips, saying why, without haproxy, openssl, node or the clients' `ws` package.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const CLIENTS: usize = 150;
const PER_CLIENT: usize = 4;
const LIMIT: Duration = Duration::from_secs(60);

fn missing_tool() -> Option<String> {
    for (tool, arg) in [
        ("haproxy", "-v"),
        ("openssl", "version"),
        ("node", "--version"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let ws = clients_dir().join("node_modules/ws");
    (!ws.is_dir()).then(|| format!("{} is missing (npm ci in tests/clients)", ws.display()))
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// FNV-1a (32 bit) of the samples' little-endian f32 bytes, as the Node client hashes them.
fn fnv1a(samples: &[f32]) -> u64 {
    let mut h: u32 = 0x811c_9dc5;
    for s in samples {
        for b in s.to_le_bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    u64::from(h)
}

/// Kills and reaps on drop.
struct Proxy(Child);
impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn completed(server: &ServerProcess) -> usize {
    server.log_text().matches("outcome=complete").count()
}

#[test]
fn three_instances_behind_haproxy_survive_a_drain_and_a_kill() {
    if let Some(why) = missing_tool() {
        eprintln!("skipping the HAProxy test: {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("krs-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert, pem) = (
        dir.join("key.pem"),
        dir.join("cert.pem"),
        dir.join("tls.pem"),
    );
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl made the certificate");
    let mut both = std::fs::read(&cert).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();

    let mut servers: Vec<ServerProcess> = (0..3)
        .map(|_| ServerProcess::start(&["--drain-timeout", "60"]))
        .collect();
    // A free port for the proxy (taken back by the kernel when the listener drops).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("net/deploy/haproxy.cfg");
    let haproxy = |check: bool| {
        let mut command = Command::new("haproxy");
        command
            .arg(if check { "-c" } else { "-db" })
            .arg("-f")
            .arg(&config)
            .env("KRS_BIND", format!("127.0.0.1:{port}"))
            .env("KRS_TLS_PEM", &pem)
            // The test machine's descriptor limit, not a host's.
            .env("KRS_MAXCONN", "2000");
        for (i, s) in servers.iter().enumerate() {
            command.env(format!("KRS_SERVER{}", i + 1), s.addr.to_string());
        }
        command
    };
    let checked = haproxy(true).output().unwrap();
    assert!(checked.status.success(), "haproxy -c: {checked:?}");
    let proxy_log = dir.join("haproxy.log");
    let mut proxy = Proxy(
        haproxy(false)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&proxy_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let up = wait_until(LIMIT, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() || proxy.0.try_wait().unwrap().is_some()
    });
    let log = || std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(
        up && proxy.0.try_wait().unwrap().is_none(),
        "haproxy listens: {}",
        log()
    );

    // Two cheap deterministic genomes at a few settings; every request is checked against the
    // engine's render of the same settings.
    let settings: Vec<(String, f64, f64)> = deterministic_ids()
        .into_iter()
        .filter(|id| id == GENOME || id == "01M88X7PY07G2VCJFN58PEHATX")
        .flat_map(|id| [(id.clone(), 0.0, 2.0), (id, 7.0, 3.0)])
        .collect();
    let requests: Vec<Value> = settings
        .iter()
        .map(|(id, note, duration)| {
            json!({"genomeId": id, "noteDelta": note, "duration": duration, "velocity": 0.5})
        })
        .collect();
    let want: Vec<(usize, u64)> = settings
        .iter()
        .map(|(id, note, duration)| {
            let samples = reference(id, &request(*duration, *note, 0.5));
            (samples.len(), fnv1a(&samples))
        })
        .collect();

    let mut clients = Command::new("node")
        .current_dir(clients_dir())
        .arg("balanced-client.js")
        .arg(format!("wss://127.0.0.1:{port}"))
        .arg(CLIENTS.to_string())
        .arg(PER_CLIENT.to_string())
        .arg(serde_json::to_string(&requests).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut output = String::new();
    let mut stdout = clients.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        stdout.read_to_string(&mut output).unwrap();
        output
    });

    // Mid-run: once every instance has finished some renders, drain the first; once more are
    // done elsewhere, kill the second.
    let total = CLIENTS * PER_CLIENT;
    assert!(
        wait_until(LIMIT, || servers.iter().all(|s| completed(s) >= 10)),
        "every instance serves renders"
    );
    servers[0].signal(libc::SIGTERM);
    let done_at_term: usize = servers.iter().map(completed).sum();
    assert!(
        done_at_term < total,
        "the run was still going at SIGTERM ({done_at_term} of {total} done)"
    );
    let more = (total - done_at_term) / 3;
    assert!(
        wait_until(LIMIT, || {
            servers.iter().map(completed).sum::<usize>() >= done_at_term + more
        }),
        "renders go on after SIGTERM"
    );
    servers[1].signal(libc::SIGKILL);

    let status = wait_child(&mut clients, LIMIT).expect("the clients finish in time");
    let output = reader.join().unwrap();
    assert!(status.success(), "some client failed:\n{output}");

    let results: Vec<Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), total, "one line per request");
    let mut retried = 0;
    for r in &results {
        assert_eq!(r["ok"], true, "{r}");
        let (count, hash) = want[r["index"].as_u64().unwrap() as usize];
        assert_eq!(r["samples"], count, "{r}");
        assert_eq!(r["hash"], hash, "bit-exact: {r}");
        retried += usize::from(r["tries"].as_u64().unwrap() > 0);
    }

    // The drained instance finished everything it started and exited 0.
    let drained = servers[0]
        .wait_exit(LIMIT)
        .expect("the drained instance exits");
    let log = servers[0].log_text();
    assert_eq!(drained.code(), Some(0), "{log}");
    assert!(log.contains("drained in"), "{log}");
    assert!(!log.contains("outcome=disconnected"), "{log}");
    assert!(!log.contains("outcome=error"), "{log}");
    let per_instance: Vec<usize> = servers.iter().map(completed).collect();
    assert!(per_instance.iter().all(|&n| n > 0), "{per_instance:?}");
    let drain_line = log
        .lines()
        .find(|l| l.contains("draining:"))
        .unwrap_or_default();
    eprintln!(
        "{total} renders through haproxy; completed per instance {per_instance:?} (some twice: a \
         stream cut by the kill is rendered again), {retried} requests needed another try; the \
         drained instance: {drain_line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
