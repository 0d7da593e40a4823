//! Bad input, slow and vanished clients, and load: none of it takes the server down or costs
//! another client its audio. Real loopback sockets to the real server binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use kromosynth_render_socket::client::{self, read_json, Socket};
use serde_json::{json, Value};
use tungstenite::Message;

fn send_text(socket: &mut Socket, text: &str) {
    socket.send(Message::Text(text.to_string())).unwrap();
}

fn error_for(socket: &mut Socket, text: &str) -> String {
    send_text(socket, text);
    let v = read_json(socket).unwrap();
    assert_eq!(v["type"], "error", "{text} -> {v}");
    v["message"].as_str().unwrap().to_string()
}

/// A render on its own connection that must stay bit-exact while others misbehave.
fn bystander(url: &str, duration: f64) -> std::thread::JoinHandle<()> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let (mut socket, _) = client::connect(&url).unwrap();
        let r =
            json!({"type": "render", "genomeId": GENOME, "duration": duration, "format": "binary"});
        let got = client::render(&mut socket, &r).unwrap();
        assert_bits_eq(
            &got.samples,
            &reference(GENOME, &request(duration, 0.0, 0.5)),
            "bystander",
        );
    })
}

#[test]
fn bad_messages_get_clear_errors_and_the_connection_goes_on() {
    let mut server = ServerProcess::start(&["--max-duration", "60"]);
    let other = bystander(&server.url, 3.0);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let cases: &[(&str, &str)] = &[
        ("{not json", "Invalid JSON"),
        ("[1,2]", "JSON object"),
        ("\"render\"", "JSON object"),
        (r#"{"type":"dance"}"#, "Unknown message type: dance"),
        (r#"{"genomeId":"x"}"#, "no type"),
        (r#"{"type":"render","duration":1}"#, "genomeId"),
        (
            r#"{"type":"render","genomeId":42,"duration":1}"#,
            "genomeId must be a string",
        ),
        (
            r#"{"type":"render","genomeId":"x","duration":"NaN"}"#,
            "duration",
        ),
        (
            r#"{"type":"render","genomeId":"x","duration":-1}"#,
            "duration",
        ),
        (
            r#"{"type":"render","genomeId":"x","duration":0}"#,
            "duration",
        ),
        (
            r#"{"type":"render","genomeId":"x","duration":1e300}"#,
            "duration",
        ),
        (r#"{"type":"render","genomeId":"x","duration":61}"#, "60"),
        (
            r#"{"type":"render","genomeId":"x","duration":1,"velocity":"loud"}"#,
            "velocity",
        ),
        (
            r#"{"type":"render","genomeId":"x","duration":1,"useGPU":"yes"}"#,
            "useGPU",
        ),
        (
            r#"{"type":"render","genomeId":"x","duration":1,"chunkSamples":1000}"#,
            "chunkSamples",
        ),
        (
            r#"{"type":"render","genomeId":"x","duration":1,"seed":-3}"#,
            "seed",
        ),
        (
            r#"{"type":"render","genomeId":"NO_SUCH_GENOME","duration":1}"#,
            "NO_SUCH_GENOME",
        ),
        (
            r#"{"type":"render","genome":{"nonsense":true},"duration":1}"#,
            "Invalid genome",
        ),
        (
            r#"{"type":"render","genome":"{\"genome\":","duration":1}"#,
            "Invalid genome",
        ),
        (r#"{"type":"cancel","requestId":"nope"}"#, "No render"),
    ];
    for (text, needle) in cases {
        let message = error_for(&mut socket, text);
        assert!(
            message.contains(needle),
            "{text}: {message:?} lacks {needle:?}"
        );
    }
    // requestId is echoed on errors.
    send_text(
        &mut socket,
        r#"{"type":"render","requestId":"q","genomeId":"NO_SUCH","duration":1}"#,
    );
    let v = read_json(&mut socket).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["requestId"].as_str()),
        (Some("error"), Some("q"))
    );
    // Binary frames from the client are refused with an error, not a crash.
    socket.send(Message::Binary(vec![1, 2, 3])).unwrap();
    let v = read_json(&mut socket).unwrap();
    assert!(v["message"].as_str().unwrap().contains("Binary"), "{v}");
    // After all that, the same connection still renders.
    let r = json!({"type": "render", "genomeId": GENOME, "duration": 0.2});
    let got = client::render(&mut socket, &r).unwrap();
    assert_bits_eq(
        &got.samples,
        &reference(GENOME, &request(0.2, 0.0, 0.5)),
        "after errors",
    );
    other.join().unwrap();
    assert!(server.is_alive());
}

#[test]
fn oversized_frames_and_handshake_garbage_close_only_that_connection() {
    let mut server = ServerProcess::start(&[]);
    let other = bystander(&server.url, 4.0);

    // A 5 MiB text message: over the 4 MiB limit, closed with 1009 (message too big).
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let huge = format!(
        r#"{{"type":"render","genomeId":"{}"}}"#,
        "x".repeat(5 << 20)
    );
    let _ = socket.send(Message::Text(huge));
    let mut closed_with = None;
    for _ in 0..10 {
        match socket.read() {
            Ok(Message::Close(frame)) => {
                closed_with = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(
        closed_with,
        Some(1009),
        "oversized message closes with 'too big'"
    );

    // Not HTTP at all gets 400 and is closed; an endless header is dropped without a reply.
    for (garbage, reply) in [
        (b"\x00\x01\x02 hello\r\n\r\n".to_vec(), "HTTP/1.1 400 "),
        (vec![b'a'; 64 * 1024], ""),
    ] {
        let mut raw = TcpStream::connect(server.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = raw.write_all(&garbage);
        let mut got = Vec::new();
        let _ = raw.read_to_end(&mut got);
        let got = String::from_utf8_lossy(&got);
        if reply.is_empty() {
            assert!(got.is_empty(), "garbage got a reply: {got:?}");
        } else {
            assert!(got.starts_with(reply), "{got:?}");
        }
    }

    // A half-open connection that never sends its handshake does not block anyone.
    let _idle = TcpStream::connect(server.addr).unwrap();
    other.join().unwrap();
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let r = json!({"type": "render", "genomeId": GENOME, "duration": 0.1});
    assert!(client::render(&mut socket, &r).is_ok());
    assert!(server.is_alive());
}

#[test]
fn a_reader_that_stops_reading_holds_bounded_memory_and_slows_nobody() {
    let server = ServerProcess::start(&[]);
    // Warm up (allocator arenas, genome cache) so the measurement sees steady state.
    bystander(&server.url, 1.0).join().unwrap();
    let before = server.rss_kib();
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let (mut socket, _) = client::connect(&server.url).unwrap();
        // 60 s of JSON chunks is about 60 MB on the wire; none of it is read.
        socket
            .send(Message::Text(
                json!({"type": "render", "genomeId": GENOME, "duration": 60}).to_string(),
            ))
            .unwrap();
        stalled.push(socket);
    }
    // Meanwhile other clients are served in full.
    for _ in 0..3 {
        bystander(&server.url, 2.0).join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss_kib();
    // Per stalled render: the 32 KiB ring, one chunk, a bounded write buffer (this genome has
    // no whole-duration CPPN buffers); the 60 MB it would have sent stays unrendered. The
    // target is at most 512 KiB per active render.
    let grown = after.saturating_sub(before);
    eprintln!("server RSS {before} KiB -> {after} KiB with 4 stalled 60 s renders");
    assert!(
        grown < 4 * 512,
        "server grew by {grown} KiB with 4 stalled readers ({before} -> {after} KiB)"
    );
    let v = server.stats();
    assert_eq!(
        v["renders"], 4,
        "the stalled renders are held, not finished: {v}"
    );
    assert_eq!(
        v["parkedRenders"], 4,
        "and parked, freeing the workers: {v}"
    );
    drop(stalled);
    assert!(server.wait_for_log("outcome=disconnected", 4, Duration::from_secs(10)));
    let v = server.wait_for_no_renders(Duration::from_secs(10));
    assert_eq!(
        (v["renders"].as_u64(), v["parkedRenders"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
}

#[test]
fn disconnecting_mid_render_frees_the_render() {
    // With room for only two renders, a third can start only if the first two were freed.
    let server = ServerProcess::start(&["--max-renders", "2"]);
    {
        let (mut a, _) = client::connect(&server.url).unwrap();
        for rid in ["a", "b"] {
            let r = json!({"type": "render", "requestId": rid, "genomeId": GENOME, "duration": 60});
            a.send(Message::Text(r.to_string())).unwrap();
        }
        let (mut b, _) = client::connect(&server.url).unwrap();
        let r = json!({"type": "render", "genomeId": GENOME, "duration": 1});
        b.send(Message::Text(r.to_string())).unwrap();
        let v = read_json(&mut b).unwrap();
        assert!(v["message"].as_str().unwrap().contains("busy"), "{v}");
        // `a` vanishes without a close handshake.
    }
    assert!(server.wait_for_log("outcome=disconnected", 2, Duration::from_secs(10)));
    let v = server.wait_for_no_renders(Duration::from_secs(10));
    assert_eq!(v["renders"], 0, "{v}");
    let (mut c, _) = client::connect(&server.url).unwrap();
    let r = json!({"type": "render", "genomeId": GENOME, "duration": 1});
    let got = client::render(&mut c, &r).unwrap();
    assert_bits_eq(
        &got.samples,
        &reference(GENOME, &request(1.0, 0.0, 0.5)),
        "after free",
    );
}

#[test]
fn a_hundred_concurrent_renders_complete_bit_exact() {
    // A hundred real-time streams need more than 2 cores' default CPU budget; this test is
    // about concurrency (admission is tests/server_limits.rs), so every render is admitted.
    let server = ServerProcess::start(&["--cpu-budget", "1000"]);
    let ids = deterministic_ids();
    let references: Vec<Vec<f32>> = ids
        .iter()
        .map(|g| reference(g, &request(1.0, 0.0, 0.5)))
        .collect();
    let references = std::sync::Arc::new(references);
    let ids = std::sync::Arc::new(ids);
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let url = server.url.clone();
            let (ids, references) = (ids.clone(), references.clone());
            std::thread::spawn(move || {
                let k = i % ids.len();
                let (mut socket, _) = client::connect(&url).unwrap();
                let format = if i % 2 == 0 { "json" } else { "binary" };
                let r =
                    json!({"type": "render", "genomeId": ids[k], "duration": 1, "format": format});
                let got = client::render(&mut socket, &r).unwrap();
                assert_bits_eq(&got.samples, &references[k], &format!("client {i}"));
                let _ = socket.close(None);
                got.complete["totalChunks"].as_u64().unwrap()
            })
        })
        .collect();
    let chunks: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(chunks, 100 * 12);
    assert!(server.wait_for_log("outcome=complete", 100, Duration::from_secs(10)));
    let log: Value = json!(server.log_text().matches("outcome=error").count());
    assert_eq!(log, 0);
}

#[test]
fn a_reader_that_stalls_mid_frame_then_reads_gets_whole_frames_in_order() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    // About 19 MB of JSON and 4 MB of binary chunks: the server's socket blocks in the middle
    // of a chunk frame long before the renders end.
    let seconds = 20.0;
    for (rid, format) in [("j", "json"), ("b", "binary")] {
        send_text(
            &mut socket,
            &json!({"type": "render", "requestId": rid, "genomeId": GENOME,
                    "duration": seconds, "format": format})
            .to_string(),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.stats()["parkedRenders"] != 2 {
        assert!(std::time::Instant::now() < deadline, "{}", server.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A control frame and a text message that the server must send while a chunk frame is
    // half written: neither may land inside it.
    socket.send(Message::Ping(b"p".to_vec())).unwrap();
    send_text(&mut socket, r#"{"type": "stats", "requestId": "s"}"#);
    let (mut json_samples, mut binary_samples) = (Vec::new(), Vec::new());
    let (mut completes, mut pong, mut stats) = (0, false, false);
    while completes < 2 {
        match socket.read().expect("well-formed frames") {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).expect("whole JSON messages");
                match v["type"].as_str().unwrap() {
                    "chunk" => json_samples.extend(json_chunk_samples(&v)),
                    "complete" => completes += 1,
                    "stats" => stats = true,
                    "start" => {}
                    other => panic!("{other}: {v}"),
                }
            }
            Message::Binary(bytes) => binary_samples.extend(
                bytes[16..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
            ),
            Message::Pong(payload) => {
                assert_eq!(payload, b"p");
                pong = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pong && stats, "pong {pong}, stats reply {stats}");
    let want = reference(GENOME, &request(seconds, 0.0, 0.5));
    assert_bits_eq(&json_samples, &want, "json stream");
    assert_bits_eq(&binary_samples, &want, "binary stream");
}
