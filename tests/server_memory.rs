//! The memory budget over real sockets: renders reserve their estimate before they prepare,
//! those that do not fit are refused with a reason a client can act on, and every way a render
//! ends gives its reservation back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kromosynth_render_socket::client::{self, read_json, Socket};
use serde_json::{json, Value};
use tungstenite::Message;

/// A convolver genome: its impulse response lasts the whole render.
const CONVOLVER: &str = "01M88X8EMSXWZE35NP3PBFS4V7";

fn send(socket: &mut Socket, request: Value) {
    socket.send(Message::Text(request.to_string())).unwrap();
}

/// The next `error` message, skipping chunks.
fn next_error(socket: &mut Socket) -> Value {
    loop {
        if let Message::Text(text) = socket.read().unwrap() {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "error" {
                return v;
            }
        }
    }
}

/// Asks for a short render on a connection of its own and waits for its first chunk.
fn await_first_chunk(url: &str) {
    let (mut socket, _) = client::connect(url).unwrap();
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": 0.25}),
    );
    loop {
        let v = read_json(&mut socket).unwrap();
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "chunk" {
            return;
        }
    }
}

fn memory_reserved(server: &ServerProcess) -> u64 {
    server.stats()["memoryReserved"].as_u64().unwrap()
}

fn wait_for_reserved(server: &ServerProcess, want: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = memory_reserved(server);
        if want(r) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_that_asks_for_eight_long_convolver_renders_and_never_reads_gets_what_fits() {
    // A 600 s render of this genome is estimated at about 660 MiB at its peak (its convolver's
    // IR and spectra): two fit in 1500 MiB. The CPU budget would refuse some of them first
    // (each holds half a core while it prepares); this test is about memory.
    let server = ServerProcess::start(&[
        "--max-memory",
        "1500M",
        "--max-memory-per-connection",
        "1500M",
        "--cpu-budget",
        "100",
    ]);
    let budget = 1500u64 << 20;
    let before = server.rss_kib();
    let (mut greedy, _) = client::connect(&server.url).unwrap();
    for i in 0..8 {
        send(
            &mut greedy,
            json!({"type": "render", "genomeId": CONVOLVER, "duration": 600, "requestId": i,
                "format": "binary"}),
        );
    }
    let reserved = wait_for_reserved(&server, |r| r > 0);
    assert!(reserved > 0 && reserved <= budget, "{reserved}");
    std::thread::sleep(Duration::from_secs(2));
    let stats = server.stats();
    assert!(
        stats["memoryReserved"].as_u64().unwrap() <= budget,
        "{stats}"
    );
    assert_eq!(stats["memoryBudget"].as_u64().unwrap(), budget, "{stats}");
    let grown = server.rss_kib().saturating_sub(before) * 1024;
    assert!(grown < budget, "server RSS grew by {grown} bytes");

    // The refused ones say why, and when to retry.
    let mut refused = 0;
    let mut ids = Vec::new();
    while refused < 6 {
        let e = next_error(&mut greedy);
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with("Server busy: memory (") && message.ends_with("retry later"),
            "{e}"
        );
        assert!(e["retryAfter"].as_u64().unwrap() >= 1, "{e}");
        ids.push(e["requestId"].as_u64().unwrap());
        refused += 1;
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);

    drop(greedy);
    let stats = server.wait_for_no_renders(Duration::from_secs(20));
    assert_eq!(stats["memoryReserved"], 0, "{stats}");
}

#[test]
fn a_disconnect_during_preparation_frees_the_reservation() {
    let server = ServerProcess::start(&["--max-memory", "2G"]);
    for _ in 0..3 {
        let (mut socket, _) = client::connect(&server.url).unwrap();
        send(
            &mut socket,
            json!({"type": "render", "genomeId": CONVOLVER, "duration": 120, "requestId": 1}),
        );
        // Reserved once the graph is built, well before the preparation ends.
        wait_for_reserved(&server, |r| r > 0);
        drop(socket);
    }
    let stats = server.wait_for_no_renders(Duration::from_secs(20));
    assert_eq!(stats["memoryReserved"], 0, "{stats}");
}

#[test]
fn a_render_that_could_never_fit_is_refused_without_retry_and_held_renders_count() {
    let server = ServerProcess::start(&["--max-memory", "400M"]);
    let (mut socket, _) = client::connect(&server.url).unwrap();
    // Over the connection's share (a quarter of 400M).
    send(
        &mut socket,
        json!({"type": "render", "genomeId": CONVOLVER, "duration": 600, "requestId": "big"}),
    );
    let e = next_error(&mut socket);
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("render too large: needs ") && message.contains("the limit is 100 MiB"),
        "{e}"
    );
    assert!(e.get("retryAfter").is_none(), "{e}");
    // A batch render holds its samples (4 bytes each) until sent: 600 s at 48 kHz is 110 MiB.
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": 600, "batch": true,
            "requestId": "held"}),
    );
    let e = next_error(&mut socket);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("render too large: needs 110 MiB"),
        "{e}"
    );
    // Small renders still go through, and leave nothing reserved.
    send(
        &mut socket,
        json!({"type": "render", "genomeId": GENOME, "duration": 1, "batch": true}),
    );
    loop {
        let v = match socket.read().unwrap() {
            Message::Text(text) => serde_json::from_str::<Value>(&text).unwrap(),
            _ => continue,
        };
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "complete" {
            break;
        }
    }
    assert_eq!(wait_for_reserved(&server, |r| r == 0), 0);
}

/// A long render's preparation (about 0.8 s of CPU each for these) gives its worker back
/// between pieces, so another client's first chunk does not wait for it: the short render's
/// first chunk arrives while the long ones are still preparing. (Before preparations yielded,
/// it came after them: 2.1 s on 2 cores. The latency bench has the times.)
#[test]
fn long_preparations_do_not_delay_another_clients_first_chunk() {
    // A start delay of 1 ms: the long renders, expected to prepare for longer than 100 ms,
    // must not hold the short one off either.
    let server = ServerProcess::start(&[
        "--max-memory",
        "1500M",
        "--max-memory-per-connection",
        "1500M",
        "--start-delay-ms",
        "1",
    ]);
    let (mut greedy, _) = client::connect(&server.url).unwrap();
    for i in 0..8 {
        send(
            &mut greedy,
            json!({"type": "render", "genomeId": CONVOLVER, "duration": 600, "requestId": i,
                "format": "binary"}),
        );
    }
    wait_for_reserved(&server, |r| r > 0);
    await_first_chunk(&server.url);
    let stats = server.stats();
    assert!(
        stats["startingRenders"].as_u64().unwrap() >= 1,
        "the long renders had finished preparing before the short one's first chunk: {stats}"
    );
}
