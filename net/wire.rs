//! The WebSocket wire under the messages: chunk messages encoded straight into whole WebSocket
//! frames, and the socket adapter that writes them from their own buffers between tungstenite's
//! frames (the connection's outgoing chunk queue, one frame deep).
//!
//! Why the bypass: a chunk the client has not taken yet is then held once, in its frame, and not
//! again as a copy in tungstenite's write buffer (80 KB per JSON chunk), and a 4096-sample JSON
//! chunk is encoded block by block as the blocks arrive instead of all at once when it is full.

use std::fmt::Write as _;
use std::io::{self, Read, Write};

use mio::net::TcpStream;
use serde_json::Value;

use crate::protocol::{open_message, Format};

/// Bytes before the samples in a binary chunk frame.
pub const BINARY_HEADER_BYTES: usize = 16;

/// Largest HTTP upgrade request; a real one is well under 1 KiB.
pub const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// One chunk message, encoded as its samples arrive: the header when the chunk starts, each
/// block's samples as the block leaves the ring, the tail when the chunk is complete. The event
/// loop thus prints a block while the worker renders the next one, and completing a chunk costs
/// one block's encoding instead of the whole chunk's (4096 JSON numbers take about 140 us).
///
/// JSON: `{"type":"chunk"[,"requestId":..],"index":N,"data":[..],"timestamp":T,"sampleRate":48000}`
/// in the original's field order: `index` counts from 1, `timestamp` is the end of the chunk in
/// seconds, and each sample is the shortest decimal of its f32 value widened to f64, as
/// JavaScript prints a Float32Array element, so parsing it and narrowing to f32 is bit-exact
/// (NaN becomes `null`, as in JSON.stringify). Binary, all
/// little-endian: `u32` stream id (from `start`), `u32` chunk index (from 1), `u64` offset of
/// the first sample in the render, then the samples as `f32`.
///
/// The chunk is built as a whole WebSocket frame (room for the frame header is kept at the
/// front), so the server can write it to the socket as it is, without a second copy of the
/// message in tungstenite's write buffer.
///
/// Holds one chunk at most: `chunk_samples` samples of about 20 bytes each as JSON (4 as binary)
/// plus headers, from [`ChunkFrame::begin`] until [`ChunkFrame::finish`] hands the bytes on.
#[derive(Debug)]
pub struct ChunkFrame {
    format: Format,
    /// Samples in a whole chunk (the last chunk of a render may hold fewer).
    chunk_samples: usize,
    /// The render's rate, for the JSON chunk's `timestamp` and `sampleRate`.
    sample_rate: u32,
    bytes: Vec<u8>,
    samples: usize,
}

/// Longest WebSocket frame header a server sends: 2 bytes, then a 64-bit payload length
/// (server frames are not masked).
const MAX_WS_HEADER: usize = 10;

/// A finished chunk message: one complete, final, unmasked WebSocket data frame (text for JSON,
/// binary for binary chunks), header and payload, ready for the socket.
#[derive(Debug)]
pub struct Frame {
    bytes: Vec<u8>,
    /// Where the frame starts in `bytes` (the header is right-aligned in the room kept for it).
    start: usize,
}

impl Frame {
    /// A binary message of `samples` as little-endian f32 and nothing else: the batch form's
    /// one frame. Holds a copy of the render (4 bytes per sample) until it is written.
    pub fn samples(samples: &[f32]) -> Frame {
        let mut bytes = Vec::with_capacity(MAX_WS_HEADER + 4 * samples.len());
        bytes.extend_from_slice(&[0; MAX_WS_HEADER]);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let start = frame_header(&mut bytes, 0x2);
        Frame { bytes, start }
    }

    /// A binary message of `samples` as the PCM server sends them: each clamped to [-1, 1],
    /// times 32767, rounded as JavaScript's `Math.round` (halves up, NaN to 0), as
    /// little-endian i16 (one channel: kromosynth's normalized buffer is mono).
    pub fn pcm16(samples: &[f32]) -> Frame {
        let mut bytes = Vec::with_capacity(MAX_WS_HEADER + 2 * samples.len());
        bytes.extend_from_slice(&[0; MAX_WS_HEADER]);
        for &s in samples {
            bytes.extend_from_slice(&pcm16_sample(s).to_le_bytes());
        }
        let start = frame_header(&mut bytes, 0x2);
        Frame { bytes, start }
    }

    /// The frame's bytes as they go on the wire.
    #[cfg(test)]
    fn wire(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Bytes on the wire: header and payload.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Never: a frame has at least its header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame's buffer and where in it the frame starts (for writing it without a copy).
    pub fn into_parts(self) -> (Vec<u8>, usize) {
        (self.bytes, self.start)
    }

    /// Whether this is a text frame (JSON chunk) rather than a binary one.
    #[cfg(test)]
    fn is_text(&self) -> bool {
        self.bytes[self.start] & 0x0f == 0x1
    }

    /// The message: the frame's payload.
    #[cfg(test)]
    fn payload(&self) -> &[u8] {
        &self.bytes[MAX_WS_HEADER..]
    }
}

impl ChunkFrame {
    pub fn new(format: Format, chunk_samples: usize, sample_rate: u32) -> ChunkFrame {
        ChunkFrame {
            format,
            chunk_samples,
            sample_rate,
            bytes: Vec::new(),
            samples: 0,
        }
    }

    /// Samples in the chunk so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Whether the chunk holds all the samples a chunk holds.
    pub fn is_full(&self) -> bool {
        self.samples == self.chunk_samples
    }

    /// Samples the chunk can still take.
    pub fn room(&self) -> usize {
        self.chunk_samples - self.samples
    }

    /// Starts chunk `index` (from 1), whose first sample is sample `offset` of the render (the
    /// space for a whole chunk is reserved now, once).
    pub fn begin(&mut self, request_id: Option<&Value>, stream_id: u32, index: u64, offset: u64) {
        let capacity = self.chunk_samples;
        self.bytes.clear();
        self.samples = 0;
        self.bytes.extend_from_slice(&[0; MAX_WS_HEADER]);
        match self.format {
            Format::Json => {
                let mut head = String::new();
                open_message(&mut head, "chunk", request_id);
                let _ = write!(head, ",\"index\":{index},\"data\":[");
                // Up to 24 bytes for a number and its comma ("-1.1754943508222875e-38,").
                self.bytes
                    .reserve(head.len() + capacity * 24 + 64 + MAX_WS_HEADER);
                self.bytes.extend_from_slice(head.as_bytes());
            }
            Format::Binary => {
                self.bytes
                    .reserve(BINARY_HEADER_BYTES + capacity * 4 + MAX_WS_HEADER);
                self.bytes.extend_from_slice(&stream_id.to_le_bytes());
                self.bytes.extend_from_slice(&(index as u32).to_le_bytes());
                self.bytes.extend_from_slice(&offset.to_le_bytes());
            }
        }
    }

    /// Appends samples to the chunk begun last.
    pub fn push(&mut self, samples: &[f32]) {
        match self.format {
            Format::Json => {
                for &s in samples {
                    if self.samples > 0 {
                        self.bytes.push(b',');
                    }
                    push_number_bytes(&mut self.bytes, s as f64);
                    self.samples += 1;
                }
            }
            Format::Binary => {
                for s in samples {
                    self.bytes.extend_from_slice(&s.to_le_bytes());
                }
                self.samples += samples.len();
            }
        }
    }

    /// The complete message; `end_sample` is the render's sample just past this chunk.
    pub fn finish(&mut self, end_sample: u64) -> Frame {
        let mut bytes = std::mem::take(&mut self.bytes);
        self.samples = 0;
        let opcode = match self.format {
            Format::Json => {
                bytes.extend_from_slice(b"],\"timestamp\":");
                push_number_bytes(&mut bytes, end_sample as f64 / self.sample_rate as f64);
                let _ = std::io::Write::write_fmt(
                    &mut bytes,
                    format_args!(",\"sampleRate\":{}}}", self.sample_rate),
                );
                // A text frame must be UTF-8: the numbers and names are ASCII, and a string
                // requestId is written by serde_json from a valid `str`.
                debug_assert!(std::str::from_utf8(&bytes[MAX_WS_HEADER..]).is_ok());
                0x1
            }
            Format::Binary => 0x2,
        };
        let start = frame_header(&mut bytes, opcode);
        Frame { bytes, start }
    }
}

/// Writes the header of a final frame with `opcode` whose payload is `bytes[MAX_WS_HEADER..]`
/// (RFC 6455 section 5.2) right-aligned into the room before it; returns where it starts.
fn frame_header(bytes: &mut [u8], opcode: u8) -> usize {
    let len = bytes.len() - MAX_WS_HEADER;
    let mut header = [0u8; MAX_WS_HEADER];
    header[0] = 0x80 | opcode;
    let n = if len < 126 {
        header[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = MAX_WS_HEADER - n;
    bytes[start..MAX_WS_HEADER].copy_from_slice(&header[..n]);
    start
}

/// A JSON number: the shortest decimal that round-trips (`0.1`, `1.0`, `-0.0`, `1e-40`),
/// written by serde_json's own float formatter, which is several times faster than `fmt`'s (a
/// 4096-sample chunk is 4096 of these); non-finite values become `null` as in JSON.stringify.
fn push_number_bytes(out: &mut Vec<u8>, x: f64) {
    use serde_json::ser::{CompactFormatter, Formatter};
    if !x.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if CompactFormatter.write_f64(out, x).is_err() {
        unreachable!("writing to a Vec cannot fail");
    }
}

/// `Math.round(Math.max(-1, Math.min(1, x)) * 0x7FFF)` stored into an Int16Array.
fn pcm16_sample(x: f32) -> i16 {
    let v = (x as f64).clamp(-1.0, 1.0) * 32767.0;
    if v.is_nan() {
        return 0;
    }
    // Math.round: the nearest integer, halves towards +infinity (-2.5 -> -2).
    let floor = v.floor();
    let rounded = if v - floor >= 0.5 { floor + 1.0 } else { floor };
    rounded as i16
}

/// The socket adapter tungstenite reads and writes: a mio stream that, during the handshake,
/// refuses to read more than [`MAX_HANDSHAKE_BYTES`], and that writes chunk frames itself.
///
/// A chunk is encoded as a complete WebSocket frame ([`Frame`]) and written from its own
/// buffer, so a chunk the client has not taken yet is held once, not again as a copy in
/// tungstenite's write buffer (80 KB per JSON chunk). Frames must not interleave on the wire,
/// so a chunk frame is handed over only when tungstenite has nothing buffered (its flush
/// succeeded), and every write or flush tungstenite makes first finishes the chunk frame.
pub struct Conn {
    stream: TcpStream,
    handshake_budget: Option<usize>,
    /// The chunk frame being written, from `chunk_at` on (one at most).
    chunk: Vec<u8>,
    chunk_at: usize,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            handshake_budget: Some(MAX_HANDSHAKE_BYTES),
            chunk: Vec::new(),
            chunk_at: 0,
        }
    }

    /// The handshake is over: reads are no longer limited.
    pub fn end_handshake(&mut self) {
        self.handshake_budget = None;
    }

    /// The socket itself, for reading around tungstenite and shutting down.
    pub fn tcp(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Queues raw bytes to write before anything else (a plain HTTP answer).
    pub fn queue_bytes(&mut self, bytes: Vec<u8>) {
        debug_assert!(self.chunk.is_empty(), "one pending write at a time");
        (self.chunk, self.chunk_at) = (bytes, 0);
    }

    /// Queues a chunk frame; call only when tungstenite's flush has just succeeded.
    pub fn start_chunk(&mut self, frame: Frame) {
        debug_assert!(self.chunk.is_empty(), "one chunk frame at a time");
        (self.chunk, self.chunk_at) = frame.into_parts();
    }

    /// Writes what is left of the chunk frame; Ok once it is all out.
    pub fn write_chunk(&mut self) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One chunk, pushed in the given pieces.
    fn chunk(format: Format, pieces: &[&[f32]], request_id: Option<&Value>) -> Frame {
        let mut frame = ChunkFrame::new(format, 16, 48_000);
        frame.begin(request_id, 3, 2, 4096);
        let mut n = 0;
        for piece in pieces {
            frame.push(piece);
            n += piece.len();
            assert_eq!(frame.samples(), n);
        }
        frame.finish(4096 + n as u64)
    }

    #[test]
    fn chunk_json_round_trips_f32_bits() {
        let samples = [
            0.1f32,
            -0.0,
            1.0,
            f32::MIN_POSITIVE,
            -0.33333334,
            1e-40,
            f32::MAX,
            f32::MIN,
            -1.0e-45,
            123456.79,
            -f32::MIN_POSITIVE,
        ];
        let frame = chunk(Format::Json, &[&samples], None);
        assert!(frame.is_text(), "a JSON chunk is text");
        let out = std::str::from_utf8(frame.payload()).unwrap();
        let v: Value = serde_json::from_str(out).unwrap();
        assert_eq!(v["type"], "chunk");
        assert_eq!(v["index"], 2);
        assert_eq!(v["sampleRate"], 48000);
        assert_eq!(v["timestamp"].as_f64().unwrap(), 4107.0 / 48000.0);
        let back: Vec<f32> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
        }
        // The original's field order.
        assert!(out.starts_with(r#"{"type":"chunk","index":2,"data":[0.10000000149011612,"#));
        assert!(out.ends_with(r#"],"timestamp":0.0855625,"sampleRate":48000}"#));
    }

    #[test]
    fn a_chunk_does_not_depend_on_how_its_samples_arrive() {
        let samples: Vec<f32> = (0..13).map(|i| i as f32 * -0.37).collect();
        let id = Value::from("r1");
        for format in [Format::Json, Format::Binary] {
            let whole = chunk(format, &[&samples], Some(&id));
            let pieces = chunk(
                format,
                &[&samples[..1], &[], &samples[1..5], &samples[5..]],
                Some(&id),
            );
            assert_eq!(whole.wire(), pieces.wire(), "{format:?}");
            assert_eq!(whole.is_text(), format == Format::Json);
            if format == Format::Json {
                assert!(whole
                    .payload()
                    .starts_with(br#"{"type":"chunk","requestId":"r1","index":2,"#));
            }
        }
    }

    #[test]
    fn a_frame_is_ready_for_the_next_chunk_after_finish() {
        let mut frame = ChunkFrame::new(Format::Json, 4, 48_000);
        frame.begin(None, 0, 1, 0);
        frame.push(&[1.0, 2.0]);
        let first = frame.finish(2);
        assert_eq!(frame.samples(), 0);
        frame.begin(None, 0, 2, 2);
        frame.push(&[3.0]);
        let second = frame.finish(3);
        let first: Value = serde_json::from_slice(first.payload()).unwrap();
        let second: Value = serde_json::from_slice(second.payload()).unwrap();
        assert_eq!(first["data"], serde_json::json!([1.0, 2.0]));
        assert_eq!(second["data"], serde_json::json!([3.0]));
        assert_eq!(second["index"], 2);
    }

    #[test]
    fn numbers_are_shortest_round_trip_and_non_finite_is_null() {
        let mut out = Vec::new();
        for x in [-f64::MIN_POSITIVE, f64::MAX, 5e-324, -1.0 / 3.0, 1e21, 0.0] {
            out.clear();
            push_number_bytes(&mut out, x);
            let back: f64 = serde_json::from_slice(&out).expect("a JSON number");
            assert_eq!(
                back.to_bits(),
                x.to_bits(),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            out.clear();
            push_number_bytes(&mut out, x);
            assert_eq!(out, b"null");
        }
    }

    /// In-memory socket: reads `input`, discards writes.
    struct Wire(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for Wire {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl std::io::Write for Wire {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn chunk_frames_are_websocket_frames_of_every_length_class() {
        use tungstenite::protocol::{Role, WebSocket};
        use tungstenite::Message;
        // Payloads under 126 bytes, up to 65535 (16-bit length), and longer (64-bit length).
        for (format, n) in [
            (Format::Json, 1),
            (Format::Json, 1000),
            (Format::Json, 4096),
            (Format::Binary, 1),
            (Format::Binary, 4096),
            (Format::Binary, 20_000),
        ] {
            let samples: Vec<f32> = (0..n).map(|i| (i as f32 * 0.731).sin()).collect();
            let frame = chunk(format, &[&samples], None);
            let mut wire = frame.wire().to_vec();
            wire.extend_from_slice(frame.wire());
            let mut ws =
                WebSocket::from_raw_socket(Wire(std::io::Cursor::new(wire)), Role::Client, None);
            for _ in 0..2 {
                match (format, ws.read().expect("a whole frame")) {
                    (Format::Json, Message::Text(text)) => {
                        assert_eq!(text.as_bytes(), frame.payload());
                        let v: Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(v["data"].as_array().unwrap().len(), n);
                    }
                    (Format::Binary, Message::Binary(bytes)) => {
                        assert_eq!(bytes, frame.payload());
                        assert_eq!(bytes.len(), BINARY_HEADER_BYTES + 4 * n);
                    }
                    (f, m) => panic!("{f:?} chunk read as {m:?}"),
                }
            }
        }
    }

    #[test]
    fn pcm_samples_round_as_javascript_does() {
        // (input, Math.round(clamp(x) * 32767)) as Node.js computes it.
        for (x, want) in [
            (0.0f32, 0i16),
            (-0.0, 0),
            (1.0, 32767),
            (-1.0, -32767),
            (7.5, 32767),
            (-3.0, -32767),
            (f32::NAN, 0),
            (0.5, 16384),             // 16383.5 rounds up
            (-0.5, -16383),           // -16383.5 rounds up too
            (1.0 / 32767.0 * 0.5, 0), // just under a half after f32 rounding
            (-1.0 / 32767.0 * 0.5, 0),
        ] {
            assert_eq!(pcm16_sample(x), want, "{x}");
        }
        let frame = Frame::pcm16(&[0.5, -1.0]);
        assert!(!frame.is_text());
        assert_eq!(frame.payload(), &[0x00, 0x40, 0x01, 0x80]);
    }

    #[test]
    fn binary_chunk_layout() {
        let frame = chunk(Format::Binary, &[&[1.5], &[-2.0]], None);
        assert!(!frame.is_text(), "a binary chunk is binary");
        let out = frame.payload();
        assert_eq!(out.len(), BINARY_HEADER_BYTES + 8);
        assert_eq!(&out[0..4], &3u32.to_le_bytes());
        assert_eq!(&out[4..8], &2u32.to_le_bytes());
        assert_eq!(&out[8..16], &4096u64.to_le_bytes());
        assert_eq!(&out[16..20], &1.5f32.to_le_bytes());
        assert_eq!(&out[20..24], &(-2.0f32).to_le_bytes());
    }
}
