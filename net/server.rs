//! The WebSocket service: one hand-written mio event loop thread owns every connection; render
//! jobs run on the engine's [`Scheduler`] (a rayon pool) and come back as blocks through each
//! stream's SPSC ring (design.md, "One render, end to end").
//!
//! The loop never blocks: sockets are non-blocking, a full socket stops chunk production for
//! that connection until the next writable event, and a full ring parks the job (the worker is
//! free again) until the loop has drained it below half.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use krs_engine::dsp::RENDER_QUANTUM;
use krs_engine::render::frames_for;
use krs_engine::render::stream::{
    stream, Finished, JobEvent, RenderJob, Scheduler, StreamHandle, EVENTS_PER_STREAM, RING_BLOCKS,
};
use krs_engine::CppnBackend;
use krs_storage::Genomes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::Value;
use tungstenite::handshake::server::{NoCallback, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

use crate::genomes::GenomeProvider;
use crate::protocol::{
    self, ChunkFrame, ClientMessage, Completion, Format, Frame, Limits, RenderSpec, ServerStats,
};

/// Concurrent renders on one connection (those with a `requestId`; renders without one run one
/// after the other).
pub const MAX_STREAMS_PER_CONNECTION: usize = 8;

/// Renders without `requestId` waiting for the one in progress on the same connection.
pub const MAX_QUEUED_PER_CONNECTION: usize = 16;

/// Largest message (and frame) a client may send: room for an inline genome (the reference
/// genomes are under 64 KiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes buffered before tungstenite writes to the socket (it always writes on flush, which the
/// loop does after every pass over a connection).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Hard bound of one connection's tungstenite write buffer. Chunks do not pass through it (they
/// are written from their own frame buffer, one pending chunk frame per connection, see
/// `Conn`), so it holds only small messages (welcome, start, complete, errors, pongs) queued
/// while a chunk frame waits for the socket; only a client that floods requests and never
/// reads reaches the bound, and is disconnected.
const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Largest HTTP upgrade request; a real one is well under 1 KiB.
pub const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// A connection that has not finished its WebSocket handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection we closed for a protocol violation is drained before it is dropped.
const DRAIN_TIME: Duration = Duration::from_secs(2);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_SESSION: usize = 2;

/// Longest the loop sleeps without events (it checks handshake deadlines and shutdown).
const TICK: Duration = Duration::from_millis(250);

/// Server settings (flags and environment variables of `serve`).
#[derive(Clone, Debug)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// A kromosynth-cli `genomes.sqlite`; `None` serves the embedded default genomes.
    pub db: Option<PathBuf>,
    /// Longest render in seconds.
    pub max_duration: f64,
    /// Open connections (handshaking or established); more are accepted and closed at once.
    pub max_connections: usize,
    /// Renders in progress over all connections.
    pub max_streams: usize,
    /// Render worker threads; 0 means one per core.
    pub threads: usize,
    /// Print one line per render to stderr.
    pub log_renders: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8080,
            db: None,
            max_duration: 600.0,
            max_connections: 4096,
            max_streams: 4096,
            threads: 0,
            log_renders: true,
        }
    }
}

/// The socket adapter tungstenite reads and writes: a mio stream that, during the handshake,
/// refuses to read more than [`MAX_HANDSHAKE_BYTES`], and that writes chunk frames itself.
///
/// A chunk is encoded as a complete WebSocket frame ([`Frame`]) and written from its own
/// buffer, so a chunk the client has not taken yet is held once, not again as a copy in
/// tungstenite's write buffer (80 KB per JSON chunk). Frames must not interleave on the wire,
/// so a chunk frame is handed over only when tungstenite has nothing buffered (its flush
/// succeeded), and every write or flush tungstenite makes first finishes the chunk frame.
struct Conn {
    stream: TcpStream,
    handshake_budget: Option<usize>,
    /// The chunk frame being written, from `chunk_at` on (one at most).
    chunk: Vec<u8>,
    chunk_at: usize,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            handshake_budget: Some(MAX_HANDSHAKE_BYTES),
            chunk: Vec::new(),
            chunk_at: 0,
        }
    }

    /// Queues a chunk frame; call only when tungstenite's flush has just succeeded.
    fn start_chunk(&mut self, frame: Frame) {
        debug_assert!(self.chunk.is_empty(), "one chunk frame at a time");
        (self.chunk, self.chunk_at) = frame.into_parts();
    }

    /// Writes what is left of the chunk frame; Ok once it is all out.
    fn write_chunk(&mut self) -> io::Result<()> {
        while self.chunk_at < self.chunk.len() {
            match self.stream.write(&self.chunk[self.chunk_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.chunk_at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Freed as soon as it is sent: an idle connection keeps no chunk-sized buffer.
        self.chunk = Vec::new();
        self.chunk_at = 0;
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.handshake_budget {
            None => self.stream.read(buf),
            Some(0) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("handshake larger than {MAX_HANDSHAKE_BYTES} bytes"),
            )),
            Some(budget) => {
                let n = buf.len().min(*budget);
                let read = self.stream.read(&mut buf[..n])?;
                *budget -= read;
                Ok(read)
            }
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_chunk()?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.write_chunk()?;
        self.stream.flush()
    }
}

enum Ws {
    Handshake(Box<MidHandshake<ServerHandshake<Conn, NoCallback>>>),
    Open(Box<WebSocket<Conn>>),
    Gone,
}

/// One render being streamed to a connection.
struct Stream {
    id: u64,
    wire_id: u32,
    spec: RenderSpec,
    handle: StreamHandle,
    parked: Option<RenderJob>,
    finished: Option<Finished>,
    total_frames: usize,
    /// Frames taken out of the ring so far.
    taken: usize,
    /// The chunk being filled, encoded block by block (at most `spec.chunk_samples` samples).
    frame: ChunkFrame,
    chunks_sent: u64,
    received: Instant,
    first_chunk: Option<Duration>,
}

struct Session {
    ws: Ws,
    peer: SocketAddr,
    connected: Instant,
    streams: Vec<Stream>,
    queued: VecDeque<RenderSpec>,
    next_wire_id: u32,
    /// The socket refused a write; wait for a writable event before producing more chunks.
    blocked: bool,
    /// In the loop's dirty list.
    dirty: bool,
    /// Drop after flushing what is buffered (close frame sent or received).
    closing: bool,
    /// We closed because of what the client sent; until then, read and discard what it
    /// still sends, so our close frame is not lost to a TCP reset.
    draining_until: Option<Instant>,
}

/// Why a stream left its session, for the render log.
enum Outcome<'a> {
    Complete,
    Cancelled,
    Disconnected,
    Failed(&'a str),
}

/// The server: bound and ready to [`run`](Server::run).
pub struct Server {
    config: Config,
    poll: Poll,
    listener: TcpListener,
    scheduler: Scheduler,
    events: Receiver<JobEvent>,
    genomes: Arc<GenomeProvider>,
    /// For renders that ask for `useGPU` (the default): the GPU when there is a real one.
    gpu: CppnBackend,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    open_sessions: usize,
    stream_owner: HashMap<u64, Token>,
    next_stream_id: u64,
    dirty: Vec<Token>,
    ws_config: WebSocketConfig,
    limits: Limits,
}

impl Server {
    /// Opens the genome source and binds the listening socket.
    pub fn bind(config: Config) -> Result<Server, String> {
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
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        };
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
        Ok(Server {
            limits: Limits {
                max_duration: config.max_duration,
            },
            config,
            poll,
            listener,
            scheduler,
            events,
            genomes: Arc::new(GenomeProvider::new(genomes)),
            gpu: CppnBackend::auto(),
            sessions: Vec::new(),
            free: Vec::new(),
            open_sessions: 0,
            stream_owner: HashMap::new(),
            next_stream_id: 1,
            dirty: Vec::new(),
            ws_config,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn genomes(&self) -> &Arc<GenomeProvider> {
        &self.genomes
    }

    /// Where `useGPU` renders evaluate their CPPNs, for the start-up log.
    pub fn cppn_device(&self) -> String {
        match &self.gpu {
            CppnBackend::Gpu(gpu) => format!("Vulkan device {}", gpu.device().name),
            CppnBackend::Cpu => "the CPU".into(),
        }
    }

    pub fn worker_threads(&self) -> usize {
        self.scheduler.pool().current_num_threads()
    }

    /// Serves until the event loop fails (the process is stopped from outside).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        loop {
            // Sessions dirtied while pumping others are pumped on the next turn, at once.
            let timeout = if self.dirty.is_empty() {
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
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    token => self.socket_event(
                        token,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable(),
                    ),
                }
            }
            self.job_events();
            self.pump_dirty();
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                self.sweep_handshakes();
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.open_sessions >= self.config.max_connections {
                        eprintln!(
                            "connection from {peer} refused: {} connections open (max)",
                            self.open_sessions
                        );
                        continue;
                    }
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
                    let conn = Conn::new(stream);
                    let ws = match tungstenite::accept_with_config(conn, Some(self.ws_config)) {
                        Ok(ws) => Ws::Open(Box::new(ws)),
                        Err(HandshakeError::Interrupted(mid)) => Ws::Handshake(Box::new(mid)),
                        Err(HandshakeError::Failure(e)) => {
                            eprintln!("handshake with {peer} failed: {e}");
                            self.free.push(index);
                            continue;
                        }
                    };
                    self.sessions[index] = Some(Session {
                        ws,
                        peer,
                        connected: Instant::now(),
                        streams: Vec::new(),
                        queued: VecDeque::new(),
                        next_wire_id: 1,
                        blocked: false,
                        dirty: false,
                        closing: false,
                        draining_until: None,
                    });
                    self.open_sessions += 1;
                    self.after_handshake_step(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Usually out of file descriptors; the pending connection stays queued
                    // and is retried on the next readable event.
                    eprintln!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn session(&mut self, token: Token) -> Option<&mut Session> {
        self.sessions
            .get_mut(token.0.checked_sub(FIRST_SESSION)?)?
            .as_mut()
    }

    fn socket_event(&mut self, token: Token, readable: bool, writable: bool) {
        let Some(session) = self.session(token) else {
            return;
        };
        if let Ws::Handshake(_) = session.ws {
            let Ws::Handshake(mid) = std::mem::replace(&mut session.ws, Ws::Gone) else {
                unreachable!()
            };
            session.ws = match (*mid).handshake() {
                Ok(ws) => Ws::Open(Box::new(ws)),
                Err(HandshakeError::Interrupted(mid)) => Ws::Handshake(Box::new(mid)),
                Err(HandshakeError::Failure(e)) => {
                    eprintln!("handshake with {} failed: {e}", session.peer);
                    Ws::Gone
                }
            };
            self.after_handshake_step(token);
            return;
        }
        if writable {
            session.blocked = false;
            self.mark_dirty(token);
        }
        if readable {
            self.read_messages(token);
        }
    }

    /// Sends the welcome once the handshake is done; drops the session if it failed.
    fn after_handshake_step(&mut self, token: Token) {
        let Some(session) = self.session(token) else {
            return;
        };
        match &mut session.ws {
            Ws::Handshake(_) => {}
            Ws::Gone => self.drop_session(token, Outcome::Disconnected),
            Ws::Open(ws) => {
                ws.get_mut().handshake_budget = None;
                self.send_text(token, protocol::welcome());
                self.mark_dirty(token);
                // Messages may have arrived with the upgrade request.
                self.read_messages(token);
            }
        }
    }

    fn read_messages(&mut self, token: Token) {
        loop {
            let Some(session) = self.session(token) else {
                return;
            };
            let Ws::Open(ws) = &mut session.ws else {
                return;
            };
            if session.draining_until.is_some() {
                let mut discard = [0u8; 16 * 1024];
                match ws.get_mut().stream.read(&mut discard) {
                    Ok(0) => return self.drop_session(token, Outcome::Disconnected),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return self.drop_session(token, Outcome::Disconnected),
                }
            }
            match ws.read() {
                Ok(Message::Text(text)) => self.client_text(token, &text),
                Ok(Message::Binary(_)) => self.send_text(
                    token,
                    protocol::error(
                        None,
                        "Binary messages are not accepted; send JSON text messages",
                    ),
                ),
                Ok(Message::Close(_)) => {
                    // tungstenite has queued the close reply; flush it, then drop.
                    session.closing = true;
                    self.mark_dirty(token);
                    return;
                }
                // A ping's pong is queued by tungstenite; the pump's flush sends it.
                Ok(_) => self.mark_dirty(token),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(WsError::Capacity(e)) => {
                    return self.close_with(token, CloseCode::Size, &format!("{e}"));
                }
                Err(WsError::Protocol(e)) => {
                    return self.close_with(token, CloseCode::Protocol, &format!("{e}"));
                }
                Err(WsError::Utf8) => {
                    return self.close_with(token, CloseCode::Invalid, "text is not UTF-8");
                }
                Err(_) => return self.drop_session(token, Outcome::Disconnected),
            }
        }
    }

    /// Sends a close frame with `reason`, ends the session's renders, and drains the socket
    /// for at most [`DRAIN_TIME`] before dropping it.
    fn close_with(&mut self, token: Token, code: CloseCode, reason: &str) {
        let Some(session) = self.session(token) else {
            return;
        };
        let Ws::Open(ws) = &mut session.ws else {
            return self.drop_session(token, Outcome::Disconnected);
        };
        eprintln!("closing connection from {}: {reason}", session.peer);
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        let _ = ws.close(Some(frame));
        let _ = ws.flush();
        let _ = ws.get_mut().stream.shutdown(std::net::Shutdown::Write);
        session.draining_until = Some(Instant::now() + DRAIN_TIME);
        session.queued.clear();
        while self.session(token).is_some_and(|s| !s.streams.is_empty()) {
            self.end_stream(token, 0, Outcome::Disconnected);
        }
        self.read_messages(token);
    }

    fn client_text(&mut self, token: Token, text: &str) {
        match protocol::parse_client_message(text, &self.limits) {
            Ok(ClientMessage::Render(spec)) => self.request_render(token, *spec),
            Ok(ClientMessage::Cancel { request_id }) => self.cancel(token, &request_id),
            Ok(ClientMessage::Stats { request_id }) => {
                let text = protocol::stats(request_id.as_ref(), &self.stats());
                self.send_text(token, text);
            }
            Err(e) => self.send_text(token, protocol::error(e.request_id.as_ref(), &e.message)),
        }
    }

    /// What the server holds right now.
    pub fn stats(&self) -> ServerStats {
        let sessions = self.sessions.iter().flatten();
        let (waiting_new, waiting_resumed) = self.scheduler.waiting();
        ServerStats {
            connections: self.open_sessions,
            renders: self.stream_owner.len(),
            parked: sessions
                .clone()
                .flat_map(|s| &s.streams)
                .filter(|s| s.parked.is_some())
                .count(),
            queued: sessions.map(|s| s.queued.len()).sum(),
            waiting_new,
            waiting_resumed,
            cached_genomes: self.genomes.cached(),
        }
    }

    fn request_render(&mut self, token: Token, spec: RenderSpec) {
        let active = self.stream_owner.len();
        let max_streams = self.config.max_streams;
        let Some(session) = self.session(token) else {
            return;
        };
        let refuse = match &spec.request_id {
            Some(id) => {
                if session
                    .streams
                    .iter()
                    .any(|s| s.spec.request_id.as_ref() == Some(id))
                {
                    Some(format!(
                        "requestId {id} is already in use on this connection"
                    ))
                } else if session.streams.len() >= MAX_STREAMS_PER_CONNECTION {
                    Some(format!(
                        "Too many renders on this connection (at most \
                         {MAX_STREAMS_PER_CONNECTION} at once)"
                    ))
                } else {
                    None
                }
            }
            None if session.streams.iter().any(|s| s.spec.request_id.is_none()) => {
                if session.queued.len() >= MAX_QUEUED_PER_CONNECTION {
                    Some(format!(
                        "Too many queued renders on this connection (at most \
                         {MAX_QUEUED_PER_CONNECTION}); wait for complete or use requestId"
                    ))
                } else {
                    session.queued.push_back(spec);
                    return;
                }
            }
            None => None,
        };
        let refuse = refuse.or_else(|| {
            (active >= max_streams)
                .then(|| format!("Server busy: {active} renders in progress, try again later"))
        });
        match refuse {
            Some(message) => {
                self.send_text(token, protocol::error(spec.request_id.as_ref(), &message))
            }
            None => self.start_stream(token, spec),
        }
    }

    fn start_stream(&mut self, token: Token, spec: RenderSpec) {
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        let provider = self.genomes.clone();
        let genome = spec.genome.clone();
        let backend = if spec.use_gpu {
            self.gpu.clone()
        } else {
            CppnBackend::Cpu
        };
        let (job, handle) = stream(
            id,
            spec.request.clone(),
            backend,
            Box::new(move || provider.get(&genome)),
        );
        let total_frames = frames_for(spec.request.duration);
        let Some(session) = self.session(token) else {
            return;
        };
        let wire_id = session.next_wire_id;
        session.next_wire_id = session.next_wire_id.wrapping_add(1);
        let start = (spec.format == Format::Binary).then(|| {
            protocol::start(
                spec.request_id.as_ref(),
                wire_id,
                total_frames,
                spec.chunk_samples,
            )
        });
        session.streams.push(Stream {
            id,
            wire_id,
            frame: ChunkFrame::new(spec.format),
            spec,
            handle,
            parked: None,
            finished: None,
            total_frames,
            taken: 0,
            chunks_sent: 0,
            received: Instant::now(),
            first_chunk: None,
        });
        self.stream_owner.insert(id, token);
        if let Some(start) = start {
            self.send_text(token, start);
        }
        self.scheduler.submit(job);
    }

    fn cancel(&mut self, token: Token, request_id: &Value) {
        let Some(session) = self.session(token) else {
            return;
        };
        if let Some(i) = session
            .streams
            .iter()
            .position(|s| s.spec.request_id.as_ref() == Some(request_id))
        {
            let chunks = session.streams[i].chunks_sent;
            self.end_stream(token, i, Outcome::Cancelled);
            self.send_text(token, protocol::cancelled(request_id, chunks));
            self.mark_dirty(token);
        } else {
            let message = format!("No render with requestId {request_id} on this connection");
            self.send_text(token, protocol::error(Some(request_id), &message));
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
                | JobEvent::Failed(id, _) => *id,
            };
            // Events of streams that were cancelled or whose connection closed are dropped.
            let Some(&token) = self.stream_owner.get(&id) else {
                continue;
            };
            let Some(session) = self.session(token) else {
                continue;
            };
            let Some(i) = session.streams.iter().position(|s| s.id == id) else {
                continue;
            };
            match event {
                JobEvent::Ready(_) => {}
                JobEvent::Parked(_, job) => session.streams[i].parked = Some(job),
                JobEvent::Finished(_, finished) => session.streams[i].finished = Some(finished),
                JobEvent::Failed(_, error) => {
                    let request_id = session.streams[i].spec.request_id.clone();
                    // The error first, as `complete` above.
                    self.send_text(token, protocol::error(request_id.as_ref(), &error.0));
                    self.end_stream(token, i, Outcome::Failed(&error.0));
                }
            }
            self.mark_dirty(token);
        }
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(session) = self.session(token) {
            if !session.dirty {
                session.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    fn pump_dirty(&mut self) {
        // Pumping can dirty sessions again (a queued render starts); those wait for the next
        // turn of the loop, which comes at once because the worker will wake it.
        let dirty = std::mem::take(&mut self.dirty);
        for &token in &dirty {
            if let Some(session) = self.session(token) {
                session.dirty = false;
            }
            self.pump(token);
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Moves ready blocks into chunk messages and writes them until the socket would block or
    /// nothing is ready; finishes completed streams; flushes.
    fn pump(&mut self, token: Token) {
        if self
            .session(token)
            .is_none_or(|s| s.draining_until.is_some())
        {
            return;
        }
        loop {
            let Some(session) = self.session(token) else {
                return;
            };
            if session.blocked || session.closing || session.draining_until.is_some() {
                break;
            }
            let mut progressed = false;
            let mut completed = None;
            for i in 0..session.streams.len() {
                let s = &mut session.streams[i];
                while s.frame.samples() < s.spec.chunk_samples && s.taken < s.total_frames {
                    let Ok(block) = s.handle.consumer.pop() else {
                        break;
                    };
                    if s.frame.samples() == 0 {
                        s.frame.begin(
                            s.spec.request_id.as_ref(),
                            s.wire_id,
                            s.chunks_sent + 1,
                            s.taken as u64,
                            s.spec.chunk_samples,
                        );
                    }
                    let n = RENDER_QUANTUM.min(s.total_frames - s.taken);
                    s.frame.push(&block[..n]);
                    s.taken += n;
                }
                let full = s.frame.samples() == s.spec.chunk_samples;
                let last = s.taken == s.total_frames && s.frame.samples() > 0;
                if full || last {
                    let Ws::Open(ws) = &mut session.ws else {
                        return self.drop_session(token, Outcome::Disconnected);
                    };
                    // What tungstenite has buffered goes first (see `Conn`); until it is out,
                    // the finished chunk waits in its ChunkFrame. Once the chunk is handed
                    // over, a blocked socket stops the pump before another chunk is encoded.
                    let mut status = flush_status(ws.flush());
                    if let Flush::Done = status {
                        progressed = true;
                        s.chunks_sent += 1;
                        let frame = s.frame.finish(s.taken as u64);
                        if s.first_chunk.is_none() {
                            s.first_chunk = Some(s.received.elapsed());
                        }
                        ws.get_mut().start_chunk(frame);
                        status = flush_status(ws.flush());
                    }
                    match status {
                        Flush::Done => continue,
                        Flush::Blocked => {
                            session.blocked = true;
                            break;
                        }
                        Flush::Failed => return self.drop_session(token, Outcome::Disconnected),
                    }
                }
                if s.taken < s.total_frames && s.handle.consumer.is_empty() && s.handle.rearm() {
                    progressed = true;
                }
                if s.finished.is_some() && s.taken == s.total_frames && s.frame.samples() == 0 {
                    completed = Some(i);
                    break;
                }
            }
            if let Some(i) = completed {
                self.complete(token, i);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        self.flush(token);
        self.resume_parked(token);
    }

    /// Resubmits the session's parked jobs whose rings have drained below half. This runs
    /// after the flush, so that what was drained (a render's first chunk above all) is on its
    /// way to the client before the job competes with the loop for a core again.
    fn resume_parked(&mut self, token: Token) {
        let Server {
            sessions,
            scheduler,
            ..
        } = self;
        let Some(session) = token
            .0
            .checked_sub(FIRST_SESSION)
            .and_then(|i| sessions.get_mut(i))
            .and_then(Option::as_mut)
        else {
            return;
        };
        for s in &mut session.streams {
            if s.parked.is_some() && s.handle.consumer.slots() <= RING_BLOCKS / 2 {
                scheduler.submit(s.parked.take().expect("checked"));
            }
        }
    }

    /// Writes one message; false when the connection is unusable.
    fn write(session: &mut Session, message: Message) -> bool {
        let Ws::Open(ws) = &mut session.ws else {
            return false;
        };
        match ws.write(message) {
            Ok(()) => true,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                // The message is in the write buffer; the rest goes out when writable.
                session.blocked = true;
                true
            }
            Err(_) => false,
        }
    }

    fn flush(&mut self, token: Token) {
        let Some(session) = self.session(token) else {
            return;
        };
        let Ws::Open(ws) = &mut session.ws else {
            return;
        };
        match flush_status(ws.flush()) {
            Flush::Done if session.closing => self.drop_session(token, Outcome::Disconnected),
            Flush::Done => {}
            Flush::Blocked => session.blocked = true,
            Flush::Failed => self.drop_session(token, Outcome::Disconnected),
        }
    }

    fn send_text(&mut self, token: Token, text: String) {
        let Some(session) = self.session(token) else {
            return;
        };
        if !Self::write(session, Message::Text(text)) {
            eprintln!(
                "closing connection from {}: not reading its messages",
                session.peer
            );
            return self.drop_session(token, Outcome::Disconnected);
        }
        self.mark_dirty(token);
    }

    fn complete(&mut self, token: Token, i: usize) {
        let Some(session) = self.session(token) else {
            return;
        };
        let s = &session.streams[i];
        let finished = s.finished.expect("complete only after Finished");
        let text = protocol::complete(
            s.spec.request_id.as_ref(),
            &Completion {
                total_chunks: s.chunks_sent,
                total_samples: s.total_frames,
                duration: s.spec.request.duration,
                min: finished.stats.min,
                max: finished.stats.max,
                peak: finished.stats.peak,
                render_ms: finished.total.as_secs_f64() * 1000.0,
            },
        );
        // `complete` first: ending the stream may start the next queued render, whose first
        // message must come after this one.
        self.send_text(token, text);
        self.end_stream(token, i, Outcome::Complete);
    }

    /// Removes stream `i` (cancelling its job), logs it, and starts the next queued render.
    fn end_stream(&mut self, token: Token, i: usize, outcome: Outcome) {
        let log = self.config.log_renders;
        let Some(session) = self.session(token) else {
            return;
        };
        let s = session.streams.swap_remove(i);
        s.handle.shared.cancel();
        let untagged = s.spec.request_id.is_none();
        let next = if untagged {
            session.queued.pop_front()
        } else {
            None
        };
        if log {
            log_render(session.peer, &s, &outcome);
        }
        self.stream_owner.remove(&s.id);
        if let Some(spec) = next {
            self.request_render(token, spec);
        }
    }

    fn drop_session(&mut self, token: Token, outcome: Outcome) {
        let Some(index) = token.0.checked_sub(FIRST_SESSION) else {
            return;
        };
        let Some(mut session) = self.sessions.get_mut(index).and_then(Option::take) else {
            return;
        };
        session.queued.clear();
        for s in session.streams.drain(..) {
            s.handle.shared.cancel();
            self.stream_owner.remove(&s.id);
            if self.config.log_renders {
                log_render(session.peer, &s, &outcome);
            }
        }
        self.open_sessions -= 1;
        self.free.push(index);
        // Dropping the session closes the socket, which removes it from the poll set.
    }

    fn sweep_handshakes(&mut self) {
        let now = Instant::now();
        for index in 0..self.sessions.len() {
            let stale = matches!(
                &self.sessions[index],
                Some(s) if (matches!(s.ws, Ws::Handshake(_))
                    && now.duration_since(s.connected) > HANDSHAKE_TIMEOUT)
                    || s.draining_until.is_some_and(|t| now > t)
            );
            if stale {
                self.drop_session(Token(index + FIRST_SESSION), Outcome::Disconnected);
            }
        }
    }
}

/// What a flush of a connection came to.
enum Flush {
    Done,
    /// The socket would block; the rest goes out on the next writable event.
    Blocked,
    Failed,
}

fn flush_status(result: Result<(), WsError>) -> Flush {
    match result {
        Ok(()) => Flush::Done,
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Flush::Blocked,
        Err(_) => Flush::Failed,
    }
}

fn log_render(peer: SocketAddr, s: &Stream, outcome: &Outcome) {
    let outcome = match outcome {
        Outcome::Complete => "complete".to_owned(),
        Outcome::Cancelled => "cancelled".to_owned(),
        Outcome::Disconnected => "disconnected".to_owned(),
        Outcome::Failed(message) => format!("error: {message}"),
    };
    let ms =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
    eprintln!(
        "render peer={peer} genome={} duration={}s first_chunk_ms={} total_ms={} chunks={} outcome={outcome}",
        s.spec.genome.label(),
        s.spec.request.duration,
        ms(s.first_chunk),
        ms(Some(s.received.elapsed())),
        s.chunks_sent,
    );
}
