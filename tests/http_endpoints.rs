//! Plain HTTP on the service port and the WebSocket origin policy, over real sockets against
//! the server binary: the player page, /health, /metrics, /genomes, statuses for everything
//! else, oversized and slow requests, and 403 for a browser handshake from another origin.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// One plain HTTP request; the status line's code, the head and the body.
fn http(addr: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8(answer[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, answer[split + 4..].to_vec())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The value of an unlabelled or labelled sample line of the exposition text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn page_health_statuses_and_head() {
    let server = ServerProcess::start(&[]);
    let (status, head, body) = get(server.addr, "/?autoplay=1");
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("<pre id=\"result\">") && page.contains("DynamicsCompressorNode"));
    assert_eq!(page, kromosynth_render_socket::http::PLAYER_HTML);

    let (status, head, body) = http(server.addr, "HEAD / HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD has no body");
    assert_eq!(
        header(&head, "content-length").unwrap(),
        page.len().to_string()
    );

    let (status, head, body) = get(server.addr, "/health");
    assert_eq!(
        (status, header(&head, "content-type")),
        (200, Some("application/json"))
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "ok"
    );

    for path in [
        "/nope",
        "/player.html",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "//etc/passwd",
    ] {
        assert_eq!(get(server.addr, path).0, 404, "{path}");
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let (status, head, _) = http(server.addr, &format!("{method} / HTTP/1.1\r\n\r\n"));
        assert_eq!(status, 405, "{method}");
        assert_eq!(header(&head, "allow"), Some("GET, HEAD"));
    }
    assert_eq!(http(server.addr, "GET nope\r\n\r\n").0, 400);
    assert_eq!(http(server.addr, "get / HTTP/1.1\r\n\r\n").0, 400);
    assert!(server.log_text().lines().all(|l| !l.contains("panicked")));
}

#[test]
fn oversized_and_slow_requests_are_dropped_and_the_server_goes_on() {
    let server = ServerProcess::start(&[]);
    // A head that never ends within 16 KiB: dropped without an answer.
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut request = b"GET /health HTTP/1.1\r\nX-Pad: ".to_vec();
    request.resize(20 * 1024, b'a');
    let _ = tcp.write_all(&request);
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));

    // A head that never completes: dropped after the handshake deadline (10 s), not held.
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost:").unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(answer.is_empty());
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert_eq!(get(server.addr, "/health").0, 200);
}

#[test]
fn metrics_count_renders_chunks_and_outcomes() {
    let server = ServerProcess::start(&[]);
    let (status, head, body) = get(server.addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let before = String::from_utf8(body).unwrap();
    assert_eq!(metric(&before, "krs_renders_started_total"), 0.0);
    assert_eq!(metric(&before, "krs_first_chunk_seconds_count"), 0.0);

    let (mut socket, _) = kromosynth_render_socket::client::connect(&server.url).unwrap();
    let got = kromosynth_render_socket::client::render(
        &mut socket,
        &json!({"type": "render", "genomeId": GENOME, "duration": 0.5, "format": "binary"}),
    )
    .unwrap();
    let chunks = got.samples.len().div_ceil(4096);
    // One render cancelled: a long one, cancelled as soon as it starts.
    socket
        .send(tungstenite::Message::Text(
            json!({"type": "render", "genomeId": GENOME, "duration": 60, "requestId": 7})
                .to_string(),
        ))
        .unwrap();
    socket
        .send(tungstenite::Message::Text(
            json!({"type": "cancel", "requestId": 7}).to_string(),
        ))
        .unwrap();
    loop {
        let v = kromosynth_render_socket::client::read_json(&mut socket).unwrap();
        if v["type"] == "cancelled" {
            break;
        }
    }
    // One error: an unknown genome fails in the worker.
    socket
        .send(tungstenite::Message::Text(
            json!({"type": "render", "genomeId": "NOPE", "duration": 1}).to_string(),
        ))
        .unwrap();
    let v = kromosynth_render_socket::client::read_json(&mut socket).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    drop(socket);

    let text = String::from_utf8(get(server.addr, "/metrics").2).unwrap();
    assert_eq!(metric(&text, "krs_renders_started_total"), 3.0);
    assert_eq!(
        metric(&text, "krs_renders_ended_total{outcome=\"complete\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "krs_renders_ended_total{outcome=\"cancelled\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "krs_renders_ended_total{outcome=\"error\"}"),
        1.0
    );
    assert_eq!(metric(&text, "krs_renders_in_progress"), 0.0);
    let sent = metric(&text, "krs_chunks_sent_total");
    assert!(sent >= chunks as f64, "{sent} < {chunks}");
    // Binary frames: 16 bytes of header and 4 per sample, plus the WebSocket frame header.
    assert!(metric(&text, "krs_chunk_bytes_sent_total") >= (got.samples.len() * 4) as f64);
    let first = metric(&text, "krs_first_chunk_seconds_count");
    assert!((1.0..=2.0).contains(&first), "{first}");
    assert_eq!(
        metric(&text, "krs_first_chunk_seconds_bucket{le=\"+Inf\"}"),
        first
    );
    assert!(metric(&text, "krs_worker_threads") >= 1.0);
    // Clock ticks are 10 ms, so a short test may not have used one yet; present and a number.
    assert!(metric(&text, "krs_worker_cpu_seconds_total") >= 0.0);
    assert!(metric(&text, "krs_connections_accepted_total") >= 3.0);
    assert!(metric(&text, "krs_http_requests_total{class=\"2xx\"}") >= 1.0);
}

#[test]
fn genome_ids_come_in_pages() {
    let server = ServerProcess::start(&[]);
    let ids = genome_ids();
    let (status, head, body) = get(server.addr, "/genomes");
    assert_eq!(
        (status, header(&head, "content-type")),
        (200, Some("application/json"))
    );
    let all: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(all, json!({"ids": ids, "next": null}));

    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/genomes?limit=3".to_owned(),
            Some(a) => format!("/genomes?limit=3&after={a}"),
        };
        let page: Value = serde_json::from_slice(&get(server.addr, &path).2).unwrap();
        walked.extend(page["ids"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, ids);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "after=%G0",
    ] {
        let (status, _, body) = get(server.addr, &format!("/genomes?{bad}"));
        assert_eq!(status, 400, "{bad}");
        assert!(!body.is_empty());
    }
    let long = "a".repeat(300);
    assert_eq!(get(server.addr, &format!("/genomes?after={long}")).0, 400);
}

/// The status line of a WebSocket handshake with `origin`, and what follows it when it is 101.
fn handshake(addr: SocketAddr, origin: Option<&str>) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    write!(
        tcp,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let mut got = 0;
    // The head, and for a 101 the welcome frame after it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tcp.read(&mut answer[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&answer[..got]);
        if text.contains("welcome") || text.starts_with("HTTP/1.1 403") && text.contains("\r\n\r\n")
        {
            // A 403 closes the connection; read to its end to see the body.
            if text.starts_with("HTTP/1.1 403") {
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest);
                answer.truncate(got);
                answer.extend(rest);
                return String::from_utf8_lossy(&answer).into_owned();
            }
            break;
        }
    }
    String::from_utf8_lossy(&answer[..got]).into_owned()
}

#[test]
fn browser_handshakes_from_other_origins_get_403() {
    let server = ServerProcess::start(&[
        "--allowed-origins",
        "http://good.example, http://127.0.0.1:9999",
    ]);
    let refused = handshake(server.addr, Some("http://evil.example"));
    assert!(
        refused.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{refused}"
    );
    assert!(refused.ends_with("Origin not allowed\n"), "{refused}");
    for origin in [
        Some("http://good.example"),
        Some("HTTP://Good.Example/"),
        None,
    ] {
        let answer = handshake(server.addr, origin);
        assert!(answer.starts_with("HTTP/1.1 101 "), "{origin:?}: {answer}");
        assert!(answer.contains("welcome"), "{origin:?}: {answer}");
    }
    let text = String::from_utf8(get(server.addr, "/metrics").2).unwrap();
    assert_eq!(metric(&text, "krs_origin_refused_total"), 1.0);

    // The default is `*`, as the original; the environment variable sets it too.
    let open = ServerProcess::start(&[]);
    assert!(handshake(open.addr, Some("http://evil.example")).starts_with("HTTP/1.1 101 "));
    let env = ServerProcess::start_with(&[], |c| {
        c.env("ALLOWED_ORIGINS", "http://good.example");
    });
    assert!(handshake(env.addr, Some("http://evil.example")).starts_with("HTTP/1.1 403 "));
    assert!(handshake(env.addr, Some("http://good.example")).starts_with("HTTP/1.1 101 "));

    // A malformed list stops the server at start-up with a message, rather than guessing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kromosynth-render-socket"))
        .args(["serve", "--port", "0", "--allowed-origins", "example.org"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allowed-origins"));
}
