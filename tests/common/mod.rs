//! Shared test harness: the real server binary on an ephemeral loopback port, and references
//! rendered in-process by the engine.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use krs_engine::fixtures::{self, genome_json};
use krs_engine::{render_batch, CompiledGenome, RenderRequest};

pub const GENOME: &str = "01M88X7T6Y68CC64GC56PAT2JM";

pub fn genome_ids() -> Vec<String> {
    krs_storage::DEFAULT_GENOME_IDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Genome ids of the fixtures without noise outputs (sample-exact deterministic).
pub fn deterministic_ids() -> Vec<String> {
    fixtures::all()
        .into_iter()
        .filter(|f| !f.has_noise)
        .map(|f| f.id)
        .collect()
}

/// The raw (unnormalized) batch render: what the stream must carry, bit for bit.
pub fn reference(id: &str, request: &RenderRequest) -> Vec<f32> {
    let genome = CompiledGenome::from_json(&genome_json(id)).unwrap();
    render_batch(&genome, request, false).unwrap()
}

pub fn request(duration: f64, note_delta: f64, velocity: f64) -> RenderRequest {
    RenderRequest {
        duration,
        note_delta,
        velocity,
        ..RenderRequest::default()
    }
}

/// The samples of a JSON `chunk` message (f32 values widened to f64, so narrowing is exact).
pub fn json_chunk_samples(chunk: &serde_json::Value) -> Vec<f32> {
    chunk["data"]
        .as_array()
        .expect("a chunk has data")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// Little-endian f32 samples, as binary messages and .f32 files carry them.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A short seed-protocol render on `socket` comes back bit-exact: the connection (and the
/// server) still work.
pub fn assert_still_renders(socket: &mut kromosynth_render_socket::client::Socket, what: &str) {
    let got = kromosynth_render_socket::client::render(
        socket,
        &serde_json::json!({"type": "render", "genomeId": GENOME, "duration": 0.1}),
    )
    .unwrap();
    assert_bits_eq(
        &got.samples,
        &reference(GENOME, &request(0.1, 0.0, 0.5)),
        what,
    );
}

pub fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: sample count");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("{what}: sample {i} differs: {} vs {}", got[i], want[i]);
    }
}

/// The server binary, started with `--port 0`; killed on drop. Shared by the tests and the
/// benches (benches/common includes this file).
pub struct ServerProcess {
    child: Child,
    /// `ws://ADDR`
    pub url: String,
    /// `ws://ADDR` of the one-shot protocols, when started with `--worker-port`.
    pub worker_url: Option<String>,
    pub addr: std::net::SocketAddr,
    pub log: PathBuf,
}

impl ServerProcess {
    pub fn start(extra: &[&str]) -> ServerProcess {
        Self::start_with(extra, |_| {})
    }

    /// [`ServerProcess::start`], with `configure` applied to the command first.
    ///
    /// The server admits every render however long the first chunks ahead of it take
    /// (`START_DELAY_MS=0`) unless `extra` says `--start-delay-ms`: on a loaded CI machine a
    /// test's second render could otherwise be refused as busy at random; start admission
    /// has its own tests (tests/server_limits.rs, tests/server_memory.rs).
    pub fn start_with(extra: &[&str], configure: impl FnOnce(&mut Command)) -> ServerProcess {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log =
            std::env::temp_dir().join(format!("krs-test-server-{}-{n}.log", std::process::id()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_kromosynth-render-socket"));
        configure(&mut command);
        let mut child = command
            .args(["serve", "--port", "0", "--host", "127.0.0.1"])
            .args(extra)
            .env_remove("DB_PATH")
            .env_remove("PORT")
            .env_remove("HOST")
            .env_remove("THREADS")
            .env("START_DELAY_MS", "0")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("server binary starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let worker_url = extra.contains(&"--worker-port").then(|| {
            let mut worker = String::new();
            stdout.read_line(&mut worker).unwrap();
            worker
                .trim()
                .strip_prefix("render workers on ")
                .unwrap_or_else(|| panic!("unexpected second line {worker:?}"))
                .to_string()
        });
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}; log: {}", log.display()))
            .to_string();
        let addr = url
            .trim_start_matches("ws://")
            .parse()
            .expect("the listening line names a socket address");
        ServerProcess {
            child,
            url,
            worker_url,
            addr,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident set size of the server process in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: i32) {
        assert_eq!(
            unsafe { libc::kill(self.pid() as i32, signal) },
            0,
            "kill failed"
        );
    }

    /// Waits (bounded) for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Still running (did not crash)?
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) until the log contains `needle` `count` times.
    pub fn wait_for_log(&self, needle: &str, count: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log_text().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl ServerProcess {
    /// The server's `stats` message, over a connection of its own.
    pub fn stats(&self) -> serde_json::Value {
        let (mut socket, _) = kromosynth_render_socket::client::connect(&self.url).unwrap();
        socket
            .send(tungstenite::Message::Text(r#"{"type":"stats"}"#.into()))
            .unwrap();
        let v = kromosynth_render_socket::client::read_json(&mut socket).unwrap();
        assert_eq!(v["type"], "stats", "{v}");
        v
    }

    /// Waits (bounded) until `stats` reports no render in progress and no memory or CPU
    /// reserved (an ended render's job keeps its reservations until the worker finishing its
    /// turn drops it, a moment after the render stops counting); the last stats.
    pub fn wait_for_no_renders(&self, limit: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let v = self.stats();
            let idle = v["renders"] == 0 && v["memoryReserved"] == 0 && v["cpuReserved"] == 0;
            if idle || start.elapsed() > limit {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
