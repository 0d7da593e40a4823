//! The server's limits on what one client or one host can hold, over real sockets: the file
//! descriptor limit, connections per IP, renders per connection, idle connections and renders
//! whose client stopped reading. Each limit is set low by its flag so the test stays short;
//! every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::*;
use kromosynth_render_socket::client::{self, read_json};
use serde_json::json;
use tungstenite::Message;

/// Starts the server with RLIMIT_NOFILE set to (soft, hard).
fn start_with_fd_limit(soft: u64, hard: u64, extra: &[&str]) -> ServerProcess {
    ServerProcess::start_with(extra, |command| {
        // SAFETY: setrlimit is async-signal-safe; it only touches the child's own limits.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    })
}

/// Whether the server closes a fresh connection without a word (refused at accept).
fn closed_at_accept(server: &ServerProcess) -> bool {
    let mut raw = TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    matches!(raw.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn the_connection_limit_holds_under_a_low_file_descriptor_limit() {
    // A hard limit of 256 cannot be raised: 256 - 128 reserved = 128 connections.
    let server = start_with_fd_limit(256, 256, &[]);
    assert!(
        server.wait_for_log("at most 128 connections", 1, Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
    let mut open = Vec::new();
    for _ in 0..128 {
        open.push(client::connect(&server.url).expect("within the limit"));
    }
    for _ in 0..20 {
        assert!(
            closed_at_accept(&server),
            "over the limit: closed at accept"
        );
    }
    // Two slots again: one for stats, one for a render.
    drop(open.pop());
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(200));
    let stats = server.stats();
    assert_eq!(stats["connections"], 127, "{stats}");
    assert_eq!(stats["refusedConnections"], 20, "{stats}");
    let (mut socket, _) = client::connect(&server.url).unwrap();
    assert_still_renders(&mut socket, "after");
}

#[test]
fn the_soft_file_descriptor_limit_is_raised_to_the_hard_one() {
    // A child may keep at most this process's hard limit.
    let mut ours = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut ours) },
        0
    );
    let hard = ours.rlim_max.min(4096);
    if hard <= 512 {
        eprintln!("skipping: the hard limit here ({hard}) leaves nothing to raise to");
        return;
    }
    let server = start_with_fd_limit(256, hard, &[]);
    let line = format!(
        "soft limit 256 raised to {hard} (hard {hard}); at most {} connections",
        hard - 128
    );
    assert!(
        server.wait_for_log(&line, 1, Duration::from_secs(5)),
        "{line}: {}",
        server.log_text()
    );
}

#[test]
fn connections_per_ip_are_capped() {
    let server = ServerProcess::start(&["--max-connections-per-ip", "3"]);
    let open: Vec<_> = (0..3)
        .map(|_| client::connect(&server.url).unwrap())
        .collect();
    assert!(closed_at_accept(&server));
    drop(open);
    std::thread::sleep(Duration::from_millis(200));
    let stats = server.stats();
    assert_eq!(stats["refusedConnections"], 1, "{stats}");
}

#[test]
fn eight_renders_at_once_per_connection_tagged_or_not() {
    let server = ServerProcess::start(&[]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    for i in 0..8 {
        socket
            .send(Message::Text(
                json!({"type": "render", "genomeId": GENOME, "duration": 30,
                    "requestId": i, "format": "binary"})
                .to_string(),
            ))
            .unwrap();
    }
    socket
        .send(Message::Text(
            json!({"type": "render", "genomeId": GENOME, "duration": 1}).to_string(),
        ))
        .unwrap();
    loop {
        match socket.read().unwrap() {
            Message::Text(text) if text.contains("\"error\"") => {
                assert!(text.contains("at most 8"), "{text}");
                assert!(!text.contains("requestId"), "{text}");
                break;
            }
            _ => {}
        }
    }
}

#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let server = ServerProcess::start(&["--idle-timeout", "1"]);
    let (mut idle, _) = client::connect(&server.url).unwrap();
    let (mut busy, _) = client::connect(&server.url).unwrap();
    // A render that takes longer than the idle timeout to read: its connection is not idle.
    busy.send(Message::Text(
        json!({"type": "render", "genomeId": GENOME, "duration": 3, "format": "binary"})
            .to_string(),
    ))
    .unwrap();
    let start = Instant::now();
    let close = loop {
        match idle.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    // The busy client reads slowly, past the idle timeout, and gets its whole render.
    let mut chunks = 0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match busy.read().unwrap() {
            Message::Binary(_) => chunks += 1,
            Message::Text(text) if text.contains("complete") => break,
            Message::Text(text) => assert!(!text.contains("error"), "{text}"),
            _ => {}
        }
    }
    assert_eq!(chunks, 36);
    // The busy connection may be closed too once its render is sent: then it is idle.
    assert!(server.stats()["idleClosed"].as_u64().unwrap() >= 1);
}

#[test]
fn a_render_whose_client_stopped_reading_is_dropped_and_freed() {
    let server = ServerProcess::start(&["--stall-timeout", "1"]);
    let (mut stalled, _) = client::connect(&server.url).unwrap();
    stalled
        .send(Message::Text(
            json!({"type": "render", "genomeId": "01M88X99QVYYHHB5Y83SETHWK1", "duration": 120,
                "requestId": "s", "format": "binary"})
            .to_string(),
        ))
        .unwrap();
    let stats = server.wait_for_no_renders(Duration::from_secs(15));
    assert_eq!(stats["renders"], 0, "{stats}");
    assert_eq!(stats["stalledRenders"], 1, "{stats}");
    // What was sent before the drop, then the error, and the connection still works.
    let error = loop {
        match stalled.read().unwrap() {
            Message::Text(text) if text.contains("\"error\"") => break text,
            _ => {}
        }
    };
    assert!(
        error.contains("read nothing") && error.contains("\"s\""),
        "{error}"
    );
    stalled
        .send(Message::Text(
            json!({"type": "render", "genomeId": GENOME, "duration": 0.1}).to_string(),
        ))
        .unwrap();
    loop {
        let v = read_json(&mut stalled).unwrap();
        if v["type"] == "complete" {
            break;
        }
    }
}

/// `--cpu-budget 0.05` (cores): a 5 s render of a genome not yet measured is expected to need
/// about 0.02 cores to play and 0.02 more while it prepares, so one fits and a second, asked
/// for before the first has been measured, is refused as busy with `retryAfter`; once the
/// first ends, a render fits again.
#[test]
fn a_render_beyond_the_cpu_budget_is_refused_as_busy_until_another_ends() {
    let server = ServerProcess::start(&["--cpu-budget", "0.05"]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    // Both frames in one write, so the server reads the second before the first can have
    // rendered the quarter second after which its measured cost replaces the estimate (sent
    // apart on a loaded machine, the first was measured cheaper and the second fitted).
    for id in ["first", "second"] {
        let request = json!({"type": "render", "genomeId": GENOME, "duration": 5,
            "requestId": id, "format": "binary"});
        socket.write(Message::Text(request.to_string())).unwrap();
    }
    socket.flush().unwrap();
    let refusal = loop {
        if let Message::Text(text) = socket.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "error" {
                break v;
            }
        }
    };
    assert_eq!(refusal["requestId"], "second", "{refusal}");
    let message = refusal["message"].as_str().unwrap();
    assert!(message.starts_with("Server busy: cpu"), "{message}");
    assert_eq!(refusal["retryAfter"], 1, "{refusal}");
    let stats = server.stats();
    assert!(stats["cpuReserved"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["cpuBudget"], 50_000, "{stats}");

    socket
        .send(Message::Text(
            json!({"type": "cancel", "requestId": "first"}).to_string(),
        ))
        .unwrap();
    let stats = server.wait_for_no_renders(Duration::from_secs(10));
    assert_eq!(stats["cpuReserved"], 0, "{stats}");
    let (mut other, _) = client::connect(&server.url).unwrap();
    assert_still_renders(&mut other, "after the first render ended");
}

/// `--start-delay-ms 1` on one worker thread: while a render accepted earlier is still
/// preparing (20 s of the convolver genome, whose whole impulse response is evaluated before
/// its first chunk: tens of milliseconds on one thread; expected, before any render of it is
/// measured, to prepare for 40 ms, so not a heavy one), a new stream is refused as busy with
/// `retryAfter`, a batch render waits instead, and both get through once the first chunk is out.
#[test]
fn renders_wait_or_are_refused_while_an_earlier_render_has_not_started() {
    const CONVOLVER: &str = "01M88X8EMSXWZE35NP3PBFS4V7";
    let server = ServerProcess::start(&["--start-delay-ms", "1", "--threads", "1"]);
    let (mut first, _) = client::connect(&server.url).unwrap();
    let request = json!({"type": "render", "genomeId": CONVOLVER, "duration": 20,
        "requestId": "first", "format": "binary"});
    first.send(Message::Text(request.to_string())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats()["startingRenders"] != 1 {
        assert!(Instant::now() < deadline, "{}", server.stats());
    }
    std::thread::sleep(Duration::from_millis(2));
    let (mut other, _) = client::connect(&server.url).unwrap();
    for (id, batch) in [("stream", false), ("batch", true)] {
        let request = json!({"type": "render", "genomeId": GENOME, "duration": 1,
            "requestId": id, "batch": batch});
        other.write(Message::Text(request.to_string())).unwrap();
    }
    other.flush().unwrap();
    // Each render ends in one `error` or one `complete`.
    let mut ends = Vec::new();
    while ends.len() < 2 {
        if let Message::Text(text) = other.read().unwrap() {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "error" || v["type"] == "complete" {
                ends.push(v);
            }
        }
    }
    let (refusal, complete) = (&ends[0], &ends[1]);
    assert_eq!(refusal["type"], "error", "{ends:?}");
    assert_eq!(refusal["requestId"], "stream", "{refusal}");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.starts_with("Server busy: 1 renders starting"),
        "{message}"
    );
    assert_eq!(refusal["retryAfter"], 1, "{refusal}");
    assert_eq!(complete["requestId"], "batch", "{complete}");
    // The batch render waited for the first one's first chunk.
    let stats = server.stats();
    assert_eq!(stats["startingRenders"], 0, "{stats}");
    drop(first);
    assert_still_renders(&mut other, "after the first render started");
}

/// The same budget with batch-form renders (the whole render in one message, nothing to play in
/// real time): the second and third, which a stream would be refused for, wait for room
/// instead, as kromosynth's batch clients and the original server expect (it never refused
/// one), and a waiting render can be cancelled.
#[test]
fn batch_renders_wait_for_room_in_the_cpu_budget_instead_of_being_refused() {
    let server = ServerProcess::start(&["--cpu-budget", "0.05"]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    let requests = [("first", 5), ("second", 2), ("third", 2)];
    for (id, duration) in requests {
        let request = json!({"type": "render", "genomeId": GENOME, "duration": duration,
            "requestId": id, "batch": true});
        socket.send(Message::Text(request.to_string())).unwrap();
    }
    // Sent with the requests: it arrives long before 9 s of audio are rendered.
    socket
        .send(Message::Text(
            json!({"type": "cancel", "requestId": "third"}).to_string(),
        ))
        .unwrap();
    let (mut completed, mut cancelled, mut samples) = (Vec::new(), None, Vec::new());
    while completed.len() < 2 || cancelled.is_none() {
        match socket.read().unwrap() {
            Message::Text(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                match v["type"].as_str().unwrap() {
                    "complete" => completed.push(v["requestId"].as_str().unwrap().to_owned()),
                    "cancelled" => cancelled = Some(v),
                    "batch-result" => {}
                    _ => panic!("unexpected message {v}"),
                }
            }
            Message::Binary(bytes) => samples.push(bytes.len() / 4),
            other => panic!("unexpected message {other:?}"),
        }
    }
    completed.sort();
    assert_eq!(completed, ["first", "second"]);
    samples.sort();
    assert_eq!(samples, [2 * 48_000, 5 * 48_000]);
    let cancelled = cancelled.unwrap();
    assert_eq!(cancelled["requestId"], "third", "{cancelled}");
    assert_eq!(cancelled["chunksSent"], 0, "{cancelled}");
    let stats = server.wait_for_no_renders(Duration::from_secs(10));
    assert_eq!(stats["renders"], 0, "{stats}");
    assert_eq!(stats["cpuWaitingRenders"], 0, "{stats}");
}

/// A budget too small for a render of typical cost: `/health` says busy, so a balancer sends
/// clients elsewhere, and a render is refused as too large, without `retryAfter`.
#[test]
fn health_is_busy_while_the_cpu_budget_has_no_room() {
    let server = ServerProcess::start(&["--cpu-budget", "0.01"]);
    let mut http = TcpStream::connect(server.addr).unwrap();
    http.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"busy\""), "{answer}");
    let (mut socket, _) = client::connect(&server.url).unwrap();
    socket
        .send(Message::Text(
            json!({"type": "render", "genomeId": GENOME, "duration": 1}).to_string(),
        ))
        .unwrap();
    let v = read_json(&mut socket).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("render too large: needs 0.02 cores of cpu"),
        "{v}"
    );
    assert!(v.get("retryAfter").is_none(), "{v}");
}
