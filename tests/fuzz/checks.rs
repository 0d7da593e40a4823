//! What each fuzz target checks, shared by the libFuzzer targets (fuzz_targets/) and the
//! regression test that replays saved inputs on stable (tests/fuzz_regressions.rs).

use std::io::{Cursor, Read, Write};

use kromosynth_render_socket::http;
use kromosynth_render_socket::protocol::{
    parse_client_message, parse_one_shot, ClientMessage, Limits,
};
use kromosynth_render_socket::server::MAX_MESSAGE_BYTES;
use krs_engine::{CompiledGenome, Render, RenderRequest};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

/// Any text a client sends, on the service port or the worker port: parsing never panics, and
/// what it accepts is within the limits the server promises.
pub fn client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits {
        max_duration: 600.0,
    };
    if let Ok(ClientMessage::Render(spec)) = parse_client_message(text, &limits) {
        assert!(spec.request.duration > 0.0 && spec.request.duration <= 600.0);
        assert!((0.0..=1.0).contains(&spec.request.velocity));
    }
    if let Ok(spec) = parse_one_shot(text, &limits) {
        assert!(spec.request.duration > 0.0 && spec.request.duration <= 600.0);
    }
}

/// Any genome JSON: parsing and compiling never panic, and a genome that compiles renders a few
/// blocks without panicking (what a client's inline genome does to a worker).
pub fn genome(data: &[u8]) {
    let Ok(genome) = CompiledGenome::from_json(data) else {
        return;
    };
    let request = RenderRequest {
        duration: 0.02,
        ..RenderRequest::default()
    };
    if let Ok(mut render) = Render::new(&genome, &request) {
        let mut block = [0.0f32; 128];
        while render.next_block(&mut block) > 0 {}
    }
}

/// The service port's endpoints, with fixed answers.
struct Service;

impl http::Endpoints for Service {
    fn metrics(&self) -> String {
        "krs_connections 0\n".into()
    }
    fn genomes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, String> {
        assert!(limit <= http::MAX_GENOMES_LIMIT);
        Ok(after.map(|a| vec![format!("{a}0")]).unwrap_or_default())
    }
}

/// Reads the input, discards writes.
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Any bytes a client sends: the request head is classified and answered without panicking,
/// and WebSocket frames are read with the server's limits without panicking.
pub fn frames(data: &[u8]) {
    if let Some(end) = http::head_end(data) {
        let head = &data[..end];
        if !http::is_websocket_upgrade(head) {
            let now = std::time::SystemTime::UNIX_EPOCH;
            for service in [Some(&Service as &dyn http::Endpoints), None] {
                for health in [http::Health::Ok, http::Health::Busy, http::Health::Draining] {
                    let answer = http::respond(head, now, health, service);
                    assert!(answer.bytes.starts_with(b"HTTP/1.1 "));
                    assert!((200..600).contains(&answer.status));
                }
            }
        }
    }
    let config = WebSocketConfig {
        max_message_size: Some(MAX_MESSAGE_BYTES),
        max_frame_size: Some(MAX_MESSAGE_BYTES),
        ..WebSocketConfig::default()
    };
    let mut ws =
        WebSocket::from_raw_socket(Wire(Cursor::new(data.to_vec())), Role::Server, Some(config));
    for _ in 0..64 {
        if ws.read().is_err() {
            break;
        }
    }
}
