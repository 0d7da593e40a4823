//! One client connection: its WebSocket (handshake, then messages), the renders it streams and
//! the ones it has queued. The event loop ([`crate::server`]) owns every session and calls these
//! methods with [`Shared`], what all sessions share; a method that finds the connection unusable
//! returns [`Gone`] and the loop drops the session.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use krs_engine::dsp::RENDER_QUANTUM;
use krs_engine::render::budget::{
    Account, Demand, Refusal, Reservation, Resource, RETRY_AFTER_SECONDS,
};
use krs_engine::render::frames_for;
use krs_engine::render::stream::{
    stream, Finished, JobEvent, RenderJob, StreamHandle, RING_BLOCKS,
};
use krs_engine::{CppnBackend, RenderRequest};
use mio::net::TcpStream;
use mio::Token;
use serde_json::Value;
use tungstenite::handshake::server::{NoCallback, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error as WsError, Message, WebSocket};

use crate::admission::HEAVY_PREPARATION;
use crate::http::{self, Endpoints};
use crate::protocol::{self, ClientMessage, Completion, Form, Format, RenderSpec};
use crate::server::Shared;
use crate::wire::{ChunkFrame, Conn, Frame, MAX_HANDSHAKE_BYTES};

/// Concurrent renders on one connection (those with a `requestId`; renders without one run one
/// after the other).
pub const MAX_STREAMS_PER_CONNECTION: usize = 8;

/// Renders without `requestId` waiting for the one in progress on the same connection.
pub const MAX_QUEUED_PER_CONNECTION: usize = 16;

/// A connection that has not finished its WebSocket handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection we closed for a protocol violation is drained before it is dropped.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The connection cannot be used any more; the loop drops the session.
#[derive(Debug)]
pub struct Gone;

/// What a session method leaves behind: the session usable, or [`Gone`].
pub type Alive = Result<(), Gone>;

enum Ws {
    /// Accepted; the request head is not all here yet.
    Request(Box<Conn>),
    Handshake(Box<MidHandshake<ServerHandshake<Conn, NoCallback>>>),
    /// Answering a plain HTTP request; dropped once the answer is written.
    Http(Box<Conn>),
    Open(Box<WebSocket<Conn>>),
    Gone,
}

/// What a render asked for while the server drains gets: its client reconnects, through a
/// balancer to another instance.
const SHUTTING_DOWN: &str = "Server shutting down: reconnect and ask again";

/// One render being streamed to a connection.
struct Stream {
    id: u64,
    wire_id: u32,
    spec: RenderSpec,
    handle: StreamHandle,
    parked: Option<RenderJob>,
    /// Since when the job has been parked (its client not reading).
    parked_at: Option<Instant>,
    finished: Option<Finished>,
    total_frames: usize,
    /// Frames taken out of the ring so far.
    taken: usize,
    delivery: Delivery,
    /// The chunk being filled, encoded block by block.
    frame: ChunkFrame,
    chunks_sent: u64,
    received: Instant,
    first_chunk: Option<Duration>,
    /// The held render's 4 bytes per sample, reserved at request time and released with the
    /// stream (the job reserves the render's own memory).
    _held_memory: Option<Reservation>,
}

/// Where a stream's samples wait between the ring and the client.
enum Delivery {
    /// Chunk by chunk, as the blocks leave the ring.
    Live,
    /// Held until the render is complete and normalized, then sent as the batch form's one
    /// frame or in chunks. Holds the whole render: 4 bytes per sample (the duration limit
    /// bounds it: 115 MB for 600 s).
    Held {
        samples: Vec<f32>,
        /// Complete and normalized.
        ready: bool,
        /// Samples sent so far (put into chunks, or all of them once the batch frame is out).
        sent: usize,
    },
}

impl Stream {
    /// Moves blocks from the ring towards the client: into the chunk (live), or into the held
    /// render, which is normalized once complete and then cut into chunks unless it is sent
    /// in batch form. True when a batch render has just become ready: its `batch-result` must
    /// go out before its frame.
    fn take_blocks(&mut self) -> bool {
        let request_id = self.spec.request_id.as_ref();
        match &mut self.delivery {
            Delivery::Live => {
                while !self.frame.is_full() && self.taken < self.total_frames {
                    let Ok(block) = self.handle.consumer.pop() else {
                        break;
                    };
                    // Chunks hold whole blocks (chunkSamples is a multiple of the block), so a
                    // block always fits; only the render's last block may be partly past its end.
                    let n = RENDER_QUANTUM.min(self.total_frames - self.taken);
                    push_to_chunk(
                        &mut self.frame,
                        request_id,
                        self.wire_id,
                        self.chunks_sent,
                        self.taken,
                        &block[..n],
                    );
                    self.taken += n;
                }
                false
            }
            Delivery::Held {
                samples,
                ready,
                sent,
            } => {
                let mut became_ready = false;
                if !*ready {
                    while self.taken < self.total_frames {
                        let Ok(block) = self.handle.consumer.pop() else {
                            break;
                        };
                        let n = RENDER_QUANTUM.min(self.total_frames - self.taken);
                        samples.extend_from_slice(&block[..n]);
                        self.taken += n;
                    }
                    if self.taken == self.total_frames && self.finished.is_some() {
                        self.spec.normalize.apply(samples);
                        *ready = true;
                        became_ready = true;
                    }
                }
                if *ready && self.spec.form == Form::Stream {
                    while !self.frame.is_full() && *sent < self.total_frames {
                        let n = self.frame.room().min(self.total_frames - *sent);
                        push_to_chunk(
                            &mut self.frame,
                            request_id,
                            self.wire_id,
                            self.chunks_sent,
                            *sent,
                            &samples[*sent..*sent + n],
                        );
                        *sent += n;
                    }
                }
                became_ready && self.spec.form == Form::Batch
            }
        }
    }

    /// Samples handed to the client so far (in frames sent or being filled).
    fn delivered(&self) -> usize {
        match &self.delivery {
            Delivery::Live => self.taken,
            Delivery::Held { sent, .. } => *sent,
        }
    }

    /// A frame ready to go: a full chunk, the render's last chunk, or the batch form's frame.
    fn frame_due(&self) -> bool {
        match &self.delivery {
            Delivery::Held {
                ready: true, sent, ..
            } if self.spec.form != Form::Stream => *sent == 0,
            _ => {
                self.frame.is_full()
                    || (self.delivered() == self.total_frames && self.frame.samples() > 0)
            }
        }
    }

    /// The frame [`Stream::frame_due`] found ready.
    fn take_frame(&mut self) -> Frame {
        self.chunks_sent += 1;
        if self.first_chunk.is_none() {
            self.first_chunk = Some(self.received.elapsed());
        }
        match &mut self.delivery {
            Delivery::Held { samples, sent, .. } if self.spec.form != Form::Stream => {
                let frame = match self.spec.form {
                    Form::Pcm => Frame::pcm16(samples),
                    _ => Frame::samples(samples),
                };
                *samples = Vec::new();
                *sent = self.total_frames;
                frame
            }
            _ => self.frame.finish(self.delivered() as u64),
        }
    }

    fn is_complete(&self) -> bool {
        let done = match &self.delivery {
            Delivery::Live => self.finished.is_some() && self.taken == self.total_frames,
            Delivery::Held { ready, sent, .. } => *ready && *sent == self.total_frames,
        };
        done && self.frame.samples() == 0
    }
}

/// Appends samples to the stream's chunk, beginning chunk `chunks_sent + 1` at sample `offset`
/// if the chunk is empty.
fn push_to_chunk(
    frame: &mut ChunkFrame,
    request_id: Option<&Value>,
    wire_id: u32,
    chunks_sent: u64,
    offset: usize,
    samples: &[f32],
) {
    if frame.samples() == 0 {
        frame.begin(request_id, wire_id, chunks_sent + 1, offset as u64);
    }
    frame.push(samples);
}

/// Why a stream left its session, for the render log.
pub enum Outcome<'a> {
    Complete,
    Cancelled,
    Disconnected,
    Failed(&'a str),
}

/// Which protocols a connection speaks, by the listener that accepted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The service port: `welcome`, then the seed protocol and its extensions.
    Service,
    /// The worker port: kromosynth-cli's render worker and the PCM server's `get_audio_data`,
    /// whose clients take the first message as the answer, so nothing is sent before it.
    OneShot,
}

pub struct Session {
    token: Token,
    kind: Kind,
    ws: Ws,
    peer: SocketAddr,
    connected: Instant,
    /// The last message from the client, or the end of the last render.
    last_active: Instant,
    streams: Vec<Stream>,
    queued: VecDeque<RenderSpec>,
    /// Whole-result renders (batch form, worker port, PCM) waiting for room in the CPU budget,
    /// in arrival order, each also once in `Shared::cpu_waiters`. Their clients wait for the
    /// whole render anyway, and kromosynth-cli takes an error for a failed evaluation, so they
    /// queue instead of being refused. Counted with `streams` against
    /// [`MAX_STREAMS_PER_CONNECTION`] (at most that many).
    waiting: VecDeque<RenderSpec>,
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
    /// This connection's share of the memory budget, from its first render on.
    account: Option<Arc<Account>>,
}

impl Session {
    /// A session for an accepted connection; [`Session::socket_event`] reads its request.
    pub fn accept(token: Token, kind: Kind, stream: TcpStream, peer: SocketAddr) -> Session {
        Session {
            token,
            kind,
            ws: Ws::Request(Box::new(Conn::new(stream))),
            peer,
            connected: Instant::now(),
            last_active: Instant::now(),
            streams: Vec::new(),
            queued: VecDeque::new(),
            waiting: VecDeque::new(),
            next_wire_id: 1,
            blocked: false,
            dirty: false,
            closing: false,
            draining_until: None,
            account: None,
        }
    }

    /// A request or handshake past its deadline, or a drain past its time.
    pub fn is_stale(&self, now: Instant) -> bool {
        (matches!(self.ws, Ws::Request(_) | Ws::Handshake(_) | Ws::Http(_))
            && now.duration_since(self.connected) > HANDSHAKE_TIMEOUT)
            || self.draining_until.is_some_and(|t| now > t)
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Closes (1001) a connection that has had no render and no message for `timeout`.
    pub fn close_if_idle(&mut self, shared: &mut Shared, now: Instant, timeout: Duration) -> Alive {
        let idle = matches!(self.ws, Ws::Open(_))
            && self.streams.is_empty()
            && self.queued.is_empty()
            && self.waiting.is_empty()
            && !self.closing
            && self.draining_until.is_none()
            && now.duration_since(self.last_active) > timeout;
        if !idle {
            return Ok(());
        }
        shared.idle_closed += 1;
        let reason = format!("idle for {} s", timeout.as_secs());
        self.close_with(shared, CloseCode::Away, &reason)
    }

    /// Drops the renders whose client has read nothing for `timeout` (the ring full, the job
    /// parked), telling the client why; the connection stays.
    pub fn drop_stalled(&mut self, shared: &mut Shared, now: Instant, timeout: Duration) -> Alive {
        while let Some(i) = self
            .streams
            .iter()
            .position(|s| s.parked_at.is_some_and(|t| now.duration_since(t) > timeout))
        {
            shared.stalled_renders += 1;
            let (form, request_id) = (
                self.streams[i].spec.form,
                self.streams[i].spec.request_id.clone(),
            );
            let message = format!(
                "Render dropped: the client read nothing for {} s",
                timeout.as_secs()
            );
            self.send_error(shared, form, request_id.as_ref(), &message)?;
            self.end_stream(shared, i, Outcome::Failed("stalled"))?;
        }
        Ok(())
    }

    /// The session's position in its list of streams of render `id`.
    pub fn stream_index(&self, id: u64) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    pub fn socket_event(&mut self, shared: &mut Shared, readable: bool, writable: bool) -> Alive {
        match &mut self.ws {
            Ws::Request(_) => return self.read_request(shared),
            Ws::Http(conn) => {
                return match conn.write_chunk() {
                    // Answered: the connection closes.
                    Ok(()) => Err(Gone),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(_) => Err(Gone),
                };
            }
            Ws::Handshake(_) => {
                let Ws::Handshake(mid) = std::mem::replace(&mut self.ws, Ws::Gone) else {
                    unreachable!()
                };
                self.ws = match (*mid).handshake() {
                    Ok(ws) => Ws::Open(Box::new(ws)),
                    Err(HandshakeError::Interrupted(mid)) => Ws::Handshake(Box::new(mid)),
                    Err(HandshakeError::Failure(e)) => {
                        eprintln!("handshake with {} failed: {e}", self.peer);
                        Ws::Gone
                    }
                };
                return self.after_handshake_step(shared);
            }
            Ws::Open(_) | Ws::Gone => {}
        }
        if writable {
            self.blocked = false;
            self.mark_dirty(shared);
        }
        if readable {
            self.read_messages(shared)?;
        }
        Ok(())
    }

    /// Looks at the request head without taking it: a WebSocket upgrade goes to tungstenite's
    /// handshake, which reads it again; anything else is answered as plain HTTP.
    pub fn read_request(&mut self, shared: &mut Shared) -> Alive {
        let Ws::Request(conn) = &mut self.ws else {
            return Ok(());
        };
        let mut head = [0u8; MAX_HANDSHAKE_BYTES];
        let n = loop {
            match conn.tcp().peek(&mut head) {
                Ok(0) => return Err(Gone),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Gone),
            }
        };
        let Some(end) = http::head_end(&head[..n]) else {
            if n == head.len() {
                eprintln!(
                    "dropping connection from {}: request head over {MAX_HANDSHAKE_BYTES} bytes",
                    self.peer
                );
                return Err(Gone);
            }
            // The rest of the head is still on its way; its arrival is another event.
            return Ok(());
        };
        let upgrade = http::is_websocket_upgrade(&head[..end]);
        let refused_origin = upgrade && !shared.config.allowed_origins.allows(&head[..end]);
        if upgrade && !refused_origin {
            let Ws::Request(conn) = std::mem::replace(&mut self.ws, Ws::Gone) else {
                unreachable!()
            };
            self.ws = match tungstenite::accept_with_config(*conn, Some(shared.ws_config)) {
                Ok(ws) => Ws::Open(Box::new(ws)),
                Err(HandshakeError::Interrupted(mid)) => Ws::Handshake(Box::new(mid)),
                Err(HandshakeError::Failure(e)) => {
                    eprintln!("handshake with {} failed: {e}", self.peer);
                    Ws::Gone
                }
            };
            return self.after_handshake_step(shared);
        }
        // Take the head off the socket (it is all there: it was just peeked).
        let mut taken = 0;
        while taken < end {
            match conn.tcp().read(&mut head[taken..end]) {
                Ok(0) => return Err(Gone),
                Ok(k) => taken += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Gone),
            }
        }
        let answer = if refused_origin {
            shared.metrics.refused_origins += 1;
            http::forbidden_origin()
        } else {
            let service = (self.kind == Kind::Service).then_some(&*shared as &dyn Endpoints);
            http::respond(&head[..end], SystemTime::now(), shared.health(), service)
        };
        shared.metrics.http_answered(answer.status);
        conn.queue_bytes(answer.bytes);
        let Ws::Request(conn) = std::mem::replace(&mut self.ws, Ws::Gone) else {
            unreachable!()
        };
        self.ws = Ws::Http(conn);
        self.socket_event(shared, false, true)
    }

    /// Sends the welcome once the handshake is done.
    pub fn after_handshake_step(&mut self, shared: &mut Shared) -> Alive {
        match &mut self.ws {
            Ws::Request(_) | Ws::Handshake(_) | Ws::Http(_) => Ok(()),
            Ws::Gone => Err(Gone),
            Ws::Open(ws) => {
                ws.get_mut().end_handshake();
                if self.kind == Kind::Service {
                    self.send_text(shared, protocol::welcome())?;
                }
                // Messages may have arrived with the upgrade request.
                self.read_messages(shared)
            }
        }
    }

    fn read_messages(&mut self, shared: &mut Shared) -> Alive {
        loop {
            let Ws::Open(ws) = &mut self.ws else {
                return Ok(());
            };
            if self.draining_until.is_some() {
                let mut discard = [0u8; 16 * 1024];
                match ws.get_mut().tcp().read(&mut discard) {
                    Ok(0) => return Err(Gone),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Err(Gone),
                }
            }
            match ws.read() {
                Ok(Message::Text(text)) => self.client_text(shared, &text)?,
                Ok(Message::Binary(_)) => self.send_text(
                    shared,
                    protocol::error(
                        None,
                        "Binary messages are not accepted; send JSON text messages",
                    ),
                )?,
                Ok(Message::Close(_)) => {
                    // tungstenite has queued the close reply; flush it, then drop.
                    self.closing = true;
                    self.mark_dirty(shared);
                    return Ok(());
                }
                // A ping's pong is queued by tungstenite; the pump's flush sends it.
                Ok(_) => self.mark_dirty(shared),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(WsError::Capacity(e)) => {
                    return self.close_with(shared, CloseCode::Size, &format!("{e}"));
                }
                Err(WsError::Protocol(e)) => {
                    return self.close_with(shared, CloseCode::Protocol, &format!("{e}"));
                }
                Err(WsError::Utf8) => {
                    return self.close_with(shared, CloseCode::Invalid, "text is not UTF-8");
                }
                Err(_) => return Err(Gone),
            }
        }
    }

    /// While the server drains: closes (1001) a connection with nothing in progress and nothing
    /// left to write, so that its client goes elsewhere and the server can exit.
    pub fn close_if_drained(&mut self, shared: &mut Shared) -> Alive {
        let done = matches!(self.ws, Ws::Open(_))
            && self.streams.is_empty()
            && self.queued.is_empty()
            && self.waiting.is_empty()
            && !self.blocked
            && !self.closing
            && self.draining_until.is_none();
        if !done {
            return Ok(());
        }
        self.close_with(shared, CloseCode::Away, "server shutting down")
    }

    /// Sends a close frame with `reason`, ends the session's renders, and drains the socket
    /// for at most [`DRAIN_TIME`] before it is dropped.
    fn close_with(&mut self, shared: &mut Shared, code: CloseCode, reason: &str) -> Alive {
        let Ws::Open(ws) = &mut self.ws else {
            return Err(Gone);
        };
        eprintln!("closing connection from {}: {reason}", self.peer);
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        let _ = ws.close(Some(frame));
        let _ = ws.flush();
        let _ = ws.get_mut().tcp().shutdown(std::net::Shutdown::Write);
        self.draining_until = Some(Instant::now() + DRAIN_TIME);
        self.clear_queue(shared);
        while !self.streams.is_empty() {
            self.end_stream(shared, 0, Outcome::Disconnected)?;
        }
        self.read_messages(shared)
    }

    fn client_text(&mut self, shared: &mut Shared, text: &str) -> Alive {
        self.last_active = Instant::now();
        if self.kind == Kind::OneShot {
            return match protocol::parse_one_shot(text, &shared.limits) {
                Ok(spec) => self.request_render(shared, spec),
                Err(e) => self.send_error(shared, e.form, None, &e.message),
            };
        }
        match protocol::parse_client_message(text, &shared.limits) {
            // Draining: what this connection already asked for finishes, nothing new starts; the
            // client reconnects, through a balancer to another instance.
            Ok(ClientMessage::Render(spec)) if shared.draining => {
                self.send_error(shared, spec.form, spec.request_id.as_ref(), SHUTTING_DOWN)
            }
            Ok(ClientMessage::Render(spec)) => self.request_render(shared, *spec),
            Ok(ClientMessage::Cancel { request_id }) => self.cancel(shared, &request_id),
            Ok(ClientMessage::PlaybackPosition) => Ok(()),
            Ok(ClientMessage::Stats { request_id }) => {
                let text = protocol::stats(request_id.as_ref(), &shared.stats());
                self.send_text(shared, text)
            }
            Err(e) => self.send_text(shared, protocol::error(e.request_id.as_ref(), &e.message)),
        }
    }

    fn request_render(&mut self, shared: &mut Shared, spec: RenderSpec) -> Alive {
        let refuse = match &spec.request_id {
            Some(id) => {
                if self.specs().any(|s| s.request_id.as_ref() == Some(id)) {
                    Some(format!(
                        "requestId {id} is already in use on this connection"
                    ))
                } else if self.specs().count() >= MAX_STREAMS_PER_CONNECTION {
                    Some(format!(
                        "Too many renders on this connection (at most \
                         {MAX_STREAMS_PER_CONNECTION} at once)"
                    ))
                } else {
                    None
                }
            }
            None if self.specs().any(|s| s.request_id.is_none()) => {
                if self.queued.len() >= MAX_QUEUED_PER_CONNECTION {
                    Some(format!(
                        "Too many queued renders on this connection (at most \
                         {MAX_QUEUED_PER_CONNECTION}); wait for complete or use requestId"
                    ))
                } else {
                    self.queued.push_back(spec);
                    shared.queued += 1;
                    return Ok(());
                }
            }
            // An untagged render counts towards the connection's concurrent renders too.
            None if self.specs().count() >= MAX_STREAMS_PER_CONNECTION => Some(format!(
                "Too many renders on this connection (at most \
                     {MAX_STREAMS_PER_CONNECTION} at once)"
            )),
            None => None,
        };
        let refuse = refuse.or_else(|| shared.would_refuse());
        match refuse {
            Some(message) => self.send_error(shared, spec.form, spec.request_id.as_ref(), &message),
            None => self.start_stream(shared, spec),
        }
    }

    fn start_stream(&mut self, shared: &mut Shared, spec: RenderSpec) -> Alive {
        let received = Instant::now();
        if let Some(message) = shared.starts.congested(received) {
            return self.refuse_start(shared, spec, &message, Some(RETRY_AFTER_SECONDS), true);
        }
        let account = self
            .account
            .get_or_insert_with(|| shared.budget.account())
            .clone();
        let total_frames = frames_for(spec.request.duration, spec.request.sample_rate);
        // The share of the cores it will need, by what renders of its genome cost so far; the
        // job replaces it with its own measured cost.
        let overhead = shared.scheduler.overhead().factor();
        let estimate = shared.costs.estimate(
            &spec.genome,
            spec.request.sample_rate,
            total_frames,
            overhead,
        );
        let cpu = match account.reserve(Demand::cpu(estimate)) {
            Ok(r) => r,
            Err(refusal) => return self.refuse_for(shared, spec, &refusal),
        };
        let held_memory = if spec.is_held() {
            match account.reserve(Demand::memory(total_frames as u64 * 4)) {
                Ok(r) => Some(r),
                Err(refusal) => return self.refuse_for(shared, spec, &refusal),
            }
        } else {
            None
        };
        let id = shared.next_stream_id;
        shared.next_stream_id += 1;
        let provider = shared.genomes.clone();
        let genome = spec.genome.clone();
        let heavy = shared.costs.preparation(&genome, total_frames) > HEAVY_PREPARATION;
        let backend = if spec.use_gpu {
            shared.gpu.clone()
        } else {
            CppnBackend::Cpu
        };
        let request = RenderRequest {
            limiter: spec.compressor.unwrap_or(shared.config.compressor),
            ..spec.request.clone()
        };
        let (job, handle) = stream(
            id,
            request,
            backend,
            Box::new(move || provider.get(&genome)),
        );
        let job = job.with_account(account).with_cpu(cpu);
        let wire_id = self.next_wire_id;
        self.next_wire_id = self.next_wire_id.wrapping_add(1);
        let start = (spec.format == Format::Binary && spec.form == Form::Stream).then(|| {
            protocol::start(
                spec.request_id.as_ref(),
                wire_id,
                total_frames,
                spec.chunk_samples,
                spec.request.sample_rate,
            )
        });
        self.streams.push(Stream {
            id,
            wire_id,
            frame: ChunkFrame::new(spec.format, spec.chunk_samples, spec.request.sample_rate),
            delivery: if spec.is_held() {
                Delivery::Held {
                    samples: Vec::new(),
                    ready: false,
                    sent: 0,
                }
            } else {
                Delivery::Live
            },
            spec,
            handle,
            parked: None,
            parked_at: None,
            finished: None,
            total_frames,
            taken: 0,
            chunks_sent: 0,
            received,
            first_chunk: None,
            _held_memory: held_memory,
        });
        shared.stream_owner.insert(id, self.token);
        shared.starts.add(id, received, heavy);
        shared.metrics.renders_started += 1;
        if let Some(start) = start {
            self.send_text(shared, start)?;
        }
        shared.scheduler.submit(job);
        Ok(())
    }

    fn cancel(&mut self, shared: &mut Shared, request_id: &Value) -> Alive {
        if let Some(i) = self
            .waiting
            .iter()
            .position(|s| s.request_id.as_ref() == Some(request_id))
        {
            self.waiting.remove(i);
            // The connection's entries there are alike: each retries its first waiting render.
            if let Some(entry) = shared.cpu_waiters.iter().rposition(|t| *t == self.token) {
                shared.cpu_waiters.remove(entry);
            }
            return self.send_text(shared, protocol::cancelled(request_id, 0));
        }
        match self
            .streams
            .iter()
            .position(|s| s.spec.request_id.as_ref() == Some(request_id))
        {
            Some(i) => {
                let chunks = self.streams[i].chunks_sent;
                self.end_stream(shared, i, Outcome::Cancelled)?;
                self.send_text(shared, protocol::cancelled(request_id, chunks))
            }
            None => {
                let message = format!("No render with requestId {request_id} on this connection");
                self.send_text(shared, protocol::error(Some(request_id), &message))
            }
        }
    }

    /// What a worker reported about stream `i`.
    pub fn job_event(&mut self, shared: &mut Shared, i: usize, event: JobEvent) -> Alive {
        match event {
            JobEvent::Ready(_) => {}
            JobEvent::Parked(_, job) => {
                // Its first chunk is rendered (a job parks after its first turn).
                shared
                    .starts
                    .remove(self.streams[i].id, self.streams[i].received);
                self.streams[i].parked = Some(job);
                self.streams[i].parked_at = Some(Instant::now());
                shared.parked += 1;
            }
            JobEvent::Finished(_, finished) => {
                let s = &mut self.streams[i];
                shared.starts.remove(s.id, s.received);
                shared.costs.learn(
                    &s.spec.genome,
                    finished.rendering,
                    finished.prepare,
                    finished.total_frames,
                );
                s.finished = Some(finished);
            }
            JobEvent::Failed(_, error) => {
                let request_id = self.streams[i].spec.request_id.clone();
                let form = self.streams[i].spec.form;
                let message = error.to_string();
                // The error first, as `complete` below.
                self.send_error(shared, form, request_id.as_ref(), &message)?;
                self.end_stream(shared, i, Outcome::Failed(&message))?;
            }
            JobEvent::Refused(_, refusal) => {
                let s = &self.streams[i];
                let spec = s.spec.clone();
                let message = refusal.to_string();
                self.send_refusal(shared, &spec, &message, refusal.retry_after())?;
                self.end_stream(shared, i, Outcome::Failed(&message))?;
            }
        }
        self.mark_dirty(shared);
        Ok(())
    }

    pub fn mark_dirty(&mut self, shared: &mut Shared) {
        if !self.dirty {
            self.dirty = true;
            shared.dirty.push(self.token);
        }
    }

    /// Moves ready blocks into chunk messages and writes them until the socket would block or
    /// nothing is ready; finishes completed streams; flushes.
    pub fn pump(&mut self, shared: &mut Shared) -> Alive {
        self.dirty = false;
        if self.draining_until.is_some() {
            return Ok(());
        }
        while !(self.blocked || self.closing) {
            let mut progressed = false;
            let mut completed = None;
            for i in 0..self.streams.len() {
                let s = &mut self.streams[i];
                if s.take_blocks() {
                    let text = protocol::batch_result(
                        s.spec.request_id.as_ref(),
                        s.total_frames,
                        s.spec.request.duration,
                        s.spec.request.sample_rate,
                    );
                    if !queue(&mut self.ws, &mut self.blocked, Message::Text(text)) {
                        return Err(Gone);
                    }
                    progressed = true;
                }
                if s.frame_due() {
                    let Ws::Open(ws) = &mut self.ws else {
                        return Err(Gone);
                    };
                    // What tungstenite has buffered goes first (see `Conn`); until it is out,
                    // the finished frame waits in its stream. Once the frame is handed over, a
                    // blocked socket stops the pump before another frame is encoded.
                    let mut status = flush_status(ws.flush());
                    if let Flush::Done = status {
                        progressed = true;
                        let first = s.first_chunk.is_none();
                        let frame = s.take_frame();
                        shared
                            .metrics
                            .chunk_sent(frame.len(), s.first_chunk.filter(|_| first));
                        ws.get_mut().start_chunk(frame);
                        status = flush_status(ws.flush());
                    }
                    match status {
                        Flush::Done => continue,
                        Flush::Blocked => {
                            self.blocked = true;
                            break;
                        }
                        Flush::Failed => return Err(Gone),
                    }
                }
                if s.taken < s.total_frames && s.handle.consumer.is_empty() && s.handle.rearm() {
                    progressed = true;
                }
                if s.is_complete() {
                    completed = Some(i);
                    break;
                }
            }
            if let Some(i) = completed {
                self.complete(shared, i)?;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        self.flush()?;
        self.resume_parked(shared);
        Ok(())
    }

    /// Resubmits the parked jobs whose rings have drained below half. This runs after the
    /// flush, so that what was drained (a render's first chunk above all) is on its way to the
    /// client before the job competes with the loop for a core again.
    fn resume_parked(&mut self, shared: &mut Shared) {
        for s in &mut self.streams {
            if s.handle.consumer.slots() <= RING_BLOCKS / 2 {
                if let Some(job) = s.parked.take() {
                    s.parked_at = None;
                    shared.parked -= 1;
                    shared.scheduler.submit(job);
                }
            }
        }
    }

    fn flush(&mut self) -> Alive {
        let Ws::Open(ws) = &mut self.ws else {
            return Ok(());
        };
        match flush_status(ws.flush()) {
            Flush::Done if self.closing => Err(Gone),
            Flush::Done => Ok(()),
            Flush::Blocked => {
                self.blocked = true;
                Ok(())
            }
            Flush::Failed => Err(Gone),
        }
    }

    fn send_text(&mut self, shared: &mut Shared, text: String) -> Alive {
        if !queue(&mut self.ws, &mut self.blocked, Message::Text(text)) {
            eprintln!(
                "closing connection from {}: not reading its messages",
                self.peer
            );
            return Err(Gone);
        }
        self.mark_dirty(shared);
        Ok(())
    }

    fn complete(&mut self, shared: &mut Shared, i: usize) -> Alive {
        let s = &self.streams[i];
        let request_id = s.spec.request_id.as_ref();
        let form = s.spec.form;
        let text = match form {
            Form::Stream => {
                let finished = s.finished.expect("complete only after Finished");
                Some(protocol::complete(
                    request_id,
                    &Completion {
                        total_chunks: s.chunks_sent,
                        total_samples: s.total_frames,
                        duration: s.spec.request.duration,
                        sample_rate: s.spec.request.sample_rate,
                        min: finished.stats.min,
                        max: finished.stats.max,
                        peak: finished.stats.peak,
                        render_ms: finished.total.as_secs_f64() * 1000.0,
                    },
                ))
            }
            Form::Batch => Some(protocol::batch_complete(
                request_id,
                s.total_frames,
                s.spec.request.duration,
                s.spec.request.sample_rate,
            )),
            Form::Worker | Form::Pcm => None,
        };
        // `complete` first: ending the stream may start the next queued render, whose first
        // message must come after this one.
        if let Some(text) = text {
            self.send_text(shared, text)?;
        }
        self.end_stream(shared, i, Outcome::Complete)?;
        if form == Form::Worker {
            // The original render worker closes once it has answered; its clients wait for it.
            if let Ws::Open(ws) = &mut self.ws {
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                }));
            }
            self.closing = true;
            self.mark_dirty(shared);
        }
        Ok(())
    }

    /// Tells the client that a request failed, in the form its protocol uses.
    fn send_error(
        &mut self,
        shared: &mut Shared,
        form: Form,
        request_id: Option<&Value>,
        message: &str,
    ) -> Alive {
        match form {
            Form::Stream | Form::Batch => {
                self.send_text(shared, protocol::error(request_id, message))
            }
            Form::Worker => self.send_text(shared, protocol::worker_error(message)),
            Form::Pcm => {
                if !queue(&mut self.ws, &mut self.blocked, Message::Binary(Vec::new())) {
                    return Err(Gone);
                }
                self.mark_dirty(shared);
                Ok(())
            }
        }
    }

    /// Refuses `spec` for `refusal` ([`Session::refuse_start`]); CPU is the resource a
    /// whole-result render waits for.
    fn refuse_for(&mut self, shared: &mut Shared, spec: RenderSpec, refusal: &Refusal) -> Alive {
        let cpu_busy = matches!(
            refusal,
            Refusal::Busy {
                resource: Resource::Cpu,
                ..
            }
        );
        let message = refusal.to_string();
        self.refuse_start(shared, spec, &message, refusal.retry_after(), cpu_busy)
    }

    /// Refuses `spec` with `message` and starts the untagged render queued behind it, if any;
    /// a whole-result render refused for what frees up by itself (`waits`: CPU, or the first
    /// chunks ahead of it) waits instead ([`Session::retry_waiting`]). Streams are refused: a
    /// player asked for audio now, and may retry or go elsewhere.
    fn refuse_start(
        &mut self,
        shared: &mut Shared,
        spec: RenderSpec,
        message: &str,
        retry_after: Option<u32>,
        waits: bool,
    ) -> Alive {
        if spec.form != Form::Stream && waits && !shared.draining {
            self.waiting.push_back(spec);
            shared.cpu_waiters.push_back(self.token);
            return Ok(());
        }
        self.send_refusal(shared, &spec, message, retry_after)?;
        if spec.request_id.is_none() {
            self.start_next_queued(shared)?;
        }
        Ok(())
    }

    /// Untagged renders queued behind one start when it ends (or never starts): now.
    fn start_next_queued(&mut self, shared: &mut Shared) -> Alive {
        match self.queued.pop_front() {
            Some(next) => {
                shared.queued -= 1;
                self.request_render(shared, next)
            }
            None => Ok(()),
        }
    }

    /// Starts the first render waiting for CPU ([`Session::refuse_start`]) if it fits now, or
    /// refuses it when the server is draining. True when it no longer waits.
    pub fn retry_waiting(&mut self, shared: &mut Shared) -> Result<bool, Gone> {
        let Some(spec) = self.waiting.pop_front() else {
            return Ok(true);
        };
        if shared.draining {
            self.send_error(shared, spec.form, spec.request_id.as_ref(), SHUTTING_DOWN)?;
            if spec.request_id.is_none() {
                self.start_next_queued(shared)?;
            }
            return Ok(true);
        }
        let others = self.waiting.len();
        self.start_stream(shared, spec)?;
        if self.waiting.len() == others {
            return Ok(true);
        }
        // It waits again, queued at the back: it keeps its place at the front.
        self.waiting.rotate_right(1);
        Ok(false)
    }

    /// The renders of this connection that are in progress or wait for CPU.
    fn specs(&self) -> impl Iterator<Item = &RenderSpec> {
        self.streams.iter().map(|s| &s.spec).chain(&self.waiting)
    }

    /// Tells the client that its render cannot start now (`retry_after`: seconds after which
    /// it may) or ever.
    fn send_refusal(
        &mut self,
        shared: &mut Shared,
        spec: &RenderSpec,
        message: &str,
        retry_after: Option<u32>,
    ) -> Alive {
        match spec.form {
            Form::Stream | Form::Batch => {
                let text = protocol::refused(spec.request_id.as_ref(), message, retry_after);
                self.send_text(shared, text)
            }
            form => self.send_error(shared, form, spec.request_id.as_ref(), message),
        }
    }

    /// Removes stream `i` (cancelling its job), logs it, and starts the next queued render.
    fn end_stream(&mut self, shared: &mut Shared, i: usize, outcome: Outcome) -> Alive {
        let s = self.remove_stream(shared, i);
        self.last_active = Instant::now();
        shared.metrics.render_ended(&outcome);
        if shared.config.log_renders {
            log_render(self.peer, &s, &outcome);
        }
        if s.spec.request_id.is_none() {
            self.start_next_queued(shared)?;
        }
        Ok(())
    }

    fn remove_stream(&mut self, shared: &mut Shared, i: usize) -> Stream {
        let s = self.streams.swap_remove(i);
        s.handle.shared.cancel();
        shared.stream_owner.remove(&s.id);
        if s.parked.is_some() {
            shared.parked -= 1;
        }
        shared.starts.remove(s.id, s.received);
        // A job neither parked here nor finished is queued or on a worker: take it out of
        // the queue now, so that its reservations end with the stream.
        if s.parked.is_none() && s.finished.is_none() {
            shared.scheduler.discard_cancelled();
        }
        s
    }

    fn clear_queue(&mut self, shared: &mut Shared) {
        shared.queued -= self.queued.len();
        self.queued.clear();
        if !self.waiting.is_empty() {
            self.waiting.clear();
            let token = self.token;
            shared.cpu_waiters.retain(|t| *t != token);
        }
    }

    /// Ends every render of a session being dropped.
    pub fn end(mut self, shared: &mut Shared, outcome: Outcome) {
        self.clear_queue(shared);
        while !self.streams.is_empty() {
            let s = self.remove_stream(shared, self.streams.len() - 1);
            shared.metrics.render_ended(&outcome);
            if shared.config.log_renders {
                log_render(self.peer, &s, &outcome);
            }
        }
        // Dropping the session closes the socket, which removes it from the poll set.
    }
}

/// Queues one message; false when the connection is unusable. A socket that would block
/// sets `blocked`: the message is in tungstenite's write buffer and goes out when writable.
fn queue(ws: &mut Ws, blocked: &mut bool, message: Message) -> bool {
    let Ws::Open(ws) = ws else {
        return false;
    };
    match ws.write(message) {
        Ok(()) => true,
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
            *blocked = true;
            true
        }
        Err(_) => false,
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
