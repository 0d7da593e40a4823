//! Graceful drain and `/health` over real sockets: the server binary gets real signals.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use kromosynth_render_socket::client::{self, Socket};
use serde_json::{json, Value};
use tungstenite::Message;

/// Long enough that the stream cannot fit in the socket buffers and the ring: a client that
/// stops reading keeps it in progress.
const LONG: f64 = 30.0;
const LIMIT: Duration = Duration::from_secs(30);

fn health(addr: SocketAddr) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_http(&mut tcp)
}

fn read_http(tcp: &mut TcpStream) -> (u16, Value) {
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head[9..12].parse().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

/// Starts a long stream on a new connection and reads its first chunk.
fn start_stream(url: &str, id: &str) -> Socket {
    let (mut socket, _) = client::connect(url).unwrap();
    let request = json!({"type": "render", "genomeId": GENOME, "duration": LONG, "requestId": id});
    socket.send(Message::Text(request.to_string())).unwrap();
    let first = client::read_json(&mut socket).unwrap();
    assert_eq!(first["type"], "chunk", "{first}");
    socket
}

/// Reads a stream to its end: its samples (the first chunk was read by `start_stream`, so
/// they start at the second), the other messages, and the close frame's code.
fn finish_stream(socket: &mut Socket) -> (Vec<f32>, Vec<Value>, Option<u16>) {
    let (mut samples, mut others) = (Vec::new(), Vec::new());
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                match v["type"].as_str() {
                    Some("chunk") => samples.extend(json_chunk_samples(&v)),
                    _ => others.push(v),
                }
            }
            Ok(Message::Close(frame)) => {
                return (samples, others, frame.map(|f| u16::from(f.code)));
            }
            Ok(_) => {}
            Err(e) => panic!("stream broke off: {e}; got {others:?}"),
        }
    }
}

#[test]
fn a_drain_finishes_every_stream_refuses_the_rest_and_exits_zero() {
    let mut server = ServerProcess::start(&["--drain-timeout", "60"]);
    let mut streams: Vec<Socket> = (0..3)
        .map(|i| start_stream(&server.url, &format!("s{i}")))
        .collect();
    let (mut idle, _) = client::connect(&server.url).unwrap();
    // A plain HTTP request already accepted at the signal, finished after it.
    let mut pending_http = TcpStream::connect(server.addr).unwrap();
    pending_http.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    assert_eq!(health(server.addr).0, 200);
    let stats = server.stats();
    assert_eq!(stats["renders"], 3, "the streams are in progress: {stats}");
    // 3 streams, the idle one, the pending request, and the stats connection itself.
    assert_eq!(stats["connections"], 6, "{stats}");

    server.signal(libc::SIGTERM);
    assert!(
        server.wait_for_log("SIGTERM: draining", 1, LIMIT),
        "{}",
        server.log_text()
    );
    let refused = TcpStream::connect(server.addr);
    assert!(
        refused.is_err(),
        "a new connection during the drain is refused"
    );
    pending_http.write_all(b"Host: x\r\n\r\n").unwrap();
    let (status, body) = read_http(&mut pending_http);
    assert_eq!(
        (status, &body["status"]),
        (503, &json!("draining")),
        "{body}"
    );

    // A new render on a connection open before the signal is refused; the one in progress
    // on it goes on.
    let late = json!({"type": "render", "genomeId": GENOME, "duration": 1, "requestId": "late"});
    streams[0].send(Message::Text(late.to_string())).unwrap();

    let want = reference(GENOME, &request(LONG, 0.0, 0.5));
    let first_chunk = 4096;
    for (i, socket) in streams.iter_mut().enumerate() {
        let (samples, others, close) = finish_stream(socket);
        assert_bits_eq(&samples, &want[first_chunk..], &format!("stream {i}"));
        let complete = others.iter().find(|v| v["type"] == "complete");
        assert!(complete.is_some(), "stream {i} completed: {others:?}");
        assert_eq!(close, Some(1001), "closed as going away once done");
        if i == 0 {
            let error = others.iter().find(|v| v["requestId"] == "late").unwrap();
            assert_eq!(error["type"], "error");
            assert!(
                error["message"].as_str().unwrap().contains("shutting down"),
                "{error}"
            );
        }
    }
    let (_, others, close) = finish_stream(&mut idle);
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(close, Some(1001), "the idle connection is closed");
    drop((streams, idle));

    let status = server
        .wait_exit(LIMIT)
        .expect("the server exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("drained in"), "{log}");
    assert_eq!(log.matches("outcome=complete").count(), 3, "{log}");
}

#[test]
fn a_second_signal_stops_at_once() {
    let mut server = ServerProcess::start(&["--drain-timeout", "600"]);
    // Its client never reads again: without the second signal, the drain would wait for it.
    let _stalled = start_stream(&server.url, "stalled");
    assert_eq!(server.stats()["renders"], 1);
    server.signal(libc::SIGINT);
    assert!(server.wait_for_log("SIGINT: draining", 1, LIMIT));
    assert!(server.is_alive(), "the first signal only drains");
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(LIMIT)
        .expect("the second signal stops the server");
    assert_ne!(status.code(), Some(0), "renders were cut off");
    let log = server.log_text();
    assert!(
        log.contains("SIGTERM again: stopping now, 1 renders cut off"),
        "{log}"
    );
}

/// A held render (normalized: kept whole until complete) of 540 s reserves its 4 bytes per
/// sample, 98.9 MiB of a 100 MiB budget: no room for an ordinary render, so `/health` says
/// busy until it ends.
#[test]
fn health_is_busy_while_the_memory_budget_has_no_room() {
    let server = ServerProcess::start(&[
        "--max-memory",
        "100M",
        "--max-memory-per-connection",
        "100M",
    ]);
    assert_eq!(health(server.addr).0, 200);
    let (mut held, _) = client::connect(&server.url).unwrap();
    let request = json!({"type": "render", "genomeId": GENOME, "duration": 540,
        "normalize": "peak", "requestId": "held"});
    held.send(Message::Text(request.to_string())).unwrap();
    let reserved = |server: &ServerProcess| server.stats()["memoryReserved"].as_u64().unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    while reserved(&server) < 540 * 48_000 * 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, body) = health(server.addr);
    assert_eq!((status, &body["status"]), (503, &json!("busy")), "{body}");
    held.send(Message::Text(
        json!({"type": "cancel", "requestId": "held"}).to_string(),
    ))
    .unwrap();
    let stats = server.wait_for_no_renders(LIMIT);
    assert_eq!(stats["memoryReserved"], 0, "{stats}");
    assert_eq!(health(server.addr).0, 200);
}

#[test]
fn health_is_busy_while_new_renders_would_be_refused() {
    let server = ServerProcess::start(&["--max-renders", "1"]);
    assert_eq!(health(server.addr).0, 200);
    let mut stalled = start_stream(&server.url, "a");
    let (status, body) = health(server.addr);
    assert_eq!((status, &body["status"]), (503, &json!("busy")), "{body}");
    // What /health says is what a render gets.
    let (mut other, _) = client::connect(&server.url).unwrap();
    let request = json!({"type": "render", "genomeId": GENOME, "duration": 1});
    other.send(Message::Text(request.to_string())).unwrap();
    let refused = client::read_json(&mut other).unwrap();
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .starts_with("Server busy"));

    stalled
        .send(Message::Text(
            json!({"type": "cancel", "requestId": "a"}).to_string(),
        ))
        .unwrap();
    let stats = server.wait_for_no_renders(LIMIT);
    assert_eq!(stats["renders"], 0, "{stats}");
    assert_eq!(health(server.addr).0, 200);
}
