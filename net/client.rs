//! A blocking client of the render service: sends one `render`, collects the chunks (JSON or
//! binary), and reports what a person testing the service wants to know. Used by the `client`
//! subcommand, the tests and the load benches.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::wire::BINARY_HEADER_BYTES;

/// One render as received.
#[derive(Debug)]
pub struct Received {
    pub samples: Vec<f32>,
    pub chunks: usize,
    /// From sending `render` to the first chunk.
    pub first_chunk: Duration,
    /// From sending `render` to `complete`.
    pub total: Duration,
    /// The `complete` message.
    pub complete: Value,
}

pub type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Connects and reads the `welcome` message.
pub fn connect(url: &str) -> Result<(Socket, Value), String> {
    let (mut socket, _) =
        tungstenite::connect(url).map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let welcome = read_json(&mut socket)?;
    if welcome["type"] != "welcome" {
        return Err(format!("expected welcome, got {welcome}"));
    }
    Ok((socket, welcome))
}

/// Reads the next text message as JSON (binary messages are an error here).
pub fn read_json(socket: &mut Socket) -> Result<Value, String> {
    loop {
        match socket.read().map_err(|e| format!("read failed: {e}"))? {
            Message::Text(text) => {
                return serde_json::from_str(&text).map_err(|e| format!("bad JSON: {e}"))
            }
            Message::Binary(_) => return Err("unexpected binary message".into()),
            Message::Close(frame) => return Err(format!("server closed: {frame:?}")),
            _ => {}
        }
    }
}

/// Sends `request` (a `render` message) and reads its stream to `complete`. With
/// `format: "binary"` in the request the chunks arrive as binary frames.
pub fn render(socket: &mut Socket, request: &Value) -> Result<Received, String> {
    let sent = Instant::now();
    socket
        .send(Message::Text(request.to_string()))
        .map_err(|e| format!("send failed: {e}"))?;
    let mut samples = Vec::new();
    let mut chunks = 0;
    let mut first_chunk = None;
    loop {
        let message = socket.read().map_err(|e| format!("read failed: {e}"))?;
        match message {
            Message::Binary(frame) => {
                if frame.len() < BINARY_HEADER_BYTES
                    || !(frame.len() - BINARY_HEADER_BYTES).is_multiple_of(4)
                {
                    return Err(format!("malformed binary chunk of {} bytes", frame.len()));
                }
                let offset = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
                if offset != samples.len() as u64 {
                    return Err(format!(
                        "binary chunk at offset {offset}, expected {}",
                        samples.len()
                    ));
                }
                first_chunk.get_or_insert_with(|| sent.elapsed());
                chunks += 1;
                samples.extend(
                    frame[BINARY_HEADER_BYTES..]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).map_err(|e| format!("bad JSON: {e}"))?;
                match v["type"].as_str() {
                    Some("chunk") => {
                        first_chunk.get_or_insert_with(|| sent.elapsed());
                        chunks += 1;
                        let data = v["data"].as_array().ok_or("chunk without data")?;
                        // JSON numbers are the f32 values widened to f64; narrowing is exact.
                        samples.extend(data.iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32));
                    }
                    Some("start") => {}
                    Some("complete") => {
                        return Ok(Received {
                            samples,
                            chunks,
                            first_chunk: first_chunk.unwrap_or_default(),
                            total: sent.elapsed(),
                            complete: v,
                        })
                    }
                    Some("error") => {
                        return Err(format!("server error: {}", v["message"]));
                    }
                    _ => return Err(format!("unexpected message: {text:.200}")),
                }
            }
            Message::Close(frame) => return Err(format!("server closed: {frame:?}")),
            _ => {}
        }
    }
}
