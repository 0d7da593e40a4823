//! CI soak: many concurrent renders through the real server binary, with clients that
//! disconnect mid-render, cancel, stall and read slowly mixed in among normal ones. Asserts
//! correctness and memory only (never timing): no errors, every completed render bit-exact
//! with `render_batch(genome, request, false)`, server RSS bounded, server alive.
//!
//! Bounded: 96 clients in three waves of 32 on 16 client threads, renders of 0.5 to 5 s; every
//! socket read has a timeout and the whole run has a deadline.
//!
//! Leaks are caught two ways: the server runs with `--max-renders` just above the number of
//! client threads, so a disconnect or cancel that did not free its render slot soon makes later
//! renders fail with an error; and RSS after the third wave may not exceed RSS after the first
//! by more than [`WAVE_GROWTH_KIB`].

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kromosynth_render_socket::client::{self, Socket};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

const CLIENTS_PER_WAVE: usize = 32;
const CLIENT_THREADS: usize = 16;
/// A client that waits this long for one message fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(120);

/// Why the RSS bound is what it is. A render keeps its compiled genome (tens of KiB, cached),
/// its lazily evaluated CPPN outputs in 8192-sample windows, the outputs some node needs whole
/// (at most a few outputs x 3 s x 48 kHz x 4 B, about 0.6 MiB per output); plus its DSP graph (a convolver's impulse response is the
/// largest part), its 32 KiB ring and a connection's write buffer of up to 64 KiB plus one
/// chunk. 16 MiB per render covers the largest fixture genome with room to spare, and at most
/// CLIENT_THREADS renders run at once. On top of the idle server's RSS: that times 16 renders,
/// plus 64 MiB for allocator arenas (one per worker thread) and the caches. A leak (renders not
/// freed after a disconnect or cancel) would grow with the 64 clients and also shows in the
/// second wave's check below.
const PER_RENDER_BUDGET_KIB: u64 = 16 * 1024;
const SLACK_KIB: u64 = 64 * 1024;
/// RSS after the third wave may exceed RSS after the first by at most this: the same work
/// again must not need more memory. Loose, because glibc keeps freed memory in per-thread
/// arenas (measured: RSS after a wave varies by a few tens of MiB without any leak); the
/// render-slot check above is the sharp one.
const WAVE_GROWTH_KIB: u64 = 64 * 1024;
/// Render slots: one per client thread plus a margin for a disconnected client whose
/// successor connects before the server has seen the disconnect.
const MAX_RENDERS: usize = CLIENT_THREADS + 4;
const WAVES: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Normal,
    Disconnect,
    Cancel,
    Stall,
    Slow,
}

const KINDS: [Kind; 8] = [
    Kind::Normal,
    Kind::Disconnect,
    Kind::Normal,
    Kind::Cancel,
    Kind::Slow,
    Kind::Normal,
    Kind::Stall,
    Kind::Disconnect,
];

type RefKey = (usize, u64, u64, u64);

struct Shared {
    url: String,
    ids: Vec<String>,
    references: Mutex<HashMap<RefKey, Arc<Vec<f32>>>>,
    errors: Mutex<Vec<String>>,
    completed: AtomicUsize,
    verified_samples: AtomicU64,
}

impl Shared {
    fn reference(&self, g: usize, duration: f64, nd: f64, vel: f64) -> Arc<Vec<f32>> {
        let key = (g, duration.to_bits(), nd.to_bits(), vel.to_bits());
        if let Some(r) = self.references.lock().unwrap().get(&key) {
            return r.clone();
        }
        let r = Arc::new(reference(&self.ids[g], &request(duration, nd, vel)));
        self.references.lock().unwrap().insert(key, r.clone());
        r
    }

    fn error(&self, e: String) {
        self.errors.lock().unwrap().push(e);
    }
}

fn set_timeout(socket: &mut Socket) {
    if let MaybeTlsStream::Plain(s) = socket.get_mut() {
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    }
}

/// Client `i`'s render: genome, duration, noteDelta, velocity, binary?
fn plan(i: usize, genomes: usize) -> (usize, f64, f64, f64, bool) {
    let durations = [0.5, 1.0, 2.0, 3.0, 5.0];
    (
        i % genomes,
        durations[(i / 3) % durations.len()],
        if i.is_multiple_of(2) { 0.0 } else { 12.0 },
        if i % 4 < 2 { 0.5 } else { 1.0 },
        !i.is_multiple_of(3),
    )
}

fn message(s: &Shared, i: usize, request_id: Option<u64>) -> Value {
    let (g, duration, nd, vel, binary) = plan(i, s.ids.len());
    let mut m = json!({"type": "render", "genomeId": s.ids[g], "duration": duration,
                       "noteDelta": nd, "velocity": vel});
    if binary {
        m["format"] = json!("binary");
    }
    if let Some(id) = request_id {
        m["requestId"] = json!(id);
    }
    m
}

fn verify(s: &Shared, i: usize, samples: &[f32], what: &str) {
    let (g, duration, nd, vel, _) = plan(i, s.ids.len());
    let want = s.reference(g, duration, nd, vel);
    if samples.len() != want.len() {
        return s.error(format!(
            "client {i} ({what}): {} samples, want {}",
            samples.len(),
            want.len()
        ));
    }
    if let Some(k) = (0..want.len()).find(|&k| samples[k].to_bits() != want[k].to_bits()) {
        return s.error(format!(
            "client {i} ({what}): sample {k} is {} not {}",
            samples[k], want[k]
        ));
    }
    s.completed.fetch_add(1, Ordering::Relaxed);
    s.verified_samples
        .fetch_add(samples.len() as u64, Ordering::Relaxed);
}

/// Reads one chunk (JSON or binary) and returns its samples; None at `complete`.
fn read_chunk(socket: &mut Socket) -> Result<Option<Vec<f32>>, String> {
    loop {
        match socket.read().map_err(|e| format!("read: {e}"))? {
            Message::Binary(frame) => {
                return Ok(Some(
                    frame[16..]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ))
            }
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                match v["type"].as_str() {
                    Some("chunk") => {
                        return Ok(Some(
                            v["data"]
                                .as_array()
                                .ok_or("chunk without data")?
                                .iter()
                                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                                .collect(),
                        ))
                    }
                    Some("start") => {}
                    Some("complete") => return Ok(None),
                    _ => return Err(format!("unexpected {text:.200}")),
                }
            }
            Message::Close(f) => return Err(format!("closed: {f:?}")),
            _ => {}
        }
    }
}

fn run_client(s: &Shared, i: usize) -> Result<(), String> {
    let (mut socket, _) = client::connect(&s.url)?;
    set_timeout(&mut socket);
    let kind = KINDS[i % KINDS.len()];
    let send = |socket: &mut Socket, v: Value| {
        socket
            .send(Message::Text(v.to_string()))
            .map_err(|e| format!("send: {e}"))
    };
    match kind {
        Kind::Normal => {
            let got = client::render(&mut socket, &message(s, i, None))?;
            verify(s, i, &got.samples, "normal");
        }
        Kind::Disconnect => {
            // Two chunks, then the TCP connection goes away without a close handshake.
            send(&mut socket, message(s, i, None))?;
            for _ in 0..2 {
                if read_chunk(&mut socket)?.is_none() {
                    break;
                }
            }
            drop(socket);
        }
        Kind::Cancel => {
            send(&mut socket, message(s, i, Some(i as u64)))?;
            read_chunk(&mut socket)?;
            send(&mut socket, json!({"type": "cancel", "requestId": i}))?;
            // Chunks already in flight, then `cancelled` (or `complete` if it won the race).
            for _ in 0..10_000 {
                let v = match socket.read().map_err(|e| format!("read: {e}"))? {
                    Message::Text(t) => serde_json::from_str::<Value>(&t).unwrap_or(Value::Null),
                    _ => continue,
                };
                match v["type"].as_str() {
                    Some("cancelled") | Some("complete") => break,
                    Some("chunk") | Some("start") => {}
                    _ => return Err(format!("client {i} after cancel: {v}")),
                }
            }
            // The connection stays usable.
            let got = client::render(&mut socket, &message(s, i, None))?;
            verify(s, i, &got.samples, "after cancel");
        }
        Kind::Stall => {
            // Asks, then does not read for a while: the server must park, not buffer all.
            send(&mut socket, message(s, i, None))?;
            std::thread::sleep(Duration::from_millis(1500));
            let mut samples = Vec::new();
            while let Some(chunk) = read_chunk(&mut socket)? {
                samples.extend(chunk);
            }
            verify(s, i, &samples, "stalled reader");
        }
        Kind::Slow => {
            send(&mut socket, message(s, i, None))?;
            let mut samples = Vec::new();
            for _ in 0..100_000 {
                match read_chunk(&mut socket)? {
                    Some(chunk) => samples.extend(chunk),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            verify(s, i, &samples, "slow reader");
        }
    }
    Ok(())
}

/// One wave of clients on CLIENT_THREADS threads.
fn wave(s: &Arc<Shared>, first: usize, count: usize) {
    let next = Arc::new(AtomicUsize::new(first));
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|_| {
            let s = s.clone();
            let next = next.clone();
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= first + count {
                    break;
                }
                if let Err(e) = run_client(&s, i) {
                    s.error(format!("client {i} ({:?}): {e}", KINDS[i % KINDS.len()]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn soak_with_disconnects_cancels_and_slow_readers() {
    let started = Instant::now();
    let max_renders = MAX_RENDERS.to_string();
    let mut server = ServerProcess::start(&["--max-renders", &max_renders]);
    let pid = server.pid();
    let shared = Arc::new(Shared {
        url: server.url.clone(),
        ids: genome_ids(),
        references: Mutex::new(HashMap::new()),
        errors: Mutex::new(Vec::new()),
        completed: AtomicUsize::new(0),
        verified_samples: AtomicU64::new(0),
    });
    // Idle baseline after one small render (threads started, storage opened).
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let r = json!({"type": "render", "genomeId": GENOME, "duration": 0.1});
    client::render(&mut socket, &r).unwrap();
    drop(socket);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = rss_of(pid);

    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded by DEADLINE even if the test body never sets `stop`.
            let t = Instant::now();
            while !stop.load(Ordering::Relaxed) && t.elapsed() < DEADLINE {
                peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };

    let mut after = Vec::new();
    for w in 0..WAVES {
        wave(&shared, w * CLIENTS_PER_WAVE, CLIENTS_PER_WAVE);
        std::thread::sleep(Duration::from_millis(300));
        after.push(rss_of(pid));
    }
    stop.store(true, Ordering::Relaxed);
    monitor.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);

    let errors = shared.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    assert!(
        server.is_alive(),
        "server died; log:\n{}",
        server.log_text()
    );
    // The server still serves after all that.
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let got = client::render(&mut socket, &r).unwrap();
    assert_bits_eq(
        &got.samples,
        &reference(GENOME, &request(0.1, 0.0, 0.5)),
        "final",
    );

    let completed = shared.completed.load(Ordering::Relaxed);
    let expected = (0..WAVES * CLIENTS_PER_WAVE)
        .filter(|i| !matches!(KINDS[i % KINDS.len()], Kind::Disconnect))
        .count();
    assert_eq!(
        completed, expected,
        "every non-disconnecting client verified a render"
    );
    let bound = baseline + CLIENT_THREADS as u64 * PER_RENDER_BUDGET_KIB + SLACK_KIB;
    eprintln!(
        "soak: {completed} renders bit-exact ({} samples), RSS baseline {baseline} KiB, peak \
         {peak} KiB (bound {bound}), after each wave {after:?} KiB, {:.1} s",
        shared.verified_samples.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(peak <= bound, "peak RSS {peak} KiB > bound {bound} KiB");
    assert!(
        after[WAVES - 1] <= after[0] + WAVE_GROWTH_KIB,
        "RSS grew from {} KiB to {} KiB over identical waves",
        after[0],
        after[WAVES - 1]
    );
    let log = server.log_text();
    assert!(!log.contains("panicked"), "server log:\n{log}");
    assert!(started.elapsed() < DEADLINE, "ran past the deadline");
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
