//! The WebSocket service's event loop: one hand-written mio loop thread owns every connection
//! ([`Session`]); render jobs run on the engine's [`Scheduler`] (a rayon pool) and come back as
//! blocks through each stream's SPSC ring, and as [`JobEvent`]s through one bounded channel.
//!
//! The loop never blocks: sockets are non-blocking, a full socket stops chunk production for
//! that connection until the next writable event, and a full ring parks the job (the worker is
//! free again) until the loop has drained it below half.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use krs_engine::render::budget::{Budget, Demand, Resource, MICROCORES};
use krs_engine::render::stream::{JobEvent, Scheduler, EVENTS_PER_STREAM};
use krs_engine::CppnBackend;
use krs_storage::Genomes;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::protocol::WebSocketConfig;

use crate::admission::{CostModel, Starts};
use crate::fds::{self, FdLimits, Spare};
use crate::genomes::GenomeProvider;
use crate::http::{AllowedOrigins, Endpoints, Health};
use crate::metrics::{self, Gauges, Metrics};
use crate::protocol::{Limits, ServerStats};
use crate::session::{Alive, Kind, Outcome, Session};
use crate::signals::{self, Signals};

pub use crate::session::{
    HANDSHAKE_TIMEOUT, MAX_QUEUED_PER_CONNECTION, MAX_STREAMS_PER_CONNECTION,
};
pub use crate::wire::MAX_HANDSHAKE_BYTES;

/// Largest message (and frame) a client may send: room for an inline genome (the reference
/// genomes are under 64 KiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes buffered before tungstenite writes to the socket (it always writes on flush, which the
/// loop does after every pass over a connection).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Hard bound of one connection's tungstenite write buffer. Chunks do not pass through it (they
/// are written from their own frame buffer, one pending chunk frame per connection, see
/// [`crate::wire::Conn`]), so it holds only small messages (welcome, start, complete, errors,
/// pongs) queued while a chunk frame waits for the socket; only a client that floods requests
/// and never reads reaches the bound, and is disconnected.
const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const WORKER_LISTENER: Token = Token(2);
const SIGNAL: Token = Token(3);
const FIRST_SESSION: usize = 4;

/// Longest the loop sleeps without events (it checks handshake deadlines and shutdown).
const TICK: Duration = Duration::from_millis(250);

/// Server settings (flags and environment variables of `serve`).
#[derive(Clone, Debug)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// A second port for the one-shot protocols (kromosynth-cli's render worker, the PCM
    /// server), whose clients must not get a greeting; none when `None`.
    pub worker_port: Option<u16>,
    /// A kromosynth-cli `genomes.sqlite`; `None` serves the embedded default genomes.
    pub db: Option<PathBuf>,
    /// A folder of kromosynth-cli evolution run folders, each with its `genomes.sqlite`, for
    /// requests with `evoRunId`.
    pub evoruns_dir: Option<PathBuf>,
    /// Longest render in seconds.
    pub max_duration: f64,
    /// Open connections (handshaking or established); more are accepted and closed at once.
    /// Lowered at start-up when the file descriptor limit allows fewer (see `fds`).
    pub max_connections: usize,
    /// Open connections from one IP address; more from it are accepted and closed at once.
    pub max_connections_per_ip: usize,
    /// A connection with no render and no message for this long is closed (1001).
    pub idle_timeout: Duration,
    /// A render whose client has not read for this long (its ring full, its job parked) is
    /// dropped with an `error`, and its memory freed.
    pub stall_timeout: Duration,
    /// Renders in progress over all connections.
    pub max_streams: usize,
    /// Bytes all renders may reserve together (estimated before they allocate), and what one
    /// connection's renders may.
    pub max_memory: u64,
    pub max_memory_per_connection: u64,
    /// Render worker threads; 0 means one per core.
    pub threads: usize,
    /// Cores the renders in progress may need together to play in real time, by their
    /// measured cost (`None`: [`crate::admission::DEFAULT_CPU_SHARE`] of the worker threads, or
    /// of the cores the process may run on where those are fewer).
    pub cpu_budget: Option<f64>,
    /// Longest a render accepted may wait for its first chunk to be rendered before new
    /// renders are refused (whole-result renders wait); `None`: never refuse for that.
    pub start_delay: Option<Duration>,
    /// Print one line per render to stderr.
    pub log_renders: bool,
    /// The limiter for renders that do not say `compressor` (see `RenderSpec::compressor`).
    pub compressor: bool,
    /// Web origins whose pages may open a WebSocket; others get 403 at the handshake.
    pub allowed_origins: AllowedOrigins,
    /// Longest a drain (after SIGTERM or SIGINT) waits for renders in progress.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8080,
            worker_port: None,
            db: None,
            evoruns_dir: None,
            max_duration: krs_engine::DEFAULT_MAX_DURATION_SECONDS,
            max_connections: 4096,
            max_connections_per_ip: 1024,
            idle_timeout: Duration::from_secs(300),
            stall_timeout: Duration::from_secs(60),
            max_streams: 4096,
            max_memory: crate::admission::default_max_memory(),
            max_memory_per_connection: crate::admission::default_max_memory()
                / crate::admission::DEFAULT_CONNECTION_SHARE,
            threads: 0,
            cpu_budget: None,
            start_delay: Some(crate::admission::START_QUEUE_DELAY),
            log_renders: true,
            compressor: false,
            allowed_origins: AllowedOrigins::Any,
            drain_timeout: Duration::from_secs(60),
        }
    }
}

/// What every session uses: settings, the scheduler, the genome source, and the server-wide
/// bookkeeping that sessions update as their renders start and end.
pub struct Shared {
    pub config: Config,
    pub limits: Limits,
    pub ws_config: WebSocketConfig,
    pub scheduler: Scheduler,
    pub genomes: Arc<GenomeProvider>,
    /// What renders reserve before they allocate (see `admission`).
    pub budget: Arc<Budget>,
    /// What renders are expected to cost, for their CPU reservation.
    pub costs: CostModel,
    /// For renders that ask for `useGPU` (the default): the GPU when there is a real one.
    pub gpu: CppnBackend,
    pub open_sessions: usize,
    /// Which connection each render in progress belongs to (its job events go there).
    pub stream_owner: HashMap<u64, Token>,
    pub next_stream_id: u64,
    /// Sessions with something to pump, each once (see `Session::mark_dirty`).
    pub dirty: Vec<Token>,
    /// Sessions with whole-result renders waiting for room in the CPU budget, first come first
    /// served: one entry per waiting render (a session's entries are removed with its waiting
    /// renders), so at most `MAX_STREAMS_PER_CONNECTION` per connection.
    pub cpu_waiters: VecDeque<Token>,
    /// Renders parked on a full ring, and renders queued behind another on their connection.
    pub parked: usize,
    pub queued: usize,
    /// Renders whose first chunk is not rendered yet, by when they were accepted: new renders
    /// wait while the oldest waits too long (`admission::START_QUEUE_DELAY`).
    pub starts: Starts,
    /// Open connections per peer address (for `max_connections_per_ip`).
    pub per_ip: HashMap<IpAddr, usize>,
    /// Since start: connections closed at accept (over a limit), renders dropped because their
    /// client stopped reading, connections closed for being idle.
    pub refused_connections: u64,
    pub stalled_renders: u64,
    pub idle_closed: u64,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Stopping (see [`Server::run`]): no new connections, no new renders.
    pub draining: bool,
}

impl Shared {
    /// Why a render asked for now would be refused by the server as a whole (not by its
    /// connection's limits), or `None`. `/health` reports busy whenever this is `Some`, so that
    /// a balancer sends new clients elsewhere instead of to refusals: every server-wide
    /// condition that refuses a render belongs here.
    pub fn would_refuse(&self) -> Option<String> {
        let active = self.stream_owner.len();
        (active >= self.config.max_streams)
            .then(|| format!("Server busy: {active} renders in progress, try again later"))
    }

    /// Whether the budgets have no room for an ordinary render: the CPU budget for one of
    /// average cost, or the memory budget for [`crate::admission::ORDINARY_RENDER_MEMORY`].
    /// New renders are then refused when they reserve theirs (with `retryAfter`), unless they
    /// are known to be cheaper.
    pub fn budget_full(&self) -> bool {
        let (used, limit) = (self.budget.in_use(), self.budget.limit());
        let typical = self.costs.typical(self.scheduler.overhead().factor());
        let cpu = used.get(Resource::Cpu).saturating_add(typical) > limit.get(Resource::Cpu);
        let memory = used
            .get(Resource::Memory)
            .saturating_add(crate::admission::ORDINARY_RENDER_MEMORY)
            > limit.get(Resource::Memory);
        cpu || memory
    }

    pub fn health(&self) -> Health {
        if self.draining {
            Health::Draining
        } else if self.would_refuse().is_some() || self.budget_full() {
            Health::Busy
        } else {
            Health::Ok
        }
    }

    /// What the server holds right now.
    pub fn stats(&self) -> ServerStats {
        let (waiting_new, waiting_resumed) = self.scheduler.waiting();
        ServerStats {
            connections: self.open_sessions,
            renders: self.stream_owner.len(),
            parked: self.parked,
            queued: self.queued,
            waiting_for_cpu: self.cpu_waiters.len(),
            starting: self.starts.len(),
            waiting_new,
            waiting_resumed,
            cached_genomes: self.genomes.cached(),
            refused_connections: self.refused_connections,
            stalled_renders: self.stalled_renders,
            idle_closed: self.idle_closed,
            memory_reserved: self.budget.in_use().get(Resource::Memory),
            memory_budget: self.budget.limit().get(Resource::Memory),
            cpu_reserved: self.budget.in_use().get(Resource::Cpu),
            cpu_budget: self.budget.limit().get(Resource::Cpu),
            cpu_overhead: self.scheduler.overhead().factor(),
        }
    }
}

impl Endpoints for Shared {
    fn metrics(&self) -> String {
        metrics::render(
            &self.metrics,
            &Gauges {
                connections: self.open_sessions,
                renders: self.stream_owner.len(),
                parked: self.parked,
                queued: self.queued,
                starting: self.starts.len(),
                cached_genomes: self.genomes.cached(),
                worker_threads: self.scheduler.pool().current_num_threads(),
                refused_connections: self.refused_connections,
                stalled_renders: self.stalled_renders,
                idle_closed: self.idle_closed,
            },
        )
    }

    fn genomes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, String> {
        // On the loop thread: one indexed range read of at most MAX_GENOMES_LIMIT short ids
        // (well under a millisecond), not worth a round trip through the worker pool.
        self.genomes
            .source()
            .list_after(after, limit)
            .map_err(|e| e.to_string())
    }
}

/// How [`Server::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every render in progress at the stop signal finished and every connection closed.
    Drained,
    /// `--drain-timeout` passed with this many renders still in progress.
    DrainTimedOut(usize),
    /// A second stop signal came during the drain; this many renders were cut off.
    Forced(usize),
}

/// A drain in progress.
struct Drain {
    started: Instant,
    deadline: Instant,
}

/// The server: bound and ready to [`run`](Server::run).
pub struct Server {
    poll: Poll,
    addr: SocketAddr,
    /// `None` once draining: closed, so that new connections are refused by the kernel.
    listener: Option<TcpListener>,
    worker_listener: Option<TcpListener>,
    signals: Option<Signals>,
    drain: Option<Drain>,
    events: Receiver<JobEvent>,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    shared: Shared,
    fd_limits: FdLimits,
    spare: Spare,
}

impl Server {
    /// Opens the genome source and binds the listening socket.
    pub fn bind(mut config: Config) -> Result<Server, String> {
        let fd_limits =
            fds::raise_limit().map_err(|e| format!("cannot read RLIMIT_NOFILE: {e}"))?;
        config.max_connections = fd_limits.connections(config.max_connections);
        let genomes = Genomes::from_config(config.db.as_deref()).map_err(|e| e.to_string())?;
        let addr = (config.host.as_str(), config.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}:{}: {e}", config.host, config.port))?
            .next()
            .ok_or_else(|| format!("no address for {}", config.host))?;
        let mut listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let poll = Poll::new().map_err(|e| e.to_string())?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| e.to_string())?);
        // The cores this process may run on (its CPU affinity, e.g. `taskset` or a container's
        // cpuset), not the machine's.
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if config.threads == 0 {
            available
        } else {
            config.threads
        };
        // More workers than cores add no capacity to promise.
        let cores = config
            .cpu_budget
            .unwrap_or(threads.min(available) as f64 * crate::admission::DEFAULT_CPU_SHARE);
        let cpu_budget = (cores.max(0.0) * MICROCORES as f64) as u64;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("krs-worker-{i}"))
            .build()
            .map_err(|e| e.to_string())?;
        // Sized so that a worker's send never waits (see EVENTS_PER_STREAM); one extra
        // stream's worth per connection covers jobs still finishing a turn after a cancel.
        let (events_tx, events) = crossbeam_channel::bounded(
            EVENTS_PER_STREAM * (config.max_streams + config.max_connections),
        );
        let wake = Arc::new(move || {
            let _ = waker.wake();
        });
        let scheduler = Scheduler::new(Arc::new(pool), events_tx, wake);
        let ws_config = WebSocketConfig {
            write_buffer_size: WRITE_BUFFER_BYTES,
            max_write_buffer_size: MAX_WRITE_BUFFER_BYTES,
            max_message_size: Some(MAX_MESSAGE_BYTES),
            max_frame_size: Some(MAX_MESSAGE_BYTES),
            ..WebSocketConfig::default()
        };
        let genomes =
            Arc::new(GenomeProvider::new(genomes).with_evoruns(config.evoruns_dir.clone()));
        let worker_listener = match config.worker_port {
            None => None,
            Some(port) => {
                let addr = SocketAddr::new(addr.ip(), port);
                let mut listener =
                    TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                poll.registry()
                    .register(&mut listener, WORKER_LISTENER, Interest::READABLE)
                    .map_err(|e| e.to_string())?;
                Some(listener)
            }
        };
        let starts = Starts::new(config.start_delay);
        Ok(Server {
            poll,
            addr: listener.local_addr().map_err(|e| e.to_string())?,
            listener: Some(listener),
            worker_listener,
            signals: None,
            drain: None,
            events,
            sessions: Vec::new(),
            free: Vec::new(),
            shared: Shared {
                limits: Limits {
                    max_duration: config.max_duration,
                },
                budget: Budget::new(
                    Demand::memory(config.max_memory).with(Resource::Cpu, cpu_budget),
                    Demand::memory(config.max_memory_per_connection)
                        .with(Resource::Cpu, cpu_budget),
                ),
                costs: CostModel::default(),
                config,
                scheduler,
                genomes,
                gpu: CppnBackend::auto(),
                ws_config,
                open_sessions: 0,
                stream_owner: HashMap::new(),
                next_stream_id: 1,
                dirty: Vec::new(),
                cpu_waiters: VecDeque::new(),
                parked: 0,
                starts,
                queued: 0,
                per_ip: HashMap::new(),
                refused_connections: 0,
                stalled_renders: 0,
                idle_closed: 0,
                metrics: Metrics::default(),
                draining: false,
            },
            fd_limits,
            spare: Spare::new(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    /// Drains on SIGTERM or SIGINT and exits on a second one (see [`Server::run`]); without
    /// this, the signals' default action ends the process at once. Once per process.
    pub fn handle_stop_signals(&mut self) -> io::Result<()> {
        let signals = Signals::install()?;
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&signals.fd()),
            SIGNAL,
            Interest::READABLE,
        )?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Where the one-shot protocols are served, if they are.
    pub fn worker_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.worker_listener.as_ref().map(TcpListener::local_addr)
    }

    pub fn genomes(&self) -> &Arc<GenomeProvider> {
        &self.shared.genomes
    }

    /// Where `useGPU` renders evaluate their CPPNs, for the start-up log.
    pub fn cppn_device(&self) -> String {
        match &self.shared.gpu {
            CppnBackend::Gpu(gpu) => format!("Vulkan device {}", gpu.device().name),
            CppnBackend::Cpu => "the CPU".into(),
        }
    }

    /// The connection limit in force and the file descriptor limits it was derived from.
    pub fn connection_limit(&self) -> (usize, FdLimits) {
        (self.shared.config.max_connections, self.fd_limits)
    }

    pub fn worker_threads(&self) -> usize {
        self.shared.scheduler.pool().current_num_threads()
    }

    /// Serves until stopped. With [`Server::handle_stop_signals`], the first SIGTERM or SIGINT
    /// starts a drain: the listeners close (new connections are refused), `/health` answers 503
    /// `draining` on connections still open, render requests are refused, every render in
    /// progress or queued finishes, connections are closed (1001) as they fall idle, and `run`
    /// returns once none is left or `drain_timeout` has passed; a second signal returns at once.
    pub fn run(mut self) -> io::Result<Stopped> {
        // At most this many socket events per turn: the streams' chunks are written once per
        // turn, so a burst of requests (hundreds of clients asking again after `retryAfter`)
        // delays them by at most this many events' work; epoll hands out the rest next turn.
        let mut events = Events::with_capacity(128);
        let mut last_sweep = Instant::now();
        loop {
            // Sessions dirtied while pumping others are pumped on the next turn, at once.
            let timeout = if self.shared.dirty.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(Kind::Service),
                    WORKER_LISTENER => self.accept_all(Kind::OneShot),
                    WAKER => {}
                    SIGNAL => {
                        if let Some(stopped) = self.on_signals() {
                            return Ok(stopped);
                        }
                    }
                    token => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        let writable = event.is_writable();
                        self.with_session(token, |session, shared| {
                            session.socket_event(shared, readable, writable)
                        });
                    }
                }
            }
            self.job_events();
            self.start_waiting();
            self.pump_dirty();
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                self.shared.scheduler.overhead().calibrate();
                self.sweep();
            }
            if let Some(stopped) = self.drain_step() {
                return Ok(stopped);
            }
        }
    }

    fn on_signals(&mut self) -> Option<Stopped> {
        let received = self.signals.as_ref().map(Signals::take).unwrap_or_default();
        for signo in received {
            let name = signals::name(signo);
            let renders = self.shared.stream_owner.len() + self.shared.queued;
            if self.drain.is_some() {
                eprintln!("{name} again: stopping now, {renders} renders cut off");
                return Some(Stopped::Forced(renders));
            }
            let timeout = self.shared.config.drain_timeout;
            eprintln!(
                "{name}: draining: listeners closed; {} connections and {renders} renders in \
                 progress, waiting at most {} s for them (a second signal stops at once)",
                self.shared.open_sessions,
                timeout.as_secs_f64()
            );
            // Closing (not just deregistering) the listeners makes the kernel refuse new
            // connections, so balancers and clients move on at once instead of timing out.
            for mut listener in [self.listener.take(), self.worker_listener.take()]
                .into_iter()
                .flatten()
            {
                let _ = self.poll.registry().deregister(&mut listener);
            }
            self.shared.draining = true;
            let now = Instant::now();
            self.drain = Some(Drain {
                started: now,
                deadline: now + timeout,
            });
        }
        None
    }

    /// While draining: closes the connections that have nothing left to do; the end of the
    /// drain once none is left or its time is up.
    fn drain_step(&mut self) -> Option<Stopped> {
        let (started, deadline) = self.drain.as_ref().map(|d| (d.started, d.deadline))?;
        for index in 0..self.sessions.len() {
            self.with_session(Token(index + FIRST_SESSION), Session::close_if_drained);
        }
        let renders = self.shared.stream_owner.len() + self.shared.queued;
        if self.shared.open_sessions == 0 {
            eprintln!(
                "drained in {:.1} s: every render finished, every connection closed",
                started.elapsed().as_secs_f64()
            );
            return Some(Stopped::Drained);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "drain timed out after {:.1} s: {} connections and {renders} renders cut off",
                started.elapsed().as_secs_f64(),
                self.shared.open_sessions
            );
            return Some(Stopped::DrainTimedOut(renders));
        }
        None
    }

    /// What the server holds right now.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// Starts the renders waiting for CPU or for the first chunks ahead of them, in order,
    /// while they fit (renders that ended, measured cheaper or sent their first chunk may
    /// have made room since the last turn).
    fn start_waiting(&mut self) {
        while let Some(token) = self.shared.cpu_waiters.pop_front() {
            let mut waits = false;
            self.with_session(token, |session, shared| {
                waits = !session.retry_waiting(shared)?;
                Ok(())
            });
            if waits {
                // It queued itself again at the back; it keeps its place at the front.
                self.shared.cpu_waiters.pop_back();
                self.shared.cpu_waiters.push_front(token);
                return;
            }
        }
    }

    /// Runs `f` on the session of `token`, if it is still open, and drops the session if `f`
    /// found it gone.
    fn with_session(&mut self, token: Token, f: impl FnOnce(&mut Session, &mut Shared) -> Alive) {
        let Some(session) = token
            .0
            .checked_sub(FIRST_SESSION)
            .and_then(|i| self.sessions.get_mut(i))
            .and_then(Option::as_mut)
        else {
            return;
        };
        if f(session, &mut self.shared).is_err() {
            self.drop_session(token);
        }
    }

    fn accept_all(&mut self, kind: Kind) {
        loop {
            let listener = match kind {
                Kind::Service => self.listener.as_ref(),
                Kind::OneShot => self.worker_listener.as_ref(),
            };
            // Events of a listener closed by a drain in the same poll turn.
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let from_peer = self.shared.per_ip.get(&peer.ip()).copied().unwrap_or(0);
                    let refuse = if self.shared.open_sessions >= self.shared.config.max_connections
                    {
                        Some(format!(
                            "{} connections open (max)",
                            self.shared.open_sessions
                        ))
                    } else if from_peer >= self.shared.config.max_connections_per_ip {
                        Some(format!("{from_peer} connections from it open (max per IP)"))
                    } else {
                        None
                    };
                    if let Some(why) = refuse {
                        // Logged once per burst: the first refusal and every 1000th.
                        if self.shared.refused_connections.is_multiple_of(1000) {
                            eprintln!("connection from {peer} refused: {why}");
                        }
                        self.shared.refused_connections += 1;
                        continue;
                    }
                    *self.shared.per_ip.entry(peer.ip()).or_default() += 1;
                    self.shared.metrics.connections_accepted += 1;
                    let _ = stream.set_nodelay(true);
                    let index = self.free.pop().unwrap_or_else(|| {
                        self.sessions.push(None);
                        self.sessions.len() - 1
                    });
                    let token = Token(index + FIRST_SESSION);
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        eprintln!("cannot register connection from {peer}: {e}");
                        self.free.push(index);
                        continue;
                    }
                    self.sessions[index] = Some(Session::accept(token, kind, stream, peer));
                    self.shared.open_sessions += 1;
                    // The request may have arrived with the connection.
                    self.with_session(token, Session::read_request);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if fds::is_out_of_descriptors(&e) => {
                    // The limit derived from RLIMIT_NOFILE normally prevents this (other files
                    // count too); take the connection with the spare descriptor and close it,
                    // so that it is refused rather than left in the backlog unanswered.
                    let taken = self.spare.lend(|| listener.accept().is_ok());
                    if self.shared.refused_connections.is_multiple_of(1000) {
                        eprintln!("accept failed: {e}; connection closed at accept");
                    }
                    self.shared.refused_connections += 1;
                    if !taken {
                        return;
                    }
                }
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn job_events(&mut self) {
        loop {
            let event = match self.events.try_recv() {
                Ok(event) => event,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            let id = match &event {
                JobEvent::Ready(id)
                | JobEvent::Parked(id, _)
                | JobEvent::Finished(id, _)
                | JobEvent::Failed(id, _)
                | JobEvent::Refused(id, _) => *id,
            };
            // Events of streams that were cancelled or whose connection closed are dropped.
            let Some(&token) = self.shared.stream_owner.get(&id) else {
                continue;
            };
            self.with_session(token, |session, shared| match session.stream_index(id) {
                Some(i) => session.job_event(shared, i, event),
                None => Ok(()),
            });
        }
    }

    fn pump_dirty(&mut self) {
        // Pumping can dirty sessions again (a queued render starts); those wait for the next
        // turn of the loop, which comes at once because the worker will wake it.
        let mut dirty = std::mem::take(&mut self.shared.dirty);
        for &token in &dirty {
            self.with_session(token, Session::pump);
        }
        dirty.clear();
        if self.shared.dirty.is_empty() {
            self.shared.dirty = dirty;
        }
    }

    fn drop_session(&mut self, token: Token) {
        let Some(index) = token.0.checked_sub(FIRST_SESSION) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(index).and_then(Option::take) else {
            return;
        };
        if let Some(n) = self.shared.per_ip.get_mut(&session.peer().ip()) {
            *n -= 1;
            if *n == 0 {
                self.shared.per_ip.remove(&session.peer().ip());
            }
        }
        session.end(&mut self.shared, Outcome::Disconnected);
        self.shared.open_sessions -= 1;
        self.free.push(index);
    }

    /// Drops handshakes past their deadline and drained connections past their time, closes
    /// idle connections, and drops renders whose client stopped reading.
    fn sweep(&mut self) {
        let now = Instant::now();
        let (idle, stall) = (
            self.shared.config.idle_timeout,
            self.shared.config.stall_timeout,
        );
        for index in 0..self.sessions.len() {
            let token = Token(index + FIRST_SESSION);
            if self.sessions[index]
                .as_ref()
                .is_some_and(|s| s.is_stale(now))
            {
                self.drop_session(token);
                continue;
            }
            self.with_session(token, |session, shared| {
                session.drop_stalled(shared, now, stall)?;
                session.close_if_idle(shared, now, idle)
            });
        }
    }
}
