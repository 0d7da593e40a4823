//! Shared by the load benches: the server binary as a child process, the fixture genomes, a
//! many-client non-blocking WebSocket load generator that runs on ONE thread (so that 1024
//! clients do not bring 1024 threads to compete with the server for the cores), percentiles,
//! and /proc readings of the server's memory and CPU.

#![allow(dead_code)] // each bench binary uses a different part

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::Value;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::{Message, WebSocket};

pub use krs_engine::DEFAULT_SAMPLE_RATE as SAMPLE_RATE;
const BINARY_HEADER_BYTES: usize = 16;

/// A fixture genome: its id (also its id in the embedded default database) and its JSON.
pub struct Fixture {
    pub id: String,
    pub json: Vec<u8>,
    pub has_noise: bool,
}

pub fn fixtures() -> Vec<Fixture> {
    krs_engine::fixtures::all()
        .into_iter()
        .map(|f| Fixture {
            json: f.genome_json(),
            id: f.id,
            has_noise: f.has_noise,
        })
        .collect()
}

/// The engine's capacity for a mix, in-process: seconds of audio rendered per second of wall
/// time with every core busy (one render in flight per core, each on its own 1-thread pool),
/// over every (genome, request) pair `reps` times. That many real-time streams of the mix is
/// what the cores could sustain if serving them cost nothing beyond rendering.
pub fn all_cores_busy_real_time(
    genomes: &[std::sync::Arc<krs_engine::CompiledGenome>],
    requests: &[krs_engine::RenderRequest],
    reps: usize,
) -> f64 {
    let jobs: Vec<(usize, &krs_engine::RenderRequest)> = (0..reps)
        .flat_map(|_| (0..genomes.len()).flat_map(|g| requests.iter().map(move |r| (g, r))))
        .collect();
    let wall = on_every_core(jobs.len(), |n| {
        let (g, r) = jobs[n];
        krs_engine::render_batch(&genomes[g], r, false).unwrap();
    });
    let audio: f64 = jobs.iter().map(|(_, r)| r.duration).sum();
    audio / wall.as_secs_f64()
}

/// Runs jobs `0..jobs` with every core busy: one thread per core, each with its own 1-thread
/// rayon pool (so a render's parallel CPPN fills stay on its core), each taking the next job
/// when it finishes one. Returns the busy time per core: the jobs' own times summed, divided
/// by the cores. Not the wall time: the last jobs run while other cores have nothing left, and
/// with renders of very different costs (the fixture mix spans 100x) that idle tail was up to
/// a fifth of the wall time, which understated what the cores carry when there is work for all
/// of them. Plain threads on purpose: a `par_iter` over the pools ran them one after the
/// other, because a rayon worker waiting in `install` steals and runs its sibling's item.
pub fn on_every_core(jobs: usize, job: impl Fn(usize) + Sync) -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let busy: Duration = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                let (job, next) = (&job, &next);
                scope.spawn(move || {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .unwrap();
                    let mut busy = Duration::ZERO;
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= jobs {
                            return busy;
                        }
                        let start = Instant::now();
                        pool.install(|| job(n));
                        busy += start.elapsed();
                    }
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    busy / cores as u32
}

/// Renders every fixture genome once by id (0.1 s), so that the server has them all compiled
/// in its cache.
pub fn warm_cache(addr: SocketAddr, fx: &[Fixture]) {
    let mut next = |_: usize, nth: usize| fx.get(nth).map(|f| render_message(f, false, 0.1, true));
    let _ = run_load(Load {
        addr,
        clients: 1,
        ramp: Duration::ZERO,
        next_request: &mut next,
        player: None,
        time_limit: Duration::from_secs(60),
        server_pid: None,
    });
}

/// A `render` message for a genome by id (cached by the server after its first render) or
/// inline (compiled on every request, never cached).
pub fn render_message(f: &Fixture, inline: bool, duration: f64, binary: bool) -> String {
    let mut m = serde_json::json!({"type": "render", "duration": duration});
    if inline {
        m["genome"] = serde_json::from_slice(&f.json).unwrap();
    } else {
        m["genomeId"] = Value::from(f.id.clone());
    }
    if binary {
        m["format"] = Value::from("binary");
    }
    m.to_string()
}

/// Simple `--name value` / `--flag` parsing; `cargo bench` adds `--bench`, which is ignored.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Args {
        Args(
            std::env::args()
                .skip(1)
                .filter(|a| a != "--bench")
                .collect(),
        )
    }
    pub fn value(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).map(|s| s.as_str())
    }
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    pub fn positional(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|a| !a.starts_with("--"))
            .map(|s| s.as_str())
            .collect()
    }
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.value(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}: bad value {v}"))
            })
            .unwrap_or(default)
    }
    pub fn list(&self, name: &str, default: &[usize]) -> Vec<usize> {
        self.value(name)
            .map(|v| v.split(',').map(|x| x.trim().parse().unwrap()).collect())
            .unwrap_or_else(|| default.to_vec())
    }
}

// The server process harness is the tests' own.
#[path = "../../tests/common/mod.rs"]
mod harness;
pub use harness::ServerProcess;

/// VmRSS of a process in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process in seconds (all its threads).
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The machine, for the results: core count and CPU model.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores ({model})")
}

/// Nearest-rank percentile of an unsorted sample (p in 0..=100); NaN when empty.
pub fn pct(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The most renders in progress at once (from first chunk to `complete`), and the largest sum
/// of `weight` over the renders in progress at one moment.
pub fn peak_concurrency(
    renders: &[RenderStat],
    weight: impl Fn(&RenderStat) -> f64,
) -> (usize, f64) {
    let mut edges: Vec<(Duration, i32, f64)> = renders
        .iter()
        .flat_map(|r| {
            let w = weight(r);
            [
                (r.sent + r.first_chunk, 1, w),
                (r.sent + r.complete, -1, -w),
            ]
        })
        .collect();
    // Ends before starts at the same instant.
    edges.sort_by_key(|e| (e.0, e.1));
    let (mut count, mut peak, mut load, mut peak_load) = (0i32, 0i32, 0.0f64, 0.0f64);
    for (_, d, w) in edges {
        count += d;
        load += w;
        peak = peak.max(count);
        peak_load = peak_load.max(load);
    }
    (peak as usize, peak_load)
}

/// A client that plays what it receives: it starts playback `start_buffer` after the first
/// chunk and reads from the socket only while it holds less than `ahead` of unplayed audio,
/// so the server sees a real-time reader (TCP backpressure) instead of a greedy one.
#[derive(Clone, Copy, Debug)]
pub struct Player {
    pub start_buffer: Duration,
    pub ahead: Duration,
}

/// One render as the load generator saw it.
#[derive(Clone, Debug)]
pub struct RenderStat {
    pub client: usize,
    /// Which render of that client (0, 1, ...).
    pub nth: usize,
    /// When the request was sent, from the start of the load.
    pub sent: Duration,
    pub first_chunk: Duration,
    pub complete: Duration,
    pub chunks: u64,
    pub samples: u64,
    /// Chunks that arrived after their playback deadline (only with a [`Player`]).
    pub late_chunks: u64,
    /// Smallest (deadline - arrival) over the chunks, seconds; negative means an underrun.
    pub min_slack: f64,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub renders: Vec<RenderStat>,
    pub errors: Vec<String>,
    /// Requests the server refused as busy (an `error` with `retryAfter`); the client asked
    /// again after that many seconds.
    pub refused: u64,
    /// Gaps between consecutive chunk arrivals of a render, ms (all renders).
    pub gaps_ms: Vec<f64>,
    pub wall: Duration,
    pub server_peak_rss_kib: u64,
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
}

/// What to run: `clients` connections, client `i` connecting at `i * ramp / clients`; each asks
/// `next_request(client, nth)` for its next `render` message (None: the client is done) and
/// sends it once the previous render completed. Everything ends by `time_limit`; what is
/// unfinished then is reported as an error.
pub struct Load<'a> {
    pub addr: SocketAddr,
    pub clients: usize,
    pub ramp: Duration,
    pub next_request: &'a mut dyn FnMut(usize, usize) -> Option<String>,
    pub player: Option<Player>,
    pub time_limit: Duration,
    pub server_pid: Option<u32>,
}

/// A load-generator connection's socket. tungstenite 0.24 reads its socket 4 KiB at a time
/// (twenty system calls for one 80 KB JSON chunk); Node's `ws` and browsers take what the
/// kernel has in 64 KiB pieces, and so does this, so that the benches time the server rather
/// than the client's reads.
struct Socket {
    stream: TcpStream,
    /// Bytes read from the socket and not yet handed to tungstenite: `buf[start..end]`.
    buf: Box<[u8; Socket::READ_BYTES]>,
    start: usize,
    end: usize,
}

impl Socket {
    const READ_BYTES: usize = 64 * 1024;

    fn new(stream: TcpStream) -> Socket {
        Socket {
            stream,
            buf: Box::new([0; Socket::READ_BYTES]),
            start: 0,
            end: 0,
        }
    }
}

impl std::io::Read for Socket {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.start == self.end {
            self.end = self.stream.read(&mut self.buf[..])?;
            self.start = 0;
        }
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl std::io::Write for Socket {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.stream.write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

enum Phase {
    NotStarted(Instant),
    Handshake(MidHandshake<ClientHandshake<Socket>>),
    Open,
    Done,
}

struct Current {
    sent: Instant,
    first: Option<Instant>,
    last_arrival: Option<Instant>,
    samples: u64,
    chunks: u64,
    late: u64,
    min_slack: f64,
}

struct Client {
    phase: Phase,
    ws: Option<WebSocket<Socket>>,
    welcomed: bool,
    nth: usize,
    current: Option<Current>,
    /// Paused by the player until then (data may be waiting: edge-triggered readiness will not
    /// tell us again, so the loop drives the client when the time comes).
    resume_at: Option<Instant>,
    /// Refused as busy: the next request waits until then.
    retry_at: Option<Instant>,
    need_flush: bool,
}

/// Runs a load on the calling thread and returns what every render looked like.
pub fn run_load(load: Load) -> LoadReport {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(4096);
    let start = Instant::now();
    let client_cpu0 = cpu_seconds("self");
    let server_cpu0 = load.server_pid.map_or(0.0, |p| cpu_seconds(&p.to_string()));
    let mut report = LoadReport::default();
    let mut clients: Vec<Client> = (0..load.clients)
        .map(|i| Client {
            phase: Phase::NotStarted(
                start + load.ramp.mul_f64(i as f64 / load.clients.max(1) as f64),
            ),
            ws: None,
            welcomed: false,
            nth: 0,
            current: None,
            resume_at: None,
            retry_at: None,
            need_flush: false,
        })
        .collect();
    let mut ctx = Ctx {
        start,
        addr: load.addr,
        player: load.player,
        next_request: load.next_request,
        report: &mut report,
        registry: poll.registry().try_clone().unwrap(),
    };
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let mut remaining = clients.len();
    // Bounded by `time_limit` (and by each client's finite request list).
    while remaining > 0 && start.elapsed() < load.time_limit {
        if let Some(pid) = load.server_pid {
            if last_sample.elapsed() >= Duration::from_millis(100) {
                last_sample = Instant::now();
                ctx.report.server_peak_rss_kib = ctx.report.server_peak_rss_kib.max(rss_kib(pid));
            }
        }
        let now = Instant::now();
        let mut timeout = Duration::from_millis(20);
        for c in &clients {
            let due = match (&c.phase, c.resume_at) {
                (Phase::NotStarted(at), _) => Some(*at),
                (_, Some(at)) => Some(at),
                _ => None,
            };
            if let Some(at) = due {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                panic!("poll: {e}");
            }
        }
        for event in events.iter() {
            let i = event.token().0;
            ctx.drive(i, &mut clients[i]);
        }
        let now = Instant::now();
        for (i, c) in clients.iter_mut().enumerate() {
            let due = match (&c.phase, c.resume_at) {
                (Phase::NotStarted(at), _) => *at <= now,
                (_, Some(at)) => at <= now,
                _ => false,
            };
            if due {
                c.resume_at = None;
                ctx.drive(i, c);
            }
        }
        remaining = clients
            .iter()
            .filter(|c| !matches!(c.phase, Phase::Done))
            .count();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        if !matches!(c.phase, Phase::Done) {
            ctx.report.errors.push(format!(
                "client {i}: unfinished after the {:.0} s time limit (render {}, {})",
                load.time_limit.as_secs_f64(),
                c.nth,
                c.current
                    .as_ref()
                    .map_or("not started".to_string(), |r| format!(
                        "{} chunks",
                        r.chunks
                    ))
            ));
        }
        if let Some(ws) = c.ws.as_mut() {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }
    drop(clients);
    report.wall = start.elapsed();
    report.client_cpu_s = cpu_seconds("self") - client_cpu0;
    if let Some(pid) = load.server_pid {
        report.server_cpu_s = cpu_seconds(&pid.to_string()) - server_cpu0;
        report.server_peak_rss_kib = report.server_peak_rss_kib.max(rss_kib(pid));
    }
    report
}

struct Ctx<'a, 'b> {
    start: Instant,
    addr: SocketAddr,
    player: Option<Player>,
    next_request: &'b mut dyn FnMut(usize, usize) -> Option<String>,
    report: &'a mut LoadReport,
    registry: mio::Registry,
}

impl Ctx<'_, '_> {
    fn fail(&mut self, i: usize, c: &mut Client, what: String) {
        self.report
            .errors
            .push(format!("client {i} render {}: {what}", c.nth));
        c.phase = Phase::Done;
        c.ws = None;
        c.current = None;
    }

    /// Advances client `i` as far as it can go without blocking.
    fn drive(&mut self, i: usize, c: &mut Client) {
        // Each pass either makes progress or returns; the bound only guards against a bug.
        for _ in 0..1_000_000 {
            match std::mem::replace(&mut c.phase, Phase::Done) {
                Phase::Done => return,
                Phase::NotStarted(at) => {
                    if Instant::now() < at {
                        c.phase = Phase::NotStarted(at);
                        return;
                    }
                    // A blocking connect: on loopback it completes at once (the kernel
                    // answers from the listen backlog), and it keeps the state machine small.
                    let std = match std::net::TcpStream::connect(self.addr) {
                        Ok(s) => s,
                        Err(e) => return self.fail(i, c, format!("connect: {e}")),
                    };
                    let _ = std.set_nodelay(true);
                    std.set_nonblocking(true).unwrap();
                    let mut stream = TcpStream::from_std(std);
                    self.registry
                        .register(
                            &mut stream,
                            Token(i),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .unwrap();
                    let url = format!("ws://{}/", self.addr);
                    if !self.handshake_step(
                        i,
                        c,
                        tungstenite::client::client(url, Socket::new(stream)),
                    ) {
                        return;
                    }
                }
                Phase::Handshake(mid) => {
                    if !self.handshake_step(i, c, mid.handshake()) {
                        return;
                    }
                }
                Phase::Open => {
                    c.phase = Phase::Open;
                    if !self.step_open(i, c) {
                        return;
                    }
                }
            }
        }
    }

    /// Where a started or resumed client handshake leaves client `i`: open (true), or waiting
    /// for the socket or failed (false).
    fn handshake_step(
        &mut self,
        i: usize,
        c: &mut Client,
        result: Result<
            (WebSocket<Socket>, tungstenite::handshake::client::Response),
            HandshakeError<ClientHandshake<Socket>>,
        >,
    ) -> bool {
        match result {
            Ok((ws, _)) => {
                c.ws = Some(ws);
                c.phase = Phase::Open;
                true
            }
            Err(HandshakeError::Interrupted(mid)) => {
                c.phase = Phase::Handshake(mid);
                false
            }
            Err(HandshakeError::Failure(e)) => {
                self.fail(i, c, format!("handshake: {e}"));
                false
            }
        }
    }

    /// One step of an open connection; false when it has to wait (socket or player).
    fn step_open(&mut self, i: usize, c: &mut Client) -> bool {
        let ws = c.ws.as_mut().expect("open client has a socket");
        if c.need_flush {
            match ws.flush() {
                Ok(()) => c.need_flush = false,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return false
                }
                Err(e) => {
                    self.fail(i, c, format!("flush: {e}"));
                    return false;
                }
            }
        }
        if c.welcomed && c.current.is_none() {
            if let Some(at) = c.retry_at {
                if Instant::now() < at {
                    c.resume_at = Some(at);
                    return false;
                }
                c.retry_at = None;
            }
            let Some(request) = (self.next_request)(i, c.nth) else {
                let _ = ws.close(None);
                let _ = ws.flush();
                c.ws = None;
                c.phase = Phase::Done;
                return false;
            };
            c.current = Some(Current {
                sent: Instant::now(),
                first: None,
                last_arrival: None,
                samples: 0,
                chunks: 0,
                late: 0,
                min_slack: f64::INFINITY,
            });
            match ws.send(Message::Text(request)) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    c.need_flush = true
                }
                Err(e) => {
                    self.fail(i, c, format!("send: {e}"));
                    return false;
                }
            }
            return true;
        }
        // The player holds enough unplayed audio: come back when it has played some.
        if let (Some(p), Some(cur)) = (self.player, c.current.as_ref()) {
            if let Some(first) = cur.first {
                let buffered = Duration::from_secs_f64(cur.samples as f64 / SAMPLE_RATE as f64);
                let refill_at = first + p.start_buffer + buffered.saturating_sub(p.ahead);
                if buffered >= p.ahead && Instant::now() < refill_at {
                    c.resume_at = Some(refill_at);
                    return false;
                }
            }
        }
        let message = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return false
            }
            Err(e) => {
                self.fail(i, c, format!("read: {e}"));
                return false;
            }
        };
        let now = Instant::now();
        let chunk_samples = match message {
            Message::Binary(frame) => {
                if frame.len() < BINARY_HEADER_BYTES {
                    self.fail(i, c, format!("short binary frame of {} bytes", frame.len()));
                    return false;
                }
                let offset = u64::from_le_bytes(frame[8..16].try_into().unwrap());
                let have = c.current.as_ref().map_or(u64::MAX, |r| r.samples);
                if offset != have {
                    self.fail(i, c, format!("binary chunk at {offset}, expected {have}"));
                    return false;
                }
                ((frame.len() - BINARY_HEADER_BYTES) / 4) as u64
            }
            Message::Text(text) => {
                if text.starts_with("{\"type\":\"chunk\"") {
                    // Only the end of the chunk is needed (`timestamp`, the end in seconds);
                    // parsing the samples would make the load generator the bottleneck.
                    let Some(end) = timestamp_samples(&text) else {
                        self.fail(i, c, "chunk without timestamp".into());
                        return false;
                    };
                    let have = c.current.as_ref().map_or(0, |r| r.samples);
                    end.saturating_sub(have)
                } else {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("welcome") => {
                            c.welcomed = true;
                            return true;
                        }
                        Some("start") => return true,
                        Some("error") if v["retryAfter"].is_number() => {
                            // Refused as busy: the same client asks again when told to.
                            self.report.refused += 1;
                            c.current = None;
                            let after = v["retryAfter"].as_f64().unwrap_or(1.0);
                            c.retry_at = Some(now + Duration::from_secs_f64(after.max(0.0)));
                            return true;
                        }
                        Some("complete") => {
                            let Some(cur) = c.current.take() else {
                                self.fail(i, c, "complete without a render".into());
                                return false;
                            };
                            if v["totalSamples"].as_u64() != Some(cur.samples) {
                                self.fail(
                                    i,
                                    c,
                                    format!(
                                        "received {} samples, complete says {}",
                                        cur.samples, v["totalSamples"]
                                    ),
                                );
                                return false;
                            }
                            self.report.renders.push(RenderStat {
                                client: i,
                                nth: c.nth,
                                sent: cur.sent - self.start,
                                first_chunk: cur.first.map_or(Duration::ZERO, |f| f - cur.sent),
                                complete: now - cur.sent,
                                chunks: cur.chunks,
                                samples: cur.samples,
                                late_chunks: cur.late,
                                min_slack: cur.min_slack,
                            });
                            c.nth += 1;
                            return true;
                        }
                        _ => {
                            self.fail(i, c, format!("unexpected message {text:.200}"));
                            return false;
                        }
                    }
                }
            }
            Message::Close(frame) => {
                self.fail(i, c, format!("server closed: {frame:?}"));
                return false;
            }
            _ => return true,
        };
        let Some(cur) = c.current.as_mut() else {
            self.fail(i, c, "chunk without a render".into());
            return false;
        };
        let first = *cur.first.get_or_insert(now);
        if let Some(last) = cur.last_arrival {
            self.report.gaps_ms.push(ms(now - last));
        }
        cur.last_arrival = Some(now);
        if let Some(p) = self.player {
            // This chunk starts playing at first + start_buffer + its offset.
            let slack = p.start_buffer.as_secs_f64() + cur.samples as f64 / SAMPLE_RATE as f64
                - (now - first).as_secs_f64();
            cur.min_slack = cur.min_slack.min(slack);
            if slack < 0.0 {
                cur.late += 1;
            }
        }
        cur.chunks += 1;
        cur.samples += chunk_samples;
        true
    }
}

/// `"timestamp":X` of a JSON chunk, as a sample count (end of the chunk).
fn timestamp_samples(text: &str) -> Option<u64> {
    let at = text.rfind("\"timestamp\":")? + "\"timestamp\":".len();
    let rest = &text[at..];
    let end = rest.find([',', '}'])?;
    let seconds: f64 = rest[..end].parse().ok()?;
    Some((seconds * SAMPLE_RATE as f64).round() as u64)
}
